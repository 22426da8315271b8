//! The two halves of a split [`WebSocket`], sharing it behind a mutex.

use super::{Inner, WebSocket};
use crate::error::{Error, Result};
use futures_core::Stream;
use futures_sink::Sink;
use futures_util::task::{waker_ref, ArcWake, AtomicWaker};
use proto::{CloseCode, Message};
use std::future::poll_fn;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite};

impl<S: AsyncRead + AsyncWrite + Unpin> WebSocket<S> {
    /// Splits into a reading half and a writing half for use from two tasks.
    pub fn split(mut self) -> (ReadHalf<S>, WriteHalf<S>) {
        let subprotocol = self.inner.cold.as_mut().and_then(|r| r.subprotocol.take());
        let halves = Arc::new(Halves {
            inner: Mutex::new(self.inner),
            wakers: Arc::new(WakerPair::default()),
            subprotocol,
        });
        (
            ReadHalf {
                halves: halves.clone(),
            },
            WriteHalf { halves },
        )
    }
}

/// Wakes both halves: either half may register interest in the transport on behalf of
/// the other (the reader flushes pongs, the writer's flush may unblock the reader).
#[derive(Default)]
struct WakerPair {
    read: AtomicWaker,
    write: AtomicWaker,
}

impl ArcWake for WakerPair {
    fn wake_by_ref(arc_self: &Arc<Self>) {
        arc_self.read.wake();
        arc_self.write.wake();
    }
}

/// What the two halves share: the socket, and the wakers of both.
struct Halves<S> {
    inner: Mutex<Inner<S>>,
    wakers: Arc<WakerPair>,
    subprotocol: Option<Box<str>>,
}

impl<S> Halves<S> {
    fn lock(&self) -> MutexGuard<'_, Inner<S>> {
        // A panic while holding the lock leaves nothing half-done that matters here.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn with<T>(
        &self,
        cx: &mut Context<'_>,
        read: bool,
        f: impl FnOnce(&mut Inner<S>, &mut Context<'_>) -> T,
    ) -> T {
        if read {
            self.wakers.read.register(cx.waker());
        } else {
            self.wakers.write.register(cx.waker());
        }
        let waker = waker_ref(&self.wakers);
        let mut cx = Context::from_waker(&waker);
        f(&mut self.lock(), &mut cx)
    }
}

/// The reading half of a split [`WebSocket`].
pub struct ReadHalf<S> {
    halves: Arc<Halves<S>>,
}

/// The writing half of a split [`WebSocket`].
pub struct WriteHalf<S> {
    halves: Arc<Halves<S>>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> ReadHalf<S> {
    /// The next message; see [`WebSocket::recv`].
    pub async fn recv(&mut self) -> Option<Result<Message>> {
        poll_fn(|cx| self.halves.with(cx, true, |i, cx| i.poll_next(cx))).await
    }

    /// The selected subprotocol.
    pub fn subprotocol(&self) -> Option<&str> {
        self.halves.subprotocol.as_deref()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WriteHalf<S> {
    /// Sends a message and flushes it; see [`WebSocket::send`].
    pub async fn send(&mut self, msg: impl Into<Message>) -> Result<()> {
        let msg = msg.into();
        poll_fn(|cx| self.halves.with(cx, false, |i, cx| i.poll_ready(cx))).await?;
        self.halves.lock().start_send(msg)?;
        poll_fn(|cx| self.halves.with(cx, false, |i, cx| i.poll_flush_tx(cx))).await
    }

    /// Starts the closing handshake; the reading half sees the peer's reply.
    pub async fn close(&mut self, code: CloseCode, reason: &str) -> Result<()> {
        self.halves.lock().conn.close(code, reason)?;
        poll_fn(|cx| self.halves.with(cx, false, |i, cx| i.poll_flush_tx(cx))).await
    }

    /// Outgoing bytes not yet written.
    pub fn buffered_amount(&self) -> usize {
        self.halves.lock().conn.buffered_amount()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Stream for ReadHalf<S> {
    type Item = Result<Message>;
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.halves.with(cx, true, |i, cx| i.poll_next(cx))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Sink<Message> for WriteHalf<S> {
    type Error = Error;
    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.halves.with(cx, false, |i, cx| i.poll_ready(cx))
    }
    fn start_send(self: Pin<&mut Self>, item: Message) -> Result<()> {
        self.halves.lock().start_send(item)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.halves.with(cx, false, |i, cx| i.poll_flush_tx(cx))
    }
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.halves.with(cx, false, |i, cx| i.poll_close(cx))
    }
}
