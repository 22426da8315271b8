//! The echo connections of a worker thread, and its chat members (`serve/member.rs`, not
//! movable: the hub hands them over itself): their permits, and the wakers that the stop
//! signal and a hand-over wake. A worker is a current-thread runtime, so an echo task is
//! polled and dropped on the thread that spawned it, and the worker's own loop (which
//! signals) runs there too. A connection costs 56 bytes in a slab here, instead of a
//! `watch` receiver and a pinned `changed()` future (and its permit) in its task.
//!
//! It also decides when an idle connection is parked (`lot.rs`): each time a task waits it
//! marks its slot active; every `--park-idle` period, [`sweep`] asks the connections not
//! marked since the last sweep to park, and clears the marks. A parked connection keeps
//! its slot (and its permit), with the socket in place of the waker.

use std::cell::RefCell;
use std::sync::atomic::AtomicUsize;
#[cfg(unix)]
use std::sync::atomic::Ordering;
use std::task::{Poll, Waker};
use wsduplex::limits::Permit;

/// Connections parked now, on every worker (`/metrics`: `wsduplex_parked_connections`).
pub(in super::super) static PARKED: AtomicUsize = AtomicUsize::new(0);

#[derive(Default)]
struct Registry {
    /// The worker is stopping; the wakers were woken.
    stopped: bool,
    /// A hand-over asks movable connections to give themselves up, `credit` at a time
    /// (so that each one waits only for those ahead of it in the window, not for all).
    handing_over: bool,
    credit: usize,
    /// Where the search for the next connections to wake goes on.
    cursor: usize,
    slots: Vec<Option<Slot>>,
    /// Indices of the empty slots.
    free: Vec<u32>,
    /// Which slots hold a movable connection, a bit each (the slots stay 48 bytes).
    movable_bits: Vec<u64>,
    /// Live movable connections, and plain requests in progress ([`Handshake`]).
    movable: usize,
    handshakes: usize,
    /// The worker, waiting for both to reach 0 during a hand-over.
    idle: Option<Waker>,
    /// This worker's index and where surrendered connections go.
    #[cfg(unix)]
    reports: Option<(usize, std::sync::mpsc::Sender<super::super::worker::Report>)>,
    /// Idle connections are parked (the lot runs, and no stop or hand-over is under way).
    parking: bool,
    /// Which slots hold a connection that can be parked; which waited since the last sweep;
    /// which were asked to park.
    parkable_bits: Vec<u64>,
    active_bits: Vec<u64>,
    park_bits: Vec<u64>,
    #[cfg_attr(not(unix), allow(dead_code))]
    parked: usize,
    /// The lot runs on this thread (parking resumes after a failed hand-over).
    lot: bool,
}

struct Slot {
    wait: Wait,
    /// Counts the connection in the limits until its task ends.
    _permit: Option<Permit>,
}

/// How a connection waits: in its task (the waker is set when the task first waits), or
/// parked without one.
enum Wait {
    Task(Option<Waker>),
    #[cfg(unix)]
    Parked(Box<super::lot::Parked>),
}

impl Wait {
    fn take_waker(&mut self) -> Option<Waker> {
        match self {
            Wait::Task(w) => w.take(),
            #[cfg(unix)]
            Wait::Parked(_) => None,
        }
    }
}

fn get_bit(bits: &[u64], i: u32) -> bool {
    bits.get(i as usize / 64)
        .is_some_and(|w| w & (1 << (i % 64)) != 0)
}

fn set_bit(bits: &mut Vec<u64>, i: u32, on: bool) {
    let (word, bit) = (i as usize / 64, i % 64);
    if bits.len() <= word {
        bits.resize(word + 1, 0);
    }
    if on {
        bits[word] |= 1 << bit;
    } else {
        bits[word] &= !(1 << bit);
    }
}

impl Registry {
    fn wake_idle(&mut self) {
        if self.handing_over && self.movable == 0 && self.handshakes == 0 {
            if let Some(w) = self.idle.take() {
                w.wake();
            }
        }
    }

    /// Wakers of up to `credit` movable connections, from the cursor on: each one gives
    /// itself up when it runs (any other that runs first takes the credit instead).
    fn next_movable(&mut self) -> Vec<Waker> {
        let mut wakers = Vec::new();
        let len = self.slots.len();
        for _ in 0..len {
            if wakers.len() >= self.credit {
                break;
            }
            self.cursor = (self.cursor + 1) % len;
            if self.is_movable(self.cursor as u32) {
                if let Some(slot) = &mut self.slots[self.cursor] {
                    wakers.extend(slot.wait.take_waker());
                }
            }
        }
        wakers
    }

    fn take_wakers(&mut self) -> Vec<Waker> {
        self.slots
            .iter_mut()
            .flatten()
            .filter_map(|s| s.wait.take_waker())
            .collect()
    }

    fn is_movable(&self, i: u32) -> bool {
        get_bit(&self.movable_bits, i)
    }

    fn set_movable(&mut self, i: u32, on: bool) {
        set_bit(&mut self.movable_bits, i, on);
    }

    /// Every parked connection, given back to be served by a task again; no more are
    /// parked until [`Registry::parking`] is set again.
    #[cfg(unix)]
    fn unpark_all(&mut self) -> Vec<(u32, Box<super::lot::Parked>)> {
        self.parking = false;
        if self.parked == 0 {
            return Vec::new();
        }
        let mut all = Vec::with_capacity(self.parked);
        for (i, slot) in self.slots.iter_mut().enumerate() {
            let Some(slot) = slot else { continue };
            match std::mem::replace(&mut slot.wait, Wait::Task(None)) {
                Wait::Parked(p) => all.push((i as u32, p)),
                // A task's waker stays.
                waiting => slot.wait = waiting,
            }
        }
        PARKED.fetch_sub(self.parked, Ordering::Relaxed);
        self.parked = 0;
        all
    }
}

/// Resumes parked connections in tasks (outside the registry's borrow).
#[cfg(unix)]
fn resume_all(all: Vec<(u32, Box<super::lot::Parked>)>) {
    for (i, parked) in all {
        super::lot::resume(Entry(i), parked);
    }
}

#[cfg(test)]
pub(in super::super) fn slot_size() -> usize {
    std::mem::size_of::<Option<Slot>>()
}

thread_local! {
    static REGISTRY: RefCell<Registry> = RefCell::default();
}

/// What an echo task is asked to do when it has nothing else to do.
pub(in super::super) enum Signal {
    None,
    /// Give the connection up (a movable one) to the hand-over.
    HandOver,
    /// Park, if nothing is in flight (it has been idle for a sweep period).
    Park,
    /// Close with 1001.
    Stop,
}

/// An echo task's slot in its worker's registry, emptied when the task ends.
pub(in super::super) struct Entry(u32);

impl Entry {
    /// `parkable`: the connection's transport can be parked (plain TCP, on Unix).
    pub(in super::super) fn new(permit: Option<Permit>, movable: bool, parkable: bool) -> Self {
        REGISTRY.with_borrow_mut(|r| {
            r.movable += usize::from(movable);
            let slot = Some(Slot {
                wait: Wait::Task(None),
                _permit: permit,
            });
            let i = match r.free.pop() {
                Some(i) => {
                    r.slots[i as usize] = slot;
                    i
                }
                None => {
                    r.slots.push(slot);
                    u32::try_from(r.slots.len() - 1).expect("< 2^32 connections")
                }
            };
            r.set_movable(i, movable);
            set_bit(&mut r.parkable_bits, i, parkable);
            // Counted as active until the first sweep after its first wait.
            set_bit(&mut r.active_bits, i, true);
            set_bit(&mut r.park_bits, i, false);
            Self(i)
        })
    }

    /// What the worker asks of this connection; if nothing, `waker` is woken when it
    /// does.
    pub(in super::super) fn signal(&mut self, waker: &Waker) -> Signal {
        REGISTRY.with_borrow_mut(|r| {
            if r.stopped {
                return Signal::Stop;
            }
            if r.handing_over && r.credit > 0 && r.is_movable(self.0) {
                r.credit -= 1;
                return Signal::HandOver;
            }
            if r.parking && get_bit(&r.park_bits, self.0) {
                set_bit(&mut r.park_bits, self.0, false);
                return Signal::Park;
            }
            set_bit(&mut r.active_bits, self.0, true);
            let slot = r.slots[self.0 as usize].as_mut().expect("own slot");
            match &mut slot.wait {
                // A tokio task's waker stays the same; checking is cheap.
                Wait::Task(Some(w)) if w.will_wake(waker) => {}
                w => *w = Wait::Task(Some(waker.clone())),
            }
            Signal::None
        })
    }

    /// The connection waits parked in its slot, without a task: the slot stays its own
    /// (and its permit counted) until [`unpark`] hands it to a task again.
    #[cfg(unix)]
    pub(super) fn park(self, parked: Box<super::lot::Parked>) {
        let i = self.0;
        std::mem::forget(self);
        REGISTRY.with_borrow_mut(|r| {
            let slot = r.slots[i as usize].as_mut().expect("own slot");
            slot.wait = Wait::Parked(parked);
            r.parked += 1;
        });
        PARKED.fetch_add(1, Ordering::Relaxed);
    }

    #[cfg(unix)]
    pub(super) fn index(&self) -> u32 {
        self.0
    }
}

/// Slot `i`'s parked connection, with its entry, to be served by a task again (`None`: it
/// is not parked). With `due`, only if that is still its deadline.
#[cfg(unix)]
pub(super) fn unpark(
    i: u32,
    due: Option<std::time::Instant>,
) -> Option<(Entry, Box<super::lot::Parked>)> {
    REGISTRY.with_borrow_mut(|r| {
        let slot = r.slots.get_mut(i as usize)?.as_mut()?;
        match &slot.wait {
            Wait::Parked(p) if due.is_none() || p.deadline() == due => {}
            _ => return None,
        }
        let Wait::Parked(parked) = std::mem::replace(&mut slot.wait, Wait::Task(None)) else {
            return None;
        };
        r.parked -= 1;
        PARKED.fetch_sub(1, Ordering::Relaxed);
        // A fresh start: it parks again only after a whole sweep period idle (a sweep
        // while it was parked may have asked it to park).
        set_bit(&mut r.active_bits, i, true);
        set_bit(&mut r.park_bits, i, false);
        Some((Entry(i), parked))
    })
}

/// The deadlines of the parked connections (to rebuild the lot's queue).
#[cfg(unix)]
pub(super) fn parked_deadlines() -> Vec<(std::time::Instant, u32)> {
    REGISTRY.with_borrow(|r| {
        r.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| match &s.as_ref()?.wait {
                Wait::Parked(p) => Some((p.deadline()?, i as u32)),
                Wait::Task(_) => None,
            })
            .collect()
    })
}

/// How many connections are parked on this thread.
#[cfg(unix)]
pub(super) fn parked() -> usize {
    REGISTRY.with_borrow(|r| r.parked)
}

/// Parking starts on this thread (the lot runs).
#[cfg(unix)]
pub(super) fn start_parking() {
    REGISTRY.with_borrow_mut(|r| {
        r.lot = true;
        r.parking = !r.stopped && !r.handing_over;
    });
}

/// Asks every parkable connection that has not waited since the last sweep to park, and
/// starts the next period.
#[cfg(unix)]
pub(super) fn sweep() {
    let wakers = REGISTRY.with_borrow_mut(|r| {
        let mut wakers = Vec::new();
        if !r.parking {
            return wakers;
        }
        let r = &mut *r;
        for (word, parkable) in r.parkable_bits.iter().enumerate() {
            let active = r.active_bits.get(word).copied().unwrap_or(0);
            let ask = parkable & !active;
            if word < r.active_bits.len() {
                r.active_bits[word] = 0;
            }
            if ask == 0 {
                continue;
            }
            if r.park_bits.len() <= word {
                r.park_bits.resize(word + 1, 0);
            }
            r.park_bits[word] |= ask;
            let mut bits = ask;
            while bits != 0 {
                let i = word * 64 + bits.trailing_zeros() as usize;
                bits &= bits - 1;
                if let Some(Some(slot)) = r.slots.get_mut(i) {
                    wakers.extend(slot.wait.take_waker());
                }
            }
        }
        wakers
    });
    wakers.into_iter().for_each(Waker::wake);
}

/// No more parking (a hand-over commits): every parked connection is served by a task
/// again, so that the worker can wait for their tasks.
pub(in super::super) fn settle() {
    #[cfg(unix)]
    resume_all(REGISTRY.with_borrow_mut(Registry::unpark_all));
}

impl Drop for Entry {
    fn drop(&mut self) {
        // A task dropped while the thread's locals are torn down has nothing to give
        // back (its permit goes with the registry).
        let _ = REGISTRY
            .try_with(|r| {
                let mut r = r.borrow_mut();
                let slot = r.slots[self.0 as usize].take();
                r.free.push(self.0);
                set_bit(&mut r.parkable_bits, self.0, false);
                let mut wakers = Vec::new();
                if r.is_movable(self.0) {
                    r.set_movable(self.0, false);
                    r.movable -= 1;
                    r.wake_idle();
                    if r.handing_over && r.credit > 0 {
                        // It ended on its own, with credit left: another one may use it.
                        wakers = r.next_movable();
                    }
                }
                // Dropped (the permit with it) outside the borrow.
                (slot, wakers)
            })
            .map(|(_, wakers)| wakers.into_iter().for_each(Waker::wake));
    }
}

/// A plain connection's request in progress: it may yet become a movable connection, so
/// a hand-over waits for it to end.
pub(in super::super) struct Handshake(());

impl Handshake {
    pub(in super::super) fn new() -> Self {
        REGISTRY.with_borrow_mut(|r| r.handshakes += 1);
        Self(())
    }
}

impl Drop for Handshake {
    fn drop(&mut self) {
        let _ = REGISTRY.try_with(|r| {
            let mut r = r.borrow_mut();
            r.handshakes -= 1;
            r.wake_idle();
        });
    }
}

/// This thread is worker `index`: connections it gives up are reported there.
#[cfg(unix)]
pub(in super::super) fn start(
    index: usize,
    reports: std::sync::mpsc::Sender<super::super::worker::Report>,
) {
    REGISTRY.with_borrow_mut(|r| r.reports = Some((index, reports)));
}

#[cfg(not(unix))]
pub(in super::super) fn start<T>(_index: usize, _reports: T) {}

/// Closes every connection with 1001.
pub(in super::super) fn stop() {
    let wakers = REGISTRY.with_borrow_mut(|r| {
        r.stopped = true;
        r.take_wakers()
    });
    wakers.into_iter().for_each(Waker::wake);
    // Parked ones get a task again, which closes at its first wait.
    settle();
}

/// Lets `credit` more movable connections give themselves up, each at its next safe
/// point (the first call starts the hand-over).
pub(in super::super) fn hand_over(credit: usize) {
    #[cfg(unix)]
    let parked = REGISTRY.with_borrow_mut(Registry::unpark_all);
    let wakers = REGISTRY.with_borrow_mut(|r| {
        r.handing_over = true;
        r.credit += credit;
        r.next_movable()
    });
    wakers.into_iter().for_each(Waker::wake);
    // Parked ones get a task again, which gives itself up (or waits for credit) at its
    // first wait.
    #[cfg(unix)]
    resume_all(parked);
}

/// The hand-over failed: the connections that have not given themselves up stay.
pub(in super::super) fn resume() {
    REGISTRY.with_borrow_mut(|r| {
        r.handing_over = false;
        r.credit = 0;
        r.parking = r.lot && !r.stopped;
    });
}

/// Resolves once no movable connection and no plain request is left.
pub(in super::super) async fn idle() {
    std::future::poll_fn(|cx| {
        REGISTRY.with_borrow_mut(|r| {
            if r.movable == 0 && r.handshakes == 0 {
                Poll::Ready(())
            } else {
                r.idle = Some(cx.waker().clone());
                Poll::Pending
            }
        })
    })
    .await
}

/// Sends a connection's transport and state to the control thread.
#[cfg(unix)]
pub(super) fn surrender(ws: wsduplex::WebSocket<tokio::net::TcpStream>) {
    use super::super::worker::Report;
    let (tcp, state) = ws.into_parts();
    let tcp = match tcp.into_std() {
        Ok(tcp) => tcp,
        Err(e) => return tracing::error!("hand-over: a connection is lost: {e}"),
    };
    REGISTRY.with_borrow(|r| match &r.reports {
        Some((worker, reports)) => {
            let worker = *worker;
            if reports
                .send(Report::Surrendered {
                    worker,
                    tcp,
                    state: Box::new(state),
                })
                .is_err()
            {
                tracing::error!("hand-over: the control thread is gone: a connection is lost");
            }
        }
        None => tracing::error!("hand-over outside a worker: a connection is lost"),
    });
}
