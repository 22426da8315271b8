//! `/echo`: the task that echoes an open WebSocket, the workers' stop signal for it, and
//! the echo test page `/echo.html`.

/// `/echo.html`.
pub(super) const PAGE: &str = include_str!("echo.html");

use super::listen::spawn_in;
use futures_sink::Sink;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use tokio_util::task::TaskTracker;
use wsduplex::limits::Permit;
use wsduplex::{CloseCode, CloseFrame, Message, Utf8Bytes, WebSocket};

/// Hands an open WebSocket to an echo task of its own. The first on each worker also
/// starts the task that waits for the stop signal on the worker's behalf.
pub(super) fn spawn<S>(
    tasks: &TaskTracker,
    ws: WebSocket<S>,
    permit: Permit,
    stop: watch::Receiver<bool>,
    span: tracing::Span,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    if let Some(watcher) = registry::watcher(stop) {
        tasks.spawn(watcher);
    }
    let echo = Echo {
        ws,
        entry: registry::Entry::new(permit),
        closing: false,
    };
    spawn_in(tasks, echo, span);
}

/// The echo loop of one connection, written out as a future. An idle connection is this
/// future in a tokio task, and nothing else: the socket, its entry in the worker's
/// registry, a flag. (An `async fn` that `select!`ed over `recv()` and a `watch` stop
/// future held both futures, and copies of their state, in every connection.)
///
/// Echoes are queued, not flushed: the socket flushes when it has nothing left to read,
/// so a batch of messages goes out in one write.
struct Echo<S> {
    ws: WebSocket<S>,
    entry: registry::Entry,
    /// The 1001 is queued: the stop signal has nothing more to say.
    closing: bool,
}

impl<S> Future for Echo<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        loop {
            // Text and binary messages are echoed as they are read, borrowed from the
            // read buffer; the socket takes one only when its reply can be queued, so
            // none waits in here while the peer does not read. Pings are answered by the
            // socket; what comes out here is a ping, a pong, the close, or an error.
            let item = this.ws.poll_recv_with(cx, |msg, reply| {
                // Fails only when closing or past the slow-reader limit; the close
                // handshake goes on in the reads.
                let _ = reply.send(msg);
            });
            match item {
                Poll::Ready(Some(Ok(_))) => {}
                Poll::Ready(Some(Err(e))) => {
                    tracing::debug!("connection ended: {e}");
                    return Poll::Ready(());
                }
                Poll::Ready(None) => return Poll::Ready(()),
                // The stop signal is looked at only when the socket has nothing to deliver.
                Poll::Pending => {
                    if this.closing || !this.entry.stopped(cx.waker()) {
                        return Poll::Pending;
                    }
                    this.closing = true;
                    // The next read flushes it, then waits for the reply (within the close
                    // timeout).
                    let _ = Pin::new(&mut this.ws).start_send(Message::Close(Some(CloseFrame {
                        code: CloseCode::GOING_AWAY,
                        reason: Utf8Bytes::from_static("server shutting down"),
                    })));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    /// An idle echo connection is this future in a tokio task: a cell of its own
    /// allocated in steps of 128 bytes, with the task tracker's 8 bytes and about 110 of
    /// tokio's beside the future. Up to 400 bytes the cell is 512; at 408, 640.
    #[test]
    #[cfg(target_pointer_width = "64")]
    fn an_idle_echo_connection_fits_a_512_byte_task_cell() {
        let size = std::mem::size_of::<super::Echo<tokio::net::TcpStream>>();
        assert!(size <= 400, "Echo<TcpStream> is {size} bytes");
    }
}

/// The echo connections of a worker thread: their permits, and the wakers that the stop
/// signal wakes. A worker is a current-thread runtime, so an echo task is polled and
/// dropped on the thread that spawned it. A connection costs 48 bytes in a slab here,
/// instead of a `watch` receiver and a pinned `changed()` future (and its permit) in
/// its task.
mod registry {
    use std::cell::RefCell;
    use std::future::Future;
    use std::task::Waker;
    use tokio::sync::watch;
    use wsduplex::limits::Permit;

    #[derive(Default)]
    struct Registry {
        /// The worker is stopping; the wakers were woken.
        stopped: bool,
        /// A task waits for the stop signal on this thread.
        watched: bool,
        slots: Vec<Option<Slot>>,
        /// Indices of the empty slots.
        free: Vec<u32>,
    }

    struct Slot {
        /// Set when the task first waits.
        waker: Option<Waker>,
        /// Counts the connection in the limits until its task ends.
        _permit: Permit,
    }

    thread_local! {
        static REGISTRY: RefCell<Registry> = RefCell::default();
    }

    /// An echo task's slot in its worker's registry, emptied when the task ends.
    pub(super) struct Entry(u32);

    impl Entry {
        pub(super) fn new(permit: Permit) -> Self {
            REGISTRY.with_borrow_mut(|r| {
                let slot = Some(Slot {
                    waker: None,
                    _permit: permit,
                });
                match r.free.pop() {
                    Some(i) => {
                        r.slots[i as usize] = slot;
                        Self(i)
                    }
                    None => {
                        r.slots.push(slot);
                        Self(u32::try_from(r.slots.len() - 1).expect("< 2^32 connections"))
                    }
                }
            })
        }

        /// Whether the worker is stopping; if not, `waker` is woken when it does.
        pub(super) fn stopped(&mut self, waker: &Waker) -> bool {
            REGISTRY.with_borrow_mut(|r| {
                if r.stopped {
                    return true;
                }
                let slot = r.slots[self.0 as usize].as_mut().expect("own slot");
                match &mut slot.waker {
                    // A tokio task's waker stays the same; checking is cheap.
                    Some(w) if w.will_wake(waker) => {}
                    w => *w = Some(waker.clone()),
                }
                false
            })
        }
    }

    impl Drop for Entry {
        fn drop(&mut self) {
            // A task dropped while the thread's locals are torn down has nothing to give
            // back (its permit goes with the registry).
            let _ = REGISTRY.try_with(|r| {
                let mut r = r.borrow_mut();
                let slot = r.slots[self.0 as usize].take();
                r.free.push(self.0);
                // Dropped (the permit with it) outside the borrow.
                slot
            });
        }
    }

    /// The task that waits for `stop` on this thread's behalf, if none was started yet.
    pub(super) fn watcher(
        mut stop: watch::Receiver<bool>,
    ) -> Option<impl Future<Output = ()> + Send + 'static> {
        let first = REGISTRY.with_borrow_mut(|r| !std::mem::replace(&mut r.watched, true));
        first.then_some(async move {
            // The sender gone without a stop: the tasks run until their peers leave.
            if stop.wait_for(|stopped| *stopped).await.is_ok() {
                let wakers: Vec<Waker> = REGISTRY.with_borrow_mut(|r| {
                    r.stopped = true;
                    r.slots
                        .iter_mut()
                        .flatten()
                        .filter_map(|s| s.waker.take())
                        .collect()
                });
                for w in wakers {
                    w.wake();
                }
            }
        })
    }
}
