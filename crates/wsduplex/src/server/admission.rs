//! The front door: every decision on whether a connection or a request may come in, made
//! over what the transport says (the peer's address, TLS or not) and the request head alone,
//! whatever the I/O type and the HTTP version. Each refusal is counted once in
//! [`crate::metrics`], here, and carries its whole answer (status, headers, one-line reason).
//!
//! A connection meets three checks, in this order:
//!
//! | when | check | refused with |
//! |---|---|---|
//! | accepted ([`ServerConfig::open_connection`]) | total connections; per client for a peer that is not a trusted proxy | `503` / `429`, `Retry-After` |
//! | its request head read ([`ServerConfig::admit`]) | per client (the address a trusted proxy reports); the `Origin` allow-list | `429`, `Retry-After` / `403` |
//! | a route that opens a WebSocket or a session ([`ServerConfig::authenticate`]) | [`ServerConfig::auth`]; then the same-origin rule for cookies | `401` (`WWW-Authenticate`) or `403` / `403` |
//!
//! The Origin policy, for an *unsafe* request (a WebSocket upgrade, or a method other than
//! `GET` and `HEAD`) that carries an `Origin` header (browsers always send it there;
//! other clients usually do not, and are never affected):
//! - with [`ServerConfig::allowed_origins`] set, the Origin must be one of them;
//! - else, unless [`ServerConfig::dangerous_allow_any_origin`], a request let in by
//!   credentials that the browser sends by itself (the `wsduplex_token` cookie: see
//!   [`Credential::is_ambient`](crate::auth::Credential::is_ambient)) must come from the server's own origin: the `Origin`'s
//!   host and port are the `Host` header's, and its scheme is `https` on a TLS connection,
//!   `http` on a cleartext one (either from a trusted proxy, which may have ended TLS; either
//!   when the transport is unknown). From a trusted proxy that passes a `Host` without a
//!   port (nginx's `$host`), the host name alone must match. Any other page could otherwise
//!   open a WebSocket with the user's cookie (cross-site WebSocket hijacking).

use super::ServerConfig;
use crate::auth::{Authenticated, Denied, Identity};
use crate::forwarded::client_addr;
use crate::limits::{LimitError, Permit};
use crate::metrics::{self, RefusedBy};
use proto::handshake::server::{http_response, Request};
use std::net::IpAddr;

/// What the transport tells about the other end of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Peer {
    /// The TCP peer's address (a reverse proxy's, if there is one).
    pub addr: IpAddr,
    /// Whether the connection is TLS (the page's scheme is then `https`).
    pub tls: bool,
}

impl Peer {
    /// A peer at `addr`, over TLS or not.
    pub fn new(addr: IpAddr, tls: bool) -> Self {
        Self { addr, tls }
    }
}

/// Seconds a client over a connection limit is asked to wait (`Retry-After`).
pub const RETRY_AFTER_SECS: u32 = 5;
const RETRY_AFTER: [(&str, &str); 1] = [("Retry-After", "5")];
const CHALLENGE: [(&str, &str); 1] = [("WWW-Authenticate", r#"Bearer realm="wsduplex""#)];

/// Why the front door turned a connection or a request away; answer with
/// [`Refusal::status`], [`Refusal::headers`] and the one-line reason (its `Display`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// A connection limit: `503` for the total, `429` per client, with `Retry-After`.
    #[error(transparent)]
    Limit(#[from] LimitError),
    /// A page of an origin that may not open WebSockets or send unsafe requests here: `403`.
    #[error("origin not allowed")]
    Origin,
    /// The authentication hook refused: `401` (with `WWW-Authenticate: Bearer`) or `403`.
    #[error(transparent)]
    Denied(#[from] Denied),
}

impl Refusal {
    /// The HTTP status to answer with.
    pub fn status(&self) -> u16 {
        match self {
            Self::Limit(e) => e.status(),
            Self::Origin => 403,
            Self::Denied(d) => d.status(),
        }
    }

    /// The headers to answer with: `Retry-After` for a limit, the `Bearer` challenge for a
    /// `401`.
    pub fn headers(&self) -> &'static [(&'static str, &'static str)] {
        match self {
            Self::Limit(_) => &RETRY_AFTER,
            Self::Denied(d) if d.status() == 401 => &CHALLENGE,
            _ => &[],
        }
    }

    /// The body: the reason and a newline.
    pub fn body(&self) -> String {
        format!("{self}\n")
    }

    /// The whole HTTP/1.1 answer, for a connection refused before its request is read.
    pub fn to_response(&self) -> Vec<u8> {
        http_response(
            self.status(),
            self.headers(),
            "text/plain",
            self.body().as_bytes(),
        )
    }
}

/// A WebSocket upgrade, or a method that changes something: what a cross-site page must not
/// be able to do with the user's credentials.
fn is_unsafe(request: &Request) -> bool {
    !matches!(request.method(), "GET" | "HEAD") || request.is_upgrade()
}

impl ServerConfig {
    /// The client's address: the peer's, or behind a [`ServerConfig::trusted_proxies`]
    /// proxy the one it reports (see [`crate::forwarded`]).
    pub fn client_addr(&self, request: &Request, peer: IpAddr) -> IpAddr {
        client_addr(peer, request.headers(), &self.trusted_proxies)
    }

    fn is_trusted(&self, peer: IpAddr) -> bool {
        self.trusted_proxies.iter().any(|c| c.contains(peer))
    }

    /// Whether connections from `peer` must start with a PROXY protocol header
    /// ([`ServerConfig::proxy_protocol`]).
    pub fn expects_proxy_header(&self, peer: IpAddr) -> bool {
        self.proxy_protocol.iter().any(|c| c.contains(peer))
    }

    /// Counts a connection whose permit [`open_connection`](Self::open_connection) took
    /// from a PROXY protocol source against `client`, the address its header carries:
    /// the per-client limit as for a direct client (`429`), counted in the metrics.
    pub fn attribute_client(&self, permit: &mut Permit, client: IpAddr) -> Result<(), Refusal> {
        let client = client_addr(client, std::iter::empty(), &[]);
        self.connections
            .attribute(permit, client)
            .inspect_err(|_| metrics::refused(RefusedBy::PerClient))?;
        Ok(())
    }

    /// Counts a new connection against [`ServerConfig::connections`]: the total and, unless
    /// `peer` is a trusted proxy (whose clients are known only from the request's headers),
    /// its address, so that requests that never finish count against their sender. The
    /// permit counts the connection until dropped.
    pub fn open_connection(&self, peer: IpAddr) -> Result<Permit, Refusal> {
        let mut permit = self.connections.try_open().inspect_err(|_| {
            metrics::refused(RefusedBy::MaxConnections);
        })?;
        // Behind a trusted proxy the client is known from the request's headers, behind a
        // PROXY protocol balancer from the header before it: counted then.
        if !self.is_trusted(peer) && !self.expects_proxy_header(peer) {
            // In canonical form, as `client_addr` gives it.
            let client = client_addr(peer, std::iter::empty(), &[]);
            self.connections
                .attribute(&mut permit, client)
                .inspect_err(|_| metrics::refused(RefusedBy::PerClient))?;
        }
        Ok(permit)
    }

    /// The checks once a request head is read, whatever its route: the per-client limit
    /// for the address a trusted proxy reports (when `permit` and `peer` are given: a
    /// permit already attributed by [`open_connection`](Self::open_connection) is left as
    /// it is), then the [`allowed_origins`](Self::allowed_origins) list.
    pub fn admit(
        &self,
        request: &Request,
        peer: Option<&Peer>,
        permit: Option<&mut Permit>,
    ) -> Result<(), Refusal> {
        if let (Some(permit), Some(peer)) = (permit, peer) {
            let client = self.client_addr(request, peer.addr);
            self.connections
                .attribute(permit, client)
                .inspect_err(|_| metrics::refused(RefusedBy::PerClient))?;
        }
        if !self.allowed_origins.is_empty() && is_unsafe(request) {
            let origin = request.header("origin");
            if origin.is_some_and(|o| !self.allowed_origins.iter().any(|a| a.as_bytes() == o)) {
                metrics::refused(RefusedBy::Origin);
                return Err(Refusal::Origin);
            }
        }
        Ok(())
    }

    /// The checks of a route that opens a WebSocket or a session: [`ServerConfig::auth`]
    /// (which may take its time: a session looked up in a database), then, for credentials
    /// a browser sends by itself, the same-origin rule of the [module docs](self). Says who
    /// made the request: [`Identity::anonymous`] without a hook.
    pub async fn authenticate(
        &self,
        request: &Request,
        peer: Option<&Peer>,
    ) -> Result<Identity, Refusal> {
        let Some(hook) = &self.auth else {
            return Ok(Identity::anonymous());
        };
        let Authenticated {
            identity,
            credential,
            ..
        } = hook.identify(request).await?;
        let checked_elsewhere = !self.allowed_origins.is_empty() || self.dangerous_allow_any_origin;
        if checked_elsewhere || !is_unsafe(request) || !credential.is_ambient(request) {
            return Ok(identity);
        }
        let Some(origin) = request.header("origin") else {
            return Ok(identity);
        };
        let via_proxy = peer.is_some_and(|p| self.is_trusted(p.addr));
        let tls = match peer {
            Some(p) if !p.tls && via_proxy => None,
            Some(p) => Some(p.tls),
            None => None,
        };
        if is_same_origin(origin, request.header("host"), tls, via_proxy) {
            Ok(identity)
        } else {
            metrics::refused(RefusedBy::Origin);
            Err(Refusal::Origin)
        }
    }
}

/// Whether `origin` (`scheme://host[:port]`) is the origin of a page served with this `host`
/// header, over TLS (`Some(true)`), cleartext, or either (`None`). Default ports are
/// dropped from both sides, as browsers drop them. `via_proxy`: a `host` without a port
/// may have lost it in a proxy, so the host names alone are compared then.
fn is_same_origin(origin: &[u8], host: Option<&[u8]>, tls: Option<bool>, via_proxy: bool) -> bool {
    let (Ok(origin), Some(Ok(host))) = (std::str::from_utf8(origin), host.map(std::str::from_utf8))
    else {
        return false;
    };
    let Some((scheme, authority)) = origin.split_once("://") else {
        return false; // `null`, from a sandboxed frame or a file
    };
    let scheme = scheme.to_ascii_lowercase();
    let scheme_ok = matches!(
        (scheme.as_str(), tls),
        ("https", Some(true) | None) | ("http", Some(false) | None)
    );
    let default_port = if scheme == "https" { ":443" } else { ":80" };
    let normal = |a: &str| {
        let a = a.trim().to_ascii_lowercase();
        match a.strip_suffix(default_port) {
            Some(bare) => bare.to_string(),
            None => a,
        }
    };
    let (authority, host) = (normal(authority), normal(host));
    let same =
        authority == host || (via_proxy && port_of(&host).is_none() && name_of(&authority) == host);
    scheme_ok && !authority.is_empty() && same
}

/// `host:port` or `[v6]:port` without the port.
fn name_of(authority: &str) -> &str {
    match port_of(authority) {
        Some(port) => &authority[..authority.len() - port.len() - 1],
        None => authority,
    }
}

/// The port of `host:port` or `[v6]:port`, if there is one.
fn port_of(authority: &str) -> Option<&str> {
    let after_name = match authority.strip_prefix('[') {
        Some(v6) => &v6[v6.find(']')? + 1..],
        None => authority,
    };
    after_name.rsplit_once(':').map(|(_, port)| port)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{AuthHook, TokenAuth};
    use crate::limits::ConnectionLimiter;
    use proto::handshake::server::Limits;

    fn req(method: &str, headers: &str) -> Request {
        let upgrade = if method == "WS" {
            "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        } else {
            ""
        };
        let method = if method == "WS" { "GET" } else { method };
        let head =
            format!("{method} /chat HTTP/1.1\r\nHost: chat.example:8080\r\n{upgrade}{headers}\r\n");
        Request::parse(head.as_bytes(), &Limits::default())
            .unwrap()
            .unwrap()
            .0
    }

    fn with_tokens() -> ServerConfig {
        ServerConfig {
            auth: Some(AuthHook::new(TokenAuth::new(["t"]))),
            ..ServerConfig::default()
        }
    }

    const COOKIE: &str = "Cookie: wsduplex_token=t\r\n";
    const PEER: Peer = Peer {
        addr: IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        tls: false,
    };

    /// The hooks here are synchronous: their futures are ready at once.
    fn now<T>(f: impl std::future::Future<Output = T>) -> T {
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match std::pin::pin!(f).poll(&mut cx) {
            std::task::Poll::Ready(v) => v,
            std::task::Poll::Pending => panic!("a synchronous hook was not ready"),
        }
    }

    fn auth(c: &ServerConfig, r: &Request, peer: Option<&Peer>) -> Result<(), Refusal> {
        now(c.authenticate(r, peer)).map(drop)
    }

    #[test]
    fn cookie_credentials_need_the_same_origin_by_default() {
        let c = with_tokens();
        let check = |method: &str, extra: &str| auth(&c, &req(method, extra), Some(&PEER));
        let evil = format!("{COOKIE}Origin: http://evil.example\r\n");
        assert_eq!(check("WS", &evil), Err(Refusal::Origin));
        assert_eq!(check("POST", &evil), Err(Refusal::Origin));
        assert_eq!(
            check("WS", &format!("{COOKIE}Origin: null\r\n")),
            Err(Refusal::Origin)
        );
        let own = format!("{COOKIE}Origin: http://chat.example:8080\r\n");
        assert_eq!(check("WS", &own), Ok(()));
        // The scheme the transport knows: an https page does not match a cleartext server.
        let https = format!("{COOKIE}Origin: https://chat.example:8080\r\n");
        assert_eq!(check("WS", &https), Err(Refusal::Origin));
        let tls = Peer { tls: true, ..PEER };
        assert_eq!(auth(&c, &req("WS", &https), Some(&tls)), Ok(()));
        assert_eq!(
            auth(&c, &req("WS", &https), None),
            Ok(()),
            "unknown transport"
        );
        // Not affected: no Origin (not a browser), a safe request, a token the page knows.
        assert_eq!(check("WS", COOKIE), Ok(()));
        assert_eq!(check("GET", &evil), Ok(()));
        let bearer = "Authorization: Bearer t\r\nOrigin: http://evil.example\r\n";
        assert_eq!(check("WS", bearer), Ok(()));
        // Wrong credentials are refused by the hook first.
        let wrong = "Cookie: wsduplex_token=x\r\nOrigin: http://chat.example:8080\r\n";
        assert_eq!(check("WS", wrong).unwrap_err().status(), 401);
    }

    #[test]
    fn an_allow_list_or_the_dangerous_switch_replaces_the_default() {
        let evil = format!("{COOKIE}Origin: http://evil.example\r\n");
        let mut c = with_tokens();
        c.dangerous_allow_any_origin = true;
        assert_eq!(auth(&c, &req("WS", &evil), Some(&PEER)), Ok(()));
        let mut c = with_tokens();
        c.allowed_origins = vec!["http://evil.example".into()];
        assert_eq!(c.admit(&req("WS", &evil), Some(&PEER), None), Ok(()));
        assert_eq!(auth(&c, &req("WS", &evil), Some(&PEER)), Ok(()));
        let other = "Origin: http://chat.example:8080\r\n";
        assert_eq!(c.admit(&req("WS", other), None, None), Err(Refusal::Origin));
        assert_eq!(c.admit(&req("GET", other), None, None), Ok(()), "safe");
        // Without auth, no default check at all.
        let c = ServerConfig::default();
        assert_eq!(auth(&c, &req("WS", &evil), Some(&PEER)), Ok(()));
    }

    #[test]
    fn same_origin_drops_default_ports_and_case() {
        let check = |o: &str, h: &str, tls, proxy| {
            is_same_origin(o.as_bytes(), Some(h.as_bytes()), tls, proxy)
        };
        let yes = |o: &str, h: &str, tls| check(o, h, tls, false);
        assert!(yes("https://Chat.Example", "chat.example:443", Some(true)));
        assert!(yes("http://127.0.0.1:8080", "127.0.0.1:8080", Some(false)));
        assert!(yes("http://[::1]:8080", "[::1]:8080", None));
        assert!(!yes("http://127.0.0.1:8081", "127.0.0.1:8080", None));
        assert!(!yes("http://chat.example.evil", "chat.example", None));
        assert!(!yes("ftp://chat.example", "chat.example", None));
        assert!(!is_same_origin(b"http://a", None, None, false), "no Host");
        // A proxy's `$host` drops the port: the names alone, then.
        assert!(!yes("https://chat.example:8443", "chat.example", None));
        assert!(check(
            "https://chat.example:8443",
            "chat.example",
            None,
            true
        ));
        assert!(check("http://[::1]:8080", "[::1]", None, true));
        assert!(!check(
            "https://evil.example:8443",
            "chat.example",
            None,
            true
        ));
        assert!(!check(
            "https://chat.example:8443",
            "chat.example:9000",
            None,
            true
        ));
    }

    #[test]
    fn limits_answer_with_retry_after() {
        let c = ServerConfig {
            connections: ConnectionLimiter::new(0, 1),
            ..ServerConfig::default()
        };
        let peer: IpAddr = "10.0.0.1".parse().unwrap();
        let _first = c.open_connection(peer).unwrap();
        let refused = c.open_connection(peer).unwrap_err();
        assert_eq!(refused.status(), 429);
        assert_eq!(refused.headers(), &[("Retry-After", "5")]);
        let text = String::from_utf8(refused.to_response()).unwrap();
        assert!(text.starts_with("HTTP/1.1 429 "), "{text}");
        assert!(
            text.ends_with("too many connections from this address (limit 1)\n"),
            "{text}"
        );
        let denied = Refusal::from(Denied::unauthorized("no"));
        assert_eq!(denied.headers()[0].0, "WWW-Authenticate");
        assert!(Refusal::Origin.headers().is_empty());
    }
}
