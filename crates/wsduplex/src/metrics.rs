//! Counters of what a process's WebSockets do, for a Prometheus `/metrics` endpoint:
//! opening handshakes by outcome, requests and connections refused at the front door,
//! messages and their bytes in and out, close codes sent and received, and send-queue
//! overflows of the sockets; and [`Snapshot::render`], their Prometheus text.
//!
//! The per-message path must not pay for shared counters (an atomic add on a cache line that
//! every core writes costs more than framing a small message). So each thread that serves
//! sockets counts into counters of its own, written only by that thread with plain loads and
//! stores, and a scrape adds up the threads' counters. A thread counts once it is attached
//! to a [`Metrics`] with [`Metrics::attach_current_thread`] (the `wsduplex serve` workers
//! are); on other threads counting costs one thread-local read and counts nothing.
//!
//! What runs above the sockets counts its own (the chat hub counts the members it drops
//! for a full queue) and adds its figures to the page: see [`write_family`].
//!
//! ```
//! let metrics = wsduplex::metrics::Metrics::default();
//! metrics.attach_current_thread();
//! // ... serve sockets on this thread ...
//! let now = metrics.snapshot();
//! assert_eq!(now.messages_in, 0);
//! let page = now.render(0);
//! assert!(page.contains("wsduplex_messages_total{direction=\"in\"} 0\n"));
//! ```

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

/// The close codes counted one by one: the ones RFC 6455 defines that occur on the wire or
/// stand for no close frame. An application adds its own with
/// [`Metrics::with_close_codes`]; any other code counts as `other`.
pub const CLOSE_CODES: [u16; 14] = [
    1000, 1001, 1002, 1003, 1005, 1006, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014,
];

/// One thread's counters. Written by that thread only, read by any.
struct Counters {
    messages_in: AtomicU64,
    messages_out: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    handshakes_accepted: AtomicU64,
    handshakes_refused: AtomicU64,
    refused_max_connections: AtomicU64,
    refused_per_client: AtomicU64,
    refused_origin: AtomicU64,
    overflows_dropped: AtomicU64,
    overflows_closed: AtomicU64,
    /// The codes counted one by one (the [`Metrics`]' list); one slot more for `other`.
    codes: &'static [u16],
    closes_sent: Box<[AtomicU64]>,
    closes_received: Box<[AtomicU64]>,
}

impl Counters {
    fn new(codes: &'static [u16]) -> Self {
        let slots = || (0..=codes.len()).map(|_| AtomicU64::new(0)).collect();
        Self {
            messages_in: AtomicU64::new(0),
            messages_out: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            handshakes_accepted: AtomicU64::new(0),
            handshakes_refused: AtomicU64::new(0),
            refused_max_connections: AtomicU64::new(0),
            refused_per_client: AtomicU64::new(0),
            refused_origin: AtomicU64::new(0),
            overflows_dropped: AtomicU64::new(0),
            overflows_closed: AtomicU64::new(0),
            codes,
            closes_sent: slots(),
            closes_received: slots(),
        }
    }

    fn close_slot(&self, code: u16) -> usize {
        self.codes
            .iter()
            .position(|&c| c == code)
            .unwrap_or(self.codes.len())
    }
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

/// Counts a data message of `len` payload bytes that was written to a socket's transport
/// around the socket, as the chat hub does when it delivers to an idle member from the
/// publishing task: a socket counts what it sends itself.
#[inline]
pub fn sent_around(len: usize) {
    sent(len);
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

/// Which limit or policy of the front door turned a connection or request away.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RefusedBy {
    MaxConnections,
    PerClient,
    Origin,
}

/// The front door refused a connection or a request.
pub(crate) fn refused(by: RefusedBy) {
    count(|c| {
        add(
            match by {
                RefusedBy::MaxConnections => &c.refused_max_connections,
                RefusedBy::PerClient => &c.refused_per_client,
                RefusedBy::Origin => &c.refused_origin,
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
            add(&c.closes_sent[c.close_slot(code)], 1);
        }
        add(&c.closes_received[c.close_slot(received)], 1);
    });
}

/// What was done with a message that found its receiver's queue full.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Overflow {
    /// The message was dropped; the connection goes on.
    Dropped,
    /// The connection was closed.
    Closed,
}

/// Counts a socket's send-queue overflow on this thread (see [`crate::SlowReader`]).
pub(crate) fn queue_overflow(what: Overflow) {
    count(|c| match what {
        Overflow::Dropped => add(&c.overflows_dropped, 1),
        Overflow::Closed => add(&c.overflows_closed, 1),
    });
}

/// The threads that count, for one server.
pub struct Metrics {
    threads: Mutex<Vec<&'static Counters>>,
    /// [`CLOSE_CODES`] and the application's, counted one by one.
    codes: &'static [u16],
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            threads: Mutex::default(),
            codes: &CLOSE_CODES,
        }
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// Counts these close codes one by one too, after [`CLOSE_CODES`] (an application's
    /// own, in the 4000-4999 range: the chat hub's 4008, say). Call it before any thread
    /// is attached; the list is kept for the life of the process.
    pub fn with_close_codes(mut self, codes: &[u16]) -> Self {
        let mut all = CLOSE_CODES.to_vec();
        all.extend(codes.iter().filter(|c| !CLOSE_CODES.contains(c)));
        self.codes = Box::leak(all.into_boxed_slice());
        self
    }

    /// From now on, what the sockets polled on this thread do is counted here. Each call
    /// gives the thread new counters (about 500 bytes, kept for the life of the process):
    /// call it once per thread, when the thread starts.
    pub fn attach_current_thread(&self) {
        let counters: &'static Counters = Box::leak(Box::new(Counters::new(self.codes)));
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
            (0..=self.codes.len())
                .map(|i| {
                    let n = sum(&|c| {
                        if sent {
                            &c.closes_sent[i]
                        } else {
                            &c.closes_received[i]
                        }
                    });
                    (self.codes.get(i).copied(), n)
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
            refused_max_connections: sum(&|c| &c.refused_max_connections),
            refused_per_client: sum(&|c| &c.refused_per_client),
            refused_origin: sum(&|c| &c.refused_origin),
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
    /// Upgrade requests answered with anything but `101` (`400`, `401`, `403`, `404`,
    /// `426`, `429`, ...), or failed while answering: each upgrade request counts once, in
    /// one of the two.
    pub handshakes_refused: u64,
    /// Connections refused at once because the server was at its connection limit (`503`).
    pub refused_max_connections: u64,
    /// Requests refused because their client was at its connection limit (`429`).
    pub refused_per_client: u64,
    /// Requests refused for their `Origin` (`403`).
    pub refused_origin: u64,
    /// Messages dropped because the receiver's send queue was full.
    pub overflows_dropped: u64,
    /// Connections closed because their send queue was full. The sockets' own; a queue
    /// above them (the hub's) adds its count here before [`Snapshot::render`].
    pub overflows_closed: u64,
    /// Close frames sent, by code: each of the codes counted one by one ([`CLOSE_CODES`],
    /// then [`Metrics::with_close_codes`]'), then `None` for any other.
    pub closes_sent: Vec<(Option<u16>, u64)>,
    /// Connections ended by the peer, by the code it sent: as `closes_sent`; 1005 is a
    /// close frame without a code, 1006 no close frame at all.
    pub closes_received: Vec<(Option<u16>, u64)>,
}

/// The media type of the Prometheus text format that [`Snapshot::render`] writes.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A Prometheus metric type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Kind {
    /// A figure that only grows.
    Counter,
    /// A figure that goes up and down.
    Gauge,
}

/// Appends one metric family in the Prometheus text format: its `# HELP` and `# TYPE`
/// lines, then a line per sample, each a set of labels (`direction="in"`, or empty for
/// none) and a value. For the figures an application adds to [`Snapshot::render`]'s page.
pub fn write_family(out: &mut String, name: &str, kind: Kind, help: &str, samples: &[(&str, u64)]) {
    use std::fmt::Write as _;
    let kind = match kind {
        Kind::Counter => "counter",
        Kind::Gauge => "gauge",
    };
    let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n");
    for (labels, value) in samples {
        let _ = if labels.is_empty() {
            writeln!(out, "{name} {value}")
        } else {
            writeln!(out, "{name}{{{labels}}} {value}")
        };
    }
}

impl Snapshot {
    /// The counters in the Prometheus text format ([`CONTENT_TYPE`]), as `wsduplex serve`
    /// serves them at `/metrics`: `wsduplex_connections_open` (the gauge
    /// `connections_open`, e.g. [`ConnectionLimiter::open`](crate::limits::ConnectionLimiter::open)),
    /// `wsduplex_handshakes_total`, `wsduplex_connections_refused_total`,
    /// `wsduplex_messages_total`, `wsduplex_message_bytes_total`,
    /// `wsduplex_close_codes_total` and `wsduplex_queue_overflows_total`.
    pub fn render(&self, connections_open: u64) -> String {
        let codes = |direction: &str, counts: &[(Option<u16>, u64)]| -> Vec<(String, u64)> {
            counts
                .iter()
                .map(|&(code, n)| {
                    let code = code.map_or("other".to_string(), |c| c.to_string());
                    (format!("direction=\"{direction}\",code=\"{code}\""), n)
                })
                .collect()
        };
        let closes = [
            codes("sent", &self.closes_sent),
            codes("received", &self.closes_received),
        ]
        .concat();
        let closes: Vec<(&str, u64)> = closes.iter().map(|(l, n)| (l.as_str(), *n)).collect();
        let mut out = String::with_capacity(4096);
        let mut family = |name: &str, kind: Kind, help: &str, samples: &[(&str, u64)]| {
            write_family(&mut out, name, kind, help, samples)
        };
        family(
            "wsduplex_connections_open",
            Kind::Gauge,
            "TCP connections open now.",
            &[("", connections_open)],
        );
        family(
            "wsduplex_handshakes_total",
            Kind::Counter,
            "WebSocket opening handshakes (/echo and /chat), by outcome.",
            &[
                ("outcome=\"accepted\"", self.handshakes_accepted),
                ("outcome=\"refused\"", self.handshakes_refused),
            ],
        );
        family(
            "wsduplex_connections_refused_total",
            Kind::Counter,
            "Connections refused by a limit or a policy.",
            &[
                ("reason=\"max_connections\"", self.refused_max_connections),
                (
                    "reason=\"max_connections_per_client\"",
                    self.refused_per_client,
                ),
                ("reason=\"origin\"", self.refused_origin),
            ],
        );
        family(
            "wsduplex_messages_total",
            Kind::Counter,
            "WebSocket text and binary messages, received (in) and sent (out).",
            &[
                ("direction=\"in\"", self.messages_in),
                ("direction=\"out\"", self.messages_out),
            ],
        );
        family(
            "wsduplex_message_bytes_total",
            Kind::Counter,
            "Payload bytes of those messages (uncompressed).",
            &[
                ("direction=\"in\"", self.bytes_in),
                ("direction=\"out\"", self.bytes_out),
            ],
        );
        family(
            "wsduplex_close_codes_total",
            Kind::Counter,
            "Close codes sent, and received (1005: a close without a code; 1006: none).",
            &closes,
        );
        family(
            "wsduplex_queue_overflows_total",
            Kind::Counter,
            "Slow readers: messages dropped, and connections closed, for a full queue.",
            &[
                ("action=\"dropped\"", self.overflows_dropped),
                ("action=\"closed\"", self.overflows_closed),
            ],
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_attached_threads_count_and_a_snapshot_adds_them_up() {
        let m = Metrics::default().with_close_codes(&[4008]);
        received(5); // not attached yet: not counted
        m.attach_current_thread();
        received(5);
        sent(7);
        closed(Some(1000), 1006);
        closed(None, 4321);
        closed(Some(4008), 1000);
        refused(RefusedBy::Origin);
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
        assert!(now.closes_sent.contains(&(Some(4008), 1)));
        assert_eq!(now.closes_sent.len(), CLOSE_CODES.len() + 2);
        assert_eq!(now.refused_origin, 1);
        let page = now.render(3);
        for line in [
            "# TYPE wsduplex_connections_open gauge\nwsduplex_connections_open 3\n",
            "wsduplex_messages_total{direction=\"in\"} 2\n",
            "wsduplex_close_codes_total{direction=\"sent\",code=\"4008\"} 1\n",
            "wsduplex_close_codes_total{direction=\"received\",code=\"other\"} 1\n",
            "wsduplex_connections_refused_total{reason=\"origin\"} 1\n",
            "wsduplex_queue_overflows_total{action=\"closed\"} 1\n",
        ] {
            assert!(page.contains(line), "{line} in\n{page}");
        }
    }
}
