//! SOCKS5 (RFC 1928) with the username/password method (RFC 1929): each message built and
//! parsed by a pure function, and the exchange over a stream.

use super::ProxyError;
use crate::client::Target;
use std::fmt;
use std::net::IpAddr;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

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

/// Asks the SOCKS5 proxy at the other end of `io` to connect to `target` (authenticating
/// with `credentials` if it asks for them); on success `io` carries the target's bytes.
pub(super) async fn open<S>(
    io: &mut S,
    target: &Target,
    credentials: Option<(&str, &str)>,
) -> crate::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    io.write_all(&socks5_greeting(credentials.is_some()))
        .await?;
    let mut two = [0u8; 2];
    read_exact(io, &mut two).await?;
    if parse_socks5_method(two, credentials.is_some())? {
        let (user, password) = credentials.unwrap_or_default();
        io.write_all(&socks5_auth_request(user, password)?).await?;
        read_exact(io, &mut two).await?;
        parse_socks5_auth_reply(two)?;
    }
    io.write_all(&socks5_connect_request(&target.host, target.port)?)
        .await?;
    let mut reply = [0u8; 4 + 256 + 2];
    read_exact(io, &mut reply[..5]).await?;
    let len = parse_socks5_connect_reply(&reply[..5])?.unwrap_or(5);
    read_exact(io, &mut reply[5..len]).await?;
    Ok(())
}

/// `read_exact`, with an early end as [`ProxyError::TunnelClosed`].
async fn read_exact<S>(io: &mut S, buf: &mut [u8]) -> crate::Result<()>
where
    S: AsyncRead + Unpin,
{
    match io.read_exact(buf).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            Err(ProxyError::TunnelClosed.into())
        }
        Err(e) => Err(e.into()),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

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

    #[tokio::test]
    async fn exchange_over_a_stream() {
        let target = Target::parse("ws://ab.c:258/").unwrap();
        // The proxy's side, scripted: method 2, auth ok, success with a domain-name bound
        // address (its length read from the reply), then the first byte of the tunnel.
        let (mut client, mut proxy) = tokio::io::duplex(64);
        let script = tokio::spawn(async move {
            let mut greeting = [0u8; 4];
            proxy.read_exact(&mut greeting).await.unwrap();
            proxy.write_all(&[5, 2]).await.unwrap();
            let mut auth = [0u8; 6];
            proxy.read_exact(&mut auth).await.unwrap();
            proxy.write_all(&[1, 0]).await.unwrap();
            let mut connect = [0u8; 11];
            proxy.read_exact(&mut connect).await.unwrap();
            proxy
                .write_all(&[5, 0, 0, 3, 4, b'h', b'o', b's', b't', 0, 80, b'!'])
                .await
                .unwrap();
            (greeting, auth, connect)
        });
        open(&mut client, &target, Some(("ab", "c"))).await.unwrap();
        let (greeting, auth, connect) = script.await.unwrap();
        assert_eq!(greeting.to_vec(), socks5_greeting(true));
        assert_eq!(auth.to_vec(), socks5_auth_request("ab", "c").unwrap());
        assert_eq!(
            connect.to_vec(),
            socks5_connect_request("ab.c", 258).unwrap()
        );
        // The reply was read to its end and no further.
        let mut first = [0u8; 1];
        client.read_exact(&mut first).await.unwrap();
        assert_eq!(&first, b"!");

        // The proxy hangs up in the middle of its reply.
        let (mut client, mut proxy) = tokio::io::duplex(64);
        tokio::spawn(async move {
            let mut greeting = [0u8; 3];
            proxy.read_exact(&mut greeting).await.unwrap();
            proxy.write_all(&[5, 0]).await.unwrap();
            let mut connect = [0u8; 11];
            proxy.read_exact(&mut connect).await.unwrap();
            proxy.write_all(&[5, 0, 0, 1, 127]).await.unwrap();
        });
        let err = open(&mut client, &target, None).await.unwrap_err();
        assert!(
            matches!(err, crate::Error::Proxy(ProxyError::TunnelClosed)),
            "{err:?}"
        );
    }
}
