//! The one error type of the tokio layer: the peer (protocol, handshake), the caller
//! (usage, URL), or the environment (I/O, timeouts).

use proto::handshake::{client::RequestError, client::ResponseError, server::HandshakeError};
use proto::{ProtocolError, UsageError};
use std::io;

/// Anything that can go wrong with a WebSocket connection.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The transport failed.
    #[error("i/o error")]
    Io(#[from] io::Error),
    /// The peer broke the protocol; the close frame owed to it was sent.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// The API was misused (e.g. a send after close).
    #[error(transparent)]
    Usage(#[from] UsageError),
    /// Server side: the client's opening request was refused with an HTTP status.
    #[error("handshake refused with status {status}", status = .0.status())]
    Handshake(#[from] HandshakeError),
    /// Client side: the server's response to the opening request was not acceptable.
    #[error(transparent)]
    Response(#[from] ResponseError),
    /// Client side: a request option cannot go on the wire.
    #[error(transparent)]
    Request(#[from] RequestError),
    /// The URL is not a usable `ws://` URL.
    #[error("invalid url: {0}")]
    Url(String),
    /// The TCP connection was not established in time.
    #[error("connect timed out")]
    ConnectTimeout,
    /// The opening handshake did not finish in time.
    #[error("opening handshake timed out")]
    HandshakeTimeout,
    /// The peer did not finish the closing handshake in time.
    #[error("closing handshake timed out")]
    CloseTimeout,
}

impl From<proto::Error> for Error {
    fn from(e: proto::Error) -> Self {
        match e {
            proto::Error::Protocol(p) => Self::Protocol(p),
            proto::Error::Usage(u) => Self::Usage(u),
            // proto::Error is non-exhaustive; any future kind is a peer problem.
            #[allow(unreachable_patterns)]
            other => Self::Io(io::Error::other(other.to_string())),
        }
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
