//! One connection of `bench fanout`: it joins its rooms, checks every delivery, and, for a
//! publisher, also sends at its share of the rate. Publishers are members of the rooms they
//! send to (both servers give the sender its own message back), so their deliveries are
//! checked and counted like anyone's.

use super::wire::{self, Inbound, Inbox};
use super::{Plan, Protocol};
use crate::bench::conn;
use crate::bench::report::histogram;
use crate::bench::{Control, Counter, Phase};
use anyhow::{bail, Context as _};
use hdrhistogram::Histogram;
use std::cell::RefCell;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;
use tokio::time::{Instant, MissedTickBehavior};
use wsduplex::proto::frame::OpCode;
use wsduplex::ClientStream;

/// How long joining may take (the last of 10,000 hub members reads a long welcome, and
/// everyone reads the `joined` of everyone after them).
const JOIN_TIMEOUT: Duration = Duration::from_secs(120);
/// How long the members may take, once the publishers stop, to receive what was sent.
pub(super) const DRAIN: Duration = Duration::from_secs(10);

/// A load thread's figures.
pub(super) struct Tally {
    /// Published in the measured window.
    pub(super) sent: u64,
    /// Received in the measured window.
    pub(super) deliveries: u64,
    pub(super) latency: Histogram<u64>,
    /// Messages of a stream skipped over, or never received by the end.
    pub(super) lost: u64,
    /// Messages of a stream received again, or after a later one.
    pub(super) duplicated: u64,
    /// Hub ids of a room that did not follow each other.
    pub(super) out_of_order: u64,
    /// Deliveries that did not read as a published message of this connection's rooms.
    pub(super) mismatches: u64,
    pub(super) errors: u64,
    pub(super) first_error: Option<String>,
}

impl Tally {
    pub(super) fn new() -> Self {
        Self {
            sent: 0,
            deliveries: 0,
            latency: histogram(),
            lost: 0,
            duplicated: 0,
            out_of_order: 0,
            mismatches: 0,
            errors: 0,
            first_error: None,
        }
    }

    pub(super) fn error(&mut self, message: String) {
        self.errors += 1;
        self.first_error.get_or_insert(message);
    }

    fn mismatch(&mut self, message: String) {
        self.mismatches += 1;
        self.first_error.get_or_insert(message);
    }

    pub(super) fn merge(&mut self, o: Tally) {
        self.sent += o.sent;
        self.deliveries += o.deliveries;
        self.latency.add(&o.latency).expect("equal bounds");
        self.lost += o.lost;
        self.duplicated += o.duplicated;
        self.out_of_order += o.out_of_order;
        self.mismatches += o.mismatches;
        self.errors += o.errors;
        self.first_error = self.first_error.take().or(o.first_error);
    }
}

/// A connection: which rooms it follows, and where each of their streams stands.
pub(super) struct Member<'a> {
    plan: &'a Plan,
    id: usize,
    rooms: Vec<u32>,
    /// The next sequence number expected of each stream, `rooms × publishers per room`.
    next: Vec<u64>,
    /// The hub's last id in each room.
    last_id: Vec<Option<u64>>,
    key: [u8; 4],
}

impl<'a> Member<'a> {
    pub(super) fn new(plan: &'a Plan, id: usize) -> Self {
        let rooms = plan.rooms_of(id);
        Self {
            next: vec![0; rooms.len() * plan.publishers_per_room()],
            last_id: vec![None; rooms.len()],
            rooms,
            plan,
            id,
            key: conn::mask_key(id as u64),
        }
    }

    /// Connects to its first room and, on the hub, subscribes to the others; returns once
    /// it has a welcome for each.
    pub(super) async fn join(&self) -> anyhow::Result<(TcpStream, Inbox)> {
        let join = async {
            let path = self.plan.path(self.id, self.rooms[0]);
            let (stream, leftover) = self.plan.endpoint.open_path(path).await?;
            let ClientStream::Plain(mut tcp) = stream else {
                bail!("bench fanout speaks plain ws:// only");
            };
            let mut inbox = Inbox::new(leftover);
            if self.plan.protocol == Protocol::Hub {
                let mut out = Vec::new();
                for &r in &self.rooms[1..] {
                    let sub = wire::subscribe(&self.plan.room(r));
                    out.extend(conn::masked_frame(OpCode::Text, sub.as_bytes(), self.key));
                }
                tcp.write_all(&out).await?;
                let mut welcomes = 0;
                while welcomes < self.rooms.len() {
                    while let Some((op, range)) = inbox.frame()? {
                        let payload = &inbox.buf[range];
                        match (op, wire::read(payload, &self.plan.prefix)) {
                            (OpCode::Text, Some(Inbound::Welcome)) => welcomes += 1,
                            (OpCode::Text, Some(Inbound::Error)) => {
                                bail!("the hub refused: {}", String::from_utf8_lossy(payload))
                            }
                            (OpCode::Ping, _) => {
                                let pong = conn::masked_frame(OpCode::Pong, payload, self.key);
                                tcp.write_all(&pong).await?;
                            }
                            (OpCode::Close, _) => bail!("the server closed the connection"),
                            _ => {}
                        }
                    }
                    if welcomes < self.rooms.len() {
                        inbox.fill(&mut tcp).await?;
                    }
                }
            }
            Ok((tcp, inbox))
        };
        tokio::time::timeout(JOIN_TIMEOUT, join)
            .await
            .context("joining timed out")?
            .with_context(|| format!("connection {} (room {})", self.id, self.rooms[0]))
    }

    /// Reads and checks deliveries until the end of the run and the drain after it; a
    /// publisher (`publisher`) sends from the moment the run says go.
    pub(super) async fn run(
        mut self,
        mut tcp: TcpStream,
        mut inbox: Inbox,
        publisher: Option<u32>,
        control: &Control,
        tally: &RefCell<Tally>,
        counter: &Counter,
    ) -> anyhow::Result<()> {
        let plan = self.plan;
        let done = control.done();
        tokio::pin!(done);
        let mut go = plan.go.subscribe();
        let mut sender = publisher.map(|p| Sender::new(plan, p));
        let mut started = sender.is_none();
        let mut ending: Option<Instant> = None;
        loop {
            let now = plan.nanos();
            let measuring = control.phase() == Phase::Measure;
            while let Some((op, range)) = inbox.frame()? {
                match op {
                    OpCode::Text => {
                        self.deliver(&inbox.buf[range], now, measuring, tally, counter);
                    }
                    OpCode::Ping => {
                        let pong = conn::masked_frame(OpCode::Pong, &inbox.buf[range], self.key);
                        tcp.write_all(&pong).await?;
                    }
                    OpCode::Close => bail!("the server closed the connection"),
                    _ => {}
                }
            }
            // After the end, wait for the publishers' last counts, then for everything up
            // to them.
            let woken = plan.end.changed.notified();
            tokio::pin!(woken);
            if let Some(deadline) = ending {
                woken.as_mut().enable();
                if let Some(missing) = self.missing() {
                    if missing == 0 {
                        return Ok(());
                    }
                    if Instant::now() >= deadline {
                        tally.borrow_mut().lost += missing;
                        return Ok(());
                    }
                }
            }
            inbox.make_room();
            tokio::select! {
                biased;
                read = tokio::io::AsyncReadExt::read_buf(&mut tcp, &mut inbox.buf) => {
                    if read.context("read")? == 0 {
                        bail!("the server closed the connection");
                    }
                }
                _ = go.wait_for(|g| *g), if !started => {
                    started = true;
                    if let Some(s) = &mut sender {
                        s.start();
                    }
                }
                _ = tick(&mut sender), if started && ending.is_none() => {
                    if let Some(s) = &mut sender {
                        let measuring = control.phase() == Phase::Measure;
                        s.send_due(&mut tcp, self.key, measuring, tally).await?;
                    }
                }
                _ = &mut done, if ending.is_none() => {
                    if let Some(s) = &sender {
                        s.finish();
                    }
                    ending = Some(Instant::now() + DRAIN);
                }
                _ = &mut woken, if ending.is_some() => {}
                _ = tokio::time::sleep_until(ending.unwrap_or_else(Instant::now)), if ending.is_some() => {
                    if self.missing().is_none() {
                        let mut t = tally.borrow_mut();
                        t.error(format!("connection {}: the publishers did not finish", self.id));
                        return Ok(());
                    }
                }
            }
        }
    }

    /// Once every publisher has stopped: how many messages of this connection's streams it
    /// has not received yet.
    fn missing(&self) -> Option<u64> {
        let end = &self.plan.end;
        if end.stopped.load(Ordering::SeqCst) < self.plan.publishers {
            return None;
        }
        let per_room = self.plan.publishers_per_room();
        let mut missing = 0;
        for (j, &room) in self.rooms.iter().enumerate() {
            for q in 0..per_room {
                let stream = self.plan.stream(room, q);
                let last = end.sent[stream].load(Ordering::SeqCst);
                missing += last.saturating_sub(self.next[j * per_room + q]);
            }
        }
        Some(missing)
    }

    fn deliver(
        &mut self,
        payload: &[u8],
        now: u64,
        measuring: bool,
        tally: &RefCell<Tally>,
        counter: &Counter,
    ) {
        let plan = self.plan;
        let bad = |why: &str| {
            let shown = String::from_utf8_lossy(&payload[..payload.len().min(200)]);
            format!("connection {}: {why}: {shown}", self.id)
        };
        let (room, publisher, seq, nanos, id) = match wire::read(payload, &plan.prefix) {
            Some(Inbound::Delivery {
                room,
                publisher,
                seq,
                nanos,
                id,
            }) => (room, publisher, seq, nanos, id),
            Some(Inbound::Other) => return,
            Some(Inbound::Welcome) => {
                return tally
                    .borrow_mut()
                    .mismatch(bad("a welcome it did not ask for"))
            }
            Some(Inbound::Error) => return tally.borrow_mut().error(bad("an error event")),
            None => return tally.borrow_mut().mismatch(bad("an unreadable message")),
        };
        let Some((j, q)) = plan.local(self.id, room, publisher) else {
            return tally
                .borrow_mut()
                .mismatch(bad("a message of a room or publisher it does not follow"));
        };
        let mut t = tally.borrow_mut();
        let next = &mut self.next[j * plan.publishers_per_room() + q];
        if seq == *next {
            *next += 1;
        } else if seq > *next {
            t.lost += seq - *next;
            *next = seq + 1;
        } else {
            t.duplicated += 1;
        }
        if let Some(id) = id {
            let last = &mut self.last_id[j];
            if last.is_some_and(|l| id != l + 1) {
                t.out_of_order += 1;
            }
            *last = Some(id);
        }
        counter.add(1);
        if measuring {
            t.deliveries += 1;
            let _ = t.latency.record(now.saturating_sub(nanos).max(1));
        }
    }
}

/// A publisher's side: its rooms in turn, at its share of the rate.
struct Sender<'a> {
    plan: &'a Plan,
    /// Messages per second, this publisher's share.
    rate: f64,
    /// Its streams, one per room: the room's name, the stream's index in the run, the next
    /// sequence number.
    streams: Vec<(String, usize, u64)>,
    publisher: u32,
    /// Which stream the next message goes to.
    turn: usize,
    sent: u64,
    since: Instant,
    ticker: Option<tokio::time::Interval>,
}

impl<'a> Sender<'a> {
    fn new(plan: &'a Plan, publisher: u32) -> Self {
        let q = plan.publisher_slot(publisher);
        let streams = plan
            .rooms_of(plan.connections + publisher as usize)
            .into_iter()
            .map(|r| (plan.room(r), plan.stream(r, q), 0))
            .collect();
        Self {
            plan,
            rate: plan.rate / plan.publishers as f64,
            streams,
            publisher,
            turn: 0,
            sent: 0,
            since: Instant::now(),
            ticker: None,
        }
    }

    /// Ticks as often as one message is due, at most every millisecond (several go
    /// together then).
    fn start(&mut self) {
        let period = Duration::from_secs_f64(1.0 / self.rate).max(Duration::from_millis(1));
        let mut ticker = tokio::time::interval(period);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
        self.ticker = Some(ticker);
        self.since = Instant::now();
    }

    /// Sends every message due by now, in one write.
    async fn send_due(
        &mut self,
        tcp: &mut TcpStream,
        key: [u8; 4],
        measuring: bool,
        tally: &RefCell<Tally>,
    ) -> anyhow::Result<()> {
        let due = (self.since.elapsed().as_secs_f64() * self.rate) as u64;
        if due <= self.sent {
            return Ok(());
        }
        let nanos = self.plan.nanos();
        let mut out = Vec::new();
        for _ in self.sent..due {
            let (room, _, seq) = &mut self.streams[self.turn];
            let message = wire::publish(room, self.publisher, *seq, nanos, self.plan.text);
            out.extend(conn::masked_frame(OpCode::Text, message.as_bytes(), key));
            *seq += 1;
            self.turn = (self.turn + 1) % self.streams.len();
        }
        if measuring {
            tally.borrow_mut().sent += due - self.sent;
        }
        self.sent = due;
        tcp.write_all(&out).await.context("publish")?;
        Ok(())
    }

    /// Stops, telling the members how many messages each of its streams had.
    fn finish(&self) {
        let end = &self.plan.end;
        for (_, stream, seq) in &self.streams {
            end.sent[*stream].store(*seq, Ordering::SeqCst);
        }
        end.stopped.fetch_add(1, Ordering::SeqCst);
        end.changed.notify_waiters();
    }
}

async fn tick(sender: &mut Option<Sender<'_>>) {
    match sender.as_mut().and_then(|s| s.ticker.as_mut()) {
        Some(t) => {
            t.tick().await;
        }
        None => std::future::pending().await,
    }
}
