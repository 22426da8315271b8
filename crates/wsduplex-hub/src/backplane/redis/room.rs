//! A room that Redis orders for many nodes, as this node keeps it: the room itself
//! (members, history, fan-out: `crate::room`) plus its [`Replica`], which knows what the
//! room's own state does not (every node's members, how far into Redis's sequence this
//! node is, the messages in doubt). The task that owns the connections (`run.rs`) applies
//! each room's events through the methods here, under the room's lock, in the order Redis
//! gave them:
//!
//! - a message of the sequence ([`Room::apply_message`]), a member of another node who
//!   joined or left ([`Room::apply_joined`], [`Room::apply_left`]), a member of this node
//!   admitted at the place of its `joined` ([`Room::admit`], [`Room::admit_moved`]);
//! - the room as Redis has it, after a (re)connect: [`Room::sync_state`] goes to the resync
//!   script, whose answer comes back as a [`Snapshot`] ([`Room::apply_snapshot`]);
//! - while Redis is unreachable, messages and departures stay on this node
//!   ([`Room::publish_local`], [`Room::left_locally`]); a publish that failed after it may
//!   have reached Redis is *in doubt* ([`Room::publish_in_doubt`]) until the next resync.

use crate::event::{self, Body};
use crate::mailbox::{Ended, Mailbox};
use crate::room::{broadcast, keep, send_message, send_message_from, Joined, Room, State};
use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
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

/// What this node keeps of a room Redis orders, beyond its own members.
pub(crate) struct Replica {
    on_leave: OnLeave,
    /// The snapshot from Redis has been applied (and the node subscribed first).
    loaded: bool,
    /// Every member on every node, in the order they joined; names are unique across nodes.
    roster: Vec<Arc<str>>,
    /// The newest id of Redis's sequence applied here.
    last_applied: u64,
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

impl Replica {
    /// Not loaded yet: the first join loads it.
    pub(crate) fn new(on_leave: OnLeave) -> Self {
        Self {
            on_leave,
            loaded: false,
            roster: Vec::new(),
            last_applied: 0,
            presence_seq: 0,
            local_ids: false,
            in_doubt: VecDeque::new(),
            doubt_seq: 0,
        }
    }

    /// Every member on every node, in the order they joined.
    pub(crate) fn roster(&self) -> &[Arc<str>] {
        &self.roster
    }

    /// A member of this node went away: Redis orders its `left` for every node.
    pub(crate) fn report_left(&self, room: &str, name: Arc<str>) {
        (self.on_leave)(room, name)
    }

    /// Adds `name` to the roster unless it is there already.
    fn enroll(&mut self, name: &Arc<str>) {
        if !self.roster.contains(name) {
            self.roster.push(name.clone());
        }
    }
}

/// Moves `mark` (the newest of Redis's numbers applied here) up to `seq` if `seq` is past
/// it; whether it was. Numbers come again after a resync whose snapshot had them already.
fn advance(mark: &mut u64, seq: u64) -> bool {
    if seq <= *mark {
        return false;
    }
    *mark = seq;
    true
}

/// A message delivered locally after its publish failed: Redis may have run the publish
/// anyway (it had the command when the connection failed), and then it comes back with an
/// id of the sequence and `token`.
struct InDoubt {
    seq: u64,
    token: Box<str>,
    /// The members here with a key below this got the local copy.
    keys_below: u64,
}

/// A message of the room's sequence, as Redis keeps it (an entry of the room's log).
pub(crate) struct LogEntry {
    pub(crate) id: u64,
    pub(crate) encoded: Utf8Bytes,
    /// What its publishing node tagged it with (see [`Room::publish_in_doubt`]).
    pub(crate) token: Option<String>,
}

/// What the resync script is sent: this node's side of the room.
pub(crate) struct SyncState {
    pub(crate) local_names: Vec<String>,
    pub(crate) last_id: u64,
    pub(crate) last_applied: u64,
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
    /// Messages after the last id this node applied, oldest first.
    pub(crate) messages: Vec<LogEntry>,
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
    pub(crate) fn is_loaded(&self) -> bool {
        self.lock().replica.as_ref().is_some_and(|r| r.loaded)
    }

    pub(crate) fn has_members(&self) -> bool {
        !self.lock().members.is_empty()
    }

    pub(crate) fn last_applied(&self) -> u64 {
        self.lock().replica.as_ref().map_or(0, |r| r.last_applied)
    }

    pub(crate) fn sync_state(&self) -> SyncState {
        let s = self.lock();
        let (last_applied, presence_seq, doubts_upto) = s
            .replica
            .as_ref()
            .map_or((0, 0, 0), |r| (r.last_applied, r.presence_seq, r.doubt_seq));
        SyncState {
            local_names: s.members.iter().map(|m| m.name.to_string()).collect(),
            last_id: s.last_id,
            last_applied,
            presence_seq,
            doubts_upto,
        }
    }

    /// A message of the sequence. `false` if it was already applied.
    pub(crate) fn apply_message(&self, message: LogEntry) -> bool {
        let mut s = self.lock();
        apply_message(&self.name, &mut s, message)
    }

    /// Another node's member joined (or one of this node's, re-registered).
    pub(crate) fn apply_joined(&self, seq: u64, name: &str) {
        let mut s = self.lock();
        let Some(replica) = s.replica.as_mut() else {
            return;
        };
        if !advance(&mut replica.presence_seq, seq) || replica.roster.iter().any(|n| &**n == name) {
            return;
        }
        replica.roster.push(name.into());
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
        mailbox: Arc<Mailbox>,
    ) -> Option<Joined> {
        let mut s = self.lock();
        if s.shut {
            return None;
        }
        let name: Arc<str> = name.into();
        let replica = s.replica.as_mut()?;
        replica.presence_seq = replica.presence_seq.max(seq);
        replica.enroll(&name);
        Some(self.enter(&mut s, name, since, mailbox, true))
    }

    /// A long-polling session that moved here from another node: the member is already in
    /// the room (nobody is told), and its mailbox goes on after the client's `cursor` with
    /// a welcome (the members now, the messages after `since`).
    pub(crate) fn admit_moved(
        &self,
        name: &str,
        since: Option<u64>,
        mailbox: Arc<Mailbox>,
    ) -> Option<Joined> {
        let mut s = self.lock();
        if s.shut {
            return None;
        }
        let name: Arc<str> = name.into();
        s.replica.as_mut()?.enroll(&name);
        Some(self.enter(&mut s, name, since, mailbox, false))
    }

    /// A member (of any node) left.
    pub(crate) fn apply_left(&self, seq: u64, name: &str) {
        let mut s = self.lock();
        if s.replica
            .as_mut()
            .is_some_and(|r| advance(&mut r.presence_seq, seq))
        {
            left_from_roster(&self.name, &mut s, name);
        }
    }

    /// The backplane is down: a local member's `left` goes to the local members only.
    pub(crate) fn left_locally(&self, name: &str) {
        let mut s = self.lock();
        left_from_roster(&self.name, &mut s, name);
    }

    /// The backplane is down: the message goes to this node's members only, with an id of
    /// their own (see [`LOCAL_ID_GAP`]) and `"local":true`, and stays out of history.
    pub(crate) fn publish_local(&self, name: &str, body: Body<'_>) -> u64 {
        let mut s = self.lock();
        self.publish_local_in(&mut s, name, body)
    }

    /// [`Room::publish_local`] for a message whose publish failed after it may have reached
    /// Redis (`token` is what it was tagged with there). If it comes back in the sequence
    /// before the next resync has settled it, the members who got it here are not given it
    /// again; everyone else is (and it is in history, with its id from Redis).
    pub(crate) fn publish_in_doubt(&self, name: &str, body: Body<'_>, token: &str) -> u64 {
        let mut s = self.lock();
        let id = self.publish_local_in(&mut s, name, body);
        let keys_below = s.next_key;
        if let Some(replica) = s.replica.as_mut() {
            if replica.in_doubt.len() >= MAX_IN_DOUBT {
                replica.in_doubt.pop_front();
            }
            replica.doubt_seq += 1;
            replica.in_doubt.push_back(InDoubt {
                seq: replica.doubt_seq,
                token: token.into(),
                keys_below,
            });
        }
        id
    }

    fn publish_local_in(&self, s: &mut State, name: &str, body: Body<'_>) -> u64 {
        if let Some(replica) = s.replica.as_mut() {
            if !replica.local_ids {
                replica.local_ids = true;
                s.last_id += LOCAL_ID_GAP - 1;
            }
        }
        s.last_id += 1;
        let id = s.last_id;
        let encoded = event::local_message(id, &self.name, name, body, event::now_ms());
        send_message(&self.name, s, encoded);
        s.last_active = Instant::now();
        id
    }

    /// Applies the room as Redis has it (after a reconnect, or when first loaded): missed
    /// messages are delivered, then whoever left or joined meanwhile.
    pub(crate) fn apply_snapshot(&self, snap: Snapshot) {
        let mut s = self.lock();
        if s.replica.is_none() {
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
        let Some(replica) = s.replica.as_mut() else {
            return;
        };
        let old: HashSet<Arc<str>> = replica.roster.iter().cloned().collect();
        let new: HashSet<Arc<str>> = snap.roster.iter().cloned().collect();
        let left: Vec<Arc<str>> = replica
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
        replica.roster = snap.roster;
        replica.presence_seq = snap.presence_seq;
        replica.last_applied = replica.last_applied.max(snap.top);
        replica.local_ids = false;
        replica.in_doubt.retain(|d| d.seq > snap.doubts_upto);
        replica.loaded = true;
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

fn apply_message(room: &str, s: &mut State, message: LogEntry) -> bool {
    let LogEntry { id, encoded, token } = message;
    let Some(replica) = s.replica.as_mut() else {
        return false;
    };
    if !advance(&mut replica.last_applied, id) {
        return false;
    }
    // Ours, delivered locally when its publish failed: not again to those who got it.
    let doubt = token.and_then(|t| replica.in_doubt.iter().position(|d| *d.token == *t));
    let from_key = doubt
        .and_then(|i| replica.in_doubt.remove(i))
        .map_or(0, |d| d.keys_below);
    s.last_id = s.last_id.max(id);
    keep(s, id, &encoded);
    send_message_from(room, s, encoded, from_key);
    s.last_active = Instant::now();
    true
}

fn left_from_roster(room: &str, s: &mut State, name: &str) {
    let Some(replica) = s.replica.as_mut() else {
        return;
    };
    let Some(i) = replica.roster.iter().position(|n| &**n == name) else {
        return;
    };
    replica.roster.remove(i);
    broadcast(room, s, event::presence("left", room, name));
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
        let _ = joined.mailbox.poll_take(&mut cx, &mut out, 100, false);
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

    fn snapshot(roster: &[&str], top: u64, messages: Vec<LogEntry>, upto: u64) -> Snapshot {
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

    fn logged(id: u64, text: &str, token: Option<&str>) -> LogEntry {
        LogEntry {
            id,
            encoded: event::message(id, "r", "alice", Body::Text(text), 1),
            token: token.map(String::from),
        }
    }

    #[test]
    fn a_message_in_doubt_comes_back_once_to_those_who_got_it() {
        let room = Room::with_replica("r", 10, Replica::new(Arc::new(|_: &str, _| {})));
        room.apply_snapshot(snapshot(&[], 0, Vec::new(), 0));
        let alice = room
            .admit(1, "alice", None, Arc::new(Mailbox::new(10)))
            .unwrap();
        assert!(texts(&alice).is_empty());
        room.publish_in_doubt("alice", Body::Text("frozen"), "n-1");
        assert_eq!(texts(&alice), ["frozen"]);
        // Came later (it did not get the local copy): it gets the one from Redis.
        let bob = room
            .admit(2, "bob", None, Arc::new(Mailbox::new(10)))
            .unwrap();
        texts(&bob);
        room.apply_message(logged(1, "frozen", Some("n-1")));
        room.apply_message(logged(2, "next", Some("n-2")));
        assert_eq!(texts(&alice), ["next"]);
        assert_eq!(texts(&bob), ["frozen", "next"]);
        assert_eq!(room.members().1, LOCAL_ID_GAP, "ids never go back");
        assert_eq!(room.last_applied(), 2);

        // In the resync's messages; a doubt recorded after the resync started is kept.
        room.publish_in_doubt("alice", Body::Text("again"), "n-3");
        let state = room.sync_state();
        room.publish_in_doubt("alice", Body::Text("later"), "n-4");
        for member in [&alice, &bob] {
            assert_eq!(texts(member), ["again", "later"]);
        }
        let back = vec![logged(3, "again", Some("n-3"))];
        room.apply_snapshot(snapshot(&["alice", "bob"], 3, back, state.doubts_upto));
        room.apply_message(logged(4, "later", Some("n-4")));
        let carol = room
            .admit(3, "carol", Some(2), Arc::new(Mailbox::new(10)))
            .unwrap();
        for member in [&alice, &bob] {
            assert!(texts(member).is_empty());
        }
        assert_eq!(
            texts(&carol),
            ["again", "later"],
            "history has the copies from Redis"
        );

        // Settled by a resync that did not see it: if it shows up after all, it is new.
        room.publish_in_doubt("alice", Body::Text("lost"), "n-5");
        let state = room.sync_state();
        room.apply_snapshot(snapshot(
            &["alice", "bob"],
            4,
            Vec::new(),
            state.doubts_upto,
        ));
        assert_eq!(texts(&alice), ["lost"]);
        room.apply_message(logged(5, "lost", Some("n-5")));
        assert_eq!(texts(&alice), ["lost"]);
    }
}
