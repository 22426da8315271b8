//! A live socket as a transport and a value, and back (feature `handover`): to hand a
//! connection to another process, which resumes it on the same transport (a TCP socket's file
//! descriptor passed over a Unix socket, say).
//!
//! [`WebSocket::into_parts`] loses nothing: the core's whole state
//! ([`proto::snapshot::ConnectionState`]: bytes read and not yet decoded, a frame or message
//! half received, frames queued and not yet written, the closing handshake, the
//! permessage-deflate contexts, the deadlines), the subprotocol, and how far the socket got
//! in ending the stream. [`WebSocket::from_parts`] resumes it with the new process's
//! [`Config`]. [`SocketState::encode`] writes it as a magic, a version and postcard;
//! [`SocketState::decode`] reads only its own version, and says which it found otherwise.

use super::timers::now;
use super::{Cold, Config, Inner, Phase, SharedSettings, WebSocket};
use crate::error::Error;
use proto::snapshot::{ConnectionState, SnapshotError};
use proto::{CloseCode, CloseFrame, Connection, Message};
use serde::{Deserialize, Serialize};

/// The first bytes of an encoded [`SocketState`].
const MAGIC: [u8; 4] = *b"WSDX";

/// A socket's whole state, from [`WebSocket::into_parts`], for [`WebSocket::from_parts`];
/// [`SocketState::encode`] and [`SocketState::decode`] carry it between processes.
#[cfg_attr(docsrs, doc(cfg(feature = "handover")))]
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SocketState {
    conn: ConnectionState,
    subprotocol: Option<String>,
    phase: PhaseState,
    server_closed: bool,
    write_shutdown: bool,
    /// The peer's close, held back until the transport is closed (the inner `None`: a
    /// close frame without a code).
    final_close: Option<Option<(u16, String)>>,
    final_error: Option<FinalError>,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
enum PhaseState {
    Open,
    Finishing,
    Done,
}

/// The environment error a finishing socket will yield last.
#[derive(Clone, Debug, Serialize, Deserialize)]
enum FinalError {
    KeepaliveTimeout(std::time::Duration),
    CloseTimeout,
    /// An I/O error, by its message (the kind of error is not portable).
    Io(String),
}

/// Why a socket's state cannot be read or resumed.
#[cfg_attr(docsrs, doc(cfg(feature = "handover")))]
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HandoverError {
    /// The state was written in a format version this build cannot read.
    #[error("connection state format version {found} is not supported (this build reads version {supported})")]
    Version {
        /// The version the state was written in.
        found: u16,
        /// The version this build reads and writes.
        supported: u16,
    },
    /// The bytes are not an encoded socket state (no magic, or cut short).
    #[error("not a wsduplex connection state")]
    NotAState,
    /// The state's body could not be decoded.
    #[error("malformed connection state")]
    Malformed(#[source] postcard::Error),
    /// The state decodes but cannot be resumed here.
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
}

impl SocketState {
    /// The format version this build writes, and the only one it reads.
    pub const VERSION: u16 = 1;

    /// The subprotocol the opening handshake selected.
    pub fn subprotocol(&self) -> Option<&str> {
        self.subprotocol.as_deref()
    }

    /// The state as bytes: `WSDX`, the format version (a big-endian `u16`), then postcard.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&Self::VERSION.to_be_bytes());
        postcard::to_extend(self, out).expect("writing to a Vec cannot fail")
    }

    /// Reads what [`SocketState::encode`] wrote. A state from another format version fails
    /// with [`HandoverError::Version`]; anything else that is not a whole state fails too,
    /// never panics.
    pub fn decode(bytes: &[u8]) -> Result<SocketState, HandoverError> {
        let rest = bytes.strip_prefix(&MAGIC).ok_or(HandoverError::NotAState)?;
        let (version, body) = rest
            .split_first_chunk::<2>()
            .ok_or(HandoverError::NotAState)?;
        let found = u16::from_be_bytes(*version);
        if found != Self::VERSION {
            return Err(HandoverError::Version {
                found,
                supported: Self::VERSION,
            });
        }
        let (state, rest) = postcard::take_from_bytes(body).map_err(HandoverError::Malformed)?;
        if !rest.is_empty() {
            return Err(HandoverError::Malformed(
                postcard::Error::DeserializeBadEncoding,
            ));
        }
        Ok(state)
    }
}

#[cfg_attr(docsrs, doc(cfg(feature = "handover")))]
impl<S> WebSocket<S> {
    /// Ends the socket without a word on the wire, and gives back its transport and its
    /// whole state, for [`WebSocket::from_parts`] (in this process or, encoded, another).
    /// Nothing is lost: bytes read but not yet decoded, a message half received, frames
    /// queued but not yet written (a message half sent among them), the closing handshake,
    /// the compression contexts and the deadlines all move into the state.
    pub fn into_parts(self) -> (S, SocketState) {
        let inner = self.inner;
        let conn = inner.conn.snapshot(now());
        let cold = inner.cold.map(|c| *c).unwrap_or_default();
        let final_close = match cold.final_close {
            Some(Message::Close(f)) => Some(f.map(|f| (f.code.as_u16(), f.reason.to_string()))),
            _ => None,
        };
        let final_error = cold.final_error.map(|e| match e {
            Error::KeepaliveTimeout(after) => FinalError::KeepaliveTimeout(after),
            Error::CloseTimeout => FinalError::CloseTimeout,
            other => FinalError::Io(other.to_string()),
        });
        let state = SocketState {
            conn,
            subprotocol: cold.subprotocol.map(String::from),
            phase: match inner.phase {
                Phase::Open => PhaseState::Open,
                Phase::Finishing => PhaseState::Finishing,
                Phase::Done => PhaseState::Done,
            },
            server_closed: inner.server_closed,
            write_shutdown: inner.write_shutdown,
            final_close,
            final_error,
        };
        (inner.io, state)
    }

    /// Resumes a socket from its transport and the state [`WebSocket::into_parts`] gave,
    /// with this process's `config` (limits, timeouts, `max_write_buffer`, `slow_reader`);
    /// the role, the subprotocol and the permessage-deflate agreement come from the state.
    /// Deadlines go on from what remained of them.
    pub fn from_parts(io: S, state: SocketState, config: Config) -> Result<Self, HandoverError> {
        Self::from_parts_shared(io, state, &config, None)
    }

    /// [`WebSocket::from_parts`] whose core's settings come from `shared`
    /// ([`Config::protocol_from`]) if the state has no permessage-deflate agreement either.
    pub(crate) fn from_parts_shared(
        io: S,
        state: SocketState,
        config: &Config,
        shared: Option<&SharedSettings>,
    ) -> Result<Self, HandoverError> {
        let protocol = config.protocol_from(shared);
        let conn = Connection::restore_shared(state.conn, protocol, now())?;
        let final_close = state.final_close.map(|f| {
            Message::Close(f.map(|(code, reason)| CloseFrame {
                code: CloseCode::new(code),
                reason: reason.into(),
            }))
        });
        let final_error = state.final_error.map(|e| match e {
            FinalError::KeepaliveTimeout(after) => Error::KeepaliveTimeout(after),
            FinalError::CloseTimeout => Error::CloseTimeout,
            FinalError::Io(what) => Error::Io(std::io::Error::other(what)),
        });
        let cold = Cold {
            subprotocol: state.subprotocol.map(String::into_boxed_str),
            final_close,
            final_error,
        };
        let held =
            cold.subprotocol.is_some() || cold.final_close.is_some() || cold.final_error.is_some();
        let mut inner = Inner {
            io,
            conn,
            max_write_buffer: config.max_write_buffer,
            slow_reader: config.slow_reader,
            phase: match state.phase {
                PhaseState::Open => Phase::Open,
                PhaseState::Finishing => Phase::Finishing,
                PhaseState::Done => Phase::Done,
            },
            server_closed: state.server_closed,
            write_shutdown: state.write_shutdown,
            rx_released: false,
            timer: None,
            cold: held.then(|| Box::new(cold)),
        };
        inner.start_timers();
        Ok(Self { inner })
    }
}
