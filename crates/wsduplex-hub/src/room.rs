//! Rooms: membership, ids, history and fan-out. Every change to a room happens under its
//! lock, so every member sees the same events in the same order, and a joining member's
//! welcome (members, history) is exactly the state its first live event follows.
//!
//! This is the whole room of a hub of one node: it hands out ids, keeps history and tells
//! its members who joined and left, synchronously, under its lock. With a backplane the
//! room is the same, plus a [`Replica`] that the backplane fills and applies its ordered
//! events through (`backplane/redis/room.rs`); a room reads the replica in two places
//! only: whom a welcome and `members` list, and where a departure goes.

use crate::backplane::Replica;
use crate::event::{self, Body};
use crate::mailbox::{Ended, Mailbox};
use crate::names::unique_name;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;
use wsduplex::Utf8Bytes;

/// How far a room's ids move on when a hand-over fails after its rooms were written down
/// ([`Room::thaw`]): past every id the new process may have given before it died (it would
/// have to publish 2^32 messages in one room for that). Ids are JSON numbers, which
/// JavaScript holds exactly below 2^53: that leaves room for 2^21 failed hand-overs.
pub(crate) const THAW_ID_MARGIN: u64 = 1 << 32;

pub(crate) struct Room {
    pub(crate) name: Arc<str>,
    state: Mutex<State>,
}

/// A room's state, under its lock. Its fields are the crate's so that a backplane can apply
/// its events to it under that same lock (`backplane/redis/room.rs`).
pub(crate) struct State {
    pub(crate) last_id: u64,
    /// `(id, encoded message)`, oldest first.
    pub(crate) history: VecDeque<(u64, Utf8Bytes)>,
    pub(crate) history_len: usize,
    pub(crate) members: Vec<Member>,
    /// The key of the next member; keys only grow, so they tell who joined after whom.
    pub(crate) next_key: u64,
    pub(crate) last_active: Instant,
    /// [`Room::shut`] ran: nobody is admitted.
    pub(crate) shut: bool,
    /// `None` in a hub of one node.
    pub(crate) replica: Option<Box<Replica>>,
    /// A hand-over: the last id when the members were stopped (each member's mailbox had
    /// every event up to it), and whether the room has been written down for the new
    /// process (nothing is published here after that: `handover.rs`).
    pub(crate) frozen_at: Option<u64>,
    pub(crate) exported: bool,
    /// Members of the process that handed the room over that were not seated again here:
    /// a member seated after that is told they left, as the others were.
    pub(crate) left_out: Vec<Arc<str>>,
    /// Ids this room never gave, as `(after, up_to]` windows, oldest first: those a new
    /// process may have given before it died ([`Room::thaw`]). A resume from inside one
    /// comes from that process; one from before it missed nothing there.
    pub(crate) skipped: Vec<(u64, u64)>,
    /// A process taking over seats members handed to it (`Hub::hold_history`): history
    /// keeps every message (up to [`HELD_HISTORY`]) until they are all seated.
    pub(crate) history_held: bool,
}

/// The most messages a room keeps while its history is held.
pub(crate) const HELD_HISTORY: usize = 100_000;

pub(crate) struct Member {
    key: u64,
    pub(crate) name: Arc<str>,
    pub(crate) mailbox: Arc<Mailbox>,
}

/// What a join produced: the member's key, its unique name and its mailbox (whose first
/// event is the welcome).
pub(crate) struct Joined {
    pub(crate) key: u64,
    pub(crate) name: Arc<str>,
    pub(crate) mailbox: Arc<Mailbox>,
}

impl Room {
    pub(crate) fn new(name: &str, history_len: usize) -> Self {
        Self::with(name, history_len, None)
    }

    /// A room whose events a backplane orders.
    #[cfg(feature = "redis")]
    pub(crate) fn with_replica(name: &str, history_len: usize, replica: Replica) -> Self {
        Self::with(name, history_len, Some(Box::new(replica)))
    }

    fn with(name: &str, history_len: usize, replica: Option<Box<Replica>>) -> Self {
        Self {
            name: name.into(),
            state: Mutex::new(State {
                last_id: 0,
                history: VecDeque::new(),
                history_len,
                members: Vec::new(),
                next_key: 0,
                last_active: Instant::now(),
                shut: false,
                replica,
                frozen_at: None,
                exported: false,
                left_out: Vec::new(),
                skipped: Vec::new(),
                history_held: false,
            }),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a member. `since`: the last id the client has seen (a resume). `None` if the
    /// room is shut (the hub is stopping).
    pub(crate) fn join(
        &self,
        wanted: &str,
        since: Option<u64>,
        mailbox: Arc<Mailbox>,
    ) -> Option<Joined> {
        let mut s = self.lock();
        if s.shut {
            return None;
        }
        let name: Arc<str> =
            unique_name(wanted, |n| s.members.iter().any(|m| &*m.name == n)).into();
        Some(self.enter(&mut s, name, since, mailbox, true))
    }

    /// Welcomes `name` (already in the roster of a replica) in `mailbox`, tells the others
    /// if `announce`, and adds it.
    pub(crate) fn enter(
        &self,
        s: &mut State,
        name: Arc<str>,
        since: Option<u64>,
        mailbox: Arc<Mailbox>,
        announce: bool,
    ) -> Joined {
        let (from, gap) = match since {
            None => (0, false),
            // Ids from a room that has since been dropped and recreated (or a made-up id):
            // everything here is new to the client, and something may be lost.
            Some(since) if since > s.last_id => (0, true),
            // From inside a window of skipped ids: the client had messages from a process
            // that died; what it gave after `since` is lost.
            Some(since) => (since, s.missed(since) || s.in_skipped(since)),
        };
        let history = s
            .history
            .iter()
            .filter(|(id, _)| *id > from)
            .map(|(_, m)| m);
        let welcome = match &s.replica {
            None => {
                let members = s
                    .members
                    .iter()
                    .map(|m| &*m.name)
                    .chain(std::iter::once(&*name));
                event::welcome(&self.name, &name, members, s.last_id, history, gap)
            }
            // Every node's members, this one included.
            Some(replica) => {
                let members = replica.roster().iter().map(|n| &**n);
                event::welcome(&self.name, &name, members, s.last_id, history, gap)
            }
        };
        mailbox.push(welcome);
        if announce {
            broadcast(&self.name, s, event::presence("joined", &self.name, &name));
        }
        seat_member(s, name, mailbox)
    }

    /// Removes a member (if it is still in the room) and tells the others.
    pub(crate) fn leave(&self, key: u64) {
        let mut s = self.lock();
        if let Some(i) = s.members.iter().position(|m| m.key == key) {
            let m = s.members.remove(i);
            departed(&self.name, &mut s, m.name);
        }
        s.last_active = Instant::now();
    }

    /// Assigns the next id, keeps the message in history and delivers it to every member.
    /// Returns 0 (no message has that id) once the room was handed to another process.
    pub(crate) fn publish(&self, name: &str, body: Body<'_>) -> u64 {
        let mut s = self.lock();
        if s.exported {
            return 0;
        }
        s.last_id += 1;
        let id = s.last_id;
        let encoded = event::message(id, &self.name, name, body, event::now_ms());
        keep(&mut s, id, &encoded);
        send_message(&self.name, &mut s, encoded);
        s.last_active = Instant::now();
        id
    }

    /// Keeps every message in history (up to [`HELD_HISTORY`]), or no longer: history is
    /// cut back to its length.
    pub(crate) fn hold_history(&self, hold: bool) {
        let mut s = self.lock();
        s.history_held = hold;
        if !hold && s.history.len() > s.history_len {
            let extra = s.history.len() - s.history_len;
            s.history.drain(..extra);
            s.history.shrink_to_fit();
        }
    }

    /// Cuts every member called `name`: their mailboxes end with `Cut`. Returns how many.
    pub(crate) fn cut(&self, name: &str) -> usize {
        let mut s = self.lock();
        let mut cut = Vec::new();
        s.members.retain(|m| {
            if &*m.name == name {
                m.mailbox.end(Ended::Cut);
                cut.push(m.name.clone());
                false
            } else {
                true
            }
        });
        let count = cut.len();
        for n in cut {
            departed(&self.name, &mut s, n);
        }
        count
    }

    /// Ends every member's delivery with `Shutdown` and refuses new members.
    pub(crate) fn shut(&self) {
        let mut s = self.lock();
        s.shut = true;
        for m in &s.members {
            m.mailbox.end(Ended::Shutdown);
        }
    }

    /// A hand-over begins: nobody is admitted, and every member's delivery ends with
    /// `HandedOver` once its queue is sent. Returns the last id: every member has every
    /// message up to it.
    pub(crate) fn freeze(&self) -> u64 {
        let mut s = self.lock();
        s.shut = true;
        let last_id = s.last_id;
        let last = *s.frozen_at.get_or_insert(last_id);
        for m in &s.members {
            m.mailbox.end(Ended::HandedOver);
        }
        last
    }

    /// A hand-over failed: the room takes members and messages again. If it was written
    /// down for the new process, that process may have given ids after its last one before
    /// it died, to messages this room never had: its ids move on by [`THAW_ID_MARGIN`], so
    /// that none is given twice. Then they move on to `floor` at least (see
    /// [`Room::start_after`]).
    pub(crate) fn thaw(&self, floor: u64) {
        let mut s = self.lock();
        if s.exported {
            let to = s.last_id.saturating_add(THAW_ID_MARGIN);
            s.skip_to(to);
        }
        s.skip_to(floor);
        s.shut = false;
        s.exported = false;
        s.frozen_at = None;
    }

    /// A room made after a failed hand-over: the new process may have made it too and given
    /// ids up to `floor` there, so its ids start after it.
    pub(crate) fn start_after(&self, floor: u64) {
        self.lock().skip_to(floor);
    }

    /// The room as the new process takes it: its last id and history. Nothing is published
    /// here afterwards.
    pub(crate) fn export(&self) -> (u64, Vec<(u64, Utf8Bytes)>) {
        let mut s = self.lock();
        s.exported = true;
        (s.last_id, s.history.iter().cloned().collect())
    }

    /// A room as another process handed it over; `false` (and nothing changes) if it
    /// already has messages here.
    pub(crate) fn restore(
        &self,
        last_id: u64,
        history: impl IntoIterator<Item = (u64, Utf8Bytes)>,
    ) -> bool {
        let mut s = self.lock();
        if s.last_id != 0 {
            return false;
        }
        s.last_id = last_id;
        s.history = history.into_iter().collect();
        while s.history.len() > s.history_len {
            s.history.pop_front();
        }
        true
    }

    /// A member handed over from another process takes its seat again, under the name it
    /// had, unannounced (it never left): its mailbox gets, from history, the messages after
    /// `seen` (published while the hand-over went on). `None` if a message after `seen` is
    /// no longer in history (the caller closes the connection: the client resumes with
    /// `since`), or if the room is shut.
    pub(crate) fn seat(&self, name: Arc<str>, seen: u64, mailbox: Arc<Mailbox>) -> Option<Joined> {
        let mut s = self.lock();
        if s.shut {
            return None;
        }
        if s.missed(seen) {
            return None;
        }
        // What it missed goes into its mailbox beyond the usual queue: a member seated
        // late in a busy hand-over may have a long way to catch up.
        let behind = s.history.iter().filter(|(id, _)| *id > seen).count();
        mailbox.allow_backlog(behind + s.left_out.len());
        for (id, event) in &s.history {
            if *id > seen && !mailbox.push(event.clone()) {
                return None;
            }
        }
        for gone in &s.left_out {
            if !mailbox.push(event::presence("left", &self.name, gone)) {
                return None;
            }
        }
        Some(seat_member(&mut s, name, mailbox))
    }

    /// A member handed over from another process that is not seated again (see
    /// [`Room::seat`]): the members seated later are told it left, and with `announce` the
    /// members here now too (without: it was seated, and told them as it left).
    pub(crate) fn left_out(&self, name: &str, announce: bool) {
        let mut s = self.lock();
        let name: Arc<str> = name.into();
        s.left_out.push(name.clone());
        if announce {
            departed(&self.name, &mut s, name);
        }
    }

    /// The members (of every node, with a backplane) and the last id.
    pub(crate) fn members(&self) -> (Vec<String>, u64) {
        let s = self.lock();
        let names = match &s.replica {
            None => s.members.iter().map(|m| m.name.to_string()).collect(),
            Some(replica) => replica.roster().iter().map(|n| n.to_string()).collect(),
        };
        (names, s.last_id)
    }

    /// `Some(last activity)` if the room has no member (it may be dropped).
    pub(crate) fn idle_since(&self) -> Option<Instant> {
        let s = self.lock();
        s.members.is_empty().then_some(s.last_active)
    }
}

impl State {
    /// The next id given is after `to`; the ids skipped are remembered.
    fn skip_to(&mut self, to: u64) {
        if to > self.last_id {
            self.skipped.push((self.last_id, to));
            self.last_id = to;
        }
    }

    /// Whether a message this room gave after `since` is no longer in history (ids it
    /// skipped were never messages here).
    fn missed(&self, since: u64) -> bool {
        let first_kept = self.history.front().map_or(self.last_id + 1, |(id, _)| *id);
        let mut lacking = since + 1;
        for &(after, up_to) in &self.skipped {
            if after < lacking && lacking <= up_to {
                lacking = up_to + 1;
            }
        }
        lacking < first_kept
    }

    /// `since` is an id this room skipped: one given by a process that died.
    fn in_skipped(&self, since: u64) -> bool {
        self.skipped
            .iter()
            .any(|&(after, up_to)| after < since && since < up_to)
    }
}

/// Adds a member under the next key.
fn seat_member(s: &mut State, name: Arc<str>, mailbox: Arc<Mailbox>) -> Joined {
    let key = s.next_key;
    s.next_key += 1;
    s.members.push(Member {
        key,
        name: name.clone(),
        mailbox: mailbox.clone(),
    });
    s.last_active = Instant::now();
    Joined { key, name, mailbox }
}

/// Keeps a message in history (the oldest goes when it is full).
pub(crate) fn keep(s: &mut State, id: u64, encoded: &Utf8Bytes) {
    if s.history_len > 0 {
        let bound = match s.history_held {
            true => s.history_len.max(HELD_HISTORY),
            false => s.history_len,
        };
        if s.history.len() >= bound {
            s.history.pop_front();
        }
        s.history.push_back((id, encoded.clone()));
    }
}

/// A member of this node went away (it left, was cut, or was too slow). A hub of one node
/// tells the others now; a replica reports it to the backplane, which orders that `left`
/// for every node (this one included).
fn departed(room: &str, s: &mut State, name: Arc<str>) {
    match &s.replica {
        None => broadcast(room, s, event::presence("left", room, &name)),
        Some(replica) => replica.report_left(room, name),
    }
}

/// Delivers one encoded event to every member's queue: the same bytes, shared. A member
/// whose queue is full is removed (its mailbox ended with `Overflow`), and the others are
/// told it left (which may overflow someone else in turn). For presence (`joined`, `left`):
/// a room filling up announces every join to everyone, and queued announcements leave in
/// batches.
pub(crate) fn broadcast(room: &str, s: &mut State, event: Utf8Bytes) {
    deliver(room, s, event, 0, false);
}

/// [`broadcast`] for a message: written at once to each idle member that lent its socket
/// (`direct.rs`), queued for the others.
pub(crate) fn send_message(room: &str, s: &mut State, event: Utf8Bytes) {
    deliver(room, s, event, 0, true);
}

/// [`send_message`] to the members with a key from `from_key` on, the ones who joined since
/// that key was next (the `left` events it causes go to every member).
#[cfg(feature = "redis")]
pub(crate) fn send_message_from(room: &str, s: &mut State, event: Utf8Bytes, from_key: u64) {
    deliver(room, s, event, from_key, true);
}

fn deliver(room: &str, s: &mut State, event: Utf8Bytes, from_key: u64, direct: bool) {
    let mut gone: Vec<Arc<str>> = Vec::new();
    let mut next = Some(event);
    let (mut from_key, mut direct) = (from_key, direct);
    while let Some(ev) = next.take() {
        // The event's frame, made once for the members it is written to directly.
        let (mut frame, now) = (None, direct.then(Instant::now));
        s.members.retain(|m| {
            if m.key < from_key {
                return true;
            }
            let kept = match now {
                Some(now) => m.mailbox.deliver(&ev, &mut frame, now),
                None => m.mailbox.push(ev.clone()),
            };
            if !kept {
                gone.push(m.name.clone());
            }
            kept
        });
        // One `left` per round, not one call per departure: a cascade of overflows is a
        // loop here, never a recursion.
        match &s.replica {
            None => next = gone.pop().map(|name| event::presence("left", room, &name)),
            Some(replica) => gone
                .drain(..)
                .for_each(|name| replica.report_left(room, name)),
        }
        (from_key, direct) = (0, false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn welcome(room: &Room, since: u64) -> serde_json::Value {
        let mailbox = Arc::new(Mailbox::new(16));
        room.join("x", Some(since), mailbox.clone()).unwrap();
        serde_json::from_str(mailbox.take_all()[0].as_str()).unwrap()
    }

    fn thawed_after_export(history_len: usize) -> Room {
        let room = Room::new("r", history_len);
        for _ in 0..3 {
            room.publish("a", Body::Text("m"));
        }
        room.freeze();
        room.export();
        room.thaw(0);
        room
    }

    #[test]
    fn held_history_keeps_every_message_until_released() {
        let room = Room::new("r", 3);
        room.hold_history(true);
        for i in 0..10 {
            room.publish("a", Body::Text(&format!("m{i}")));
        }
        // A member that saw id 2 can still be seated: 3..=10 are there, beyond its queue.
        let mailbox = Arc::new(Mailbox::new(2));
        assert!(room.seat("b".into(), 2, mailbox.clone()).is_some());
        let mut out = Vec::new();
        let cx = &mut std::task::Context::from_waker(std::task::Waker::noop());
        assert!(mailbox.poll_take(cx, &mut out, 64, false).is_ready());
        assert_eq!(out.len(), 8);
        room.hold_history(false);
        assert_eq!(room.lock().history.len(), 3, "cut back to its length");
        assert!(room
            .seat("c".into(), 2, Arc::new(Mailbox::new(2)))
            .is_none());
    }

    #[test]
    fn skipped_ids_are_no_gap_but_a_resume_from_inside_them_is() {
        const M: u64 = THAW_ID_MARGIN;
        let room = thawed_after_export(0);
        // Without history every message is lost after `since`, but none was given here.
        assert_eq!(welcome(&room, 3)["gap"], false);
        assert_eq!(welcome(&room, 3 + M)["gap"], false);
        assert_eq!(welcome(&room, 2)["gap"], true);
        assert_eq!(welcome(&room, 7)["gap"], true);
        // A member stopped at the freeze is seated again.
        assert!(room
            .seat("m".into(), 3, Arc::new(Mailbox::new(4)))
            .is_some());
        assert_eq!(room.publish("a", Body::Text("next")), 4 + M);
        assert_eq!(welcome(&room, 3)["gap"], true);

        // With history: a resume from before the window gets what follows it.
        let room = thawed_after_export(8);
        let w = welcome(&room, 1);
        assert_eq!(
            (&w["gap"], w["history"].as_array().unwrap().len()),
            (&false.into(), 2)
        );
        assert_eq!(welcome(&room, 5)["gap"], true);
        // Thawed without an export (the new process never had the rooms): ids go on.
        let room = Room::new("r", 8);
        room.publish("a", Body::Text("m"));
        room.freeze();
        room.thaw(0);
        assert_eq!(room.publish("a", Body::Text("m")), 2);
    }

    #[test]
    fn a_second_failure_skips_again_and_a_floor_raises_a_room() {
        let room = thawed_after_export(0);
        room.freeze();
        room.export();
        room.thaw(2 * THAW_ID_MARGIN);
        assert_eq!(room.publish("a", Body::Text("m")), 4 + 2 * THAW_ID_MARGIN);
        // Inside the first window, and inside the second.
        assert_eq!(welcome(&room, 9)["gap"], true);
        assert_eq!(welcome(&room, 9 + THAW_ID_MARGIN)["gap"], true);
        let room = Room::new("new", 8);
        room.start_after(THAW_ID_MARGIN);
        assert_eq!(welcome(&room, THAW_ID_MARGIN)["gap"], false);
        assert_eq!(room.publish("a", Body::Text("m")), THAW_ID_MARGIN + 1);
    }
}
