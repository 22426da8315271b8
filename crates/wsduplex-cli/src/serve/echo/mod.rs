//! `/echo`: the task that echoes an open WebSocket, the workers' stop signal for it, and
//! the echo test page `/echo.html`.

#[cfg(unix)]
pub(super) mod lot;
pub(super) mod registry;

/// `/echo.html`.
pub(super) const PAGE: &str = include_str!("echo.html");

use super::listen::spawn_in;
use futures_sink::Sink;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_util::task::TaskTracker;
use wsduplex::limits::Permit;
use wsduplex::{CloseCode, CloseFrame, Message, Utf8Bytes, WebSocket};

/// A transport an echo connection runs over, and whether a hand-over moves it to the new
/// process (plain TCP, on Unix) or leaves it to be drained here (TLS: rustls's state does
/// not move; a stream of an HTTP/2 connection: the connection does not).
pub(super) trait Transport: AsyncRead + AsyncWrite + Unpin + Send + Sized + 'static {
    const MOVABLE: bool = false;

    /// Whether an idle connection can be parked without a task ([`Self::park`]).
    const PARKABLE: bool = false;

    /// Gives the connection up to the hand-over (called only when [`Self::MOVABLE`]).
    fn hand_over(ws: WebSocket<Self>) {
        drop(ws);
    }

    /// Parks the connection, if nothing is in flight (called only when
    /// [`Self::PARKABLE`]); otherwise gives it back.
    #[allow(clippy::result_large_err)]
    fn park(
        ws: WebSocket<Self>,
        entry: registry::Entry,
    ) -> Result<(), (WebSocket<Self>, registry::Entry)> {
        Err((ws, entry))
    }

    /// Parks a chat member stopped idle, if its socket can be (called only when
    /// [`Self::PARKABLE`]); otherwise gives it back.
    #[allow(clippy::result_large_err)]
    fn park_member(
        member: wsduplex_hub::Member<Self>,
        entry: registry::Entry,
    ) -> Result<(), (wsduplex_hub::Member<Self>, registry::Entry)> {
        Err((member, entry))
    }
}

impl Transport for TcpStream {
    #[cfg(unix)]
    const MOVABLE: bool = true;

    #[cfg(unix)]
    const PARKABLE: bool = true;

    #[cfg(unix)]
    fn hand_over(ws: WebSocket<Self>) {
        registry::surrender(ws);
    }

    #[cfg(unix)]
    fn park(
        ws: WebSocket<Self>,
        entry: registry::Entry,
    ) -> Result<(), (WebSocket<Self>, registry::Entry)> {
        lot::park(ws, entry)
    }

    #[cfg(unix)]
    fn park_member(
        member: wsduplex_hub::Member<Self>,
        entry: registry::Entry,
    ) -> Result<(), (wsduplex_hub::Member<Self>, registry::Entry)> {
        lot::park_member(member, entry)
    }
}

impl Transport for Box<wsduplex::tls::TlsStream<TcpStream>> {}

impl Transport for wsduplex::server::http2::Http2Stream {}

/// Hands an open WebSocket to an echo task of its own, counted by `permit` (`None`: a
/// connection given back by a failed hand-over, served beyond the limits). With a `gate`,
/// the socket is not touched until the gate opens (dropped unopened: the connection is
/// dropped unserved). `movable`: a hand-over may move it, if its transport can be moved.
pub(super) fn spawn<S: Transport>(
    tasks: &TaskTracker,
    ws: WebSocket<S>,
    permit: Option<Permit>,
    gate: Option<oneshot::Receiver<()>>,
    movable: bool,
    span: tracing::Span,
) {
    let echo = echo(ws, permit, movable);
    match gate {
        None => spawn_in(tasks, echo, span),
        Some(gate) => {
            let task = async move {
                if gate.await.is_ok() {
                    echo.await;
                }
            };
            spawn_in(tasks, task, span);
        }
    }
}

/// The echo loop of `ws`, counted by `permit`, to run in the caller's task (a plain
/// connection's, after its handshake: `listen.rs`); [`spawn`] gives it one of its own.
pub(super) fn echo<S: Transport>(
    ws: WebSocket<S>,
    permit: Option<Permit>,
    movable: bool,
) -> Echo<S> {
    Echo {
        ws: Some(ws),
        entry: Some(registry::Entry::new(
            permit,
            movable && S::MOVABLE,
            S::PARKABLE,
        )),
        closing: false,
    }
}

/// The echo loop of one connection, written out as a future. A connection that waits is
/// this future in a tokio task, and nothing else: the socket, its entry in the worker's
/// registry, a flag; once idle for `--park-idle`, it is parked without it (`lot.rs`). (An `async fn` that `select!`ed over `recv()` and a `watch` stop
/// future held both futures, and copies of their state, in every connection.)
///
/// Echoes are queued, not flushed: the socket flushes when it has nothing left to read,
/// so a batch of messages goes out in one write.
pub(super) struct Echo<S> {
    /// Taken only by a hand-over, which ends the task.
    ws: Option<WebSocket<S>>,
    /// Taken only by parking, which ends the task (the connection keeps its entry).
    entry: Option<registry::Entry>,
    /// The 1001 is queued: the stop signal has nothing more to say.
    closing: bool,
}

impl<S: Transport> Future for Echo<S> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        loop {
            let (Some(ws), Some(entry)) = (this.ws.as_mut(), this.entry.as_mut()) else {
                return Poll::Ready(());
            };
            // Text and binary messages are echoed as they are read, borrowed from the
            // read buffer; the socket takes one only when its reply can be queued, so
            // none waits in here while the peer does not read. Pings are answered by the
            // socket; what comes out here is a ping, a pong, the close, or an error.
            let item = ws.poll_recv_with(cx, |msg, reply| {
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
                // The signals are looked at only when the socket has nothing to deliver:
                // a safe point, where the socket's whole state is in the socket.
                Poll::Pending => match entry.signal(cx.waker()) {
                    registry::Signal::None => return Poll::Pending,
                    registry::Signal::HandOver => {
                        if let Some(ws) = this.ws.take() {
                            S::hand_over(ws);
                        }
                        return Poll::Ready(());
                    }
                    registry::Signal::Park => {
                        let (Some(ws), Some(entry)) = (this.ws.take(), this.entry.take()) else {
                            return Poll::Ready(());
                        };
                        match S::park(ws, entry) {
                            Ok(()) => return Poll::Ready(()),
                            // Something is in flight: it waits in its task as before (the
                            // next signal sets the waker).
                            Err((ws, entry)) => {
                                this.ws = Some(ws);
                                this.entry = Some(entry);
                            }
                        }
                    }
                    registry::Signal::Stop if this.closing => return Poll::Pending,
                    registry::Signal::Stop => {
                        this.closing = true;
                        // The next read flushes it, then waits for the reply (within the
                        // close timeout).
                        let _ = Pin::new(&mut *ws).start_send(Message::Close(Some(CloseFrame {
                            code: CloseCode::GOING_AWAY,
                            reason: Utf8Bytes::from_static("server shutting down"),
                        })));
                    }
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    /// An idle echo connection is this future in a tokio task: a cell of its own
    /// allocated in steps of 128 bytes, with the task tracker's 8 bytes and about 110 of
    /// tokio's beside the future. Up to 400 bytes the cell is 512; at 408, 640.
    /// Its slot in the worker's registry: 56 bytes (the module's doc says so), the
    /// permit and either the task's waker or the parked connection's box.
    #[test]
    #[cfg(target_pointer_width = "64")]
    fn a_registry_slot_is_56_bytes() {
        let size = super::registry::slot_size();
        assert!(size <= 56, "a registry slot is {size} bytes");
    }

    /// A parked connection is its slot and this box (in a 64-byte class): the descriptor
    /// and the socket reduced to its settings' pointers and deadlines, no task, no
    /// registration in tokio's reactor. Together with the slot: 120 bytes.
    #[test]
    #[cfg(all(unix, target_pointer_width = "64"))]
    fn a_parked_connection_fits_a_64_byte_box() {
        let size = std::mem::size_of::<super::lot::Parked>();
        assert!(size <= 64, "a parked connection is {size} bytes");
    }

    #[test]
    #[cfg(target_pointer_width = "64")]
    fn an_idle_echo_connection_fits_a_512_byte_task_cell() {
        let size = std::mem::size_of::<super::Echo<tokio::net::TcpStream>>();
        assert!(size <= 400, "Echo<TcpStream> is {size} bytes");
    }
}
