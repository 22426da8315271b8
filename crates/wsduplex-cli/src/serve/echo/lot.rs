//! Parked connections: idle `/echo` connections and chat members held without a task and
//! without a registration in tokio's reactor (an `/echo` connection in about 200 bytes
//! instead of about 1 KB). A parked chat member is also resumed when its mailbox wakes it,
//! from any thread, through the lot's inbox (`Unpark`).
//!
//! An echo task whose connection has waited a whole `--park-idle` period is asked (by the
//! registry's sweep) to park. At its next safe point, with nothing in flight, the socket
//! becomes a [`wsduplex::Parked`] value, the `TcpStream` leaves tokio's reactor (its
//! registration is freed) and joins this worker's own poll set, and the task ends: the
//! connection is now its registry slot, pointing at a [`Parked`]. The lot's one task per
//! worker waits on that poll set (itself one registration in tokio's reactor) and on the
//! earliest deadline of the parked sockets (a keepalive ping, say); when a socket becomes
//! readable (a message, a close, the peer gone) or its deadline comes, it is rebuilt and
//! served by a new echo task, as if it had kept waiting. Stop and hand-over first give every
//! parked connection its task back (the registry does that), so they see every connection.

use super::registry::{self, Entry};
use super::Echo;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::unix::AsyncFd;
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio_util::task::TaskTracker;
use wsduplex::WebSocket;
use wsduplex_hub::{Member, ParkedMember};

/// A parked connection: its transport, out of tokio's reactor, and what it was.
pub(in super::super) struct Parked {
    tcp: std::net::TcpStream,
    kind: Kind,
}

enum Kind {
    /// An `/echo` connection: its socket's state.
    Echo(wsduplex::Parked),
    /// A chat member: its socket's state, rooms and identity (a few hundred bytes, boxed:
    /// an echo connection stays in a 64-byte box).
    Member(Box<ParkedMember>),
}

impl Parked {
    pub(super) fn deadline(&self) -> Option<Instant> {
        match &self.kind {
            Kind::Echo(ws) => ws.deadline(),
            Kind::Member(member) => member.deadline(),
        }
    }
}

/// Wakes a parked chat member's slot: its mailbox holds this waker while it is parked, and
/// a room may wake it from any worker's thread.
struct Unpark {
    inbox: Arc<Inbox>,
    slot: u32,
}

impl std::task::Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.inbox
            .woken
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(self.slot);
        self.inbox.nudge.notify_one();
    }
}

/// How the lot's task is told, from any thread, of something to do now: a deadline
/// earlier than any it waits for, or chat members whose mailboxes woke them.
#[derive(Default)]
struct Inbox {
    nudge: Notify,
    /// Slots to resume (one may have been resumed, or even reused, since: resuming
    /// whatever is parked there is harmless).
    woken: std::sync::Mutex<Vec<u32>>,
}

/// This worker's poll set and what the lot's task needs from the echo tasks.
struct Lot {
    registry: mio::Registry,
    tasks: TaskTracker,
    /// Parked connections' deadlines by slot. Entries are not removed when a connection is
    /// unparked early: one is acted on only if it is still its slot's deadline, and the
    /// queue is rebuilt from the slots when stale entries outnumber the parked.
    deadlines: BinaryHeap<Reverse<(Instant, u32)>>,
    /// Tells the task of an earlier deadline, or of woken members.
    inbox: Arc<Inbox>,
}

impl Lot {
    /// Rebuilds the deadline queue from the parked slots once stale entries (of connections
    /// unparked before their deadline) outnumber the parked ones.
    fn drop_stale_deadlines(&mut self) {
        if self.deadlines.len() > 2 * registry::parked() + 64 {
            self.deadlines = registry::parked_deadlines()
                .into_iter()
                .map(Reverse)
                .collect();
        }
    }
}

thread_local! {
    static LOT: RefCell<Option<Lot>> = const { RefCell::new(None) };
}

/// Starts parking on this worker: connections idle for `after` (up to twice that) are
/// parked. Call inside the worker's runtime.
pub(in super::super) fn start(tasks: TaskTracker, after: Duration) -> std::io::Result<()> {
    let poll = Poll::new()?;
    let registry = poll.registry().try_clone()?;
    // Deprecated for types whose descriptor may change or close under it (tokio #8587); a
    // `Poll` owns its descriptor from creation to drop, which is what the replacement
    // (`register_with_interest`, `unsafe`) would have us promise.
    #[allow(deprecated)]
    let poll = AsyncFd::with_interest(poll, tokio::io::Interest::READABLE)?;
    let inbox = Arc::new(Inbox::default());
    LOT.set(Some(Lot {
        registry,
        tasks,
        deadlines: BinaryHeap::new(),
        inbox: inbox.clone(),
    }));
    registry::start_parking();
    // Not in the task tracker: the worker waits for connections, not for this.
    tokio::spawn(run(poll, inbox, after));
    Ok(())
}

/// Parks an echo connection if nothing is in flight; otherwise gives it back.
#[allow(clippy::result_large_err)]
pub(super) fn park(
    ws: WebSocket<TcpStream>,
    entry: Entry,
) -> Result<(), (WebSocket<TcpStream>, Entry)> {
    let (tcp, ws) = match ws.park() {
        Ok(parts) => parts,
        Err(ws) => return Err((ws, entry)),
    };
    match into_lot(tcp, &entry) {
        Ok(tcp) => {
            let parked = Parked {
                tcp,
                kind: Kind::Echo(ws),
            };
            park_in(entry, Box::new(parked));
            Ok(())
        }
        Err(Some(tcp)) => Err((WebSocket::unpark(tcp, ws), entry)),
        Err(None) => Ok(()),
    }
}

/// Parks a chat member stopped idle if its socket can be; otherwise gives it back.
#[allow(clippy::result_large_err)]
pub(super) fn park_member(
    member: Member<TcpStream>,
    entry: Entry,
) -> Result<(), (Member<TcpStream>, Entry)> {
    let (tcp, member) = match member.park() {
        Ok(parts) => parts,
        Err(member) => return Err((member, entry)),
    };
    let tcp = match into_lot(tcp, &entry) {
        Ok(tcp) => tcp,
        Err(Some(tcp)) => return Err((member.resume(tcp), entry)),
        Err(None) => return Ok(()),
    };
    let inbox = LOT.with_borrow(|lot| lot.as_ref().map(|lot| lot.inbox.clone()));
    let woken = inbox.is_some_and(|inbox| {
        let slot = entry.index();
        !member.wake_with(std::task::Waker::from(Arc::new(Unpark { inbox, slot })))
    });
    let parked = Box::new(Parked {
        tcp,
        kind: Kind::Member(Box::new(member)),
    });
    if woken {
        // Something came for it since it stopped: back to a task at once.
        resume(entry, parked);
    } else {
        park_in(entry, parked);
    }
    Ok(())
}

/// The transport out of tokio's reactor and in this worker's poll set. `Err(Some)`: it
/// stays in a task; `Err(None)`: it is in no state to go on (closed).
fn into_lot(tcp: TcpStream, entry: &Entry) -> Result<std::net::TcpStream, Option<TcpStream>> {
    let tcp = match tcp.into_std() {
        Ok(tcp) => tcp,
        Err(e) => {
            // Only if leaving the reactor failed: the socket is in no state to go on.
            tracing::warn!("parking a connection failed, it is closed: {e}");
            return Err(None);
        }
    };
    let token = Token(entry.index() as usize);
    let registered = LOT.with_borrow(|lot| match lot {
        Some(lot) => {
            lot.registry
                .register(&mut SourceFd(&tcp.as_raw_fd()), token, Interest::READABLE)
        }
        None => Err(std::io::Error::other("no lot on this thread")),
    });
    if let Err(e) = registered {
        tracing::debug!("parking a connection failed, it stays in its task: {e}");
        return match TcpStream::from_std(tcp) {
            Ok(tcp) => Err(Some(tcp)),
            Err(e) => {
                tracing::warn!("a connection could not be parked nor resumed: {e}");
                Err(None)
            }
        };
    }
    Ok(tcp)
}

/// The connection waits in its slot, its deadline queued.
fn park_in(entry: Entry, parked: Box<Parked>) {
    if let Some(deadline) = parked.deadline() {
        LOT.with_borrow_mut(|lot| {
            if let Some(lot) = lot {
                lot.drop_stale_deadlines();
                let earliest = lot.deadlines.peek().map(|Reverse((at, _))| *at);
                lot.deadlines.push(Reverse((deadline, entry.index())));
                if earliest.is_none_or(|at| deadline < at) {
                    lot.inbox.nudge.notify_one();
                }
            }
        });
    }
    entry.park(parked);
}

/// Serves a parked connection with a task again.
#[allow(clippy::boxed_local)] // it comes boxed from its slot; unboxing is the point
pub(super) fn resume(entry: Entry, parked: Box<Parked>) {
    let Parked { tcp, kind } = *parked;
    let tasks = LOT.with_borrow(|lot| {
        let lot = lot.as_ref()?;
        // Closing the descriptor would remove it from the set too, but it stays open.
        let _ = lot.registry.deregister(&mut SourceFd(&tcp.as_raw_fd()));
        Some(lot.tasks.clone())
    });
    let Some(tasks) = tasks else {
        // Only during the thread's teardown: the connection goes with it.
        return;
    };
    let span = match tcp.peer_addr() {
        Ok(peer) => super::super::listen::connection_span(peer),
        Err(_) => tracing::Span::none(),
    };
    let tcp = match TcpStream::from_std(tcp) {
        Ok(tcp) => tcp,
        Err(e) => return tracing::warn!("resuming a parked connection failed: {e}"),
    };
    match kind {
        Kind::Echo(ws) => {
            let echo = Echo {
                ws: Some(WebSocket::unpark(tcp, ws)),
                entry: Some(entry),
                closing: false,
            };
            super::super::listen::spawn_in(&tasks, echo, span);
        }
        Kind::Member(member) => {
            let member = super::super::member::serve(member.resume(tcp), entry);
            super::super::listen::spawn_in(&tasks, member, span);
        }
    }
}

/// The lot's task: resumes parked connections as they become readable or reach their
/// deadline, and sweeps the registry every `after`.
async fn run(mut poll: AsyncFd<Poll>, inbox: Arc<Inbox>, after: Duration) {
    let mut events = Events::with_capacity(1024);
    let mut sweep = tokio::time::interval(after);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let next = LOT.with_borrow(|lot| {
            let lot = lot.as_ref()?;
            lot.deadlines.peek().map(|Reverse((at, _))| *at)
        });
        let deadline = async {
            match next {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            ready = poll.readable_mut() => {
                let mut guard = match ready {
                    Ok(guard) => guard,
                    Err(e) => return tracing::error!("the lot's poll set failed: {e}"),
                };
                match guard.get_inner_mut().poll(&mut events, Some(Duration::ZERO)) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => return tracing::error!("the lot's poll set failed: {e}"),
                }
                if events.is_empty() {
                    // Drained: wait for tokio to see the set readable again.
                    guard.clear_ready();
                    continue;
                }
                for event in events.iter() {
                    if let Some((entry, parked)) = registry::unpark(event.token().0 as u32, None) {
                        resume(entry, parked);
                    }
                }
            }
            () = deadline => resume_due(),
            _ = sweep.tick() => registry::sweep(),
            () = inbox.nudge.notified() => {
                let woken = std::mem::take(&mut *inbox.woken.lock().unwrap_or_else(|p| p.into_inner()));
                for slot in woken {
                    if let Some((entry, parked)) = registry::unpark(slot, None) {
                        resume(entry, parked);
                    }
                }
            }
        }
    }
}

/// Resumes the parked connections whose deadline has come.
fn resume_due() {
    let now = Instant::now();
    let due: Vec<(Instant, u32)> = LOT.with_borrow_mut(|lot| {
        let Some(lot) = lot else { return Vec::new() };
        let mut due = Vec::new();
        while let Some(Reverse((at, i))) = lot.deadlines.peek().copied() {
            if at > now {
                break;
            }
            lot.deadlines.pop();
            due.push((at, i));
        }
        lot.drop_stale_deadlines();
        due
    });
    for (at, i) in due {
        if let Some((entry, parked)) = registry::unpark(i, Some(at)) {
            resume(entry, parked);
        }
    }
}
