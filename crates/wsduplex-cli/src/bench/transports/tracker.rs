//! A subscriber's reading of the room, whatever its transport: the order of the ids (none
//! lost, none twice), the window between the start marker and the last message, the
//! latencies from the publisher's stamps.

use super::wire::{Counts, Wire};
use crate::bench::report::histogram;
use anyhow::{bail, Context as _};
use hdrhistogram::Histogram;
use serde::Deserialize;
use std::borrow::Cow;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::Notify;

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
    subscribers: usize,
    joined: AtomicUsize,
    marked: AtomicUsize,
    done: AtomicUsize,
    ended: AtomicUsize,
    changed: Notify,
}

impl Shared {
    pub(super) fn new(epoch: Instant, subscribers: usize) -> Arc<Self> {
        Arc::new(Self {
            epoch,
            subscribers,
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

    /// Waits until every subscriber has the last message. A subscriber that has it waits
    /// for this before it leaves: the others would get its `left` in the same read as their
    /// last message, and count those bytes.
    pub(super) async fn everyone_done(&self) {
        self.wait(|s| s.done() >= s.subscribers).await;
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
pub(super) struct Event<'a> {
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

    pub(super) fn shared(&self) -> &Shared {
        &self.shared
    }

    pub(super) fn wire(&self) -> &Arc<Wire> {
        &self.wire
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
    pub(super) fn handle(&mut self, e: Event<'_>) -> anyhow::Result<bool> {
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
        let shared = Shared::new(Instant::now(), 2);
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
}
