//! Rooms: membership, ids, history and fan-out. Every change to a room happens under its
//! lock, so every member sees the same events in the same order, and a joining member's
//! welcome (members, history) is exactly the state its first live event follows.

use crate::event;
use crate::mailbox::{Ended, Mailbox};
use crate::names::unique_name;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;
use wsduplex::Utf8Bytes;

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

impl Room {
    pub(crate) fn new(name: &str, history_len: usize) -> Self {
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
        let members = s
            .members
            .iter()
            .map(|m| &*m.name)
            .chain(std::iter::once(&*name));
        let welcome = event::welcome(&self.name, &name, members, s.last_id, history, gap);
        let mailbox = Arc::new(Mailbox::new(queue));
        mailbox.push(welcome);
        broadcast(
            &self.name,
            &mut s,
            event::presence("joined", &self.name, &name),
        );
        let key = s.next_key;
        s.next_key += 1;
        s.members.push(Member {
            key,
            name: name.clone(),
            mailbox: mailbox.clone(),
        });
        s.last_active = Instant::now();
        Some(Joined { key, name, mailbox })
    }

    /// Removes a member (if it is still in the room) and tells the others.
    pub(crate) fn leave(&self, key: u64) {
        let mut s = self.lock();
        if let Some(i) = s.members.iter().position(|m| m.key == key) {
            let m = s.members.remove(i);
            broadcast(
                &self.name,
                &mut s,
                event::presence("left", &self.name, &m.name),
            );
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
            broadcast(&self.name, &mut s, event::presence("left", &self.name, n));
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

    pub(crate) fn members(&self) -> (Vec<String>, u64) {
        let s = self.lock();
        (
            s.members.iter().map(|m| m.name.to_string()).collect(),
            s.last_id,
        )
    }

    /// `Some(last activity)` if the room has no member (it may be dropped).
    pub(crate) fn idle_since(&self) -> Option<Instant> {
        let s = self.lock();
        s.members.is_empty().then_some(s.last_active)
    }
}

/// Delivers one encoded event to every member: the same bytes, shared. A member whose
/// queue is full is removed (its mailbox ended with `Overflow`), and the others are told it
/// left (which may overflow someone else in turn).
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
        if let Some(name) = gone.pop() {
            next = Some(event::presence("left", room, &name));
        }
    }
}
