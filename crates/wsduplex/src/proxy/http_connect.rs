//! HTTP `CONNECT` tunnels (RFC 9110 §9.3.6), with basic auth (RFC 7617): the request and
//! the parse of the answer as pure functions, and the exchange over a stream.

use super::{authority, ProxyError};
use crate::client::Target;
use base64::Engine as _;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Longest `CONNECT` response head accepted.
const MAX_RESPONSE_HEAD: usize = 16 * 1024;

/// The `CONNECT` request for `host:port`, with basic auth if `credentials` are given.
pub fn connect_request(host: &str, port: u16, credentials: Option<(&str, &str)>) -> Vec<u8> {
    let target = authority(host, port);
    let mut r = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
    if let Some((user, password)) = credentials {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
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

/// Asks the proxy at the other end of `io` for a tunnel to `target`; on success `io`
/// carries the target's bytes.
pub(super) async fn open<S>(
    io: &mut S,
    target: &Target,
    credentials: Option<(&str, &str)>,
) -> crate::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    io.write_all(&connect_request(&target.host, target.port, credentials))
        .await?;
    let mut buf = Vec::with_capacity(256);
    loop {
        let mut chunk = [0u8; 1024];
        let n = io.read(&mut chunk).await?;
        if n == 0 {
            return Err(ProxyError::TunnelClosed.into());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(head) = parse_connect_response(&buf, credentials.is_some())? {
            // Both ws:// and TLS speak first, so the proxy has nothing to relay yet.
            if head != buf.len() {
                return Err(ProxyError::InvalidResponse {
                    what: "data after the tunnel response",
                }
                .into());
            }
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    /// The proxy's side of one exchange over an in-memory pipe: reads the request head,
    /// answers `answer` (one byte per write if `trickle`, else in one write), then
    /// closes; returns the request.
    async fn proxy_answering(
        mut io: tokio::io::DuplexStream,
        answer: &'static [u8],
        trickle: bool,
    ) -> Vec<u8> {
        let mut request = Vec::new();
        while !request.ends_with(b"\r\n\r\n") {
            let mut byte = [0u8; 1];
            if io.read(&mut byte).await.unwrap() == 0 {
                break;
            }
            request.push(byte[0]);
        }
        if trickle {
            for b in answer {
                io.write_all(&[*b]).await.unwrap();
            }
        } else {
            io.write_all(answer).await.unwrap();
        }
        request
    }

    #[tokio::test]
    async fn exchange_over_a_stream() {
        let target = Target::parse("wss://example.com:8443/").unwrap();
        let ok = b"HTTP/1.1 200 Connection established\r\n\r\n";
        let (mut client, proxy) = tokio::io::duplex(64);
        let proxy = tokio::spawn(proxy_answering(proxy, ok, true));
        open(&mut client, &target, Some(("u", "p"))).await.unwrap();
        let request = proxy.await.unwrap();
        assert_eq!(
            request,
            connect_request("example.com", 8443, Some(("u", "p")))
        );

        // Bytes after the answer, in the same read: nothing may speak before the client.
        let (mut client, proxy) = tokio::io::duplex(64);
        tokio::spawn(proxy_answering(proxy, b"HTTP/1.1 200 OK\r\n\r\nx", false));
        let err = open(&mut client, &target, None).await.unwrap_err();
        assert!(
            matches!(
                err,
                crate::Error::Proxy(ProxyError::InvalidResponse {
                    what: "data after the tunnel response"
                })
            ),
            "{err:?}"
        );

        // The proxy hangs up halfway through its answer.
        let (mut client, proxy) = tokio::io::duplex(64);
        tokio::spawn(proxy_answering(proxy, b"HTTP/1.1 200 OK\r\n", true));
        let err = open(&mut client, &target, None).await.unwrap_err();
        assert!(
            matches!(err, crate::Error::Proxy(ProxyError::TunnelClosed)),
            "{err:?}"
        );
    }
}
