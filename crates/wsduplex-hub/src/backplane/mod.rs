//! The seam between one node and many. [`Nodes`] is what the hub calls wherever a hub of
//! one node and one node of many differ; each of its methods holds the branch once:
//!
//! - [`Nodes::One`]: each room orders its own events under its lock (`room.rs`), and
//!   nothing waits: a message is delivered before `say` returns, with no allocation
//!   beyond the event itself.
//! - [`Nodes::Many`]: a [`Backplane`] orders every room's events (ids, joins, leaves) for
//!   all nodes and keeps each room's history for every node; each node applies them to its rooms in that
//!   order and delivers to its own members through their mailboxes, so fan-out, slow
//!   members and long polling work as in a hub of one. A room then carries a [`Replica`]:
//!   what its node knows beyond its own members.
//!
//! The one backplane is `redis::RedisBackplane` (`redis/`, feature `redis`). Built without
//! it, no backplane exists and nothing builds [`Nodes::Many`], but the seam stays as it is,
//! so the rest of the hub has no feature gates.
#![cfg_attr(not(feature = "redis"), allow(dead_code))]

#[cfg(feature = "redis")]
pub(crate) mod redis;

#[cfg(feature = "redis")]
pub(crate) use redis::Replica;

use crate::event::Body;
use crate::mailbox::Mailbox;
use crate::room::{Joined, Room};
use crate::{names, Hub, JoinError};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a room of many nodes knows beyond its own members: never built without a backplane.
#[cfg(not(feature = "redis"))]
pub(crate) enum Replica {}

#[cfg(not(feature = "redis"))]
impl Replica {
    pub(crate) fn roster(&self) -> &[Arc<str>] {
        match *self {}
    }

    pub(crate) fn report_left(&self, _room: &str, _name: Arc<str>) {
        match *self {}
    }
}

/// A long-polling session as the backplane has it.
pub(crate) struct SessionInfo {
    pub(crate) room: String,
    pub(crate) name: String,
    pub(crate) node: String,
    /// `(cursor, last message id up to it)`.
    pub(crate) cursors: Vec<(u64, u64)>,
}

/// A room's members (in the order they joined) and its last message id.
pub(crate) type RoomState = (Vec<String>, u64);

/// Told the id of a session that moved to another node or was closed from one.
pub(crate) type SessionHook = Box<dyn Fn(&str) + Send + Sync>;

/// How a hub orders rooms across nodes. The methods that return no future never wait (what
/// needs Redis is queued for `run`).
pub(crate) trait Backplane: Send + Sync {
    /// A room this backplane orders, not loaded yet (the first join loads it).
    fn new_room(&self, name: &str, history: usize) -> Room;

    /// Joins a member of this node: loads the room if needed, reserves a name unique
    /// across nodes, and completes when the member's `joined` comes back in order (its
    /// welcome is the room as of that event).
    fn join(
        &self,
        room: Arc<Room>,
        name: String,
        since: Option<u64>,
        mailbox: Arc<Mailbox>,
    ) -> BoxFuture<'_, Result<Joined, JoinError>>;

    /// Publishes a message and returns its id. Delivery to this node's members happens
    /// when it comes back in order. `room`: the room if this node has it (needed to
    /// deliver locally while the backplane is down).
    fn publish<'a>(
        &'a self,
        room_name: &'a str,
        room: Option<Arc<Room>>,
        name: &'a str,
        body: Body<'a>,
    ) -> BoxFuture<'a, Result<u64, JoinError>>;

    /// Cuts `name` wherever it is connected: how many were cut here, else 1 if a live
    /// node has it (that node cuts it when the request reaches it), else 0. `room`: the
    /// room if this node has it.
    fn cut<'a>(
        &'a self,
        room_name: &'a str,
        room: Option<Arc<Room>>,
        name: &'a str,
    ) -> BoxFuture<'a, Result<usize, JoinError>>;

    /// The members (in the order they joined) and last id of a room: from `room` if this
    /// node has it loaded, else as Redis has them; `None` if it never had a member nor a
    /// message.
    fn room_state<'a>(
        &'a self,
        room_name: &'a str,
        room: Option<Arc<Room>>,
    ) -> BoxFuture<'a, Result<Option<RoomState>, JoinError>>;

    /// The hub dropped `room` (idle, to make space): stop following it.
    fn unload(&self, room: &Arc<Room>);

    /// Connects, follows the loaded rooms, heartbeats, reconnects with backoff, until
    /// [`Backplane::stop`]. Driven by [`crate::Hub::maintain`].
    fn run(self: Arc<Self>) -> BoxFuture<'static, ()>;

    /// Says goodbye (this node's members leave every room) and ends `run`.
    fn stop(&self);

    /// Completes when `run` has ended (or was never started), within a bounded time.
    fn closed(&self) -> BoxFuture<'_, ()>;

    /// Whether the node is connected (joins are refused while it is not).
    fn is_up(&self) -> bool;

    // ---- Long-polling sessions that move between nodes. ----

    /// Records that `session` (member `name` of `room`) is on this node, and that `cursor`
    /// `(cursor, id)` acknowledges the messages up to `id`; forgets the `stale` cursors.
    /// Does nothing if another node has taken the session over.
    fn record_session<'a>(
        &'a self,
        session: &'a str,
        room: &'a str,
        name: &'a str,
        cursor: (u64, u64),
        stale: Vec<u64>,
    ) -> BoxFuture<'a, ()>;

    /// A session of another node, as Redis has it (`None`: no such session, or Redis is
    /// unavailable).
    fn find_session<'a>(&'a self, session: &'a str) -> BoxFuture<'a, Option<SessionInfo>>;

    /// Moves a session's member to this node. Its welcome (members now, messages after
    /// `since`) is the event after the client's `cursor` in `mailbox` (which starts after
    /// it). `Ok(None)`: the session is gone.
    fn take_over(
        &self,
        room: Arc<Room>,
        session: String,
        info: SessionInfo,
        since: Option<u64>,
        mailbox: Arc<Mailbox>,
    ) -> BoxFuture<'_, Result<Option<Joined>, JoinError>>;

    /// Closes a session wherever it is.
    fn close_session<'a>(&'a self, session: &'a str, room: &'a str) -> BoxFuture<'a, ()>;

    /// A session of this node ended: forget it in Redis.
    fn forget_session(&self, session: &str);

    /// `hook(session)` is called when a session of this node moved to another node or was
    /// closed from one: the hub drops it here.
    fn on_session_gone(&self, hook: SessionHook);
}

/// Where rooms are ordered: on this node alone, or for many nodes by a backplane. Cheap to
/// clone; every member holds one.
#[derive(Clone)]
pub(crate) enum Nodes {
    /// A hub of one node.
    One,
    /// One node of many.
    Many(Arc<dyn Backplane>),
}

impl Nodes {
    pub(crate) fn new_room(&self, name: &str, history: usize) -> Room {
        match self {
            Self::One => Room::new(name, history),
            Self::Many(b) => b.new_room(name, history),
        }
    }

    /// The hub dropped `room` (idle, to make space).
    pub(crate) fn dropped(&self, room: &Arc<Room>) {
        if let Self::Many(b) = self {
            b.unload(room);
        }
    }

    /// Joins `room` as `name` (valid): made unique in the room, or with a backplane across
    /// nodes. A hub of one node never waits.
    pub(crate) async fn join(
        &self,
        room: Arc<Room>,
        name: &str,
        since: Option<u64>,
        mailbox: Arc<Mailbox>,
    ) -> Result<Joined, JoinError> {
        match self {
            Self::One => room
                .join(name, since, mailbox)
                .ok_or(JoinError::ShuttingDown),
            Self::Many(b) => b.join(room, name.to_string(), since, mailbox).await,
        }
    }

    /// A member's message to its room; returns its id. A hub of one node delivers it
    /// before returning, and never waits.
    pub(crate) async fn say(&self, room: &Arc<Room>, name: &str, body: Body<'_>) -> u64 {
        match self {
            Self::One => room.publish(name, body),
            Self::Many(b) => {
                let published = b.publish(&room.name, Some(room.clone()), name, body);
                // A member's room is loaded: the message is delivered locally at worst.
                published.await.unwrap_or_default()
            }
        }
    }

    /// A message to `room` from `name` (valid) that no member of this node sends (the push
    /// API, a long-polling session of another node).
    pub(crate) async fn publish(
        &self,
        hub: &Hub,
        room: &str,
        name: &str,
        body: Body<'_>,
    ) -> Result<u64, JoinError> {
        match self {
            // The room keeps the message for those who join later: it is created.
            // 0: the room was handed to another process.
            Self::One => match hub.room(room)?.publish(name, body) {
                0 => Err(JoinError::ShuttingDown),
                id => Ok(id),
            },
            // The history is the backplane's: only a room this node follows delivers here.
            Self::Many(b) => {
                let room = names::validate_room(room)?;
                b.publish(room, hub.room_here(room), name, body).await
            }
        }
    }

    /// Cuts every member `name` of `room`; see [`Hub::cut`].
    pub(crate) async fn cut(&self, hub: &Hub, room: &str, name: &str) -> Result<usize, JoinError> {
        let here = hub.room_here(room);
        match self {
            Self::One => Ok(here.map_or(0, |r| r.cut(name))),
            Self::Many(_) if names::validate_room(room).is_err() => Ok(0),
            Self::Many(b) => b.cut(room, here, name).await,
        }
    }

    /// The members of `room` and its last id; see [`Hub::members`].
    pub(crate) async fn members(
        &self,
        hub: &Hub,
        room: &str,
    ) -> Result<Option<RoomState>, JoinError> {
        let here = hub.room_here(room);
        match self {
            Self::One => Ok(here.map(|r| r.members())),
            Self::Many(_) if names::validate_room(room).is_err() => Ok(None),
            Self::Many(b) => b.room_state(room, here).await,
        }
    }

    /// `None` for a hub of one node; else whether this node reaches the backplane.
    pub(crate) fn is_up(&self) -> Option<bool> {
        match self {
            Self::One => None,
            Self::Many(b) => Some(b.is_up()),
        }
    }

    /// Runs the backplane's connection until [`Nodes::stop`]; at once for one node.
    pub(crate) async fn run(&self) {
        if let Self::Many(b) = self {
            b.clone().run().await;
        }
    }

    pub(crate) fn stop(&self) {
        if let Self::Many(b) = self {
            b.stop();
        }
    }

    /// Completes when the backplane has said goodbye; at once for one node.
    pub(crate) async fn closed(&self) {
        if let Self::Many(b) = self {
            b.closed().await;
        }
    }

    // ---- Long-polling sessions: only a hub of many nodes moves them. ----

    /// Whether sessions can move between nodes (then each answer is recorded).
    pub(crate) fn moves_sessions(&self) -> bool {
        matches!(self, Self::Many(_))
    }

    /// A session this node does not have, as another node left it (`None` for one node).
    pub(crate) async fn find_session(&self, session: &str) -> Option<SessionInfo> {
        match self {
            Self::One => None,
            Self::Many(b) => b.find_session(session).await,
        }
    }

    /// See [`Backplane::take_over`]; `Ok(None)` for one node.
    pub(crate) async fn take_over(
        &self,
        room: Arc<Room>,
        session: String,
        info: SessionInfo,
        since: Option<u64>,
        mailbox: Arc<Mailbox>,
    ) -> Result<Option<Joined>, JoinError> {
        match self {
            Self::One => Ok(None),
            Self::Many(b) => {
                let taken = b.take_over(room, session, info, since, mailbox);
                taken.await
            }
        }
    }

    /// See [`Backplane::record_session`].
    pub(crate) async fn record_session(
        &self,
        session: &str,
        room: &str,
        name: &str,
        cursor: (u64, u64),
        stale: Vec<u64>,
    ) {
        if let Self::Many(b) = self {
            b.record_session(session, room, name, cursor, stale).await;
        }
    }

    /// See [`Backplane::close_session`].
    pub(crate) async fn close_session(&self, session: &str, room: &str) {
        if let Self::Many(b) = self {
            b.close_session(session, room).await;
        }
    }

    /// A session of this node ended.
    pub(crate) fn forget_session(&self, session: &str) {
        if let Self::Many(b) = self {
            b.forget_session(session);
        }
    }

    /// `hook(session)` is called when a session of this node moved to another node or was
    /// closed from one.
    pub(crate) fn on_session_gone(&self, hook: SessionHook) {
        if let Self::Many(b) = self {
            b.on_session_gone(hook);
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::{Hub, HubConfig};
    use futures_util::FutureExt;

    /// A hub of one node answers before anything waits: each call's future is ready at its
    /// first poll, with no runtime.
    #[test]
    fn one_node_never_waits() {
        let hub = Hub::new(HubConfig::default());
        let alice = hub.join("r", "alice", None).now_or_never().unwrap();
        let alice = alice.unwrap();
        assert_eq!(alice.say("hi").now_or_never(), Some(1));
        let pushed = hub.publish("r", "api", "from the API").now_or_never();
        assert_eq!(pushed, Some(Ok(2)));
        let members = hub.members("r").now_or_never();
        assert_eq!(members, Some(Ok(Some((vec!["alice".to_string()], 2)))));
        assert_eq!(hub.cut("r", "alice").now_or_never(), Some(Ok(1)));
        hub.shutdown();
        assert_eq!(hub.closed().now_or_never(), Some(()));
    }
}
