//! What every mode shares: where to connect, opening a connection, pre-encoded frames.

use anyhow::{bail, Context as _};
use std::net::{IpAddr, SocketAddr, ToSocketAddrs as _};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::TcpSocket;
use wsduplex::client::Target;
use wsduplex::proto::frame::{FrameHeader, OpCode};
use wsduplex::proto::handshake::client::Request;
use wsduplex::proto::mask::apply_mask;
use wsduplex::tls::{rustls, TlsOptions};
use wsduplex::ClientStream;

/// How long a handshake, and each stage of a closing handshake, may take.
const STEP_TIMEOUT: Duration = Duration::from_secs(5);

/// The server under test, resolved once.
#[derive(Clone, Debug)]
pub(crate) struct Endpoint {
    pub(crate) addr: SocketAddr,
    host_header: String,
    path: String,
    /// For `wss://`: the TLS settings, and the host name checked in the certificate.
    tls: Option<(TlsOptions, String)>,
}

/// How a `wss://` server is trusted.
#[derive(clap::Args, Clone, Debug, Default)]
pub(crate) struct Trust {
    /// wss://: also trust the CA certificates in this PEM file (repeatable).
    #[arg(long, value_name = "FILE")]
    cacert: Vec<PathBuf>,
    /// wss://: accept any server certificate (self-signed, expired, for another name).
    #[arg(long, short = 'k')]
    insecure: bool,
}

impl Endpoint {
    pub(crate) fn resolve(url: &str, trust: &Trust) -> anyhow::Result<Self> {
        let target = Target::parse(url)?;
        let addr = (target.host.as_str(), target.port)
            .to_socket_addrs()
            .with_context(|| format!("cannot resolve {}", target.host))?
            .next()
            .with_context(|| format!("{} has no address", target.host))?;
        let tls = match target.tls {
            true => Some((tls_options(trust)?, target.host)),
            false if !trust.cacert.is_empty() || trust.insecure => {
                bail!("{url}: --cacert and --insecure are for wss:// URLs")
            }
            false => None,
        };
        Ok(Self {
            addr,
            host_header: target.host_header,
            path: target.path,
            tls,
        })
    }

    /// Refuses a `wss://` endpoint, for a mode that drives the TCP socket itself.
    pub(crate) fn plain_only(self, mode: &str) -> anyhow::Result<Self> {
        if self.tls.is_some() {
            bail!("bench {mode} speaks plain ws:// only (connect and idle take wss://)");
        }
        Ok(self)
    }

    /// The client TLS settings for `wss://`.
    pub(crate) fn tls_options(&self) -> Option<&TlsOptions> {
        self.tls.as_ref().map(|(options, _)| options)
    }

    /// A request with a fresh key.
    pub(crate) fn request(&self) -> Request {
        Request::new(self.host_header.clone(), self.path.clone())
    }

    /// The URL's path (and query).
    pub(crate) fn path(&self) -> &str {
        &self.path
    }

    /// [`open`] with a fresh request for `path` instead of the URL's.
    pub(crate) async fn open_path(&self, path: String) -> anyhow::Result<(ClientStream, Vec<u8>)> {
        let request = Request::new(self.host_header.clone(), path);
        open(self, None, &request, &request.to_bytes()).await
    }

    /// [`open`] with a fresh request.
    pub(crate) async fn open(
        &self,
        source: Option<IpAddr>,
    ) -> anyhow::Result<(ClientStream, Vec<u8>)> {
        let request = self.request();
        open(self, source, &request, &request.to_bytes()).await
    }
}

/// The client TLS settings of a run: every handshake is a full one (no session is resumed),
/// so each costs the server what a new visitor costs it.
fn tls_options(trust: &Trust) -> anyhow::Result<TlsOptions> {
    let mut options = TlsOptions::default();
    for path in &trust.cacert {
        let pem = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        options.extra_ca_pem.push(pem);
    }
    options.dangerous_accept_invalid_certs = trust.insecure;
    let mut config = rustls::ClientConfig::clone(&*options.to_rustls_config()?);
    config.resumption = rustls::client::Resumption::disabled();
    let mut full = TlsOptions::default();
    full.rustls_config = Some(Arc::new(config));
    Ok(full)
}

/// Connects (from `source` if given), runs the TLS handshake for `wss://`, sends
/// `request_bytes` (the encoding of `request`) and checks the response; returns the stream
/// and the bytes that followed the response head.
pub(crate) async fn open(
    endpoint: &Endpoint,
    source: Option<IpAddr>,
    request: &Request,
    request_bytes: &[u8],
) -> anyhow::Result<(ClientStream, Vec<u8>)> {
    let addr = endpoint.addr;
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(explain_fd_limit)?;
    if let Some(ip) = source {
        socket
            .bind(SocketAddr::new(ip, 0))
            .with_context(|| format!("cannot bind a client socket to {ip}"))?;
    }
    let tcp = tokio::time::timeout(STEP_TIMEOUT, socket.connect(addr))
        .await
        .with_context(|| format!("connecting to {addr} timed out"))?
        .map_err(explain_fd_limit)
        .with_context(|| format!("cannot connect to {addr}"))?;
    tcp.set_nodelay(true)?;
    let handshake = async {
        let mut stream = match &endpoint.tls {
            None => ClientStream::Plain(tcp),
            Some((options, host)) => {
                let tls = wsduplex::tls::connect(tcp, host, options).await?;
                ClientStream::Tls(Box::new(tls))
            }
        };
        stream.write_all(request_bytes).await?;
        let mut buf = Vec::with_capacity(512);
        let mut chunk = [0u8; 1024];
        loop {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                bail!("the server closed the connection during the handshake");
            }
            buf.extend_from_slice(&chunk[..n]);
            if let Some((_, head)) = request.parse_response(&buf)? {
                buf.drain(..head);
                return Ok((stream, buf));
            }
        }
    };
    tokio::time::timeout(STEP_TIMEOUT, handshake)
        .await
        .context("the handshake timed out")?
}

fn explain_fd_limit(e: std::io::Error) -> anyhow::Error {
    // EMFILE / ENFILE: the usual wall when holding many connections.
    if matches!(e.raw_os_error(), Some(23 | 24)) {
        anyhow::Error::new(e).context("out of file descriptors (raise `ulimit -n`)")
    } else {
        e.into()
    }
}

/// A masked client frame, complete.
///
/// RFC 6455 §5.3 asks for a fresh, unpredictable key per frame so that script in a browser
/// cannot choose the bytes an intermediary sees. A load generator sends bytes it chose
/// itself to a server under test, so a fixed key (per connection, or per run) is acceptable
/// here, and it lets every frame be encoded and masked once, before the run.
pub(crate) fn masked_frame(opcode: OpCode, payload: &[u8], key: [u8; 4]) -> Vec<u8> {
    masked_start(opcode, payload.len(), payload, key)
}

/// The start of a masked frame whose payload is `len` bytes long: the header and `part`,
/// the first `part.len()` of them.
pub(crate) fn masked_start(opcode: OpCode, len: usize, part: &[u8], key: [u8; 4]) -> Vec<u8> {
    let header = FrameHeader {
        fin: true,
        rsv1: false,
        rsv2: false,
        rsv3: false,
        opcode,
        mask: Some(key),
        payload_len: len as u64,
    };
    let (head, head_len) = header.encode();
    let mut frame = Vec::with_capacity(head_len + part.len());
    frame.extend_from_slice(&head[..head_len]);
    frame.extend_from_slice(part);
    apply_mask(&mut frame[head_len..], key, 0);
    frame
}

/// A masked `Close` frame with code 1000.
pub(crate) fn close_frame(key: [u8; 4]) -> Vec<u8> {
    masked_frame(OpCode::Close, &1000u16.to_be_bytes(), key)
}

/// A deterministic, well-spread value for connection `id`, message slot `slot`.
pub(crate) fn seed(id: u64, slot: u64) -> u64 {
    // splitmix64 finaliser
    let mut z = id
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(slot.wrapping_mul(0xD1B5_4A32_D192_ED03))
        .wrapping_add(0x2545_F491_4F6C_DD1D);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The mask key of connection `id` (never all zero, so masking is visible on the wire).
pub(crate) fn mask_key(id: u64) -> [u8; 4] {
    ((seed(id, u64::MAX) as u32) | 1).to_be_bytes()
}

/// A payload that differs between connections and message slots, so a server that mixes
/// up or replays messages fails validation. Text payloads are printable ASCII.
pub(crate) fn payload(id: u64, slot: u64, size: usize, binary: bool) -> Vec<u8> {
    let mut x = seed(id, slot) | 1;
    (0..size)
        .map(|_| {
            // xorshift64
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if binary {
                (x >> 24) as u8
            } else {
                b'!' + ((x >> 24) % 94) as u8
            }
        })
        .collect()
}

/// After our close frame: RFC 6455 §7.1.1 has the client wait for the server's close and
/// then for the server to close the TCP connection. `buf` holds bytes already read.
/// Frames before the close are skipped.
pub(crate) async fn finish_close<S>(stream: &mut S, mut buf: Vec<u8>) -> anyhow::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut chunk = [0u8; 4096];
    let mut skip = 0usize;
    let wait_for_close = async {
        loop {
            loop {
                if skip > 0 {
                    let m = skip.min(buf.len());
                    buf.drain(..m);
                    skip -= m;
                    if skip > 0 {
                        break;
                    }
                }
                match FrameHeader::decode(&buf) {
                    Ok(None) => break,
                    Ok(Some((h, n))) => {
                        buf.drain(..n);
                        if h.opcode == OpCode::Close {
                            return Ok(());
                        }
                        skip = usize::try_from(h.payload_len)?;
                    }
                    Err(e) => bail!("bad frame from the server while closing: {e}"),
                }
            }
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                bail!("the server closed the connection without a close frame");
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    };
    tokio::time::timeout(STEP_TIMEOUT, wait_for_close)
        .await
        .context("no close frame from the server")??;
    // The server closes first; if it lingers, dropping the stream closes our side anyway.
    let _ = tokio::time::timeout(STEP_TIMEOUT, async {
        while stream.read(&mut chunk).await? > 0 {}
        Ok::<_, std::io::Error>(())
    })
    .await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_unmask_to_the_payload() {
        for size in [0, 1, 125, 126, 65535, 65536] {
            let p = payload(7, 3, size, false);
            assert!(p.iter().all(|b| b.is_ascii_graphic()));
            let key = mask_key(7);
            let mut frame = masked_frame(OpCode::Text, &p, key);
            let (h, n) = FrameHeader::decode(&frame).unwrap().unwrap();
            assert_eq!(
                (h.opcode, h.mask, h.payload_len),
                (OpCode::Text, Some(key), size as u64)
            );
            apply_mask(&mut frame[n..], key, 0);
            assert_eq!(&frame[n..], &p[..]);
        }
    }

    #[test]
    fn payloads_differ_between_slots_and_connections() {
        assert_ne!(payload(1, 0, 32, true), payload(1, 1, 32, true));
        assert_ne!(payload(1, 0, 32, true), payload(2, 0, 32, true));
        assert_eq!(payload(1, 0, 32, true), payload(1, 0, 32, true));
    }
}
