//! The front door for request heads of the `http` crate (hyper, axum): the same admission,
//! validation and negotiation as a request read by [`read_request`](super::read_request),
//! answered with an [`http::Response`].
//!
//! ```text
//!  http::Request<_> / Parts ─▶ ServerConfig::http_request ─▶ Request ─▶ admit ─▶ authenticate ─▶ negotiate
//!   (HttpHead)                 (the one conversion: 400/431)                                       │
//!                                      http::Response<()> 101 + Negotiated ◀── switching_protocols ┘
//! ```
//!
//! The head is written out as HTTP/1.1 and parsed by the core's parser, so every rule is
//! checked by the same code, in the same order, with the same statuses as on our own path;
//! only this path pays for the conversion (our own reader never builds `http` types).
//! [`ServerConfig::upgrade_http`] runs the whole front door; the steps are public for a
//! caller that routes in between.
//!
//! An HTTP/2 head is checked as the HTTP/1.1 request it stands for. RFC 8441's extended
//! `CONNECT` (WebSocket over HTTP/2) has its own door,
//! [`ServerConfig::upgrade_extended_connect`], for an HTTP/2 server that hands over the
//! request's `:protocol`: it turns the request into that upgrade, then runs this one, and
//! answers `200`. Our own HTTP/2 driver, `server::http2` (feature `http2`), does the same
//! per stream.

use super::{Negotiated, Peer, Refusal, ServerConfig};
use crate::auth::Identity;
use crate::error::Error;
use crate::limits::Permit;
use crate::metrics;
use http::header::{HeaderName, HeaderValue};
use proto::handshake::accept_key;
use proto::handshake::server::{HandshakeError, Request};
use std::io::Write as _;

/// A request head of the `http` crate: [`http::request::Parts`] or an [`http::Request`]
/// (its body is not read).
pub trait HttpHead {
    /// The method.
    fn method(&self) -> &http::Method;
    /// The request target.
    fn uri(&self) -> &http::Uri;
    /// The HTTP version.
    fn version(&self) -> http::Version;
    /// The header fields.
    fn headers(&self) -> &http::HeaderMap;
}

impl HttpHead for http::request::Parts {
    fn method(&self) -> &http::Method {
        &self.method
    }
    fn uri(&self) -> &http::Uri {
        &self.uri
    }
    fn version(&self) -> http::Version {
        self.version
    }
    fn headers(&self) -> &http::HeaderMap {
        &self.headers
    }
}

impl<B> HttpHead for http::Request<B> {
    fn method(&self) -> &http::Method {
        self.method()
    }
    fn uri(&self) -> &http::Uri {
        self.uri()
    }
    fn version(&self) -> http::Version {
        self.version()
    }
    fn headers(&self) -> &http::HeaderMap {
        self.headers()
    }
}

/// An accepted upgrade: send `response` (`101`), then build the socket on the upgraded
/// transport with [`Negotiated::websocket`].
#[derive(Debug)]
#[non_exhaustive]
pub struct HttpUpgrade {
    /// `101 Switching Protocols` with `Sec-WebSocket-Accept`, and the subprotocol and
    /// permessage-deflate agreement if any.
    pub response: http::Response<()>,
    /// The agreement the response announces.
    pub negotiated: Negotiated,
    /// The request as the front door read it (its path, headers, for routing or logs).
    pub request: Request,
    /// Who made it ([`ServerConfig::authenticate`]).
    pub identity: Identity,
}

/// A refused request: send `response` with `body`, then close the connection.
#[derive(Debug)]
#[non_exhaustive]
pub struct HttpRefusal {
    /// The status and headers (`Retry-After`, `WWW-Authenticate`, `Sec-WebSocket-Version`,
    /// a `text/plain` content type), as our own path answers them.
    pub response: http::Response<()>,
    /// The reason and a newline, the body our own path sends.
    pub body: String,
    /// Why: [`Error::Handshake`], [`Error::Refused`] or [`Error::Denied`].
    pub error: Error,
}

impl HttpRefusal {
    fn new(status: u16, headers: &[(&str, &str)], reason: String, error: Error) -> Self {
        let mut response = refusal_response(status, headers);
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static(content_type(&error)),
        );
        Self {
            response,
            body: format!("{reason}\n"),
            error,
        }
    }

    pub(crate) fn handshake(e: HandshakeError) -> Self {
        Self::new(e.status(), e.headers(), e.to_string(), e.into())
    }

    pub(crate) fn extended_connect(e: ExtendedConnectError) -> Self {
        let (status, fields, reason) = (e.status(), e.headers(), e.to_string());
        Self::new(status, fields, reason, e.into())
    }

    pub(crate) fn refused(r: Refusal) -> Self {
        Self::new(r.status(), r.headers(), r.to_string(), r.into())
    }

    /// The response with its body, for a server that sends a `String` body.
    pub fn into_response(self) -> http::Response<String> {
        let (parts, ()) = self.response.into_parts();
        http::Response::from_parts(parts, self.body)
    }
}

/// The content type our own path sends each refusal with.
fn content_type(error: &Error) -> &'static str {
    match error {
        Error::Handshake(_) => "text/plain; charset=utf-8",
        _ => "text/plain",
    }
}

impl ServerConfig {
    /// The request head in the form the front door reads, checked against
    /// [`limits`](Self::limits) as our own reader checks it: a head it would refuse (too
    /// large, too many fields, malformed) is refused with the same error.
    pub fn http_request(&self, head: &impl HttpHead) -> Result<Request, HandshakeError> {
        let version = head.version();
        let mut buf = Vec::with_capacity(512);
        let minor = match version {
            http::Version::HTTP_09 | http::Version::HTTP_10 => 0,
            _ => 1,
        };
        let uri = head.uri();
        let target = match version {
            http::Version::HTTP_2 | http::Version::HTTP_3 => {
                uri.path_and_query().map_or("/", |p| p.as_str()).to_string()
            }
            // HTTP/1.x: the target as it came (origin, absolute, authority or `*` form).
            _ => uri.to_string(),
        };
        let _ = write!(buf, "{} {target} HTTP/1.{minor}\r\n", head.method());
        let headers = head.headers();
        // An HTTP/2 request names its host in `:authority`, which `http` keeps in the URI.
        if !headers.contains_key(http::header::HOST) {
            if let Some(authority) = uri.authority() {
                let _ = write!(buf, "host: {authority}\r\n");
            }
        }
        for (name, value) in headers {
            buf.extend_from_slice(name.as_str().as_bytes());
            buf.extend_from_slice(b": ");
            buf.extend_from_slice(value.as_bytes());
            buf.extend_from_slice(b"\r\n");
        }
        buf.extend_from_slice(b"\r\n");
        match Request::parse(&buf, &self.limits)? {
            Some((request, n)) if n == buf.len() => Ok(request),
            _ => Err(HandshakeError::MalformedRequest),
        }
    }

    /// The whole front door for an `http` request head, as [`Incoming::accept`] runs it on
    /// our own path: [`http_request`](Self::http_request), [`admit`](Self::admit) (with
    /// `permit`, the per-client limit for the address a trusted proxy reports),
    /// [`authenticate`](Self::authenticate), [`negotiate`](Self::negotiate), then the
    /// RFC 6455 checks and the `101`. Counted in the metrics as our own path counts it.
    ///
    /// ```
    /// use wsduplex::ServerConfig;
    ///
    /// let config = ServerConfig::default();
    /// let request = http::Request::get("/chat")
    ///     .header("host", "example.com")
    ///     .header("upgrade", "websocket")
    ///     .header("connection", "Upgrade")
    ///     .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
    ///     .header("sec-websocket-version", "13")
    ///     .body(())
    ///     .unwrap();
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let upgrade = config.upgrade_http(&request, None, None).await.unwrap();
    /// assert_eq!(upgrade.response.status(), 101);
    /// assert_eq!(
    ///     upgrade.response.headers()["sec-websocket-accept"],
    ///     "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    /// );
    /// // Then, on the upgraded transport: `upgrade.negotiated.websocket(io, &[])`.
    ///
    /// let bad = http::Request::get("/chat").body(()).unwrap();
    /// let refused = config.upgrade_http(&bad, None, None).await;
    /// assert_eq!(refused.unwrap_err().response.status(), 400);
    /// # });
    /// ```
    ///
    /// [`Incoming::accept`]: super::Incoming::accept
    pub async fn upgrade_http(
        &self,
        head: &impl HttpHead,
        peer: Option<&Peer>,
        permit: Option<&mut Permit>,
    ) -> Result<HttpUpgrade, Box<HttpRefusal>> {
        let request = self
            .http_request(head)
            .map_err(|e| Box::new(HttpRefusal::handshake(e)))?;
        self.upgrade_request(request, peer, permit).await
    }

    /// [`upgrade_http`](Self::upgrade_http) for a head already converted with
    /// [`http_request`](Self::http_request) (by an extractor that reads it before the
    /// settings are final, say): the front door from [`admit`](Self::admit) on.
    pub async fn upgrade_request(
        &self,
        request: Request,
        peer: Option<&Peer>,
        permit: Option<&mut Permit>,
    ) -> Result<HttpUpgrade, Box<HttpRefusal>> {
        let checked = match self.admit(&request, peer, permit) {
            Ok(()) => self.authenticate(&request, peer).await,
            Err(refusal) => Err(refusal),
        };
        let identity = match checked {
            Ok(identity) => identity,
            Err(refusal) => {
                if request.is_upgrade() {
                    metrics::handshake(false);
                }
                return Err(Box::new(HttpRefusal::refused(refusal)));
            }
        };
        let negotiated = self.negotiate(&request);
        match switching_protocols(&request, &negotiated) {
            Ok(response) => {
                metrics::handshake(true);
                Ok(HttpUpgrade {
                    response,
                    negotiated,
                    request,
                    identity,
                })
            }
            Err(e) => {
                metrics::handshake(false);
                Err(Box::new(HttpRefusal::handshake(e)))
            }
        }
    }
    /// The whole front door for an extended CONNECT (RFC 8441: WebSocket over HTTP/2) that
    /// an HTTP/2 server has read: hyper's with `enable_connect_protocol`, whose `:protocol`
    /// is its `ext::Protocol` extension, passed as `protocol`. The request is checked as
    /// the HTTP/1.1 upgrade it stands for, by [`upgrade_http`](Self::upgrade_http); the
    /// answer is `200` with the subprotocol and permessage-deflate agreement, and the
    /// stream is then the transport for [`Negotiated::websocket`]. A `CONNECT` without
    /// `protocol`, or for another protocol, or with a version other than 13 is refused
    /// with [`ExtendedConnectError`]'s status.
    ///
    /// ```
    /// use wsduplex::ServerConfig;
    ///
    /// let config = ServerConfig::default();
    /// let request = http::Request::connect("https://example.com/chat")
    ///     .version(http::Version::HTTP_2)
    ///     .header("sec-websocket-version", "13")
    ///     .body(())
    ///     .unwrap();
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let upgrade = config
    ///     .upgrade_extended_connect(&request, Some("websocket"), None, None)
    ///     .await
    ///     .unwrap();
    /// assert_eq!(upgrade.response.status(), 200);
    /// assert!(upgrade.response.headers().is_empty());
    ///
    /// let refused = config.upgrade_extended_connect(&request, Some("webtransport"), None, None);
    /// assert_eq!(refused.await.unwrap_err().response.status(), 501);
    /// # });
    /// ```
    pub async fn upgrade_extended_connect(
        &self,
        head: &impl HttpHead,
        protocol: Option<&str>,
        peer: Option<&Peer>,
        permit: Option<&mut Permit>,
    ) -> Result<HttpUpgrade, Box<HttpRefusal>> {
        let (request, synthetic_key) = match extended_connect_head(head, protocol) {
            Ok(converted) => converted,
            Err(e) => {
                metrics::handshake(false);
                return Err(Box::new(HttpRefusal::extended_connect(e)));
            }
        };
        match self.upgrade_http(&request, peer, permit).await {
            Ok(mut upgrade) => {
                into_http2_answer(&mut upgrade.response, synthetic_key);
                Ok(upgrade)
            }
            Err(mut refusal) => {
                into_http2_answer(&mut refusal.response, synthetic_key);
                Err(refusal)
            }
        }
    }
}

/// Why an extended CONNECT (RFC 8441, WebSocket over HTTP/2) was refused before the front
/// door's own checks; answer with [`status`](Self::status) and
/// [`headers`](Self::headers).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ExtendedConnectError {
    /// `CONNECT` without `:protocol`: a tunnel, which an origin server does not open
    /// (`405`).
    #[error("connect without :protocol (this server is no proxy)")]
    PlainConnect,
    /// A `:protocol` other than `websocket` (`501`).
    #[error("unsupported :protocol {0:?}")]
    UnsupportedProtocol(String),
    /// `Sec-WebSocket-Version` missing or not 13: `400` with `Sec-WebSocket-Version: 13`
    /// (HTTP/2 has no `426`, whose `Upgrade` field it forbids).
    #[error("unsupported Sec-WebSocket-Version (expected 13)")]
    UnsupportedVersion,
}

impl ExtendedConnectError {
    /// The HTTP status to answer with.
    pub fn status(&self) -> u16 {
        match self {
            Self::PlainConnect => 405,
            Self::UnsupportedProtocol(_) => 501,
            Self::UnsupportedVersion => 400,
        }
    }

    /// The headers to answer with: `Allow` for `405`, the version this server speaks for
    /// a wrong one.
    pub fn headers(&self) -> &'static [(&'static str, &'static str)] {
        match self {
            Self::PlainConnect => &[("allow", "GET, HEAD, POST, DELETE")],
            Self::UnsupportedVersion => &[("sec-websocket-version", "13")],
            Self::UnsupportedProtocol(_) => &[],
        }
    }
}

/// The HTTP/1.1 upgrade head an extended CONNECT stands for (see
/// [`extended_connect_as_upgrade`]), and whether its key was made up.
pub(crate) fn extended_connect_head(
    head: &impl HttpHead,
    protocol: Option<&str>,
) -> Result<(http::Request<()>, bool), ExtendedConnectError> {
    let mut method = head.method().clone();
    let mut headers = head.headers().clone();
    let synthetic_key = extended_connect_as_upgrade(&mut method, protocol, &mut headers)?;
    let mut request = http::Request::new(());
    *request.method_mut() = method;
    *request.uri_mut() = head.uri().clone();
    *request.version_mut() = head.version();
    *request.headers_mut() = headers;
    Ok((request, synthetic_key))
}

/// Turns an extended CONNECT (RFC 8441 §4, `protocol` its `:protocol`) into the HTTP/1.1
/// upgrade it stands for (RFC 8441 §5), for the front door: `GET`, `Upgrade`,
/// `Connection`, and a `Sec-WebSocket-Key` unless a valid one is there. True when the key
/// was made up: its accept is then not sent (a proxy that translated an HTTP/1.1 upgrade,
/// as Envoy does, passes its client's key on, and that client wants its accept).
pub(crate) fn extended_connect_as_upgrade(
    method: &mut http::Method,
    protocol: Option<&str>,
    headers: &mut http::HeaderMap,
) -> Result<bool, ExtendedConnectError> {
    use http::header;
    let Some(protocol) = protocol else {
        return Err(ExtendedConnectError::PlainConnect);
    };
    if !protocol.eq_ignore_ascii_case("websocket") {
        return Err(ExtendedConnectError::UnsupportedProtocol(protocol.into()));
    }
    let mut versions = headers.get_all(header::SEC_WEBSOCKET_VERSION).iter();
    if !matches!((versions.next(), versions.next()), (Some(v), None) if v.as_bytes().trim_ascii() == b"13")
    {
        return Err(ExtendedConnectError::UnsupportedVersion);
    }
    *method = http::Method::GET;
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    let mut keys = headers.get_all(header::SEC_WEBSOCKET_KEY).iter();
    let valid = matches!((keys.next(), keys.next()), (Some(k), None) if is_valid_key(k.as_bytes()));
    if !valid {
        // Any 16 bytes: nothing is derived from it over HTTP/2.
        let key = HeaderValue::from_static("AAAAAAAAAAAAAAAAAAAAAA==");
        headers.insert(header::SEC_WEBSOCKET_KEY, key);
    }
    Ok(!valid)
}

fn is_valid_key(key: &[u8]) -> bool {
    use base64::Engine as _;
    let mut decoded = [0u8; 18];
    matches!(
        base64::engine::general_purpose::STANDARD.decode_slice(key.trim_ascii(), &mut decoded),
        Ok(16)
    )
}

/// The HTTP/2 form of an answer to an upgrade: `200` for `101` (RFC 8441 §5; HTTP/2 has
/// no `101`, RFC 9113 §8.6), no connection-specific fields (RFC 9113 §8.2.2), no
/// `Sec-WebSocket-Accept` for a made-up key.
pub(crate) fn into_http2_answer<B>(response: &mut http::Response<B>, synthetic_key: bool) {
    if response.status() == http::StatusCode::SWITCHING_PROTOCOLS {
        *response.status_mut() = http::StatusCode::OK;
    }
    let headers = response.headers_mut();
    for name in [
        "connection",
        "upgrade",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
    ] {
        headers.remove(name);
    }
    if synthetic_key {
        headers.remove(http::header::SEC_WEBSOCKET_ACCEPT);
    }
}

/// The `101` for a request with what [`ServerConfig::negotiate`] agreed to: the same
/// headers as our own path's answer. A request that breaks RFC 6455 §4.2.1 gets its
/// error (answer it with [`HandshakeError::status`]).
pub fn switching_protocols(
    request: &Request,
    negotiated: &Negotiated,
) -> Result<http::Response<()>, HandshakeError> {
    let key = request.validate_upgrade()?;
    let mut response = http::Response::new(());
    *response.status_mut() = http::StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(http::header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(
        http::header::CONNECTION,
        HeaderValue::from_static("Upgrade"),
    );
    let mut set = |name: HeaderName, value: &str| {
        // The accept key is base64, a subprotocol a token the client offered, the deflate
        // answer built by the core: always valid values.
        if let Ok(v) = HeaderValue::from_str(value) {
            headers.insert(name, v);
        }
    };
    set(http::header::SEC_WEBSOCKET_ACCEPT, &accept_key(key));
    let offered = negotiated
        .subprotocol
        .as_deref()
        .filter(|p| request.subprotocols().any(|o| o == *p));
    if let Some(p) = offered {
        set(http::header::SEC_WEBSOCKET_PROTOCOL, p);
    }
    if let Some(d) = &negotiated.socket.protocol.deflate {
        set(http::header::SEC_WEBSOCKET_EXTENSIONS, &d.to_header());
    }
    Ok(response)
}

/// A response with `status` and `headers` (names and values that are not valid HTTP are
/// skipped, as our own path skips them).
pub fn refusal_response(status: u16, headers: &[(&str, &str)]) -> http::Response<()> {
    let mut response = http::Response::new(());
    *response.status_mut() =
        http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::BAD_REQUEST);
    for (name, value) in headers {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            response.headers_mut().append(n, v);
        }
    }
    response
}
