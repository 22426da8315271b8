//! WebSocket over HTTP/2 for the client (RFC 8441): an extended CONNECT on a stream of an
//! HTTP/2 connection, the stream then carrying the frames (masked, as over HTTP/1.1:
//! RFC 8441 keeps RFC 6455's framing whole).
//!
//! ```text
//!  connect_with ─▶ Http2Pool (origin ─▶ connections) ─▶ TCP (+ TLS, ALPN h2) ─▶ h2 handshake
//!    ─▶ PING/PONG (the server's SETTINGS are in) ─▶ ENABLE_CONNECT_PROTOCOL? ─▶ CONNECT
//!       :protocol websocket ─▶ 200 ─▶ WebSocket<ClientStream::Http2> (the core in client role)
//! ```
//!
//! [`Http2`] in [`ClientConfig::http2`] says when: never (the default), when the server
//! chooses `h2` in TLS ALPN, or always (`h2c` with prior knowledge for `ws://`). Connects
//! through the same [`Http2Pool`] (a config and its clones share one) to the same origin
//! share one connection; a connection that failed or was told to go away (`GOAWAY`) is
//! dropped from the pool on the next connect, which opens another.

use super::{open_tcp, ClientConfig, ClientRequest, ClientStream, Handshake};
use crate::error::{Error, Result};
use crate::http2_body::{self, Body};
use crate::server::http2::Http2Error;
use crate::socket::WebSocket;
use bytes::Bytes;
use h2::client::SendRequest;
use h2::SendStream;
use proto::Role;
use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// When [`connect`](super::connect) opens its WebSocket over HTTP/2 (RFC 8441).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Http2 {
    /// HTTP/1.1 only, as before.
    #[default]
    Never,
    /// `wss://`: offer `h2` and `http/1.1` in TLS ALPN, and use HTTP/2 when the server
    /// chooses it. `ws://` stays HTTP/1.1 (cleartext has no way to offer HTTP/2).
    WhenOffered,
    /// HTTP/2 only: `h2c` with prior knowledge for `ws://`; for `wss://`, ALPN `h2` alone,
    /// and an error ([`Http2Error::NotNegotiated`]) if the server does not choose it.
    Always,
}

/// `(tls, host, port)`.
type Origin = (bool, String, u16);

/// HTTP/2 connections shared by connects to one origin (scheme, host, port): each connect
/// opens a stream on a pooled connection with room for it, or a new connection. Cloning
/// shares the pool; [`ClientConfig::default`] makes a fresh one, so connects with one
/// config (or its clones) share connections. Connects that start together wait for the
/// first one's connection rather than each opening their own.
#[derive(Clone, Default)]
pub struct Http2Pool {
    inner: Arc<PoolInner>,
}

#[derive(Default)]
struct PoolInner {
    /// Streams per connection before the pool opens another one (`None`: as many as the
    /// server allows).
    streams_per_connection: Option<usize>,
    origins: Mutex<HashMap<Origin, Arc<tokio::sync::Mutex<Vec<Pooled>>>>>,
}

/// A pooled connection.
#[derive(Clone)]
struct Pooled {
    send: SendRequest<Bytes>,
    /// One clone per WebSocket on the connection (h2 counts its streams only with an
    /// unstable feature).
    streams: Arc<()>,
}

impl std::fmt::Debug for Http2Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Http2Pool")
            .field("streams_per_connection", &self.inner.streams_per_connection)
            .finish_non_exhaustive()
    }
}

impl Http2Pool {
    /// An empty pool whose connections carry as many streams as their servers allow
    /// (`SETTINGS_MAX_CONCURRENT_STREAMS`).
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty pool that opens another connection to an origin once each of its
    /// connections carries `streams` streams (at least 1).
    pub fn with_streams_per_connection(streams: usize) -> Self {
        Self {
            inner: Arc::new(PoolInner {
                streams_per_connection: Some(streams.max(1)),
                origins: Mutex::default(),
            }),
        }
    }

    /// The connections held (open or not yet found closed), over all origins.
    pub fn connections(&self) -> usize {
        let origins = self.inner.origins.lock().unwrap_or_else(|e| e.into_inner());
        origins
            .values()
            .map(|c| c.try_lock().map_or(0, |c| c.len()))
            .sum()
    }

    fn origin(&self, origin: Origin) -> Arc<tokio::sync::Mutex<Vec<Pooled>>> {
        let mut origins = self.inner.origins.lock().unwrap_or_else(|e| e.into_inner());
        origins.entry(origin).or_default().clone()
    }

    /// A pooled connection with room for one more stream, dropping the dead ones.
    fn pick(&self, connections: &mut Vec<Pooled>) -> Option<Pooled> {
        let limit = self.inner.streams_per_connection;
        // A connection that failed or got GOAWAY refuses new streams: poll_ready says so
        // without waiting.
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        connections.retain_mut(|c| !matches!(c.send.poll_ready(&mut cx), Poll::Ready(Err(_))));
        connections
            .iter()
            .find(|c| {
                let room = limit.unwrap_or(usize::MAX);
                let room = room.min(c.send.current_max_send_streams());
                Arc::strong_count(&c.streams) - 1 < room
            })
            .cloned()
    }
}

/// One HTTP/2 stream of a client's extended CONNECT, as a byte stream: the server's DATA
/// in, ours out, each within the stream's flow-control windows (RFC 9113 §6.9; reading
/// releases the window as the bytes are taken). Shutting it down ends our half of the
/// stream.
pub struct Http2ClientStream {
    body: Body,
    send: SendStream<Bytes>,
    ended: bool,
    /// Counts this stream on its pooled connection.
    _pooled: Arc<()>,
}

impl std::fmt::Debug for Http2ClientStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Http2ClientStream")
            .field("stream_id", &self.send.stream_id())
            .field("buffered", &self.body.chunk.len())
            .finish_non_exhaustive()
    }
}

impl Http2ClientStream {
    /// The HTTP/2 stream id.
    pub fn stream_id(&self) -> h2::StreamId {
        self.send.stream_id()
    }
}

impl AsyncRead for Http2ClientStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.body.poll_read(cx, buf)
    }
}

impl AsyncWrite for Http2ClientStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.ended {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        http2_body::poll_send(&mut self.send, cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // The connection's task writes the frames out.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        http2_body::end(&mut this.send, &mut this.ended);
        Poll::Ready(Ok(()))
    }
}

/// The window a stream may receive unread, and the connection's (256 streams' worth), so
/// that one socket nobody reads does not stall the others.
const STREAM_WINDOW: u32 = 256 * 1024;
const CONNECTION_WINDOW: u32 = 64 * 1024 * 1024;

/// Opens a WebSocket as `config.http2` says (not [`Http2::Never`]).
pub(super) async fn connect<S, W>(
    request: &ClientRequest,
    config: &ClientConfig,
    wrap: W,
) -> Result<(WebSocket<S>, Handshake)>
where
    S: AsyncRead + AsyncWrite + Unpin,
    W: FnOnce(ClientStream) -> S,
{
    let target = &request.target;
    if config.http2 == Http2::WhenOffered && !target.tls {
        return super::connect_http1(request, config, wrap).await;
    }
    let pool = &config.http2_pool;
    let origin = pool.origin((target.tls, target.host.clone(), target.port));
    let mut connections = origin.lock().await;
    if let Some(conn) = pool.pick(&mut connections) {
        drop(connections);
        let streams = conn.streams.clone();
        match within_timeout(config, extended_connect(conn, request, config)).await {
            // The connection died or went away since it was last used (the server's idle
            // timeout, GOAWAY, a restart): it leaves the pool, and a new one is opened.
            Err(Error::Http2(Http2Error::Connection(_) | Http2Error::Stream(_))) => {}
            done => return done.map(|opened| opened.websocket(wrap)),
        }
        connections = origin.lock().await;
        connections.retain(|c| !Arc::ptr_eq(&c.streams, &streams));
    }
    let conn = match open_connection(request, config).await? {
        Opened::Http2(send) => {
            let conn = Pooled {
                send,
                streams: Arc::new(()),
            };
            connections.push(conn.clone());
            conn
        }
        Opened::Http1(io) => {
            drop(connections);
            return super::client_handshake_request(wrap(io), request, config).await;
        }
    };
    drop(connections);
    let opened = within_timeout(config, extended_connect(conn, request, config)).await?;
    Ok(opened.websocket(wrap))
}

/// An answered extended CONNECT: its stream, before it becomes a socket.
struct Connected {
    stream: Http2ClientStream,
    socket: crate::Config,
    handshake: Handshake,
}

impl Connected {
    /// The socket on the stream, wrapped by `wrap`.
    fn websocket<S, W>(self, wrap: W) -> (WebSocket<S>, Handshake)
    where
        S: AsyncRead + AsyncWrite + Unpin,
        W: FnOnce(ClientStream) -> S,
    {
        let io = wrap(ClientStream::Http2(self.stream));
        let subprotocol = self.handshake.response.subprotocol.clone();
        let ws =
            WebSocket::from_raw(io, Role::Client, self.socket, &[]).with_subprotocol(subprotocol);
        (ws, self.handshake)
    }
}

/// The WebSocket over HTTP/2 (RFC 8441) on a connection the caller opened: the HTTP/2
/// handshake over `io` (prior knowledge, as `h2c`; or a TLS session whose ALPN chose `h2`),
/// then the extended CONNECT of `request`, within the handshake timeout, as
/// [`connect_with`](super::connect_with) does with [`Http2::Always`]. The connection is not
/// pooled: it carries this WebSocket alone, and ends with it. What it is for: a transport
/// of one's own underneath (a load generator counting the bytes on the wire, a socket
/// made elsewhere).
pub async fn client_handshake_http2<S>(
    io: S,
    request: impl super::IntoClientRequest,
    config: &ClientConfig,
) -> Result<(WebSocket<ClientStream>, Handshake)>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let request = request.into_client_request()?;
    within_timeout(config, async {
        let conn = Pooled {
            send: handshake(io).await?,
            streams: Arc::new(()),
        };
        extended_connect(conn, &request, config).await
    })
    .await
    .map(|connected| connected.websocket(|io| io))
}

async fn within_timeout<T>(
    config: &ClientConfig,
    f: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    tokio::time::timeout(config.handshake_timeout, f)
        .await
        .map_err(|_| Error::HandshakeTimeout)?
}

enum Opened {
    Http2(SendRequest<Bytes>),
    /// `wss://` whose server chose `http/1.1`.
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    Http1(ClientStream),
}

/// A new connection to the request's origin, HTTP/2 unless the server chose `http/1.1`
/// (only offered with [`Http2::WhenOffered`]).
async fn open_connection(request: &ClientRequest, config: &ClientConfig) -> Result<Opened> {
    let target = &request.target;
    let tcp = open_tcp(target, config).await?;
    let handshake = async {
        #[cfg(feature = "tls")]
        if target.tls {
            let and_http1 = config.http2 == Http2::WhenOffered;
            let tls = crate::tls::connect_offering_http2(tcp, &target.host, &config.tls, and_http1)
                .await?;
            if !crate::tls::client_negotiated_http2(&tls) {
                if and_http1 {
                    return Ok(Opened::Http1(ClientStream::Tls(Box::new(tls))));
                }
                return Err(Http2Error::NotNegotiated.into());
            }
            return Ok(Opened::Http2(handshake(tls).await?));
        }
        #[cfg(not(feature = "tls"))]
        if target.tls {
            return Err(Error::Url(format!(
                "wss://{}{}: wss:// needs the tls feature of wsduplex",
                target.host_header, target.path
            )));
        }
        Ok(Opened::Http2(handshake(tcp).await?))
    };
    within_timeout(config, handshake).await
}

/// The HTTP/2 handshake over `io`, its connection driven by a task of its own; returns
/// once the server's settings allow extended CONNECT.
async fn handshake<T>(io: T) -> Result<SendRequest<Bytes>>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (send, mut conn) = h2::client::Builder::new()
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .handshake::<T, Bytes>(io)
        .await
        .map_err(Http2Error::Handshake)?;
    let mut ping = conn.ping_pong();
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!("http/2 client connection ended: {e}");
        }
    });
    // RFC 9113 §3.4: the server's SETTINGS are its first frame, and h2 applies them
    // before reading further: once our PING is answered, they are in.
    if let Some(ping) = ping.as_mut() {
        ping.ping(h2::Ping::opaque())
            .await
            .map_err(Http2Error::Handshake)?;
    }
    // RFC 8441 §3: no extended CONNECT unless the server sent the setting.
    if !send.is_extended_connect_protocol_enabled() {
        return Err(Http2Error::NoExtendedConnect.into());
    }
    Ok(send)
}

/// The extended CONNECT (RFC 8441 §4) on a new stream of `conn`, and its answer checked.
async fn extended_connect(
    conn: Pooled,
    request: &ClientRequest,
    config: &ClientConfig,
) -> Result<Connected> {
    let req = super::build_request(&request.target, Some(request), config)?;
    let target = &request.target;
    let scheme = if target.tls { "https" } else { "http" };
    let uri = http::Uri::builder()
        .scheme(scheme)
        .authority(target.host_header.as_str())
        .path_and_query(target.path.as_str())
        .build()
        .map_err(|e| Error::Url(format!("{}{}: {e}", target.host_header, target.path)))?;
    let mut head = http::Request::builder()
        .method(http::Method::CONNECT)
        .uri(uri)
        .version(http::Version::HTTP_2);
    let mut text = format!(
        ":method: CONNECT\r\n:protocol: websocket\r\n:scheme: {scheme}\r\n:path: {}\r\n:authority: {}\r\n",
        target.path, target.host_header
    );
    for (name, value) in req.http2_fields() {
        text.push_str(&format!("{name}: {value}\r\n"));
        head = head.header(name, value);
    }
    let mut head = head
        .body(())
        .map_err(|e| Error::Url(format!("{}: {e}", target.host_header)))?;
    head.extensions_mut()
        .insert(h2::ext::Protocol::from_static("websocket"));
    let Pooled {
        send: conn,
        streams,
    } = conn;
    let mut conn = conn.ready().await.map_err(Http2Error::Connection)?;
    let (response, send) = conn.send_request(head, false).map_err(Http2Error::Stream)?;
    let response = response.await.map_err(Http2Error::Stream)?;
    let status = response.status().as_u16();
    let mut response_head = format!(":status: {status}\r\n");
    let fields: Vec<(String, String)> = response
        .headers()
        .iter()
        .map(|(n, v)| {
            let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
            response_head.push_str(&format!("{n}: {v}\r\n"));
            (n.to_string(), v)
        })
        .collect();
    let checked = req.check_http2_response(status, fields)?;
    let stream = Http2ClientStream {
        body: Body::new(response.into_body()),
        send,
        ended: false,
        _pooled: streams,
    };
    let mut socket = config.socket.clone();
    if let Some(policy) = &config.deflate {
        socket.protocol = socket.protocol.deflate(checked.deflate, policy);
    }
    let handshake = Handshake {
        request: text,
        response_head,
        response: checked,
    };
    Ok(Connected {
        stream,
        socket,
        handshake,
    })
}
