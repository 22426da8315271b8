//! A member's bounded queue of encoded events. The room pushes (under its lock, never
//! waiting); one consumer takes: a WebSocket task pops events as it sends them, a
//! long-polling session reads by cursor and drops what the client has acknowledged.

use crate::direct::{self, Direct, Wrote};
use bytes::Bytes;
use std::collections::VecDeque;
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};
use std::time::Instant;
use wsduplex::Utf8Bytes;

/// Why a mailbox stopped delivering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The queue overflowed: the member was too slow and has been removed from the room.
    Overflow,
    /// The member was cut off by the API (`DELETE /api/rooms/ROOM/members/NAME`).
    Cut,
    /// The hub is shutting down.
    Shutdown,
    /// The hub is being handed to a new process (`Hub::freeze`): the member stops once its
    /// queue is sent, and the new process takes it on. Nothing more is queued; a
    /// long-polling session is still read by cursor (its queue moves with it).
    HandedOver,
}

/// The queue's room kept once it is emptied; more is freed.
const KEPT_CAPACITY: usize = 8;

pub(crate) struct Mailbox {
    state: Mutex<State>,
}

struct State {
    events: VecDeque<Utf8Bytes>,
    /// Sequence number of `events[0]`; the first event ever pushed is 1.
    first_seq: u64,
    /// Events it may hold: `queue`, plus what is left of a backlog allowed
    /// ([`Mailbox::allow_backlog`]).
    capacity: usize,
    queue: usize,
    ended: Option<Ended>,
    waker: Option<Waker>,
    /// A WebSocket member's socket, lent while the member runs (`direct.rs`). When it is
    /// idle, the queue is empty.
    direct: Option<Direct>,
}

impl Mailbox {
    pub(crate) fn new(capacity: usize) -> Self {
        Self::starting_after(capacity, 0)
    }

    /// A mailbox whose first event has sequence number `cursor + 1` (a long-polling
    /// session that moved here from another node goes on with the client's cursor).
    pub(crate) fn starting_after(capacity: usize, cursor: u64) -> Self {
        Self {
            state: Mutex::new(State {
                events: VecDeque::new(),
                first_seq: cursor + 1,
                capacity: capacity.max(1),
                queue: capacity.max(1),
                ended: None,
                waker: None,
                direct: None,
            }),
        }
    }

    /// Wakes the consumer (it looks again at whatever else it waits for).
    pub(crate) fn nudge(&self) {
        let waker = self.lock().waker.take();
        if let Some(w) = waker {
            w.wake();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic elsewhere cannot leave a queue half-updated: keep serving.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues an event. `false` if the queue is full (it then ends with `Overflow`: the
    /// caller removes the member) or has already ended.
    pub(crate) fn push(&self, event: Utf8Bytes) -> bool {
        Self::push_locked(self.lock(), event)
    }

    /// [`Mailbox::push`] under a lock already taken: a delivery that found the member idle
    /// and then could not write queues the event before the member can be idle again.
    fn push_locked(mut s: std::sync::MutexGuard<'_, State>, event: Utf8Bytes) -> bool {
        if s.ended.is_some() {
            return false;
        }
        // A queued event ends an idle spell (idle always means an empty queue): a message
        // delivered after it must not be written to the socket ahead of it, and a member
        // leaving its task must not be parked with it unsent.
        if let Some(d) = s.direct.as_mut() {
            d.idle = false;
        }
        if s.events.len() >= s.capacity {
            s.ended = Some(Ended::Overflow);
            let waker = s.waker.take();
            drop(s);
            // The member is removed (a WebSocket closed with 4008, a session ended).
            crate::metrics::overflow();
            if let Some(w) = waker {
                w.wake();
            }
            return false;
        }
        s.events.push_back(event);
        let waker = s.waker.take();
        drop(s);
        if let Some(w) = waker {
            w.wake();
        }
        true
    }

    /// Delivers an event to a member of a room, `now`: written to its socket at once if the
    /// member lent it and takes it (`direct.rs`; `frame` is the event's frame, made on first
    /// use and shared by the room's members), queued otherwise. `false` as
    /// [`Mailbox::push`].
    pub(crate) fn deliver(
        &self,
        event: &Utf8Bytes,
        frame: &mut Option<Bytes>,
        now: Instant,
    ) -> bool {
        let mut s = self.lock();
        // Idle means open too (`end` ends the idle spell, `poll_take` starts none once
        // ended): after a hand-over's freeze the new process sends what came later.
        if let Some(d) = s.direct.as_mut().filter(|d| d.idle) {
            // Whatever happens here, a queued event ends the idle spell: the task sends it,
            // and nothing may overtake it (idle always means an empty queue).
            d.idle = false;
            if d.writes(now) {
                let frame = frame.get_or_insert_with(|| direct::frame_text(event));
                match d.write(frame, event.len(), now) {
                    Wrote::All => {
                        d.idle = true;
                        return true;
                    }
                    Wrote::Part => {
                        // The task writes the rest before anything else.
                        let waker = s.waker.take();
                        drop(s);
                        if let Some(w) = waker {
                            w.wake();
                        }
                        return true;
                    }
                    Wrote::Nothing => {}
                }
            }
        }
        Self::push_locked(s, event.clone())
    }

    /// Lends the mailbox the member's socket (`None`: it has none to lend).
    pub(crate) fn lend(&self, direct: Option<Direct>) {
        self.lock().direct = direct;
    }

    /// Takes the socket back (closing the mailbox's descriptor): the member's run is over.
    /// Returns what a direct write left unwritten, which must be written before anything
    /// else.
    pub(crate) fn reclaim(&self) -> Option<Bytes> {
        self.lock().direct.take().and_then(|d| d.rest)
    }

    /// The lent socket's descriptor, for a test that writes what the task would.
    #[cfg(test)]
    pub(crate) fn reclaim_socket_for_test(&self) -> std::net::TcpStream {
        self.lock()
            .direct
            .take()
            .expect("a lent socket")
            .into_socket()
    }

    /// The member's task is about to write, or to look at what it must do: the room stops
    /// writing to its socket. Returns what a direct write left unwritten, which the task
    /// must write before anything else.
    pub(crate) fn wake_up(&self) -> Option<Bytes> {
        let mut s = self.lock();
        let d = s.direct.as_mut()?;
        d.idle = false;
        d.rest.take()
    }

    /// A member leaves its task while idle: `waker` is woken instead when it needs one
    /// again (an event queued or a frame half-written, the mailbox ended). `false` if it
    /// already does: it is no longer idle (a delivery since its last wait queued an event
    /// or left part of a frame), or the mailbox ended.
    pub(crate) fn park(&self, waker: Waker) -> bool {
        let mut s = self.lock();
        let idle = s.ended.is_none() && s.direct.as_ref().is_some_and(|d| d.idle);
        if idle {
            debug_assert!(s.events.is_empty(), "idle with events queued");
            s.waker = Some(waker);
            // Empty (idle means that): a parked member keeps no room for events.
            s.events = VecDeque::new();
        }
        idle
    }

    /// Makes room for `n` events beyond the queue (a member seated again after a hand-over
    /// catching up): the room shrinks back as events are taken.
    pub(crate) fn allow_backlog(&self, n: usize) {
        self.lock().capacity += n;
    }

    /// Ends delivery (the first reason wins).
    pub(crate) fn end(&self, why: Ended) {
        let mut s = self.lock();
        s.ended.get_or_insert(why);
        // Nothing more is written to the member's socket directly.
        if let Some(d) = s.direct.as_mut() {
            d.idle = false;
        }
        let waker = s.waker.take();
        drop(s);
        if let Some(w) = waker {
            w.wake();
        }
    }

    pub(crate) fn ended(&self) -> Option<Ended> {
        self.lock().ended
    }

    /// WebSocket consumer: moves up to `max` events into `out`. An ended mailbox still
    /// hands out what was queued before the end, except after an overflow (the member is
    /// told to resume with `since` instead). With nothing queued, and `idle` (the member has
    /// nothing to send either, and will not write before its next [`Mailbox::wake_up`]), the
    /// room may write to its lent socket from then on.
    pub(crate) fn poll_take(
        &self,
        cx: &mut Context<'_>,
        out: &mut Vec<Utf8Bytes>,
        max: usize,
        idle: bool,
    ) -> Poll<Result<(), Ended>> {
        let mut s = self.lock();
        match s.ended {
            Some(why @ (Ended::Overflow | Ended::Cut)) => return Poll::Ready(Err(why)),
            Some(why @ (Ended::Shutdown | Ended::HandedOver)) if s.events.is_empty() => {
                return Poll::Ready(Err(why))
            }
            _ => {}
        }
        if s.events.is_empty() {
            register(&mut s.waker, cx);
            if idle && s.ended.is_none() {
                if let Some(d) = s.direct.as_mut() {
                    d.idle = true;
                }
            }
            return Poll::Pending;
        }
        let n = s.events.len().min(max);
        out.extend(s.events.drain(..n));
        s.first_seq += n as u64;
        s.taken(n);
        if s.events.is_empty() && s.events.capacity() > KEPT_CAPACITY {
            // A burst (everyone's `joined` while a room fills) is over: an idle member
            // keeps no room for the next one.
            s.events = VecDeque::new();
        }
        Poll::Ready(Ok(()))
    }

    /// Everything still queued (a member handed over takes it along, however full its
    /// socket's buffer).
    pub(crate) fn take_all(&self) -> Vec<Utf8Bytes> {
        let mut s = self.lock();
        let n = s.events.len();
        s.first_seq += n as u64;
        s.taken(n);
        s.events.drain(..).collect()
    }

    /// WebSocket consumer, while the socket cannot take more: ready only when delivery
    /// ends.
    pub(crate) fn poll_ended(&self, cx: &mut Context<'_>) -> Poll<Ended> {
        let mut s = self.lock();
        match s.ended {
            Some(why) => Poll::Ready(why),
            None => {
                register(&mut s.waker, cx);
                Poll::Pending
            }
        }
    }

    /// The sequence number of the first queued event, and the queue (a long-polling
    /// session handed to a new process: the client's cursor keeps its meaning there).
    pub(crate) fn snapshot(&self) -> (u64, Vec<Utf8Bytes>) {
        let s = self.lock();
        (s.first_seq, s.events.iter().cloned().collect())
    }

    /// Long-polling consumer: acknowledges everything up to `cursor`, then returns the
    /// events after it (at most `max`) and the cursor that acknowledges them. A mailbox
    /// handed over is read as before (nothing more arrives in it): the session's queue is
    /// the one the new process goes on with.
    pub(crate) fn poll_read(
        &self,
        cx: &mut Context<'_>,
        cursor: u64,
        max: usize,
    ) -> Poll<Result<(u64, Vec<Utf8Bytes>), Ended>> {
        let mut s = self.lock();
        if let Some(why) = s.ended.filter(|why| *why != Ended::HandedOver) {
            return Poll::Ready(Err(why));
        }
        let acked = cursor
            .saturating_sub(s.first_seq - 1)
            .min(s.events.len() as u64) as usize;
        s.events.drain(..acked);
        s.first_seq += acked as u64;
        s.taken(acked);
        if s.events.is_empty() {
            // A newer request for the same session replaces an older one's waker: wake the
            // older one so that it notices and answers.
            if s.waker.as_ref().is_some_and(|w| !w.will_wake(cx.waker())) {
                if let Some(old) = s.waker.take() {
                    old.wake();
                }
            }
            register(&mut s.waker, cx);
            return Poll::Pending;
        }
        let n = s.events.len().min(max);
        let events: Vec<Utf8Bytes> = s.events.iter().take(n).cloned().collect();
        Poll::Ready(Ok((s.first_seq - 1 + n as u64, events)))
    }
}

impl State {
    /// `n` events left the queue: a backlog allowed shrinks by as much.
    fn taken(&mut self, n: usize) {
        self.capacity = self.capacity.saturating_sub(n).max(self.queue);
    }
}

fn register(slot: &mut Option<Waker>, cx: &Context<'_>) {
    match slot {
        Some(w) if w.will_wake(cx.waker()) => {}
        _ => *slot = Some(cx.waker().clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Waker;

    fn cx() -> Context<'static> {
        Context::from_waker(Waker::noop())
    }

    fn ev(s: &str) -> Utf8Bytes {
        Utf8Bytes::from(s)
    }

    #[test]
    fn take_in_order_and_overflow() {
        let m = Mailbox::new(2);
        let mut out = Vec::new();
        assert!(m.poll_take(&mut cx(), &mut out, 10, false).is_pending());
        assert!(m.push(ev("a")) && m.push(ev("b")));
        assert!(!m.push(ev("c")), "third event overflows a queue of 2");
        assert_eq!(
            m.poll_take(&mut cx(), &mut out, 10, false),
            Poll::Ready(Err(Ended::Overflow))
        );
        assert!(!m.push(ev("d")), "an ended mailbox takes nothing");
    }

    #[test]
    fn a_backlog_allowed_goes_beyond_the_queue_then_shrinks_back() {
        let m = Mailbox::new(2);
        m.allow_backlog(3);
        for e in ["a", "b", "c", "d", "e"] {
            assert!(m.push(ev(e)), "{e}: the backlog's room and the queue's");
        }
        let mut out = Vec::new();
        assert!(m.poll_take(&mut cx(), &mut out, 4, false).is_ready());
        assert_eq!(out.len(), 4);
        // Four taken: the queue's two are left (one of them used), not the backlog's.
        assert!(m.push(ev("f")));
        assert!(!m.push(ev("g")), "the backlog shrank back to the queue");
    }

    #[test]
    fn read_by_cursor_acknowledges() {
        let m = Mailbox::new(3);
        for e in ["a", "b", "c"] {
            assert!(m.push(ev(e)));
        }
        let Poll::Ready(Ok((cur, got))) = m.poll_read(&mut cx(), 0, 2) else {
            panic!()
        };
        assert_eq!((cur, got.len()), (2, 2));
        // The same cursor again: the same events (the response may have been lost).
        let Poll::Ready(Ok((cur2, again))) = m.poll_read(&mut cx(), 0, 2) else {
            panic!()
        };
        assert_eq!((cur2, again), (2, got));
        // Acknowledging 2 frees room for one more.
        let Poll::Ready(Ok((cur, rest))) = m.poll_read(&mut cx(), 2, 10) else {
            panic!()
        };
        assert_eq!((cur, rest), (3, vec![ev("c")]));
        assert!(m.push(ev("d")) && m.push(ev("e")));
        let Poll::Ready(Ok((cur, rest))) = m.poll_read(&mut cx(), 3, 10) else {
            panic!()
        };
        assert_eq!((cur, rest), (5, vec![ev("d"), ev("e")]));
        assert!(m.poll_read(&mut cx(), 5, 10).is_pending());
        // A cursor from the future acknowledges what exists, nothing more.
        assert!(m.push(ev("f")));
        assert!(m.poll_read(&mut cx(), 99, 10).is_pending());
        assert!(m.push(ev("g")));
        let Poll::Ready(Ok((cur, rest))) = m.poll_read(&mut cx(), 6, 10) else {
            panic!()
        };
        assert_eq!((cur, rest), (7, vec![ev("g")]));
    }

    #[test]
    fn a_mailbox_handed_over_is_still_read_by_cursor() {
        let m = Mailbox::new(4);
        assert!(m.push(ev("a")) && m.push(ev("b")));
        m.end(Ended::HandedOver);
        assert!(!m.push(ev("c")), "nothing is queued once handed over");
        let Poll::Ready(Ok((cur, got))) = m.poll_read(&mut cx(), 1, 10) else {
            panic!()
        };
        assert_eq!((cur, got), (2, vec![ev("b")]));
        assert_eq!(m.snapshot(), (2, vec![ev("b")]));
        assert!(m.poll_read(&mut cx(), 2, 10).is_pending());
        assert_eq!(m.snapshot(), (3, vec![]));
    }

    #[test]
    fn shutdown_delivers_what_was_queued() {
        let m = Mailbox::new(4);
        assert!(m.push(ev("a")));
        m.end(Ended::Shutdown);
        m.end(Ended::Cut);
        let mut out = Vec::new();
        assert_eq!(
            m.poll_take(&mut cx(), &mut out, 10, false),
            Poll::Ready(Ok(()))
        );
        assert_eq!(out, vec![ev("a")]);
        assert_eq!(
            m.poll_take(&mut cx(), &mut out, 10, false),
            Poll::Ready(Err(Ended::Shutdown))
        );
    }
}
