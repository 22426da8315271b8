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
//! RFC 8441's extended `CONNECT` (WebSocket over HTTP/2) is not recognised here yet: an
//! HTTP/2 head is checked as the HTTP/1.1 request it stands for, so it is refused (`400`).

use super::{Negotiated, Peer, Refusal, ServerConfig};
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
    /// let upgrade = config.upgrade_http(&request, None, None).unwrap();
    /// assert_eq!(upgrade.response.status(), 101);
    /// assert_eq!(
    ///     upgrade.response.headers()["sec-websocket-accept"],
    ///     "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    /// );
    /// // Then, on the upgraded transport: `upgrade.negotiated.websocket(io, &[])`.
    ///
    /// let refused = config.upgrade_http(&http::Request::get("/chat").body(()).unwrap(), None, None);
    /// assert_eq!(refused.unwrap_err().response.status(), 400);
    /// ```
    ///
    /// [`Incoming::accept`]: super::Incoming::accept
    pub fn upgrade_http(
        &self,
        head: &impl HttpHead,
        peer: Option<&Peer>,
        permit: Option<&mut Permit>,
    ) -> Result<HttpUpgrade, Box<HttpRefusal>> {
        let request = self
            .http_request(head)
            .map_err(|e| Box::new(HttpRefusal::handshake(e)))?;
        self.upgrade_request(request, peer, permit)
    }

    /// [`upgrade_http`](Self::upgrade_http) for a head already converted with
    /// [`http_request`](Self::http_request) (by an extractor that reads it before the
    /// settings are final, say): the front door from [`admit`](Self::admit) on.
    pub fn upgrade_request(
        &self,
        request: Request,
        peer: Option<&Peer>,
        permit: Option<&mut Permit>,
    ) -> Result<HttpUpgrade, Box<HttpRefusal>> {
        let checked = self
            .admit(&request, peer, permit)
            .and_then(|()| self.authenticate(&request, peer));
        if let Err(refusal) = checked {
            if request.is_upgrade() {
                metrics::handshake(false);
            }
            return Err(Box::new(HttpRefusal::refused(refusal)));
        }
        let negotiated = self.negotiate(&request);
        match switching_protocols(&request, &negotiated) {
            Ok(response) => {
                metrics::handshake(true);
                Ok(HttpUpgrade {
                    response,
                    negotiated,
                    request,
                })
            }
            Err(e) => {
                metrics::handshake(false);
                Err(Box::new(HttpRefusal::handshake(e)))
            }
        }
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
