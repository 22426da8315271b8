//! The real-time hub: chat rooms with ids, history and fan-out, a WebSocket endpoint, a
//! long-polling fallback over plain HTTP, a push API, and the browser chat page, for any
//! `wsduplex` server to mount. The protocol and endpoints are in `docs/hub.md`.
//!
//! What it is not: a transport (that is `wsduplex`), or a broker. By default everything is
//! in memory in one process; rooms span the worker threads of that process. With
//! `Hub::with_redis` (feature `redis`) the hub is one node of many: Redis orders each
//! room's events and keeps its history, and every node delivers to its own members.
//!
//! Data flow: a member's message goes to its room, which (under the room's lock) assigns
//! the next id, encodes the event once, keeps it in history, and pushes the same bytes into
//! every member's bounded mailbox. Each WebSocket member's task drains its mailbox into its
//! socket; a long-polling session hands its mailbox out by cursor. A member whose mailbox
//! overflows is removed (close `4008`) and can resume with `since`. A connection may follow
//! many rooms (`subscribe`, `unsubscribe`): it has one mailbox, and each room it follows
//! pushes into it, so the slow-member rule is the connection's. With Redis, the id
//! comes from a script in Redis, and the room does the rest when the message comes back on
//! the room's channel, in the same order on every node.
//!
//! ```no_run
//! use wsduplex::server::{read_request, Peer, ServerConfig};
//! use wsduplex_hub::{Hub, HubConfig};
//!
//! # async fn run() -> std::io::Result<()> {
//! let hub = Hub::new(HubConfig::default());
//! // Or one node of many:
//! // let hub = Hub::with_redis(HubConfig::default(), RedisConfig::new("redis://cache:6379"))?;
//! tokio::spawn(hub.clone().maintain());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! // Limits, the Origin policy and authentication: the server's front door, which the hub
//! // applies to its own paths (with cookie auth, pages of other origins are refused).
//! let config = ServerConfig::default();
//! loop {
//!     let (tcp, peer) = listener.accept().await?;
//!     let (hub, config) = (hub.clone(), config.clone());
//!     tokio::spawn(async move {
//!         let Ok(mut incoming) = read_request(tcp, &config).await else { return };
//!         // What the front door checks the request against: plain TCP from this address.
//!         incoming.set_peer(Peer::new(peer.ip(), false));
//!         // The hub answers its own paths (/, /chat/ROOM, /poll/..., /api/...).
//!         if let Some(other) = hub.serve(incoming, &config).await {
//!             let _ = other.respond(404, &[], "text/plain", b"not found\n").await;
//!         }
//!     });
//! }
//! # }
//! ```
//!
//! A server that holds many members can run each in a task of its own that holds nothing
//! else: [`Hub::accept`] answers the same paths but hands a WebSocket member back as a
//! [`Member`] (`tokio::spawn(member.run())`), so the member's task is not as large as the
//! request's stages before it (`wsduplex serve` does this: a few KB less per member).
//!
//! In an axum 0.8 application (feature `axum`), `Hub::router` answers the same paths, with
//! the same code and front door, under any prefix: `app.nest("/hub", hub.router(config))`
//! (example: `examples/axum_chat.rs`).
//!
//! [`client`] is the other end: a typed Rust client of the same protocol over `wsduplex`'s
//! reconnecting client, which follows rooms across reconnects and resumes each with `since`
//! (no duplicates, gaps reported).
//!
//! ## Features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `redis` | on | `Hub::with_redis` and `RedisConfig`: one node of many, rooms shared through Redis (plain, TLS, Sentinel) |
//! | `deflate` | on | permessage-deflate on the hub's WebSockets when the `ServerConfig` enables it (forwards `wsduplex/deflate`) |
//! | `axum` | off | `Hub::router`: the hub as an axum 0.8 `Router` |
//! | `handover` | off | `HubState::encode`/`decode` and `MemberState::encode`/`decode`: the hand-over's states as versioned bytes (the hand-over itself, `Hub::freeze`, `export_state`, `import_state`, `resume_member`, is always built) |
//!
//! The hub needs no TLS of its own: it depends on `wsduplex` without its default features,
//! and a server in front of it that terminates TLS enables `wsduplex/tls` itself.
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs)]

#[cfg(feature = "axum")]
mod axum;
mod backplane;
pub mod client;
mod direct;
mod event;
mod handover;
mod http;
mod identity;
mod mailbox;
mod metrics;
pub mod names;
mod poll;
mod room;
mod sse;
mod subscriptions;
mod ws;

#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use backplane::redis::{InvalidRedisUrl, RedisConfig};
pub use event::BadMessage;
pub use handover::{
    HandedMember, HandoverError, HistoryHold, HubState, Imported, MemberState, HANDOVER_VERSION,
};
pub use http::Accepted;
pub use identity::CLOSE_TOKEN_EXPIRED;
pub use mailbox::Ended;
pub use metrics::CLOSE_CODES;
pub use names::NameError;
pub use ws::{Member, ParkedMember, Run};

use backplane::Nodes;
use event::Body;
use mailbox::Mailbox;
use room::Room;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// The close code sent to a member whose send queue overflowed (it was too slow to read):
/// reconnect and resume with `since`.
pub const CLOSE_TOO_SLOW: u16 = 4008;

/// Hub settings.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct HubConfig {
    /// Messages each room keeps for newcomers and for resumes with `since`.
    pub history: usize,
    /// Events queued per member before it counts as too slow and is removed.
    pub queue: usize,
    /// Longest chat message, in characters.
    pub max_text: usize,
    /// Largest `data` of a message, in bytes of compact JSON.
    pub max_data: usize,
    /// Rooms one connection (a WebSocket, a long-polling session) may follow at once.
    pub max_subscriptions: usize,
    /// How long a long-polling `GET` waits for an event before answering with none.
    pub poll_timeout: Duration,
    /// A long-polling session with no request for this long is closed (at least
    /// `poll_timeout` plus 5 s).
    pub session_ttl: Duration,
    /// Long-polling sessions at most (`503` beyond).
    pub max_sessions: usize,
    /// Rooms at most; empty rooms are dropped, longest idle first, to make room (`503` when
    /// every room has members).
    pub max_rooms: usize,
    /// The bearer token of the push API (`POST /api/rooms/ROOM/messages`); the API is off
    /// without one.
    pub api_token: Option<String>,
}

impl Default for HubConfig {
    /// History 100, queue 256, 4096 characters, 16 KiB of data, 100 subscriptions per
    /// connection, poll timeout 25 s, sessions expire after 60 s, 10,000 sessions, 10,000
    /// rooms, no API token.
    fn default() -> Self {
        Self {
            history: 100,
            queue: 256,
            max_text: 4096,
            max_data: 16 * 1024,
            max_subscriptions: 100,
            poll_timeout: Duration::from_secs(25),
            session_ttl: Duration::from_secs(60),
            max_sessions: 10_000,
            max_rooms: 10_000,
            api_token: None,
        }
    }
}

/// Why a join was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JoinError {
    /// A bad room or display name (`400`).
    #[error(transparent)]
    Name(#[from] NameError),
    /// Every room slot holds a room with members (`503`).
    #[error("too many rooms")]
    TooManyRooms,
    /// The hub is shutting down (`503`).
    #[error("server shutting down")]
    ShuttingDown,
    /// The node cannot reach Redis (`503`): members already in a room keep chatting on
    /// this node, but nobody can join until it is back.
    #[error("chat backplane unavailable")]
    Unavailable,
}

impl JoinError {
    /// The HTTP status to refuse with.
    pub fn status(&self) -> u16 {
        match self {
            Self::Name(_) => 400,
            Self::TooManyRooms | Self::ShuttingDown | Self::Unavailable => 503,
        }
    }
}

/// A long-polling session lives at least through a poll timeout and 5 s more.
fn session_ttl(config: &HubConfig) -> Duration {
    config
        .session_ttl
        .max(config.poll_timeout + Duration::from_secs(5))
}

/// The hub: cheap to clone (one `Arc`), used by every worker thread.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("rooms", &self.rooms().len())
            .finish()
    }
}

struct Inner {
    config: HubConfig,
    rooms: Mutex<HashMap<Arc<str>, Arc<Room>>>,
    sessions: Mutex<HashMap<String, Arc<poll::Session>>>,
    shutting_down: AtomicBool,
    /// [`Hub::freeze`] ran: long-polling reads have nothing more to wait for here.
    frozen: AtomicBool,
    /// [`Hub::export_state`] ran since the last thaw: a new process may have given ids.
    exported: AtomicBool,
    /// Rooms made here start after this id: a new process that died may have made them too
    /// (each failed hand-over after an export raises it by `room::THAW_ID_MARGIN`).
    id_floor: std::sync::atomic::AtomicU64,
    /// WebSocket members whose task runs (until it has handed its socket on): what
    /// `Hub::members_stopped` waits for.
    running: std::sync::atomic::AtomicUsize,
    stopped: tokio::sync::Notify,
    /// [`HistoryHold`]s alive: the rooms keep every message since the first was taken
    /// (changed under the rooms' lock, so that a room made meanwhile is held too).
    history_holds: std::sync::atomic::AtomicUsize,
    /// One node, or one of many.
    nodes: Nodes,
    /// Where members stopped for a hand-over go (`Hub::hand_members_to`).
    handover: Mutex<Option<handover::Sink>>,
}

/// A member of a room. Dropping it leaves the room (the others get `left`).
pub struct Membership {
    room: Arc<Room>,
    key: u64,
    name: Arc<str>,
    mailbox: Arc<mailbox::Mailbox>,
    nodes: Nodes,
}

impl std::fmt::Debug for Membership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Membership")
            .field("room", &self.room.name)
            .field("name", &self.name)
            .finish()
    }
}

impl Membership {
    /// The display name, made unique in the room.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The room's name.
    pub fn room(&self) -> &str {
        &self.room.name
    }

    /// Sends a chat message to the room (this member gets it back too); returns its id.
    /// With Redis unreachable, the message goes to this node's members only (see
    /// `docs/hub.md`).
    pub async fn say(&self, text: &str) -> u64 {
        self.send(Body::Text(text)).await
    }

    /// Sends a message with `data` (any JSON value) instead of text; returns its id.
    pub async fn say_data(&self, data: &serde_json::Value) -> u64 {
        self.send(Body::Data(data)).await
    }

    pub(crate) async fn send(&self, body: Body<'_>) -> u64 {
        self.nodes.say(&self.room, &self.name, body).await
    }

    /// Why delivery to this member ended, if it has.
    pub fn ended(&self) -> Option<Ended> {
        self.mailbox.ended()
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.room.leave(self.key);
    }
}

impl Hub {
    /// A hub with no rooms.
    pub fn new(config: HubConfig) -> Self {
        Self::with_nodes(config, Nodes::One)
    }

    /// A hub that is one node of many, sharing rooms through Redis: every message reaches
    /// every member of its room on every node, in one order, with the same ids; history
    /// lives in Redis, so a client can resume with `since` on any node. Nothing connects
    /// until [`Hub::maintain`] runs (it connects, reconnects with backoff, and keeps this
    /// node's presence alive).
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub fn with_redis(mut config: HubConfig, redis: RedisConfig) -> Result<Self, InvalidRedisUrl> {
        config.session_ttl = session_ttl(&config);
        let backplane =
            backplane::redis::RedisBackplane::new(redis, config.history, config.session_ttl)?;
        Ok(Self::with_nodes(config, Nodes::Many(backplane)))
    }

    fn with_nodes(mut config: HubConfig, nodes: Nodes) -> Self {
        config.session_ttl = session_ttl(&config);
        let hub = Self {
            inner: Arc::new(Inner {
                config,
                rooms: Mutex::new(HashMap::new()),
                sessions: Mutex::new(HashMap::new()),
                shutting_down: AtomicBool::new(false),
                frozen: AtomicBool::new(false),
                exported: AtomicBool::new(false),
                id_floor: std::sync::atomic::AtomicU64::new(0),
                running: std::sync::atomic::AtomicUsize::new(0),
                stopped: tokio::sync::Notify::new(),
                history_holds: std::sync::atomic::AtomicUsize::new(0),
                nodes,
                handover: Mutex::new(None),
            }),
        };
        let inner = Arc::downgrade(&hub.inner);
        hub.inner.nodes.on_session_gone(Box::new(move |id| {
            if let Some(inner) = inner.upgrade() {
                Hub { inner }.session_gone(id);
            }
        }));
        hub
    }

    /// `None` for a hub of one node; else whether this node is connected to Redis.
    pub fn is_connected(&self) -> Option<bool> {
        self.inner.nodes.is_up()
    }

    /// The settings.
    pub fn config(&self) -> &HubConfig {
        &self.inner.config
    }

    /// What a client message is checked against.
    pub(crate) fn limits(&self) -> event::Limits {
        event::Limits {
            max_text: self.inner.config.max_text,
            max_data: self.inner.config.max_data,
        }
    }

    fn rooms(&self) -> MutexGuard<'_, HashMap<Arc<str>, Arc<Room>>> {
        self.inner.rooms.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The room called `name` if this node has it.
    fn room_here(&self, name: &str) -> Option<Arc<Room>> {
        self.rooms().get(name).cloned()
    }

    /// The room called `name` (validated), created if needed.
    fn room(&self, name: &str) -> Result<Arc<Room>, JoinError> {
        let name = names::validate_room(name)?;
        let mut rooms = self.rooms();
        if let Some(room) = rooms.get(name) {
            return Ok(room.clone());
        }
        if self.is_shutting_down() {
            return Err(JoinError::ShuttingDown);
        }
        if rooms.len() >= self.inner.config.max_rooms {
            // Drop the empty room idle longest (its history goes with it).
            let victim = rooms
                .iter()
                .filter_map(|(k, r)| r.idle_since().map(|t| (t, k.clone())))
                .min()
                .map(|(_, k)| k)
                .ok_or(JoinError::TooManyRooms)?;
            if let Some(dropped) = rooms.remove(&victim) {
                self.inner.nodes.dropped(&dropped);
            }
        }
        let history = self.inner.config.history;
        let room = Arc::new(self.inner.nodes.new_room(name, history));
        let floor = self.inner.id_floor.load(Ordering::SeqCst);
        if floor > 0 {
            room.start_after(floor);
        }
        if self.inner.history_holds.load(Ordering::SeqCst) > 0 {
            room.hold_history(true);
        }
        rooms.insert(room.name.clone(), room.clone());
        Ok(room)
    }

    /// Joins `room` as `name` (validated, then made unique: `alice`, `alice-2`...). With
    /// `since`, the welcome carries every message after that id still in history, and live
    /// messages follow with no gap and no duplicate. Without a backplane this never waits.
    pub async fn join(
        &self,
        room: &str,
        name: &str,
        since: Option<u64>,
    ) -> Result<Membership, JoinError> {
        let mailbox = Arc::new(Mailbox::new(self.inner.config.queue));
        self.join_into(room, name, since, mailbox).await
    }

    /// [`Hub::join`] with the events going to `mailbox`: a connection's, shared by every
    /// room it follows.
    pub(crate) async fn join_into(
        &self,
        room: &str,
        name: &str,
        since: Option<u64>,
        mailbox: Arc<Mailbox>,
    ) -> Result<Membership, JoinError> {
        let name = names::validate_name(name)?;
        let room = self.room(room)?;
        let joined = self
            .inner
            .nodes
            .join(room.clone(), name, since, mailbox)
            .await
            .map_err(|e| match self.is_shutting_down() {
                true => JoinError::ShuttingDown,
                false => e,
            })?;
        Ok(Membership {
            room,
            key: joined.key,
            name: joined.name,
            mailbox: joined.mailbox,
            nodes: self.inner.nodes.clone(),
        })
    }

    /// Delivers a message to `room` from `name` (the push API); returns its id. Without a
    /// backplane this never waits.
    pub async fn publish(&self, room: &str, name: &str, text: &str) -> Result<u64, JoinError> {
        self.publish_body(room, name, Body::Text(text)).await
    }

    /// [`Hub::publish`] with `data` (any JSON value) instead of text.
    pub async fn publish_data(
        &self,
        room: &str,
        name: &str,
        data: &serde_json::Value,
    ) -> Result<u64, JoinError> {
        self.publish_body(room, name, Body::Data(data)).await
    }

    pub(crate) async fn publish_body(
        &self,
        room: &str,
        name: &str,
        body: Body<'_>,
    ) -> Result<u64, JoinError> {
        let name = names::validate_name(name)?;
        self.inner.nodes.publish(self, room, name, body).await
    }

    /// Cuts the connections of every member of `room` called `name`, without a closing
    /// handshake, as a failed network would. Returns how many were cut: with Redis, a
    /// member of another node counts 1 (that node cuts it), and the answer is
    /// [`JoinError::Unavailable`] if the member is not here and Redis is unreachable.
    /// Without a backplane this never waits.
    pub async fn cut(&self, room: &str, name: &str) -> Result<usize, JoinError> {
        self.inner.nodes.cut(self, room, name).await
    }

    /// The members of `room` (in the order they joined) and its last message id; `None` if
    /// there is no such room. With Redis, a room this node does not follow is read from
    /// Redis ([`JoinError::Unavailable`] if it is unreachable). Without a backplane this
    /// never waits.
    pub async fn members(&self, room: &str) -> Result<Option<(Vec<String>, u64)>, JoinError> {
        self.inner.nodes.members(self, room).await
    }

    /// Stops the hub: every member is closed with 1001 (long-polling requests are answered
    /// at once), and joins are refused.
    pub fn shutdown(&self) {
        self.inner.shutting_down.store(true, Ordering::SeqCst);
        let rooms: Vec<_> = self.rooms().values().cloned().collect();
        for room in rooms {
            room.shut();
        }
        self.inner.nodes.stop();
    }

    /// After [`Hub::shutdown`]: completes when this node has told Redis that its members
    /// left (at once without a backplane; a few seconds at most otherwise). Drive it on the
    /// runtime [`Hub::maintain`] runs on.
    pub async fn closed(&self) {
        self.inner.nodes.closed().await;
    }

    fn is_shutting_down(&self) -> bool {
        self.inner.shutting_down.load(Ordering::SeqCst)
    }

    /// Housekeeping: expires idle long-polling sessions, and with Redis runs the
    /// connection to it (subscriptions, heartbeats, reconnects). Runs until
    /// [`Hub::shutdown`]; spawn it once.
    pub async fn maintain(self) {
        let every = (self.inner.config.session_ttl / 4).max(Duration::from_millis(100));
        let sessions = async {
            while !self.is_shutting_down() {
                tokio::time::sleep(every).await;
                self.expire_sessions(std::time::Instant::now());
            }
        };
        tokio::join!(sessions, self.inner.nodes.run());
    }
}

/// The README's example, compiled as a doctest so that it stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
