//! The backplane: what makes one hub of many nodes. It orders every room's events (ids,
//! joins, leaves) for all nodes and keeps the shared history; each node applies them to
//! its rooms in that order and delivers to its own members through their mailboxes, so
//! fan-out, slow members and long polling work as in a hub of one.
//!
//! Without a backplane (the default) each room orders its own events under its lock, and
//! none of this runs. The one implementation is [`redis::RedisBackplane`].

pub(crate) mod redis;
mod scripts;
mod target;

pub(crate) use scripts::SessionInfo;

use crate::room::{Joined, Room};
use crate::JoinError;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A room's members (in the order they joined) and its last message id.
pub(crate) type RoomState = (Vec<String>, u64);

/// Told the id of a session that moved to another node or was closed from one.
pub(crate) type SessionHook = Box<dyn Fn(&str) + Send + Sync>;

/// How a hub orders rooms across nodes. Methods other than `run` and `closed` never wait.
pub(crate) trait Backplane: Send + Sync {
    /// A shared room for this hub, not loaded yet (the first join loads it).
    fn new_room(&self, name: &str, history: usize) -> Room;

    /// Joins a member of this node: loads the room if needed, reserves a name unique
    /// across nodes, and completes when the member's `joined` comes back in order (its
    /// welcome is the room as of that event).
    fn join(
        &self,
        room: Arc<Room>,
        name: String,
        since: Option<u64>,
        queue: usize,
    ) -> BoxFuture<'_, Result<Joined, JoinError>>;

    /// Publishes a message and returns its id. Delivery to this node's members happens
    /// when it comes back in order. `room`: the room if this node has it (needed to
    /// deliver locally while the backplane is down).
    fn publish<'a>(
        &'a self,
        room_name: &'a str,
        room: Option<Arc<Room>>,
        name: &'a str,
        text: &'a str,
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

    /// The members (in the order they joined) and last id of a room, as Redis has them;
    /// `None` if it never had a member nor a message.
    fn room_state<'a>(
        &'a self,
        room: &'a str,
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
    /// `since`) is the event after the client's `cursor`. `Ok(None)`: the session is gone.
    fn take_over(
        &self,
        room: Arc<Room>,
        session: String,
        info: SessionInfo,
        cursor: u64,
        since: Option<u64>,
        queue: usize,
    ) -> BoxFuture<'_, Result<Option<Joined>, JoinError>>;

    /// Closes a session wherever it is.
    fn close_session<'a>(&'a self, session: &'a str, room: &'a str) -> BoxFuture<'a, ()>;

    /// A session of this node ended: forget it in Redis.
    fn forget_session(&self, session: &str);

    /// `hook(session)` is called when a session of this node moved to another node or was
    /// closed from one: the hub drops it here.
    fn on_session_gone(&self, hook: SessionHook);
}
