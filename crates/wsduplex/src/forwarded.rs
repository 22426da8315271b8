//! The client's address behind a reverse proxy: `Forwarded` (RFC 7239) and
//! `X-Forwarded-For`, believed only when the TCP peer is a proxy the server trusts.
//!
//! ```text
//!  client 203.0.113.7 ─▶ nginx 10.0.0.2 ─▶ server:  peer 10.0.0.2 (trusted)
//!                                                  Forwarded: for=203.0.113.7
//!                                                  ─▶ client_addr = 203.0.113.7
//! ```
//!
//! Rules ([`client_addr`]):
//! - A peer outside the trusted ranges is the client, whatever its headers say: anyone can
//!   send `X-Forwarded-For`.
//! - From a trusted peer, the `for=` chain of every `Forwarded` header is read if there is
//!   one, else the `X-Forwarded-For` chain; the answer is the right-most entry that is not
//!   itself a trusted proxy. Entries to its left were written by the client or by proxies
//!   nobody vouches for, so they are ignored: a client that sends
//!   `X-Forwarded-For: 1.2.3.4` through nginx's `$proxy_add_x_forwarded_for` gets
//!   `1.2.3.4, <its real address>`, and the real address wins.
//! - An entry that is not an address (`unknown`, an obfuscated `_name`) stops the walk: the
//!   answer is the trusted hop that reported it.
//! - `Forwarded` wins over `X-Forwarded-For` when both are present, so a proxy that only
//!   appends `X-Forwarded-For` must set or clear `Forwarded` (the nginx configuration in
//!   docs/deployment.md sets it).
//!
//! ```
//! use wsduplex::forwarded::{client_addr, Cidr};
//!
//! let trusted: Vec<Cidr> = vec!["127.0.0.1/32".parse().unwrap(), "10.0.0.0/8".parse().unwrap()];
//! let peer = "10.0.0.2".parse().unwrap();
//! let headers = [("X-Forwarded-For", &b"1.2.3.4, 203.0.113.7, 10.0.0.9"[..])];
//! assert_eq!(client_addr(peer, headers, &trusted), "203.0.113.7".parse::<std::net::IpAddr>().unwrap());
//! ```

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// An IP range, `10.0.0.0/8` or `fd00::/8`; a bare address is a range of one. The trusted
/// proxies here, and the ranges of a `no_proxy` list in [`crate::proxy`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

/// A string that is not an address or a range.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid ip range {0:?}: expected an address or ADDRESS/PREFIX")]
pub struct InvalidCidr(pub String);

impl FromStr for Cidr {
    type Err = InvalidCidr;

    fn from_str(s: &str) -> Result<Self, InvalidCidr> {
        let invalid = || InvalidCidr(s.to_string());
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p.parse::<u8>().map_err(|_| invalid())?)),
            None => (s, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| invalid())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        if prefix > max {
            return Err(invalid());
        }
        Ok(Self { addr, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl Cidr {
    /// Whether `ip` is in the range. An IPv4-mapped IPv6 address (`::ffff:10.0.0.1`, what a
    /// dual-stack listener reports) counts as its IPv4 address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.contains_exact(canonical(ip))
    }

    /// Whether `ip` is in the range, taken as written: an IPv4-mapped IPv6 address is an
    /// IPv6 address, outside every IPv4 range. `no_proxy` matching needs this: it compares
    /// the host of a URL, not the address of a socket.
    pub(crate) fn contains_exact(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(ip) & mask == u32::from(net) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(ip) & mask == u128::from(net) & mask
            }
            _ => false,
        }
    }
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn is_trusted(ip: IpAddr, trusted: &[Cidr]) -> bool {
    trusted.iter().any(|c| c.contains(ip))
}

/// The client's address: `peer` itself unless it is in `trusted`, else what the forwarding
/// headers among `headers` say, by the rules in the [module docs](self). Header names are
/// matched case-insensitively; pass a request's headers, e.g. from
/// [`Request::headers`](proto::handshake::server::Request::headers).
pub fn client_addr<'a>(
    peer: IpAddr,
    headers: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    trusted: &[Cidr],
) -> IpAddr {
    let peer = canonical(peer);
    if !is_trusted(peer, trusted) {
        return peer;
    }
    let mut forwarded = Vec::new();
    let mut x_forwarded_for = Vec::new();
    for (name, value) in headers {
        let Ok(value) = std::str::from_utf8(value) else {
            continue;
        };
        if name.eq_ignore_ascii_case("forwarded") {
            forwarded.extend(forwarded_for(value));
        } else if name.eq_ignore_ascii_case("x-forwarded-for") {
            x_forwarded_for.extend(value.split(',').map(str::trim).filter(|v| !v.is_empty()));
        }
    }
    let chain = if forwarded.is_empty() {
        x_forwarded_for
    } else {
        forwarded
    };
    let mut addr = peer;
    for entry in chain.iter().rev() {
        match parse_node(entry) {
            Some(ip) if is_trusted(ip, trusted) => addr = ip,
            Some(ip) => return ip,
            None => return addr,
        }
    }
    addr
}

/// The `for=` values of one `Forwarded` header, in order (RFC 7239 §4: elements separated
/// by commas, pairs by semicolons, values tokens or quoted strings).
fn forwarded_for(value: &str) -> Vec<&str> {
    let mut out = Vec::new();
    for element in split_outside_quotes(value, ',') {
        for pair in split_outside_quotes(element, ';') {
            if let Some((k, v)) = pair.split_once('=') {
                if k.trim().eq_ignore_ascii_case("for") {
                    out.push(v.trim());
                }
            }
        }
    }
    out
}

fn split_outside_quotes(s: &str, sep: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted) = (0, false);
    for (i, c) in s.char_indices() {
        match c {
            '"' => quoted = !quoted,
            c if c == sep && !quoted => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

/// A node: `192.0.2.1`, `192.0.2.1:4711`, `"[2001:db8::1]:4711"`, `[::1]`, a bare IPv6
/// address (X-Forwarded-For); `None` for `unknown`, `_obfuscated` and garbage.
fn parse_node(node: &str) -> Option<IpAddr> {
    let node = node.trim().trim_matches('"');
    if let Some(rest) = node.strip_prefix('[') {
        return rest.split_once(']')?.0.parse().ok().map(canonical);
    }
    if let Ok(ip) = node.parse() {
        return Some(canonical(ip));
    }
    // v4 with a port.
    let (host, port) = node.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    host.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn cidrs(list: &[&str]) -> Vec<Cidr> {
        list.iter().map(|c| c.parse().unwrap()).collect()
    }

    #[test]
    fn ranges() {
        let c: Cidr = "10.0.0.0/8".parse().unwrap();
        assert!(c.contains(ip("10.255.0.1")));
        assert!(!c.contains(ip("11.0.0.1")));
        assert!(c.contains(ip("::ffff:10.1.2.3")), "v4-mapped");
        assert!(!c.contains(ip("::1")));
        let one: Cidr = "127.0.0.1".parse().unwrap();
        assert_eq!(one.to_string(), "127.0.0.1/32");
        assert!(!one.contains(ip("127.0.0.2")));
        let v6: Cidr = "fd00::/8".parse().unwrap();
        assert!(v6.contains(ip("fd12:3456::1")));
        assert!(!v6.contains(ip("fe80::1")));
        assert!("0.0.0.0/0".parse::<Cidr>().unwrap().contains(ip("8.8.8.8")));
        assert!("::/0".parse::<Cidr>().unwrap().contains(ip("2001:db8::1")));
        // A v4-mapped address is its v4 address for `contains`, a v6 one for
        // `contains_exact`.
        assert!(!c.contains_exact(ip("::ffff:10.1.2.3")));
        assert!(c.contains_exact(ip("10.1.2.3")));
        let mapped: Cidr = "::ffff:0:0/96".parse().unwrap();
        assert!(mapped.contains_exact(ip("::ffff:10.1.2.3")));
        assert!(!mapped.contains(ip("::ffff:10.1.2.3")));
        for bad in [
            "10.0.0.0/33",
            "::/129",
            "10.0.0/8",
            "localhost",
            "10.0.0.0/x",
            "",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn untrusted_peers_are_the_client_whatever_they_claim() {
        let trusted = cidrs(&["10.0.0.0/8"]);
        let spoof: [(&str, &[u8]); 2] = [
            ("X-Forwarded-For", b"1.2.3.4"),
            ("Forwarded", b"for=5.6.7.8"),
        ];
        assert_eq!(
            client_addr(ip("203.0.113.7"), spoof, &trusted),
            ip("203.0.113.7")
        );
        assert_eq!(
            client_addr(ip("203.0.113.7"), spoof, &[]),
            ip("203.0.113.7")
        );
    }

    #[test]
    fn x_forwarded_for_right_most_untrusted() {
        let trusted = cidrs(&["10.0.0.0/8", "127.0.0.1"]);
        let peer = ip("127.0.0.1");
        let xff = |v: &'static str| [("x-forwarded-for", v.as_bytes())];
        assert_eq!(
            client_addr(peer, xff("203.0.113.7"), &trusted),
            ip("203.0.113.7")
        );
        // The client's own "1.2.3.4" is to the left of what nginx appended.
        assert_eq!(
            client_addr(peer, xff("1.2.3.4, 203.0.113.7"), &trusted),
            ip("203.0.113.7")
        );
        // Two proxies deep: the inner proxy's entry is trusted and skipped.
        assert_eq!(
            client_addr(peer, xff("1.2.3.4,203.0.113.7, 10.0.0.9"), &trusted),
            ip("203.0.113.7")
        );
        // All trusted: the left-most.
        assert_eq!(
            client_addr(peer, xff("10.0.0.5, 10.0.0.9"), &trusted),
            ip("10.0.0.5")
        );
        // No header: the peer.
        assert_eq!(client_addr(peer, [], &trusted), peer);
        // Several headers form one list, in order.
        let two: [(&str, &[u8]); 2] = [
            ("X-Forwarded-For", b"1.2.3.4"),
            ("X-Forwarded-For", b"198.51.100.1, 10.0.0.1"),
        ];
        assert_eq!(client_addr(peer, two, &trusted), ip("198.51.100.1"));
        // IPv6, bracketed or not, and v4 with a port.
        assert_eq!(
            client_addr(peer, xff("2001:db8::1"), &trusted),
            ip("2001:db8::1")
        );
        assert_eq!(
            client_addr(peer, xff("[2001:db8::1]:443"), &trusted),
            ip("2001:db8::1")
        );
        assert_eq!(
            client_addr(peer, xff("192.0.2.1:5000"), &trusted),
            ip("192.0.2.1")
        );
        // Garbage stops at the hop that reported it.
        assert_eq!(client_addr(peer, xff("1.2.3.4, unknown"), &trusted), peer);
        assert_eq!(
            client_addr(peer, xff("1.2.3.4, nonsense, 10.0.0.3"), &trusted),
            ip("10.0.0.3")
        );
    }

    #[test]
    fn forwarded_header() {
        let trusted = cidrs(&["127.0.0.0/8", "::1"]);
        let fwd = |v: &'static str| [("Forwarded", v.as_bytes())];
        let peer = ip("::1");
        assert_eq!(
            client_addr(
                peer,
                fwd("for=192.0.2.60;proto=http;by=203.0.113.43"),
                &trusted
            ),
            ip("192.0.2.60")
        );
        assert_eq!(
            client_addr(peer, fwd("for=\"[2001:db8:cafe::17]:4711\""), &trusted),
            ip("2001:db8:cafe::17")
        );
        assert_eq!(
            client_addr(
                peer,
                fwd("For=\"1.2.3.4\", for=198.51.100.17;proto=https"),
                &trusted
            ),
            ip("198.51.100.17")
        );
        assert_eq!(client_addr(peer, fwd("for=unknown"), &trusted), peer);
        assert_eq!(
            client_addr(peer, fwd("for=_hidden, for=127.0.0.2"), &trusted),
            ip("127.0.0.2")
        );
        // A quoted comma or semicolon does not split.
        assert_eq!(
            client_addr(peer, fwd("host=\"a;b,c\";for=192.0.2.9"), &trusted),
            ip("192.0.2.9")
        );
        // Forwarded wins over X-Forwarded-For.
        let both: [(&str, &[u8]); 2] = [
            ("X-Forwarded-For", b"1.2.3.4"),
            ("Forwarded", b"for=192.0.2.60"),
        ];
        assert_eq!(client_addr(peer, both, &trusted), ip("192.0.2.60"));
        // A v4-mapped peer is matched as v4.
        assert_eq!(
            client_addr(ip("::ffff:127.0.0.1"), fwd("for=192.0.2.1"), &trusted),
            ip("192.0.2.1")
        );
    }
}
