//! The Redis backplane: one command connection (multiplexed, shared by every caller) and
//! one pub/sub connection per node, both owned by [`RedisBackplane::run`]; with sentinels,
//! a third, subscribed to the failovers of the sentinel that named the master (see
//! `target.rs` for the URLs, TLS and the Sentinel protocol).
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
//!   delivered locally (`"local":true`, ids past [`crate::room::LOCAL_ID_GAP`], not in
//!   history), leaves are told locally, joins are refused (`503`); it reconnects with
//!   exponential backoff and resynchronizes.

use super::scripts::{self, Event, Failure, Keys, Scripts, SessionInfo};
use super::target::{self, redacted, Endpoint, Master, SentinelGone};
use super::{Backplane, BoxFuture, RoomState, SessionHook};
use crate::event;
use crate::room::{Joined, OnLeave, Room, Snapshot};
use crate::JoinError;
use ::redis::aio::{MultiplexedConnection, PubSubSink, PubSubStream};
use ::redis::{AsyncConnectionConfig, Msg};
use futures_util::StreamExt;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch, Notify};
use tokio::time::timeout;
use wsduplex::Utf8Bytes;

/// First reconnect delay; it doubles up to [`RedisConfig::max_backoff`].
const MIN_BACKOFF: Duration = Duration::from_millis(100);

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

/// The connection of one session with Redis, and how callers report that it failed.
#[derive(Clone)]
struct Link {
    conn: MultiplexedConnection,
    broken: Arc<Notify>,
}

/// A connected session: the command connection, the pub/sub connection, and with
/// sentinels the master they named.
struct Session {
    link: Link,
    sink: PubSubSink,
    stream: PubSubStream,
    master: Option<Master>,
}

/// With sentinels, completes when the master moves (or its watch goes away); else never.
async fn switched(master: &mut Option<Master>) -> Result<String, SentinelGone> {
    match master {
        Some(m) => m.switched().await,
        None => std::future::pending().await,
    }
}

/// A join waiting for its `joined` event, or a session waiting for its move (`T`).
struct Pending {
    room: Arc<Room>,
    since: Option<u64>,
    queue: usize,
    /// A moving session: the client's cursor.
    cursor: Option<u64>,
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
        scripts::session_key(&self.config.key_prefix, session)
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
        pending: (Arc<Room>, Option<u64>, usize, Option<u64>),
        reserve: F,
    ) -> Result<Option<Joined>, JoinError>
    where
        F: FnOnce(u64, MultiplexedConnection) -> Fut,
        Fut: std::future::Future<Output = Result<bool, Failure>>,
    {
        let (room, since, queue, cursor) = pending;
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
                queue,
                cursor,
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

    async fn run_loop(self: Arc<Self>) {
        let Some(mut inbox) = lock(&self.inbox).take() else {
            return;
        };
        self.started.store(true, Ordering::SeqCst);
        let mut backoff = MIN_BACKOFF;
        let mut was_up = false;
        while !self.stopping() {
            // With sentinels: a failover announced while down ends the pause at once.
            let mut watch = None;
            match self.connect().await {
                Ok(session) => {
                    let at = match &session.master {
                        Some(m) => format!(" (master {} at {})", m.name, m.addr),
                        None => String::new(),
                    };
                    let rooms = lock(&self.rooms).len();
                    *lock(&self.link) = Some(session.link.clone());
                    if was_up {
                        // As loud as the error it ends.
                        tracing::warn!(
                            "redis {}{at}: connected again ({rooms} rooms resynchronized)",
                            self.target
                        );
                    } else {
                        tracing::info!(
                            "redis {}{at}: connected as node {}",
                            self.target,
                            self.node
                        );
                    }
                    backoff = MIN_BACKOFF;
                    was_up = true;
                    let ended = self.serve(session, &mut inbox).await;
                    self.set_down();
                    match ended {
                        Ok(()) => break,
                        Err(e) => tracing::error!(
                            "redis {}: connection lost ({e}); members of this node keep \
                             chatting among themselves, joins are refused until it is back",
                            self.target
                        ),
                    }
                }
                Err((e, master)) => {
                    watch = master;
                    self.set_down();
                    let mode = if was_up { "reconnect" } else { "connect" };
                    tracing::warn!(
                        "redis {}: cannot {mode}: {e}; next attempt in {backoff:?}",
                        self.target
                    );
                }
            }
            // Down: serve requests locally until the next attempt.
            let mut announced = false;
            let pause = tokio::time::sleep(backoff);
            tokio::pin!(pause);
            loop {
                tokio::select! {
                    _ = &mut pause => break,
                    _ = self.stop.notified() => break,
                    Ok(to) = switched(&mut watch) => {
                        tracing::info!(
                            "redis {}: sentinels moved the master to {to}; connecting now",
                            self.target
                        );
                        announced = true;
                        break;
                    }
                    request = inbox.recv() => match request {
                        Some(r) => self.serve_down(r),
                        None => break,
                    },
                }
            }
            backoff = match announced {
                true => MIN_BACKOFF,
                false => (backoff * 2).min(self.config.max_backoff.max(MIN_BACKOFF)),
            };
        }
        self.set_down();
        self.done.send_replace(true);
    }

    /// Connects both connections, subscribes to every followed room and resynchronizes
    /// each. With sentinels, also returns the master they named (and its watch), even if
    /// connecting to it failed.
    async fn connect(&self) -> Result<Session, (Failure, Option<Master>)> {
        let resolved = self
            .endpoint
            .resolve(self.config.timeout)
            .await
            .map_err(|e| (e, None))?;
        let master = resolved.master;
        match self.connect_to(&resolved.client, master.is_some()).await {
            Ok((link, sink, stream)) => Ok(Session {
                link,
                sink,
                stream,
                master,
            }),
            Err(e) => Err(match master {
                Some(m) => {
                    let failure = Failure::AtMaster {
                        name: m.name.clone(),
                        addr: m.addr.clone(),
                        failure: Box::new(e),
                    };
                    (failure, Some(m))
                }
                None => (e, None),
            }),
        }
    }

    /// [`RedisBackplane::connect`] once the server is known; `sentinel`: check that it is
    /// a master.
    async fn connect_to(
        &self,
        client: &::redis::Client,
        sentinel: bool,
    ) -> Result<(Link, PubSubSink, PubSubStream), Failure> {
        let t = self.config.timeout;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(t))
            .set_response_timeout(Some(t));
        let mut conn = timeout(
            t * 2,
            client.get_multiplexed_async_connection_with_config(&config),
        )
        .await
        .map_err(|_| Failure::Timeout(t))??;
        if sentinel {
            // What a sentinel said may be stale (the failover is not over, or the old
            // master came back as a replica): the Sentinel client protocol checks.
            let role = timeout(t, target::role(&mut conn))
                .await
                .map_err(|_| Failure::Timeout(t))??;
            if role != "master" {
                return Err(Failure::NotMaster { role });
            }
        }
        let pubsub = timeout(t, client.get_async_pubsub())
            .await
            .map_err(|_| Failure::Timeout(t))??;
        let (mut sink, stream) = pubsub.split();
        let rooms: Vec<Arc<Room>> = lock(&self.rooms).values().cloned().collect();
        if !rooms.is_empty() {
            let channels: Vec<String> = rooms
                .iter()
                .map(|r| scripts::channel(&self.config.key_prefix, &r.name))
                .collect();
            timeout(t, sink.subscribe(channels))
                .await
                .map_err(|_| Failure::Timeout(t))??;
        }
        let mut c = conn.clone();
        for room in &rooms {
            self.resync(&mut c, room).await?;
        }
        let link = Link {
            conn,
            broken: Arc::new(Notify::new()),
        };
        Ok((link, sink, stream))
    }

    /// Runs a connected session until the connection fails (`Err`) or the node stops.
    async fn serve(
        &self,
        session: Session,
        inbox: &mut mpsc::UnboundedReceiver<Request>,
    ) -> Result<(), Failure> {
        let Session {
            link,
            mut sink,
            mut stream,
            mut master,
        } = session;
        let mut conn = link.conn.clone();
        let every = (self.config.presence_ttl / 3).max(Duration::from_millis(10));
        let mut beat = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if self.stopping() {
                self.goodbye(&conn).await;
                return Ok(());
            }
            tokio::select! {
                biased;
                _ = self.stop.notified() => {}
                _ = link.broken.notified() => return Err(Failure::Broken),
                msg = stream.next() => match msg {
                    Some(msg) => self.on_message(&mut conn, msg).await?,
                    None => return Err(Failure::Closed),
                },
                request = inbox.recv() => match request {
                    Some(r) => self.on_request(&mut conn, &mut sink, r).await?,
                    None => return Ok(()),
                },
                switched = switched(&mut master) => match switched {
                    Ok(to) => {
                        let name = master.as_ref().map(|m| m.name.clone()).unwrap_or_default();
                        return Err(Failure::Switched { master: name, to });
                    }
                    Err(SentinelGone) => tracing::warn!(
                        "redis {}: the sentinel watched for failovers went away; \
                         another is asked at the next heartbeat",
                        self.target
                    ),
                },
                _ = beat.tick() => {
                    // A pub/sub connection that stopped answering is as good as closed.
                    let t = self.config.timeout;
                    timeout(t, sink.ping::<::redis::Value>())
                        .await
                        .map_err(|_| Failure::Timeout(t))??;
                    self.heartbeat(&mut conn).await?;
                    if let Some(m) = master.as_mut().filter(|m| m.switches.is_none()) {
                        self.endpoint.rewatch(m, t).await?;
                    }
                }
            }
        }
    }

    /// Applies one event of a room's channel.
    async fn on_message(&self, conn: &mut MultiplexedConnection, msg: Msg) -> Result<(), Failure> {
        let Some(name) = scripts::room_of(&self.config.key_prefix, msg.get_channel_name()) else {
            return Ok(());
        };
        let Some(room) = lock(&self.rooms).get(name).cloned() else {
            return Ok(());
        };
        let payload = std::str::from_utf8(msg.get_payload_bytes()).unwrap_or_default();
        let Some(event) = scripts::parse_event(payload) else {
            tracing::warn!("redis {}: unknown event in room {name}", self.target);
            return Ok(());
        };
        match event {
            Event::Message { id, json } => {
                let last = room.last_shared();
                if id <= last {
                    return Ok(());
                }
                if id > last + 1 {
                    // Ids jump after an outage; anything between is in the stream.
                    let keys = self.keys(&room.name);
                    for (id, m) in self.scripts.range(conn, &keys, last, id - 1).await? {
                        room.apply_message(id, m);
                    }
                }
                room.apply_message(id, Utf8Bytes::from(json.to_string()));
            }
            Event::Joined {
                seq,
                node,
                token,
                name,
            } => {
                if node != self.node || token == 0 {
                    room.apply_joined(seq, name);
                    return Ok(());
                }
                let pending = lock(&self.pending).remove(&token);
                match pending {
                    Some(p) => match p.room.admit(seq, name, p.since, p.queue) {
                        Some(joined) => {
                            if let Err(joined) = p.admitted.send(joined) {
                                // The client went away meanwhile.
                                p.room.leave(joined.key);
                            }
                        }
                        None => (self.on_leave)(&room.name, name.into()),
                    },
                    None => {
                        // Its join gave up waiting: give the name back.
                        room.apply_joined(seq, name);
                        (self.on_leave)(&room.name, name.into());
                    }
                }
            }
            Event::Left { seq, name } => room.apply_left(seq, name),
            Event::Cut { name } => {
                room.cut(name);
            }
            Event::Moved {
                token,
                session,
                name,
            } => {
                let pending = lock(&self.pending).remove(&token);
                match pending {
                    Some(Pending {
                        room,
                        since,
                        queue,
                        cursor: Some(cursor),
                        admitted,
                    }) => match room.admit_moved(name, since, queue, cursor) {
                        Some(joined) => {
                            if let Err(joined) = admitted.send(joined) {
                                room.leave(joined.key);
                            }
                        }
                        None => (self.on_leave)(&room.name, name.into()),
                    },
                    // Not for this node: if the session was here, it is elsewhere now.
                    _ => self.session_gone(session),
                }
            }
            Event::Closed { session } => self.session_gone(session),
        }
        Ok(())
    }

    async fn on_request(
        &self,
        conn: &mut MultiplexedConnection,
        sink: &mut PubSubSink,
        request: Request,
    ) -> Result<(), Failure> {
        let t = self.config.timeout;
        match request {
            Request::Load(room, done) => {
                let followed = lock(&self.rooms)
                    .get(&room.name)
                    .is_some_and(|r| Arc::ptr_eq(r, &room));
                if !(followed && room.is_loaded()) {
                    // Subscribed first: every event after the snapshot then arrives.
                    let channel = scripts::channel(&self.config.key_prefix, &room.name);
                    timeout(t, sink.subscribe(channel))
                        .await
                        .map_err(|_| Failure::Timeout(t))??;
                    lock(&self.rooms).insert(room.name.clone(), room.clone());
                    self.resync(conn, &room).await?;
                }
                let _ = done.send(true);
            }
            Request::Unload(room) => {
                if self.unfollow(&room) {
                    let channel = scripts::channel(&self.config.key_prefix, &room.name);
                    timeout(t, sink.unsubscribe(channel))
                        .await
                        .map_err(|_| Failure::Timeout(t))??;
                }
            }
            Request::Leave(room, name) => {
                let keys = self.keys(&room);
                if let Err(e) = self.scripts.leave(conn, &keys, &self.node, &name).await {
                    self.left_locally(&room, &name);
                    return Err(e);
                }
            }
            Request::Forget(session) => {
                let _: ::redis::Value = ::redis::cmd("DEL")
                    .arg(self.session_key(&session))
                    .query_async(conn)
                    .await
                    .map_err(Failure::from)?;
            }
        }
        Ok(())
    }

    /// A request while disconnected.
    fn serve_down(&self, request: Request) {
        match request {
            Request::Load(_, done) => {
                let _ = done.send(false);
            }
            Request::Unload(room) => {
                self.unfollow(&room);
            }
            Request::Leave(room, name) => self.left_locally(&room, &name),
            // The session key expires with the session's TTL.
            Request::Forget(_) => {}
        }
    }

    /// Stops following `room` (if it is the one followed under its name).
    fn unfollow(&self, room: &Arc<Room>) -> bool {
        let mut rooms = lock(&self.rooms);
        let followed = rooms.get(&room.name).is_some_and(|r| Arc::ptr_eq(r, room));
        if followed {
            rooms.remove(&room.name);
        }
        followed
    }

    fn left_locally(&self, room: &str, name: &str) {
        let room = lock(&self.rooms).get(room).cloned();
        if let Some(room) = room {
            room.left_locally(name);
        }
    }

    /// Keeps this node alive in each room it has members in, and sweeps dead nodes there.
    async fn heartbeat(&self, conn: &mut MultiplexedConnection) -> Result<(), Failure> {
        let rooms: Vec<Arc<Room>> = lock(&self.rooms)
            .values()
            .filter(|r| r.has_members())
            .cloned()
            .collect();
        // All at once: the connection pipelines them.
        let beats = rooms.iter().map(|room| {
            let mut conn = conn.clone();
            async move {
                let keys = self.keys(&room.name);
                let ttl = self.ttl_ms();
                self.scripts
                    .heartbeat(&mut conn, &keys, &self.node, ttl)
                    .await
            }
        });
        let stale = futures_util::future::join_all(beats).await;
        for (room, stale) in rooms.iter().zip(stale) {
            if stale? {
                tracing::warn!(
                    "redis {}: room {} had given this node up for dead; resynchronizing",
                    self.target,
                    room.name
                );
                self.resync(conn, room).await?;
            }
        }
        Ok(())
    }

    /// Makes Redis and the room agree (see the resync script).
    async fn resync(&self, conn: &mut MultiplexedConnection, room: &Room) -> Result<(), Failure> {
        let state = room.sync_state();
        let keys = self.keys(&room.name);
        let r = self
            .scripts
            .resync(conn, &keys, &self.node, self.ttl_ms(), &state, self.history)
            .await?;
        if r.missed && !state.local_names.is_empty() {
            tracing::warn!(
                "redis {}: room {} lost messages for this node's members; they resume with since",
                self.target,
                room.name
            );
        }
        let mut members = r.members;
        members.sort_by_key(|(_, _, seq)| *seq);
        room.apply_snapshot(Snapshot {
            roster: members.into_iter().map(|(n, _, _)| n.into()).collect(),
            presence_seq: r.presence_seq,
            top: r.top,
            messages: r.messages,
            missed: r.missed && state.last_shared > 0,
            conflicts: r.conflicts,
        });
        Ok(())
    }

    /// This node's members leave every room (the node stops).
    async fn goodbye(&self, conn: &MultiplexedConnection) {
        let rooms: Vec<Arc<str>> = lock(&self.rooms).keys().cloned().collect();
        let byes = rooms.iter().map(|room| {
            let mut conn = conn.clone();
            async move {
                let keys = self.keys(room);
                if let Err(e) = self.scripts.goodbye(&mut conn, &keys, &self.node).await {
                    tracing::warn!("redis {}: goodbye in room {room}: {e}", self.target);
                }
            }
        });
        futures_util::future::join_all(byes).await;
    }
}

impl Backplane for RedisBackplane {
    fn new_room(&self, name: &str, history: usize) -> Room {
        Room::new_shared(name, history, self.on_leave.clone())
    }

    fn join(
        &self,
        room: Arc<Room>,
        name: String,
        since: Option<u64>,
        queue: usize,
    ) -> BoxFuture<'_, Result<Joined, JoinError>> {
        Box::pin(async move {
            self.ensure_loaded(&room).await?;
            let link = self.link().ok_or(JoinError::Unavailable)?;
            let keys = self.keys(&room.name);
            let pending = (room, since, queue, None);
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
        text: &'a str,
    ) -> BoxFuture<'a, Result<u64, JoinError>> {
        Box::pin(async move {
            if let Some(link) = self.link() {
                let keys = self.keys(room_name);
                let tail = event::message_tail(room_name, name, text, event::now_ms());
                let mut conn = link.conn.clone();
                let published = self
                    .scripts
                    .publish(&mut conn, &keys, event::MESSAGE_HEAD, &tail, self.history)
                    .await;
                match published {
                    Ok(id) => return Ok(id),
                    // It may have reached Redis before the failure: then it is delivered
                    // twice (here now, and with its shared id after the resync).
                    Err(e) => self.failed(&link, "publish", &e),
                }
            }
            match room {
                Some(room) if room.is_loaded() => Ok(room.publish_local(name, text)),
                _ => Err(JoinError::Unavailable),
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
        room: &'a str,
    ) -> BoxFuture<'a, Result<Option<RoomState>, JoinError>> {
        Box::pin(async move {
            let link = self.link().ok_or(JoinError::Unavailable)?;
            let keys = self.keys(room);
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
        cursor: u64,
        since: Option<u64>,
        queue: usize,
    ) -> BoxFuture<'_, Result<Option<Joined>, JoinError>> {
        Box::pin(async move {
            self.ensure_loaded(&room).await?;
            let link = self.link().ok_or(JoinError::Unavailable)?;
            let keys = self.keys(&room.name);
            let key = self.session_key(&session);
            let pending = (room, since, queue, Some(cursor));
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
