//! The server side: read one HTTP request, then upgrade it to a WebSocket, refuse it with
//! a status, or answer it as plain HTTP (WebSocket shares its port with HTTP).
//!
//! ```text
//!  accept ─▶ open_connection ─▶ read_request ─▶ Incoming::admit ─▶ route ─┬─▶ accept (authenticate, negotiate, 101)
//!           (limits: 503/429)                  (429, Origin 403)          ├─▶ authenticate ─▶ a session (the hub's /poll)
//!                                                                          └─▶ respond (plain HTTP)
//! ```
//!
//! Every admission decision (connection limits, the Origin policy, authentication) and its
//! answer live in [`admission`]; the agreement a `101` answers with (subprotocol,
//! permessage-deflate, limits) is made by [`ServerConfig::negotiate`]. Every upgrade request
//! is counted once in [`crate::metrics`]' handshakes, whichever way it is answered.

pub mod admission;
#[cfg(feature = "http2")]
#[cfg_attr(docsrs, doc(cfg(feature = "http2")))]
pub mod http2;
pub mod http_types;
pub mod proxy_protocol;

pub use admission::{Peer, Refusal, RETRY_AFTER_SECS};
#[cfg(feature = "http2")]
#[cfg_attr(docsrs, doc(cfg(feature = "http2")))]
pub use http2::{Http2Config, Http2Connection, Http2Error, Http2Request, Http2Stream};
pub use http_types::{ExtendedConnectError, HttpHead, HttpRefusal, HttpUpgrade};

use crate::auth::{AuthHook, Identity};
use crate::error::{Error, Result};
use crate::forwarded::Cidr;
use crate::limits::{ConnectionLimiter, Permit};
use crate::metrics;
use crate::socket::{Config, SharedSettings, WebSocket};
use bytes::{Bytes, BytesMut};
use proto::handshake::server::{
    http_response, http_response_streamed, HandshakeError, Limits, Request,
};
use proto::{DeflateConfig, Role};
use std::sync::{Arc, LazyLock};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Server settings.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ServerConfig {
    /// Request head limits (`431` beyond them).
    pub limits: Limits,
    /// Time allowed for the client to send its whole request head.
    pub handshake_timeout: Duration,
    /// Subprotocols this server speaks, most preferred first.
    pub subprotocols: Vec<String>,
    /// Settings for accepted sockets.
    pub socket: Config,
    /// Checks every request before it is accepted (see [`crate::auth`]); `None` lets all
    /// through.
    pub auth: Option<AuthHook>,
    /// permessage-deflate (RFC 7692): accepted from clients that offer it when set. Off by
    /// default, as in Node's `ws`: each compressed connection keeps zlib state (up to about
    /// 300 KiB with 15-bit windows and context takeover) and spends CPU on every message.
    pub deflate: Option<DeflateConfig>,
    /// Open connections, counted against a total and a per-client limit (see
    /// [`ServerConfig::open_connection`]). Clones of the config share it. Default: no limits.
    pub connections: Arc<ConnectionLimiter>,
    /// Reverse proxies whose `Forwarded` / `X-Forwarded-For` headers are believed (see
    /// [`crate::forwarded`]): the client address is then the one they report.
    pub trusted_proxies: Vec<Cidr>,
    /// TCP load balancers that put a PROXY protocol header (v1 or v2, see
    /// [`proxy_protocol`]) before their client's bytes: connections from these sources
    /// must start with one, and the address it carries is the client's. Their
    /// connections are counted against the per-client limit once the header is read
    /// ([`ServerConfig::attribute_client`]), not at accept.
    pub proxy_protocol: Vec<Cidr>,
    /// Origins (`https://chat.example.com`) whose pages may open WebSockets and send unsafe
    /// requests (any method but `GET` and `HEAD`); others get `403`. Requests without an
    /// `Origin` header (not from a browser) are not affected. Empty: the default rule of
    /// [`admission`] applies: a request let in by a cookie must come from the
    /// server's own origin.
    pub allowed_origins: Vec<String>,
    /// Lets any page open WebSockets with the user's cookie (no same-origin rule when
    /// [`allowed_origins`](Self::allowed_origins) is empty). Only for a server whose cookie
    /// grants nothing worth stealing.
    pub dangerous_allow_any_origin: bool,
    /// The core's settings of the connections without permessage-deflate, one copy of each
    /// distinct set for all of them instead of one per connection. Clones of the config
    /// share it too (axum clones one per request).
    shared_settings: Arc<SharedSettings>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            handshake_timeout: Duration::from_secs(10),
            subprotocols: Vec::new(),
            socket: Config::default(),
            deflate: None,
            auth: None,
            connections: ConnectionLimiter::new(0, 0),
            trusted_proxies: Vec::new(),
            proxy_protocol: Vec::new(),
            allowed_origins: Vec::new(),
            dangerous_allow_any_origin: false,
            shared_settings: Arc::default(),
        }
    }
}

/// The default settings, for the helpers that take none: one value, so their connections
/// share the core's settings as a configured server's do.
pub(crate) fn default_config() -> &'static ServerConfig {
    static DEFAULT: LazyLock<ServerConfig> = LazyLock::new(ServerConfig::default);
    &DEFAULT
}

/// What a `101` agrees to, from [`ServerConfig::negotiate`]: adjust it (a tighter message
/// limit, say) before [`Incoming::accept_negotiated`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Negotiated {
    /// The subprotocol chosen, one the client offered.
    pub subprotocol: Option<String>,
    /// The socket's settings, with the permessage-deflate agreement in
    /// `socket.protocol.deflate` if one was reached.
    pub socket: Config,
    /// The server's shared core settings, which the socket takes its from (without
    /// permessage-deflate), whatever `socket` was adjusted to.
    shared: Arc<SharedSettings>,
}

impl Negotiated {
    /// The socket for a transport whose `101` (from this agreement) was sent elsewhere:
    /// by hyper after [`ServerConfig::upgrade_http`], say. `leftover` holds bytes read past
    /// the request head (the first frames), if any.
    pub fn websocket<S: AsyncRead + AsyncWrite + Unpin>(
        self,
        io: S,
        leftover: &[u8],
    ) -> WebSocket<S> {
        WebSocket::from_raw_shared(io, Role::Server, &self.socket, Some(&self.shared), leftover)
            .with_subprotocol(self.subprotocol)
    }
}

impl ServerConfig {
    /// Turns a request into what its `101` agrees to: the subprotocol (the first of
    /// [`subprotocols`](Self::subprotocols) that the client offers), the permessage-deflate
    /// parameters (if [`deflate`](Self::deflate) is set and the client offers it), and the
    /// socket's limits and timers ([`socket`](Self::socket)).
    pub fn negotiate(&self, request: &Request) -> Negotiated {
        let subprotocol = self.choose_subprotocol(request).map(str::to_string);
        let mut socket = self.socket_before_agreement();
        if let Some(policy) = &self.deflate {
            socket.protocol.deflate = request.negotiate_deflate(policy);
        }
        Negotiated {
            subprotocol,
            socket,
            shared: Arc::clone(&self.shared_settings),
        }
    }

    /// The first of [`subprotocols`](Self::subprotocols) that the client offers.
    fn choose_subprotocol(&self, request: &Request) -> Option<&str> {
        self.subprotocols
            .iter()
            .map(String::as_str)
            .find(|s| request.subprotocols().any(|o| o == *s))
    }

    /// The socket's settings before an agreement: the deflate policy's level and threshold
    /// applied, as [`ServerConfig::negotiate`] applies them.
    fn socket_before_agreement(&self) -> Config {
        let mut socket = self.socket.clone();
        if let Some(policy) = &self.deflate {
            socket.protocol = socket.protocol.deflate(None, policy);
        }
        socket
    }

    /// Resumes a socket handed over from another process ([`WebSocket::from_parts`]) with
    /// this server's settings ([`socket`](Self::socket), and the [`deflate`](Self::deflate)
    /// policy's level and threshold); the subprotocol and the permessage-deflate agreement
    /// come from the state. Like an accepted connection without permessage-deflate, it
    /// shares the core's settings with the server's others.
    #[cfg(feature = "handover")]
    #[cfg_attr(docsrs, doc(cfg(feature = "handover")))]
    pub fn resume<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        io: S,
        state: crate::SocketState,
    ) -> std::result::Result<WebSocket<S>, crate::HandoverError> {
        let socket = self.socket_before_agreement();
        WebSocket::from_parts_shared(io, state, &socket, Some(&self.shared_settings))
    }
}

/// A request read from a connection, not yet answered.
pub struct Incoming<S> {
    io: S,
    request: Request,
    leftover: BytesMut,
    peer: Option<Peer>,
    /// [`Incoming::admit`] passed: not checked again when the request is handed on.
    admitted: bool,
    /// Who [`Incoming::authenticate`] found made the request (set once it passed); boxed,
    /// as most requests (an echo, a page) never have one.
    identity: Option<Box<Identity>>,
    /// A stream of an HTTP/2 connection: its request side ends with the request, not when
    /// the client leaves.
    http2: bool,
}

impl<S> std::fmt::Debug for Incoming<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Incoming")
            .field("request", &self.request)
            .field("peer", &self.peer)
            .finish()
    }
}

/// Reads one request head, within the configured size and time limits. A malformed or
/// oversized head is answered (`400`/`431`) and the connection closed before this returns
/// the error.
pub async fn read_request<S>(io: S, config: &ServerConfig) -> Result<Incoming<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    match read_head(io, config, false).await? {
        Head::Http1(incoming) => Ok(incoming),
        // Not looked for.
        Head::Preface(..) => Err(Error::Handshake(HandshakeError::MalformedRequest)),
    }
}

/// What a connection starts with: an HTTP/1.1 request, or the HTTP/2 connection preface
/// (`h2c` with prior knowledge, RFC 9113 §3.3).
#[cfg(feature = "http2")]
#[cfg_attr(docsrs, doc(cfg(feature = "http2")))]
#[derive(Debug)]
pub enum FirstRequest<S> {
    /// An HTTP/1.1 request, read.
    Http1(Incoming<S>),
    /// The HTTP/2 preface: hand the connection (the bytes read so far included) to
    /// [`http2::Http2Connection::handshake`].
    Http2(http2::Prefaced<S>),
}

/// [`read_request`], or the HTTP/2 preface: `h2c` on the same port as HTTP/1.1. The
/// preface is recognised in the bytes read for the request head, so an HTTP/1.1
/// connection costs no extra read.
#[cfg(feature = "http2")]
#[cfg_attr(docsrs, doc(cfg(feature = "http2")))]
pub async fn read_request_or_preface<S>(io: S, config: &ServerConfig) -> Result<FirstRequest<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    Ok(match read_head(io, config, true).await? {
        Head::Http1(incoming) => FirstRequest::Http1(incoming),
        Head::Preface(io, read) => FirstRequest::Http2(http2::Prefaced::new(read.freeze(), io)),
    })
}

// Without `http2`, the preface is never looked for.
#[cfg_attr(not(feature = "http2"), allow(dead_code))]
enum Head<S> {
    Http1(Incoming<S>),
    Preface(S, BytesMut),
}

/// Whether `buf` starts like the HTTP/2 preface; `Some(true)` once all of it is there.
#[cfg(feature = "http2")]
fn preface(buf: &[u8]) -> Option<bool> {
    http2::may_be_preface(buf).then_some(buf.len() >= http2::PREFACE.len())
}

#[cfg(not(feature = "http2"))]
fn preface(_: &[u8]) -> Option<bool> {
    None
}

async fn read_head<S>(mut io: S, config: &ServerConfig, h2c: bool) -> Result<Head<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut buf = BytesMut::with_capacity(1024);
    let limits = config.limits;
    let parsed = tokio::time::timeout(config.handshake_timeout, async {
        loop {
            if buf.capacity() - buf.len() < 512 {
                buf.reserve(1024.min(limits.max_head_size + 1));
            }
            if io.read_buf(&mut buf).await? == 0 {
                return Err(Error::Io(std::io::ErrorKind::UnexpectedEof.into()));
            }
            if h2c {
                match preface(&buf) {
                    Some(true) => return Ok(None),
                    Some(false) => continue,
                    None => {}
                }
            }
            match Request::parse(&buf, &limits) {
                Ok(Some(done)) => return Ok(Some(done)),
                Ok(None) => {}
                Err(e) => return Err(Error::Handshake(e)),
            }
        }
    })
    .await;
    match parsed {
        Ok(Ok(Some((request, n)))) => {
            // What follows the head, in the same buffer: advancing it, unlike splitting it,
            // allocates no shared header.
            bytes::Buf::advance(&mut buf, n);
            Ok(Head::Http1(Incoming {
                io,
                request,
                leftover: buf,
                peer: None,
                admitted: false,
                identity: None,
                http2: false,
            }))
        }
        Ok(Ok(None)) => Ok(Head::Preface(io, buf)),
        Ok(Err(Error::Handshake(e))) => {
            let _ = write_and_close(&mut io, &e.to_response()).await;
            Err(Error::Handshake(e))
        }
        Ok(Err(e)) => Err(e),
        Err(_) => Err(Error::HandshakeTimeout),
    }
}

async fn write_and_close<S: AsyncWrite + Unpin>(io: &mut S, bytes: &[u8]) -> std::io::Result<()> {
    io.write_all(bytes).await?;
    io.shutdown().await
}

impl<S: AsyncRead + AsyncWrite + Unpin> Incoming<S> {
    /// The request.
    pub fn request(&self) -> &Request {
        &self.request
    }

    /// Whether the request came on an HTTP/2 stream (feature `http2`): reading its transport
    /// ends with the request's body, not when the client leaves.
    pub fn is_http2(&self) -> bool {
        self.http2
    }

    /// The request target, e.g. `/echo?x=1`.
    pub fn path(&self) -> &str {
        self.request.path()
    }

    /// Whether the client asks for a WebSocket upgrade.
    pub fn is_upgrade(&self) -> bool {
        self.request.is_upgrade()
    }

    /// Tells what the transport knows about the other end (its address, TLS or not), for
    /// the per-client limit and the same-origin rule. Without it, neither is checked
    /// against the transport: see [`admission`].
    pub fn set_peer(&mut self, peer: Peer) {
        self.peer = Some(peer);
    }

    /// What [`set_peer`](Self::set_peer) told.
    pub fn peer(&self) -> Option<&Peer> {
        self.peer.as_ref()
    }

    /// The front door's checks for any request ([`ServerConfig::admit`]: the per-client
    /// limit, counted on `permit`, and the Origin allow-list), once: a request already
    /// admitted goes through. On a refusal, answers it and closes the connection.
    pub async fn admit(
        mut self,
        config: &ServerConfig,
        permit: Option<&mut Permit>,
    ) -> Result<Self> {
        if self.admitted {
            return Ok(self);
        }
        match config.admit(&self.request, self.peer.as_ref(), permit) {
            Ok(()) => {
                self.admitted = true;
                Ok(self)
            }
            Err(refusal) => {
                // Boxed, here and in `accept`: a refusal is rare, and its answer's future
                // would otherwise size every caller's (each copy of which is a memcpy of
                // it: bench/README.md, E).
                Box::pin(self.refuse(&refusal)).await?;
                Err(refusal.into())
            }
        }
    }

    /// [`Incoming::admit`], then the checks of a route that opens a WebSocket or a session
    /// ([`ServerConfig::authenticate`]: [`ServerConfig::auth`] and the same-origin rule for
    /// cookies), once. On a refusal, answers it (`401` with `WWW-Authenticate: Bearer`, or
    /// `403`) and closes the connection.
    pub async fn authenticate(self, config: &ServerConfig) -> Result<Self> {
        let mut this = self.admit(config, None).await?;
        if this.identity.is_some() {
            return Ok(this);
        }
        match config.authenticate(&this.request, this.peer.as_ref()).await {
            Ok(identity) => {
                this.identity = Some(Box::new(identity));
                Ok(this)
            }
            Err(refusal) => {
                this.refuse(&refusal).await?;
                Err(refusal.into())
            }
        }
    }

    /// Who made the request, once [`Incoming::authenticate`] let it in.
    pub fn identity(&self) -> Option<&Identity> {
        self.identity.as_deref()
    }

    /// Answers a refusal of the front door and closes the connection.
    pub async fn refuse(self, refusal: &Refusal) -> Result<()> {
        let body = refusal.body();
        self.respond(
            refusal.status(),
            refusal.headers(),
            "text/plain",
            body.as_bytes(),
        )
        .await
    }

    /// Admits and authenticates the request ([`Incoming::authenticate`]), then answers `101`
    /// with what [`ServerConfig::negotiate`] agrees to. A request that breaks RFC 6455
    /// §4.2.1 is answered with `400` or `426`, a refused one with its status.
    pub async fn accept(mut self, config: &ServerConfig) -> Result<WebSocket<S>> {
        if config.auth.is_some() {
            self = Box::pin(self.authenticate(config)).await?;
        } else if !self.admitted {
            // Without a hook, authentication lets everyone in as anonymous, which nothing
            // after the `101` reads: only the front door's synchronous checks are left, and
            // this future holds no nested one (bench/README.md, E: their copies cost more
            // than the rest of the handshake's user time).
            if let Err(refusal) = config.admit(&self.request, self.peer.as_ref(), None) {
                Box::pin(self.refuse(&refusal)).await?;
                return Err(refusal.into());
            }
            self.admitted = true;
        }
        if config.deflate.is_none() {
            // What `negotiate` agrees to without permessage-deflate: the server's own socket
            // settings, used in place rather than copied into this future.
            let subprotocol = config.choose_subprotocol(&self.request);
            let shared = Some(&*config.shared_settings);
            return self
                .accept_shared(subprotocol, &[], &config.socket, shared)
                .await;
        }
        let Negotiated {
            subprotocol,
            socket,
            shared,
        } = config.negotiate(&self.request);
        self.accept_shared(subprotocol.as_deref(), &[], &socket, Some(&shared))
            .await
    }

    /// Answers `101` with an agreement from [`ServerConfig::negotiate`] (possibly adjusted),
    /// without the front door's checks: run [`Incoming::authenticate`] first.
    pub async fn accept_negotiated(self, negotiated: Negotiated) -> Result<WebSocket<S>> {
        let Negotiated {
            subprotocol,
            socket,
            shared,
        } = negotiated;
        self.accept_shared(subprotocol.as_deref(), &[], &socket, Some(&shared))
            .await
    }

    /// Answers `101` with the given subprotocol (one the client offered) and extra headers.
    /// `config.protocol.deflate`, if set, is the permessage-deflate agreement to answer with:
    /// set it from [`Request::negotiate_deflate`] (what the client offered), never otherwise
    /// ([`ServerConfig::negotiate`] does). Like [`Incoming::accept_negotiated`], it runs
    /// none of the front door's checks.
    pub async fn accept_with(
        self,
        subprotocol: Option<&str>,
        headers: &[(&str, &str)],
        config: Config,
    ) -> Result<WebSocket<S>> {
        self.accept_shared(subprotocol, headers, &config, None)
            .await
    }

    /// [`Incoming::accept_with`], the socket's core settings from `shared`
    /// ([`WebSocket::from_raw_shared`]).
    async fn accept_shared(
        mut self,
        subprotocol: Option<&str>,
        headers: &[(&str, &str)],
        config: &Config,
        shared: Option<&SharedSettings>,
    ) -> Result<WebSocket<S>> {
        let subprotocol = subprotocol.filter(|p| self.request.subprotocols().any(|o| o == *p));
        let deflate = config.protocol.deflate.as_ref();
        let response = match self
            .request
            .accept_response_with(subprotocol, deflate, headers)
        {
            Ok(r) => r,
            Err(e) => {
                metrics::handshake(false);
                // Boxed: a refusal's writes would size the future of every accept.
                let _ = Box::pin(write_and_close(&mut self.io, &e.to_response())).await;
                return Err(e.into());
            }
        };
        self.io
            .write_all(&response)
            .await
            .inspect_err(|_| metrics::handshake(false))?;
        metrics::handshake(true);
        let ws = WebSocket::from_raw_shared(self.io, Role::Server, config, shared, &self.leftover);
        Ok(ws.with_subprotocol(subprotocol.map(str::to_string)))
    }

    /// Reads the request body (for the plain HTTP requests that share the port: a `POST`
    /// to an API, say), at most `max` bytes, within `timeout`. Only `Content-Length` bodies
    /// are accepted: a chunked body is refused (`411`), like a body over `max` (`413`);
    /// answer the error with [`BodyError::status`]. No `Content-Length` means no body.
    pub async fn read_body(&mut self, max: usize, timeout: Duration) -> Result<Bytes> {
        if self.request.header("transfer-encoding").is_some() {
            return Err(BodyError::LengthRequired.into());
        }
        let length = match self.request.header("content-length") {
            None => return Ok(Bytes::new()),
            Some(v) => std::str::from_utf8(v)
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok())
                .ok_or(BodyError::BadLength)?,
        };
        if length > max {
            return Err(BodyError::TooLarge { length, max }.into());
        }
        let mut body = std::mem::take(&mut self.leftover);
        body.reserve(length.saturating_sub(body.len()));
        let read = tokio::time::timeout(timeout, async {
            while body.len() < length {
                if self.io.read_buf(&mut body).await? == 0 {
                    return Err(Error::Io(std::io::ErrorKind::UnexpectedEof.into()));
                }
            }
            Ok(())
        })
        .await;
        match read {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(BodyError::Timeout.into()),
        }
        // Anything after the body would be a pipelined request: not served (the connection
        // closes after the response).
        body.truncate(length);
        Ok(body.freeze())
    }

    /// Refuses the upgrade with `err`'s status and reason, and closes the connection.
    pub async fn reject(mut self, err: HandshakeError) -> Result<()> {
        if self.request.is_upgrade() {
            metrics::handshake(false);
        }
        write_and_close(&mut self.io, &err.to_response()).await?;
        Ok(())
    }

    /// Answers with a plain HTTP response and closes the connection. An upgrade request
    /// answered so counts as a refused handshake.
    pub async fn respond(
        mut self,
        status: u16,
        headers: &[(&str, &str)],
        content_type: &str,
        body: &[u8],
    ) -> Result<()> {
        if self.request.is_upgrade() {
            metrics::handshake(false);
        }
        let bytes = if self.request.method() == "HEAD" {
            let mut r = http_response(status, headers, content_type, body);
            r.truncate(r.len() - body.len());
            r
        } else {
            http_response(status, headers, content_type, body)
        };
        write_and_close(&mut self.io, &bytes).await?;
        Ok(())
    }

    /// Answers with the head of a response whose body the caller writes to the returned
    /// transport until it ends it by closing (a stream of Server-Sent Events, say): no
    /// `Content-Length`, `Connection: close`. Over HTTP/2 the head goes out as HEADERS and
    /// the body as the stream's DATA. The transport can also be read: over HTTP/1.1 (not
    /// [`is_http2`](Self::is_http2)) its end means the client left.
    pub async fn respond_streamed(
        mut self,
        status: u16,
        headers: &[(&str, &str)],
        content_type: &str,
    ) -> Result<S> {
        let head = http_response_streamed(status, headers, content_type);
        self.io.write_all(&head).await?;
        self.io.flush().await?;
        Ok(self.io)
    }
}

/// Why a request body was refused (see [`Incoming::read_body`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BodyError {
    /// `Transfer-Encoding` instead of `Content-Length`: `411`.
    #[error("a body needs a content-length")]
    LengthRequired,
    /// `Content-Length` is not a number: `400`.
    #[error("invalid content-length")]
    BadLength,
    /// The body is larger than allowed: `413`.
    #[error("body of {length} bytes is over the limit of {max}")]
    TooLarge {
        /// Announced length.
        length: usize,
        /// The limit.
        max: usize,
    },
    /// The body did not arrive in time: `408`.
    #[error("body not received in time")]
    Timeout,
}

impl BodyError {
    /// The HTTP status to answer with.
    pub fn status(&self) -> u16 {
        match self {
            Self::LengthRequired => 411,
            Self::BadLength => 400,
            Self::TooLarge { .. } => 413,
            Self::Timeout => 408,
        }
    }
}

/// Accepts a WebSocket on `io` with default settings, whatever the path.
pub async fn accept<S>(io: S) -> Result<WebSocket<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    accept_with_config(io, default_config()).await
}

/// Accepts a WebSocket on `io` with `config`, whatever the path.
pub async fn accept_with_config<S>(io: S, config: &ServerConfig) -> Result<WebSocket<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    read_request(io, config).await?.accept(config).await
}
