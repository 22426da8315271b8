//! What the fuzz targets share: reading the input, building configurations, and a
//! [`Harness`] that drives one [`Connection`] and checks, after every call, the contract:
//! input is accepted or rejected with a documented error, never a panic or a hang, and
//!
//! - failure is sticky: after a `Failed(e)` every call returns `e` (or a usage error for bad
//!   arguments) and nothing more is queued; once the state leaves `Open`, nothing at all is
//!   queued after the call that left it (the owed close goes out with that call);
//! - `receive` fails only with protocol errors, and only with the state showing them;
//! - commands succeed while `Open` and fail as documented otherwise;
//! - events: text is UTF-8, data within `max_message_size`, control payloads within 125
//!   bytes, nothing after the close event, nothing while failed;
//! - everything the connection writes is accepted by a peer connection of the other role
//!   (masking, RSV bits, fragmentation, compressed data, close codes), nothing follows a
//!   close frame, and the peer receives exactly the data messages that were sent.
//!
//! Inputs are read a byte at a time through [`arbitrary::Unstructured`] (`u8` reads are one
//! byte; lengths are two bytes, low first), so the seeds in `corpus/` are easy to write:
//! `examples/seeds.rs` writes them.

use arbitrary::Unstructured;
use bytes::Buf;
use proto::frame::{FrameHeader, OpCode};
use proto::mask::apply_mask;
use proto::{
    CloseCode, Config, Connection, DeflateConfig, DeflateParams, Error, Message, ProtocolError,
    Role, State, UsageError,
};
use std::collections::VecDeque;
use std::sync::OnceLock;

/// Whether `WSDUPLEX_FUZZ_TRACE` is set: then [`trace!`] prints every call (for reading what a
/// crashing input does: `WSDUPLEX_FUZZ_TRACE=1 cargo +nightly fuzz run <target> <file>`).
pub fn tracing() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("WSDUPLEX_FUZZ_TRACE").is_some())
}

/// `eprintln!` when [`tracing`].
#[macro_export]
macro_rules! trace {
    ($($t:tt)*) => {
        if $crate::tracing() {
            eprintln!($($t)*);
        }
    };
}

/// One byte (0 once the input is exhausted).
pub fn byte(u: &mut Unstructured<'_>) -> u8 {
    u.arbitrary::<u8>().unwrap_or(0)
}

/// Two bytes, low first.
pub fn u16le(u: &mut Unstructured<'_>) -> u16 {
    u16::from(byte(u)) | u16::from(byte(u)) << 8
}

/// Up to `n` bytes (fewer if the input ends).
pub fn blob<'a>(u: &mut Unstructured<'a>, n: usize) -> &'a [u8] {
    let n = n.min(u.len());
    u.bytes(n).unwrap_or_default()
}

/// A length (two bytes, low first) and that many bytes.
pub fn blob16<'a>(u: &mut Unstructured<'a>) -> &'a [u8] {
    let n = u16le(u) as usize;
    blob(u, n)
}

/// A length (one byte) and that many bytes.
pub fn blob8<'a>(u: &mut Unstructured<'a>) -> &'a [u8] {
    let n = byte(u) as usize;
    blob(u, n)
}

/// The agreed permessage-deflate parameters one byte describes: bits 0-2 server window
/// (8 + n), bits 3-5 client window, bit 6 server_no_context_takeover, bit 7 the client's.
pub fn deflate_params(b: u8) -> DeflateParams {
    let mut p = DeflateParams::default();
    p.server_max_window_bits = 8 + (b & 7);
    p.client_max_window_bits = 8 + ((b >> 3) & 7);
    p.server_no_context_takeover = b & 0x40 != 0;
    p.client_no_context_takeover = b & 0x80 != 0;
    p
}

/// A permessage-deflate policy from two bytes: window bits as written (any `u8`, clamped by
/// the core), the two flags, and a level.
pub fn deflate_policy(u: &mut Unstructured<'_>) -> DeflateConfig {
    let (a, b, c) = (byte(u), byte(u), byte(u));
    let mut p = DeflateConfig::default();
    p.server_max_window_bits = a & 0x1f;
    p.client_max_window_bits = b & 0x1f;
    p.server_no_context_takeover = a & 0x80 != 0;
    p.client_no_context_takeover = b & 0x80 != 0;
    p.level = u32::from(c % 10);
    p.threshold = [0, 1, 64, 1024][usize::from(c >> 6)];
    p
}

/// A connection configuration from the input, three bytes (seven with small limits):
///
/// - flags: bit 0 deflate agreed, bit 1 small limits follow, bit 2
///   `dangerous_accept_unmasked_frames`, bits 3-4 compression threshold (0, 1, 64, 1024),
///   bits 5-7 fragment size (none, 1, 2, 3, 7, 16, 125, 1000);
/// - the [`deflate_params`] byte (read even when deflate is off);
/// - the compression level (mod 10);
/// - with small limits: max frame size and max message size, two bytes each.
pub fn config(u: &mut Unstructured<'_>) -> Config {
    let flags = byte(u);
    let params = byte(u);
    let level = byte(u);
    let mut c = Config::default().fragment_size(
        [
            None,
            Some(1),
            Some(2),
            Some(3),
            Some(7),
            Some(16),
            Some(125),
            Some(1000),
        ][usize::from(flags >> 5)],
    );
    if flags & 1 != 0 {
        c.deflate = Some(deflate_params(params));
    }
    if flags & 2 != 0 {
        c.max_frame_size = u64::from(u16le(u));
        c.max_message_size = u64::from(u16le(u));
    }
    c.dangerous_accept_unmasked_frames = flags & 4 != 0;
    c.compression_threshold = [0, 1, 64, 1024][usize::from((flags >> 3) & 3)];
    c.compression_level = u32::from(level % 10);
    c
}

/// The other end.
pub fn other(role: Role) -> Role {
    match role {
        Role::Client => Role::Server,
        Role::Server => Role::Client,
    }
}

/// Encodes one frame from a raw first byte (any opcode and RSV bits), masked with `key`.
pub fn raw_frame(b0: u8, key: Option<[u8; 4]>, payload: &[u8]) -> Vec<u8> {
    let h = FrameHeader {
        fin: true,
        rsv1: false,
        rsv2: false,
        rsv3: false,
        opcode: OpCode::Binary,
        mask: key,
        payload_len: payload.len() as u64,
    };
    let (mut head, n) = h.encode();
    head[0] = b0;
    let mut out = head[..n].to_vec();
    let start = out.len();
    out.extend_from_slice(payload);
    if let Some(k) = key {
        apply_mask(&mut out[start..], k, 0);
    }
    out
}

/// Receives everything one connection writes, as the peer it is talking to: a connection of
/// the other role with the same agreement and default limits. It must accept every byte.
pub struct Checker {
    /// The peer. The ops target also sends with it.
    pub peer: Connection,
    /// Bytes of a frame not yet complete, to find where frames end.
    pending: Vec<u8>,
    /// A close frame went by: nothing may follow it.
    closed: bool,
    /// Every event the peer decoded.
    pub events: Vec<Message>,
}

impl Checker {
    /// The peer of a connection with `role` and `config`.
    pub fn new(role: Role, config: &Config) -> Self {
        let mut c = Config::default();
        c.deflate = config.deflate;
        c.max_frame_size = u64::MAX >> 1;
        c.max_message_size = u64::MAX >> 1;
        Self {
            peer: Connection::new(other(role), c),
            pending: Vec::new(),
            closed: false,
            events: Vec::new(),
        }
    }

    /// Feeds bytes written by the connection under test.
    pub fn feed(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        assert!(
            !self.closed,
            "{} bytes written after a close frame",
            bytes.len()
        );
        self.pending.extend_from_slice(bytes);
        loop {
            let (h, n) = match FrameHeader::decode(&self.pending) {
                Ok(Some(x)) => x,
                Ok(None) => break,
                Err(e) => panic!("wrote an undecodable frame header: {e}"),
            };
            let end = n + h.payload_len as usize;
            if self.pending.len() < end {
                break;
            }
            if h.opcode == OpCode::Close {
                assert_eq!(end, self.pending.len(), "bytes written after a close frame");
                self.closed = true;
            }
            self.pending.drain(..end);
        }
        let r = self.peer.receive(bytes);
        assert!(r.is_ok(), "the peer rejected what was written: {r:?}");
        self.drain();
    }

    /// Takes the peer's events (decoding is lazy).
    pub fn drain(&mut self) {
        while let Some(ev) = self.peer.poll_event() {
            self.events.push(ev);
        }
        assert!(
            !matches!(self.peer.state(), State::Failed(_)),
            "the peer failed on what was written: {:?}",
            self.peer.state()
        );
    }
}

/// A command on the connection under test.
#[derive(Clone)]
pub enum Command<'a> {
    /// `send_text`.
    Text(&'a str),
    /// `send_binary`.
    Binary(&'a [u8]),
    /// `send(Message)`, the shared-payload path.
    Message(Message),
    /// `send_ping`.
    Ping(&'a [u8]),
    /// `send_pong`.
    Pong(&'a [u8]),
    /// `close(code, reason)`.
    Close(u16, &'a str),
    /// `send(Message::Close(None))`.
    CloseEmpty,
}

impl std::fmt::Debug for Command<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Text(t) => write!(f, "send_text({} bytes)", t.len()),
            Self::Binary(b) => write!(f, "send_binary({} bytes)", b.len()),
            Self::Message(m) => write!(f, "send({m:?})"),
            Self::Ping(b) => write!(f, "send_ping({} bytes)", b.len()),
            Self::Pong(b) => write!(f, "send_pong({} bytes)", b.len()),
            Self::Close(code, reason) => write!(f, "close({code}, {} bytes)", reason.len()),
            Self::CloseEmpty => write!(f, "send(Close(None))"),
        }
    }
}

/// One connection under test, its checker, and what has been seen so far.
pub struct Harness {
    /// The connection under test.
    pub conn: Connection,
    /// Its peer, fed everything it writes.
    pub checker: Checker,
    /// Every event the connection produced.
    pub events: Vec<Message>,
    close_seen: bool,
    /// `receive_eof` failed the connection while a decoded event waited: that one event may
    /// still be taken ("events decoded before the error are still queued").
    event_owed: bool,
    /// Bytes taken from `poll_transmit` so far.
    written: usize,
    /// Bytes queued by commands (the rest answers input).
    queued_by_commands: usize,
    /// Bytes given to `receive` and the receive buffer.
    received: usize,
    /// Data messages sent and not yet seen by the peer, in order.
    sent: VecDeque<Message>,
    /// How many of the checker's events were matched against `sent`.
    matched: usize,
}

impl Harness {
    /// A connection after its handshake.
    pub fn new(role: Role, config: Config) -> Self {
        let checker = Checker::new(role, &config);
        Self {
            conn: Connection::new(role, config),
            checker,
            events: Vec::new(),
            close_seen: false,
            event_owed: false,
            written: 0,
            queued_by_commands: 0,
            received: 0,
            sent: VecDeque::new(),
            matched: 0,
        }
    }

    /// Bytes queued or written, ever.
    fn queued_total(&self) -> usize {
        self.written + self.conn.buffered_amount()
    }

    /// Runs one call and checks what holds across any call.
    fn call<R>(&mut self, f: impl FnOnce(&mut Connection) -> R) -> R {
        self.call_as(false, f)
    }

    /// [`Harness::call`]; `command`: what the call queues is the application's, not an
    /// answer to input.
    fn call_as<R>(&mut self, command: bool, f: impl FnOnce(&mut Connection) -> R) -> R {
        let before = self.conn.state().clone();
        let queued = self.queued_total();
        let r = f(&mut self.conn);
        if command {
            self.queued_by_commands += self.queued_total() - queued;
        }
        // Input never makes this end write much more than it read: a pong is at most 4
        // bytes (a mask key) longer than its ping, a ping at least 2 bytes, plus one close.
        let answers = self.queued_total() - self.queued_by_commands;
        assert!(
            answers <= 3 * self.received + 2 + 4 + 125,
            "{answers} bytes written in answer to {} bytes",
            self.received
        );
        trace!(
            "  -> {:?}, {} bytes queued",
            self.conn.state(),
            self.queued_total() - queued
        );
        if before != State::Open {
            assert_eq!(
                self.queued_total(),
                queued,
                "bytes queued in state {before:?} (only the call leaving Open may queue a close)"
            );
        }
        match &before {
            State::Failed(_) | State::Closed => {
                assert_eq!(self.conn.state(), &before, "{before:?} is final")
            }
            _ => {}
        }
        r
    }

    fn check_receive(&self, before: &State, r: &Result<(), Error>) {
        match r {
            Ok(()) => assert!(
                !matches!(self.conn.state(), State::Failed(_)),
                "Ok while {:?}",
                self.conn.state()
            ),
            Err(Error::Protocol(e)) => {
                assert_eq!(self.conn.state(), &State::Failed(e.clone()), "error {e:?}");
                if let State::Failed(old) = before {
                    assert_eq!(old, e, "a different error after failing");
                }
                let code = e.close_code();
                assert!(
                    code == CloseCode::ABNORMAL_CLOSURE || code.is_sendable(),
                    "{e:?} maps to {code:?}"
                );
            }
            Err(e) => panic!("receiving failed with a non-protocol error: {e:?}"),
        }
    }

    /// `receive`.
    pub fn receive(&mut self, bytes: &[u8]) -> Result<(), Error> {
        trace!("receive {} bytes", bytes.len());
        self.received += bytes.len();
        let before = self.conn.state().clone();
        let r = self.call(|c| c.receive(bytes));
        self.check_receive(&before, &r);
        r
    }

    /// Appends to `receive_buffer`, then `receive_buffered`.
    pub fn receive_buffered(&mut self, bytes: &[u8]) -> Result<(), Error> {
        trace!("receive_buffered {} bytes", bytes.len());
        self.received += bytes.len();
        let before = self.conn.state().clone();
        let r = self.call(|c| {
            // Appending after a failure or the close is the caller's business; the
            // connection must still ignore it.
            c.receive_buffer().extend_from_slice(bytes);
            c.receive_buffered()
        });
        self.check_receive(&before, &r);
        r
    }

    /// `receive_eof`.
    pub fn receive_eof(&mut self) -> Result<(), Error> {
        trace!("receive_eof");
        let before = self.conn.state().clone();
        let r = self.call(|c| c.receive_eof());
        self.check_receive(&before, &r);
        if matches!(before, State::Open | State::Closing) {
            self.event_owed = true;
        }
        match (&before, &r) {
            (State::Closed, r) => assert!(r.is_ok()),
            (State::Open | State::Closing, r) => {
                assert_eq!(r, &Err(ProtocolError::UnexpectedEof.into()))
            }
            _ => {}
        }
        r
    }

    /// `poll_event`, checking the event.
    pub fn poll_event(&mut self) -> Option<Message> {
        let failed = matches!(self.conn.state(), State::Failed(_));
        let ev = self.call(|c| c.poll_event());
        trace!("poll_event: {ev:?}");
        let owed = std::mem::take(&mut self.event_owed);
        let ev = ev?;
        assert!(!failed || owed, "an event while failed: {ev:?}");
        self.check_event(&ev);
        Some(ev)
    }

    /// What holds for every event, taken from `poll_event` or handed out borrowed.
    fn check_event(&mut self, ev: &Message) {
        assert!(!self.close_seen, "an event after the close: {ev:?}");
        let max = self.conn.config().max_message_size;
        match &ev {
            Message::Text(t) => {
                assert!(std::str::from_utf8(t.as_bytes()).is_ok(), "text not utf-8");
                assert!(
                    t.len() as u64 <= max,
                    "text of {} bytes over {max}",
                    t.len()
                );
            }
            Message::Binary(b) => {
                assert!(
                    b.len() as u64 <= max,
                    "binary of {} bytes over {max}",
                    b.len()
                )
            }
            Message::Ping(b) | Message::Pong(b) => assert!(b.len() <= 125),
            Message::Close(f) => {
                self.close_seen = true;
                assert_eq!(self.conn.state(), &State::Closed);
                if let Some(f) = f {
                    assert!(f.code.is_sendable(), "close code {:?}", f.code);
                    assert!(f.reason.len() <= 123);
                }
            }
            other => panic!("unknown event {other:?}"),
        }
        self.events.push(ev.clone());
    }

    /// `receive_with`, echoing every message it hands out (as `/echo` does); returns how
    /// many. What it hands out is checked as events are, and it may hand out nothing while
    /// the state is not `Open`.
    pub fn receive_with(&mut self, max_buffered: usize) -> usize {
        let before = self.conn.state().clone();
        let mut got = Vec::new();
        let mut echoed = Vec::new();
        let r = self.call_as(true, |c| {
            c.receive_with(max_buffered, |m, mut tx| {
                got.push(m.to_message());
                if tx.send_ref(m).is_ok() {
                    echoed.push(m.to_message());
                }
            })
        });
        trace!("receive_with: {r:?}, {} messages", got.len());
        match &r {
            Ok(n) => assert_eq!(*n, got.len()),
            Err(Error::Protocol(ProtocolError::InvalidUtf8)) => {
                assert_eq!(
                    self.conn.state(),
                    &State::Failed(ProtocolError::InvalidUtf8)
                )
            }
            // Failure is sticky: a failed connection gives its error again.
            Err(Error::Protocol(e)) if before == State::Failed(e.clone()) => {}
            Err(e) => panic!("receive_with failed with {e:?}"),
        }
        if before != State::Open {
            assert!(got.is_empty(), "messages handed out in state {before:?}");
        }
        for m in &got {
            assert!(m.is_data() && m.as_payload().len() < 16 * 1024, "{m:?}");
            self.check_event(m);
        }
        // Each echo is sent while `Open`: it reaches the peer.
        assert_eq!(echoed.len(), got.len());
        self.sent.extend(echoed);
        got.len()
    }

    /// Runs a command and checks its result against the state it ran in.
    pub fn command(&mut self, cmd: Command<'_>) -> Result<(), Error> {
        let before = self.conn.state().clone();
        let usage = match &cmd {
            Command::Ping(p) | Command::Pong(p) if p.len() > 125 => {
                Some(UsageError::ControlPayloadTooLong { len: p.len() })
            }
            Command::Close(code, _) if !CloseCode::new(*code).is_sendable() => {
                Some(UsageError::InvalidCloseCode(*code))
            }
            Command::Close(_, reason) if reason.len() > 123 => {
                Some(UsageError::ControlPayloadTooLong {
                    len: reason.len() + 2,
                })
            }
            _ => None,
        };
        let is_close = matches!(cmd, Command::Close(..) | Command::CloseEmpty);
        let data = match &cmd {
            Command::Text(t) => Some(Message::text(*t)),
            Command::Binary(b) => Some(Message::binary(b.to_vec())),
            Command::Message(m) if m.is_data() => Some(m.clone()),
            _ => None,
        };
        let expected: Result<(), Error> = match (usage, &before) {
            (Some(u), _) => Err(u.into()),
            (None, State::Open) => Ok(()),
            (None, State::Closing | State::Closed) if is_close => Ok(()),
            (None, State::Closing | State::Closed) => Err(UsageError::Closed.into()),
            (None, State::Failed(e)) => Err(e.clone().into()),
            (None, s) => panic!("unknown state {s:?}"),
        };
        trace!("{cmd:?}");
        let r = self.call_as(true, |c| match cmd {
            Command::Text(t) => c.send_text(t),
            Command::Binary(b) => c.send_binary(b),
            Command::Message(m) => c.send(m),
            Command::Ping(p) => c.send_ping(p),
            Command::Pong(p) => c.send_pong(p),
            Command::Close(code, reason) => c.close(CloseCode::new(code), reason),
            Command::CloseEmpty => c.send(Message::Close(None)),
        });
        assert_eq!(r, expected, "in state {before:?}");
        if r.is_ok() {
            if let Some(m) = data {
                self.sent.push_back(m);
            }
            if is_close && before == State::Open {
                assert_eq!(self.conn.state(), &State::Closing);
            }
        }
        r
    }

    /// Writes up to `max` queued bytes to the checker.
    pub fn transmit(&mut self, max: usize) {
        let bytes = match self.conn.poll_transmit() {
            Some(tx) => {
                let n = tx.remaining().min(max);
                tx.copy_to_bytes(n)
            }
            None => {
                assert_eq!(self.conn.buffered_amount(), 0);
                return;
            }
        };
        self.written += bytes.len();
        self.checker.feed(&bytes);
        trace!(
            "transmit {} bytes; the peer has {:?}",
            bytes.len(),
            &self.checker.events[self.matched..]
        );
        for ev in &self.checker.events[self.matched..] {
            if ev.is_data() {
                let want = self
                    .sent
                    .pop_front()
                    .expect("the peer got a message never sent");
                assert!(*ev == want, "the peer got {ev:?}, sent {want:?}");
            }
        }
        self.matched = self.checker.events.len();
    }

    /// Takes every event.
    pub fn drain(&mut self) {
        while self.poll_event().is_some() {}
    }

    /// Writes everything out and checks every message sent arrived.
    pub fn finish(&mut self) {
        self.transmit(usize::MAX);
        assert!(self.conn.poll_transmit().is_none());
        assert!(
            self.sent.is_empty(),
            "{} messages sent never reached the peer",
            self.sent.len()
        );
    }
}

/// What one run of a byte stream produced, to compare runs with different chunking.
#[derive(Debug, PartialEq)]
pub struct Outcome {
    /// The events, in order.
    pub events: Vec<Message>,
    /// The final state.
    pub state: State,
    /// What the peer decoded from everything written.
    pub written: Vec<Message>,
}

/// Feeds `input` to a connection in pieces of the given sizes (cycled), draining events and
/// echoing data messages after each piece as an echo server would, then ends the stream.
pub fn run_stream(role: Role, config: &Config, input: &[u8], sizes: &[usize]) -> Outcome {
    run_stream_with(role, config, input, sizes, None)
}

/// [`run_stream`]; with `borrowed`, whole small messages are taken with `receive_with`
/// (echoes queued up to that many bytes at a time) before each `poll_event`.
pub fn run_stream_with(
    role: Role,
    config: &Config,
    input: &[u8],
    sizes: &[usize],
    borrowed: Option<usize>,
) -> Outcome {
    let mut h = Harness::new(role, config.clone());
    let mut rest = input;
    let mut sizes = sizes.iter().copied().cycle();
    let mut buffered = false;
    while !rest.is_empty() {
        let n = sizes.next().unwrap_or(usize::MAX).clamp(1, rest.len());
        let (piece, tail) = rest.split_at(n);
        rest = tail;
        // Both ways in: receive(), and the receive buffer.
        let _ = if buffered {
            h.receive_buffered(piece)
        } else {
            h.receive(piece)
        };
        buffered = !buffered;
        loop {
            if let Some(max) = borrowed {
                h.receive_with(max);
            }
            let Some(ev) = h.poll_event() else { break };
            let _ = match ev {
                Message::Text(t) => h.command(Command::Text(t.as_str())),
                Message::Binary(b) => h.command(Command::Message(Message::Binary(b))),
                _ => Ok(()),
            };
            if borrowed.is_some_and(|max| h.conn.buffered_amount() >= max) {
                h.transmit(usize::MAX);
            }
        }
        h.transmit(usize::MAX);
    }
    let _ = h.receive_eof();
    h.drain();
    h.finish();
    Outcome {
        events: h.events,
        state: h.conn.state().clone(),
        written: h.checker.events,
    }
}

/// The piece sizes one byte describes: 1 and 3 for 0, else a pair from its two nibbles.
pub fn piece_sizes(b: u8) -> [usize; 2] {
    [usize::from(b & 0xf) + 1, (usize::from(b >> 4) + 1) * 3]
}

/// The byte-stream targets: one config, the stream whole and in pieces, same outcome.
pub fn run_bytes(role: Role, data: &[u8]) {
    let mut u = Unstructured::new(data);
    let config = config(&mut u);
    let sizes = piece_sizes(byte(&mut u));
    let input = u.take_rest();
    let whole = run_stream(role, &config, input, &[usize::MAX]);
    let pieces = run_stream(role, &config, input, &sizes);
    assert_eq!(
        whole, pieces,
        "the outcome depends on how the input was split"
    );
    // Whole small messages taken borrowed, with the echo queue bounded by the first size.
    let borrowed = run_stream_with(role, &config, input, &sizes, Some(sizes[0] * 16));
    assert_eq!(
        whole, borrowed,
        "the outcome depends on taking messages with receive_with"
    );
}

/// Replaces every `{ACCEPT}` in `input` with `accept` (the handshake targets cannot guess a
/// random key's answer).
pub fn substitute(input: &[u8], placeholder: &[u8], accept: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len() + 32);
    let mut i = 0;
    while i < input.len() {
        if input[i..].starts_with(placeholder) {
            out.extend_from_slice(accept);
            i += placeholder.len();
        } else {
            out.push(input[i]);
            i += 1;
        }
    }
    out
}

/// Checks an agreement against the policy it was made under (either side).
pub fn check_agreement(p: &DeflateParams, policy: &DeflateConfig) {
    let clamp = |b: u8| b.clamp(8, 15);
    assert!((8..=15).contains(&p.server_max_window_bits), "{p:?}");
    assert!((8..=15).contains(&p.client_max_window_bits), "{p:?}");
    assert!(
        p.server_max_window_bits <= clamp(policy.server_max_window_bits),
        "{p:?} {policy:?}"
    );
    assert!(
        p.client_max_window_bits <= clamp(policy.client_max_window_bits),
        "{p:?} {policy:?}"
    );
    if policy.server_no_context_takeover {
        assert!(p.server_no_context_takeover, "{p:?} {policy:?}");
    }
    if policy.client_no_context_takeover {
        assert!(p.client_no_context_takeover, "{p:?} {policy:?}");
    }
}
