//! The socket: a proto [`Connection`] pumped over any `AsyncRead + AsyncWrite`.
//!
//! Reading delivers messages in order, then the peer's `Close` once the transport is closed
//! (or an error), then `None`. Writing queues frames in the core and writes them with
//! vectored writes; the reader also flushes (pongs, close replies, and whatever the
//! application queued) whenever it would otherwise wait for input, so an echo loop that
//! only `feed`s gets batched writes for free.
//!
//! Split by concern: `driver` (reading, writing and closing the transport), `reply` (queuing
//! under the slow-reader policy, [`Reply`]), `timers` (keepalive, idle and close deadlines),
//! `split` (the two halves of [`WebSocket::split`]) and `park` (an idle socket as a small
//! value, [`WebSocket::park`]).

mod driver;
#[cfg(feature = "handover")]
mod handover;
mod park;
mod reply;
mod split;
mod timers;

#[cfg(feature = "handover")]
pub use handover::{HandoverError, SocketState};
pub use park::Parked;
pub use reply::Reply;
pub use split::{ReadHalf, WriteHalf};

use crate::error::{Error, Result};
use futures_core::Stream;
use futures_sink::Sink;
use proto::{CloseCode, Connection, Message, MessageRef, Role, State};
use std::future::poll_fn;
use std::pin::Pin;
use std::sync::{Arc, PoisonError, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Sleep;

/// Settings of a socket (the protocol limits live in [`Config::protocol`]).
///
/// The four timeouts here are the core's deadlines ([`proto::Timeouts`], to the
/// millisecond): the socket hands them to the core, in place of `protocol.timeouts`.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Config {
    /// Frame and message limits, fragmentation (its `timeouts` are replaced by the fields
    /// below).
    pub protocol: proto::Config,
    /// How long to wait for the peer's close frame, and then for the transport to close.
    pub close_timeout: Duration,
    /// Queued outgoing bytes beyond which the peer counts as a slow reader: see
    /// [`Config::slow_reader`].
    pub max_write_buffer: usize,
    /// What sending does while `max_write_buffer` bytes wait for a slow reader.
    pub slow_reader: SlowReader,
    /// Send a ping this often (off by default). Runs while the socket is being read.
    pub ping_interval: Option<Duration>,
    /// With `ping_interval`: if nothing at all arrives within this time after a ping, the
    /// peer is considered gone, the transport is closed and reading yields
    /// [`Error::KeepaliveTimeout`].
    pub ping_timeout: Duration,
    /// Close with 1001 "idle timeout" when no text or binary message arrives for this long
    /// (off by default; pings and pongs do not count as activity).
    pub idle_timeout: Option<Duration>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            protocol: proto::Config::default(),
            close_timeout: Duration::from_secs(5),
            max_write_buffer: 1 << 20,
            slow_reader: SlowReader::Wait,
            ping_interval: None,
            ping_timeout: Duration::from_secs(20),
            idle_timeout: None,
        }
    }
}

impl Config {
    /// The core's configuration, with the socket's timeouts in place of its own.
    pub(crate) fn protocol_with_timeouts(&self) -> proto::Config {
        let mut protocol = self.protocol.clone();
        let t = &mut protocol.timeouts;
        t.set_close(self.close_timeout);
        t.set_ping_interval(self.ping_interval);
        t.set_ping_timeout(self.ping_timeout);
        t.set_idle(self.idle_timeout);
        protocol
    }

    /// The core's settings for a socket: from `shared` without permessage-deflate (the
    /// agreement and the compressors' state are each connection's own anyway), else a copy
    /// of its own.
    pub(crate) fn protocol_from(&self, shared: Option<&SharedSettings>) -> Arc<proto::Config> {
        let protocol = self.protocol_with_timeouts();
        match shared {
            Some(shared) if protocol.deflate.is_none() => shared.share(protocol),
            _ => Arc::new(protocol),
        }
    }
}

/// The core's settings that a server's connections share, so that each holds a pointer
/// instead of a copy (an idle connection's bytes count): one copy of each distinct set of
/// settings, found by comparison, so that a route's or a clone's own limits, or an agreement
/// adjusted before the `101`, share among themselves too. A few at most: settings that vary
/// per connection would otherwise pile up here.
#[derive(Debug, Default)]
pub(crate) struct SharedSettings(RwLock<Vec<Arc<proto::Config>>>);

impl SharedSettings {
    const MAX: usize = 8;

    /// The shared copy of `config`, kept if there is room.
    pub(crate) fn share(&self, config: proto::Config) -> Arc<proto::Config> {
        let find = |all: &[Arc<proto::Config>]| all.iter().find(|c| ***c == config).cloned();
        // Nothing panics while the lock is held: a poisoned one is as good as any.
        if let Some(found) = find(&self.0.read().unwrap_or_else(PoisonError::into_inner)) {
            return found;
        }
        let mut all = self.0.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(found) = find(&all) {
            return found;
        }
        let config = Arc::new(config);
        if all.len() < Self::MAX {
            all.push(Arc::clone(&config));
        }
        config
    }
}

/// What sending does while [`Config::max_write_buffer`] bytes already wait for the peer to
/// read them. Pongs and close frames are always queued.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum SlowReader {
    /// Backpressure: sending waits until the queue drains below the limit, and reading
    /// pauses meanwhile. Nothing is lost; a peer that never reads is held, and costs at most
    /// the limit.
    #[default]
    Wait,
    /// Text and binary messages sent while the queue is over the limit are dropped (counted
    /// in [`crate::metrics`]); sending never waits and reading goes on. Past twice the
    /// limit (pongs still queue) reading pauses, as with `Wait`.
    Drop,
    /// The first text or binary message sent over the limit closes the connection with
    /// 1008 `too slow` (queued behind what waits; the transport is closed after
    /// [`Config::close_timeout`] if the peer does not read up to it). The message is dropped
    /// and the send fails with [`Error::SlowReader`]. Sending never waits; reading pauses
    /// past twice the limit, as with `Drop`.
    Close,
}

/// Bytes reserved per read: enough for a frame in progress, within these bounds.
const MIN_READ: usize = 4 * 1024;
const MAX_READ: usize = 256 * 1024;

/// Where the transport stands once the protocol is done.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    /// Messages flow.
    Open,
    /// The protocol is finished: flushing, then closing the transport.
    Finishing,
    /// The final item was yielded; the stream returns `None`.
    Done,
}

struct Inner<S> {
    io: S,
    conn: Connection,
    // The settings the driver uses (the protocol's, timeouts included, live in the core).
    max_write_buffer: usize,
    slow_reader: SlowReader,
    phase: Phase,
    /// Client: the server closed TCP (or we stopped waiting for it).
    server_closed: bool,
    write_shutdown: bool,
    /// The read buffer went back to the pool (see [`buffers`]): the next read takes one
    /// from it. (An empty read buffer without room is otherwise what is left once a large
    /// message was split off: growing it from scratch, `BytesMut` makes it as large as
    /// that one, so large messages do not start small and grow each time.)
    rx_released: bool,
    /// The one timer, set to the core's next deadline; created the first time one is
    /// waited on.
    timer: Option<Pin<Box<Sleep>>>,
    /// `None` (and one pointer) while open without a subprotocol, as most connections are.
    cold: Option<Box<Cold>>,
}

/// The socket's state off the per-message path, boxed: the subprotocol, and how the stream
/// ends (held only with a subprotocol, or once the socket is finishing).
#[derive(Default)]
struct Cold {
    subprotocol: Option<Box<str>>,
    /// The peer's close, held back until the transport is closed.
    final_close: Option<Message>,
    /// An environment error to yield last.
    final_error: Option<Error>,
}

impl<S> Inner<S> {
    fn cold(&mut self) -> &mut Cold {
        self.cold.get_or_insert_with(Box::default)
    }

    fn final_error(&self) -> Option<&Error> {
        self.cold.as_ref()?.final_error.as_ref()
    }

    /// Ends the stream with `e` once the transport is closed (bounded by the close timeout,
    /// which this starts in the core).
    fn finish_with(&mut self, e: Error) {
        self.conn.transport_error();
        self.cold().final_error = Some(e);
        self.phase = Phase::Finishing;
    }
}

/// A WebSocket connection: a [`Stream`] of received [`Message`]s and a [`Sink`] of
/// messages to send.
///
/// The stream yields data messages, pings and pongs (pongs owed are sent automatically),
/// then, once the closing handshake is complete and the transport closed, the peer's
/// `Message::Close` (or an `Err` if the connection failed), then `None`. Polling the stream
/// is cancel-safe: all state lives in the socket, so `next()` can sit in `tokio::select!`.
pub struct WebSocket<S> {
    inner: Inner<S>,
}

impl<S> std::fmt::Debug for WebSocket<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSocket")
            .field("conn", &self.inner.conn)
            .field(
                "subprotocol",
                &self
                    .inner
                    .cold
                    .as_ref()
                    .and_then(|r| r.subprotocol.as_deref()),
            )
            .finish()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WebSocket<S> {
    /// Wraps a transport whose opening handshake is done. `leftover` holds bytes read past
    /// the handshake (they are the first frames).
    pub fn from_raw(io: S, role: Role, config: Config, leftover: &[u8]) -> Self {
        Self::from_raw_shared(io, role, &config, None, leftover)
    }

    /// [`WebSocket::from_raw`] whose core's settings come from `shared`
    /// ([`Config::protocol_from`]).
    pub(crate) fn from_raw_shared(
        io: S,
        role: Role,
        config: &Config,
        shared: Option<&SharedSettings>,
        leftover: &[u8],
    ) -> Self {
        let mut conn = Connection::with_shared_config(role, config.protocol_from(shared));
        if !leftover.is_empty() {
            // Errors are recorded in the state and surface on the first read.
            let _ = conn.receive(leftover);
        }
        let mut inner = Inner {
            io,
            conn,
            max_write_buffer: config.max_write_buffer,
            slow_reader: config.slow_reader,
            phase: Phase::Open,
            server_closed: false,
            write_shutdown: false,
            rx_released: false,
            timer: None,
            cold: None,
        };
        inner.start_timers();
        Self { inner }
    }

    /// Records the subprotocol the opening handshake selected, for a socket built with
    /// [`WebSocket::from_raw`] after a handshake done elsewhere (hyper, axum, a test):
    /// [`WebSocket::subprotocol`] then reports it. `None` leaves it unset.
    ///
    /// ```
    /// # use wsduplex::{proto::Role, Config, WebSocket};
    /// # async fn f(io: tokio::net::TcpStream) {
    /// let ws = WebSocket::from_raw(io, Role::Server, Config::default(), &[])
    ///     .with_subprotocol(Some("chat".to_string()));
    /// assert_eq!(ws.subprotocol(), Some("chat"));
    /// # }
    /// ```
    pub fn with_subprotocol(mut self, p: Option<String>) -> Self {
        if let Some(p) = p {
            self.inner.cold().subprotocol = Some(p.into_boxed_str());
        }
        self
    }

    /// The transport, e.g. to read the peer's address (`get_ref().peer_addr()` on a
    /// `TcpStream`) or, over TLS, its certificate (`get_ref().get_ref().1.peer_certificates()`
    /// on a rustls server stream). Reading or writing it directly corrupts the WebSocket
    /// stream.
    pub fn get_ref(&self) -> &S {
        &self.inner.io
    }

    /// The transport, mutably (to set socket options, say). Reading or writing it directly
    /// corrupts the WebSocket stream.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner.io
    }

    /// Gives the transport back, ending the WebSocket without a closing handshake. Bytes
    /// already read from the transport but not yet handed out as messages, and frames queued
    /// but not yet written ([`WebSocket::buffered_amount`]), are dropped: call it once the
    /// stream has ended (`recv` returned `None`), or to take over a transport on which
    /// nothing is in flight.
    pub fn into_inner(self) -> S {
        self.inner.io
    }

    /// The subprotocol the handshake selected (the browser's `protocol`).
    pub fn subprotocol(&self) -> Option<&str> {
        self.inner.cold.as_ref()?.subprotocol.as_deref()
    }

    /// Outgoing bytes not yet written (the browser's `bufferedAmount`).
    pub fn buffered_amount(&self) -> usize {
        self.inner.conn.buffered_amount()
    }

    /// The protocol state.
    pub fn state(&self) -> &State {
        self.inner.conn.state()
    }

    /// Whether both sockets' cores hold one copy of their settings (for tests).
    #[doc(hidden)]
    pub fn shares_config_with<T>(&self, other: &WebSocket<T>) -> bool {
        std::ptr::eq(self.inner.conn.config(), other.inner.conn.config())
    }

    /// The next message; `None` after the final `Close` or error.
    pub async fn recv(&mut self) -> Option<Result<Message>> {
        poll_fn(|cx| self.inner.poll_next(cx)).await
    }

    /// Like [`WebSocket::recv`], but text and binary messages go to `on_message`, borrowed,
    /// with a [`Reply`] to answer them: it returns the next other item (a ping, a pong, the
    /// peer's close, an error), or `None` at the end.
    ///
    /// The fast way to serve many small messages: a whole message under 16 KiB is handed
    /// out from the receive buffer, with no allocation and no reference count, and a reply
    /// is copied straight into the write queue. Larger or fragmented messages are handed out
    /// from an owned [`Message`], and a reply of the same payload shares it.
    ///
    /// ```no_run
    /// # async fn echo(mut ws: wsduplex::WebSocket<tokio::net::TcpStream>) {
    /// while let Some(item) = ws.recv_with(|msg, reply| { let _ = reply.send(msg); }).await {
    ///     if item.is_err() {
    ///         break;
    ///     }
    /// }
    /// # }
    /// ```
    pub async fn recv_with<F>(&mut self, mut on_message: F) -> Option<Result<Message>>
    where
        F: FnMut(MessageRef<'_>, &mut Reply<'_>),
    {
        poll_fn(|cx| self.inner.poll_recv(cx, Some(&mut on_message))).await
    }

    /// The poll form of [`WebSocket::recv_with`], for hand-written futures.
    pub fn poll_recv_with<F>(
        &mut self,
        cx: &mut Context<'_>,
        on_message: F,
    ) -> Poll<Option<Result<Message>>>
    where
        F: FnMut(MessageRef<'_>, &mut Reply<'_>),
    {
        self.inner.poll_recv(cx, Some(on_message))
    }

    /// Sends a message and flushes it to the transport.
    pub async fn send(&mut self, msg: impl Into<Message>) -> Result<()> {
        poll_fn(|cx| self.inner.poll_ready(cx)).await?;
        let queued = self.inner.start_send(msg.into());
        self.after_command(queued).await
    }

    /// Queues a message without flushing (it goes out with the next flush or read).
    pub async fn feed(&mut self, msg: impl Into<Message>) -> Result<()> {
        poll_fn(|cx| self.inner.poll_ready(cx)).await?;
        match self.inner.start_send(msg.into()) {
            Ok(()) => Ok(()),
            // Boxed: keeps this hot future small (it lives inside every echo loop).
            failed => Box::pin(self.after_command(failed)).await,
        }
    }

    /// Starts the closing handshake and flushes the close frame. Keep reading: messages
    /// already in flight arrive, then the peer's `Close`, then `None`.
    pub async fn close(&mut self, code: CloseCode, reason: &str) -> Result<()> {
        let queued = self.inner.conn.close(code, reason).map_err(Error::from);
        self.after_command(queued).await
    }

    /// Flushes after a command. On a failed connection the close frame owed to the peer
    /// still goes out (within the close timeout) before the error is returned.
    async fn after_command(&mut self, queued: Result<()>) -> Result<()> {
        match queued {
            Ok(()) => poll_fn(|cx| self.inner.poll_flush_tx(cx)).await,
            Err(e @ Error::Protocol(_)) => {
                // Bounded by the close timeout, which the failure started in the core.
                poll_fn(|cx| match self.inner.poll_flush_tx(cx) {
                    Poll::Pending if !self.inner.close_timed_out(cx) => Poll::Pending,
                    _ => Poll::Ready(()),
                })
                .await;
                Err(e)
            }
            Err(e) => Err(e),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Stream for WebSocket<S> {
    type Item = Result<Message>;
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().inner.poll_next(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Sink<Message> for WebSocket<S> {
    type Error = Error;
    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.get_mut().inner.poll_ready(cx)
    }
    fn start_send(self: Pin<&mut Self>, item: Message) -> Result<()> {
        self.get_mut().inner.start_send(item)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.get_mut().inner.poll_flush_tx(cx)
    }
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.get_mut().inner.poll_close(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server holds a socket per idle connection (issue 3, scenario D: memory per idle
    /// connection), so its size is pinned: growing it is a decision, not an accident. `()`
    /// stands for the transport, whose size is not this crate's.
    #[test]
    #[cfg(target_pointer_width = "64")]
    fn a_socket_holds_at_most_328_bytes_beside_its_transport() {
        let size = std::mem::size_of::<WebSocket<()>>();
        assert!(size <= 328, "WebSocket<()> is {size} bytes");
    }

    #[test]
    fn shared_settings_keep_one_copy_of_each_of_a_few_distinct_ones() {
        let shared = SharedSettings::default();
        let sized = |n| proto::Config::default().max_message_size(n);
        let a = shared.share(proto::Config::default());
        assert!(Arc::ptr_eq(&a, &shared.share(proto::Config::default())));
        let b = shared.share(sized(1));
        assert!(!Arc::ptr_eq(&a, &b));
        assert!(Arc::ptr_eq(&b, &shared.share(sized(1))));
        for n in 2..=SharedSettings::MAX as u64 {
            shared.share(sized(n));
        }
        // Full: settings never seen get a copy each, the others are still found.
        let (c, d) = (shared.share(sized(100)), shared.share(sized(100)));
        assert!(!Arc::ptr_eq(&c, &d));
        assert_eq!(*c, sized(100));
        assert!(Arc::ptr_eq(&a, &shared.share(proto::Config::default())));
    }
}
