//! The client side: `connect(url)` over TCP, or a handshake over any stream. `connect`
//! takes a URL or an `http::Request<()>` ([`IntoClientRequest`], in `request`). With the
//! `http2` feature, over HTTP/2 too (RFC 8441, in `http2`: [`ClientConfig::http2`]).

#[cfg(feature = "http2")]
pub mod http2;
mod request;

#[cfg(feature = "http2")]
pub use http2::{client_handshake_http2, Http2, Http2ClientStream, Http2Pool};
pub use request::{ClientRequest, IntoClientRequest};

use crate::error::{Error, Result};
use crate::proxy::ProxySetting;
use crate::socket::{Config, WebSocket};
use bytes::BytesMut;
use proto::handshake::client::{Request, Response};
use proto::{DeflateConfig, Role};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

/// Client settings.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ClientConfig {
    /// The `Origin` header, if any (browsers always send one).
    pub origin: Option<String>,
    /// Subprotocols to offer, most preferred first.
    pub subprotocols: Vec<String>,
    /// Extra request headers (e.g. `Authorization`).
    pub headers: Vec<(String, String)>,
    /// Time allowed to establish the TCP connection.
    pub connect_timeout: Duration,
    /// Time allowed for the opening handshake.
    pub handshake_timeout: Duration,
    /// Settings for the socket.
    pub socket: Config,
    /// TLS settings for `wss://` URLs (extra CAs, client certificate, ...).
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub tls: crate::tls::TlsOptions,
    /// Which proxy to go through: by default the environment's (`https_proxy`,
    /// `http_proxy`, `all_proxy`, `no_proxy`), as curl does; see [`crate::proxy`].
    pub proxy: ProxySetting,
    /// permessage-deflate (RFC 7692) to offer; the server decides. Offered by default, as
    /// browsers, Node's `ws` and Python's `websockets` do: it costs nothing unless the
    /// server accepts. `None`: not offered.
    pub deflate: Option<DeflateConfig>,
    /// When to open the WebSocket over HTTP/2 (RFC 8441): by default never.
    #[cfg(feature = "http2")]
    pub http2: http2::Http2,
    /// The HTTP/2 connections that connects with this config (and its clones) share.
    #[cfg(feature = "http2")]
    pub http2_pool: http2::Http2Pool,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            origin: None,
            subprotocols: Vec::new(),
            headers: Vec::new(),
            connect_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(10),
            socket: Config::default(),
            #[cfg(feature = "tls")]
            tls: crate::tls::TlsOptions::default(),
            proxy: ProxySetting::default(),
            deflate: Some(DeflateConfig::default()),
            #[cfg(feature = "http2")]
            http2: http2::Http2::Never,
            #[cfg(feature = "http2")]
            http2_pool: http2::Http2Pool::new(),
        }
    }
}

/// What the opening handshake exchanged.
#[derive(Clone, Debug)]
pub struct Handshake {
    /// The request head as sent (over HTTP/2: its pseudo-headers and fields, a
    /// `name: value` line each).
    pub request: String,
    /// The response head as received (over HTTP/2: `:status` and the fields).
    pub response_head: String,
    /// The checked response.
    pub response: Response,
}

/// The transport of a client connection: what the URL's scheme asked for.
#[derive(Debug)]
#[non_exhaustive]
pub enum ClientStream {
    /// `ws://`.
    Plain(TcpStream),
    /// `wss://` (boxed: a TLS session is large, and a plain connection should not pay
    /// for it).
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    /// A stream of an HTTP/2 connection (RFC 8441), which other streams may share.
    #[cfg(feature = "http2")]
    Http2(http2::Http2ClientStream),
}

impl ClientStream {
    /// The TCP connection underneath (to a proxy, if the connection goes through one): its
    /// `peer_addr`, `local_addr`, socket options. Over `wss://`, `Tls(s)`'s `s.get_ref().1`
    /// is the TLS session (the server's certificates, ALPN). `None` over HTTP/2, whose
    /// connection belongs to its task and its streams.
    pub fn tcp(&self) -> Option<&TcpStream> {
        match self {
            Self::Plain(s) => Some(s),
            #[cfg(feature = "tls")]
            Self::Tls(s) => Some(s.get_ref().0),
            #[cfg(feature = "http2")]
            Self::Http2(_) => None,
        }
    }
}

impl AsyncRead for ClientStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
            #[cfg(feature = "tls")]
            Self::Tls(s) => Pin::new(s).poll_read(cx, buf),
            #[cfg(feature = "http2")]
            Self::Http2(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ClientStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
            #[cfg(feature = "tls")]
            Self::Tls(s) => Pin::new(s).poll_write(cx, buf),
            #[cfg(feature = "http2")]
            Self::Http2(s) => Pin::new(s).poll_write(cx, buf),
        }
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            #[cfg(feature = "tls")]
            Self::Tls(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            #[cfg(feature = "http2")]
            Self::Http2(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }
    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Plain(s) => s.is_write_vectored(),
            #[cfg(feature = "tls")]
            Self::Tls(s) => s.is_write_vectored(),
            #[cfg(feature = "http2")]
            Self::Http2(s) => s.is_write_vectored(),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_flush(cx),
            #[cfg(feature = "tls")]
            Self::Tls(s) => Pin::new(s).poll_flush(cx),
            #[cfg(feature = "http2")]
            Self::Http2(s) => Pin::new(s).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_shutdown(cx),
            #[cfg(feature = "tls")]
            Self::Tls(s) => Pin::new(s).poll_shutdown(cx),
            #[cfg(feature = "http2")]
            Self::Http2(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// A parsed `ws://` URL: where to connect and what to ask for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// Host name or address, without brackets.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// The `Host` header value.
    pub host_header: String,
    /// Path and query.
    pub path: String,
    /// `wss://`.
    pub tls: bool,
}

impl Target {
    /// Parses `ws://` and `wss://` URLs.
    pub fn parse(url: &str) -> Result<Self> {
        let u = url::Url::parse(url).map_err(|e| Error::Url(format!("{url}: {e}")))?;
        let tls = match u.scheme() {
            "ws" => false,
            "wss" => true,
            other => {
                return Err(Error::Url(format!(
                    "{url}: scheme {other} is not ws or wss"
                )))
            }
        };
        if u.fragment().is_some() {
            // RFC 6455 §3: fragment identifiers MUST NOT be used in WebSocket URIs.
            return Err(Error::Url(format!(
                "{url}: a websocket url has no #fragment"
            )));
        }
        let host = match u.host() {
            Some(url::Host::Domain(d)) => d.to_string(),
            Some(url::Host::Ipv4(a)) => a.to_string(),
            Some(url::Host::Ipv6(a)) => a.to_string(),
            None => return Err(Error::Url(format!("{url}: no host"))),
        };
        let port = u
            .port_or_known_default()
            .unwrap_or(if tls { 443 } else { 80 });
        let host_str = u.host_str().unwrap_or_default();
        let host_header = match u.port() {
            Some(p) => format!("{host_str}:{p}"),
            None => host_str.to_string(),
        };
        let mut path = u.path().to_string();
        if let Some(q) = u.query() {
            path.push('?');
            path.push_str(q);
        }
        Ok(Self {
            host,
            port,
            host_header,
            path,
            tls,
        })
    }
}

/// Connects to a `ws://` or `wss://` URL (or an `http::Request<()>`, see
/// [`IntoClientRequest`]) with default settings.
pub async fn connect(
    request: impl IntoClientRequest,
) -> Result<(WebSocket<ClientStream>, Handshake)> {
    connect_with(request, &ClientConfig::default()).await
}

/// Connects to a `ws://` or `wss://` URL, or as an `http::Request<()>` says (its URI, its
/// headers, the subprotocols of its `Sec-WebSocket-Protocol`: see [`IntoClientRequest`]).
///
/// ```no_run
/// # async fn run() -> Result<(), wsduplex::Error> {
/// let request = http::Request::get("ws://127.0.0.1:8080/chat/home")
///     .header("authorization", "Bearer secret")
///     .header("sec-websocket-protocol", "chat.v2, chat.v1")
///     .body(())
///     .unwrap();
/// let (ws, _handshake) = wsduplex::connect_with(request, &Default::default()).await?;
/// println!("speaking {:?}", ws.subprotocol());
/// # Ok(())
/// # }
/// ```
///
/// For `wss://`, the server's certificate is
/// checked against the bundled web roots, the system's roots and
/// [`ClientConfig::tls`], for the URL's host (also sent as SNI), within the handshake
/// timeout.
///
/// The connection goes through the proxy that [`ClientConfig::proxy`] selects for the URL
/// (by default from the environment); with a proxy, TLS runs inside the tunnel.
///
/// With the `http2` feature, [`ClientConfig::http2`] may put the WebSocket on a stream of
/// an HTTP/2 connection (RFC 8441), shared through [`ClientConfig::http2_pool`].
pub async fn connect_with(
    request: impl IntoClientRequest,
    config: &ClientConfig,
) -> Result<(WebSocket<ClientStream>, Handshake)> {
    connect_wrapped(request, config, |io| io).await
}

/// [`connect_with`], with the transport wrapped by `wrap` once it is connected (after TLS,
/// before the opening handshake; over HTTP/2, the WebSocket's stream once the extended
/// CONNECT is answered): a [`Tap`](crate::tap::Tap) that sees every byte, say.
pub async fn connect_wrapped<S, W>(
    request: impl IntoClientRequest,
    config: &ClientConfig,
    wrap: W,
) -> Result<(WebSocket<S>, Handshake)>
where
    S: AsyncRead + AsyncWrite + Unpin,
    W: FnOnce(ClientStream) -> S,
{
    let request = request.into_client_request()?;
    #[cfg(feature = "http2")]
    if config.http2 != http2::Http2::Never {
        return http2::connect(&request, config, wrap).await;
    }
    connect_http1(&request, config, wrap).await
}

/// The TCP connection to `target`, through the configured proxy, within the connect
/// timeout.
pub(crate) async fn open_tcp(target: &Target, config: &ClientConfig) -> Result<TcpStream> {
    let proxy = config.proxy.proxy_for(target)?;
    let tcp = tokio::time::timeout(config.connect_timeout, async {
        match &proxy {
            None => Ok(TcpStream::connect((target.host.as_str(), target.port)).await?),
            // The tunnel's setup is part of establishing the connection.
            Some(proxy) => crate::proxy::open_tunnel(proxy, target).await,
        }
    })
    .await
    .map_err(|_| Error::ConnectTimeout)??;
    tcp.set_nodelay(true)?;
    Ok(tcp)
}

async fn connect_http1<S, W>(
    request: &ClientRequest,
    config: &ClientConfig,
    wrap: W,
) -> Result<(WebSocket<S>, Handshake)>
where
    S: AsyncRead + AsyncWrite + Unpin,
    W: FnOnce(ClientStream) -> S,
{
    let target = &request.target;
    #[cfg(not(feature = "tls"))]
    if target.tls {
        return Err(Error::Url(format!(
            "wss://{}{}: wss:// needs the tls feature of wsduplex",
            target.host_header, target.path
        )));
    }
    let tcp = open_tcp(target, config).await?;
    #[cfg(feature = "tls")]
    if target.tls {
        let tls = tokio::time::timeout(
            config.handshake_timeout,
            crate::tls::connect(tcp, &target.host, &config.tls),
        )
        .await
        .map_err(|_| Error::HandshakeTimeout)??;
        // TLS 1.3: a server that refuses the client's certificate says so after the
        // client's side of the handshake, in an alert the first read returns.
        return client_handshake_request(wrap(ClientStream::Tls(Box::new(tls))), request, config)
            .await
            .map_err(|e| match e {
                Error::Io(io) => crate::tls::handshake_error(io),
                e => e,
            });
    }
    client_handshake_request(wrap(ClientStream::Plain(tcp)), request, config).await
}

/// Runs the client handshake over an established stream.
pub async fn client_handshake<S>(
    io: S,
    target: &Target,
    config: &ClientConfig,
) -> Result<(WebSocket<S>, Handshake)>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    handshake(io, target, None, config).await
}

/// [`client_handshake`] with a request's own `Origin`, subprotocols and headers (from an
/// `http::Request`, see [`IntoClientRequest`]).
pub async fn client_handshake_request<S>(
    io: S,
    request: &ClientRequest,
    config: &ClientConfig,
) -> Result<(WebSocket<S>, Handshake)>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    handshake(io, &request.target, Some(request), config).await
}

/// The opening request: the config's settings, then the request's own.
fn build_request(
    target: &Target,
    own: Option<&ClientRequest>,
    config: &ClientConfig,
) -> Result<Request> {
    let mut req = Request::new(target.host_header.clone(), target.path.clone());
    if let Some(o) = own
        .and_then(|r| r.origin.as_ref())
        .or(config.origin.as_ref())
    {
        req = req.origin(o.clone())?;
    }
    let subprotocols = own.and_then(|r| r.subprotocols.as_ref());
    for p in subprotocols.unwrap_or(&config.subprotocols) {
        req = req.subprotocol(p.clone())?;
    }
    let own_headers = own.map_or(&[][..], |r| &r.headers[..]);
    for (n, v) in config.headers.iter().chain(own_headers) {
        req = req.header(n.clone(), v.clone())?;
    }
    if let Some(d) = &config.deflate {
        req = req.deflate(d.clone());
    }
    Ok(req)
}

async fn handshake<S>(
    mut io: S,
    target: &Target,
    own: Option<&ClientRequest>,
    config: &ClientConfig,
) -> Result<(WebSocket<S>, Handshake)>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let req = build_request(target, own, config)?;
    let request_bytes = req.to_bytes();
    let fut = async {
        io.write_all(&request_bytes).await?;
        let mut buf = BytesMut::with_capacity(1024);
        loop {
            if io.read_buf(&mut buf).await? == 0 {
                return Err(Error::Io(std::io::ErrorKind::UnexpectedEof.into()));
            }
            if let Some((resp, n)) = req.parse_response(&buf)? {
                let head = String::from_utf8_lossy(&buf[..n]).into_owned();
                return Ok((resp, head, buf.split_off(n)));
            }
        }
    };
    let (response, response_head, leftover) = tokio::time::timeout(config.handshake_timeout, fut)
        .await
        .map_err(|_| Error::HandshakeTimeout)??;
    let subprotocol = response.subprotocol.clone();
    let mut socket = config.socket.clone();
    if let Some(policy) = &config.deflate {
        socket.protocol = socket.protocol.deflate(response.deflate, policy);
    }
    let ws = WebSocket::from_raw(io, Role::Client, socket, &leftover).with_subprotocol(subprotocol);
    let handshake = Handshake {
        request: String::from_utf8_lossy(&request_bytes).into_owned(),
        response_head,
        response,
    };
    Ok((ws, handshake))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse() {
        let t = Target::parse("ws://localhost:8080/echo?x=1").unwrap();
        assert_eq!(
            (
                t.host.as_str(),
                t.port,
                t.host_header.as_str(),
                t.path.as_str()
            ),
            ("localhost", 8080, "localhost:8080", "/echo?x=1")
        );
        let t = Target::parse("ws://[::1]/").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.host_header.as_str()),
            ("::1", 80, "[::1]")
        );
        assert!(Target::parse("wss://example.com").unwrap().tls);
        assert!(Target::parse("http://example.com").is_err());
        assert!(Target::parse("ws://example.com/#frag").is_err());
        assert!(Target::parse("not a url").is_err());
    }
}
