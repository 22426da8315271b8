//! The server side: parse and validate a client's request, build the `101` or the refusal.

use super::{accept_key_bytes, has_token, is_safe_value};
use crate::deflate::{DeflateConfig, DeflateParams};
use base64::Engine as _;
use bytes::Bytes;
use std::fmt::Write as _;
use std::ops::Range;

/// Limits on the request head.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct Limits {
    /// Longest request head (request line and headers) in bytes; longer gets `431`.
    pub max_head_size: usize,
    /// Most header fields; more gets `431`.
    pub max_headers: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_head_size: 8 * 1024,
            max_headers: 64,
        }
    }
}

/// Why a request was refused; each maps to an HTTP status and a one-line reason.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The request head is not valid HTTP/1.x.
    #[error("malformed http request")]
    MalformedRequest,
    /// The request line and headers are larger than allowed.
    #[error("request head larger than {max} bytes")]
    HeadTooLarge {
        /// The limit.
        max: usize,
    },
    /// More header fields than allowed.
    #[error("more than {max} header fields")]
    TooManyHeaders {
        /// The limit.
        max: usize,
    },
    /// The method is not GET.
    #[error("method must be GET")]
    MethodNotGet,
    /// HTTP/1.0 or older.
    #[error("http/1.1 or later required")]
    HttpVersion,
    /// No `Host` header.
    #[error("missing Host header")]
    MissingHost,
    /// No `Upgrade: websocket`.
    #[error("missing or invalid Upgrade header (expected websocket)")]
    MissingUpgrade,
    /// No `upgrade` token in `Connection`.
    #[error("missing or invalid Connection header (expected upgrade)")]
    MissingConnectionUpgrade,
    /// `Sec-WebSocket-Key` missing, or not 16 bytes of base64.
    #[error("missing or invalid Sec-WebSocket-Key")]
    InvalidKey,
    /// `Sec-WebSocket-Version` missing or not 13.
    #[error("unsupported Sec-WebSocket-Version (expected 13)")]
    UnsupportedVersion,
}

impl HandshakeError {
    /// The HTTP status to answer with.
    pub fn status(&self) -> u16 {
        match self {
            Self::HeadTooLarge { .. } | Self::TooManyHeaders { .. } => 431,
            // RFC 6455 §4.2.2: an unsupported version gets 426 and the versions we speak.
            Self::UnsupportedVersion => 426,
            _ => 400,
        }
    }

    /// The headers to answer with besides the body's: for `426`, the versions this server
    /// speaks (RFC 6455 §4.4).
    pub fn headers(&self) -> &'static [(&'static str, &'static str)] {
        match self {
            Self::UnsupportedVersion => {
                &[("Sec-WebSocket-Version", "13"), ("Upgrade", "websocket")]
            }
            _ => &[],
        }
    }

    /// The complete refusal response: status, headers, the reason as a text body.
    pub fn to_response(&self) -> Vec<u8> {
        http_response(
            self.status(),
            self.headers(),
            "text/plain; charset=utf-8",
            format!("{self}\n").as_bytes(),
        )
    }
}

/// The reason phrase for the statuses this crate emits.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        410 => "Gone",
        411 => "Length Required",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "",
    }
}

/// A complete HTTP/1.1 response that closes the connection.
pub fn http_response(
    status: u16,
    headers: &[(&str, &str)],
    content_type: &str,
    body: &[u8],
) -> Vec<u8> {
    let mut out = response_head(status, headers, content_type, Some(body.len()));
    out.extend_from_slice(body);
    out
}

/// The head of a response whose body follows it until the connection closes (a stream of
/// Server-Sent Events): no `Content-Length`, `Connection: close`, so that an HTTP/1.1 client
/// reads the body to the end of the connection (RFC 9112 §6.3).
pub fn http_response_streamed(
    status: u16,
    headers: &[(&str, &str)],
    content_type: &str,
) -> Vec<u8> {
    response_head(status, headers, content_type, None)
}

fn response_head(
    status: u16,
    headers: &[(&str, &str)],
    content_type: &str,
    length: Option<usize>,
) -> Vec<u8> {
    let mut head = String::with_capacity(160);
    let _ = write!(head, "HTTP/1.1 {status} {}\r\n", reason_phrase(status));
    for (name, value) in headers {
        let _ = write!(head, "{name}: {value}\r\n");
    }
    let _ = write!(head, "Content-Type: {content_type}\r\n");
    if let Some(length) = length {
        let _ = write!(head, "Content-Length: {length}\r\n");
    }
    head.push_str("Connection: close\r\n\r\n");
    head.into_bytes()
}

/// A parsed request head. Holds the raw bytes and ranges into them: one buffer, no copies
/// per header.
#[derive(Clone)]
pub struct Request {
    head: Bytes,
    method: Range<usize>,
    path: Range<usize>,
    version: u8,
    headers: Vec<(Range<usize>, Range<usize>)>,
    /// [`Request::is_upgrade`], found while parsing: routing, admission and validation
    /// each ask, and a search of the headers is most of what answering costs.
    upgrade: bool,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("method", &self.method())
            .field("path", &self.path())
            .field("headers", &self.headers.len())
            .finish()
    }
}

impl Request {
    /// Parses a request head from the start of `buf`.
    ///
    /// `Ok(None)`: incomplete, read more. `Ok(Some((req, n)))`: the head is `buf[..n]`;
    /// bytes after it are not part of the handshake.
    pub fn parse(buf: &[u8], limits: &Limits) -> Result<Option<(Self, usize)>, HandshakeError> {
        // Uninitialised: zeroing 128 slots (4 KiB) cost more than parsing a handshake's
        // headers; httparse initialises the ones it fills and hands back only those.
        let mut storage = [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; 128];
        let max_headers = limits.max_headers.min(storage.len());
        let mut req = httparse::Request::new(&mut []);
        let n = match req.parse_with_uninit_headers(buf, &mut storage[..max_headers]) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => {
                if buf.len() > limits.max_head_size {
                    return Err(HandshakeError::HeadTooLarge {
                        max: limits.max_head_size,
                    });
                }
                return Ok(None);
            }
            Err(httparse::Error::TooManyHeaders) => {
                return Err(HandshakeError::TooManyHeaders { max: max_headers })
            }
            Err(_) => return Err(HandshakeError::MalformedRequest),
        };
        if n > limits.max_head_size {
            return Err(HandshakeError::HeadTooLarge {
                max: limits.max_head_size,
            });
        }
        let base = buf.as_ptr() as usize;
        let range = |s: &[u8]| {
            let start = s.as_ptr() as usize - base;
            start..start + s.len()
        };
        let method = range(req.method.unwrap_or_default().as_bytes());
        let path = range(req.path.unwrap_or_default().as_bytes());
        let version = req.version.unwrap_or(0);
        let headers = req
            .headers
            .iter()
            .map(|h| (range(h.name.as_bytes()), range(h.value)))
            .collect();
        let upgrade = req.headers.iter().any(|h| {
            h.name.len() == 7
                && h.name.eq_ignore_ascii_case("upgrade")
                && has_token(h.value, "websocket")
        });
        Ok(Some((
            Self {
                head: Bytes::copy_from_slice(&buf[..n]),
                method,
                path,
                version,
                headers,
                upgrade,
            },
            n,
        )))
    }

    fn str_at(&self, r: &Range<usize>) -> &str {
        // httparse only yields method, path and names made of visible ASCII.
        std::str::from_utf8(&self.head[r.clone()]).unwrap_or("")
    }

    /// The method, e.g. `GET`.
    pub fn method(&self) -> &str {
        self.str_at(&self.method)
    }

    /// The request target, e.g. `/chat?room=a`.
    pub fn path(&self) -> &str {
        self.str_at(&self.path)
    }

    /// The minor HTTP version: 1 for HTTP/1.1.
    pub fn minor_version(&self) -> u8 {
        self.version
    }

    /// The raw request head.
    pub fn head(&self) -> &[u8] {
        &self.head
    }

    /// Every header field in order.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.headers
            .iter()
            .map(|(n, v)| (self.str_at(n), &self.head[v.clone()]))
    }

    fn name_is(&self, r: &Range<usize>, name: &str) -> bool {
        self.head[r.clone()].eq_ignore_ascii_case(name.as_bytes())
    }

    /// The first value of a header (name case-insensitive).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        let (_, v) = self.headers.iter().find(|(n, _)| self.name_is(n, name))?;
        Some(&self.head[v.clone()])
    }

    /// Every value of a header (name case-insensitive). Names are compared as bytes: the
    /// lookups of a handshake do not validate each name as UTF-8 again.
    pub fn header_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| self.name_is(n, name))
            .map(|(_, v)| &self.head[v.clone()])
    }

    /// Whether the client asks for a WebSocket (an `Upgrade: websocket` header): a request
    /// that does is validated strictly by [`Request::validate_upgrade`]; one that does not
    /// is plain HTTP.
    pub fn is_upgrade(&self) -> bool {
        self.upgrade
    }

    /// The subprotocols the client offers, in its order.
    pub fn subprotocols(&self) -> impl Iterator<Item = &str> + '_ {
        self.header_all("sec-websocket-protocol")
            .flat_map(|v| v.split(|&b| b == b','))
            .filter_map(|t| std::str::from_utf8(t.trim_ascii()).ok())
            .filter(|t| !t.is_empty())
    }

    /// Checks every rule of RFC 6455 §4.2.1 and returns the key to answer.
    pub fn validate_upgrade(&self) -> Result<&[u8], HandshakeError> {
        if self.method() != "GET" {
            return Err(HandshakeError::MethodNotGet);
        }
        if self.version < 1 {
            return Err(HandshakeError::HttpVersion);
        }
        // One pass over the headers for every rule (a search per rule was most of a
        // handshake's parsing time); the checks below keep the rules' order. The first
        // `Host` and `Sec-WebSocket-Version` count, as `header` finds them.
        let (mut host, mut connection, mut version) = (None, false, None);
        let (mut key, mut keys) = (None, 0);
        for (n, v) in &self.headers {
            let (name, value) = (&self.head[n.clone()], &self.head[v.clone()]);
            match name.len() {
                4 if host.is_none() && name.eq_ignore_ascii_case(b"host") => host = Some(value),
                // The Connection header may list other tokens too (e.g. "keep-alive, Upgrade").
                10 if !connection && name.eq_ignore_ascii_case(b"connection") => {
                    connection = has_token(value, "upgrade");
                }
                17 if name.eq_ignore_ascii_case(b"sec-websocket-key") => {
                    keys += 1;
                    key = key.or(Some(value));
                }
                21 if version.is_none() && name.eq_ignore_ascii_case(b"sec-websocket-version") => {
                    version = Some(value);
                }
                _ => {}
            }
        }
        if host.is_none_or(|h| h.trim_ascii().is_empty()) {
            return Err(HandshakeError::MissingHost);
        }
        if !self.upgrade {
            return Err(HandshakeError::MissingUpgrade);
        }
        if !connection {
            return Err(HandshakeError::MissingConnectionUpgrade);
        }
        if version.map(|v| v.trim_ascii()) != Some(b"13") {
            return Err(HandshakeError::UnsupportedVersion);
        }
        let key = match (key, keys) {
            (Some(key), 1) => key.trim_ascii(),
            _ => return Err(HandshakeError::InvalidKey),
        };
        let mut decoded = [0u8; 18];
        match base64::engine::general_purpose::STANDARD.decode_slice(key, &mut decoded) {
            Ok(16) => Ok(key),
            _ => Err(HandshakeError::InvalidKey),
        }
    }

    /// Picks the first of `supported` (server preference) that the client offers.
    pub fn select_subprotocol<'a>(&self, supported: &[&'a str]) -> Option<&'a str> {
        supported
            .iter()
            .find(|s| self.subprotocols().any(|o| o == **s))
            .copied()
    }

    /// Negotiates permessage-deflate from the client's `Sec-WebSocket-Extensions` offers
    /// under this server's `policy`: the first acceptable offer wins (RFC 7692 §5). Pass the
    /// result to [`Request::accept_response_with`] and into
    /// [`Config::deflate`](crate::Config::deflate).
    pub fn negotiate_deflate(&self, policy: &DeflateConfig) -> Option<DeflateParams> {
        policy.negotiate(self.header_all("sec-websocket-extensions"))
    }

    /// The `101 Switching Protocols` response for a request that passed
    /// [`Request::validate_upgrade`]. `extra` headers with CR or LF are skipped.
    pub fn accept_response(
        &self,
        subprotocol: Option<&str>,
        extra: &[(&str, &str)],
    ) -> Result<Vec<u8>, HandshakeError> {
        self.accept_response_with(subprotocol, None, extra)
    }

    /// [`Request::accept_response`] that also answers `Sec-WebSocket-Extensions` with the
    /// permessage-deflate agreement from [`Request::negotiate_deflate`].
    pub fn accept_response_with(
        &self,
        subprotocol: Option<&str>,
        deflate: Option<&DeflateParams>,
        extra: &[(&str, &str)],
    ) -> Result<Vec<u8>, HandshakeError> {
        let key = self.validate_upgrade()?;
        const HEAD: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ";
        let mut out = Vec::with_capacity(160);
        out.extend_from_slice(HEAD);
        out.extend_from_slice(&accept_key_bytes(key));
        out.extend_from_slice(b"\r\n");
        let mut header = |name: &str, value: &str| {
            for part in [name.as_bytes(), b": ", value.as_bytes(), b"\r\n"] {
                out.extend_from_slice(part);
            }
        };
        if let Some(p) = subprotocol {
            header("Sec-WebSocket-Protocol", p);
        }
        if let Some(d) = deflate {
            header("Sec-WebSocket-Extensions", &d.to_header());
        }
        for (name, value) in extra {
            if is_safe_value(name) && is_safe_value(value) {
                header(name, value);
            }
        }
        out.extend_from_slice(b"\r\n");
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\n\
        Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
        Origin: http://example.com\r\nSec-WebSocket-Protocol: chat, superchat\r\n\
        Sec-WebSocket-Version: 13\r\n\r\n";

    fn parse(s: &str) -> Request {
        Request::parse(s.as_bytes(), &Limits::default())
            .unwrap()
            .unwrap()
            .0
    }

    #[test]
    fn accepts_the_rfc_example_and_reports_consumed_bytes() {
        let mut bytes = GOOD.as_bytes().to_vec();
        bytes.extend_from_slice(&[0x81, 0x80, 1, 2, 3, 4]);
        let (req, n) = Request::parse(&bytes, &Limits::default()).unwrap().unwrap();
        assert_eq!(n, GOOD.len());
        assert_eq!(req.path(), "/chat");
        assert_eq!(req.validate_upgrade().unwrap(), b"dGhlIHNhbXBsZSBub25jZQ==");
        assert_eq!(
            req.select_subprotocol(&["superchat", "chat"]),
            Some("superchat")
        );
        assert_eq!(req.select_subprotocol(&["other"]), None);
        let resp = String::from_utf8(req.accept_response(Some("chat"), &[]).unwrap()).unwrap();
        assert!(resp.starts_with("HTTP/1.1 101 Switching Protocols\r\n"));
        assert!(resp.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
        assert!(resp.contains("Sec-WebSocket-Protocol: chat\r\n"));
        assert!(!resp.contains("Extensions"));
    }

    #[test]
    fn header_names_match_in_any_case_and_every_value_is_found() {
        let req = parse(
            "GET / HTTP/1.1\r\nhOsT: a\r\nX-Tag: 1\r\nUPGRADE: h2c\r\nx-tag: 2\r\n\
             upgrade: WebSocket\r\nX-Tags: 3\r\n\r\n",
        );
        assert_eq!(req.header("HOST"), Some(&b"a"[..]));
        assert_eq!(req.header("x-tag"), Some(&b"1"[..]));
        assert_eq!(req.header_all("X-TAG").collect::<Vec<_>>(), [b"1", b"2"]);
        assert_eq!(req.header("x-ta"), None);
        assert!(req.is_upgrade());
    }

    #[test]
    #[cfg(feature = "deflate")]
    fn deflate_is_negotiated_from_the_offers_and_answered() {
        let offer = GOOD.replace(
            "Sec-WebSocket-Version",
            "Sec-WebSocket-Extensions: foo\r\nSec-WebSocket-Extensions: permessage-deflate; \
             server_max_window_bits=10, permessage-deflate\r\nSec-WebSocket-Version",
        );
        let req = parse(&offer);
        let agreed = req.negotiate_deflate(&DeflateConfig::default()).unwrap();
        assert_eq!(agreed.server_max_window_bits, 10);
        let resp = req.accept_response_with(None, Some(&agreed), &[]).unwrap();
        let resp = String::from_utf8(resp).unwrap();
        assert!(resp.contains(
            "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=10\r\n"
        ));
        assert_eq!(
            parse(GOOD).negotiate_deflate(&DeflateConfig::default()),
            None
        );
    }

    /// Built without compression, a server declines every offer.
    #[test]
    #[cfg(not(feature = "deflate"))]
    fn without_the_feature_deflate_is_never_agreed() {
        let offer = GOOD.replace(
            "Sec-WebSocket-Version",
            "Sec-WebSocket-Extensions: permessage-deflate\r\nSec-WebSocket-Version",
        );
        assert_eq!(
            parse(&offer).negotiate_deflate(&DeflateConfig::default()),
            None
        );
    }

    #[test]
    fn each_broken_rule_gets_its_status() {
        let cases: &[(&str, &str, u16)] = &[
            ("GET /chat", "POST /chat", 400),
            ("HTTP/1.1\r\nHost", "HTTP/1.0\r\nHost", 400),
            ("Host: server.example.com\r\n", "", 400),
            ("Upgrade: websocket", "Upgrade: h2c", 400),
            (
                "Connection: keep-alive, Upgrade",
                "Connection: keep-alive",
                400,
            ),
            ("dGhlIHNhbXBsZSBub25jZQ==", "dGhlIHNhbXBsZQ==", 400),
            ("Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 8", 426),
            ("Sec-WebSocket-Version: 13\r\n", "", 426),
        ];
        for (from, to, status) in cases {
            let req = parse(&GOOD.replacen(from, to, 1));
            let err = req.validate_upgrade().unwrap_err();
            assert_eq!(err.status(), *status, "{from} -> {to}: {err}");
        }
    }

    /// The one pass over the headers reads repeated fields as the per-rule searches did:
    /// the first `Host` and `Sec-WebSocket-Version`, any `Upgrade` and `Connection`, and
    /// exactly one key.
    #[test]
    fn repeated_fields_count_as_the_rules_say() {
        let with =
            |extra: &str| parse(&GOOD.replacen("\r\n\r\n", &format!("\r\n{extra}\r\n\r\n"), 1));
        let ok = [
            "Connection: close",
            "UPGRADE: h2c",
            "hOST: other.example.com",
            "Sec-WebSocket-Version: 8",
        ];
        for extra in ok {
            assert!(with(extra).validate_upgrade().is_ok(), "{extra}");
        }
        let refused = [
            (
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
                HandshakeError::InvalidKey,
            ),
            ("sec-websocket-key: x", HandshakeError::InvalidKey),
        ];
        for (extra, want) in refused {
            assert_eq!(with(extra).validate_upgrade(), Err(want), "{extra}");
        }
        let moved = |from: &str, to: &str| parse(&GOOD.replacen(from, to, 1));
        // The upgrade and the connection token in a second field of the same name.
        let req = moved("Upgrade: websocket", "Upgrade: h2c\r\nUpgrade: WebSocket");
        assert!(req.is_upgrade() && req.validate_upgrade().is_ok());
        let req = moved(
            "Connection: keep-alive, Upgrade",
            "Connection: keep-alive\r\nConnection: upgrade",
        );
        assert!(req.validate_upgrade().is_ok());
        // Only the first Host and version count.
        let req = moved(
            "Host: server.example.com",
            "Host: \r\nHost: server.example.com",
        );
        assert_eq!(req.validate_upgrade(), Err(HandshakeError::MissingHost));
        let req = moved(
            "Sec-WebSocket-Version: 13",
            "Sec-WebSocket-Version: 8\r\nSec-WebSocket-Version: 13",
        );
        assert_eq!(
            req.validate_upgrade(),
            Err(HandshakeError::UnsupportedVersion)
        );
        // Without an upgrade, a request is plain HTTP.
        assert!(!moved("Upgrade: websocket", "Upgrade: websockets").is_upgrade());
    }

    #[test]
    fn oversized_heads_get_431() {
        let big = format!("GET / HTTP/1.1\r\nX: {}\r\n", "a".repeat(9000));
        let err = Request::parse(big.as_bytes(), &Limits::default()).unwrap_err();
        assert_eq!(err.status(), 431);
        let many: String = (0..70).map(|i| format!("X-{i}: y\r\n")).collect();
        let req = format!("GET / HTTP/1.1\r\n{many}\r\n");
        assert_eq!(
            Request::parse(req.as_bytes(), &Limits::default())
                .unwrap_err()
                .status(),
            431
        );
        assert!(
            Request::parse(b"GET / HTTP/1.1\r\nHost: x\r\n", &Limits::default())
                .unwrap()
                .is_none()
        );
        assert_eq!(
            Request::parse(b"\x00\x01 garbage\r\n\r\n", &Limits::default())
                .unwrap_err()
                .status(),
            400
        );
    }

    #[test]
    fn refusals_are_complete_responses() {
        let r = String::from_utf8(HandshakeError::UnsupportedVersion.to_response()).unwrap();
        assert!(r.starts_with("HTTP/1.1 426 Upgrade Required\r\n"));
        assert!(r.contains("Sec-WebSocket-Version: 13\r\n"));
        assert!(r.ends_with("\r\n\r\nunsupported Sec-WebSocket-Version (expected 13)\n"));
    }
}
