//! A wire tracer: the bytes of one connection in, one description per frame out.
//!
//! It sees what a WebSocket endpoint sees, in both directions, without being one: feed it
//! the bytes each side sends ([`Tracer::receive`], in any pieces), and it yields the
//! opening handshake's two heads and then every frame as it was on the wire
//! ([`TraceEvent`]): header bits, masking key, length, the unmasked payload (a bounded
//! preview), the close code and reason, and for a compressed message what each frame
//! inflates to, with each direction's own permessage-deflate context (the agreement is read
//! from the `101` response, or given to [`Tracer::upgraded`]). Frames that break RFC 6455
//! carry the [`ProtocolError`] an endpoint would fail the connection with (and so its close
//! code); the tracer itself keeps reading, since it is not the one to close anything.
//!
//! Sans-IO like the rest of the crate: no clock (stamp events when you poll them), no
//! sockets. The `wsduplex` crate's `tap` module feeds it from a transport; `wsduplex relay
//! --trace` and `wsduplex client -vv` print what it yields.
//!
//! ```
//! use wsduplex_proto::trace::{Direction, TraceEvent, Tracer};
//!
//! let mut tracer = Tracer::upgraded(None);
//! // A server's unmasked text frame "hi", in two pieces.
//! tracer.receive(Direction::FromServer, &[0x81, 0x02, b'h']);
//! assert!(tracer.poll_event().is_none());
//! tracer.receive(Direction::FromServer, b"i");
//! match tracer.poll_event() {
//!     Some(TraceEvent::Frame(f)) => {
//!         assert!(f.fin && f.mask.is_none());
//!         assert_eq!(f.payload, b"hi");
//!     }
//!     other => panic!("{other:?}"),
//! }
//! ```

use crate::close::CloseCode;
use crate::deflate::{DeflateConfig, DeflateParams, Inflater};
use crate::error::ProtocolError;
use crate::frame::{FrameHeader, OpCode, MAX_HEADER_LEN};
use crate::mask::apply_mask;
use crate::utf8::Utf8Validator;
use std::collections::VecDeque;
use std::fmt;

/// Who sent the bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// The client (its frames are masked).
    FromClient,
    /// The server (its frames are not).
    FromServer,
}

/// What the tracer saw.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TraceEvent {
    /// An HTTP head of the opening handshake (the request, or the response), as text.
    Head {
        /// Who sent it.
        from: Direction,
        /// The head, without its final empty line.
        head: String,
    },
    /// A whole frame (reported once its last payload byte arrived).
    Frame(TracedFrame),
    /// Bytes that cannot be a frame (a reserved opcode, a bad length): this direction's
    /// framing is lost, and nothing more is reported for it.
    Lost {
        /// Who sent them.
        from: Direction,
        /// Why; its [`ProtocolError::close_code`] is what an endpoint closes with.
        error: ProtocolError,
    },
}

/// One frame as it was on the wire.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TracedFrame {
    /// Who sent it.
    pub from: Direction,
    /// Final fragment.
    pub fin: bool,
    /// RSV1 (permessage-deflate: the message is compressed, on its first frame).
    pub rsv1: bool,
    /// RSV2.
    pub rsv2: bool,
    /// RSV3.
    pub rsv3: bool,
    /// The opcode.
    pub opcode: OpCode,
    /// For a data frame, the opcode of its message (`Text` or `Binary`, also on
    /// continuations; `Continuation` if there was no message to continue); for a control
    /// frame, its own.
    pub message_opcode: OpCode,
    /// The masking key.
    pub mask: Option<[u8; 4]>,
    /// Header length in bytes (2 to 14).
    pub header_len: usize,
    /// Payload length in bytes.
    pub payload_len: u64,
    /// The unmasked payload, as sent (compressed, for a compressed message): its first
    /// [`Tracer::with_preview`] bytes, all of it for a control frame.
    pub payload: Vec<u8>,
    /// For a frame of a compressed message: what its payload inflated to.
    pub inflated: Option<Inflated>,
    /// For a close frame with a body: the code and the reason (lossy UTF-8).
    pub close: Option<(CloseCode, String)>,
    /// What this frame breaks, if anything; an endpoint fails the connection with its
    /// close code.
    pub error: Option<ProtocolError>,
}

impl TracedFrame {
    /// Whether [`payload`](Self::payload) holds less than the whole payload.
    pub fn is_truncated(&self) -> bool {
        (self.payload.len() as u64) < self.payload_len
    }
}

impl fmt::Debug for TracedFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TracedFrame")
            .field("from", &self.from)
            .field("fin", &self.fin)
            .field("rsv", &(self.rsv1, self.rsv2, self.rsv3))
            .field("opcode", &self.opcode)
            .field("masked", &self.mask.is_some())
            .field("payload_len", &self.payload_len)
            .field("inflated", &self.inflated)
            .field("close", &self.close)
            .field("error", &self.error)
            .finish()
    }
}

/// What one frame of a compressed message inflated to.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Inflated {
    /// Inflated bytes from this frame (the final frame includes the flush RFC 7692 §7.2.2
    /// appends).
    pub len: u64,
    /// Their first [`Tracer::with_preview`] bytes.
    pub data: Vec<u8>,
    /// On the final frame: the whole message's inflated length.
    pub message_len: Option<u64>,
}

impl fmt::Debug for Inflated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inflated")
            .field("len", &self.len)
            .field("message_len", &self.message_len)
            .finish()
    }
}

/// Payload bytes kept per frame by default.
pub const DEFAULT_PREVIEW: usize = 4096;

/// Largest opening-handshake head read before giving up on the direction.
const MAX_HEAD: usize = 64 * 1024;

/// Compressed input inflated per call: bounds what one call can produce (DEFLATE expands
/// at most about 1032 times) whatever the frame's size.
const INFLATE_STEP: usize = 1024;

/// The tracer of one connection, both directions.
#[derive(Debug)]
pub struct Tracer {
    sides: [Side; 2],
    /// The permessage-deflate agreement, once known.
    deflate: Option<DeflateParams>,
    preview: usize,
    events: VecDeque<TraceEvent>,
}

#[derive(Debug, PartialEq, Eq)]
enum Phase {
    /// Reading the opening handshake's head.
    Head,
    Frames,
    /// Framing lost, or the handshake did not upgrade: bytes are ignored.
    Done,
}

/// One direction.
struct Side {
    from: Direction,
    phase: Phase,
    /// The head so far, or the frame header so far.
    buf: Vec<u8>,
    frame: Option<TracedFrame>,
    /// Payload bytes of `frame` read so far.
    seen: u64,
    message: Option<MessageState>,
    inflater: Option<Inflater>,
}

impl fmt::Debug for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Side")
            .field("from", &self.from)
            .field("phase", &self.phase)
            .finish()
    }
}

/// The data message in progress in one direction.
struct MessageState {
    opcode: OpCode,
    compressed: bool,
    /// Text only, until the first error.
    utf8: Option<Utf8Validator>,
    inflated_len: u64,
    /// Inflating failed: later frames are not inflated.
    corrupt: bool,
}

impl Default for Tracer {
    fn default() -> Self {
        Self::new()
    }
}

impl Tracer {
    /// A tracer that reads the opening handshake first (the request from the client, the
    /// `101` from the server) and learns the permessage-deflate agreement from it.
    pub fn new() -> Self {
        Self {
            sides: [
                Side::new(Direction::FromClient),
                Side::new(Direction::FromServer),
            ],
            deflate: None,
            preview: DEFAULT_PREVIEW,
            events: VecDeque::new(),
        }
    }

    /// A tracer for a connection whose handshake is done: frames from the first byte, with
    /// this permessage-deflate agreement (`None`: not negotiated).
    pub fn upgraded(deflate: Option<DeflateParams>) -> Self {
        let mut t = Self::new();
        t.deflate = deflate;
        for side in &mut t.sides {
            side.phase = Phase::Frames;
        }
        t
    }

    /// Keeps up to `bytes` of each frame's payload (and of what it inflates to), instead
    /// of [`DEFAULT_PREVIEW`]. Control frames are always kept whole.
    pub fn with_preview(mut self, bytes: usize) -> Self {
        self.preview = bytes;
        self
    }

    /// Takes bytes `from` one side, in the order that side sent them; events become
    /// ready for [`Tracer::poll_event`] as frames complete.
    pub fn receive(&mut self, from: Direction, mut bytes: &[u8]) {
        let i = from as usize;
        while !bytes.is_empty() {
            match self.sides[i].phase {
                Phase::Done => return,
                Phase::Head => {
                    let side = &mut self.sides[i];
                    let before = side.buf.len();
                    side.buf.extend_from_slice(bytes);
                    let Some(end) = find_head_end(&side.buf, before) else {
                        if side.buf.len() > MAX_HEAD {
                            side.phase = Phase::Done;
                        }
                        return;
                    };
                    bytes = &bytes[end - before..];
                    let head = std::mem::take(&mut side.buf);
                    side.phase = Phase::Frames;
                    self.on_head(from, &head[..end]);
                }
                Phase::Frames => {
                    let used = self.frames(i, bytes);
                    bytes = &bytes[used..];
                }
            }
        }
    }

    /// The next event, in the order they completed.
    pub fn poll_event(&mut self) -> Option<TraceEvent> {
        self.events.pop_front()
    }

    /// The frame `from` is in the middle of: its header is read, its payload is not whole
    /// yet (`payload` holds what arrived, within the preview; `error` what its header
    /// broke). `None` between frames. Shows a large frame while it arrives.
    pub fn frame_in_progress(&self, from: Direction) -> Option<&TracedFrame> {
        self.sides[from as usize].frame.as_ref()
    }

    /// The permessage-deflate agreement in use, if any.
    pub fn deflate(&self) -> Option<&DeflateParams> {
        self.deflate.as_ref()
    }

    fn on_head(&mut self, from: Direction, head: &[u8]) {
        let text = String::from_utf8_lossy(head);
        let text = text.trim_end_matches(['\r', '\n']).to_string();
        if from == Direction::FromServer {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut resp = httparse::Response::new(&mut headers);
            let upgraded = matches!(resp.parse(head), Ok(httparse::Status::Complete(_)))
                && resp.code == Some(101);
            if upgraded {
                // Whatever the response says, as long as it parses: the tracer reports
                // what the endpoints will do, it does not judge the negotiation.
                let values = resp
                    .headers
                    .iter()
                    .filter(|h| h.name.eq_ignore_ascii_case("sec-websocket-extensions"))
                    .map(|h| h.value);
                self.deflate = DeflateConfig::default()
                    .accept_response(values)
                    .ok()
                    .flatten();
            } else {
                // No WebSocket follows (a refusal, a redirect): nothing is framed.
                for side in &mut self.sides {
                    side.phase = Phase::Done;
                }
            }
        }
        self.events.push_back(TraceEvent::Head { from, head: text });
    }

    /// Reads frame bytes from the start of `bytes`; returns how many were used.
    fn frames(&mut self, i: usize, bytes: &[u8]) -> usize {
        let (deflate, preview) = (self.deflate, self.preview);
        let side = &mut self.sides[i];
        let Some(frame) = &side.frame else {
            let before = side.buf.len();
            let take = (MAX_HEADER_LEN - before).min(bytes.len());
            side.buf.extend_from_slice(&bytes[..take]);
            return match FrameHeader::decode(&side.buf) {
                Ok(None) => take,
                Ok(Some((header, len))) => {
                    side.buf.clear();
                    side.start(header, len, deflate.as_ref());
                    if header.payload_len == 0 {
                        let event = side.finish(preview);
                        self.events.push_back(event);
                    }
                    len - before
                }
                Err(error) => {
                    side.phase = Phase::Done;
                    side.buf = Vec::new();
                    let from = side.from;
                    self.events.push_back(TraceEvent::Lost { from, error });
                    bytes.len()
                }
            };
        };
        let remaining = frame.payload_len - side.seen;
        let take = remaining.min(bytes.len() as u64) as usize;
        side.payload(&bytes[..take], preview);
        if take as u64 == remaining {
            let event = side.finish(preview);
            self.events.push_back(event);
        }
        take
    }
}

/// The end of an HTTP head (after `\r\n\r\n`), searching from a little before `from`.
fn find_head_end(buf: &[u8], from: usize) -> Option<usize> {
    let start = from.saturating_sub(3);
    buf[start..]
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| start + p + 4)
}

impl Side {
    fn new(from: Direction) -> Self {
        Self {
            from,
            phase: Phase::Head,
            buf: Vec::new(),
            frame: None,
            seen: 0,
            message: None,
            inflater: None,
        }
    }

    /// A header arrived: checks it as an endpoint would (RFC 6455 §5.1-§5.5), and starts
    /// or continues its message.
    fn start(&mut self, h: FrameHeader, header_len: usize, deflate: Option<&DeflateParams>) {
        let mut error = None;
        let mut fail = |e: ProtocolError| {
            error.get_or_insert(e);
        };
        match (self.from, h.mask.is_some()) {
            // RFC 6455 §5.1: a server MUST close on an unmasked frame, a client on a
            // masked one.
            (Direction::FromClient, false) => fail(ProtocolError::UnmaskedFrame),
            (Direction::FromServer, true) => fail(ProtocolError::MaskedFrame),
            _ => {}
        }
        let data_start = matches!(h.opcode, OpCode::Text | OpCode::Binary);
        // RFC 7692 §6: RSV1 marks the first frame of a compressed message; RSV2 and RSV3
        // mean nothing without an extension that defines them (RFC 6455 §5.2).
        if h.rsv2 || h.rsv3 || (h.rsv1 && !(data_start && deflate.is_some())) {
            fail(ProtocolError::ReservedBits);
        }
        let message_opcode = if h.opcode.is_control() {
            if h.payload_len > 125 {
                fail(ProtocolError::ControlFrameTooLong { len: h.payload_len });
            }
            if !h.fin {
                fail(ProtocolError::FragmentedControlFrame);
            }
            h.opcode
        } else if data_start {
            if self.message.is_some() {
                fail(ProtocolError::ExpectedContinuation);
            }
            let compressed = h.rsv1 && deflate.is_some();
            if compressed && self.inflater.is_none() {
                self.inflater = deflate.and_then(|d| new_inflater(d, self.from));
            }
            self.message = Some(MessageState {
                opcode: h.opcode,
                compressed,
                utf8: (h.opcode == OpCode::Text).then(Utf8Validator::new),
                inflated_len: 0,
                corrupt: false,
            });
            h.opcode
        } else {
            match &self.message {
                Some(m) => m.opcode,
                None => {
                    fail(ProtocolError::UnexpectedContinuation);
                    OpCode::Continuation
                }
            }
        };
        let compressed =
            !h.opcode.is_control() && self.message.as_ref().is_some_and(|m| m.compressed);
        self.seen = 0;
        self.frame = Some(TracedFrame {
            from: self.from,
            fin: h.fin,
            rsv1: h.rsv1,
            rsv2: h.rsv2,
            rsv3: h.rsv3,
            opcode: h.opcode,
            message_opcode,
            mask: h.mask,
            header_len,
            payload_len: h.payload_len,
            payload: Vec::new(),
            inflated: compressed.then(|| Inflated {
                len: 0,
                data: Vec::new(),
                message_len: None,
            }),
            close: None,
            error,
        });
    }

    /// Payload bytes of the current frame, as they came (masked if it is).
    fn payload(&mut self, bytes: &[u8], preview: usize) {
        let Some(frame) = self.frame.as_mut() else {
            return;
        };
        let mut plain = bytes.to_vec();
        if let Some(key) = frame.mask {
            apply_mask(&mut plain, key, (self.seen % 4) as usize);
        }
        self.seen += bytes.len() as u64;
        // Control frames are kept whole: their body is parsed.
        let keep = if frame.opcode.is_control() {
            125.max(preview)
        } else {
            preview
        };
        let room = keep.saturating_sub(frame.payload.len());
        frame
            .payload
            .extend_from_slice(&plain[..room.min(plain.len())]);
        if frame.opcode.is_control() {
            return;
        }
        let Some(message) = self.message.as_mut() else {
            return;
        };
        if frame.inflated.is_some() {
            let inflater = self.inflater.as_mut();
            inflate(inflater, message, frame, &plain, false, preview);
        } else if let Some(v) = message.utf8.as_mut() {
            if v.feed(&plain).is_err() {
                message.utf8 = None;
                frame.error.get_or_insert(ProtocolError::InvalidUtf8);
            }
        }
    }

    /// The current frame is complete: ends its message if it is the last, parses a close.
    fn finish(&mut self, preview: usize) -> TraceEvent {
        let mut frame = self.frame.take().expect("a frame in progress");
        if frame.opcode == OpCode::Close {
            close_body(&mut frame);
        } else if !frame.opcode.is_control() && frame.fin {
            if let Some(mut message) = self.message.take() {
                if frame.inflated.is_some() {
                    let inflater = self.inflater.as_mut();
                    inflate(inflater, &mut message, &mut frame, &[], true, preview);
                    if let Some(i) = frame.inflated.as_mut() {
                        i.message_len = Some(message.inflated_len);
                    }
                }
                if let Some(mut v) = message.utf8.take() {
                    if v.finish().is_err() {
                        frame.error.get_or_insert(ProtocolError::InvalidUtf8);
                    }
                }
            }
        }
        TraceEvent::Frame(frame)
    }
}

/// The inflater for what `from` compresses: RFC 7692 §7.1 gives each direction its own
/// window and context takeover. Built without the feature `deflate`, none (no connection
/// of this build agrees to compression, so a frame with RSV1 is reported as such).
#[cfg(feature = "deflate")]
fn new_inflater(d: &DeflateParams, from: Direction) -> Option<Inflater> {
    Some(match from {
        Direction::FromClient => {
            Inflater::new(d.client_max_window_bits, d.client_no_context_takeover)
        }
        Direction::FromServer => {
            Inflater::new(d.server_max_window_bits, d.server_no_context_takeover)
        }
    })
}

#[cfg(not(feature = "deflate"))]
fn new_inflater(_: &DeflateParams, _: Direction) -> Option<Inflater> {
    None
}

/// Inflates a piece of a compressed message (or, with `end`, its final flush) into the
/// frame's [`Inflated`], a bounded step at a time.
fn inflate(
    inflater: Option<&mut Inflater>,
    message: &mut MessageState,
    frame: &mut TracedFrame,
    input: &[u8],
    end: bool,
    preview: usize,
) {
    let (Some(inflater), Some(out)) = (inflater, frame.inflated.as_mut()) else {
        return;
    };
    if message.corrupt {
        return;
    }
    let mut buf = Vec::new();
    let mut steps: Vec<&[u8]> = input.chunks(INFLATE_STEP).collect();
    if end {
        steps.push(&[]);
    }
    for (n, step) in steps.iter().enumerate() {
        buf.clear();
        let result = if end && n == steps.len() - 1 {
            inflater.finish(&mut buf, u64::MAX)
        } else {
            inflater.inflate(step, &mut buf, u64::MAX)
        };
        // What inflated before an error counts: the same whatever the input's pieces.
        out.len += buf.len() as u64;
        message.inflated_len += buf.len() as u64;
        let room = preview.saturating_sub(out.data.len());
        out.data.extend_from_slice(&buf[..room.min(buf.len())]);
        if result.is_err() {
            message.corrupt = true;
            message.utf8 = None;
            frame
                .error
                .get_or_insert(ProtocolError::InvalidCompressedData);
            return;
        }
        if let Some(v) = message.utf8.as_mut() {
            if v.feed(&buf).is_err() {
                message.utf8 = None;
                frame.error.get_or_insert(ProtocolError::InvalidUtf8);
            }
        }
    }
}

/// RFC 6455 §5.5.1: a close body is empty, or a code and a UTF-8 reason.
fn close_body(frame: &mut TracedFrame) {
    let p = &frame.payload;
    let error = match p.len() {
        0 => None,
        1 => Some(ProtocolError::InvalidClosePayload),
        _ => {
            let code = CloseCode::new(u16::from_be_bytes([p[0], p[1]]));
            let reason = &p[2..];
            frame.close = Some((code, String::from_utf8_lossy(reason).into_owned()));
            if !code.is_sendable() {
                Some(ProtocolError::InvalidCloseCode(code.as_u16()))
            } else if std::str::from_utf8(reason).is_err() {
                Some(ProtocolError::InvalidUtf8)
            } else {
                None
            }
        }
    };
    if let Some(e) = error {
        frame.error.get_or_insert(e);
    }
}

// They compress with the core's `Deflater`, which a build without `deflate` lacks. Not under
// Miri: the tracer has no unsafe code, and its tests use zlib (too slow there) and proptest
// (whose failure file needs `getcwd`, which Miri's isolation refuses).
#[cfg(all(test, feature = "deflate", not(miri)))]
#[path = "trace_tests.rs"]
mod tests;
