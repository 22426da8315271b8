//! The socket: a proto [`Connection`] pumped over any `AsyncRead + AsyncWrite`.
//!
//! Reading delivers messages in order, then the peer's `Close` once the transport is closed
//! (or an error), then `None`. Writing queues frames in the core and writes them with
//! vectored writes; the reader also flushes (pongs, close replies, and whatever the
//! application queued) whenever it would otherwise wait for input, so an echo loop that
//! only `feed`s gets batched writes for free.

use crate::buffers;
use crate::error::{Error, Result};
use crate::metrics;
use bytes::Buf;
use futures_core::Stream;
use futures_sink::Sink;
use futures_util::task::{waker_ref, ArcWake, AtomicWaker};
use proto::{CloseCode, Connection, Message, MessageRef, Role, State};
use std::future::{poll_fn, Future};
use std::io::IoSlice;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;
use tokio::time::Sleep;

/// Settings of a socket (the protocol limits live in [`Config::protocol`]).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Config {
    /// Frame and message limits, fragmentation.
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

/// The payload length of a text or binary message; `None` for control messages.
#[inline]
fn data_len(msg: &Message) -> Option<usize> {
    match msg {
        Message::Text(t) => Some(t.len()),
        Message::Binary(b) => Some(b.len()),
        _ => None,
    }
}

/// Queues a text or binary message of `len` bytes with `queue`, under the slow-reader policy.
fn queue_data(
    tx: &mut proto::Sender<'_>,
    slow_reader: SlowReader,
    max_write_buffer: usize,
    len: usize,
    queue: impl FnOnce(&mut proto::Sender<'_>) -> std::result::Result<(), proto::Error>,
) -> Result<()> {
    let full = tx.buffered_amount() >= max_write_buffer;
    match slow_reader {
        SlowReader::Drop if full && *tx.state() == State::Open => {
            metrics::queue_overflow(metrics::Overflow::Dropped);
            Ok(())
        }
        SlowReader::Close if full && *tx.state() == State::Open => {
            metrics::queue_overflow(metrics::Overflow::Closed);
            tx.close(CloseCode::POLICY_VIOLATION, "too slow")?;
            Err(Error::SlowReader)
        }
        _ => {
            queue(tx)?;
            metrics::sent(len);
            Ok(())
        }
    }
}

/// The sending side of a socket, handed to [`WebSocket::recv_with`]'s callback beside each
/// message: replies queue as [`WebSocket::feed`] would queue them (under the same
/// [`SlowReader`] policy) and go out with the next write.
pub struct Reply<'a> {
    tx: proto::Sender<'a>,
    slow_reader: SlowReader,
    max_write_buffer: usize,
    /// The message handed out, when it is owned (16 KiB or more, or one that came in
    /// fragments): a reply with the same payload shares it instead of copying it.
    shared: Option<&'a Message>,
}

impl<'a> Reply<'a> {
    fn new<S>(inner: &'a mut Inner<S>, shared: Option<&'a Message>) -> Self {
        Self {
            slow_reader: inner.slow_reader,
            max_write_buffer: inner.max_write_buffer,
            tx: inner.conn.sender(),
            shared,
        }
    }

    /// Queues a text or binary message: the one just received (an echo) or any other. Its
    /// bytes are copied into the queue, unless it is the received message's own payload and
    /// that is large: then it is shared.
    pub fn send(&mut self, msg: MessageRef<'_>) -> Result<()> {
        let len = msg.len();
        let owned = self
            .shared
            .filter(|m| m.as_data().is_some_and(|d| same(d, msg)));
        let (slow_reader, max) = (self.slow_reader, self.max_write_buffer);
        match owned {
            Some(m) => queue_data(&mut self.tx, slow_reader, max, len, |tx| tx.send(m.clone())),
            None => queue_data(&mut self.tx, slow_reader, max, len, |tx| tx.send_ref(msg)),
        }
    }

    /// Queues a message; as [`WebSocket::feed`] does, without waiting.
    pub fn send_message(&mut self, msg: impl Into<Message>) -> Result<()> {
        let msg = msg.into();
        let Some(len) = data_len(&msg) else {
            return self.tx.send(msg).map_err(Error::from);
        };
        let (slow_reader, max) = (self.slow_reader, self.max_write_buffer);
        queue_data(&mut self.tx, slow_reader, max, len, |tx| tx.send(msg))
    }

    /// Starts the closing handshake; the close frame goes out with the next write.
    pub fn close(&mut self, code: CloseCode, reason: &str) -> Result<()> {
        self.tx.close(code, reason).map_err(Error::from)
    }

    /// Outgoing bytes not yet written (the browser's `bufferedAmount`).
    pub fn buffered_amount(&self) -> usize {
        self.tx.buffered_amount()
    }
}

/// The same message, at the same address: a reply that is the received message itself.
fn same(a: MessageRef<'_>, b: MessageRef<'_>) -> bool {
    let (x, y) = (a.as_bytes(), b.as_bytes());
    matches!(
        (a, b),
        (MessageRef::Text(_), MessageRef::Text(_)) | (MessageRef::Binary(_), MessageRef::Binary(_))
    ) && std::ptr::eq(x, y)
}

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
    // The two settings the driver uses (the protocol's live in the connection).
    close_timeout: Duration,
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
    /// Keepalive and idle timers; `None` (and free) unless configured.
    timers: Option<Box<Timers>>,
    /// `None` (and one pointer) while open without a subprotocol, as most connections are.
    rare: Option<Box<Rare>>,
}

/// What a socket holds only with a subprotocol, or once it is closing.
#[derive(Default)]
struct Rare {
    subprotocol: Option<Box<str>>,
    /// The peer's close, held back until the transport is closed.
    final_close: Option<Message>,
    /// An environment error to yield last.
    final_error: Option<Error>,
    close_timer: Option<Pin<Box<Sleep>>>,
}

/// Keepalive and idle deadlines, served by one sleep reset to the earliest of them.
struct Timers {
    sleep: Pin<Box<Sleep>>,
    ping_interval: Option<Duration>,
    ping_timeout: Duration,
    idle_timeout: Option<Duration>,
    next_ping: Option<Instant>,
    /// Set while a ping is unanswered: any bytes from the peer clear it.
    pong_deadline: Option<Instant>,
    idle_deadline: Option<Instant>,
}

impl Timers {
    fn new(config: &Config) -> Option<Box<Self>> {
        if config.ping_interval.is_none() && config.idle_timeout.is_none() {
            return None;
        }
        let now = Instant::now();
        let mut t = Self {
            sleep: Box::pin(tokio::time::sleep_until(now)),
            ping_interval: config.ping_interval,
            ping_timeout: config.ping_timeout,
            idle_timeout: config.idle_timeout,
            next_ping: config.ping_interval.map(|i| now + i),
            pong_deadline: None,
            idle_deadline: config.idle_timeout.map(|i| now + i),
        };
        if let Some(d) = t.earliest() {
            t.sleep.as_mut().reset(d);
        }
        Some(Box::new(t))
    }

    fn earliest(&self) -> Option<Instant> {
        [self.next_ping, self.pong_deadline, self.idle_deadline]
            .into_iter()
            .flatten()
            .min()
    }
}

/// What a timer asks of the socket.
enum Due {
    Nothing,
    Ping,
    PeerGone(Duration),
    Idle,
}

impl<S> Inner<S> {
    fn rare(&mut self) -> &mut Rare {
        self.rare.get_or_insert_with(Box::default)
    }

    fn final_error(&self) -> Option<&Error> {
        self.rare.as_ref()?.final_error.as_ref()
    }

    /// Ends the stream with `e` once the transport is closed.
    fn finish_with(&mut self, e: Error) {
        self.rare().final_error = Some(e);
        self.phase = Phase::Finishing;
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Inner<S> {
    /// Polls the keepalive and idle timers and acts on what is due. `true`: something
    /// changed (a ping or a close was queued, or the peer is gone).
    fn poll_timers(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(t) = self.timers.as_mut() else {
            return false;
        };
        let Some(deadline) = t.earliest() else {
            return false;
        };
        if t.sleep.deadline() != deadline {
            t.sleep.as_mut().reset(deadline);
        }
        if t.sleep.as_mut().poll(cx).is_pending() {
            return false;
        }
        let now = Instant::now();
        let due = if t.pong_deadline.is_some_and(|d| d <= now) {
            Due::PeerGone(t.ping_timeout)
        } else if t.idle_deadline.is_some_and(|d| d <= now) {
            t.idle_deadline = None;
            Due::Idle
        } else if t.next_ping.is_some_and(|d| d <= now) {
            t.next_ping = t.ping_interval.map(|i| now + i);
            if t.pong_deadline.is_none() {
                t.pong_deadline = Some(now + t.ping_timeout);
            }
            Due::Ping
        } else {
            Due::Nothing
        };
        match due {
            Due::Nothing => false,
            Due::Ping => {
                // Only while open: nothing follows our close frame.
                let _ = self.conn.send_ping(b"wsduplex keepalive");
                true
            }
            Due::Idle => {
                let _ = self.conn.close(CloseCode::GOING_AWAY, "idle timeout");
                true
            }
            Due::PeerGone(after) => {
                self.timers = None;
                self.finish_with(Error::KeepaliveTimeout(after));
                true
            }
        }
    }

    /// Arms the close timer on first use and polls it. Called only on paths that are about
    /// to wait: a close that completes at once never touches the timer wheel (which costs a
    /// wake-up of the runtime's driver).
    fn close_timer_expired(&mut self, cx: &mut Context<'_>) -> bool {
        let timeout = self.close_timeout;
        self.rare()
            .close_timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)))
            .as_mut()
            .poll(cx)
            .is_ready()
    }

    /// Writes everything queued in the core, then flushes the transport.
    fn poll_flush_tx(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        while let Some(tx) = self.conn.poll_transmit() {
            let written = if tx.chunk().len() == tx.remaining() {
                // One buffer (small frames all go into one): a plain write, without setting up
                // an array of slices here and importing it in the kernel.
                ready!(Pin::new(&mut self.io).poll_write(cx, tx.chunk()))?
            } else {
                let mut slices = [IoSlice::new(&[]); 32];
                let n = tx.chunks_vectored(&mut slices);
                ready!(Pin::new(&mut self.io).poll_write_vectored(cx, &slices[..n]))?
            };
            if written == 0 {
                return Poll::Ready(Err(
                    std::io::Error::from(std::io::ErrorKind::WriteZero).into()
                ));
            }
            tx.advance(written);
        }
        Pin::new(&mut self.io).poll_flush(cx).map_err(Error::from)
    }

    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Message>>> {
        self.poll_recv(cx, None::<fn(MessageRef<'_>, &mut Reply<'_>)>)
    }

    /// Reads, and yields the next item; with `on_data`, text and binary messages go to it
    /// (borrowed) instead, and the next other item is yielded.
    fn poll_recv<F>(
        &mut self,
        cx: &mut Context<'_>,
        mut on_data: Option<F>,
    ) -> Poll<Option<Result<Message>>>
    where
        F: FnMut(MessageRef<'_>, &mut Reply<'_>),
    {
        loop {
            // Checked before every event, so a flood of incoming data cannot starve pings.
            if self.timers.is_some() && self.phase == Phase::Open && self.poll_timers(cx) {
                continue;
            }
            if let Some(f) = on_data.as_mut() {
                // A message is taken only when its reply can be queued, as a `Sink` waits
                // for `poll_ready`.
                match self.poll_ready(cx) {
                    Poll::Ready(Ok(())) => {}
                    Poll::Ready(Err(e)) => {
                        self.finish_with(e);
                        continue;
                    }
                    Poll::Pending => return self.pending_while_closing(cx),
                }
                if self.take_borrowed(f) {
                    continue;
                }
            }
            if let Some(ev) = self.conn.poll_event() {
                if let Message::Close(_) = ev {
                    self.rare().final_close = Some(ev);
                    continue;
                }
                if let Some(len) = data_len(&ev) {
                    metrics::received(len);
                    self.data_arrived();
                    if let Some(f) = on_data.as_mut() {
                        let msg = ev.as_data().expect("a text or binary message");
                        f(msg, &mut Reply::new(self, Some(&ev)));
                        continue;
                    }
                }
                return Poll::Ready(Some(Ok(ev)));
            }
            match self.phase {
                Phase::Done => return Poll::Ready(None),
                Phase::Finishing => {
                    ready!(self.poll_finish(cx));
                    self.phase = Phase::Done;
                    metrics::closed(
                        self.conn.sent_close_code().map(CloseCode::as_u16),
                        self.conn
                            .received_close_code()
                            .map_or(1006, CloseCode::as_u16),
                    );
                    return Poll::Ready(self.final_item());
                }
                Phase::Open => {}
            }
            // Also checked here, not only before waiting: a peer that never answers our close
            // but keeps sending would otherwise never let the timer be looked at (polled when
            // the task's budget is spent, a timer always looks pending).
            if *self.conn.state() == State::Closing && self.close_timer_expired(cx) {
                self.finish_with(Error::CloseTimeout);
                continue;
            }
            match self.conn.state() {
                State::Open | State::Closing => {}
                State::Closed | State::Failed(_) => {
                    self.phase = Phase::Finishing;
                    continue;
                }
                #[allow(unreachable_patterns)]
                _ => {}
            }
            // Flush what is queued; stop reading while the peer does not take our bytes.
            match self.poll_flush_tx(cx) {
                Poll::Ready(Err(e)) => {
                    self.finish_with(e);
                    continue;
                }
                Poll::Pending if self.conn.buffered_amount() >= self.read_pause() => {
                    return self.pending_while_closing(cx);
                }
                _ => {}
            }
            let want = self.conn.receive_hint().clamp(MIN_READ, MAX_READ);
            let buf = self.conn.receive_buffer();
            if self.rx_released {
                self.rx_released = false;
                *buf = buffers::take();
            }
            buf.reserve(want);
            let read = tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, buf);
            let Poll::Ready(read) = read else {
                return self.pending_while_closing(cx);
            };
            match read {
                Ok(0) => {
                    // The state now says whether that EOF was clean.
                    let _ = self.conn.receive_eof();
                }
                Ok(_) => {
                    // Any bytes from the peer prove it is alive. They are decoded at the top
                    // of the loop: by `receive_with` when it can, otherwise by `poll_event`.
                    if let Some(t) = self.timers.as_mut() {
                        t.pong_deadline = None;
                    }
                    // Replies and pongs are likely: a kept buffer to write them into.
                    self.conn.give_transmit_buffer(buffers::take);
                }
                Err(e) => self.finish_with(e.into()),
            }
        }
    }

    /// Hands the whole small messages buffered to `f`, borrowed from the receive buffer
    /// ([`Connection::receive_with`]). Whether it handed out any and a full queue (with
    /// [`SlowReader::Wait`]) stopped it: the caller then writes before taking more.
    fn take_borrowed<F>(&mut self, f: &mut F) -> bool
    where
        F: FnMut(MessageRef<'_>, &mut Reply<'_>),
    {
        let limit = match self.slow_reader {
            SlowReader::Wait => self.max_write_buffer,
            // The policy applies per reply; reading pauses at `read_pause`.
            SlowReader::Drop | SlowReader::Close => usize::MAX,
        };
        let (slow_reader, max_write_buffer) = (self.slow_reader, self.max_write_buffer);
        // An error is recorded in the state, and comes out of the next read.
        let n = self
            .conn
            .receive_with(limit, |msg, tx| {
                metrics::received(msg.len());
                let mut reply = Reply {
                    tx,
                    slow_reader,
                    max_write_buffer,
                    shared: None,
                };
                f(msg, &mut reply);
            })
            .unwrap_or(0);
        if n == 0 {
            return false;
        }
        self.data_arrived();
        self.conn.buffered_amount() >= limit
    }

    /// A text or binary message arrived: the idle timer starts again.
    fn data_arrived(&mut self) {
        if let Some(t) = self.timers.as_mut() {
            if let Some(idle) = t.idle_timeout {
                t.idle_deadline = Some(Instant::now() + idle);
            }
        }
    }

    /// Gives the empty read and write buffers back to this thread's pool (see
    /// [`buffers`]), and frees the rest that an idle connection does not need.
    fn release_buffers(&mut self) {
        if let Some(rx) = self.conn.take_receive_buffer() {
            buffers::give(rx);
            self.rx_released = true;
        }
        if let Some(tx) = self.conn.take_transmit_buffer() {
            buffers::give(tx);
        }
        self.conn.shrink_buffers();
    }

    /// About to wait for the peer. Nothing is buffered now, so the buffers are released: an
    /// idle connection holds no read or write buffer (they come back on the next read). While
    /// our close is unanswered, the close timer bounds the wait.
    fn pending_while_closing(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Message>>> {
        self.release_buffers();
        if *self.conn.state() == State::Closing && self.close_timer_expired(cx) {
            self.finish_with(Error::CloseTimeout);
            return self.poll_next(cx);
        }
        Poll::Pending
    }

    /// Flushes what is owed (a close reply, an error's close frame), then closes the
    /// transport: a server closes TCP first (RFC 6455 §7.1.1), a client waits for the
    /// server to do so. Bounded by the close timer.
    fn poll_finish(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        // Each step that would wait checks the timer; once it has expired, steps are skipped.
        if matches!(self.final_error(), None | Some(Error::CloseTimeout))
            && self.poll_flush_tx(cx).is_pending()
            && !self.close_timer_expired(cx)
        {
            return Poll::Pending;
        }
        let wait_for_server = self.conn.role() == Role::Client
            && *self.conn.state() == State::Closed
            && self.final_error().is_none();
        if wait_for_server && !self.server_closed {
            // Discard anything until the server closes TCP.
            loop {
                let buf = self.conn.receive_buffer();
                buf.clear();
                buf.reserve(MIN_READ);
                match tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, buf) {
                    Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => break,
                    Poll::Ready(Ok(_)) => continue,
                    Poll::Pending if self.close_timer_expired(cx) => break,
                    Poll::Pending => return Poll::Pending,
                }
            }
            self.server_closed = true;
        }
        if !self.write_shutdown {
            match Pin::new(&mut self.io).poll_shutdown(cx) {
                Poll::Pending if !self.close_timer_expired(cx) => return Poll::Pending,
                _ => self.write_shutdown = true,
            }
        }
        self.conn.receive_buffer().clear();
        self.release_buffers();
        Poll::Ready(())
    }

    fn final_item(&mut self) -> Option<Result<Message>> {
        if let Some(e) = self.rare.as_mut().and_then(|r| r.final_error.take()) {
            return Some(Err(e));
        }
        match self.conn.state() {
            State::Failed(e) => Some(Err(Error::Protocol(e.clone()))),
            _ => self.rare.as_mut()?.final_close.take().map(Ok),
        }
    }

    /// Queued bytes at which reading pauses until the peer takes some.
    fn read_pause(&self) -> usize {
        match self.slow_reader {
            SlowReader::Wait => self.max_write_buffer,
            // Reading goes on past the limit, so the next message meets the policy.
            SlowReader::Drop | SlowReader::Close => self.max_write_buffer.saturating_mul(2),
        }
    }

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        if self.slow_reader == SlowReader::Wait
            && self.conn.buffered_amount() >= self.max_write_buffer
        {
            ready!(self.poll_flush_tx(cx))?;
        }
        Poll::Ready(Ok(()))
    }

    fn start_send(&mut self, msg: Message) -> Result<()> {
        let Some(len) = data_len(&msg) else {
            return self.conn.send(msg).map_err(Error::from);
        };
        let (slow_reader, max) = (self.slow_reader, self.max_write_buffer);
        queue_data(&mut self.conn.sender(), slow_reader, max, len, |tx| {
            tx.send(msg)
        })
    }

    fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        if *self.conn.state() == State::Open {
            self.conn.close(CloseCode::NORMAL, "")?;
        }
        self.poll_flush_tx(cx)
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
                    .rare
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
        let timers = Timers::new(&config);
        let mut conn = Connection::new(role, config.protocol);
        if !leftover.is_empty() {
            // Errors are recorded in the state and surface on the first read.
            let _ = conn.receive(leftover);
        }
        Self {
            inner: Inner {
                io,
                conn,
                close_timeout: config.close_timeout,
                max_write_buffer: config.max_write_buffer,
                slow_reader: config.slow_reader,
                phase: Phase::Open,
                server_closed: false,
                write_shutdown: false,
                rx_released: false,
                timers,
                rare: None,
            },
        }
    }

    pub(crate) fn with_subprotocol(mut self, p: Option<String>) -> Self {
        if let Some(p) = p {
            self.inner.rare().subprotocol = Some(p.into_boxed_str());
        }
        self
    }

    /// The subprotocol the handshake selected (the browser's `protocol`).
    pub fn subprotocol(&self) -> Option<&str> {
        self.inner.rare.as_ref()?.subprotocol.as_deref()
    }

    /// Outgoing bytes not yet written (the browser's `bufferedAmount`).
    pub fn buffered_amount(&self) -> usize {
        self.inner.conn.buffered_amount()
    }

    /// The protocol state.
    pub fn state(&self) -> &State {
        self.inner.conn.state()
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
                let timeout = self.inner.close_timeout;
                let flush = poll_fn(|cx| self.inner.poll_flush_tx(cx));
                let _ = tokio::time::timeout(timeout, flush).await;
                Err(e)
            }
            Err(e) => Err(e),
        }
    }

    /// Splits into a reading half and a writing half for use from two tasks.
    pub fn split(mut self) -> (ReadHalf<S>, WriteHalf<S>) {
        let subprotocol = self.inner.rare.as_mut().and_then(|r| r.subprotocol.take());
        let shared = Arc::new(Shared {
            inner: Mutex::new(self.inner),
            wakers: Arc::new(WakerPair::default()),
            subprotocol,
        });
        (
            ReadHalf {
                shared: shared.clone(),
            },
            WriteHalf { shared },
        )
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

struct Shared<S> {
    inner: Mutex<Inner<S>>,
    wakers: Arc<WakerPair>,
    subprotocol: Option<Box<str>>,
}

impl<S> Shared<S> {
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
    shared: Arc<Shared<S>>,
}

/// The writing half of a split [`WebSocket`].
pub struct WriteHalf<S> {
    shared: Arc<Shared<S>>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> ReadHalf<S> {
    /// The next message; see [`WebSocket::recv`].
    pub async fn recv(&mut self) -> Option<Result<Message>> {
        poll_fn(|cx| self.shared.with(cx, true, |i, cx| i.poll_next(cx))).await
    }

    /// The selected subprotocol.
    pub fn subprotocol(&self) -> Option<&str> {
        self.shared.subprotocol.as_deref()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WriteHalf<S> {
    /// Sends a message and flushes it; see [`WebSocket::send`].
    pub async fn send(&mut self, msg: impl Into<Message>) -> Result<()> {
        let msg = msg.into();
        poll_fn(|cx| self.shared.with(cx, false, |i, cx| i.poll_ready(cx))).await?;
        self.shared.lock().start_send(msg)?;
        poll_fn(|cx| self.shared.with(cx, false, |i, cx| i.poll_flush_tx(cx))).await
    }

    /// Starts the closing handshake; the reading half sees the peer's reply.
    pub async fn close(&mut self, code: CloseCode, reason: &str) -> Result<()> {
        self.shared.lock().conn.close(code, reason)?;
        poll_fn(|cx| self.shared.with(cx, false, |i, cx| i.poll_flush_tx(cx))).await
    }

    /// Outgoing bytes not yet written.
    pub fn buffered_amount(&self) -> usize {
        self.shared.lock().conn.buffered_amount()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Stream for ReadHalf<S> {
    type Item = Result<Message>;
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.shared.with(cx, true, |i, cx| i.poll_next(cx))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Sink<Message> for WriteHalf<S> {
    type Error = Error;
    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.shared.with(cx, false, |i, cx| i.poll_ready(cx))
    }
    fn start_send(self: Pin<&mut Self>, item: Message) -> Result<()> {
        self.shared.lock().start_send(item)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.shared.with(cx, false, |i, cx| i.poll_flush_tx(cx))
    }
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.shared.with(cx, false, |i, cx| i.poll_close(cx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server holds a socket per idle connection (issue 3, scenario D: memory per idle
    /// connection), so its size is pinned: growing it is a decision, not an accident. `()`
    /// stands for the transport, whose size is not this crate's. 328 → 336: the fragment
    /// count of the message arriving (`proto::Config::max_fragments`); an idle `/echo`
    /// connection's task cell stays 512 bytes.
    #[test]
    #[cfg(target_pointer_width = "64")]
    fn a_socket_holds_at_most_336_bytes_beside_its_transport() {
        let size = std::mem::size_of::<WebSocket<()>>();
        assert!(size <= 336, "WebSocket<()> is {size} bytes");
    }
}
