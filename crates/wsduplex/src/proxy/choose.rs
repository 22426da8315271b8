//! Which proxy, if any, a connection goes through: the [`ProxySetting`], the rules in the
//! shape of the environment variables ([`ProxyRules`]), `no_proxy` matching, and the
//! proxy URL that comes out ([`ProxyUrl`]). The rules themselves are in the
//! [module docs](crate::proxy).

use super::{authority, ProxyError};
use crate::client::Target;
use crate::forwarded::Cidr;
use std::fmt;
use std::net::IpAddr;

/// Where [`connect_with`](crate::connect_with) finds its proxy.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProxySetting {
    /// Always connect directly.
    None,
    /// Read `http_proxy`, `https_proxy`, `all_proxy` and `no_proxy` (and their uppercase
    /// forms) at each connect: see the [module docs](crate::proxy).
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

/// Whether `host:port` matches the `no_proxy` list `list` (rules in the
/// [module docs](crate::proxy)). `host` has no brackets.
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
            if name.contains('/') {
                // An IPv4-mapped host is not in an IPv4 range, as the literal match
                // below does not equate them either.
                return match (name.parse::<Cidr>(), host_ip) {
                    (Ok(range), Some(ip)) => range.contains_exact(ip),
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

#[cfg(test)]
mod tests {
    use super::*;

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
        // Hosts are compared as written: a v4-mapped v6 host is a v6 address.
        assert!(!m("10.0.0.0/8", "::ffff:10.1.2.3", 9));
        assert!(m("::ffff:0:0/96", "::ffff:10.1.2.3", 9));
        assert!(!m("10.0.0.0/33", "10.1.2.3", 9));
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
