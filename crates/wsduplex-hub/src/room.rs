//! Rooms: membership, ids, history and fan-out. Every change to a room happens under its
//! lock, so every member sees the same events in the same order, and a joining member's
//! welcome (members, history) is exactly the state its first live event follows.
//!
//! A room of a hub with a backplane is *shared*: the backplane orders its events for every
//! node, and this node applies them (`apply_*`, `admit`) in that order. It then knows every
//! member of every node (the roster) and delivers to its own members only. A local member
//! that goes away (left, cut, too slow) is reported to the backplane, which orders its
//! `left` for everyone.

use crate::event;
use crate::mailbox::{Ended, Mailbox};
use crate::names::unique_name;
use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;
use wsduplex::Utf8Bytes;

/// While the backplane is down, the first message a node delivers on its own takes an id
/// this far past the last one it knows: ids handed out meanwhile by nodes that still reach
/// Redis stay below it, so no client sees one id for two messages.
pub(crate) const LOCAL_ID_GAP: u64 = 1_000_000;

/// How many messages in doubt (see [`Room::publish_in_doubt`]) a room remembers; the
/// oldest is forgotten first. One resync settles them all, so a few are plenty.
const MAX_IN_DOUBT: usize = 64;

/// Reports a local member's departure to the backplane: `(room, name)`.
pub(crate) type OnLeave = Arc<dyn Fn(&str, Arc<str>) + Send + Sync>;

pub(crate) struct Room {
    pub(crate) name: Arc<str>,
    state: Mutex<State>,
}

struct State {
    last_id: u64,
    /// `(id, encoded message)`, oldest first.
    history: VecDeque<(u64, Utf8Bytes)>,
    history_len: usize,
    members: Vec<Member>,
    next_key: u64,
    last_active: Instant,
    shut: bool,
    /// `Some` in a shared room.
    shared: Option<Shared>,
}

/// What a shared room knows beyond its local members.
struct Shared {
    on_leave: OnLeave,
    /// The snapshot from Redis has been applied (and the node subscribed first).
    loaded: bool,
    /// Every member on every node, in the order they joined; names are unique across nodes.
    roster: Vec<Arc<str>>,
    /// The newest id of the shared sequence applied here.
    last_shared: u64,
    /// The newest presence change applied (Redis numbers them per room).
    presence_seq: u64,
    /// Ids were handed out locally since the last snapshot (the backplane was down).
    local_ids: bool,
    /// Messages delivered locally whose publish failed but may have reached Redis, oldest
    /// first.
    in_doubt: VecDeque<InDoubt>,
    /// The number of the last message put in doubt.
    doubt_seq: u64,
}

/// A message delivered locally after its publish failed: Redis may have run the publish
/// anyway (it had the command when the connection failed), and then it comes back with a
/// shared id and `token`.
struct InDoubt {
    seq: u64,
    token: Box<str>,
    /// The members here with a key below this got the local copy.
    keys_below: u64,
}

/// A message of the shared sequence, as the backplane has it.
pub(crate) struct SharedMessage {
    pub(crate) id: u64,
    pub(crate) encoded: Utf8Bytes,
    /// What its publishing node tagged it with (see [`Room::publish_in_doubt`]).
    pub(crate) token: Option<String>,
}

struct Member {
    key: u64,
    name: Arc<str>,
    mailbox: Arc<Mailbox>,
}

/// What a join produced: the member's key, its unique name and its mailbox (whose first
/// event is the welcome).
pub(crate) struct Joined {
    pub(crate) key: u64,
    pub(crate) name: Arc<str>,
    pub(crate) mailbox: Arc<Mailbox>,
}

/// What the backplane sends with a resynchronization.
pub(crate) struct SyncState {
    pub(crate) local_names: Vec<String>,
    pub(crate) last_id: u64,
    pub(crate) last_shared: u64,
    pub(crate) presence_seq: u64,
    /// The messages in doubt up to this number are settled by this resync: they came back
    /// in it, or Redis never ran them.
    pub(crate) doubts_upto: u64,
}

/// The room as Redis has it, read atomically.
pub(crate) struct Snapshot {
    /// Every member, in the order they joined.
    pub(crate) roster: Vec<Arc<str>>,
    pub(crate) presence_seq: u64,
    /// The room's id counter.
    pub(crate) top: u64,
    /// Messages after the last shared id this node had, oldest first.
    pub(crate) messages: Vec<SharedMessage>,
    /// Some messages after that id are gone from Redis (or more than history): the local
    /// members are closed with 4008 and resume with `since` (their welcome says `gap`).
    pub(crate) missed: bool,
    /// Names of local members that another node holds now (after an outage longer than
    /// the presence TTL): closed with 4008, they come back under a free name.
    pub(crate) conflicts: Vec<String>,
    /// [`SyncState::doubts_upto`] of the state this resync sent.
    pub(crate) doubts_upto: u64,
}

impl Room {
    pub(crate) fn new(name: &str, history_len: usize) -> Self {
        Self::with(name, history_len, None)
    }

    /// A shared room, not yet loaded.
    pub(crate) fn new_shared(name: &str, history_len: usize, on_leave: OnLeave) -> Self {
        Self::with(
            name,
            history_len,
            Some(Shared {
                on_leave,
                loaded: false,
                roster: Vec::new(),
                last_shared: 0,
                presence_seq: 0,
                local_ids: false,
                in_doubt: VecDeque::new(),
                doubt_seq: 0,
            }),
        )
    }

    fn with(name: &str, history_len: usize, shared: Option<Shared>) -> Self {
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
                shared,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a member. `since`: the last id the client has seen (a resume). `None` if the
    /// room is shut (the hub is stopping).
    pub(crate) fn join(&self, wanted: &str, since: Option<u64>, queue: usize) -> Option<Joined> {
        let mut s = self.lock();
        if s.shut {
            return None;
        }
        let name: Arc<str> =
            unique_name(wanted, |n| s.members.iter().any(|m| &*m.name == n)).into();
        Some(self.enter(&mut s, name, since, Mailbox::new(queue), true))
    }

    /// Welcomes `name` (already in the roster of a shared room) in `mailbox`, tells the
    /// others if `announce`, and adds it.
    fn enter(
        &self,
        s: &mut State,
        name: Arc<str>,
        since: Option<u64>,
        mailbox: Mailbox,
        announce: bool,
    ) -> Joined {
        let (from, gap) = match since {
            None => (0, false),
            // Ids from a room that has since been dropped and recreated (or a made-up id):
            // everything here is new to the client, and something may be lost.
            Some(since) if since > s.last_id => (0, true),
            Some(since) => {
                let first_kept = s.history.front().map_or(s.last_id + 1, |(id, _)| *id);
                (since, since + 1 < first_kept)
            }
        };
        let history = s
            .history
            .iter()
            .filter(|(id, _)| *id > from)
            .map(|(_, m)| m);
        let welcome = match &s.shared {
            None => {
                let members = s
                    .members
                    .iter()
                    .map(|m| &*m.name)
                    .chain(std::iter::once(&*name));
                event::welcome(&self.name, &name, members, s.last_id, history, gap)
            }
            Some(shared) => {
                let members = shared.roster.iter().map(|n| &**n);
                event::welcome(&self.name, &name, members, s.last_id, history, gap)
            }
        };
        let mailbox = Arc::new(mailbox);
        mailbox.push(welcome);
        if announce {
            broadcast(&self.name, s, event::presence("joined", &self.name, &name));
        }
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

    /// Removes a member (if it is still in the room) and tells the others (in a shared
    /// room, the backplane does).
    pub(crate) fn leave(&self, key: u64) {
        let mut s = self.lock();
        if let Some(i) = s.members.iter().position(|m| m.key == key) {
            let m = s.members.remove(i);
            match &s.shared {
                Some(shared) => (shared.on_leave)(&self.name, m.name),
                None => broadcast(
                    &self.name,
                    &mut s,
                    event::presence("left", &self.name, &m.name),
                ),
            }
        }
        s.last_active = Instant::now();
    }

    /// Assigns the next id, keeps the message in history and delivers it to every member.
    pub(crate) fn publish(&self, name: &str, text: &str) -> u64 {
        let mut s = self.lock();
        s.last_id += 1;
        let id = s.last_id;
        let encoded = event::message(id, &self.name, name, text, event::now_ms());
        if s.history_len > 0 {
            if s.history.len() >= s.history_len {
                s.history.pop_front();
            }
            s.history.push_back((id, encoded.clone()));
        }
        broadcast(&self.name, &mut s, encoded);
        s.last_active = Instant::now();
        id
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
        for n in &cut {
            match &s.shared {
                Some(shared) => (shared.on_leave)(&self.name, n.clone()),
                None => broadcast(&self.name, &mut s, event::presence("left", &self.name, n)),
            }
        }
        cut.len()
    }

    /// Ends every member's delivery with `Shutdown` and refuses new members.
    pub(crate) fn shut(&self) {
        let mut s = self.lock();
        s.shut = true;
        for m in &s.members {
            m.mailbox.end(Ended::Shutdown);
        }
    }

    /// The members (of every node, in a shared room) and the last id.
    pub(crate) fn members(&self) -> (Vec<String>, u64) {
        let s = self.lock();
        let names = match &s.shared {
            None => s.members.iter().map(|m| m.name.to_string()).collect(),
            Some(shared) => shared.roster.iter().map(|n| n.to_string()).collect(),
        };
        (names, s.last_id)
    }

    /// `Some(last activity)` if the room has no member (it may be dropped).
    pub(crate) fn idle_since(&self) -> Option<Instant> {
        let s = self.lock();
        s.members.is_empty().then_some(s.last_active)
    }

    // ---- Shared rooms: what the backplane applies, in the order Redis gave. ----

    pub(crate) fn is_loaded(&self) -> bool {
        self.lock().shared.as_ref().is_some_and(|sh| sh.loaded)
    }

    pub(crate) fn has_members(&self) -> bool {
        !self.lock().members.is_empty()
    }

    pub(crate) fn last_shared(&self) -> u64 {
        self.lock().shared.as_ref().map_or(0, |sh| sh.last_shared)
    }

    pub(crate) fn sync_state(&self) -> SyncState {
        let s = self.lock();
        let (last_shared, presence_seq, doubts_upto) = s.shared.as_ref().map_or((0, 0, 0), |sh| {
            (sh.last_shared, sh.presence_seq, sh.doubt_seq)
        });
        SyncState {
            local_names: s.members.iter().map(|m| m.name.to_string()).collect(),
            last_id: s.last_id,
            last_shared,
            presence_seq,
            doubts_upto,
        }
    }

    /// A message of the shared sequence. `false` if it was already applied.
    pub(crate) fn apply_message(&self, message: SharedMessage) -> bool {
        let mut s = self.lock();
        apply_message(&self.name, &mut s, message)
    }

    /// Another node's member joined (or one of this node's, re-registered).
    pub(crate) fn apply_joined(&self, seq: u64, name: &str) {
        let mut s = self.lock();
        let Some(shared) = s.shared.as_mut() else {
            return;
        };
        if seq <= shared.presence_seq {
            return;
        }
        shared.presence_seq = seq;
        if shared.roster.iter().any(|n| &**n == name) {
            return;
        }
        shared.roster.push(name.into());
        broadcast(
            &self.name,
            &mut s,
            event::presence("joined", &self.name, name),
        );
    }

    /// A member of this node, admitted at the place of its `joined` in the sequence: its
    /// welcome is the room as of that event. `None` if the room is shut.
    pub(crate) fn admit(
        &self,
        seq: u64,
        name: &str,
        since: Option<u64>,
        queue: usize,
    ) -> Option<Joined> {
        let mut s = self.lock();
        if s.shut {
            return None;
        }
        let name: Arc<str> = name.into();
        let shared = s.shared.as_mut()?;
        shared.presence_seq = shared.presence_seq.max(seq);
        if !shared.roster.contains(&name) {
            shared.roster.push(name.clone());
        }
        Some(self.enter(&mut s, name, since, Mailbox::new(queue), true))
    }

    /// A long-polling session that moved here from another node: the member is already in
    /// the room (nobody is told), and its mailbox goes on after the client's `cursor` with
    /// a welcome (the members now, the messages after `since`).
    pub(crate) fn admit_moved(
        &self,
        name: &str,
        since: Option<u64>,
        queue: usize,
        cursor: u64,
    ) -> Option<Joined> {
        let mut s = self.lock();
        if s.shut {
            return None;
        }
        let name: Arc<str> = name.into();
        let shared = s.shared.as_mut()?;
        if !shared.roster.contains(&name) {
            shared.roster.push(name.clone());
        }
        let mailbox = Mailbox::starting_after(queue, cursor);
        Some(self.enter(&mut s, name, since, mailbox, false))
    }

    /// A member (of any node) left.
    pub(crate) fn apply_left(&self, seq: u64, name: &str) {
        let mut s = self.lock();
        let Some(shared) = s.shared.as_mut() else {
            return;
        };
        if seq <= shared.presence_seq {
            return;
        }
        shared.presence_seq = seq;
        left_from_roster(&self.name, &mut s, name);
    }

    /// The backplane is down: a local member's `left` goes to the local members only.
    pub(crate) fn left_locally(&self, name: &str) {
        let mut s = self.lock();
        left_from_roster(&self.name, &mut s, name);
    }

    /// The backplane is down: the message goes to this node's members only, with an id of
    /// their own (see [`LOCAL_ID_GAP`]) and `"local":true`, and stays out of history.
    pub(crate) fn publish_local(&self, name: &str, text: &str) -> u64 {
        let mut s = self.lock();
        self.publish_local_in(&mut s, name, text)
    }

    /// [`Room::publish_local`] for a message whose publish failed after it may have reached
    /// Redis (`token` is what it was tagged with there). If it comes back in the shared
    /// sequence before the next resync has settled it, the members who got it here are not
    /// given it again; everyone else is (and it is in history, with its shared id).
    pub(crate) fn publish_in_doubt(&self, name: &str, text: &str, token: &str) -> u64 {
        let mut s = self.lock();
        let id = self.publish_local_in(&mut s, name, text);
        let keys_below = s.next_key;
        if let Some(shared) = s.shared.as_mut() {
            if shared.in_doubt.len() >= MAX_IN_DOUBT {
                shared.in_doubt.pop_front();
            }
            shared.doubt_seq += 1;
            shared.in_doubt.push_back(InDoubt {
                seq: shared.doubt_seq,
                token: token.into(),
                keys_below,
            });
        }
        id
    }

    fn publish_local_in(&self, s: &mut State, name: &str, text: &str) -> u64 {
        if let Some(shared) = s.shared.as_mut() {
            if !shared.local_ids {
                shared.local_ids = true;
                s.last_id += LOCAL_ID_GAP - 1;
            }
        }
        s.last_id += 1;
        let id = s.last_id;
        let encoded = event::local_message(id, &self.name, name, text, event::now_ms());
        broadcast(&self.name, s, encoded);
        s.last_active = Instant::now();
        id
    }

    /// Applies the room as Redis has it (after a reconnect, or when first loaded): missed
    /// messages are delivered, then whoever left or joined meanwhile.
    pub(crate) fn apply_snapshot(&self, snap: Snapshot) {
        let mut s = self.lock();
        if s.shared.is_none() {
            return;
        }
        for message in snap.messages {
            apply_message(&self.name, &mut s, message);
        }
        let conflicts: HashSet<&str> = snap.conflicts.iter().map(|n| n.as_str()).collect();
        s.members.retain(|m| {
            let taken = conflicts.contains(&*m.name);
            if taken || snap.missed {
                m.mailbox.end(Ended::Overflow);
            }
            !taken
        });
        let Some(shared) = s.shared.as_mut() else {
            return;
        };
        let old: HashSet<Arc<str>> = shared.roster.iter().cloned().collect();
        let new: HashSet<Arc<str>> = snap.roster.iter().cloned().collect();
        let left: Vec<Arc<str>> = shared
            .roster
            .iter()
            .filter(|n| !new.contains(*n))
            .cloned()
            .collect();
        let joined: Vec<Arc<str>> = snap
            .roster
            .iter()
            .filter(|n| !old.contains(*n))
            .cloned()
            .collect();
        shared.roster = snap.roster;
        shared.presence_seq = snap.presence_seq;
        shared.last_shared = shared.last_shared.max(snap.top);
        shared.local_ids = false;
        shared.in_doubt.retain(|d| d.seq > snap.doubts_upto);
        shared.loaded = true;
        s.last_id = s.last_id.max(snap.top);
        for n in &left {
            broadcast(&self.name, &mut s, event::presence("left", &self.name, n));
        }
        for n in &joined {
            broadcast(&self.name, &mut s, event::presence("joined", &self.name, n));
        }
        s.last_active = Instant::now();
    }
}

fn apply_message(room: &str, s: &mut State, message: SharedMessage) -> bool {
    let SharedMessage { id, encoded, token } = message;
    let Some(shared) = s.shared.as_mut() else {
        return false;
    };
    if id <= shared.last_shared {
        return false;
    }
    shared.last_shared = id;
    // Ours, delivered locally when its publish failed: not again to those who got it.
    let doubt = token.and_then(|t| shared.in_doubt.iter().position(|d| *d.token == *t));
    let from_key = doubt
        .and_then(|i| shared.in_doubt.remove(i))
        .map_or(0, |d| d.keys_below);
    s.last_id = s.last_id.max(id);
    if s.history_len > 0 {
        if s.history.len() >= s.history_len {
            s.history.pop_front();
        }
        s.history.push_back((id, encoded.clone()));
    }
    deliver(room, s, encoded, from_key);
    s.last_active = Instant::now();
    true
}

fn left_from_roster(room: &str, s: &mut State, name: &str) {
    let Some(shared) = s.shared.as_mut() else {
        return;
    };
    let Some(i) = shared.roster.iter().position(|n| &**n == name) else {
        return;
    };
    shared.roster.remove(i);
    broadcast(room, s, event::presence("left", room, name));
}

/// Delivers one encoded event to every member: the same bytes, shared. A member whose
/// queue is full is removed (its mailbox ended with `Overflow`), and the others are told it
/// left (which may overflow someone else in turn). In a shared room the backplane is told
/// instead, and orders that `left` for every node.
fn broadcast(room: &str, s: &mut State, event: Utf8Bytes) {
    deliver(room, s, event, 0);
}

/// [`broadcast`] to the members with a key from `from_key` on (the `left` events it causes
/// go to every member).
fn deliver(room: &str, s: &mut State, event: Utf8Bytes, from_key: u64) {
    let mut gone: Vec<Arc<str>> = Vec::new();
    let mut next = Some(event);
    let mut from_key = from_key;
    while let Some(ev) = next.take() {
        s.members.retain(|m| {
            if m.key < from_key {
                return true;
            }
            let kept = m.mailbox.push(ev.clone());
            if !kept {
                gone.push(m.name.clone());
            }
            kept
        });
        if let Some(shared) = &s.shared {
            for name in gone.drain(..) {
                (shared.on_leave)(room, name);
            }
        } else if let Some(name) = gone.pop() {
            next = Some(event::presence("left", room, &name));
        }
        from_key = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::{Context, Waker};

    /// The texts of the messages `joined` got since the last call (a welcome's history
    /// included).
    fn texts(joined: &Joined) -> Vec<String> {
        let mut out = Vec::new();
        let mut cx = Context::from_waker(Waker::noop());
        let _ = joined.mailbox.poll_take(&mut cx, &mut out, 100);
        let mut texts = Vec::new();
        for e in &out {
            let v: serde_json::Value = serde_json::from_str(e.as_str()).unwrap();
            let messages = match v["type"].as_str() {
                Some("welcome") => v["history"].as_array().unwrap().clone(),
                Some("message") => vec![v],
                _ => Vec::new(),
            };
            texts.extend(
                messages
                    .iter()
                    .map(|m| m["text"].as_str().unwrap().to_string()),
            );
        }
        texts
    }

    fn snapshot(roster: &[&str], top: u64, messages: Vec<SharedMessage>, upto: u64) -> Snapshot {
        Snapshot {
            roster: roster.iter().map(|n| (*n).into()).collect(),
            presence_seq: roster.len() as u64,
            top,
            messages,
            missed: false,
            conflicts: Vec::new(),
            doubts_upto: upto,
        }
    }

    fn shared(id: u64, text: &str, token: Option<&str>) -> SharedMessage {
        SharedMessage {
            id,
            encoded: event::message(id, "r", "alice", text, 1),
            token: token.map(String::from),
        }
    }

    #[test]
    fn a_message_in_doubt_comes_back_once_to_those_who_got_it() {
        let room = Room::new_shared("r", 10, Arc::new(|_: &str, _| {}));
        room.apply_snapshot(snapshot(&[], 0, Vec::new(), 0));
        let alice = room.admit(1, "alice", None, 10).unwrap();
        assert!(texts(&alice).is_empty());
        room.publish_in_doubt("alice", "frozen", "n-1");
        assert_eq!(texts(&alice), ["frozen"]);
        // Came later (it did not get the local copy): it gets the shared one.
        let bob = room.admit(2, "bob", None, 10).unwrap();
        texts(&bob);
        room.apply_message(shared(1, "frozen", Some("n-1")));
        room.apply_message(shared(2, "next", Some("n-2")));
        assert_eq!(texts(&alice), ["next"]);
        assert_eq!(texts(&bob), ["frozen", "next"]);
        assert_eq!(room.members().1, LOCAL_ID_GAP, "ids never go back");
        assert_eq!(room.last_shared(), 2);

        // In the resync's messages; a doubt recorded after the resync started is kept.
        room.publish_in_doubt("alice", "again", "n-3");
        let state = room.sync_state();
        room.publish_in_doubt("alice", "later", "n-4");
        for member in [&alice, &bob] {
            assert_eq!(texts(member), ["again", "later"]);
        }
        let back = vec![shared(3, "again", Some("n-3"))];
        room.apply_snapshot(snapshot(&["alice", "bob"], 3, back, state.doubts_upto));
        room.apply_message(shared(4, "later", Some("n-4")));
        let carol = room.admit(3, "carol", Some(2), 10).unwrap();
        for member in [&alice, &bob] {
            assert!(texts(member).is_empty());
        }
        assert_eq!(
            texts(&carol),
            ["again", "later"],
            "history has the shared copies"
        );

        // Settled by a resync that did not see it: if it shows up after all, it is new.
        room.publish_in_doubt("alice", "lost", "n-5");
        let state = room.sync_state();
        room.apply_snapshot(snapshot(
            &["alice", "bob"],
            4,
            Vec::new(),
            state.doubts_upto,
        ));
        assert_eq!(texts(&alice), ["lost"]);
        room.apply_message(shared(5, "lost", Some("n-5")));
        assert_eq!(texts(&alice), ["lost"]);
    }
}
