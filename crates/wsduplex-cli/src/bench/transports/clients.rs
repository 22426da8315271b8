//! The clients of `bench transports`: a subscriber per transport, the publisher, and what
//! they share: the byte counts at the socket, the order check, the events' text.
//!
//! Every subscriber's TCP connections are wrapped in [`Counted`], so what is counted is
//! everything the socket carried: HTTP heads, WebSocket or HTTP/2 framing, the JSON.
//! Each plain HTTP exchange of the hub is a connection of its own (the hub answers with
//! `Connection: close`), so a long or plain poll opens one per request.

use super::Transport;
use crate::bench::report::histogram;
use anyhow::{bail, Context as _};
use hdrhistogram::Histogram;
use serde::Deserialize;
use std::borrow::Cow;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use wsduplex::client::{ClientConfig, Target};
use wsduplex::Message;

/// One client's traffic, over all its connections.
#[derive(Default, Debug)]
pub(super) struct Wire {
    /// Bytes read from the server.
    read: AtomicU64,
    /// Bytes written to the server.
    written: AtomicU64,
    /// HTTP requests (a WebSocket's opening request is one).
    requests: AtomicU64,
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

/// A message lost, repeated or out of order: a failure of the run at any rate.
#[derive(Debug)]
pub(super) struct OutOfOrder(String);

impl std::fmt::Display for OutOfOrder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for OutOfOrder {}

/// Where a subscriber's room ids stand: every message must carry the id after the last.
#[derive(Debug)]
pub(super) struct Order {
    next: u64,
}

impl Order {
    /// After a welcome whose `last_id` is `last`.
    pub(super) fn after(last: u64) -> Self {
        Self { next: last + 1 }
    }

    pub(super) fn check(&mut self, id: u64) -> Result<(), OutOfOrder> {
        if id == self.next {
            self.next += 1;
            Ok(())
        } else if id > self.next {
            let lost = if id == self.next + 1 {
                format!("message {} lost", self.next)
            } else {
                format!("messages {} to {} lost", self.next, id - 1)
            };
            Err(OutOfOrder(format!("{lost} (got {id} next)")))
        } else {
            Err(OutOfOrder(format!(
                "message {id} again or out of order (expected {})",
                self.next
            )))
        }
    }
}

/// What the subscribers share with the main task: the clock, and how many have joined,
/// have the start marker, have the last message, have ended (either way).
pub(super) struct Shared {
    /// The one clock of publish stamps and receipts.
    epoch: Instant,
    joined: AtomicUsize,
    marked: AtomicUsize,
    done: AtomicUsize,
    ended: AtomicUsize,
    changed: Notify,
}

impl Shared {
    pub(super) fn new(epoch: Instant) -> Arc<Self> {
        Arc::new(Self {
            epoch,
            joined: AtomicUsize::new(0),
            marked: AtomicUsize::new(0),
            done: AtomicUsize::new(0),
            ended: AtomicUsize::new(0),
            changed: Notify::new(),
        })
    }

    pub(super) fn joined(&self) -> usize {
        self.joined.load(Ordering::SeqCst)
    }

    pub(super) fn marked(&self) -> usize {
        self.marked.load(Ordering::SeqCst)
    }

    pub(super) fn done(&self) -> usize {
        self.done.load(Ordering::SeqCst)
    }

    pub(super) fn ended_count(&self) -> usize {
        self.ended.load(Ordering::SeqCst)
    }

    /// A subscriber's task is over.
    pub(super) fn ended(&self) {
        self.arrive(&self.ended);
    }

    /// Waits until `ready` holds.
    pub(super) async fn wait(&self, ready: impl Fn(&Self) -> bool) {
        loop {
            let changed = self.changed.notified();
            if ready(self) {
                return;
            }
            changed.await;
        }
    }

    pub(super) fn nanos(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    fn arrive(&self, counter: &AtomicUsize) {
        counter.fetch_add(1, Ordering::SeqCst);
        self.changed.notify_waiters();
    }
}

/// The text of message `seq` of `total`, stamped `nanos` on the shared clock. Message 0 is
/// the start marker: once every subscriber has it, the measured messages 1..=total follow.
pub(super) fn text(seq: u64, total: u64, nanos: u64) -> String {
    format!("{seq}/{total} {nanos}")
}

fn parse_text(text: &str) -> Option<(u64, u64, u64)> {
    let (progress, nanos) = text.split_once(' ')?;
    let (seq, total) = progress.split_once('/')?;
    Some((seq.parse().ok()?, total.parse().ok()?, nanos.parse().ok()?))
}

/// The fields of a hub event that the subscribers read.
#[derive(Deserialize)]
struct Event<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    id: Option<u64>,
    #[serde(borrow)]
    text: Option<Cow<'a, str>>,
    last_id: Option<u64>,
    #[serde(borrow)]
    message: Option<Cow<'a, str>>,
}

/// What a subscriber measured between the start marker and the last message.
pub(super) struct Measured {
    pub(super) delivered: u64,
    pub(super) latency: Histogram<u64>,
    /// The traffic of the window, its requests plus the opening one.
    pub(super) window: Counts,
}

/// One subscriber's reading of the room: the order, the window, the latencies.
pub(super) struct Tracker {
    order: Option<Order>,
    shared: Arc<Shared>,
    wire: Arc<Wire>,
    start: Option<Counts>,
    end: Option<Counts>,
    latency: Histogram<u64>,
    delivered: u64,
}

impl Tracker {
    pub(super) fn new(shared: Arc<Shared>, wire: Arc<Wire>) -> Self {
        Self {
            order: None,
            shared,
            wire,
            start: None,
            end: None,
            latency: histogram(),
            delivered: 0,
        }
    }

    pub(super) fn delivered(&self) -> u64 {
        self.delivered
    }

    pub(super) fn finished(&self) -> bool {
        self.end.is_some()
    }

    /// Reads one event (its JSON); true once the last message is in.
    pub(super) fn event(&mut self, json: &[u8]) -> anyhow::Result<bool> {
        let e: Event<'_> = serde_json::from_slice(json).with_context(|| {
            format!(
                "the server sent an event that is not JSON: {}",
                String::from_utf8_lossy(json)
            )
        })?;
        self.handle(e)
    }

    /// [`event`](Self::event), parsed.
    fn handle(&mut self, e: Event<'_>) -> anyhow::Result<bool> {
        let received = self.shared.nanos();
        match &*e.kind {
            "welcome" => {
                self.order = Some(Order::after(e.last_id.unwrap_or(0)));
                self.shared.arrive(&self.shared.joined);
            }
            "message" => {
                let order = self
                    .order
                    .as_mut()
                    .context("a message came before the welcome")?;
                order.check(e.id.context("a message without an id")?)?;
                let text = e.text.as_deref().unwrap_or_default();
                let (seq, total, sent) =
                    parse_text(text).with_context(|| format!("unexpected message {text:?}"))?;
                if seq == 0 {
                    self.start = Some(self.wire.counts());
                    self.shared.arrive(&self.shared.marked);
                    return Ok(false);
                }
                if self.start.is_none() {
                    bail!("message {seq} came before the start marker");
                }
                self.delivered += 1;
                self.latency
                    .saturating_record(received.saturating_sub(sent).max(1));
                if seq == total {
                    self.end = Some(self.wire.counts());
                    self.shared.arrive(&self.shared.done);
                    return Ok(true);
                }
            }
            "error" => bail!(
                "the server sent an error: {}",
                e.message.as_deref().unwrap_or("?")
            ),
            _ => {}
        }
        Ok(false)
    }

    pub(super) fn measured(self) -> Option<Measured> {
        let (start, end) = (self.start?, self.end?);
        let mut window = end - start;
        window.requests += 1;
        Some(Measured {
            delivered: self.delivered,
            latency: self.latency,
            window,
        })
    }
}

/// Where the subscribers and the publisher go.
#[derive(Clone)]
pub(super) struct Hub {
    pub(super) addr: SocketAddr,
    pub(super) room: String,
}

/// A subscriber on `transport`, until the last message is in (then it leaves) or it fails.
/// `phase` staggers a plain poller's second among the others'.
pub(super) async fn subscribe(
    transport: Transport,
    hub: &Hub,
    name: &str,
    phase: Duration,
    tracker: &mut Tracker,
) -> anyhow::Result<()> {
    let wire = tracker.wire.clone();
    match transport {
        Transport::Ws | Transport::WsH2 => websocket(transport, hub, name, &wire, tracker).await,
        Transport::Sse => sse(hub, name, &wire, tracker).await,
        Transport::LongPoll => poll(hub, name, &wire, None, tracker).await,
        Transport::Poll => poll(hub, name, &wire, Some(phase), tracker).await,
    }
}

async fn websocket(
    transport: Transport,
    hub: &Hub,
    name: &str,
    wire: &Arc<Wire>,
    tracker: &mut Tracker,
) -> anyhow::Result<()> {
    let url = format!("ws://{}/chat/{}?name={name}", hub.addr, hub.room);
    let mut config = ClientConfig::default();
    config.deflate = None;
    let io = Counted::connect(hub.addr, wire).await?;
    wire.requests.fetch_add(1, Ordering::Relaxed);
    if transport == Transport::WsH2 {
        let (ws, _) = wsduplex::client::client_handshake_http2(io, url.as_str(), &config).await?;
        read_websocket(ws, tracker).await
    } else {
        let target = Target::parse(&url)?;
        let (ws, _) = wsduplex::client::client_handshake(io, &target, &config).await?;
        read_websocket(ws, tracker).await
    }
}

async fn read_websocket<S: AsyncRead + AsyncWrite + Unpin>(
    mut ws: wsduplex::WebSocket<S>,
    tracker: &mut Tracker,
) -> anyhow::Result<()> {
    while let Some(message) = ws.recv().await {
        if let Message::Text(t) = message? {
            if tracker.event(t.as_bytes())? {
                ws.close(wsduplex::CloseCode::NORMAL, "").await?;
                return Ok(());
            }
        }
    }
    bail!("the server closed the connection")
}

/// Reads a response head from `io`: the status, and the bytes after the head.
async fn read_head<S: AsyncRead + Unpin>(io: &mut S) -> anyhow::Result<(u16, Vec<u8>)> {
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

/// A `/poll` answer.
#[derive(Deserialize)]
struct Batch<'a> {
    session: Option<String>,
    cursor: u64,
    #[serde(borrow)]
    events: Vec<Event<'a>>,
}

/// How long a plain poll may take to be answered.
const HELD: Duration = Duration::from_secs(2);

/// Long polling (`phase: None`: each `GET` waits for events) or plain polling (a `GET`
/// a second, each answered at once: the server's poll timeout is 0).
async fn poll(
    hub: &Hub,
    name: &str,
    wire: &Arc<Wire>,
    phase: Option<Duration>,
    tracker: &mut Tracker,
) -> anyhow::Result<()> {
    let path = format!("/poll/{}?name={name}", hub.room);
    let (status, body) = exchange(hub.addr, wire, "POST", &path, "", b"").await?;
    if status != 200 {
        bail!(
            "POST {path}: {status} {}",
            String::from_utf8_lossy(&body).trim()
        );
    }
    let first: Batch<'_> = serde_json::from_slice(&body).context("POST /poll answer")?;
    let session = first.session.clone().context("no session in the answer")?;
    let mut cursor = first.cursor;
    for e in first.events {
        tracker.handle(e)?;
    }
    let mut tick = phase.map(|phase| {
        let start = tokio::time::Instant::now() + phase;
        let mut t = tokio::time::interval_at(start, Duration::from_secs(1));
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        t
    });
    let get = format!("/poll/session/{session}");
    let result = async {
        while !tracker.finished() {
            if let Some(tick) = tick.as_mut() {
                tick.tick().await;
            }
            let path = format!("{get}?cursor={cursor}");
            let asked = exchange(hub.addr, wire, "GET", &path, "", b"");
            let (status, body) = match tick {
                // A plain poll is answered at once, or the server holds it: it is not plain.
                Some(_) => tokio::time::timeout(HELD, asked).await.map_err(|_| {
                    anyhow::anyhow!(
                        "a poll took over {} s to answer: plain polling needs a server started \
                         with --poll-timeout 0",
                        HELD.as_secs()
                    )
                })??,
                None => asked.await?,
            };
            if status != 200 {
                bail!(
                    "GET {path}: {status} {}",
                    String::from_utf8_lossy(&body).trim()
                );
            }
            let batch: Batch<'_> = serde_json::from_slice(&body).context("GET /poll answer")?;
            cursor = batch.cursor;
            for e in batch.events {
                if tracker.handle(e)? {
                    break;
                }
            }
        }
        anyhow::Ok(())
    }
    .await;
    // Leave the room at once rather than after the session's time-to-live.
    let _ = exchange(hub.addr, wire, "DELETE", &get, "", b"").await;
    result
}

/// Server-Sent Events: one `GET`, then the stream's `data:` lines.
async fn sse(hub: &Hub, name: &str, wire: &Arc<Wire>, tracker: &mut Tracker) -> anyhow::Result<()> {
    let path = format!("/sse/{}?name={name}", hub.room);
    let mut io = Counted::connect(hub.addr, wire).await?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\n\r\n",
        hub.addr
    );
    wire.requests.fetch_add(1, Ordering::Relaxed);
    io.write_all(request.as_bytes()).await?;
    let (status, mut buf) = read_head(&mut io).await?;
    if status != 200 {
        let mut rest = buf;
        let _ = io.read_to_end(&mut rest).await;
        bail!(
            "GET {path}: {status} {}",
            String::from_utf8_lossy(&rest).trim()
        );
    }
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        // One event ends with a blank line; its `data:` line carries the JSON.
        while let Some(end) = buf.windows(2).position(|w| w == b"\n\n") {
            let done = sse_event(&buf[..end], tracker)?;
            buf.drain(..end + 2);
            if done {
                return Ok(());
            }
        }
        let n = io.read(&mut chunk).await?;
        if n == 0 {
            bail!("the server ended the event stream");
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// One SSE event: true once the last message is in.
fn sse_event(event: &[u8], tracker: &mut Tracker) -> anyhow::Result<bool> {
    let mut done = false;
    let mut session = false;
    for line in event.split(|&b| b == b'\n') {
        if line == b"event: session" {
            session = true;
        } else if let Some(data) = line.strip_prefix(b"data: ") {
            if !session {
                done |= tracker.event(data)?;
            }
        }
    }
    Ok(done)
}

/// The publisher's side: `POST /api/rooms/ROOM/messages`; the id the room gave.
pub(super) async fn publish(
    hub: &Hub,
    token: &str,
    wire: &Arc<Wire>,
    text: &str,
) -> anyhow::Result<u64> {
    let path = format!("/api/rooms/{}/messages", hub.room);
    let body = serde_json::json!({ "text": text, "name": "publisher" }).to_string();
    let headers = format!("Authorization: Bearer {token}\r\nContent-Type: application/json\r\n");
    let (status, answer) =
        exchange(hub.addr, wire, "POST", &path, &headers, body.as_bytes()).await?;
    if status != 201 {
        bail!(
            "POST {path}: {status} {} (is the push API on, with this --api-token?)",
            String::from_utf8_lossy(&answer).trim()
        );
    }
    #[derive(Deserialize)]
    struct Published {
        id: u64,
    }
    let p: Published = serde_json::from_slice(&answer).context("the push API's answer")?;
    Ok(p.id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_catches_a_lost_message_a_repeat_and_a_swap() {
        let mut o = Order::after(0);
        for id in 1..=3 {
            o.check(id).unwrap();
        }
        let lost = o.check(5).unwrap_err().to_string();
        assert_eq!(lost, "message 4 lost (got 5 next)");
        let mut o = Order::after(10);
        let lost = o.check(14).unwrap_err().to_string();
        assert_eq!(lost, "messages 11 to 13 lost (got 14 next)");
        let mut o = Order::after(0);
        o.check(1).unwrap();
        o.check(2).unwrap();
        let again = o.check(2).unwrap_err().to_string();
        assert!(again.contains("message 2 again"), "{again}");
        let mut o = Order::after(0);
        o.check(1).unwrap();
        assert!(o.check(3).is_err());
    }

    fn message(id: u64, text: &str) -> Vec<u8> {
        serde_json::json!({"type":"message","id":id,"room":"r","name":"p","text":text,"ts":1})
            .to_string()
            .into_bytes()
    }

    #[test]
    fn a_tracker_measures_between_the_markers_and_fails_on_a_gap() {
        let shared = Shared::new(Instant::now());
        let wire = Arc::new(Wire::default());
        let mut t = Tracker::new(shared.clone(), wire.clone());
        t.event(br#"{"type":"welcome","last_id":7,"history":[]}"#)
            .unwrap();
        t.event(br#"{"type":"joined","room":"r","name":"x"}"#)
            .unwrap();
        assert!(!t.event(&message(8, &text(0, 2, 0))).unwrap());
        assert_eq!(shared.marked(), 1);
        wire.read.fetch_add(100, Ordering::Relaxed);
        assert!(!t.event(&message(9, &text(1, 2, 1))).unwrap());
        assert!(t.event(&message(10, &text(2, 2, 1))).unwrap());
        let m = t.measured().unwrap();
        assert_eq!(m.delivered, 2);
        assert_eq!(m.window.read, 100);
        assert_eq!(m.window.requests, 1, "the opening request");

        let mut t = Tracker::new(shared.clone(), wire);
        t.event(br#"{"type":"welcome","last_id":0}"#).unwrap();
        t.event(&message(1, &text(0, 3, 0))).unwrap();
        t.event(&message(2, &text(1, 3, 0))).unwrap();
        let lost = t.event(&message(4, &text(3, 3, 0))).unwrap_err();
        assert_eq!(lost.to_string(), "message 3 lost (got 4 next)");
    }

    #[test]
    fn sse_events_skip_the_session_and_read_data_lines() {
        let shared = Shared::new(Instant::now());
        let mut t = Tracker::new(shared, Arc::new(Wire::default()));
        let session = b"event: session\ndata: {\"session\":\"ab\"}";
        assert!(!sse_event(session, &mut t).unwrap());
        let welcome = b"id: 0\ndata: {\"type\":\"welcome\",\"last_id\":0}";
        assert!(!sse_event(welcome, &mut t).unwrap());
        assert!(!sse_event(b": keepalive", &mut t).unwrap());
        let mut m = b"id: 1\ndata: ".to_vec();
        m.extend(message(1, &text(0, 1, 0)));
        assert!(!sse_event(&m, &mut t).unwrap());
        let mut m = b"id: 2\ndata: ".to_vec();
        m.extend(message(2, &text(1, 1, 0)));
        assert!(sse_event(&m, &mut t).unwrap());
    }
}
