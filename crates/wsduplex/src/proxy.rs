//! Client-side proxies: HTTP `CONNECT` tunnels and SOCKS5 (RFC 1928, with the
//! username/password method of RFC 1929).
//!
//! The proxy only carries bytes: for `wss://` the TLS handshake runs *inside* the tunnel,
//! end to end with the server, and the proxy never sees the plaintext.
//!
//! ```text
//!  connect_with(url) ─▶ ProxySetting ─▶ which proxy, if any, for this URL (NO_PROXY, scheme)
//!                     ─▶ TCP to the proxy ─▶ CONNECT host:port / SOCKS5 connect ─▶ tunnel
//!                     ─▶ (TLS for wss://) ─▶ client_handshake ─▶ WebSocket
//! ```
//!
//! The messages of both protocols are built and parsed by pure functions
//! ([`connect_request`], [`parse_connect_response`], [`socks5_greeting`], ...); only
//! [`open_tunnel`] does I/O.
//!
//! # Which proxy
//!
//! [`ClientConfig::proxy`](crate::ClientConfig::proxy) is a [`ProxySetting`]; the default is
//! [`ProxySetting::FromEnv`], as curl and Python `websockets` (since 15.0) do:
//!
//! - `ws://` URLs use `http_proxy`, `wss://` URLs use `https_proxy`; either falls back to
//!   `all_proxy`. Each variable is read lowercase first, then uppercase (`HTTP_PROXY`, ...);
//!   an empty value counts as unset.
//! - `no_proxy` (or `NO_PROXY`) is a comma-separated list; a URL whose host matches an entry
//!   connects directly. `*` matches every host. A name matches itself and its subdomains
//!   (`example.com` and `.example.com` both match `example.com` and `ws.example.com`, not
//!   `badexample.com`). An IP address matches itself; `10.0.0.0/8` or `fd00::/8` match a
//!   range (as curl ≥ 7.86 does). An entry with a port (`example.com:8080`,
//!   `[::1]:8080`) matches that port only; without, every port. Names are not resolved:
//!   `localhost` does not match `127.0.0.1`. Loopback is *not* exempt by itself (as in
//!   curl): put `localhost,127.0.0.1,::1` in `no_proxy` if a proxy is set.
//! - Proxy URLs: `http://[user:password@]host[:port]` (port 80 by default) for `CONNECT`
//!   with basic auth, `socks5://` or `socks5h://[user:password@]host[:port]` (port 1080) for
//!   SOCKS5. Both SOCKS schemes send the host *name* to the proxy, which resolves it
//!   (remote DNS: a client behind a SOCKS proxy often cannot resolve names itself). A URL
//!   without a scheme is `http://`, as curl reads it. Userinfo is percent-decoded. Other
//!   schemes (`https://` proxies, `socks4://`) are [`ProxyError::UnsupportedScheme`].
//!
//! Setting up the tunnel counts against
//! [`ClientConfig::connect_timeout`](crate::ClientConfig::connect_timeout).

use crate::client::Target;
use std::fmt;
use std::net::IpAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Where [`connect_with`](crate::connect_with) finds its proxy.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProxySetting {
    /// Always connect directly.
    None,
    /// Read `http_proxy`, `https_proxy`, `all_proxy` and `no_proxy` (and their uppercase
    /// forms) at each connect: see the [module docs](self).
    #[default]
    FromEnv,
    /// Use these rules instead of the environment's (e.g. from an application's own
    /// configuration).
    Rules(ProxyRules),
    /// Always use this proxy, whatever the URL (`no_proxy` is not consulted).
    Url(String),
}

/// Proxy rules in the shape of the environment variables: a proxy per scheme and a
/// `no_proxy` list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProxyRules {
    /// For `ws://` URLs (`http_proxy`).
    pub http: Option<String>,
    /// For `wss://` URLs (`https_proxy`).
    pub https: Option<String>,
    /// For either, when the scheme's own is unset (`all_proxy`).
    pub all: Option<String>,
    /// Hosts that bypass the proxy (`no_proxy`).
    pub no_proxy: Option<String>,
}

impl ProxyRules {
    /// The rules of this process's environment.
    pub fn from_env() -> Self {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// The rules from a variable lookup (`lookup("https_proxy")`, ...): each variable
    /// lowercase first, then uppercase; empty values are unset.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let var = |name: &str| {
            [name.to_string(), name.to_ascii_uppercase()]
                .iter()
                .filter_map(|n| lookup(n))
                .find(|v| !v.trim().is_empty())
        };
        Self {
            http: var("http_proxy"),
            https: var("https_proxy"),
            all: var("all_proxy"),
            no_proxy: var("no_proxy"),
        }
    }

    /// The proxy URL for a connection to `host:port`, if any.
    pub fn proxy_for(&self, host: &str, port: u16, tls: bool) -> Option<&str> {
        let own = if tls { &self.https } else { &self.http };
        let proxy = own.as_deref().or(self.all.as_deref())?;
        match &self.no_proxy {
            Some(list) if no_proxy_matches(list, host, port) => None,
            _ => Some(proxy),
        }
    }
}

impl ProxySetting {
    /// The proxy for `target`, parsed; `None` to connect directly.
    pub fn proxy_for(&self, target: &Target) -> Result<Option<ProxyUrl>, ProxyError> {
        let rules;
        let url = match self {
            Self::None => None,
            Self::Url(url) => Some(url.as_str()),
            Self::FromEnv => {
                rules = ProxyRules::from_env();
                rules.proxy_for(&target.host, target.port, target.tls)
            }
            Self::Rules(r) => r.proxy_for(&target.host, target.port, target.tls),
        };
        url.map(ProxyUrl::parse).transpose()
    }
}

/// Whether `host:port` matches the `no_proxy` list `list` (rules in the [module docs](self)).
/// `host` has no brackets.
pub fn no_proxy_matches(list: &str, host: &str, port: u16) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let host_ip: Option<IpAddr> = host.parse().ok();
    list.split([',', ' ', '\t'])
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .any(|entry| {
            if entry == "*" {
                return true;
            }
            let (name, entry_port) = split_port(entry);
            if entry_port.is_some_and(|p| p != port) {
                return false;
            }
            if let Some((net, bits)) = name.split_once('/') {
                return match (net.parse::<IpAddr>(), bits.parse::<u8>(), host_ip) {
                    (Ok(net), Ok(bits), Some(ip)) => in_cidr(ip, net, bits),
                    _ => false,
                };
            }
            if let (Ok(ip), Some(h)) = (name.parse::<IpAddr>(), host_ip) {
                return ip == h;
            }
            let name = name.trim_start_matches("*.").trim_start_matches('.');
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            !name.is_empty()
                && (host == name
                    || (host.ends_with(&name) && host[..host.len() - name.len()].ends_with('.')))
        })
}

/// `host:port`, `[v6]:port`, `[v6]`, bare `v6` (no port), `host`.
fn split_port(entry: &str) -> (&str, Option<u16>) {
    if let Some(rest) = entry.strip_prefix('[') {
        if let Some((addr, after)) = rest.split_once(']') {
            return (addr, after.strip_prefix(':').and_then(|p| p.parse().ok()));
        }
    }
    match entry.rsplit_once(':') {
        // One colon: a port. More: a bare IPv6 address (with or without a /prefix).
        Some((name, port)) if !name.contains(':') => match port.parse() {
            Ok(p) => (name, Some(p)),
            Err(_) => (entry, None),
        },
        _ => (entry, None),
    }
}

fn in_cidr(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(ip), IpAddr::V4(net)) if bits <= 32 => {
            let mask = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
            u32::from(ip) & mask == u32::from(net) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(net)) if bits <= 128 => {
            let mask = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
            u128::from(ip) & mask == u128::from(net) & mask
        }
        _ => false,
    }
}

/// The kind of proxy a [`ProxyUrl`] names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProxyKind {
    /// `http://`: an HTTP `CONNECT` tunnel.
    HttpConnect,
    /// `socks5://` or `socks5h://`: SOCKS5, the host name resolved by the proxy.
    Socks5,
}

/// A parsed proxy URL. Its `Debug` hides the password.
#[derive(Clone, PartialEq, Eq)]
pub struct ProxyUrl {
    /// HTTP `CONNECT` or SOCKS5.
    pub kind: ProxyKind,
    /// The proxy's host (no brackets).
    pub host: String,
    /// The proxy's port.
    pub port: u16,
    /// Username and password (percent-decoded), if the URL has userinfo.
    pub credentials: Option<(String, String)>,
}

impl fmt::Debug for ProxyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProxyUrl")
            .field("kind", &self.kind)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("username", &self.credentials.as_ref().map(|c| &c.0))
            .finish_non_exhaustive()
    }
}

impl ProxyUrl {
    /// Parses `http://`, `socks5://` and `socks5h://` URLs; no scheme means `http://`.
    pub fn parse(url: &str) -> Result<Self, ProxyError> {
        let url = url.trim();
        let owned;
        let url = if url.contains("://") {
            url
        } else {
            owned = format!("http://{url}");
            &owned
        };
        let invalid = |reason: &str| ProxyError::InvalidUrl {
            reason: reason.to_string(),
        };
        let u = url::Url::parse(url).map_err(|e| invalid(&e.to_string()))?;
        let (kind, default_port) = match u.scheme() {
            "http" => (ProxyKind::HttpConnect, 80),
            "socks5" | "socks5h" => (ProxyKind::Socks5, 1080),
            other => {
                return Err(ProxyError::UnsupportedScheme {
                    scheme: other.to_string(),
                })
            }
        };
        let host = match u.host() {
            Some(url::Host::Domain(d)) => d.to_string(),
            Some(url::Host::Ipv4(a)) => a.to_string(),
            Some(url::Host::Ipv6(a)) => a.to_string(),
            None => return Err(invalid("no host")),
        };
        if host.is_empty() {
            return Err(invalid("no host"));
        }
        let credentials = if u.username().is_empty() && u.password().is_none() {
            None
        } else {
            Some((
                percent_decode(u.username()),
                percent_decode(u.password().unwrap_or("")),
            ))
        };
        Ok(Self {
            kind,
            host,
            port: u.port().unwrap_or(default_port),
            credentials,
        })
    }

    /// `host:port` (IPv6 in brackets), for messages.
    pub fn authority(&self) -> String {
        authority(&self.host, self.port)
    }
}

fn authority(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Why a connection through a proxy failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyError {
    /// The proxy URL's scheme is not `http`, `socks5` or `socks5h`.
    #[error("unsupported proxy scheme {scheme} (supported: http, socks5, socks5h)")]
    UnsupportedScheme {
        /// The scheme, e.g. `https` or `socks4`.
        scheme: String,
    },
    /// The proxy URL cannot be parsed.
    #[error("invalid proxy url: {reason}")]
    InvalidUrl {
        /// What is wrong (the URL itself is not repeated: it may hold a password).
        reason: String,
    },
    /// The TCP connection to the proxy failed.
    #[error("cannot connect to proxy {proxy}")]
    Unreachable {
        /// The proxy's `host:port`.
        proxy: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The proxy answered `CONNECT` with a status other than 2xx, 401 or 407.
    #[error("proxy refused the tunnel with status {status}")]
    Refused {
        /// The HTTP status, e.g. 403 or 502.
        status: u16,
    },
    /// The proxy answered `CONNECT` with 407 Proxy Authentication Required (or 401, which
    /// tinyproxy sends for wrong credentials: a `CONNECT` never reaches the server).
    #[error("{} ({status})", if *.sent_credentials {
        "proxy rejected the credentials"
    } else {
        "proxy requires authentication: put user:password@ in the proxy url"
    })]
    AuthRequired {
        /// 407 or 401.
        status: u16,
        /// Whether credentials were sent (so they are wrong), or none were.
        sent_credentials: bool,
    },
    /// The proxy closed the connection before the tunnel was established.
    #[error("proxy closed the connection before the tunnel was established")]
    TunnelClosed,
    /// The proxy's answer is not HTTP or SOCKS5 as expected.
    #[error("invalid answer from the proxy: {what}")]
    InvalidResponse {
        /// What is wrong.
        what: &'static str,
    },
    /// The SOCKS5 proxy accepts none of the authentication methods offered.
    #[error("socks proxy accepts none of the offered authentication methods{}",
        if *.offered_credentials { " (no auth, username/password)" } else { " (no auth): it may need user:password@ in the proxy url" })]
    SocksNoAcceptableMethod {
        /// Whether username/password was offered.
        offered_credentials: bool,
    },
    /// The SOCKS5 proxy rejected the username and password (RFC 1929).
    #[error("socks proxy rejected the username or password")]
    SocksAuthFailed,
    /// The SOCKS5 proxy could not connect to the target (RFC 1928 §6 reply code).
    #[error("socks proxy: {0}")]
    SocksReply(SocksReply),
    /// A username, password or host name is longer than SOCKS5's 255 bytes.
    #[error("socks5 limits {what} to 255 bytes")]
    SocksFieldTooLong {
        /// `username`, `password` or `host name`.
        what: &'static str,
    },
}

/// A SOCKS5 reply code other than success (RFC 1928 §6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SocksReply(pub u8);

impl fmt::Display for SocksReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self.0 {
            1 => "general socks server failure",
            2 => "connection not allowed by ruleset",
            3 => "network unreachable",
            4 => "host unreachable",
            5 => "connection refused",
            6 => "ttl expired",
            7 => "command not supported",
            8 => "address type not supported",
            _ => return write!(f, "unassigned reply code {}", self.0),
        };
        write!(f, "{text} (reply {})", self.0)
    }
}

// ---------------------------------------------------------------------------------------
// HTTP CONNECT (RFC 9110 §9.3.6)
// ---------------------------------------------------------------------------------------

/// Longest `CONNECT` response head accepted.
const MAX_RESPONSE_HEAD: usize = 16 * 1024;

/// The `CONNECT` request for `host:port`, with basic auth if `credentials` are given.
pub fn connect_request(host: &str, port: u16, credentials: Option<(&str, &str)>) -> Vec<u8> {
    let target = authority(host, port);
    let mut r = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
    if let Some((user, password)) = credentials {
        let token = base64(format!("{user}:{password}").as_bytes());
        r.push_str(&format!("Proxy-Authorization: Basic {token}\r\n"));
    }
    r.push_str("\r\n");
    r.into_bytes()
}

/// Parses the proxy's answer to `CONNECT`: `Ok(None)` while the head is incomplete,
/// `Ok(Some(n))` once a 2xx head of `n` bytes is complete (the tunnel is open after it),
/// an error for any other status: [`ProxyError::AuthRequired`] for 407 (and 401),
/// [`ProxyError::Refused`] for the rest.
pub fn parse_connect_response(
    buf: &[u8],
    sent_credentials: bool,
) -> Result<Option<usize>, ProxyError> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        if buf.len() > MAX_RESPONSE_HEAD {
            return Err(ProxyError::InvalidResponse {
                what: "response head too long",
            });
        }
        if !buf.is_empty() && !b"HTTP/1.".starts_with(&buf[..buf.len().min(7)]) {
            return Err(ProxyError::InvalidResponse {
                what: "not an http response",
            });
        }
        return Ok(None);
    };
    let status_line = buf[..end].split(|&b| b == b'\n').next().unwrap_or_default();
    let status_line =
        std::str::from_utf8(status_line).map_err(|_| ProxyError::InvalidResponse {
            what: "status line is not utf-8",
        })?;
    let mut parts = status_line.trim_end_matches('\r').splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    let status = parts.next().unwrap_or_default();
    if !(version == "HTTP/1.1" || version == "HTTP/1.0")
        || status.len() != 3
        || !status.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(ProxyError::InvalidResponse {
            what: "invalid status line",
        });
    }
    let status: u16 = status.parse().unwrap_or(0);
    match status {
        200..=299 => Ok(Some(end + 4)),
        401 | 407 => Err(ProxyError::AuthRequired {
            status,
            sent_credentials,
        }),
        _ => Err(ProxyError::Refused { status }),
    }
}

// ---------------------------------------------------------------------------------------
// SOCKS5 (RFC 1928, RFC 1929)
// ---------------------------------------------------------------------------------------

const SOCKS_VERSION: u8 = 5;
const METHOD_NO_AUTH: u8 = 0;
const METHOD_USERNAME: u8 = 2;
const METHOD_NONE_ACCEPTABLE: u8 = 0xff;

/// The client's greeting: the methods it offers (no auth; and username/password if it
/// has credentials).
pub fn socks5_greeting(with_credentials: bool) -> Vec<u8> {
    if with_credentials {
        vec![SOCKS_VERSION, 2, METHOD_NO_AUTH, METHOD_USERNAME]
    } else {
        vec![SOCKS_VERSION, 1, METHOD_NO_AUTH]
    }
}

/// Parses the server's method choice (2 bytes): `Ok(true)` when it wants
/// username/password, `Ok(false)` for no authentication.
pub fn parse_socks5_method(reply: [u8; 2], offered_credentials: bool) -> Result<bool, ProxyError> {
    match reply {
        [SOCKS_VERSION, METHOD_NO_AUTH] => Ok(false),
        [SOCKS_VERSION, METHOD_USERNAME] if offered_credentials => Ok(true),
        [SOCKS_VERSION, METHOD_NONE_ACCEPTABLE] => Err(ProxyError::SocksNoAcceptableMethod {
            offered_credentials,
        }),
        [SOCKS_VERSION, _] => Err(ProxyError::InvalidResponse {
            what: "socks method that was not offered",
        }),
        _ => Err(ProxyError::InvalidResponse {
            what: "not a socks5 server",
        }),
    }
}

/// The username/password request (RFC 1929 §2).
pub fn socks5_auth_request(username: &str, password: &str) -> Result<Vec<u8>, ProxyError> {
    let (u, p) = (username.as_bytes(), password.as_bytes());
    let too_long = |what| ProxyError::SocksFieldTooLong { what };
    let ulen = u8::try_from(u.len()).map_err(|_| too_long("username"))?;
    let plen = u8::try_from(p.len()).map_err(|_| too_long("password"))?;
    // RFC 1929 §2: the subnegotiation's own version is 1.
    let mut r = vec![1, ulen];
    r.extend_from_slice(u);
    r.push(plen);
    r.extend_from_slice(p);
    Ok(r)
}

/// Parses the username/password status (2 bytes, RFC 1929 §2: 0 is success).
pub fn parse_socks5_auth_reply(reply: [u8; 2]) -> Result<(), ProxyError> {
    match reply {
        [1, 0] => Ok(()),
        [1, _] => Err(ProxyError::SocksAuthFailed),
        _ => Err(ProxyError::InvalidResponse {
            what: "invalid socks authentication reply",
        }),
    }
}

/// The CONNECT request for `host:port`: an IP literal as such, anything else as a domain
/// name for the proxy to resolve.
pub fn socks5_connect_request(host: &str, port: u16) -> Result<Vec<u8>, ProxyError> {
    let mut r = vec![SOCKS_VERSION, 1, 0];
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V4(a)) => {
            r.push(1);
            r.extend_from_slice(&a.octets());
        }
        Ok(IpAddr::V6(a)) => {
            r.push(4);
            r.extend_from_slice(&a.octets());
        }
        Err(_) => {
            let len = u8::try_from(host.len())
                .map_err(|_| ProxyError::SocksFieldTooLong { what: "host name" })?;
            r.push(3);
            r.push(len);
            r.extend_from_slice(host.as_bytes());
        }
    }
    r.extend_from_slice(&port.to_be_bytes());
    Ok(r)
}

/// Parses the start of the server's reply to CONNECT: `Ok(None)` until 5 bytes are there,
/// then `Ok(Some(n))`, the reply's whole length (it ends with the bound address, which
/// is of no use here), or the error its reply code means.
pub fn parse_socks5_connect_reply(buf: &[u8]) -> Result<Option<usize>, ProxyError> {
    if buf.len() < 5 {
        return Ok(None);
    }
    if buf[0] != SOCKS_VERSION {
        return Err(ProxyError::InvalidResponse {
            what: "not a socks5 reply",
        });
    }
    if buf[1] != 0 {
        return Err(ProxyError::SocksReply(SocksReply(buf[1])));
    }
    let addr_len = match buf[3] {
        1 => 4,
        4 => 16,
        3 => 1 + usize::from(buf[4]),
        _ => {
            return Err(ProxyError::InvalidResponse {
                what: "unknown socks address type",
            })
        }
    };
    Ok(Some(4 + addr_len + 2))
}

// ---------------------------------------------------------------------------------------
// I/O
// ---------------------------------------------------------------------------------------

/// Connects to `proxy` and asks it for a tunnel to `target`; the stream returned carries
/// the target's bytes. Errors are [`crate::Error::Proxy`], or [`crate::Error::Io`] when
/// the established connection to the proxy fails.
pub async fn open_tunnel(proxy: &ProxyUrl, target: &Target) -> crate::Result<TcpStream> {
    let mut tcp = TcpStream::connect((proxy.host.as_str(), proxy.port))
        .await
        .map_err(|source| ProxyError::Unreachable {
            proxy: proxy.authority(),
            source,
        })?;
    tcp.set_nodelay(true)?;
    let creds = proxy
        .credentials
        .as_ref()
        .map(|(u, p)| (u.as_str(), p.as_str()));
    match proxy.kind {
        ProxyKind::HttpConnect => {
            tcp.write_all(&connect_request(&target.host, target.port, creds))
                .await?;
            let mut buf = Vec::with_capacity(256);
            loop {
                let mut chunk = [0u8; 1024];
                let n = tcp.read(&mut chunk).await?;
                if n == 0 {
                    return Err(ProxyError::TunnelClosed.into());
                }
                buf.extend_from_slice(&chunk[..n]);
                if let Some(head) = parse_connect_response(&buf, creds.is_some())? {
                    // Both ws:// and TLS speak first, so the proxy has nothing to relay yet.
                    if head != buf.len() {
                        return Err(ProxyError::InvalidResponse {
                            what: "data after the tunnel response",
                        }
                        .into());
                    }
                    return Ok(tcp);
                }
            }
        }
        ProxyKind::Socks5 => {
            tcp.write_all(&socks5_greeting(creds.is_some())).await?;
            let mut two = [0u8; 2];
            read_exact(&mut tcp, &mut two).await?;
            if parse_socks5_method(two, creds.is_some())? {
                let (user, password) = creds.unwrap_or_default();
                tcp.write_all(&socks5_auth_request(user, password)?).await?;
                read_exact(&mut tcp, &mut two).await?;
                parse_socks5_auth_reply(two)?;
            }
            tcp.write_all(&socks5_connect_request(&target.host, target.port)?)
                .await?;
            let mut reply = [0u8; 4 + 256 + 2];
            read_exact(&mut tcp, &mut reply[..5]).await?;
            let len = parse_socks5_connect_reply(&reply[..5])?.unwrap_or(5);
            read_exact(&mut tcp, &mut reply[5..len]).await?;
            Ok(tcp)
        }
    }
}

/// `read_exact`, with an early end as [`ProxyError::TunnelClosed`].
async fn read_exact(tcp: &mut TcpStream, buf: &mut [u8]) -> crate::Result<()> {
    match tcp.read_exact(buf).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            Err(ProxyError::TunnelClosed.into())
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        let cases = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (input, expected) in cases {
            assert_eq!(base64(input.as_bytes()), expected, "{input:?}");
        }
    }

    #[test]
    fn proxy_urls_parse() {
        let p = ProxyUrl::parse("http://user:p%40ss@proxy.example:3128").unwrap();
        assert_eq!(p.kind, ProxyKind::HttpConnect);
        assert_eq!((p.host.as_str(), p.port), ("proxy.example", 3128));
        assert_eq!(p.credentials, Some(("user".into(), "p@ss".into())));
        assert!(
            !format!("{p:?}").contains("p@ss"),
            "Debug hides the password"
        );

        let p = ProxyUrl::parse("proxy.example").unwrap();
        assert_eq!((p.kind, p.port), (ProxyKind::HttpConnect, 80));
        assert_eq!(p.credentials, None);

        for url in ["socks5://[::1]", "socks5h://[::1]:1080"] {
            let p = ProxyUrl::parse(url).unwrap();
            assert_eq!(p.kind, ProxyKind::Socks5);
            assert_eq!((p.host.as_str(), p.port), ("::1", 1080));
            assert_eq!(p.authority(), "[::1]:1080");
        }
        assert!(matches!(
            ProxyUrl::parse("https://proxy:443"),
            Err(ProxyError::UnsupportedScheme { scheme }) if scheme == "https"
        ));
        assert!(matches!(
            ProxyUrl::parse("socks4://proxy"),
            Err(ProxyError::UnsupportedScheme { .. })
        ));
        let err = ProxyUrl::parse("http://user:secret@").unwrap_err();
        assert!(matches!(err, ProxyError::InvalidUrl { .. }));
        assert!(!err.to_string().contains("secret"));
    }

    #[test]
    fn percent_decoding_keeps_invalid_escapes() {
        assert_eq!(percent_decode("a%20b%zz%4"), "a b%zz%4");
        assert_eq!(percent_decode("%C3%A9"), "é");
    }

    #[test]
    fn connect_requests() {
        assert_eq!(
            connect_request("example.com", 443, None),
            b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"
        );
        assert_eq!(
            connect_request("::1", 80, Some(("Aladdin", "open sesame"))),
            b"CONNECT [::1]:80 HTTP/1.1\r\nHost: [::1]:80\r\n\
              Proxy-Authorization: Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==\r\n\r\n"
        );
    }

    #[test]
    fn connect_responses() {
        let ok = b"HTTP/1.0 200 Connection established\r\nProxy-agent: x\r\n\r\n";
        for n in 0..ok.len() {
            assert_eq!(parse_connect_response(&ok[..n], false).unwrap(), None);
        }
        assert_eq!(parse_connect_response(ok, false).unwrap(), Some(ok.len()));
        assert!(matches!(
            parse_connect_response(b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n", false),
            Err(ProxyError::AuthRequired {
                status: 407,
                sent_credentials: false
            })
        ));
        assert!(matches!(
            parse_connect_response(b"HTTP/1.1 407 x\r\n\r\n", true),
            Err(ProxyError::AuthRequired {
                status: 407,
                sent_credentials: true
            })
        ));
        assert!(matches!(
            parse_connect_response(
                b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n",
                false
            ),
            Err(ProxyError::Refused { status: 403 })
        ));
        for bad in [
            &b"SSH-2.0-OpenSSH\r\n"[..],
            b"HTTP/1.1 20 OK\r\n\r\n",
            b"HTTP/2 200\r\n\r\n",
        ] {
            assert!(
                matches!(
                    parse_connect_response(bad, false),
                    Err(ProxyError::InvalidResponse { .. })
                ),
                "{bad:?}"
            );
        }
        let endless = vec![b'H'; 1]
            .into_iter()
            .chain(std::iter::repeat_n(b'x', 20_000));
        assert!(parse_connect_response(&endless.collect::<Vec<_>>(), false).is_err());
    }

    #[test]
    fn socks5_messages() {
        assert_eq!(socks5_greeting(false), [5, 1, 0]);
        assert_eq!(socks5_greeting(true), [5, 2, 0, 2]);
        assert!(!parse_socks5_method([5, 0], true).unwrap());
        assert!(parse_socks5_method([5, 2], true).unwrap());
        assert!(parse_socks5_method([5, 2], false).is_err());
        assert!(matches!(
            parse_socks5_method([5, 0xff], false),
            Err(ProxyError::SocksNoAcceptableMethod {
                offered_credentials: false
            })
        ));
        assert!(matches!(
            parse_socks5_method([4, 0], false),
            Err(ProxyError::InvalidResponse { .. })
        ));
        assert_eq!(
            socks5_auth_request("ab", "c").unwrap(),
            [1, 2, b'a', b'b', 1, b'c']
        );
        assert!(socks5_auth_request(&"u".repeat(256), "").is_err());
        assert!(parse_socks5_auth_reply([1, 0]).is_ok());
        assert!(matches!(
            parse_socks5_auth_reply([1, 1]),
            Err(ProxyError::SocksAuthFailed)
        ));
        assert_eq!(
            socks5_connect_request("127.0.0.1", 80).unwrap(),
            [5, 1, 0, 1, 127, 0, 0, 1, 0, 80]
        );
        let v6 = socks5_connect_request("::1", 443).unwrap();
        assert_eq!((v6[3], v6.len(), v6[19]), (4, 22, 1));
        assert_eq!(
            socks5_connect_request("ab.c", 258).unwrap(),
            [5, 1, 0, 3, 4, b'a', b'b', b'.', b'c', 1, 2]
        );
        assert!(socks5_connect_request(&"a".repeat(256), 1).is_err());
    }

    #[test]
    fn socks5_replies() {
        assert_eq!(parse_socks5_connect_reply(&[5, 0, 0, 1]).unwrap(), None);
        assert_eq!(
            parse_socks5_connect_reply(&[5, 0, 0, 1, 127]).unwrap(),
            Some(10)
        );
        assert_eq!(
            parse_socks5_connect_reply(&[5, 0, 0, 4, 0]).unwrap(),
            Some(22)
        );
        assert_eq!(
            parse_socks5_connect_reply(&[5, 0, 0, 3, 9]).unwrap(),
            Some(16)
        );
        let err = parse_socks5_connect_reply(&[5, 5, 0, 1, 0]).unwrap_err();
        assert!(matches!(err, ProxyError::SocksReply(SocksReply(5))));
        assert_eq!(err.to_string(), "socks proxy: connection refused (reply 5)");
        assert_eq!(
            SocksReply(2).to_string(),
            "connection not allowed by ruleset (reply 2)"
        );
        assert_eq!(SocksReply(0x42).to_string(), "unassigned reply code 66");
        assert!(parse_socks5_connect_reply(&[5, 0, 0, 9, 0]).is_err());
    }

    #[test]
    fn no_proxy_rules() {
        let m = no_proxy_matches;
        assert!(m("*", "anything", 1));
        assert!(m("example.com", "example.com", 80));
        assert!(m("example.com", "ws.example.com", 80));
        assert!(m(".example.com", "example.com", 80));
        assert!(m("*.example.com", "a.b.example.com", 80));
        assert!(m("EXAMPLE.com.", "Ws.Example.COM", 80));
        assert!(!m("example.com", "badexample.com", 80));
        assert!(!m("ws.example.com", "example.com", 80));
        assert!(m("other, example.com ,x", "example.com", 80));
        assert!(m("example.com:8080", "example.com", 8080));
        assert!(!m("example.com:8080", "example.com", 80));
        assert!(m("127.0.0.1", "127.0.0.1", 9));
        assert!(!m("127.0.0.1", "127.0.0.2", 9));
        assert!(!m("localhost", "127.0.0.1", 9), "names are not resolved");
        assert!(m("10.0.0.0/8", "10.1.2.3", 9));
        assert!(!m("10.0.0.0/8", "11.0.0.1", 9));
        assert!(m("0.0.0.0/0", "1.2.3.4", 9));
        assert!(m("::1", "::1", 9));
        assert!(m("[::1]", "::1", 9));
        assert!(m("[::1]:9", "::1", 9));
        assert!(!m("[::1]:9", "::1", 10));
        assert!(m("fd00::/8", "fd12::1", 9));
        assert!(!m("fd00::/8", "fe80::1", 9));
        assert!(!m("10.0.0.0/8", "example.com", 9));
        assert!(!m("", "example.com", 9));
        assert!(!m(".", "example.com", 9));
    }

    #[test]
    fn rules_from_variables() {
        let vars = [
            ("HTTP_PROXY", "http://upper:1"),
            ("http_proxy", "http://lower:1"),
            ("HTTPS_PROXY", ""),
            ("ALL_PROXY", "socks5h://all:1080"),
            ("NO_PROXY", "internal.example"),
        ];
        let rules = ProxyRules::from_lookup(|name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.to_string())
        });
        assert_eq!(rules.http.as_deref(), Some("http://lower:1"));
        assert_eq!(rules.https, None, "empty is unset");
        assert_eq!(
            rules.proxy_for("a.example", 80, false),
            Some("http://lower:1")
        );
        assert_eq!(
            rules.proxy_for("a.example", 443, true),
            Some("socks5h://all:1080")
        );
        assert_eq!(rules.proxy_for("ws.internal.example", 443, true), None);
        assert_eq!(
            ProxyRules::default().proxy_for("a.example", 80, false),
            None
        );

        let target = Target::parse("wss://a.example/").unwrap();
        let setting = ProxySetting::Rules(rules);
        let p = setting.proxy_for(&target).unwrap().unwrap();
        assert_eq!((p.kind, p.host.as_str()), (ProxyKind::Socks5, "all"));
        assert_eq!(ProxySetting::None.proxy_for(&target).unwrap(), None);
        let explicit = ProxySetting::Url("http://p:3128".into());
        assert_eq!(explicit.proxy_for(&target).unwrap().unwrap().port, 3128);
    }
}
