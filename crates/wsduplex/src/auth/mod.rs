//! Authentication of opening requests: a hook that sees the request (method, target,
//! headers, cookies) before anything is accepted and says who made it (an [`Identity`]),
//! and two ready-made checks: shared-secret tokens ([`TokenAuth`]) and JSON Web Tokens
//! (`JwtAuth`, feature `jwt`).
//!
//! A hook is asynchronous ([`Identify`], or a closure for [`AuthHook::from_fn`]), so it
//! may look a session up in a database or ask another service; a synchronous
//! [`Authenticate`] (any `Fn(&Request) -> Result<(), Denied>`) still works, and lets its
//! requests in as [`Identity::anonymous`].
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

mod identity;
#[cfg(feature = "jwt")]
mod jwt;

pub use identity::{Identity, RoomSet};
#[cfg(feature = "jwt")]
#[cfg_attr(docsrs, doc(cfg(feature = "jwt")))]
pub use jwt::{JwtAuth, JwtKeyError};

use proto::handshake::server::{Limits, Request};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
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

/// What an [`Identify`] hook answers for a request it lets in: who made it, and which
/// credential told (for the same-origin rule of cookies).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Authenticated {
    /// Who made the request.
    pub identity: Identity,
    /// Where the credential was.
    pub credential: Credential,
}

impl Authenticated {
    /// `identity`, let in by `credential`.
    pub fn new(identity: Identity, credential: Credential) -> Self {
        Self {
            identity,
            credential,
        }
    }
}

/// The future an [`Identify`] hook returns.
pub type IdentifyFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Authenticated, Denied>> + Send + 'a>>;

/// An asynchronous authentication hook: finds out who made a request (a session looked up
/// in a database, a token checked by another service) or refuses it.
pub trait Identify: Send + Sync {
    /// The identity behind `request`, or why it is refused.
    fn identify<'a>(&'a self, request: &'a Request) -> IdentifyFuture<'a>;
}

/// A synchronous [`Authenticate`] as an [`Identify`]: anonymous, every room.
struct Anonymous<A>(A);

impl<A: Authenticate> Identify for Anonymous<A> {
    fn identify<'a>(&'a self, request: &'a Request) -> IdentifyFuture<'a> {
        let checked = self
            .0
            .authenticate(request)
            .map(|credential| Authenticated::new(Identity::anonymous(), credential));
        Box::pin(std::future::ready(checked))
    }
}

struct FromFn<F>(F);

impl<F, Fut> Identify for FromFn<F>
where
    F: Fn(&Request) -> Fut + Send + Sync,
    Fut: Future<Output = Result<Authenticated, Denied>> + Send + 'static,
{
    fn identify<'a>(&'a self, request: &'a Request) -> IdentifyFuture<'a> {
        Box::pin((self.0)(request))
    }
}

/// A shared authentication hook, as [`crate::ServerConfig::auth`] holds it.
#[derive(Clone)]
pub struct AuthHook {
    hook: Arc<dyn Identify>,
    /// Whether it may say who a request is (else every request it lets in is anonymous).
    identifies: bool,
}

impl AuthHook {
    /// Wraps a synchronous hook: the requests it lets in are [`Identity::anonymous`].
    pub fn new(hook: impl Authenticate + 'static) -> Self {
        Self {
            hook: Arc::new(Anonymous(hook)),
            identifies: false,
        }
    }

    /// Wraps an asynchronous hook that says who made the request.
    pub fn identify_with(hook: impl Identify + 'static) -> Self {
        Self {
            hook: Arc::new(hook),
            identifies: true,
        }
    }

    /// A hook from a closure that reads what it needs from the request (a cookie, say) and
    /// returns a future of the answer:
    ///
    /// ```
    /// use wsduplex::auth::{AuthHook, Authenticated, Credential, Denied, Identity};
    ///
    /// let hook = AuthHook::from_fn(|request| {
    ///     let session = request.header("cookie").map(<[u8]>::to_vec);
    ///     async move {
    ///         // Look `session` up in a database here.
    ///         match session {
    ///             Some(_) => Ok(Authenticated::new(Identity::user("42"), Credential::Cookie)),
    ///             None => Err(Denied::unauthorized("no session")),
    ///         }
    ///     }
    /// });
    /// # drop(hook);
    /// ```
    pub fn from_fn<F, Fut>(hook: F) -> Self
    where
        F: Fn(&Request) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Authenticated, Denied>> + Send + 'static,
    {
        Self {
            hook: Arc::new(FromFn(hook)),
            identifies: true,
        }
    }

    /// Whether the hook may tell users apart (made by [`identify_with`](Self::identify_with)
    /// or [`from_fn`](Self::from_fn)); a synchronous [`Authenticate`] lets everyone in as
    /// [`Identity::anonymous`].
    pub fn identifies(&self) -> bool {
        self.identifies
    }

    /// Runs the hook.
    pub async fn identify(&self, request: &Request) -> Result<Authenticated, Denied> {
        self.hook.identify(request).await
    }

    /// Checks a token sent on an open connection (the hub's `refresh` message) as the
    /// hook checks one in `Authorization: Bearer`: the same hook, the same rules.
    pub async fn refresh(&self, token: &str) -> Result<Identity, Denied> {
        if token.is_empty() || token.bytes().any(|b| b.is_ascii_control()) {
            return Err(Denied::unauthorized("malformed token"));
        }
        let head =
            format!("GET / HTTP/1.1\r\nHost: refresh\r\nAuthorization: Bearer {token}\r\n\r\n");
        let mut limits = Limits::default();
        limits.max_head_size = head.len() + 1;
        let request = match Request::parse(head.as_bytes(), &limits) {
            Ok(Some((request, _))) => request,
            _ => return Err(Denied::unauthorized("malformed token")),
        };
        self.identify(&request).await.map(|a| a.identity)
    }
}

impl fmt::Debug for AuthHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AuthHook")
    }
}

/// The tokens a request carries, in the order they are looked for: `Authorization:
/// Bearer`, then (unless `bearer_only`) the `access_token` query parameter, then the
/// `wsduplex_token` cookie. `found_header`: an `Authorization` header of another scheme.
fn tokens(request: &Request, bearer_only: bool) -> (Vec<(Credential, Vec<u8>)>, bool) {
    let mut found = Vec::new();
    let mut other_header = false;
    if let Some(v) = request.header("authorization") {
        match v.strip_prefix(b"Bearer ") {
            Some(t) => found.push((Credential::Authorization, t.trim_ascii().to_vec())),
            None => other_header = true,
        }
    }
    if bearer_only {
        return (found, other_header);
    }
    if let Some((_, query)) = request.path().split_once('?') {
        for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
            if k == QUERY_PARAM {
                found.push((Credential::Query, v.as_bytes().to_vec()));
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
                found.push((Credential::Cookie, v.to_vec()));
            }
        }
    }
    (found, other_header)
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
        let (found, other_header) = tokens(request, self.bearer_only);
        if let Some((credential, _)) = found.iter().find(|(_, t)| self.accepts(t)) {
            return Ok(*credential);
        }
        let any = other_header || !found.is_empty();
        Err(Denied::unauthorized(match (any, self.bearer_only) {
            (true, _) => "wrong token",
            (false, true) => "a token is required (Authorization: Bearer)",
            (false, false) => "a token is required (Authorization: Bearer, ?access_token= or the wsduplex_token cookie)",
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
