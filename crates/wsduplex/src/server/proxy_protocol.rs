//! The PROXY protocol (HAProxy's, versions 1 and 2): the header a TCP load balancer (AWS
//! NLB and classic ELB TCP listeners, HAProxy `send-proxy`/`send-proxy-v2`, nginx
//! `stream { proxy_protocol on; }`) puts before the client's first byte, naming the
//! client's address. Without it every client behind such a balancer has the balancer's
//! address, and the per-client limit counts them all as one.
//!
//! ```text
//!  balancer ─▶ "PROXY TCP4 203.0.113.7 10.0.0.1 51234 443\r\n" | client's bytes...
//!              └ v1: one text line, at most 107 bytes
//!          or  \r\n\r\n\0\r\nQUIT\n | 0x21 | 0x11 | len | addresses | TLVs | client's bytes...
//!              └ v2: a 12-byte signature, version and command, family, length (≤ 65,535)
//! ```
//!
//! [`parse`] is pure (bytes in, the header and its length out); [`read_header`] reads one
//! from a [`TcpStream`] without taking a byte past it (it peeks first), so what follows
//! is read as if the header had never been there. Only sources configured to send one
//! may: [`ServerConfig::proxy_protocol`](super::ServerConfig::proxy_protocol).

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;
use tokio::net::TcpStream;

/// The v2 signature, the first 12 bytes of a v2 header.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// The longest v1 header (the specification's bound, CRLF included).
pub const V1_MAX: usize = 107;

/// The longest v2 header this server reads: addresses and the TLVs balancers add (AWS's
/// VPC endpoint id, HAProxy's unique id and TLS details) fit many times over; a longer one
/// is refused rather than buffered.
pub const V2_MAX: usize = 16 + 2048;

/// What a header says about the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyHeader {
    /// A proxied connection: the client's address (`source`) and the address it reached.
    Proxied {
        /// The client.
        source: SocketAddr,
        /// The address the client connected to (on the balancer).
        destination: SocketAddr,
    },
    /// The balancer speaking for itself (v2 `LOCAL`, a health check), or a connection of a
    /// family the header does not describe (v1 `UNKNOWN`, v2 `UNSPEC` or Unix sockets):
    /// the connection's own address stands.
    Local,
}

impl ProxyHeader {
    /// The client's address, if the header names one.
    pub fn source(&self) -> Option<SocketAddr> {
        match self {
            Self::Proxied { source, .. } => Some(*source),
            Self::Local => None,
        }
    }
}

/// Why a connection's first bytes are not a PROXY protocol header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyProtocolError {
    /// Neither signature: the source was expected to send a header and did not.
    #[error("no PROXY protocol header")]
    Missing,
    /// A v1 line that breaks the grammar (or longer than 107 bytes).
    #[error("malformed PROXY protocol v1 header: {0}")]
    MalformedV1(&'static str),
    /// A v2 header with an unknown version or command, a short address block, or too long.
    #[error("malformed PROXY protocol v2 header: {0}")]
    MalformedV2(&'static str),
    /// The connection ended (or the timeout passed) before the header was whole.
    #[error("truncated PROXY protocol header")]
    Truncated,
}

/// Reads a header from the start of `buf`: `Ok(Some((header, length)))`, `Ok(None)` when
/// `buf` may be the start of a header and more bytes are needed, or the reason it is not
/// one.
pub fn parse(buf: &[u8]) -> Result<Option<(ProxyHeader, usize)>, ProxyProtocolError> {
    if buf.starts_with(V1) {
        return parse_v1(buf);
    }
    if buf.starts_with(&V2_SIGNATURE) {
        return parse_v2(buf);
    }
    let may_become = |sig: &[u8]| buf.len() < sig.len() && sig.starts_with(buf);
    match may_become(V1) || may_become(&V2_SIGNATURE) {
        true => Ok(None),
        false => Err(ProxyProtocolError::Missing),
    }
}

/// The v1 signature.
const V1: &[u8] = b"PROXY ";

/// Whether `buf` starts like a header (either signature, or as much of one as is there):
/// for sources that must not send one.
pub fn looks_like_header(buf: &[u8]) -> bool {
    !buf.is_empty() && !matches!(parse(buf), Err(ProxyProtocolError::Missing))
}

fn parse_v1(buf: &[u8]) -> Result<Option<(ProxyHeader, usize)>, ProxyProtocolError> {
    use ProxyProtocolError::MalformedV1 as Bad;
    let window = &buf[..buf.len().min(V1_MAX)];
    let Some(end) = window.windows(2).position(|w| w == b"\r\n") else {
        return match buf.len() >= V1_MAX {
            true => Err(Bad("no CRLF within 107 bytes")),
            false => Ok(None),
        };
    };
    let line = std::str::from_utf8(&buf[..end]).map_err(|_| Bad("not ASCII"))?;
    let mut fields = line.split(' ');
    let _proxy = fields.next();
    let header = match fields.next() {
        Some("UNKNOWN") => ProxyHeader::Local,
        Some(family @ ("TCP4" | "TCP6")) => {
            let v6 = family == "TCP6";
            let mut ip = || -> Result<IpAddr, ProxyProtocolError> {
                let text = fields.next().ok_or(Bad("missing address"))?;
                let ip: IpAddr = text.parse().map_err(|_| Bad("bad address"))?;
                match ip.is_ipv6() == v6 {
                    true => Ok(ip),
                    false => Err(Bad("address of the other family")),
                }
            };
            let (src, dst) = (ip()?, ip()?);
            let mut port = || -> Result<u16, ProxyProtocolError> {
                let text = fields.next().ok_or(Bad("missing port"))?;
                // Decimal without a sign or leading zeros, as the specification writes it.
                let canonical = !text.is_empty()
                    && text.bytes().all(|b| b.is_ascii_digit())
                    && (text == "0" || !text.starts_with('0'));
                match canonical {
                    true => text.parse().map_err(|_| Bad("port out of range")),
                    false => Err(Bad("bad port")),
                }
            };
            let (sport, dport) = (port()?, port()?);
            if fields.next().is_some() {
                return Err(Bad("trailing fields"));
            }
            ProxyHeader::Proxied {
                source: SocketAddr::new(src, sport),
                destination: SocketAddr::new(dst, dport),
            }
        }
        _ => return Err(Bad("unknown protocol family")),
    };
    Ok(Some((header, end + 2)))
}

fn parse_v2(buf: &[u8]) -> Result<Option<(ProxyHeader, usize)>, ProxyProtocolError> {
    use ProxyProtocolError::MalformedV2 as Bad;
    if buf.len() < 16 {
        return Ok(None);
    }
    let (version, command) = (buf[12] >> 4, buf[12] & 0x0f);
    if version != 2 {
        return Err(Bad("version is not 2"));
    }
    let len = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    if 16 + len > V2_MAX {
        return Err(Bad("longer than this server reads"));
    }
    if buf.len() < 16 + len {
        return Ok(None);
    }
    let body = &buf[16..16 + len];
    let header = match command {
        // LOCAL: the addresses, if any, are to be ignored.
        0x0 => ProxyHeader::Local,
        0x1 => {
            let (family, transport) = (buf[13] >> 4, buf[13] & 0x0f);
            // STREAM (TCP) over IPv4 or IPv6; any other pair is a connection the header
            // does not describe for us.
            match (family, transport) {
                (0x1, 0x1) => {
                    let a: &[u8; 12] = body
                        .get(..12)
                        .and_then(|a| a.try_into().ok())
                        .ok_or(Bad("short IPv4 block"))?;
                    let ip =
                        |o: usize| IpAddr::V4(Ipv4Addr::new(a[o], a[o + 1], a[o + 2], a[o + 3]));
                    let port = |o: usize| u16::from_be_bytes([a[o], a[o + 1]]);
                    ProxyHeader::Proxied {
                        source: SocketAddr::new(ip(0), port(8)),
                        destination: SocketAddr::new(ip(4), port(10)),
                    }
                }
                (0x2, 0x1) => {
                    let a: &[u8; 36] = body
                        .get(..36)
                        .and_then(|a| a.try_into().ok())
                        .ok_or(Bad("short IPv6 block"))?;
                    let ip = |o: usize| {
                        let octets: [u8; 16] = a[o..o + 16].try_into().unwrap_or_default();
                        IpAddr::V6(Ipv6Addr::from(octets))
                    };
                    let port = |o: usize| u16::from_be_bytes([a[o], a[o + 1]]);
                    ProxyHeader::Proxied {
                        source: SocketAddr::new(ip(0), port(32)),
                        destination: SocketAddr::new(ip(16), port(34)),
                    }
                }
                _ => ProxyHeader::Local,
            }
        }
        _ => return Err(Bad("unknown command")),
    };
    Ok(Some((header, 16 + len)))
}

/// Reads the header at the start of `tcp` within `timeout`, consuming exactly its bytes:
/// what follows (the client's request, a TLS hello) stays in the socket for the next
/// reader. Each step peeks, then takes only what belongs to the header, so nothing is
/// read twice and a slow sender cannot make this spin.
pub async fn read_header(
    tcp: &TcpStream,
    timeout: Duration,
) -> Result<ProxyHeader, ProxyProtocolError> {
    tokio::time::timeout(timeout, read_header_inner(tcp))
        .await
        .unwrap_or(Err(ProxyProtocolError::Truncated))
}

async fn read_header_inner(tcp: &TcpStream) -> Result<ProxyHeader, ProxyProtocolError> {
    let mut taken: Vec<u8> = Vec::new();
    let mut peeked = [0u8; 256];
    loop {
        let n = tcp
            .peek(&mut peeked)
            .await
            .map_err(|_| ProxyProtocolError::Truncated)?;
        if n == 0 {
            return Err(ProxyProtocolError::Truncated);
        }
        let mut seen = taken.clone();
        seen.extend_from_slice(&peeked[..n]);
        // Every byte peeked belongs to the header until it is whole: take it, then the
        // rest of the header only.
        let want = match parse(&seen)? {
            Some((header, len)) => {
                consume(tcp, len - taken.len()).await?;
                return Ok(header);
            }
            None => n,
        };
        consume(tcp, want).await?;
        taken.extend_from_slice(&peeked[..want]);
    }
}

/// Reads and drops exactly `n` bytes already known to be in the socket.
async fn consume(tcp: &TcpStream, mut n: usize) -> Result<(), ProxyProtocolError> {
    let mut sink = [0u8; 256];
    while n > 0 {
        tcp.readable()
            .await
            .map_err(|_| ProxyProtocolError::Truncated)?;
        match tcp.try_read(&mut sink[..n.min(256)]) {
            Ok(0) => return Err(ProxyProtocolError::Truncated),
            Ok(k) => n -= k,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(_) => return Err(ProxyProtocolError::Truncated),
        }
    }
    Ok(())
}

/// The connection's first bytes, without taking them, within `timeout`: for a source not
/// allowed to send a header, to refuse one that does. Empty if nothing came in time.
pub async fn peek_start(tcp: &TcpStream, timeout: Duration) -> Vec<u8> {
    let mut buf = [0u8; 16];
    match tokio::time::timeout(timeout, tcp.peek(&mut buf)).await {
        Ok(Ok(n)) => buf[..n].to_vec(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2(command: u8, family: u8, body: &[u8]) -> Vec<u8> {
        let mut out = V2_SIGNATURE.to_vec();
        out.push(0x20 | command);
        out.push(family);
        out.extend_from_slice(&(body.len() as u16).to_be_bytes());
        out.extend_from_slice(body);
        out
    }

    #[test]
    fn v1_tcp4_and_tcp6_and_unknown() {
        let line = b"PROXY TCP4 203.0.113.7 10.0.0.1 51234 443\r\nGET / HTTP/1.1\r\n";
        let (header, n) = parse(line).unwrap().unwrap();
        assert_eq!(n, 43);
        assert_eq!(header.source(), Some("203.0.113.7:51234".parse().unwrap()));
        let line = b"PROXY TCP6 2001:db8::1 2001:db8::2 1 65535\r\n";
        let (header, _) = parse(line).unwrap().unwrap();
        assert_eq!(header.source(), Some("[2001:db8::1]:1".parse().unwrap()));
        let (header, n) = parse(b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\nrest")
            .unwrap()
            .unwrap();
        assert_eq!((header, n), (ProxyHeader::Local, 35));
    }

    #[test]
    fn v1_bad_lines_are_refused() {
        for line in [
            &b"PROXY TCP4 203.0.113.7 10.0.0.1 51234\r\n"[..],
            b"PROXY TCP4 2001:db8::1 10.0.0.1 1 2\r\n",
            b"PROXY TCP5 1.2.3.4 1.2.3.4 1 2\r\n",
            b"PROXY TCP4 1.2.3.4 1.2.3.4 1 65536\r\n",
            b"PROXY TCP4 1.2.3.4 1.2.3.4 01 2\r\n",
            b"PROXY TCP4 1.2.3.4 1.2.3.4 +1 2\r\n",
            b"PROXY TCP4 1.2.3.4 1.2.3.4 1 2 3\r\n",
            b"PROXY TCP4  1.2.3.4 1.2.3.4 1 2\r\n",
        ] {
            let r = parse(line);
            assert!(
                matches!(r, Err(ProxyProtocolError::MalformedV1(_))),
                "{r:?} for {line:?}"
            );
        }
        let long = [b"PROXY ".as_slice(), &[b'x'; 120]].concat();
        assert!(matches!(
            parse(&long),
            Err(ProxyProtocolError::MalformedV1(_))
        ));
    }

    #[test]
    fn v2_ipv4_ipv6_local_and_tlvs() {
        let mut body = vec![192, 0, 2, 9, 10, 0, 0, 1, 0x1f, 0x90, 0x01, 0xbb];
        body.extend_from_slice(&[0x04, 0x00, 0x02, b'i', b'd']); // a TLV, skipped
        let header = v2(0x1, 0x11, &body);
        let (h, n) = parse(&[header.as_slice(), b"GET"].concat())
            .unwrap()
            .unwrap();
        assert_eq!(n, header.len());
        assert_eq!(h.source(), Some("192.0.2.9:8080".parse().unwrap()));
        let mut body = [0u8; 36];
        body[15] = 1;
        body[32..34].copy_from_slice(&443u16.to_be_bytes());
        let (h, _) = parse(&v2(0x1, 0x21, &body)).unwrap().unwrap();
        assert_eq!(h.source(), Some("[::1]:443".parse().unwrap()));
        assert_eq!(
            parse(&v2(0x0, 0x00, &[])).unwrap().unwrap().0,
            ProxyHeader::Local
        );
        // A Unix socket or UDP: not ours to describe.
        assert_eq!(
            parse(&v2(0x1, 0x12, &[0; 12])).unwrap().unwrap().0,
            ProxyHeader::Local
        );
    }

    #[test]
    fn v2_bad_headers_are_refused() {
        let short = v2(0x1, 0x11, &[1, 2, 3]);
        assert!(matches!(
            parse(&short),
            Err(ProxyProtocolError::MalformedV2(_))
        ));
        let mut version = v2(0x1, 0x11, &[0; 12]);
        version[12] = 0x11;
        assert!(matches!(
            parse(&version),
            Err(ProxyProtocolError::MalformedV2(_))
        ));
        let command = v2(0x2, 0x11, &[0; 12]);
        assert!(matches!(
            parse(&command),
            Err(ProxyProtocolError::MalformedV2(_))
        ));
        let mut huge = V2_SIGNATURE.to_vec();
        huge.extend_from_slice(&[0x21, 0x11, 0xff, 0xff]);
        assert!(matches!(
            parse(&huge),
            Err(ProxyProtocolError::MalformedV2(_))
        ));
    }

    #[test]
    fn partial_headers_ask_for_more_and_others_are_missing() {
        let whole = v2(0x1, 0x11, &[0; 12]);
        for cut in 1..whole.len() {
            assert_eq!(parse(&whole[..cut]), Ok(None), "v2 cut at {cut}");
        }
        let line = b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n";
        for cut in 1..line.len() {
            assert_eq!(parse(&line[..cut]), Ok(None), "v1 cut at {cut}");
        }
        assert_eq!(
            parse(b"GET / HTTP/1.1\r\n"),
            Err(ProxyProtocolError::Missing)
        );
        assert_eq!(parse(b"\x16\x03\x01"), Err(ProxyProtocolError::Missing));
        assert!(looks_like_header(b"PROX"));
        assert!(!looks_like_header(b"GET "));
    }

    #[tokio::test]
    async fn read_header_leaves_what_follows_in_the_socket() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut client = TcpStream::connect(addr).await.unwrap();
        let (mut server, _) = listener.accept().await.unwrap();
        let header = v2(0x1, 0x11, &[198, 51, 100, 1, 127, 0, 0, 1, 0, 80, 0, 81]);
        // In two pieces, the second with the request behind it.
        client.write_all(&header[..5]).await.unwrap();
        let read = tokio::spawn(async move {
            let h = read_header(&server, Duration::from_secs(10)).await;
            let mut rest = [0u8; 3];
            server.read_exact(&mut rest).await.unwrap();
            (h, rest)
        });
        client
            .write_all(&[&header[5..], b"GET"].concat())
            .await
            .unwrap();
        let (h, rest) = read.await.unwrap();
        assert_eq!(
            h.unwrap().source(),
            Some("198.51.100.1:80".parse().unwrap())
        );
        assert_eq!(&rest, b"GET");
    }

    #[tokio::test]
    async fn a_header_cut_short_is_truncated() {
        use tokio::io::AsyncWriteExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        client.write_all(b"PROXY TCP4 1.2.3.4").await.unwrap();
        drop(client);
        let r = read_header(&server, Duration::from_secs(10)).await;
        assert_eq!(r, Err(ProxyProtocolError::Truncated));
    }
}
