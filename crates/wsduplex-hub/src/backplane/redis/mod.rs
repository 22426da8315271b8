//! The Redis backplane: one command connection (multiplexed, shared by every caller) and
//! one pub/sub connection per node, both owned by [`RedisBackplane::run`]; with sentinels,
//! a third, subscribed to the failovers of the sentinel that named the master.
//!
//! Files: `url.rs` (the URL, TLS files), `sentinel.rs` (finding the master), `keys.rs`
//! (what lives in Redis, the channel's events), `scripts.rs` and `lua/` (the scripts that
//! change it), `room.rs` (what a node keeps of a room and applies), `run.rs` (the task
//! that owns the connections).
//!
//! - Publishing runs one script (`INCR` the room's id, `XADD` to its stream as `0-<id>`,
//!   `PUBLISH`): the id order is the delivery order on every node.
//! - The node subscribes to each room it has loaded, and applies the room's events in the
//!   order they arrive; a jump in ids is filled from the stream first.
//! - Loading a room, and every reconnect, runs the resync script after subscribing: Redis
//!   gets this node's members and id floor, the node gets the roster and the messages it
//!   missed. So members see no gap across a reconnect.
//! - Presence: members per room in a hash (name → node), nodes in a sorted set scored by
//!   heartbeat expiry; any node's heartbeat or join sweeps expired nodes, whose members
//!   leave with a `left` for everyone.
//! - A cut of a member this node does not hold, and `GET /api/rooms/ROOM` for a room it
//!   does not follow, go to Redis (scripts `CUT`, `ROOM`); the node holding the member cuts
//!   it when `C<name>` arrives.
//! - While Redis is unreachable the node keeps its members chatting: messages are
//!   delivered locally (`"local":true`, ids past [`room::LOCAL_ID_GAP`], not in
//!   history), leaves are told locally, joins are refused (`503`); it reconnects with
//!   exponential backoff and resynchronizes. A publish that failed may still have run in
//!   Redis: each publish tags its stream entry with a token of this node's, and the resync
//!   that follows does not deliver a message tagged with the token of one delivered
//!   locally again to the members who got it.

mod keys;
mod room;
mod run;
mod scripts;
mod sentinel;
mod url;

pub(crate) use room::Replica;

use super::{Backplane, BoxFuture, RoomState, SessionHook, SessionInfo};
use crate::event::{self, Body};
use crate::mailbox::Mailbox;
use crate::room::{Joined, Room};
use crate::JoinError;
use ::redis::aio::{MultiplexedConnection, PubSubSink, PubSubStream};
use ::redis::{AsyncConnectionConfig, Msg};
use futures_util::StreamExt;
use keys::{Event, Keys};
use room::{LogEntry, OnLeave, Snapshot};
use scripts::{Failure, Scripts};
use sentinel::{Master, SentinelGone};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch, Notify};
use tokio::time::timeout;
use url::{redacted, Endpoint};
use wsduplex::Utf8Bytes;

/// Settings of the Redis backplane ([`crate::Hub::with_redis`]).
#[derive(Clone)]
#[non_exhaustive]
pub struct RedisConfig {
    /// `redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]` (or `redis+unix:///PATH`); `rediss://`
    /// for TLS, checked against the system's roots or, with `?cacert=PATH`, against that
    /// PEM file alone (`&cert=PATH&key=PATH` add a client certificate);
    /// `redis+sentinel://[[USER]:PASSWORD@]HOST[:PORT][,HOST[:PORT]...]/MASTER[/DB]` (or
    /// `rediss+sentinel://`) for the master these sentinels know as `MASTER`, found again
    /// at every reconnect. With TLS, the hub makes rustls' *ring* provider the process
    /// default if the application has not installed one.
    pub url: String,
    /// Prefix of every key and channel (nodes of one hub share it).
    pub key_prefix: String,
    /// A node whose heartbeat stops (it died, or lost Redis) has its members removed, with
    /// `left` events, this long after its last heartbeat (it beats every third of it).
    pub presence_ttl: Duration,
    /// How long a Redis command or connection attempt may take before Redis counts as
    /// unavailable.
    pub timeout: Duration,
    /// Longest wait between reconnect attempts.
    pub max_backoff: Duration,
}

impl RedisConfig {
    /// Prefix `wsduplex`, presence TTL 15 s, timeout 2 s, backoff up to 5 s.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            key_prefix: "wsduplex".into(),
            presence_ttl: Duration::from_secs(15),
            timeout: Duration::from_secs(2),
            max_backoff: Duration::from_secs(5),
        }
    }
}

impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &redacted(&self.url))
            .field("key_prefix", &self.key_prefix)
            .field("presence_ttl", &self.presence_ttl)
            .field("timeout", &self.timeout)
            .field("max_backoff", &self.max_backoff)
            .finish()
    }
}

/// The Redis URL could not be used.
#[derive(Debug, thiserror::Error)]
#[error("invalid Redis URL {url}")]
pub struct InvalidRedisUrl {
    url: String,
    #[source]
    source: Box<dyn std::error::Error + Send + Sync>,
}

/// The command connection of one connect to Redis, and how callers report that it failed.
#[derive(Clone)]
struct Link {
    conn: MultiplexedConnection,
    broken: Arc<Notify>,
}

/// A join waiting for its `joined` event, or a session waiting for its move (`T`).
struct Pending {
    room: Arc<Room>,
    since: Option<u64>,
    /// Where the member's events go (a moving session's starts after the client's cursor).
    mailbox: Arc<Mailbox>,
    /// A moving session.
    moving: bool,
    admitted: oneshot::Sender<Joined>,
}

/// Work for the task that owns the connections.
enum Request {
    /// Subscribe to a room and load it; answers whether it worked.
    Load(Arc<Room>, oneshot::Sender<bool>),
    Unload(Arc<Room>),
    /// A member of this node left: `(room, name)`.
    Leave(Arc<str>, Arc<str>),
    /// A long-polling session ended here.
    Forget(String),
}

pub(crate) struct RedisBackplane {
    endpoint: Endpoint,
    config: RedisConfig,
    /// The URL for logs.
    target: String,
    /// This node's id in Redis.
    node: String,
    /// Messages published by this node: with `node`, the token each is tagged with.
    published: AtomicU64,
    history: usize,
    /// How long a long-polling session's record outlives its last request.
    session_ttl: Duration,
    scripts: Scripts,
    /// `Some` while connected.
    link: Mutex<Option<Link>>,
    /// Rooms this node follows (subscribed, or to subscribe at the next connect).
    rooms: Mutex<HashMap<Arc<str>, Arc<Room>>>,
    pending: Mutex<HashMap<u64, Pending>>,
    requests: mpsc::UnboundedSender<Request>,
    inbox: Mutex<Option<mpsc::UnboundedReceiver<Request>>>,
    on_leave: OnLeave,
    session_gone: OnceLock<SessionHook>,
    stopping: AtomicBool,
    stop: Notify,
    started: AtomicBool,
    done: watch::Sender<bool>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl RedisBackplane {
    pub(crate) fn new(
        config: RedisConfig,
        history: usize,
        session_ttl: Duration,
    ) -> Result<Arc<Self>, InvalidRedisUrl> {
        let target = redacted(&config.url);
        let endpoint = Endpoint::parse(&config.url).map_err(|e| InvalidRedisUrl {
            url: target.clone(),
            source: Box::new(e),
        })?;
        let (requests, inbox) = mpsc::unbounded_channel();
        let leaves = requests.clone();
        let on_leave: OnLeave = Arc::new(move |room: &str, name: Arc<str>| {
            let _ = leaves.send(Request::Leave(room.into(), name));
        });
        Ok(Arc::new(Self {
            endpoint,
            config,
            target,
            node: format!("{:016x}", rand::random::<u64>()),
            published: AtomicU64::new(0),
            history,
            session_ttl,
            scripts: Scripts::new(),
            link: Mutex::new(None),
            rooms: Mutex::new(HashMap::new()),
            pending: Mutex::new(HashMap::new()),
            requests,
            inbox: Mutex::new(Some(inbox)),
            on_leave,
            session_gone: OnceLock::new(),
            stopping: AtomicBool::new(false),
            stop: Notify::new(),
            started: AtomicBool::new(false),
            done: watch::Sender::new(false),
        }))
    }

    fn link(&self) -> Option<Link> {
        lock(&self.link).clone()
    }

    fn keys(&self, room: &str) -> Keys {
        Keys::new(&self.config.key_prefix, room)
    }

    fn ttl_ms(&self) -> u64 {
        self.config.presence_ttl.as_millis() as u64
    }

    fn session_key(&self, session: &str) -> String {
        keys::session_key(&self.config.key_prefix, session)
    }

    fn session_gone(&self, session: &str) {
        if let Some(hook) = self.session_gone.get() {
            hook(session);
        }
    }

    /// Subscribes to `room` and loads it, if not done yet.
    async fn ensure_loaded(&self, room: &Arc<Room>) -> Result<(), JoinError> {
        if room.is_loaded() {
            return Ok(());
        }
        if !self.is_up() {
            return Err(JoinError::Unavailable);
        }
        let (done, loaded) = oneshot::channel();
        let _ = self.requests.send(Request::Load(room.clone(), done));
        match timeout(self.config.timeout * 2, loaded).await {
            Ok(Ok(true)) => Ok(()),
            _ => Err(JoinError::Unavailable),
        }
    }

    /// Registers a member waiting for the event that admits it, runs `reserve(token, conn)`
    /// (a script that publishes that event with `token`, or returns `false`), and waits.
    /// `Ok(None)`: `reserve` declined.
    async fn admit_with<F, Fut>(
        &self,
        link: &Link,
        pending: (Arc<Room>, Option<u64>, Arc<Mailbox>, bool),
        reserve: F,
    ) -> Result<Option<Joined>, JoinError>
    where
        F: FnOnce(u64, MultiplexedConnection) -> Fut,
        Fut: std::future::Future<Output = Result<bool, Failure>>,
    {
        let (room, since, mailbox, moving) = pending;
        let (admitted, mut joined) = oneshot::channel();
        let token = {
            let mut waiting = lock(&self.pending);
            let token = loop {
                let t = rand::random::<u64>();
                if t != 0 && !waiting.contains_key(&t) {
                    break t;
                }
            };
            let entry = Pending {
                room,
                since,
                mailbox,
                moving,
                admitted,
            };
            waiting.insert(token, entry);
            token
        };
        match reserve(token, link.conn.clone()).await {
            Ok(true) => {}
            Ok(false) => {
                lock(&self.pending).remove(&token);
                return Ok(None);
            }
            Err(e) => {
                lock(&self.pending).remove(&token);
                self.failed(link, "join", &e);
                return Err(JoinError::Unavailable);
            }
        }
        match timeout(self.config.timeout, &mut joined).await {
            Ok(result) => result.map(Some).map_err(|_| JoinError::Unavailable),
            // Admitted at the last moment: the task has taken it and is sending.
            Err(_) if lock(&self.pending).remove(&token).is_none() => {
                joined.await.map(Some).map_err(|_| JoinError::Unavailable)
            }
            Err(_) => Err(JoinError::Unavailable),
        }
    }

    fn stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// A caller's command failed: the node goes local at once, and the task reconnects.
    fn failed(&self, link: &Link, what: &str, e: &Failure) {
        tracing::error!("redis {}: {what} failed: {e}", self.target);
        let mut current = lock(&self.link);
        if current
            .as_ref()
            .is_some_and(|l| Arc::ptr_eq(&l.broken, &link.broken))
        {
            *current = None;
        }
        link.broken.notify_one();
    }

    fn set_down(&self) {
        *lock(&self.link) = None;
        // Joins waiting for their `joined` give up; the next resync releases their names.
        lock(&self.pending).clear();
    }
}

impl Backplane for RedisBackplane {
    fn new_room(&self, name: &str, history: usize) -> Room {
        Room::with_replica(name, history, Replica::new(self.on_leave.clone()))
    }

    fn join(
        &self,
        room: Arc<Room>,
        name: String,
        since: Option<u64>,
        mailbox: Arc<Mailbox>,
    ) -> BoxFuture<'_, Result<Joined, JoinError>> {
        Box::pin(async move {
            self.ensure_loaded(&room).await?;
            let link = self.link().ok_or(JoinError::Unavailable)?;
            let keys = self.keys(&room.name);
            let pending = (room, since, mailbox, false);
            let joined = self
                .admit_with(&link, pending, |token, mut conn| async move {
                    let ttl = self.ttl_ms();
                    let node = &self.node;
                    self.scripts
                        .join(&mut conn, &keys, node, ttl, token, &name)
                        .await
                        .map(|_| true)
                })
                .await?;
            joined.ok_or(JoinError::Unavailable)
        })
    }

    fn publish<'a>(
        &'a self,
        room_name: &'a str,
        room: Option<Arc<Room>>,
        name: &'a str,
        body: Body<'a>,
    ) -> BoxFuture<'a, Result<u64, JoinError>> {
        Box::pin(async move {
            // Delivered to this node's members only, when Redis did not take it; `doubt` is
            // the token of a publish that failed but may have run in Redis.
            let here = |doubt: Option<&str>| match &room {
                Some(room) if room.is_loaded() => Ok(match doubt {
                    Some(token) => room.publish_in_doubt(name, body, token),
                    None => room.publish_local(name, body),
                }),
                _ => Err(JoinError::Unavailable),
            };
            let Some(link) = self.link() else {
                return here(None);
            };
            let keys = self.keys(room_name);
            let tail = event::message_tail(room_name, name, body, event::now_ms());
            let n = self.published.fetch_add(1, Ordering::Relaxed);
            let token = format!("{}-{n}", self.node);
            let mut conn = link.conn.clone();
            let (head, history) = (event::MESSAGE_HEAD, self.history);
            let published = self
                .scripts
                .publish(&mut conn, &keys, head, &tail, history, &token)
                .await;
            match published {
                Ok(id) => Ok(id),
                Err(e) => {
                    // It may have reached Redis before the failure (Redis stalled with the
                    // command in its buffer): delivered here now, in doubt until the resync,
                    // which then does not deliver it here again. Recorded before the task
                    // hears of the failure, so before that resync.
                    let local = here(Some(&token));
                    self.failed(&link, "publish", &e);
                    local
                }
            }
        })
    }

    fn cut<'a>(
        &'a self,
        room_name: &'a str,
        room: Option<Arc<Room>>,
        name: &'a str,
    ) -> BoxFuture<'a, Result<usize, JoinError>> {
        Box::pin(async move {
            let here = room.map_or(0, |r| r.cut(name));
            if here > 0 {
                return Ok(here);
            }
            let link = self.link().ok_or(JoinError::Unavailable)?;
            let keys = self.keys(room_name);
            match self.scripts.cut(&mut link.conn.clone(), &keys, name).await {
                Ok(there) => Ok(usize::from(there)),
                Err(e) => {
                    self.failed(&link, "cut", &e);
                    Err(JoinError::Unavailable)
                }
            }
        })
    }

    fn room_state<'a>(
        &'a self,
        room_name: &'a str,
        room: Option<Arc<Room>>,
    ) -> BoxFuture<'a, Result<Option<RoomState>, JoinError>> {
        Box::pin(async move {
            if let Some(room) = room.filter(|r| r.is_loaded()) {
                return Ok(Some(room.members()));
            }
            let link = self.link().ok_or(JoinError::Unavailable)?;
            let keys = self.keys(room_name);
            match self.scripts.room(&mut link.conn.clone(), &keys).await {
                Ok(state) => Ok(state),
                Err(e) => {
                    self.failed(&link, "reading a room", &e);
                    Err(JoinError::Unavailable)
                }
            }
        })
    }

    fn unload(&self, room: &Arc<Room>) {
        let _ = self.requests.send(Request::Unload(room.clone()));
    }

    fn run(self: Arc<Self>) -> BoxFuture<'static, ()> {
        Box::pin(self.run_loop())
    }

    fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.stop.notify_one();
    }

    fn closed(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if !self.started.load(Ordering::SeqCst) {
                return;
            }
            let mut done = self.done.subscribe();
            let _ = timeout(self.config.timeout * 3, done.wait_for(|d| *d)).await;
        })
    }

    fn is_up(&self) -> bool {
        lock(&self.link).is_some()
    }

    fn record_session<'a>(
        &'a self,
        session: &'a str,
        room: &'a str,
        name: &'a str,
        cursor: (u64, u64),
        stale: Vec<u64>,
    ) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let Some(link) = self.link() else {
                return;
            };
            let key = self.session_key(session);
            let ttl = self.session_ttl.as_millis() as u64;
            let recorded = self
                .scripts
                .record_session(
                    &mut link.conn.clone(),
                    &key,
                    room,
                    name,
                    &self.node,
                    cursor,
                    &stale,
                    ttl,
                )
                .await;
            if let Err(e) = recorded {
                self.failed(&link, "recording a session", &e);
            }
        })
    }

    fn find_session<'a>(&'a self, session: &'a str) -> BoxFuture<'a, Option<SessionInfo>> {
        Box::pin(async move {
            let link = self.link()?;
            let key = self.session_key(session);
            match self.scripts.session(&mut link.conn.clone(), &key).await {
                Ok(info) => info,
                Err(e) => {
                    self.failed(&link, "reading a session", &e);
                    None
                }
            }
        })
    }

    fn take_over(
        &self,
        room: Arc<Room>,
        session: String,
        info: SessionInfo,
        since: Option<u64>,
        mailbox: Arc<Mailbox>,
    ) -> BoxFuture<'_, Result<Option<Joined>, JoinError>> {
        Box::pin(async move {
            self.ensure_loaded(&room).await?;
            let link = self.link().ok_or(JoinError::Unavailable)?;
            let keys = self.keys(&room.name);
            let key = self.session_key(&session);
            let pending = (room, since, mailbox, true);
            self.admit_with(&link, pending, |token, mut conn| async move {
                let (node, ttl) = (&self.node, self.ttl_ms());
                self.scripts
                    .take_over(
                        &mut conn, &key, &keys, node, token, ttl, &session, &info.node,
                    )
                    .await
            })
            .await
        })
    }

    fn close_session<'a>(&'a self, session: &'a str, room: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let Some(link) = self.link() else {
                return;
            };
            let key = self.session_key(session);
            let keys = self.keys(room);
            let closed = self
                .scripts
                .close_session(&mut link.conn.clone(), &key, &keys, session)
                .await;
            if let Err(e) = closed {
                self.failed(&link, "closing a session", &e);
            }
        })
    }

    fn forget_session(&self, session: &str) {
        let _ = self.requests.send(Request::Forget(session.to_string()));
    }

    fn on_session_gone(&self, hook: SessionHook) {
        let _ = self.session_gone.set(hook);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_password() {
        let debug = format!("{:?}", RedisConfig::new("redis://u:hunter2@h"));
        assert!(!debug.contains("hunter2"), "{debug}");
    }
}
