//! The client side: build the request, check the server's response strictly.

use super::{accept_key, has_token, is_safe_value, is_token};
use crate::deflate::{DeflateConfig, DeflateParams, NegotiationError};
use crate::random::Random;
use base64::Engine as _;
use std::fmt::Write as _;

/// Why a response was refused (the client then fails the connection).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ResponseError {
    /// The response head is not valid HTTP/1.x.
    #[error("malformed http response")]
    Malformed,
    /// The response head exceeds the limit.
    #[error("response head larger than {max} bytes")]
    TooLarge {
        /// The limit.
        max: usize,
    },
    /// The status is not `101`.
    #[error("server answered {status} {reason} instead of 101{}", redirect_note(.location.as_deref()))]
    Status {
        /// The HTTP status.
        status: u16,
        /// The reason phrase.
        reason: String,
        /// The `Location` header of a redirect (3xx), which this client does not follow:
        /// shown so the user can connect there.
        location: Option<String>,
    },
    /// No `Upgrade: websocket`.
    #[error("response lacks Upgrade: websocket")]
    MissingUpgrade,
    /// No `Connection: upgrade`.
    #[error("response lacks Connection: upgrade")]
    MissingConnectionUpgrade,
    /// `Sec-WebSocket-Accept` missing or wrong.
    #[error("response has a missing or wrong Sec-WebSocket-Accept")]
    BadAccept,
    /// The server picked a subprotocol that was not offered.
    #[error("server selected subprotocol {0:?}, which was not offered")]
    UnofferedSubprotocol(String),
    /// The server enabled an extension that was not offered.
    #[error("server enabled extension {0:?}, which was not offered")]
    UnofferedExtension(String),
    /// The server's permessage-deflate answer breaks RFC 7692 or what was offered.
    #[error("invalid permessage-deflate response: {0}")]
    InvalidDeflate(NegotiationError),
    /// Over HTTP/2 (RFC 8441 §5), the extended CONNECT was answered with a status other
    /// than `200`.
    #[error("server answered {status} to the extended connect instead of 200")]
    ExtendedConnectStatus {
        /// The HTTP status.
        status: u16,
    },
}

fn redirect_note(location: Option<&str>) -> String {
    location.map_or(String::new(), |l| {
        format!(" (redirect to {l:?}, not followed)")
    })
}

/// A request option that cannot go on the wire.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// A header name or value with CR, LF or NUL, or a name that is not a token.
    #[error("invalid header {0:?}")]
    InvalidHeader(String),
    /// A subprotocol name that is not a token.
    #[error("invalid subprotocol {0:?}")]
    InvalidSubprotocol(String),
    /// A header the handshake sets itself (`Upgrade`, `Connection`, `Sec-WebSocket-Key`,
    /// `Sec-WebSocket-Version`, `Sec-WebSocket-Extensions`), given with another value.
    #[error("header {name} is set by the handshake (given {value:?})")]
    HandshakeHeader {
        /// The header's name.
        name: String,
        /// The value given.
        value: String,
    },
    /// A method other than `GET` (RFC 6455 §4.1).
    #[error("method {0} cannot open a websocket (GET only)")]
    Method(String),
    /// An HTTP version this client does not open WebSockets over.
    #[error("{0} cannot carry this opening handshake (HTTP/1.1 only)")]
    Version(String),
}

/// The client's opening request.
#[derive(Clone, Debug)]
pub struct Request {
    host: String,
    path: String,
    key: String,
    origin: Option<String>,
    subprotocols: Vec<String>,
    headers: Vec<(String, String)>,
    deflate: Option<DeflateConfig>,
}

/// The server's accepted response.
#[derive(Clone, Debug)]
pub struct Response {
    /// The status (always 101 once accepted).
    pub status: u16,
    /// Every header, in order.
    pub headers: Vec<(String, String)>,
    /// The subprotocol the server selected.
    pub subprotocol: Option<String>,
    /// The permessage-deflate agreement, if the server accepted the offer: pass it into
    /// [`Config::deflate`](crate::Config::deflate).
    pub deflate: Option<DeflateParams>,
}

impl Response {
    /// The first value of a header (name case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Longest response head accepted.
pub const MAX_RESPONSE_HEAD: usize = 16 * 1024;

impl Request {
    /// A request for `path` (with query) on `host` (with `:port` when not the default),
    /// with a fresh random key.
    pub fn new(host: impl Into<String>, path: impl Into<String>) -> Self {
        Self::with_random(host, path, crate::random::os)
    }

    /// [`Request::new`] with the key's 16 bytes from `random` (RFC 6455 §4.1: randomly
    /// selected; a fixed source is for tests).
    pub fn with_random(host: impl Into<String>, path: impl Into<String>, random: Random) -> Self {
        let mut nonce = [0; 16];
        random(&mut nonce);
        let key = base64::engine::general_purpose::STANDARD.encode(nonce);
        Self {
            host: host.into(),
            path: path.into(),
            key,
            origin: None,
            subprotocols: Vec::new(),
            headers: Vec::new(),
            deflate: None,
        }
    }

    /// Offers permessage-deflate (RFC 7692) as `policy` says; the server may accept it.
    /// Built without the feature `deflate`, nothing is offered (and an answer that enables
    /// the extension anyway is refused as unoffered).
    pub fn deflate(mut self, policy: DeflateConfig) -> Self {
        if cfg!(feature = "deflate") {
            self.deflate = Some(policy);
        }
        self
    }

    /// Sets the `Origin` header.
    pub fn origin(mut self, origin: impl Into<String>) -> Result<Self, RequestError> {
        let origin = origin.into();
        if !is_safe_value(&origin) {
            return Err(RequestError::InvalidHeader(origin));
        }
        self.origin = Some(origin);
        Ok(self)
    }

    /// Offers a subprotocol (in order of preference).
    pub fn subprotocol(mut self, p: impl Into<String>) -> Result<Self, RequestError> {
        let p = p.into();
        if !is_token(&p) {
            return Err(RequestError::InvalidSubprotocol(p));
        }
        self.subprotocols.push(p);
        Ok(self)
    }

    /// Adds a header.
    pub fn header(
        mut self,
        name: impl Into<String>,
        value: impl Into<String>,
    ) -> Result<Self, RequestError> {
        let (name, value) = (name.into(), value.into());
        if !is_token(&name) || !is_safe_value(&value) {
            return Err(RequestError::InvalidHeader(format!("{name}: {value}")));
        }
        self.headers.push((name, value));
        Ok(self)
    }

    /// The `Sec-WebSocket-Key` sent.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The request head.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut s = String::with_capacity(256);
        let _ = write!(
            s,
            "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {}\r\nSec-WebSocket-Version: 13\r\n",
            self.path, self.host, self.key
        );
        if let Some(o) = &self.origin {
            let _ = write!(s, "Origin: {o}\r\n");
        }
        if !self.subprotocols.is_empty() {
            let _ = write!(
                s,
                "Sec-WebSocket-Protocol: {}\r\n",
                self.subprotocols.join(", ")
            );
        }
        if let Some(d) = &self.deflate {
            let _ = write!(s, "Sec-WebSocket-Extensions: {}\r\n", d.offer());
        }
        for (n, v) in &self.headers {
            let _ = write!(s, "{n}: {v}\r\n");
        }
        s.push_str("\r\n");
        s.into_bytes()
    }

    /// Parses and checks the response at the start of `buf` (RFC 6455 §4.2.2 / §4.1).
    ///
    /// `Ok(None)`: incomplete. `Ok(Some((resp, n)))`: the head is `buf[..n]`; the bytes after
    /// it are frames. A non-101 status is an error that carries the status.
    pub fn parse_response(&self, buf: &[u8]) -> Result<Option<(Response, usize)>, ResponseError> {
        let mut storage = [httparse::EMPTY_HEADER; 64];
        let mut resp = httparse::Response::new(&mut storage);
        let n = match resp.parse(buf) {
            Ok(httparse::Status::Complete(n)) if n <= MAX_RESPONSE_HEAD => n,
            // Complete or not, a head past the limit is refused: whether a response passes
            // must not depend on how much of it one read brought.
            Ok(_) if buf.len() > MAX_RESPONSE_HEAD => {
                return Err(ResponseError::TooLarge {
                    max: MAX_RESPONSE_HEAD,
                })
            }
            // Partial (a complete head past the limit is longer than the limit).
            Ok(_) => return Ok(None),
            Err(_) => return Err(ResponseError::Malformed),
        };
        let status = resp.code.unwrap_or(0);
        let headers: Vec<(String, String)> = resp
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_string(),
                    String::from_utf8_lossy(h.value).into_owned(),
                )
            })
            .collect();
        if status != 101 {
            let location = (300..400).contains(&status).then(|| {
                headers
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case("location"))
                    .map(|(_, v)| v.clone())
            });
            return Err(ResponseError::Status {
                status,
                reason: resp.reason.unwrap_or("").to_string(),
                location: location.flatten(),
            });
        }
        let all = |name: &'static str| {
            headers
                .iter()
                .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        };
        if !all("upgrade").any(|v| has_token(v.as_bytes(), "websocket")) {
            return Err(ResponseError::MissingUpgrade);
        }
        if !all("connection").any(|v| has_token(v.as_bytes(), "upgrade")) {
            return Err(ResponseError::MissingConnectionUpgrade);
        }
        let expected = accept_key(self.key.as_bytes());
        let mut accepts = all("sec-websocket-accept");
        if accepts.next().map(str::trim) != Some(expected.as_str()) || accepts.next().is_some() {
            return Err(ResponseError::BadAccept);
        }
        let (subprotocol, deflate) = self.negotiated(&headers)?;
        Ok(Some((
            Response {
                status,
                headers,
                subprotocol,
                deflate,
            },
            n,
        )))
    }

    /// The fields of this request over HTTP/2 (RFC 8441 §4), lowercase, for an extended
    /// CONNECT whose `:authority` and `:path` are the host and path given to
    /// [`Request::new`]: `sec-websocket-version`, `origin`, `sec-websocket-protocol`,
    /// `sec-websocket-extensions` and the extra headers. RFC 8441 §5 has no
    /// `Sec-WebSocket-Key`, `Upgrade` or `Connection`.
    pub fn http2_fields(&self) -> Vec<(String, String)> {
        let mut fields = vec![("sec-websocket-version".to_string(), "13".to_string())];
        if let Some(o) = &self.origin {
            fields.push(("origin".to_string(), o.clone()));
        }
        if !self.subprotocols.is_empty() {
            let offer = self.subprotocols.join(", ");
            fields.push(("sec-websocket-protocol".to_string(), offer));
        }
        if let Some(d) = &self.deflate {
            fields.push(("sec-websocket-extensions".to_string(), d.offer()));
        }
        for (n, v) in &self.headers {
            fields.push((n.to_ascii_lowercase(), v.clone()));
        }
        fields
    }

    /// Checks the response to an extended CONNECT (RFC 8441 §5): status `200`, then the
    /// subprotocol and extensions as over HTTP/1.1. The stream's DATA are the frames.
    pub fn check_http2_response(
        &self,
        status: u16,
        headers: Vec<(String, String)>,
    ) -> Result<Response, ResponseError> {
        if status != 200 {
            return Err(ResponseError::ExtendedConnectStatus { status });
        }
        let (subprotocol, deflate) = self.negotiated(&headers)?;
        Ok(Response {
            status,
            headers,
            subprotocol,
            deflate,
        })
    }

    /// The subprotocol and permessage-deflate agreement a response's headers select.
    #[allow(clippy::type_complexity)]
    fn negotiated(
        &self,
        headers: &[(String, String)],
    ) -> Result<(Option<String>, Option<DeflateParams>), ResponseError> {
        let all = |name: &'static str| {
            headers
                .iter()
                .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        };
        // RFC 6455 §4.1: a subprotocol or extension the client did not offer fails.
        let mut protocols = all("sec-websocket-protocol");
        let subprotocol = match (protocols.next().map(str::trim), protocols.next()) {
            (None, _) => None,
            (Some(p), None) if self.subprotocols.iter().any(|o| o == p) => Some(p.to_string()),
            (Some(p), _) => return Err(ResponseError::UnofferedSubprotocol(p.to_string())),
        };
        let deflate = match &self.deflate {
            None => {
                if let Some(ext) = all("sec-websocket-extensions")
                    .map(str::trim)
                    .find(|e| !e.is_empty())
                {
                    return Err(ResponseError::UnofferedExtension(ext.to_string()));
                }
                None
            }
            Some(policy) => policy
                .accept_response(all("sec-websocket-extensions").map(str::as_bytes))
                .map_err(|e| match e {
                    NegotiationError::Unoffered(name) => ResponseError::UnofferedExtension(name),
                    e => ResponseError::InvalidDeflate(e),
                })?,
        };
        Ok((subprotocol, deflate))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(req: &Request, extra: &str) -> String {
        format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: WebSocket\r\nConnection: upgrade\r\n\
             Sec-WebSocket-Accept: {}\r\n{extra}\r\n",
            accept_key(req.key().as_bytes())
        )
    }

    #[test]
    fn request_has_every_required_header_and_a_fresh_key() {
        let a = Request::new("h:1", "/p?q").subprotocol("chat").unwrap();
        let b = Request::new("h:1", "/p?q");
        assert_ne!(a.key(), b.key());
        let s = String::from_utf8(a.to_bytes()).unwrap();
        for h in [
            "GET /p?q HTTP/1.1\r\n",
            "Host: h:1\r\n",
            "Upgrade: websocket\r\n",
            "Connection: Upgrade\r\n",
            "Sec-WebSocket-Version: 13\r\n",
            "Sec-WebSocket-Protocol: chat\r\n",
        ] {
            assert!(s.contains(h), "{h}");
        }
        let key = base64::engine::general_purpose::STANDARD
            .decode(a.key())
            .unwrap();
        assert_eq!(key.len(), 16);
        assert!(Request::new("h", "/").header("X", "a\r\nb").is_err());
        assert!(Request::new("h", "/").subprotocol("a b").is_err());
    }

    #[test]
    fn accepts_a_good_response_and_keeps_trailing_bytes() {
        let req = Request::new("h", "/").subprotocol("chat").unwrap();
        let mut r = response(&req, "Sec-WebSocket-Protocol: chat\r\n").into_bytes();
        let head = r.len();
        r.extend_from_slice(&[0x81, 0x00]);
        let (resp, n) = req.parse_response(&r).unwrap().unwrap();
        assert_eq!(n, head);
        assert_eq!(resp.subprotocol.as_deref(), Some("chat"));
        assert!(req.parse_response(&r[..head - 1]).unwrap().is_none());
    }

    #[test]
    fn rejects_each_broken_response() {
        let req = Request::new("h", "/");
        let good = response(&req, "");
        let cases = [
            (good.replace("101 Switching Protocols", "200 OK"), "200"),
            (good.replace("Upgrade: WebSocket\r\n", ""), "Upgrade"),
            (
                good.replace("Connection: upgrade\r\n", "Connection: close\r\n"),
                "Connection",
            ),
            (
                good.replace(&accept_key(req.key().as_bytes()), "AAAA"),
                "Accept",
            ),
            (
                response(&req, "Sec-WebSocket-Protocol: chat\r\n"),
                "subprotocol",
            ),
            (
                response(&req, "Sec-WebSocket-Extensions: permessage-deflate\r\n"),
                "extension",
            ),
        ];
        for (resp, what) in cases {
            let err = req.parse_response(resp.as_bytes()).unwrap_err();
            assert!(err.to_string().contains(what), "{what}: {err}");
        }
    }

    #[test]
    #[cfg(feature = "deflate")]
    fn a_deflate_offer_is_sent_and_its_answer_checked() {
        let req = Request::new("h", "/").deflate(DeflateConfig::default());
        let s = String::from_utf8(req.to_bytes()).unwrap();
        assert!(
            s.contains("Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n")
        );
        let ok = response(
            &req,
            "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits=10\r\n",
        );
        let (resp, _) = req.parse_response(ok.as_bytes()).unwrap().unwrap();
        assert_eq!(resp.deflate.unwrap().client_max_window_bits, 10);
        let declined = response(&req, "");
        let (resp, _) = req.parse_response(declined.as_bytes()).unwrap().unwrap();
        assert_eq!(resp.deflate, None);
        for (extra, what) in [
            ("Sec-WebSocket-Extensions: permessage-deflate; foo\r\n", "permessage-deflate"),
            ("Sec-WebSocket-Extensions: x-other\r\n", "not offered"),
            (
                "Sec-WebSocket-Extensions: permessage-deflate\r\nSec-WebSocket-Extensions: permessage-deflate\r\n",
                "more than once",
            ),
        ] {
            let err = req.parse_response(response(&req, extra).as_bytes()).unwrap_err();
            assert!(err.to_string().contains(what), "{extra}: {err}");
        }
    }

    #[test]
    #[cfg(feature = "deflate")]
    fn an_extended_connect_answer_is_checked_as_over_http1() {
        let req = Request::new("h:1", "/p")
            .subprotocol("chat")
            .unwrap()
            .deflate(DeflateConfig::default());
        let fields = req.http2_fields();
        assert!(fields
            .iter()
            .any(|(n, v)| n == "sec-websocket-version" && v == "13"));
        assert!(fields
            .iter()
            .any(|(n, v)| n == "sec-websocket-protocol" && v == "chat"));
        assert!(fields.iter().any(|(n, _)| n == "sec-websocket-extensions"));
        assert!(!fields
            .iter()
            .any(|(n, _)| n == "sec-websocket-key" || n == "upgrade"));
        let h = |n: &str, v: &str| (n.to_string(), v.to_string());
        let ok = req
            .check_http2_response(
                200,
                vec![
                    h("sec-websocket-protocol", "chat"),
                    h("sec-websocket-extensions", "permessage-deflate"),
                ],
            )
            .unwrap();
        assert_eq!(ok.subprotocol.as_deref(), Some("chat"));
        assert!(ok.deflate.is_some());
        assert_eq!(
            req.check_http2_response(403, vec![]).unwrap_err(),
            ResponseError::ExtendedConnectStatus { status: 403 }
        );
        assert!(matches!(
            req.check_http2_response(200, vec![h("sec-websocket-protocol", "other")]),
            Err(ResponseError::UnofferedSubprotocol(_))
        ));
    }

    /// Built without compression, a client offers nothing, and a server that enables the
    /// extension anyway fails the handshake.
    #[test]
    #[cfg(not(feature = "deflate"))]
    fn without_the_feature_no_deflate_is_offered() {
        let req = Request::new("h", "/").deflate(DeflateConfig::default());
        let s = String::from_utf8(req.to_bytes()).unwrap();
        assert!(!s.contains("Sec-WebSocket-Extensions"), "{s}");
        let enabled = response(&req, "Sec-WebSocket-Extensions: permessage-deflate\r\n");
        let err = req.parse_response(enabled.as_bytes()).unwrap_err();
        assert!(err.to_string().contains("not offered"), "{err}");
    }
}
