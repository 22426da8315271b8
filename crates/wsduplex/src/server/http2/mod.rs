//! HTTP/2 (RFC 9113) for the server: WebSockets over extended CONNECT (RFC 8441) and the
//! plain requests that share the connection, each stream through the same front door as an
//! HTTP/1.1 request.
//!
//! ```text
//!  TLS with ALPN h2, or the h2c preface ─▶ Http2Connection::handshake (ENABLE_CONNECT_PROTOCOL = 1)
//!    ─▶ accept ─▶ Http2Request ─▶ into_incoming ─▶ Incoming<Http2Stream> ─▶ admit, route, accept, respond
//!                 (one per stream)  (RFC 8441 checks:        (as over HTTP/1.1; the `101`
//!                                    405 / 501 / 400,          goes out as `200`)
//!                                    ExtendedConnectError)
//! ```
//!
//! An extended CONNECT for `websocket` is handed to the front door as the HTTP/1.1 upgrade
//! it stands for (RFC 8441 §5), so admission, authentication, subprotocol and
//! permessage-deflate negotiation, the metrics and the routes are the ones of our HTTP/1.1
//! path; the answers each route writes are turned into HEADERS and DATA by
//! [`Http2Stream`]. A malformed or unsupported request is answered on its stream and the
//! stream ends; the connection and its other streams go on. The `h2` crate answers the
//! rest of RFC 9113 (connection-specific fields such as `Upgrade` or `Connection` make a
//! request malformed: `RST_STREAM(PROTOCOL_ERROR)`; `SETTINGS_MAX_CONCURRENT_STREAMS`;
//! header list sizes).
//!
//! Flow control: the connection window is the stream window times the streams allowed at
//! once, so streams whose readers stop can never take the window of the others
//! (see [`Http2Config`]).
//!
//! A connection's loop, each stream on a task of its own (`wsduplex serve` adds limits,
//! routes and shutdown):
//!
//! ```no_run
//! use futures_util::{SinkExt, StreamExt};
//! use wsduplex::server::http2::{Http2Config, Http2Connection};
//! use wsduplex::{Message, ServerConfig};
//!
//! # async fn serve(tcp: tokio::net::TcpStream) -> wsduplex::Result<()> {
//! let config = std::sync::Arc::new(ServerConfig::default());
//! let mut conn = Http2Connection::handshake(tcp, Http2Config::default()).await?;
//! while let Some(request) = conn.accept().await {
//!     let config = config.clone();
//!     tokio::spawn(async move {
//!         let incoming = request?.into_incoming(&config).await?;
//!         let mut ws = incoming.accept(&config).await?; // answered `200`
//!         while let Some(Ok(msg)) = ws.next().await {
//!             if let Message::Text(_) | Message::Binary(_) = msg {
//!                 ws.send(msg).await?;
//!             }
//!         }
//!         Ok::<_, wsduplex::Error>(())
//!     });
//! }
//! # Ok(())
//! # }
//! ```

pub mod stream;

pub use stream::Http2Stream;

use super::http_types::extended_connect_as_upgrade;
use super::{BodyError, Incoming, ServerConfig};
use crate::error::{Error, Result};
use crate::metrics;
use bytes::{Bytes, BytesMut};
use h2::server::SendResponse;
use h2::RecvStream;
use http::header::{self, HeaderValue};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The HTTP/2 connection preface (RFC 9113 §3.4), the first bytes of an `h2c` connection
/// with prior knowledge.
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The ALPN protocol id of HTTP/2 over TLS.
pub const ALPN_H2: &[u8] = b"h2";

/// Whether `bytes`, the first bytes read from a connection, may be the start of
/// [`PREFACE`] (all of them match it so far).
pub fn may_be_preface(bytes: &[u8]) -> bool {
    !bytes.is_empty() && PREFACE.starts_with(&bytes[..bytes.len().min(PREFACE.len())])
}

/// HTTP/2 settings of a server connection.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct Http2Config {
    /// `SETTINGS_MAX_CONCURRENT_STREAMS`: streams a client may have open at once; more are
    /// refused (`RST_STREAM(REFUSED_STREAM)`). Default 128.
    pub max_concurrent_streams: u32,
    /// `SETTINGS_INITIAL_WINDOW_SIZE`: bytes a client may send on a stream before its
    /// reader takes them. Default 256 KiB. The connection's window is this times
    /// [`max_concurrent_streams`](Self::max_concurrent_streams) (capped at 2³¹ − 1), so
    /// that a stream whose reader stops never stalls the others.
    pub stream_window: u32,
    /// `SETTINGS_MAX_HEADER_LIST_SIZE`: larger request heads get `431`. Default 16 KiB.
    pub max_header_list_size: u32,
}

impl Default for Http2Config {
    fn default() -> Self {
        Self {
            max_concurrent_streams: 128,
            stream_window: 256 * 1024,
            max_header_list_size: 16 * 1024,
        }
    }
}

/// Why an HTTP/2 connection failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Http2Error {
    /// The connection failed (I/O, or the peer broke RFC 9113).
    #[error("http/2 connection error")]
    Connection(#[source] h2::Error),
    /// A client's HTTP/2 handshake failed: the server may not speak HTTP/2 (a cleartext
    /// server without `h2c`).
    #[error("http/2 handshake failed (does the server speak http/2?)")]
    Handshake(#[source] h2::Error),
    /// A client's stream failed before its answer (reset, or refused by the server).
    #[error("http/2 stream error")]
    Stream(#[source] h2::Error),
    /// The server does not accept WebSockets over HTTP/2: its settings lack
    /// `SETTINGS_ENABLE_CONNECT_PROTOCOL = 1` (RFC 8441 §3).
    #[error(
        "the server does not accept websockets over http/2 (no SETTINGS_ENABLE_CONNECT_PROTOCOL)"
    )]
    NoExtendedConnect,
    /// HTTP/2 was required over TLS and the server did not choose `h2` in ALPN.
    #[error("the server did not choose http/2 (alpn h2)")]
    NotNegotiated,
}

/// A server's HTTP/2 connection: [`accept`](Self::accept) yields its requests, one per
/// stream, and drives the connection (keep calling it while any stream is open).
pub struct Http2Connection<T> {
    conn: h2::server::Connection<T, Bytes>,
}

impl<T> std::fmt::Debug for Http2Connection<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Http2Connection").finish_non_exhaustive()
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> Http2Connection<T> {
    /// Reads the client's preface and sends this server's settings, with
    /// `SETTINGS_ENABLE_CONNECT_PROTOCOL = 1` (RFC 8441 §3). Bound it with a timeout.
    pub async fn handshake(io: T, config: Http2Config) -> Result<Self> {
        let streams = config.max_concurrent_streams.max(1);
        let window = config.stream_window.clamp(65_535, (1 << 31) - 1);
        let connection_window = u64::from(window) * u64::from(streams);
        let mut builder = h2::server::Builder::new();
        builder
            .enable_connect_protocol()
            .max_concurrent_streams(streams)
            .initial_window_size(window)
            .initial_connection_window_size(connection_window.min((1 << 31) - 1) as u32)
            .max_header_list_size(config.max_header_list_size);
        let conn = builder
            .handshake(io)
            .await
            .map_err(Http2Error::Connection)?;
        Ok(Self { conn })
    }

    /// The next request, once its head has arrived; `None` when the connection has ended
    /// (after [`graceful_shutdown`](Self::graceful_shutdown), once its streams are done).
    pub async fn accept(&mut self) -> Option<Result<Http2Request>> {
        match self.conn.accept().await? {
            Ok((request, respond)) => Some(Ok(Http2Request { request, respond })),
            Err(e) => Some(Err(Http2Error::Connection(e).into())),
        }
    }

    /// Sends `GOAWAY`: no new streams; the open ones go on until they end.
    pub fn graceful_shutdown(&mut self) {
        self.conn.graceful_shutdown();
    }

    /// Sends `GOAWAY` and closes the connection once it is written; open streams are reset.
    /// For a connection left without streams after
    /// [`graceful_shutdown`](Self::graceful_shutdown) whose peer does not answer the ping
    /// that ends it.
    pub fn abrupt_shutdown(&mut self) {
        self.conn.abrupt_shutdown(h2::Reason::NO_ERROR);
    }

    /// Whether any stream is open: a connection without any for a while holds resources
    /// for nothing (close it with [`graceful_shutdown`](Self::graceful_shutdown)).
    pub fn has_streams(&self) -> bool {
        self.conn.has_streams()
    }
}

/// One stream's request, not yet answered.
pub struct Http2Request {
    request: http::Request<RecvStream>,
    respond: SendResponse<Bytes>,
}

impl std::fmt::Debug for Http2Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Http2Request")
            .field("method", self.request.method())
            .field("uri", self.request.uri())
            .finish_non_exhaustive()
    }
}

impl Http2Request {
    /// The request head as HTTP/2 carried it (`:protocol` is the [`h2::ext::Protocol`]
    /// extension).
    pub fn head(&self) -> &http::Request<RecvStream> {
        &self.request
    }

    /// Whether this is an extended CONNECT (RFC 8441 §4), for any protocol.
    pub fn is_extended_connect(&self) -> bool {
        self.request.method() == http::Method::CONNECT
            && self
                .request
                .extensions()
                .get::<h2::ext::Protocol>()
                .is_some()
    }

    /// The request as the front door reads it, with a stream that answers in HTTP/2. An
    /// extended CONNECT for `websocket` becomes the HTTP/1.1 upgrade it stands for
    /// (`GET` with `Upgrade`, `Connection`, and a `Sec-WebSocket-Key` unless the client
    /// sent a valid one: RFC 8441 §5 drops the key; a proxy that translated an HTTP/1.1
    /// upgrade keeps it, and its client then gets its `Sec-WebSocket-Accept`). A request
    /// this cannot stand for is answered here (see [`ExtendedConnectError`], and `400` or
    /// `431` as [`ServerConfig::http_request`] refuses a head) and its stream ends; the
    /// error says why. A body without `Content-Length` (HTTP/2 ends a body with its
    /// stream) is read first, at most [`MAX_UNSIZED_BODY`] within the handshake timeout
    /// (else `413` or `408`), so that the front door reads it by its length.
    ///
    /// [`ExtendedConnectError`]: super::ExtendedConnectError
    pub async fn into_incoming(self, config: &ServerConfig) -> Result<Incoming<Http2Stream>> {
        let Self {
            request,
            mut respond,
        } = self;
        let (mut parts, mut body) = request.into_parts();
        let connect = parts.method == http::Method::CONNECT;
        let mut synthetic_key = false;
        if connect {
            let protocol = parts.extensions.get::<h2::ext::Protocol>();
            let protocol = protocol.map(h2::ext::Protocol::as_str);
            match extended_connect_as_upgrade(&mut parts.method, protocol, &mut parts.headers) {
                Ok(synthetic) => synthetic_key = synthetic,
                Err(e) => {
                    metrics::handshake(false);
                    refuse(&mut respond, e.status(), e.headers(), &e.to_string());
                    return Err(e.into());
                }
            }
        }
        let mut leftover = BytesMut::new();
        let sized = parts.headers.contains_key(header::CONTENT_LENGTH);
        if !connect && !sized && !body.is_end_stream() {
            // HTTP/2 ends a body with its stream (RFC 9113 §8.1), where the front door reads
            // a body by its Content-Length: the body is read here, within bounds, and its
            // length named.
            match read_unsized_body(&mut body, config.handshake_timeout).await {
                Ok(read) => {
                    parts
                        .headers
                        .insert(header::CONTENT_LENGTH, read.len().into());
                    leftover = read;
                }
                Err(Error::Body(e)) => {
                    refuse(&mut respond, e.status(), &[], &e.to_string());
                    return Err(e.into());
                }
                Err(e) => return Err(e),
            }
        }
        let head = match config.http_request(&parts) {
            Ok(head) => head,
            Err(e) => {
                if connect {
                    metrics::handshake(false);
                }
                refuse(&mut respond, e.status(), &[], &e.to_string());
                return Err(e.into());
            }
        };
        Ok(Incoming {
            io: Http2Stream::new(body, respond, connect, synthetic_key),
            request: head,
            leftover,
            peer: None,
            admitted: false,
            identity: None,
            http2: true,
        })
    }
}

/// The most a request body without `Content-Length` may hold: larger ones get `413`. It is
/// read before the front door's checks, so it is kept below what a stream's window lets a
/// client send unread anyway ([`Http2Config::stream_window`]).
pub const MAX_UNSIZED_BODY: usize = 64 * 1024;

/// A whole body whose length was not announced, at most [`MAX_UNSIZED_BODY`], within
/// `timeout`.
async fn read_unsized_body(
    body: &mut RecvStream,
    timeout: std::time::Duration,
) -> Result<BytesMut> {
    let mut read = BytesMut::new();
    let whole = tokio::time::timeout(timeout, async {
        while let Some(chunk) = body.data().await {
            // The stream failed (a reset): nobody to answer.
            let chunk = chunk.map_err(|e| Error::Io(io::Error::other(e)))?;
            let _ = body.flow_control().release_capacity(chunk.len());
            let length = read.len() + chunk.len();
            if length > MAX_UNSIZED_BODY {
                let max = MAX_UNSIZED_BODY;
                return Err(BodyError::TooLarge { length, max }.into());
            }
            read.extend_from_slice(&chunk);
        }
        Ok(())
    })
    .await;
    match whole {
        Ok(Ok(())) => Ok(read),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(BodyError::Timeout.into()),
    }
}

/// Answers a refused request on its stream: the status, a one-line reason, the end of the
/// stream (the `h2` crate then resets the client's side with `NO_ERROR` if it is still
/// sending, RFC 9113 §8.1).
fn refuse(respond: &mut SendResponse<Bytes>, status: u16, headers: &[(&str, &str)], reason: &str) {
    let mut response = super::http_types::refusal_response(status, headers);
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    match respond.send_response(response, false) {
        Ok(mut send) => {
            let _ = send.send_data(Bytes::from(format!("{reason}\n")), true);
        }
        Err(e) => tracing::debug!("http/2 refusal not sent: {e}"),
    }
}

/// A connection whose first bytes were read already (looking for the HTTP/2 preface):
/// reading yields them first.
#[derive(Debug)]
pub struct Prefaced<S> {
    read: Bytes,
    io: S,
}

impl<S> Prefaced<S> {
    /// `io`, with `read` (bytes already read from it) to be read first.
    pub fn new(read: Bytes, io: S) -> Self {
        Self { read, io }
    }

    /// The transport.
    pub fn get_ref(&self) -> &S {
        &self.io
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefaced<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.read.is_empty() {
            let n = self.read.len().min(buf.remaining());
            let first = self.read.split_to(n);
            buf.put_slice(&first);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefaced<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_preface_is_recognised_from_its_first_byte() {
        assert!(may_be_preface(b"P"));
        assert!(may_be_preface(b"PRI * HTTP/2.0\r\n"));
        assert!(may_be_preface(PREFACE));
        assert!(may_be_preface(&[PREFACE, b"\0\0"].concat()));
        assert!(!may_be_preface(b"GET / HTTP/1.1\r\n"));
        assert!(!may_be_preface(b"POST"));
        assert!(!may_be_preface(b""));
    }
}
