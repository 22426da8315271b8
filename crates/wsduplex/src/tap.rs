//! A transport tee: every byte the socket reads or writes is also handed to a callback,
//! with who sent it. Wrap a transport in a [`Tap`] before the opening handshake and feed
//! a [`proto::trace::Tracer`] from the callback to see every frame of the connection as it
//! was on the wire (`wsduplex relay --trace` and `wsduplex client -vv` do): the bytes of a
//! `wss://` connection are seen after TLS, the masking and compression as sent.
//!
//! ```no_run
//! use std::sync::{Arc, Mutex};
//! use wsduplex::proto::trace::{TraceEvent, Tracer};
//! use wsduplex::tap::Tap;
//!
//! # async fn run() -> Result<(), wsduplex::Error> {
//! let tracer = Arc::new(Mutex::new(Tracer::new()));
//! let t = tracer.clone();
//! let (mut ws, _) = wsduplex::client::connect_wrapped(
//!     "ws://127.0.0.1:8080/echo",
//!     &Default::default(),
//!     move |io| {
//!         Tap::client(io, move |from, bytes| {
//!             let mut t = t.lock().unwrap();
//!             t.receive(from, bytes);
//!             while let Some(TraceEvent::Frame(f)) = t.poll_event() {
//!                 eprintln!("{f:?}");
//!             }
//!         })
//!     },
//! )
//! .await?;
//! ws.send("hello").await?;
//! # Ok(())
//! # }
//! ```

use proto::trace::Direction;
use std::io::IoSlice;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The callback of a [`Tap`]: who sent the bytes, and the bytes.
pub type OnBytes = Box<dyn FnMut(Direction, &[u8]) + Send>;

/// A transport whose bytes, read and written, are also handed to a callback.
pub struct Tap<S> {
    io: S,
    /// Who sent what this end reads.
    reads: Direction,
    on_bytes: OnBytes,
}

impl<S> std::fmt::Debug for Tap<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tap").field("reads", &self.reads).finish()
    }
}

impl<S> Tap<S> {
    /// A client's transport: what it reads came from the server.
    pub fn client(io: S, on_bytes: impl FnMut(Direction, &[u8]) + Send + 'static) -> Self {
        Self {
            io,
            reads: Direction::FromServer,
            on_bytes: Box::new(on_bytes),
        }
    }

    /// A server's transport: what it reads came from the client.
    pub fn server(io: S, on_bytes: impl FnMut(Direction, &[u8]) + Send + 'static) -> Self {
        Self {
            io,
            reads: Direction::FromClient,
            on_bytes: Box::new(on_bytes),
        }
    }

    /// The transport.
    pub fn get_ref(&self) -> &S {
        &self.io
    }

    /// The transport; bytes moved through it directly are not seen.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.io
    }

    /// The transport, without the tap.
    pub fn into_inner(self) -> S {
        self.io
    }

    fn writes(&self) -> Direction {
        match self.reads {
            Direction::FromClient => Direction::FromServer,
            Direction::FromServer => Direction::FromClient,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Tap<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let result = Pin::new(&mut this.io).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = result {
            let new = &buf.filled()[before..];
            if !new.is_empty() {
                (this.on_bytes)(this.reads, new);
            }
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tap<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.io).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = result {
            let writes = this.writes();
            (this.on_bytes)(writes, &buf[..n]);
        }
        result
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(mut n)) = result {
            // Only the first `n` bytes went out, across however many slices.
            let writes = this.writes();
            for b in bufs {
                if n == 0 {
                    break;
                }
                let k = n.min(b.len());
                (this.on_bytes)(writes, &b[..k]);
                n -= k;
            }
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn reads_and_writes_are_seen_with_their_sender() {
        let (a, mut b) = tokio::io::duplex(64);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        let mut tap = Tap::client(a, move |from, bytes| {
            s.lock().unwrap().push((from, bytes.to_vec()))
        });
        let slices = [IoSlice::new(b"ab"), IoSlice::new(b"cd")];
        let n = tap.write_vectored(&slices).await.unwrap();
        b.write_all(b"xyz").await.unwrap();
        let mut got = [0u8; 3];
        tap.read_exact(&mut got).await.unwrap();
        let mut out = vec![0u8; n];
        b.read_exact(&mut out).await.unwrap();
        let seen = seen.lock().unwrap();
        let written: Vec<u8> = seen
            .iter()
            .filter(|(d, _)| *d == Direction::FromClient)
            .flat_map(|(_, b)| b.clone())
            .collect();
        assert_eq!(written, out);
        let read: Vec<u8> = seen
            .iter()
            .filter(|(d, _)| *d == Direction::FromServer)
            .flat_map(|(_, b)| b.clone())
            .collect();
        assert_eq!(read, b"xyz");
    }
}
