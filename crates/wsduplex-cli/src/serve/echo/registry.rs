//! The echo connections of a worker thread: their permits, and the wakers that the stop
//! signal and a hand-over wake. A worker is a current-thread runtime, so an echo task is
//! polled and dropped on the thread that spawned it, and the worker's own loop (which
//! signals) runs there too. A connection costs 48 bytes in a slab here, instead of a
//! `watch` receiver and a pinned `changed()` future (and its permit) in its task.

use std::cell::RefCell;
use std::task::{Poll, Waker};
use wsduplex::limits::Permit;

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
}

struct Slot {
    /// Set when the task first waits.
    waker: Option<Waker>,
    /// Counts the connection in the limits until its task ends.
    _permit: Option<Permit>,
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
                    wakers.extend(slot.waker.take());
                }
            }
        }
        wakers
    }

    fn take_wakers(&mut self) -> Vec<Waker> {
        self.slots
            .iter_mut()
            .flatten()
            .filter_map(|s| s.waker.take())
            .collect()
    }

    fn is_movable(&self, i: u32) -> bool {
        let (word, bit) = (i as usize / 64, i % 64);
        self.movable_bits
            .get(word)
            .is_some_and(|w| w & (1 << bit) != 0)
    }

    fn set_movable(&mut self, i: u32, on: bool) {
        let (word, bit) = (i as usize / 64, i % 64);
        if self.movable_bits.len() <= word {
            self.movable_bits.resize(word + 1, 0);
        }
        if on {
            self.movable_bits[word] |= 1 << bit;
        } else {
            self.movable_bits[word] &= !(1 << bit);
        }
    }
}

#[cfg(test)]
pub(super) fn slot_size() -> usize {
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
    /// Close with 1001.
    Stop,
}

/// An echo task's slot in its worker's registry, emptied when the task ends.
pub(in super::super) struct Entry(u32);

impl Entry {
    pub(in super::super) fn new(permit: Option<Permit>, movable: bool) -> Self {
        REGISTRY.with_borrow_mut(|r| {
            r.movable += usize::from(movable);
            let slot = Some(Slot {
                waker: None,
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
            let slot = r.slots[self.0 as usize].as_mut().expect("own slot");
            match &mut slot.waker {
                // A tokio task's waker stays the same; checking is cheap.
                Some(w) if w.will_wake(waker) => {}
                w => *w = Some(waker.clone()),
            }
            Signal::None
        })
    }
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
}

/// Lets `credit` more movable connections give themselves up, each at its next safe
/// point (the first call starts the hand-over).
pub(in super::super) fn hand_over(credit: usize) {
    let wakers = REGISTRY.with_borrow_mut(|r| {
        r.handing_over = true;
        r.credit += credit;
        r.next_movable()
    });
    wakers.into_iter().for_each(Waker::wake);
}

/// The hand-over failed: the connections that have not given themselves up stay.
pub(in super::super) fn resume() {
    REGISTRY.with_borrow_mut(|r| {
        r.handing_over = false;
        r.credit = 0;
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
