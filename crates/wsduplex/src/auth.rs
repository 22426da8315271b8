//! Authentication of opening requests: a hook that sees the request (method, target,
//! headers, cookies) before anything is accepted, and a ready-made token check.
//!
//! Browsers cannot set headers on a WebSocket, so [`TokenAuth`] takes the token from any of
//! the three places a client can put it: `Authorization: Bearer TOKEN`, the query parameter
//! `access_token=TOKEN`, or the cookie `wsduplex_token=TOKEN`.
//!
//! ```
//! use wsduplex::auth::{Authenticate, TokenAuth};
//! use wsduplex::proto::handshake::server::{Limits, Request};
//!
//! let auth = TokenAuth::new(["s3cret"]);
//! let parse = |head: &str| Request::parse(head.as_bytes(), &Limits::default()).unwrap().unwrap().0;
//! assert!(auth.check(&parse("GET /chat?access_token=s3cret HTTP/1.1\r\nHost: x\r\n\r\n")).is_ok());
//! assert!(auth.check(&parse("GET /chat HTTP/1.1\r\nHost: x\r\nCookie: a=1; wsduplex_token=s3cret\r\n\r\n")).is_ok());
//! assert_eq!(auth.check(&parse("GET /chat HTTP/1.1\r\nHost: x\r\n\r\n")).unwrap_err().status(), 401);
//! ```

use proto::handshake::server::Request;
use std::fmt;
use std::sync::Arc;

/// Why a request was refused: answered with its status (`401` or `403`) and reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct Denied {
    status: u16,
    reason: &'static str,
}

impl Denied {
    /// No credentials, or wrong ones: `401` with `WWW-Authenticate: Bearer`.
    pub const fn unauthorized(reason: &'static str) -> Self {
        Self {
            status: 401,
            reason,
        }
    }

    /// Credentials that are valid but not enough: `403`.
    pub const fn forbidden(reason: &'static str) -> Self {
        Self {
            status: 403,
            reason,
        }
    }

    /// The HTTP status to answer with.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The one-line reason sent as the body.
    pub fn reason(&self) -> &'static str {
        self.reason
    }
}

/// Where the credentials that let a request through came from. The front door needs to know
/// because a browser sends some of them by itself, from any page (see
/// [`crate::server::ServerConfig::allowed_origins`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Credential {
    /// `Authorization: Bearer`: a page can send it only if its script knows the token.
    Authorization,
    /// The `access_token` query parameter: the same.
    Query,
    /// The `wsduplex_token` cookie: sent by the browser with every request to this site,
    /// whichever page asks.
    Cookie,
    /// A hook that does not say. Treated as [`Credential::Cookie`] when the request
    /// carries a `Cookie` header, since the hook may have read it.
    Unknown,
}

impl Credential {
    /// Whether a browser may have sent it without the page's knowledge (a cookie), so the
    /// page's origin must be checked.
    pub fn is_ambient(self, request: &Request) -> bool {
        match self {
            Self::Cookie => true,
            Self::Unknown => request.header("cookie").is_some(),
            Self::Authorization | Self::Query => false,
        }
    }
}

/// Decides whether a request may go on. Any `Fn(&Request) -> Result<(), Denied>` is one.
pub trait Authenticate: Send + Sync {
    /// `Ok` to let the request through.
    fn check(&self, request: &Request) -> Result<(), Denied>;

    /// Like [`check`](Self::check), and says which credential let the request through.
    /// The default says [`Credential::Unknown`].
    fn authenticate(&self, request: &Request) -> Result<Credential, Denied> {
        self.check(request).map(|()| Credential::Unknown)
    }
}

impl<F> Authenticate for F
where
    F: Fn(&Request) -> Result<(), Denied> + Send + Sync,
{
    fn check(&self, request: &Request) -> Result<(), Denied> {
        self(request)
    }
}

/// A shared [`Authenticate`], as [`crate::ServerConfig::auth`] holds it.
#[derive(Clone)]
pub struct AuthHook(Arc<dyn Authenticate>);

impl AuthHook {
    /// Wraps a hook.
    pub fn new(hook: impl Authenticate + 'static) -> Self {
        Self(Arc::new(hook))
    }

    /// Runs the hook.
    pub fn check(&self, request: &Request) -> Result<(), Denied> {
        self.0.check(request)
    }

    /// Runs the hook; says which credential let the request through.
    pub fn authenticate(&self, request: &Request) -> Result<Credential, Denied> {
        self.0.authenticate(request)
    }
}

impl fmt::Debug for AuthHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AuthHook")
    }
}

/// Accepts requests that carry one of the given tokens (compared in constant time).
#[derive(Clone)]
pub struct TokenAuth {
    tokens: Vec<Vec<u8>>,
    /// Only `Authorization: Bearer` (see [`TokenAuth::bearer_only`]).
    bearer_only: bool,
}

impl fmt::Debug for TokenAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenAuth({} tokens)", self.tokens.len())?;
        if self.bearer_only {
            f.write_str(", bearer only")?;
        }
        Ok(())
    }
}

/// The query parameter [`TokenAuth`] reads.
pub const QUERY_PARAM: &str = "access_token";
/// The cookie [`TokenAuth`] reads.
pub const COOKIE: &str = "wsduplex_token";

impl TokenAuth {
    /// Accepts any of `tokens`.
    pub fn new<T: AsRef<str>>(tokens: impl IntoIterator<Item = T>) -> Self {
        Self {
            tokens: tokens
                .into_iter()
                .map(|t| t.as_ref().as_bytes().to_vec())
                .collect(),
            bearer_only: false,
        }
    }

    /// Reads the token from `Authorization: Bearer` only, as an API for programs does
    /// (the hub's push API): never from the query or a cookie.
    pub fn bearer_only(mut self) -> Self {
        self.bearer_only = true;
        self
    }

    fn accepts(&self, given: &[u8]) -> bool {
        // Every token is compared, so the time does not say which one nearly matched.
        self.tokens
            .iter()
            .fold(false, |ok, t| ok | constant_time_eq(t, given))
    }
}

impl Authenticate for TokenAuth {
    fn check(&self, request: &Request) -> Result<(), Denied> {
        self.authenticate(request).map(drop)
    }

    fn authenticate(&self, request: &Request) -> Result<Credential, Denied> {
        let mut found = false;
        if let Some(v) = request.header("authorization") {
            found = true;
            if let Some(t) = v.strip_prefix(b"Bearer ") {
                if self.accepts(t.trim_ascii()) {
                    return Ok(Credential::Authorization);
                }
            }
        }
        if self.bearer_only {
            return Err(Denied::unauthorized(if found {
                "wrong token"
            } else {
                "a token is required (Authorization: Bearer)"
            }));
        }
        if let Some((_, query)) = request.path().split_once('?') {
            for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
                if k == QUERY_PARAM {
                    found = true;
                    if self.accepts(v.as_bytes()) {
                        return Ok(Credential::Query);
                    }
                }
            }
        }
        for cookies in request.header_all("cookie") {
            for pair in cookies.split(|&b| b == b';') {
                let pair = pair.trim_ascii();
                if let Some(v) = pair
                    .strip_prefix(COOKIE.as_bytes())
                    .and_then(|r| r.strip_prefix(b"="))
                {
                    found = true;
                    if self.accepts(v) {
                        return Ok(Credential::Cookie);
                    }
                }
            }
        }
        Err(Denied::unauthorized(if found {
            "wrong token"
        } else {
            "a token is required (Authorization: Bearer, ?access_token= or the wsduplex_token cookie)"
        }))
    }
}

/// Whether `a == b`, in a time that depends on their lengths only: a secret compared this way
/// does not tell a guesser how much of the guess matched.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::handshake::server::Limits;

    fn req(target: &str, headers: &str) -> Request {
        let head = format!("GET {target} HTTP/1.1\r\nHost: x\r\n{headers}\r\n");
        Request::parse(head.as_bytes(), &Limits::default())
            .unwrap()
            .unwrap()
            .0
    }

    #[test]
    fn each_place_and_each_token() {
        let auth = TokenAuth::new(["one", "two"]);
        assert!(auth
            .check(&req("/", "Authorization: Bearer two\r\n"))
            .is_ok());
        assert!(auth.check(&req("/?a=1&access_token=one", "")).is_ok());
        assert!(auth
            .check(&req("/", "Cookie: x=y; wsduplex_token=two\r\n"))
            .is_ok());
        assert!(
            auth.check(&req("/?access_token=t%77o", "")).is_ok(),
            "decoded"
        );
    }

    #[test]
    fn says_which_credential_and_bearer_only_reads_the_header_alone() {
        let auth = TokenAuth::new(["one"]);
        let via = |target: &str, headers: &str| auth.authenticate(&req(target, headers));
        assert_eq!(
            via("/", "Authorization: Bearer one\r\n"),
            Ok(Credential::Authorization)
        );
        assert_eq!(via("/?access_token=one", ""), Ok(Credential::Query));
        assert_eq!(
            via("/", "Cookie: wsduplex_token=one\r\n"),
            Ok(Credential::Cookie)
        );
        let api = TokenAuth::new(["one"]).bearer_only();
        assert!(api
            .check(&req("/", "Authorization: Bearer one\r\n"))
            .is_ok());
        for (target, headers) in [
            ("/?access_token=one", ""),
            ("/", "Cookie: wsduplex_token=one\r\n"),
        ] {
            assert_eq!(api.check(&req(target, headers)).unwrap_err().status(), 401);
        }
        let hook = |_: &Request| -> Result<(), Denied> { Ok(()) };
        assert!(hook
            .authenticate(&req("/", "Cookie: a=b\r\n"))
            .unwrap()
            .is_ambient(&req("/", "Cookie: a=b\r\n")));
        assert!(!Credential::Unknown.is_ambient(&req("/", "")));
    }

    #[test]
    fn refusals() {
        let auth = TokenAuth::new(["one"]);
        for (target, headers) in [
            ("/", ""),
            ("/", "Authorization: Bearer on\r\n"),
            ("/", "Authorization: Basic b25l\r\n"),
            ("/?access_token=", ""),
            ("/?access_token=onex", ""),
            ("/", "Cookie: wsduplex_token_x=one\r\n"),
            ("/?token=one", ""),
        ] {
            let e = auth.check(&req(target, headers)).unwrap_err();
            assert_eq!(e.status(), 401, "{target} {headers}");
        }
    }
}
