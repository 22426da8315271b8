//! The connection state machine after the opening handshake (RFC 6455 §5-§7).
//!
//! Call order: feed input with [`Connection::receive`] (or append to
//! [`Connection::receive_buffer`] and call [`Connection::receive_buffered`]), then drain
//! [`Connection::poll_event`], then write out [`Connection::poll_transmit`]. Commands
//! (`send_*`, `close`) only queue bytes; nothing happens until the caller writes them.
//! Before waiting for the transport, ask [`Connection::poll_timeout`] for the next deadline;
//! when it passes, call [`Connection::handle_timeout`] (the `timers` module has the details).
//!
//! The module is split by concern: `config` (roles, limits, timeouts), `decode` (input and
//! [`Connection::poll_event`]), `fast` (the borrowed fast path, [`Connection::receive_with`]),
//! `send` (commands, [`Sender`], the transmit queue) and `timers` (deadlines).

mod config;
mod decode;
mod fast;
mod quiet;
mod send;
#[cfg(feature = "snapshot")]
pub(crate) mod snapshot;
mod timers;

pub use config::{Config, Role, Timeouts};
pub use quiet::Quiet;
pub use send::Sender;
pub use timers::Timeout;

use crate::close::CloseCode;
#[cfg(any(feature = "deflate", feature = "snapshot"))]
use crate::deflate::DeflateParams;
use crate::deflate::{Deflater, Inflater};
use crate::error::{Error, ProtocolError};
use crate::frame::FrameHeader;
use crate::message::Message;
use crate::transmit::Transmit;
use crate::utf8::Utf8Validator;
use bytes::BytesMut;
use std::sync::Arc;

/// Whole messages shorter than this are handed out borrowed by [`Connection::receive_with`];
/// longer ones as a [`Message`], whose payload a reply can share: the size from which the
/// transmit queue takes a shared payload by reference.
const SMALL_MESSAGE: usize = crate::transmit::ZERO_COPY_MIN;

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
/// connection without it pays one pointer). Never built without the feature `deflate`.
#[cfg_attr(not(feature = "deflate"), allow(dead_code))]
struct DeflateState {
    deflater: Deflater,
    inflater: Inflater,
    threshold: usize,
    /// The compressed message arriving, inflated so far (here, not in [`RxMessage`]: a
    /// connection without the extension has no use for it).
    inflated: Vec<u8>,
    /// The compressed fragments of the message arriving, received so far: zlib's state
    /// mid-message cannot be written down, so a restored connection inflates them again
    /// (`snapshot`). Only fragmented compressed messages copy anything here.
    #[cfg(feature = "snapshot")]
    partial: Vec<u8>,
}

impl DeflateState {
    #[cfg(feature = "deflate")]
    fn new(role: Role, params: &DeflateParams, config: &Config) -> Self {
        let (own_bits, own_reset, peer_bits, peer_reset) = directions(role, params);
        Self {
            deflater: Deflater::new(config.compression_level, own_bits, own_reset),
            inflater: Inflater::new(peer_bits, peer_reset),
            threshold: config.compression_threshold,
            inflated: Vec::new(),
            #[cfg(feature = "snapshot")]
            partial: Vec::new(),
        }
    }
}

/// This end's window bits and no_context_takeover, then the peer's.
#[cfg(any(feature = "deflate", feature = "snapshot"))]
fn directions(role: Role, params: &DeflateParams) -> (u8, bool, u8, bool) {
    match role {
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
    }
}

/// A WebSocket connection after the handshake, as pure logic.
pub struct Connection {
    role: Role,
    /// Read once per frame header at most, never written: kept out of line, so that every
    /// connection's driver (a task per connection) holds a pointer instead of the whole of it,
    /// and shared, so that a server's connections with the same settings hold one copy
    /// ([`Connection::with_shared_config`]).
    config: Arc<Config>,
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
    /// The deadlines: `None` (and one pointer) without keepalive or idle timeout until the
    /// connection closes, as most connections are.
    timers: Option<Box<timers::Timers>>,
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
        Self::with_shared_config(role, Arc::new(config))
    }

    /// [`Connection::new`] with settings shared with other connections: a server holding
    /// many connections keeps one copy of them (those whose permessage-deflate agreement is
    /// the same, as it is part of the settings).
    pub fn with_shared_config(role: Role, config: Arc<Config>) -> Self {
        #[cfg(feature = "deflate")]
        let deflate = config
            .deflate
            .as_ref()
            .map(|p| Box::new(DeflateState::new(role, p, &config)));
        // Nothing to compress with: an agreement set by hand is ignored, and a compressed
        // frame from the peer then fails the connection (RSV1 not negotiated, 1002).
        #[cfg(not(feature = "deflate"))]
        let deflate = None;
        let timers = timers::Timers::new(&config.timeouts);
        Self::open(role, config, deflate, timers)
    }

    /// An open connection with nothing read, queued or closing, around the parts that
    /// outlive a quiet spell: a new one's ([`Connection::with_shared_config`]) or a
    /// reduced one's ([`Connection::from_quiet`]).
    fn open(
        role: Role,
        config: Arc<Config>,
        deflate: Option<Box<DeflateState>>,
        timers: Option<Box<timers::Timers>>,
    ) -> Self {
        Self {
            role,
            config,
            state: State::Open,
            rx: BytesMut::new(),
            frame: None,
            message: None,
            event: None,
            tx: Transmit::default(),
            deflate,
            close_sent: 0,
            close_received: 0,
            timers,
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
}

#[cfg(test)]
mod tests;
