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
}

/// The room as Redis has it, read atomically.
pub(crate) struct Snapshot {
    /// Every member, in the order they joined.
    pub(crate) roster: Vec<Arc<str>>,
    pub(crate) presence_seq: u64,
    /// The room's id counter.
    pub(crate) top: u64,
    /// Messages after the last shared id this node had, oldest first.
    pub(crate) messages: Vec<(u64, Utf8Bytes)>,
    /// Some messages after that id are gone from Redis (or more than history): the local
    /// members are closed with 4008 and resume with `since` (their welcome says `gap`).
    pub(crate) missed: bool,
    /// Names of local members that another node holds now (after an outage longer than
    /// the presence TTL): closed with 4008, they come back under a free name.
    pub(crate) conflicts: Vec<String>,
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
        let (last_shared, presence_seq) = s
            .shared
            .as_ref()
            .map_or((0, 0), |sh| (sh.last_shared, sh.presence_seq));
        SyncState {
            local_names: s.members.iter().map(|m| m.name.to_string()).collect(),
            last_id: s.last_id,
            last_shared,
            presence_seq,
        }
    }

    /// A message of the shared sequence. `false` if it was already applied.
    pub(crate) fn apply_message(&self, id: u64, encoded: Utf8Bytes) -> bool {
        let mut s = self.lock();
        apply_message(&self.name, &mut s, id, encoded)
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
        if let Some(shared) = s.shared.as_mut() {
            if !shared.local_ids {
                shared.local_ids = true;
                s.last_id += LOCAL_ID_GAP - 1;
            }
        }
        s.last_id += 1;
        let id = s.last_id;
        let encoded = event::local_message(id, &self.name, name, text, event::now_ms());
        broadcast(&self.name, &mut s, encoded);
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
        for (id, encoded) in snap.messages {
            apply_message(&self.name, &mut s, id, encoded);
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

fn apply_message(room: &str, s: &mut State, id: u64, encoded: Utf8Bytes) -> bool {
    let Some(shared) = s.shared.as_mut() else {
        return false;
    };
    if id <= shared.last_shared {
        return false;
    }
    shared.last_shared = id;
    s.last_id = s.last_id.max(id);
    if s.history_len > 0 {
        if s.history.len() >= s.history_len {
            s.history.pop_front();
        }
        s.history.push_back((id, encoded.clone()));
    }
    broadcast(room, s, encoded);
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
    let mut gone: Vec<Arc<str>> = Vec::new();
    let mut next = Some(event);
    while let Some(ev) = next.take() {
        s.members.retain(|m| {
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
    }
}
