//! What `bench transports` counts at the sockets: every subscriber's TCP connections are
//! wrapped in [`Counted`], so what is counted is everything the socket carried: HTTP heads,
//! WebSocket or HTTP/2 framing, the JSON. And the plain HTTP/1.1 exchange of the polls and
//! the publisher: the hub answers each with `Connection: close`, so each is a connection
//! of its own.

use anyhow::{bail, Context as _};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, ReadBuf};
use tokio::net::TcpStream;

/// One client's traffic, over all its connections.
#[derive(Default, Debug)]
pub(super) struct Wire {
    /// Bytes read from the server.
    pub(super) read: AtomicU64,
    /// Bytes written to the server.
    pub(super) written: AtomicU64,
    /// HTTP requests (a WebSocket's opening request is one).
    pub(super) requests: AtomicU64,
}

/// A moment's counts of a [`Wire`].
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub(super) struct Counts {
    pub(super) read: u64,
    pub(super) written: u64,
    pub(super) requests: u64,
}

impl Wire {
    pub(super) fn counts(&self) -> Counts {
        Counts {
            read: self.read.load(Ordering::Relaxed),
            written: self.written.load(Ordering::Relaxed),
            requests: self.requests.load(Ordering::Relaxed),
        }
    }
}

impl std::ops::Add for Counts {
    type Output = Counts;
    fn add(self, o: Counts) -> Counts {
        Counts {
            read: self.read + o.read,
            written: self.written + o.written,
            requests: self.requests + o.requests,
        }
    }
}

impl std::ops::Sub for Counts {
    type Output = Counts;
    fn sub(self, o: Counts) -> Counts {
        Counts {
            read: self.read - o.read,
            written: self.written - o.written,
            requests: self.requests - o.requests,
        }
    }
}

/// A TCP stream that counts the bytes through it into a [`Wire`].
pub(super) struct Counted {
    inner: TcpStream,
    wire: Arc<Wire>,
}

impl Counted {
    pub(super) async fn connect(addr: SocketAddr, wire: &Arc<Wire>) -> anyhow::Result<Self> {
        let inner = TcpStream::connect(addr)
            .await
            .with_context(|| format!("cannot connect to {addr}"))?;
        inner.set_nodelay(true)?;
        Ok(Self {
            inner,
            wire: wire.clone(),
        })
    }
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        self.wire.read.fetch_add(n as u64, Ordering::Relaxed);
        polled
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = polled {
            self.wire.written.fetch_add(n as u64, Ordering::Relaxed);
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = polled {
            self.wire.written.fetch_add(n as u64, Ordering::Relaxed);
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Reads a response head from `io`: the status, and the bytes after the head.
pub(super) async fn read_head<S: AsyncRead + Unpin>(io: &mut S) -> anyhow::Result<(u16, Vec<u8>)> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]);
            let status = head
                .split_ascii_whitespace()
                .nth(1)
                .and_then(|s| s.parse().ok())
                .with_context(|| format!("not an HTTP response: {head:?}"))?;
            return Ok((status, buf[end + 4..].to_vec()));
        }
        if buf.len() > 64 * 1024 {
            bail!("a response head over 64 KiB");
        }
        let n = io.read(&mut chunk).await?;
        if n == 0 {
            bail!("the server closed the connection before answering");
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// One HTTP/1.1 exchange on a connection of its own, as the hub answers plain requests
/// (`Connection: close`): the status and the body, read until the server closes (so the
/// server, not the client, keeps the closed connection's TIME_WAIT).
pub(super) async fn exchange(
    addr: SocketAddr,
    wire: &Arc<Wire>,
    method: &str,
    path: &str,
    headers: &str,
    body: &[u8],
) -> anyhow::Result<(u16, Vec<u8>)> {
    let mut io = Counted::connect(addr, wire).await?;
    let length = if body.is_empty() && method != "POST" {
        String::new()
    } else {
        format!("Content-Length: {}\r\n", body.len())
    };
    let mut request =
        format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{headers}{length}\r\n").into_bytes();
    request.extend_from_slice(body);
    wire.requests.fetch_add(1, Ordering::Relaxed);
    io.write_all(&request).await?;
    let (status, mut rest) = read_head(&mut io).await?;
    io.read_to_end(&mut rest).await?;
    Ok((status, rest))
}
