//! Counters of what a process's WebSockets do, for a Prometheus `/metrics` endpoint:
//! opening handshakes by outcome, messages and their bytes in and out, close codes sent and
//! received, and send-queue overflows.
//!
//! The per-message path must not pay for shared counters (an atomic add on a cache line that
//! every core writes costs more than framing a small message). So each thread that serves
//! sockets counts into counters of its own, written only by that thread with plain loads and
//! stores, and a scrape adds up the threads' counters. A thread counts once it is attached
//! to a [`Metrics`] with [`Metrics::attach_current_thread`] (the `wsduplex serve` workers
//! are); on other threads counting costs one thread-local read and counts nothing.
//!
//! ```
//! let metrics = wsduplex::metrics::Metrics::default();
//! metrics.attach_current_thread();
//! // ... serve sockets on this thread ...
//! let now = metrics.snapshot();
//! assert_eq!(now.messages_in, 0);
//! ```

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

/// The close codes counted one by one (the ones RFC 6455 defines that occur on the wire or
/// stand for no close frame, and the hub's 4008); any other code counts as `other`.
pub const CLOSE_CODES: [u16; 15] = [
    1000, 1001, 1002, 1003, 1005, 1006, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 4008,
];
const CLOSE_SLOTS: usize = CLOSE_CODES.len() + 1;

/// One thread's counters. Written by that thread only, read by any.
#[derive(Default)]
struct Counters {
    messages_in: AtomicU64,
    messages_out: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    handshakes_accepted: AtomicU64,
    handshakes_refused: AtomicU64,
    overflows_dropped: AtomicU64,
    overflows_closed: AtomicU64,
    closes_sent: [AtomicU64; CLOSE_SLOTS],
    closes_received: [AtomicU64; CLOSE_SLOTS],
}

thread_local! {
    /// This thread's counters, once attached. A `Copy` reference: reading it is one load.
    static LOCAL: Cell<Option<&'static Counters>> = const { Cell::new(None) };
}

/// Adds `n`: a load and a store, not an atomic add, as only the owning thread writes.
#[inline]
fn add(c: &AtomicU64, n: u64) {
    c.store(c.load(Relaxed).wrapping_add(n), Relaxed);
}

#[inline]
fn count(f: impl FnOnce(&Counters)) {
    if let Some(c) = LOCAL.with(Cell::get) {
        f(c);
    }
}

fn close_slot(code: u16) -> usize {
    CLOSE_CODES
        .iter()
        .position(|&c| c == code)
        .unwrap_or(CLOSE_CODES.len())
}

/// A data message of `len` payload bytes was received.
#[inline]
pub(crate) fn received(len: usize) {
    count(|c| {
        add(&c.messages_in, 1);
        add(&c.bytes_in, len as u64);
    });
}

/// A data message of `len` payload bytes was queued to send.
#[inline]
pub(crate) fn sent(len: usize) {
    count(|c| {
        add(&c.messages_out, 1);
        add(&c.bytes_out, len as u64);
    });
}

/// An opening handshake ended: `true` when `101` was sent.
pub(crate) fn handshake(accepted: bool) {
    count(|c| {
        add(
            if accepted {
                &c.handshakes_accepted
            } else {
                &c.handshakes_refused
            },
            1,
        )
    });
}

/// A connection finished: the close code it sent (if it sent a close frame) and the one it
/// received (1005 for a close frame without a code, 1006 for none at all).
pub(crate) fn closed(sent: Option<u16>, received: u16) {
    count(|c| {
        if let Some(code) = sent {
            add(&c.closes_sent[close_slot(code)], 1);
        }
        add(&c.closes_received[close_slot(received)], 1);
    });
}

/// What was done with a message that found its receiver's queue full.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Overflow {
    /// The message was dropped; the connection goes on.
    Dropped,
    /// The connection was closed.
    Closed,
}

/// Counts a send-queue overflow on this thread. The sockets count their own (see
/// [`crate::socket::SlowReader`]); this is for queues above them, such as a chat hub's.
pub fn queue_overflow(what: Overflow) {
    count(|c| match what {
        Overflow::Dropped => add(&c.overflows_dropped, 1),
        Overflow::Closed => add(&c.overflows_closed, 1),
    });
}

/// The threads that count, for one server.
#[derive(Default)]
pub struct Metrics {
    threads: Mutex<Vec<&'static Counters>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// From now on, what the sockets polled on this thread do is counted here. Each call
    /// gives the thread new counters (about 400 bytes, kept for the life of the process):
    /// call it once per thread, when the thread starts.
    pub fn attach_current_thread(&self) {
        let counters: &'static Counters = Box::leak(Box::default());
        self.threads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(counters);
        LOCAL.with(|l| l.set(Some(counters)));
    }

    /// The sums over the attached threads, now.
    pub fn snapshot(&self) -> Snapshot {
        let threads = self.threads.lock().unwrap_or_else(|p| p.into_inner());
        let sum = |f: &dyn Fn(&Counters) -> &AtomicU64| -> u64 {
            threads.iter().map(|c| f(c).load(Relaxed)).sum()
        };
        let codes = |sent: bool| -> Vec<(Option<u16>, u64)> {
            (0..CLOSE_SLOTS)
                .map(|i| {
                    let n = sum(&|c| {
                        if sent {
                            &c.closes_sent[i]
                        } else {
                            &c.closes_received[i]
                        }
                    });
                    (CLOSE_CODES.get(i).copied(), n)
                })
                .collect()
        };
        Snapshot {
            messages_in: sum(&|c| &c.messages_in),
            messages_out: sum(&|c| &c.messages_out),
            bytes_in: sum(&|c| &c.bytes_in),
            bytes_out: sum(&|c| &c.bytes_out),
            handshakes_accepted: sum(&|c| &c.handshakes_accepted),
            handshakes_refused: sum(&|c| &c.handshakes_refused),
            overflows_dropped: sum(&|c| &c.overflows_dropped),
            overflows_closed: sum(&|c| &c.overflows_closed),
            closes_sent: codes(true),
            closes_received: codes(false),
        }
    }
}

/// The counters of a [`Metrics`] at one moment. Every figure only grows.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct Snapshot {
    /// Text and binary messages received.
    pub messages_in: u64,
    /// Text and binary messages queued to send.
    pub messages_out: u64,
    /// Their payload bytes (after inflating), received.
    pub bytes_in: u64,
    /// Their payload bytes (before compressing), sent.
    pub bytes_out: u64,
    /// Opening handshakes answered with `101`.
    pub handshakes_accepted: u64,
    /// Opening handshakes refused (`400`, `401`, `426`, ...) or failed while answering.
    pub handshakes_refused: u64,
    /// Messages dropped because the receiver's send queue was full.
    pub overflows_dropped: u64,
    /// Connections closed because their send queue was full.
    pub overflows_closed: u64,
    /// Close frames sent, by code: each of [`CLOSE_CODES`], then `None` for any other.
    pub closes_sent: Vec<(Option<u16>, u64)>,
    /// Connections ended by the peer, by the code it sent: as `closes_sent`; 1005 is a
    /// close frame without a code, 1006 no close frame at all.
    pub closes_received: Vec<(Option<u16>, u64)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_attached_threads_count_and_a_snapshot_adds_them_up() {
        let m = Metrics::default();
        received(5); // not attached yet: not counted
        m.attach_current_thread();
        received(5);
        sent(7);
        closed(Some(1000), 1006);
        closed(None, 4321);
        std::thread::scope(|s| {
            s.spawn(|| {
                m.attach_current_thread();
                received(1);
                handshake(true);
                queue_overflow(Overflow::Closed);
            });
            s.spawn(|| received(100)); // never attached
        });
        let now = m.snapshot();
        assert_eq!((now.messages_in, now.bytes_in), (2, 6));
        assert_eq!((now.messages_out, now.bytes_out), (1, 7));
        assert_eq!((now.handshakes_accepted, now.handshakes_refused), (1, 0));
        assert_eq!((now.overflows_dropped, now.overflows_closed), (0, 1));
        assert!(now.closes_sent.contains(&(Some(1000), 1)));
        assert!(now.closes_received.contains(&(Some(1006), 1)));
        assert!(now.closes_received.contains(&(None, 1)));
        assert_eq!(now.closes_sent.len(), CLOSE_CODES.len() + 1);
    }
}
