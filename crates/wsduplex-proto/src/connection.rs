//! The connection state machine after the opening handshake (RFC 6455 §5-§7).
//!
//! Call order: feed input with [`Connection::receive`] (or append to
//! [`Connection::receive_buffer`] and call [`Connection::receive_buffered`]), then drain
//! [`Connection::poll_event`], then write out [`Connection::poll_transmit`]. Commands
//! (`send_*`, `close`) only queue bytes; nothing happens until the caller writes them.

use crate::close::{CloseCode, CloseFrame};
use crate::deflate::{DeflateConfig, DeflateParams, Deflater, InflateError, Inflater};
use crate::error::{Error, ProtocolError, UsageError};
use crate::frame::{FrameHeader, OpCode};
use crate::mask::apply_mask;
use crate::message::{Message, MessageRef};
use crate::transmit::{Payload, Transmit};
use crate::utf8::{Utf8Bytes, Utf8Validator};
use bytes::{Buf, Bytes, BytesMut};

/// Whole messages shorter than this are handed out borrowed by [`Connection::receive_with`];
/// longer ones as a [`Message`], whose payload a reply can share: the size from which the
/// transmit queue takes a shared payload by reference.
const SMALL_MESSAGE: usize = crate::transmit::ZERO_COPY_MIN;

/// Which end of the connection this is; decides masking in both directions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Masks every frame it sends, rejects masked frames.
    Client,
    /// Sends unmasked frames, rejects unmasked frames.
    Server,
}

/// Limits and switches. The defaults accept what Autobahn|Testsuite sends (16 MiB messages).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Config {
    /// Largest accepted frame payload; larger fails with 1009 before anything is buffered.
    pub max_frame_size: u64,
    /// Largest accepted message (sum of its fragments); larger fails with 1009.
    pub max_message_size: u64,
    /// Most frames one message may arrive in; more fails with 1009 "too many fragments".
    /// Bounds the work a flood of tiny fragments costs (the message size bounds only its
    /// memory). The default, 131,072, is twice what a 4 MiB message sent in 64-byte fragments
    /// takes (Autobahn cases 9.3.1 and 9.4.1 send 65,537 frames); `u32::MAX`: no limit.
    pub max_fragments: u32,
    /// Split outgoing messages into frames of at most this many bytes (`None`: never split).
    pub fragment_size: Option<usize>,
    /// Accept unmasked frames from a client. RFC 6455 §5.1 says a server MUST NOT: only for
    /// testing against broken peers.
    pub dangerous_accept_unmasked_frames: bool,
    /// permessage-deflate as agreed in the opening handshake (`None`: not negotiated; RSV1
    /// then fails the connection). [`Config::max_message_size`] applies to the inflated size.
    pub deflate: Option<DeflateParams>,
    /// zlib level for outgoing compressed messages, 0 to 9.
    pub compression_level: u32,
    /// With deflate agreed, messages shorter than this are sent uncompressed.
    pub compression_threshold: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_frame_size: 16 << 20,
            max_message_size: 16 << 20,
            max_fragments: 1 << 17,
            fragment_size: None,
            dangerous_accept_unmasked_frames: false,
            deflate: None,
            compression_level: DeflateConfig::default().level,
            compression_threshold: DeflateConfig::default().threshold,
        }
    }
}

impl Config {
    /// Sets [`Config::max_frame_size`].
    pub fn max_frame_size(mut self, n: u64) -> Self {
        self.max_frame_size = n;
        self
    }

    /// Sets [`Config::max_message_size`].
    pub fn max_message_size(mut self, n: u64) -> Self {
        self.max_message_size = n;
        self
    }

    /// Sets [`Config::max_fragments`].
    pub fn max_fragments(mut self, n: u32) -> Self {
        self.max_fragments = n;
        self
    }

    /// Sets [`Config::deflate`] to what the handshake agreed, and the compression level and
    /// threshold from this end's policy.
    pub fn deflate(mut self, agreed: Option<DeflateParams>, policy: &DeflateConfig) -> Self {
        self.deflate = agreed;
        self.compression_level = policy.level;
        self.compression_threshold = policy.threshold;
        self
    }

    /// Sets [`Config::fragment_size`].
    pub fn fragment_size(mut self, n: Option<usize>) -> Self {
        self.fragment_size = n.filter(|&n| n > 0);
        self
    }
}

/// Where the closing handshake stands.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum State {
    /// Messages flow both ways.
    Open,
    /// This end sent a close frame and waits for the peer's; incoming messages still arrive.
    Closing,
    /// Both close frames are sent (or queued) and received: the transport may be closed.
    Closed,
    /// The connection failed; a close frame with the error's code may be queued.
    Failed(ProtocolError),
}

/// The frame currently arriving.
struct RxFrame {
    header: FrameHeader,
    /// Payload bytes at the front of `rx` that are already unmasked (and validated).
    done: usize,
}

impl RxFrame {
    fn len(&self) -> usize {
        self.header.payload_len as usize
    }
}

/// The data message currently arriving.
struct RxMessage {
    text: bool,
    /// Fragments received so far (empty until a second fragment arrives).
    buf: BytesMut,
    /// Bytes received so far, fragments included.
    len: u64,
    /// Frames received so far.
    fragments: u32,
    utf8: Utf8Validator,
    /// RSV1 was set on the first frame: the payload is inflated into the deflate state's
    /// `inflated` as it arrives (RFC 7692 §6.2).
    compressed: bool,
}

/// The permessage-deflate codecs, present only when the extension was agreed (boxed: a
/// connection without it pays one pointer).
struct DeflateState {
    deflater: Deflater,
    inflater: Inflater,
    threshold: usize,
    /// The compressed message arriving, inflated so far (here, not in [`RxMessage`]: a
    /// connection without the extension has no use for it).
    inflated: Vec<u8>,
}

impl DeflateState {
    fn new(role: Role, params: &DeflateParams, config: &Config) -> Self {
        let (own_bits, own_reset, peer_bits, peer_reset) = match role {
            Role::Server => (
                params.server_max_window_bits,
                params.server_no_context_takeover,
                params.client_max_window_bits,
                params.client_no_context_takeover,
            ),
            Role::Client => (
                params.client_max_window_bits,
                params.client_no_context_takeover,
                params.server_max_window_bits,
                params.server_no_context_takeover,
            ),
        };
        Self {
            deflater: Deflater::new(config.compression_level, own_bits, own_reset),
            inflater: Inflater::new(peer_bits, peer_reset),
            threshold: config.compression_threshold,
            inflated: Vec::new(),
        }
    }
}

/// A WebSocket connection after the handshake, as pure logic.
pub struct Connection {
    role: Role,
    /// Read once per frame header at most, never written: kept out of line, so that every
    /// connection's driver (a task per connection) holds a pointer instead of 56 bytes.
    config: Box<Config>,
    state: State,
    rx: BytesMut,
    frame: Option<RxFrame>,
    message: Option<RxMessage>,
    /// The decoded event not yet taken. Decoding stops at each event, so there is never
    /// more than one (and no queue to allocate per connection).
    event: Option<Message>,
    tx: Transmit,
    deflate: Option<Box<DeflateState>>,
    /// The code of the close frame queued (1005 for one without a code; 0: none yet).
    close_sent: u16,
    /// The code of the close frame received (1005 for one without a code; 0: none yet).
    close_received: u16,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("role", &self.role)
            .field("state", &self.state)
            .field("buffered_in", &self.rx.len())
            .field("buffered_out", &self.tx.len())
            .finish()
    }
}

impl Connection {
    /// A connection whose opening handshake has completed.
    pub fn new(role: Role, config: Config) -> Self {
        let deflate = config
            .deflate
            .as_ref()
            .map(|p| Box::new(DeflateState::new(role, p, &config)));
        Self {
            role,
            config: Box::new(config),
            state: State::Open,
            rx: BytesMut::new(),
            frame: None,
            message: None,
            event: None,
            tx: Transmit::default(),
            deflate,
            close_sent: 0,
            close_received: 0,
        }
    }

    /// This end's role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Where the closing handshake stands.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// The code of the close frame this end sent (queued), if it sent one:
    /// [`CloseCode::NO_STATUS_RECEIVED`] (1005) stands for a close frame without a code.
    pub fn sent_close_code(&self) -> Option<CloseCode> {
        (self.close_sent != 0).then(|| CloseCode::new(self.close_sent))
    }

    /// The code of the close frame the peer sent, if one arrived (1005: one without a code).
    pub fn received_close_code(&self) -> Option<CloseCode> {
        (self.close_received != 0).then(|| CloseCode::new(self.close_received))
    }

    /// Feeds bytes read from the transport, then processes them.
    ///
    /// Next: drain [`Connection::poll_event`], then write [`Connection::poll_transmit`]
    /// (a ping's pong or a close reply may be queued). On `Err`, events decoded before the
    /// error are still queued, a close frame may be owed, and every later call fails the same
    /// way: write out what is queued, then close the transport.
    pub fn receive(&mut self, data: &[u8]) -> Result<(), Error> {
        if matches!(self.state, State::Open | State::Closing) {
            self.rx.extend_from_slice(data);
        }
        self.receive_buffered()
    }

    /// The receive buffer, for reading from the transport without a copy: append to it, then
    /// call [`Connection::receive_buffered`]. [`Connection::receive_hint`] says how much
    /// room is worth reserving.
    pub fn receive_buffer(&mut self) -> &mut BytesMut {
        &mut self.rx
    }

    /// Bytes still needed to finish the frame in progress (at least a header's worth).
    pub fn receive_hint(&self) -> usize {
        match &self.frame {
            Some(f) => f.len().saturating_sub(self.rx.len()),
            None => 14,
        }
    }

    /// Processes bytes appended to [`Connection::receive_buffer`]; see
    /// [`Connection::receive`] for what to do next.
    ///
    /// Decoding stops at the first event and resumes in [`Connection::poll_event`]: what the
    /// application sends in answer to a message is queued before anything the rest of the
    /// input makes this end send (a pong, or the close frame of an error that follows).
    pub fn receive_buffered(&mut self) -> Result<(), Error> {
        loop {
            // The state first: `receive_eof` can fail the connection while an event waits,
            // and failure is sticky.
            match &self.state {
                State::Failed(e) => return Err(e.clone().into()),
                // RFC 6455 §5.5.1: after the peer's close, nothing it sends is data.
                State::Closed => {
                    self.rx.clear();
                    return Ok(());
                }
                State::Open | State::Closing => {}
            }
            if self.event.is_some() {
                return Ok(());
            }
            match self.step() {
                Ok(true) => {}
                Ok(false) => return Ok(()),
                Err(e) => return Err(self.fail(e)),
            }
        }
    }

    /// The transport reached end of file. Fails with [`ProtocolError::UnexpectedEof`] unless
    /// the closing handshake was complete.
    pub fn receive_eof(&mut self) -> Result<(), Error> {
        match &self.state {
            State::Closed => Ok(()),
            State::Failed(e) => Err(e.clone().into()),
            State::Open | State::Closing => {
                // The peer is gone: no close frame can reach it (and 1006 is never sent).
                self.state = State::Failed(ProtocolError::UnexpectedEof);
                Err(ProtocolError::UnexpectedEof.into())
            }
        }
    }

    /// The next received message, ping, pong or close, decoding buffered input as needed.
    ///
    /// `None`: nothing more until more input arrives, or the connection is finished; check
    /// [`Connection::state`] (an error found while decoding shows there).
    pub fn poll_event(&mut self) -> Option<Message> {
        if self.event.is_none() && !self.rx.is_empty() {
            // The error, if any, is recorded in the state.
            let _ = self.receive_buffered();
        }
        self.event.take()
    }

    /// Hands the whole small data messages at the front of the receive buffer to `f`,
    /// borrowed from it, each with a [`Sender`] for replies: no allocation, no reference
    /// count, no copy but the unmasking in place. Returns how many `f` got.
    ///
    /// It stops before anything that needs more: a fragment, a control frame, a compressed
    /// message, one of 16 KiB or more (a [`Message`] shares its payload, so a large reply can
    /// be queued without a copy), a frame not yet complete, a frame that breaks a rule; and
    /// once [`Connection::buffered_amount`] reaches `max_buffered`, or `f` closes. Call
    /// [`Connection::poll_event`] next: it decodes whatever stopped it as usual (and an
    /// error there is the same error either way). Invalid UTF-8 fails here, as it would there.
    pub fn receive_with<F>(&mut self, max_buffered: usize, mut f: F) -> Result<usize, Error>
    where
        F: FnMut(MessageRef<'_>, Sender<'_>),
    {
        // Between the fragments of a message, nothing can be whole.
        if self.state != State::Open
            || self.event.is_some()
            || (self.message.is_some() && self.frame.is_none())
        {
            return Ok(0);
        }
        // Taken out for the batch, so that a message can borrow it while `f` queues replies.
        let mut rx = std::mem::take(&mut self.rx);
        let (mut at, mut count) = (0, 0);
        let result = loop {
            if self.tx.len() >= max_buffered {
                break Ok(());
            }
            let (text, start, len) = if self.frame.is_some() {
                // Only first: a frame that `poll_event` began before all of it had arrived.
                match self.begun_small_frame(&mut rx) {
                    Some(begun) => begun,
                    None => break Ok(()),
                }
            } else {
                let Some((text, start, len, mask)) = self.small_frame(&rx[at..]) else {
                    break Ok(());
                };
                let start = at + start;
                if let Some(key) = mask {
                    crate::mask::apply_mask_small(&mut rx[start..start + len], key);
                }
                (text, start, len)
            };
            at = start + len;
            let payload = &rx[start..at];
            let msg = if text {
                match crate::utf8::validate_str(payload) {
                    Ok(text) => MessageRef::Text(text),
                    Err(_) => break Err(ProtocolError::InvalidUtf8),
                }
            } else {
                MessageRef::Binary(payload)
            };
            count += 1;
            f(msg, Sender { conn: self });
            if self.state != State::Open {
                break Ok(());
            }
        };
        rx.advance(at);
        self.rx = rx;
        match result {
            Ok(()) => Ok(count),
            Err(e) => Err(self.fail(e)),
        }
    }

    /// The header of a whole, final, uncompressed text or binary frame under
    /// [`SMALL_MESSAGE`] at the front of `buf`, whose payload is in `buf` too, and that
    /// breaks no rule: (text, payload offset, payload length, mask). `None` for anything
    /// else, which [`Connection::step`] decodes. The same checks as `FrameHeader::decode`,
    /// `check_frame` and `begin_frame` make, reduced to what such a frame can fail.
    #[inline]
    fn small_frame(&self, buf: &[u8]) -> Option<(bool, usize, usize, Option<[u8; 4]>)> {
        let (&b0, &b1) = (buf.first()?, buf.get(1)?);
        // FIN, no RSV bits, text or binary: anything else is a fragment, compressed, a
        // control frame or an error.
        let text = match b0 {
            0x81 => true,
            0x82 => false,
            _ => return None,
        };
        // RFC 6455 §5.1: masked from a client, unmasked from a server.
        let masked = b1 & 0x80 != 0;
        if masked != (self.role == Role::Server) {
            return None;
        }
        let (len, mut start) = match b1 & 0x7F {
            126 => (u16::from_be_bytes([*buf.get(2)?, *buf.get(3)?]) as usize, 4),
            127 => return None, // 64 KiB or more (or an invalid length)
            n => (n as usize, 2),
        };
        let mask = if masked {
            let key = buf.get(start..start + 4)?;
            start += 4;
            Some([key[0], key[1], key[2], key[3]])
        } else {
            None
        };
        let fits = len < SMALL_MESSAGE
            && len as u64 <= self.config.max_frame_size
            && len as u64 <= self.config.max_message_size
            && buf.len() - start >= len;
        fits.then_some((text, start, len, mask))
    }

    /// The frame in progress, if it is a small whole message (as [`Connection::small_frame`]
    /// takes) that has now arrived: it began before all of it had, so its header is
    /// consumed and its first `done` bytes are unmasked and checked (UTF-8 errors fail as
    /// they arrive). Unmasks the rest and ends the frame and its message: (text, 0, length).
    fn begun_small_frame(&mut self, rx: &mut BytesMut) -> Option<(bool, usize, usize)> {
        let frame = self.frame.as_ref()?;
        let h = &frame.header;
        let small = h.fin
            && !h.rsv1
            && matches!(h.opcode, OpCode::Text | OpCode::Binary)
            && frame.len() < SMALL_MESSAGE
            && rx.len() >= frame.len();
        if !small {
            return None;
        }
        let (len, done) = (frame.len(), frame.done);
        if let Some(key) = h.mask {
            apply_mask(&mut rx[done..len], key, done);
        }
        let text = h.opcode == OpCode::Text;
        self.frame = None;
        self.message = None;
        Some((text, 0, len))
    }

    /// The sending half of the connection, as [`Connection::receive_with`] hands it out.
    pub fn sender(&mut self) -> Sender<'_> {
        Sender { conn: self }
    }

    /// Bytes to write to the transport, if any: write them (vectored writes welcome) and
    /// [`Buf::advance`] by what the transport accepted.
    pub fn poll_transmit(&mut self) -> Option<&mut Transmit> {
        if self.tx.is_empty() {
            None
        } else {
            Some(&mut self.tx)
        }
    }

    /// Bytes queued but not yet written (the browser's `bufferedAmount`).
    pub fn buffered_amount(&self) -> usize {
        self.tx.len()
    }

    /// The receive buffer, taken out when it is empty and no frame is in progress (one in
    /// progress keeps the room it was given for the rest of it): a driver can keep it for
    /// this or another connection instead of freeing it with [`Connection::shrink_buffers`],
    /// and put it back through [`Connection::receive_buffer`].
    pub fn take_receive_buffer(&mut self) -> Option<BytesMut> {
        (self.rx.is_empty() && self.rx.capacity() > 0 && self.frame.is_none())
            .then(|| std::mem::take(&mut self.rx))
    }

    /// The transmit queue's buffer, taken out while nothing is queued: a driver can keep it
    /// for this or another connection ([`Connection::give_transmit_buffer`]) instead of
    /// freeing it with [`Connection::shrink_buffers`].
    pub fn take_transmit_buffer(&mut self) -> Option<BytesMut> {
        self.tx.take_buffer()
    }

    /// Gives the transmit queue the empty buffer `make` returns, if it has none.
    pub fn give_transmit_buffer(&mut self, make: impl FnOnce() -> BytesMut) {
        self.tx.give_buffer(make)
    }

    /// Frees the receive and transmit buffers if they are empty (for idle connections).
    pub fn shrink_buffers(&mut self) {
        drop(self.take_receive_buffer());
        self.tx.shrink();
        if let Some(d) = self.deflate.as_mut() {
            d.deflater.shrink();
            if self.message.is_none() {
                d.inflater.shrink();
            }
        }
    }

    /// Queues a text message.
    #[inline]
    pub fn send_text(&mut self, text: &str) -> Result<(), Error> {
        self.send_data(OpCode::Text, Payload::Borrowed(text.as_bytes()))
    }

    /// Queues a binary message.
    #[inline]
    pub fn send_binary(&mut self, data: &[u8]) -> Result<(), Error> {
        self.send_data(OpCode::Binary, Payload::Borrowed(data))
    }

    /// Queues a message; large unmasked payloads are queued without a copy.
    ///
    /// `Ping`/`Pong` queue control frames; `Close` starts the closing handshake.
    pub fn send(&mut self, message: Message) -> Result<(), Error> {
        match message {
            Message::Text(t) => self.send_data(OpCode::Text, Payload::Shared(t.into_bytes())),
            Message::Binary(b) => self.send_data(OpCode::Binary, Payload::Shared(b)),
            Message::Ping(b) => self.send_ping(&b),
            Message::Pong(b) => self.send_pong(&b),
            Message::Close(Some(f)) => self.close(f.code, f.reason.as_str()),
            Message::Close(None) => self.close_frame(None),
        }
    }

    /// Queues a ping (at most 125 bytes).
    pub fn send_ping(&mut self, payload: &[u8]) -> Result<(), Error> {
        self.send_control(OpCode::Ping, payload)
    }

    /// Queues an unsolicited pong (at most 125 bytes), e.g. as a unidirectional heartbeat.
    pub fn send_pong(&mut self, payload: &[u8]) -> Result<(), Error> {
        self.send_control(OpCode::Pong, payload)
    }

    /// Starts the closing handshake with `code` and a reason of at most 123 bytes.
    ///
    /// Nothing else can be sent afterwards; messages keep arriving until the peer's close.
    /// Calling it again while closing does nothing.
    pub fn close(&mut self, code: CloseCode, reason: &str) -> Result<(), Error> {
        if !code.is_sendable() {
            return Err(UsageError::InvalidCloseCode(code.as_u16()).into());
        }
        if reason.len() > 123 {
            return Err(UsageError::ControlPayloadTooLong {
                len: reason.len() + 2,
            }
            .into());
        }
        self.close_frame(Some((code, reason)))
    }

    fn close_frame(&mut self, body: Option<(CloseCode, &str)>) -> Result<(), Error> {
        match &self.state {
            State::Open => {}
            State::Closing | State::Closed => return Ok(()),
            State::Failed(e) => return Err(e.clone().into()),
        }
        self.queue_close(body);
        self.state = State::Closing;
        Ok(())
    }

    fn queue_close(&mut self, body: Option<(CloseCode, &str)>) {
        self.close_sent = body.map_or(1005, |(code, _)| code.as_u16());
        let mut buf = [0u8; 125];
        let len = match body {
            None => 0,
            Some((code, reason)) => {
                buf[..2].copy_from_slice(&code.as_u16().to_be_bytes());
                buf[2..2 + reason.len()].copy_from_slice(reason.as_bytes());
                2 + reason.len()
            }
        };
        self.push_frame(OpCode::Close, true, Payload::Borrowed(&buf[..len]));
    }

    fn send_control(&mut self, opcode: OpCode, payload: &[u8]) -> Result<(), Error> {
        if payload.len() > 125 {
            return Err(UsageError::ControlPayloadTooLong { len: payload.len() }.into());
        }
        self.check_open()?;
        self.push_frame(opcode, true, Payload::Borrowed(payload));
        Ok(())
    }

    fn check_open(&self) -> Result<(), Error> {
        match &self.state {
            State::Open => Ok(()),
            // RFC 6455 §5.5.1: after sending a close, an endpoint MUST NOT send data.
            State::Closing | State::Closed => Err(UsageError::Closed.into()),
            State::Failed(e) => Err(e.clone().into()),
        }
    }

    /// Queues a data message. The common case of a server, one unmasked, uncompressed frame,
    /// is inlined where it is sent; the rest is out of line.
    #[inline]
    fn send_data(&mut self, opcode: OpCode, payload: Payload<'_>) -> Result<(), Error> {
        if matches!(self.state, State::Open)
            && self.role == Role::Server
            && self.deflate.is_none()
            && self
                .config
                .fragment_size
                .is_none_or(|size| payload.as_slice().len() <= size)
        {
            self.tx.push_unmasked(opcode, payload);
            return Ok(());
        }
        self.send_data_framed(opcode, payload)
    }

    /// [`Connection::send_data`] for a client (masked), with compression or fragmentation,
    /// and when the state does not allow sending.
    fn send_data_framed(&mut self, opcode: OpCode, payload: Payload<'_>) -> Result<(), Error> {
        self.check_open()?;
        let compress = self
            .deflate
            .as_ref()
            .is_some_and(|d| payload.as_slice().len() >= d.threshold);
        if compress {
            // Taken out for the duration, so the compressed bytes can be borrowed while frames
            // are queued (moving the box allocates nothing).
            let mut d = self.deflate.take().expect("checked above");
            let compressed = d.deflater.compress(payload.as_slice());
            // RFC 7692 §6.1: RSV1 on the first frame of a compressed message only.
            self.queue_message(opcode, true, Payload::Borrowed(compressed));
            self.deflate = Some(d);
        } else {
            self.queue_message(opcode, false, payload);
        }
        Ok(())
    }

    /// Queues a data message, split into frames of [`Config::fragment_size`].
    fn queue_message(&mut self, opcode: OpCode, rsv1: bool, payload: Payload<'_>) {
        let len = payload.as_slice().len();
        match self.config.fragment_size {
            Some(size) if len > size => {
                let whole = payload.as_slice();
                let mut first = true;
                let mut off = 0;
                while off < len {
                    let end = (off + size).min(len);
                    let op = if first { opcode } else { OpCode::Continuation };
                    let piece = match &payload {
                        Payload::Shared(b) => Payload::Shared(b.slice(off..end)),
                        Payload::Borrowed(_) => Payload::Borrowed(&whole[off..end]),
                    };
                    self.push_frame_rsv1(op, end == len, rsv1 && first, piece);
                    first = false;
                    off = end;
                }
            }
            _ => self.push_frame_rsv1(opcode, true, rsv1, payload),
        }
    }

    fn push_frame(&mut self, opcode: OpCode, fin: bool, payload: Payload<'_>) {
        self.push_frame_rsv1(opcode, fin, false, payload)
    }

    fn push_frame_rsv1(&mut self, opcode: OpCode, fin: bool, rsv1: bool, payload: Payload<'_>) {
        let mask = match self.role {
            // RFC 6455 §5.3: a fresh, unpredictable key for every frame.
            Role::Client => Some(rand::random::<[u8; 4]>()),
            Role::Server => None,
        };
        let header = FrameHeader {
            fin,
            rsv1,
            rsv2: false,
            rsv3: false,
            opcode,
            mask,
            payload_len: payload.as_slice().len() as u64,
        };
        self.tx.push_frame(&header, payload);
    }

    /// Records a failure, owes the peer a close frame if none was sent, drops pending input.
    fn fail(&mut self, e: ProtocolError) -> Error {
        if self.state == State::Open {
            // RFC 6455 §7.1.7: _Fail the WebSocket Connection_ sends a close frame first.
            self.queue_close(Some((e.close_code(), e.close_reason())));
        }
        self.state = State::Failed(e.clone());
        self.rx.clear();
        self.frame = None;
        self.drop_message();
        e.into()
    }

    /// Decodes as far as the buffer allows. `Ok(true)`: a frame completed, go on.
    fn step(&mut self) -> Result<bool, ProtocolError> {
        if self.frame.is_none() {
            let Some((header, n)) = FrameHeader::decode(&self.rx)? else {
                return Ok(false);
            };
            self.check_frame(&header)?;
            let whole = self.message.is_none()
                && header.fin
                && !header.rsv1
                && matches!(header.opcode, OpCode::Text | OpCode::Binary)
                && header.payload_len <= self.config.max_message_size
                && (self.rx.len() - n) as u64 >= header.payload_len;
            if whole {
                self.whole_message(&header, n)?;
                return Ok(true);
            }
            self.begin_frame(&header)?;
            self.rx.advance(n);
            self.frame = Some(RxFrame { header, done: 0 });
        }
        let frame = self.frame.as_mut().expect("frame set above");
        let avail = self.rx.len().min(frame.len());
        if avail > frame.done {
            let fresh = &mut self.rx[frame.done..avail];
            if let Some(key) = frame.header.mask {
                apply_mask(fresh, key, frame.done);
            }
            // Validate text as it arrives, so invalid UTF-8 fails at once (Autobahn 6.4.*).
            if !frame.header.opcode.is_control() {
                if let Some(msg) = self.message.as_mut() {
                    if msg.compressed {
                        let d = self.deflate.as_mut().expect("RSV1 checked in check_frame");
                        inflate(d, msg, fresh, self.config.max_message_size)?;
                    } else if msg.text {
                        msg.utf8
                            .feed(fresh)
                            .map_err(|_| ProtocolError::InvalidUtf8)?;
                    }
                }
            }
            frame.done = avail;
        }
        if frame.done < frame.len() {
            return Ok(false);
        }
        let frame = self.frame.take().expect("frame set above");
        let payload = self.rx.split_to(frame.len());
        self.on_frame(frame.header, payload)?;
        Ok(true)
    }

    /// The common case of small messages: a whole unfragmented, uncompressed text or binary
    /// message is buffered. It is unmasked, checked and handed out at once, without the
    /// bookkeeping of a message that arrives in pieces (the same checks, in the same order).
    fn whole_message(&mut self, h: &FrameHeader, n: usize) -> Result<(), ProtocolError> {
        self.rx.advance(n);
        let mut payload = self.rx.split_to(h.payload_len as usize);
        if let Some(key) = h.mask {
            apply_mask(&mut payload, key, 0);
        }
        if h.opcode == OpCode::Text {
            crate::utf8::validate(&payload).map_err(|_| ProtocolError::InvalidUtf8)?;
            self.emit(Message::Text(Utf8Bytes::from_validated(payload.freeze())));
        } else {
            self.emit(Message::Binary(payload.freeze()));
        }
        Ok(())
    }

    /// The checks of a frame header that need no message state: reserved bits, masking,
    /// control frame rules, the frame size.
    fn check_frame(&self, h: &FrameHeader) -> Result<(), ProtocolError> {
        // RFC 6455 §5.2: RSV bits MUST be 0 unless an extension defines them. RFC 7692 §6:
        // permessage-deflate defines RSV1, on the first frame of a data message only.
        if h.rsv2 || h.rsv3 {
            return Err(ProtocolError::ReservedBits);
        }
        if h.rsv1 && (self.deflate.is_none() || !matches!(h.opcode, OpCode::Text | OpCode::Binary))
        {
            return Err(ProtocolError::ReservedBits);
        }
        match (self.role, h.mask.is_some()) {
            // RFC 6455 §5.1: a server MUST close on an unmasked frame...
            (Role::Server, false) if !self.config.dangerous_accept_unmasked_frames => {
                return Err(ProtocolError::UnmaskedFrame)
            }
            // ...and a client MUST close on a masked one.
            (Role::Client, true) => return Err(ProtocolError::MaskedFrame),
            _ => {}
        }
        if h.opcode.is_control() {
            // RFC 6455 §5.5: control frames are at most 125 bytes and never fragmented.
            if h.payload_len > 125 {
                return Err(ProtocolError::ControlFrameTooLong { len: h.payload_len });
            }
            if !h.fin {
                return Err(ProtocolError::FragmentedControlFrame);
            }
            return Ok(());
        }
        if h.payload_len > self.config.max_frame_size {
            return Err(ProtocolError::FrameTooBig {
                size: h.payload_len,
                max: self.config.max_frame_size,
            });
        }
        Ok(())
    }

    /// Checks a data frame against the message in progress (size, fragments, continuation
    /// rules) and starts or extends it. Control frames pass through.
    fn begin_frame(&mut self, h: &FrameHeader) -> Result<(), ProtocolError> {
        if h.opcode.is_control() {
            return Ok(());
        }
        let so_far = self.message.as_ref().map_or(0, |m| m.len);
        let size = so_far + h.payload_len;
        if size > self.config.max_message_size {
            return Err(ProtocolError::MessageTooBig {
                size,
                max: self.config.max_message_size,
            });
        }
        match (h.opcode, &mut self.message) {
            (OpCode::Continuation, Some(m)) => {
                if m.fragments >= self.config.max_fragments {
                    return Err(ProtocolError::TooManyFragments {
                        max: self.config.max_fragments,
                    });
                }
                m.fragments += 1;
                m.len = size;
            }
            (OpCode::Continuation, None) => return Err(ProtocolError::UnexpectedContinuation),
            (_, Some(_)) => return Err(ProtocolError::ExpectedContinuation),
            (op, None) => {
                self.message = Some(RxMessage {
                    text: op == OpCode::Text,
                    buf: BytesMut::new(),
                    len: size,
                    fragments: 1,
                    utf8: Utf8Validator::new(),
                    compressed: h.rsv1,
                })
            }
        }
        Ok(())
    }

    fn on_frame(&mut self, h: FrameHeader, payload: BytesMut) -> Result<(), ProtocolError> {
        match h.opcode {
            OpCode::Ping => {
                // RFC 6455 §5.5.2: answer with a pong carrying the same payload (not after
                // our close: nothing follows a close frame).
                if self.state == State::Open {
                    self.push_frame(OpCode::Pong, true, Payload::Borrowed(&payload));
                }
                self.emit(Message::Ping(payload.freeze()));
            }
            // RFC 6455 §5.5.3: an unsolicited pong needs no answer.
            OpCode::Pong => self.emit(Message::Pong(payload.freeze())),
            OpCode::Close => self.on_close(payload.freeze())?,
            OpCode::Text | OpCode::Binary | OpCode::Continuation => {
                if self.message.as_ref().is_some_and(|m| m.compressed) {
                    // The payload was inflated as it arrived.
                    if !h.fin {
                        return Ok(());
                    }
                    let mut msg = self.message.take().expect("checked above");
                    let d = self.deflate.as_mut().expect("RSV1 checked in check_frame");
                    let max = self.config.max_message_size;
                    let start = d.inflated.len();
                    d.inflater
                        .finish(&mut d.inflated, max)
                        .map_err(|e| inflate_error(e, max))?;
                    let data = Bytes::from(std::mem::take(&mut d.inflated));
                    if msg.text {
                        msg.utf8
                            .feed(&data[start..])
                            .and_then(|()| msg.utf8.finish())
                            .map_err(|_| ProtocolError::InvalidUtf8)?;
                        self.emit(Message::Text(Utf8Bytes::from_validated(data)));
                    } else {
                        self.emit(Message::Binary(data));
                    }
                    return Ok(());
                }
                if !h.fin {
                    let msg = self.message.as_mut().expect("checked in begin_frame");
                    msg.buf.extend_from_slice(&payload);
                    return Ok(());
                }
                let mut msg = self.message.take().expect("checked in begin_frame");
                let data = if msg.buf.is_empty() {
                    payload.freeze()
                } else {
                    msg.buf.extend_from_slice(&payload);
                    msg.buf.freeze()
                };
                if msg.text {
                    msg.utf8.finish().map_err(|_| ProtocolError::InvalidUtf8)?;
                    self.emit(Message::Text(Utf8Bytes::from_validated(data)));
                } else {
                    self.emit(Message::Binary(data));
                }
            }
        }
        Ok(())
    }

    /// Drops the data message in progress, if any.
    fn drop_message(&mut self) {
        self.message = None;
        if let Some(d) = self.deflate.as_mut() {
            d.inflated = Vec::new();
        }
    }

    fn emit(&mut self, event: Message) {
        debug_assert!(self.event.is_none(), "decoding stops at each event");
        self.event = Some(event);
    }

    fn on_close(&mut self, payload: Bytes) -> Result<(), ProtocolError> {
        let frame = match payload.len() {
            0 => None,
            // RFC 6455 §5.5.1: a body starts with a 2-byte code.
            1 => return Err(ProtocolError::InvalidClosePayload),
            _ => {
                let code = CloseCode::new(u16::from_be_bytes([payload[0], payload[1]]));
                if !code.is_sendable() {
                    return Err(ProtocolError::InvalidCloseCode(code.as_u16()));
                }
                let reason = Utf8Bytes::try_from_bytes(payload.slice(2..))
                    .map_err(|_| ProtocolError::InvalidUtf8)?;
                Some(CloseFrame { code, reason })
            }
        };
        self.close_received = frame.as_ref().map_or(1005, |f| f.code.as_u16());
        if self.state == State::Open {
            // RFC 6455 §5.5.1: answer a close with a close, echoing the status code.
            self.queue_close(frame.as_ref().map(|f| (f.code, "")));
        }
        self.state = State::Closed;
        self.drop_message();
        self.frame = None;
        self.rx.clear();
        self.emit(Message::Close(frame));
        Ok(())
    }
}

/// What can be done with a connection while a received message borrows its receive
/// buffer: send, close, and look at the state. Handed out by [`Connection::receive_with`]
/// and [`Connection::sender`].
pub struct Sender<'a> {
    conn: &'a mut Connection,
}

impl Sender<'_> {
    /// Queues a text message; see [`Connection::send_text`].
    pub fn send_text(&mut self, text: &str) -> Result<(), Error> {
        self.conn.send_text(text)
    }

    /// Queues a binary message; see [`Connection::send_binary`].
    pub fn send_binary(&mut self, data: &[u8]) -> Result<(), Error> {
        self.conn.send_binary(data)
    }

    /// Queues a borrowed message (copied into the queue), of the same type.
    #[inline]
    pub fn send_ref(&mut self, msg: MessageRef<'_>) -> Result<(), Error> {
        match msg {
            MessageRef::Text(t) => self.conn.send_text(t),
            MessageRef::Binary(b) => self.conn.send_binary(b),
        }
    }

    /// Queues a message; see [`Connection::send`].
    pub fn send(&mut self, msg: Message) -> Result<(), Error> {
        self.conn.send(msg)
    }

    /// Starts the closing handshake; see [`Connection::close`].
    pub fn close(&mut self, code: CloseCode, reason: &str) -> Result<(), Error> {
        self.conn.close(code, reason)
    }

    /// Bytes queued but not yet written.
    pub fn buffered_amount(&self) -> usize {
        self.conn.buffered_amount()
    }

    /// Where the closing handshake stands.
    pub fn state(&self) -> &State {
        &self.conn.state
    }
}

/// Inflates a piece of a compressed message, checking the inflated size and, for text, the
/// UTF-8 of what came out (so invalid text fails before the rest is inflated).
fn inflate(
    d: &mut DeflateState,
    msg: &mut RxMessage,
    input: &[u8],
    max: u64,
) -> Result<(), ProtocolError> {
    let start = d.inflated.len();
    let inflated = d.inflater.inflate(input, &mut d.inflated, max);
    // What came out before an error is checked first: zlib inflates past bad text to the
    // corrupt block or the limit when they arrive in the same read, and which close code the
    // peer gets must not depend on how its bytes were split.
    if msg.text {
        msg.utf8
            .feed(&d.inflated[start..])
            .map_err(|_| ProtocolError::InvalidUtf8)?;
    }
    inflated.map_err(|e| inflate_error(e, max))
}

fn inflate_error(e: InflateError, max: u64) -> ProtocolError {
    match e {
        InflateError::TooBig { size } => ProtocolError::MessageTooBig { size, max },
        InflateError::Corrupt => ProtocolError::InvalidCompressedData,
    }
}

#[cfg(test)]
#[path = "connection_tests.rs"]
mod tests;
