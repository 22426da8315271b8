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
    /// Server side: the authentication hook refused the request (answered with its status).
    #[error("request refused: {0}")]
    Denied(#[from] crate::auth::Denied),
    /// Server side: the front door refused the connection or the request (a connection
    /// limit, the Origin policy), and answered with its status.
    #[error("request refused: {0}")]
    Refused(crate::server::Refusal),
    /// Server side: a plain HTTP request's body could not be read (see
    /// [`crate::server::Incoming::read_body`]); answer with its status.
    #[error(transparent)]
    Body(#[from] crate::server::BodyError),
    /// Client side: the server's response to the opening request was not acceptable.
    #[error(transparent)]
    Response(#[from] ResponseError),
    /// Client side: a request option cannot go on the wire.
    #[error(transparent)]
    Request(#[from] RequestError),
    /// The URL is not a usable `ws://` or `wss://` URL (or `wss://` without the `tls`
    /// feature).
    #[error("invalid url: {0}")]
    Url(String),
    /// The TLS handshake failed: the certificate is not trusted or not for this host, no
    /// common protocol version or cipher suite, a client certificate was refused, etc.
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    #[error("tls handshake failed")]
    Tls(#[source] rustls::Error),
    /// The TLS settings cannot be used: an unreadable or invalid PEM file, a key that does
    /// not match its certificate, a host name that cannot be a TLS server name.
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    #[error("invalid tls settings: {what}")]
    TlsConfig {
        /// What is wrong, e.g. `no private key in key.pem`.
        what: String,
        /// The underlying error, if any.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// Client side: the proxy could not be used, or refused the tunnel (see
    /// [`crate::proxy`]).
    #[error(transparent)]
    Proxy(#[from] crate::proxy::ProxyError),
    /// The TCP connection was not established in time.
    #[error("connect timed out")]
    ConnectTimeout,
    /// The opening handshake did not finish in time.
    #[error("opening handshake timed out")]
    HandshakeTimeout,
    /// The peer sent nothing within the ping timeout after a keepalive ping.
    #[error("peer did not answer a ping within {0:?}")]
    KeepaliveTimeout(std::time::Duration),
    /// The peer did not finish the closing handshake in time.
    #[error("closing handshake timed out")]
    CloseTimeout,
    /// A send found the queue full with [`crate::socket::SlowReader::Close`]: the message
    /// was dropped and the connection is closing with 1008 `too slow`.
    #[error("the peer reads too slowly: closing with 1008")]
    SlowReader,
    /// An extended CONNECT (RFC 8441, WebSocket over HTTP/2) was refused.
    #[error("request refused: {0}")]
    ExtendedConnect(#[from] crate::server::http_types::ExtendedConnectError),
    /// An HTTP/2 connection failed.
    #[cfg(feature = "http2")]
    #[cfg_attr(docsrs, doc(cfg(feature = "http2")))]
    #[error(transparent)]
    Http2(#[from] crate::server::http2::Http2Error),
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

impl From<crate::server::Refusal> for Error {
    /// An authentication refusal stays [`Error::Denied`].
    fn from(r: crate::server::Refusal) -> Self {
        match r {
            crate::server::Refusal::Denied(d) => Self::Denied(d),
            other => Self::Refused(other),
        }
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
