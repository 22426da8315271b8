//! Handing the hub to a new process without closing its WebSockets (`wsduplex serve
//! --take-over`, `docs/handover.md`): the rooms (ids, history) and each WebSocket member
//! (its rooms, the name it has in each, who it is) as plain values.
//!
//! The order: [`Hub::freeze`] stops every member once its queue is written into its
//! socket's buffer (each member's task gives back its socket and a [`MemberState`] through
//! [`Hub::hand_members_to`]); [`Hub::export_state`] then writes the rooms down, after which
//! nothing more is published here. The new process calls [`Hub::import_state`] before it
//! serves anyone, and [`Hub::resume_member`] for each socket. A member takes its seat again
//! unannounced, under the name it had, and gets from history whatever was published
//! between the freeze and the export (a member's message still on its way, a push): no
//! message is lost or delivered twice, and ids go on from where they were.
//!
//! What does not move: a hub on Redis keeps its rooms there ([`HandoverError::Backplane`]),
//! and long-polling sessions end (the client opens one again with `since`).
//!
//! Between processes the states travel as bytes (feature `handover`): [`HubState::encode`]
//! and [`MemberState::encode`] write a magic (`WSDH`, `WSDM`), the format version
//! ([`HANDOVER_VERSION`], a big-endian `u16`) and postcard; `decode` refuses another
//! version with [`HandoverError::Version`].

use crate::identity::Access;
use crate::mailbox::Mailbox;
use crate::subscriptions::Subscriptions;
use crate::ws::Ending;
use crate::{Hub, JoinError, Membership};
use serde::{Deserialize, Serialize};
use std::any::Any;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc::UnboundedSender;
use wsduplex::auth::{Identity, RoomSet};
use wsduplex::server::ServerConfig;
use wsduplex::{CloseCode, Utf8Bytes, WebSocket};

/// The format version of encoded [`HubState`]s and [`MemberState`]s; a process refuses
/// another it cannot read ([`HandoverError::Version`]).
pub const HANDOVER_VERSION: u16 = 1;

/// Why a hand-over step failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HandoverError {
    /// The state was written by a process whose format this one cannot read.
    #[error("hand-over state version {found}; this build reads version {supported}")]
    Version {
        /// The version found.
        found: u16,
        /// The version this build reads and writes.
        supported: u16,
    },
    /// The bytes are not an encoded state of the kind asked for (no magic, or cut short).
    #[error("not a wsduplex hub hand-over state")]
    NotAState,
    /// The state's body could not be decoded.
    #[cfg(feature = "handover")]
    #[error("malformed hub hand-over state")]
    Malformed(#[source] postcard::Error),
    /// A hub on Redis keeps its rooms in Redis: its members reconnect to the new process
    /// (resuming with `since`) instead of moving.
    #[error("a hub on Redis keeps its rooms in Redis; its members reconnect instead")]
    Backplane,
    /// A room of the state could not be made here (a bad name, too many rooms).
    #[error("room {room}: {error}")]
    Room {
        /// The room.
        room: String,
        /// Why.
        error: JoinError,
    },
    /// A member's messages since the hand-over began are no longer all in a room's history
    /// (or the room is gone): it is closed, and resumes with `since`.
    #[error("room {room} no longer has every message after {seen}")]
    Gap {
        /// The room.
        room: String,
        /// The last id the member had.
        seen: u64,
    },
}

/// The rooms of a hub of one node: ids and history. Serde makes it bytes; the format is
/// [`HANDOVER_VERSION`].
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct HubState {
    rooms: Vec<RoomState>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct RoomState {
    name: String,
    last_id: u64,
    /// `(id, the encoded event)`, oldest first.
    history: Vec<(u64, String)>,
}

/// A WebSocket member as the new process takes it on: its rooms, its name in each, the last
/// id it had in each, and who it is. Its socket (the bytes it had yet to send included)
/// travels beside it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MemberState {
    /// The name it asked for (new rooms make it unique again).
    name: String,
    seats: Vec<Seat>,
    identity: IdentityState,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Seat {
    room: String,
    /// Its name in that room, unique there.
    name: String,
    /// Every message up to this id is in its socket's buffer or already sent.
    seen: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct IdentityState {
    user: Option<String>,
    name: Option<String>,
    /// Patterns (`*`: every room).
    read: Vec<String>,
    write: Vec<String>,
    /// Milliseconds since the Unix epoch.
    expires_ms: Option<u64>,
}

/// A member stopped for a hand-over: its socket and its state, for the new process.
#[derive(Debug)]
pub struct HandedMember<S> {
    /// The socket: frames queued but not sent are still in it.
    pub socket: WebSocket<S>,
    /// What the new process's [`Hub::resume_member`] needs.
    pub state: MemberState,
}

/// What [`Hub::import_state`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Imported {
    /// Rooms that took the saved ids and history.
    pub rooms: usize,
    /// Rooms left as they were: one that already has messages here, or a history out of
    /// order or beyond its last id.
    pub skipped: usize,
}

#[cfg(feature = "handover")]
fn encode<T: Serialize>(magic: &[u8; 4], value: &T) -> Vec<u8> {
    let mut out = magic.to_vec();
    out.extend_from_slice(&HANDOVER_VERSION.to_be_bytes());
    postcard::to_extend(value, out).expect("writing to a Vec cannot fail")
}

#[cfg(feature = "handover")]
fn decode<T: serde::de::DeserializeOwned>(
    magic: &[u8; 4],
    bytes: &[u8],
) -> Result<T, HandoverError> {
    let rest = bytes.strip_prefix(magic).ok_or(HandoverError::NotAState)?;
    let (version, body) = rest
        .split_first_chunk::<2>()
        .ok_or(HandoverError::NotAState)?;
    let found = u16::from_be_bytes(*version);
    if found != HANDOVER_VERSION {
        return Err(HandoverError::Version {
            found,
            supported: HANDOVER_VERSION,
        });
    }
    let (value, rest) = postcard::take_from_bytes(body).map_err(HandoverError::Malformed)?;
    if !rest.is_empty() {
        return Err(HandoverError::Malformed(
            postcard::Error::DeserializeBadEncoding,
        ));
    }
    Ok(value)
}

#[cfg(feature = "handover")]
#[cfg_attr(docsrs, doc(cfg(feature = "handover")))]
impl HubState {
    /// The state as bytes: `WSDH`, the format version, then postcard.
    pub fn encode(&self) -> Vec<u8> {
        encode(b"WSDH", self)
    }

    /// Reads what [`HubState::encode`] wrote.
    pub fn decode(bytes: &[u8]) -> Result<Self, HandoverError> {
        decode(b"WSDH", bytes)
    }
}

#[cfg(feature = "handover")]
#[cfg_attr(docsrs, doc(cfg(feature = "handover")))]
impl MemberState {
    /// The state as bytes: `WSDM`, the format version, then postcard.
    pub fn encode(&self) -> Vec<u8> {
        encode(b"WSDM", self)
    }

    /// Reads what [`MemberState::encode`] wrote.
    pub fn decode(bytes: &[u8]) -> Result<Self, HandoverError> {
        decode(b"WSDM", bytes)
    }
}

impl HubState {
    /// How many rooms it holds.
    pub fn rooms(&self) -> usize {
        self.rooms.len()
    }
}

fn patterns(set: &RoomSet) -> Vec<String> {
    match set.is_all() {
        true => vec!["*".to_string()],
        false => set.patterns().to_vec(),
    }
}

impl IdentityState {
    fn new(id: &Identity) -> Self {
        let ms = |t: SystemTime| t.duration_since(SystemTime::UNIX_EPOCH).ok();
        Self {
            user: id.user.clone(),
            name: id.name.clone(),
            read: patterns(&id.read),
            write: patterns(&id.write),
            expires_ms: id.expires.and_then(ms).map(|d| d.as_millis() as u64),
        }
    }

    fn identity(&self) -> Identity {
        let mut id = Identity::anonymous();
        id.user = self.user.clone();
        id.name = self.name.clone();
        id.read = RoomSet::of(self.read.iter().cloned());
        id.write = RoomSet::of(self.write.iter().cloned());
        id.expires = self
            .expires_ms
            .map(|ms| SystemTime::UNIX_EPOCH + Duration::from_millis(ms));
        id
    }
}

impl Subscriptions {
    /// The member as the new process takes it on (its rooms are frozen).
    pub(crate) fn hand_over(&self, access: &Access) -> MemberState {
        let seats = self
            .memberships()
            .iter()
            .map(|m| Seat {
                room: m.room().to_string(),
                name: m.name().to_string(),
                seen: m.room.freeze(),
            })
            .collect();
        MemberState {
            name: self.asked().to_string(),
            seats,
            identity: IdentityState::new(access.identity()),
        }
    }
}

impl Hub {
    /// Begins a hand-over: no one joins any more, and every WebSocket member stops once
    /// its queued events are in its socket's buffer, to be given to the sink of
    /// [`Hub::hand_members_to`] (or closed with 1001 without one). Long-polling sessions
    /// end. Then call [`Hub::export_state`].
    pub fn freeze(&self) -> Result<(), HandoverError> {
        if self.inner.nodes.is_up().is_some() {
            return Err(HandoverError::Backplane);
        }
        self.inner
            .shutting_down
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let rooms: Vec<_> = self.rooms().values().cloned().collect();
        for room in rooms {
            room.freeze();
        }
        Ok(())
    }

    /// The rooms, for the new process, once the members have stopped: nothing is published
    /// here afterwards (the push API answers 503).
    pub fn export_state(&self) -> Result<HubState, HandoverError> {
        if self.inner.nodes.is_up().is_some() {
            return Err(HandoverError::Backplane);
        }
        let rooms: Vec<_> = self.rooms().values().cloned().collect();
        let rooms = rooms
            .iter()
            .map(|room| {
                let (last_id, history) = room.export();
                RoomState {
                    name: room.name.to_string(),
                    last_id,
                    history: history
                        .into_iter()
                        .map(|(id, e)| (id, e.as_str().to_string()))
                        .collect(),
                }
            })
            .collect();
        Ok(HubState { rooms })
    }

    /// Takes on the rooms of the process handing over, before serving anyone: each room
    /// gets its last id and history (cut to this hub's `history` setting), so ids go on from
    /// there. A room that already has messages here, or whose history is out of order, is
    /// left as it is (counted in [`Imported::skipped`]).
    pub fn import_state(&self, state: HubState) -> Result<Imported, HandoverError> {
        if self.inner.nodes.is_up().is_some() {
            return Err(HandoverError::Backplane);
        }
        let mut done = Imported::default();
        for r in state.rooms {
            let room = self.room(&r.name).map_err(|error| HandoverError::Room {
                room: r.name.clone(),
                error,
            })?;
            let ordered = r.history.windows(2).all(|w| w[0].0 < w[1].0);
            let in_range = r.history.last().is_none_or(|(id, _)| *id <= r.last_id);
            let history = r
                .history
                .into_iter()
                .map(|(id, e)| (id, Utf8Bytes::from(e)));
            if ordered && in_range && room.restore(r.last_id, history) {
                done.rooms += 1;
            } else {
                done.skipped += 1;
            }
        }
        Ok(done)
    }

    /// Where WebSocket members stopped by [`Hub::freeze`] go: each member whose transport
    /// is an `S` is sent there with its socket. Members over another transport (TLS, an
    /// HTTP/2 stream, when the sink takes plain TCP) are closed with 1001 and resume with
    /// `since`.
    pub fn hand_members_to<S: Send + 'static>(&self, sink: UnboundedSender<HandedMember<S>>) {
        *self
            .inner
            .handover
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(Box::new(sink));
    }

    /// The settings of a member's socket under `config`: the hub's message limits applied
    /// (what the new process passes to `WebSocket::from_parts`).
    pub fn member_socket_config(&self, config: &ServerConfig) -> wsduplex::Config {
        let mut socket = config.socket.clone();
        self.limit_member(&mut socket.protocol);
        socket
    }

    /// Serves a member handed over by another process, until it ends or is handed over
    /// again. A member whose rooms lost messages it needs ([`HandoverError::Gap`]) is
    /// closed with 1001, to resume with `since`.
    pub async fn resume_member<S>(
        &self,
        mut socket: WebSocket<S>,
        state: MemberState,
        config: &ServerConfig,
    ) -> wsduplex::Result<()>
    where
        S: AsyncRead + AsyncWrite + Unpin + 'static,
    {
        let subs = match self.seat(&state) {
            Ok(subs) => subs,
            Err(e) => {
                tracing::debug!("a handed-over member: {e}");
                let _ = socket.close(CloseCode::GOING_AWAY, "please resume").await;
                while let Some(item) = socket.recv().await {
                    item?;
                }
                return Ok(());
            }
        };
        let access = Access::new(state.identity.identity(), config.auth.clone());
        let ending = crate::ws::run(
            &mut socket,
            subs,
            self.limits(),
            config.socket.close_timeout,
            access,
        )
        .await?;
        self.member_ended(socket, ending).await
    }

    /// Seats a handed-over member in each of its rooms.
    fn seat(&self, state: &MemberState) -> Result<Subscriptions, HandoverError> {
        let mailbox = Arc::new(Mailbox::new(self.inner.config.queue));
        let mut rooms = Vec::with_capacity(state.seats.len());
        for seat in &state.seats {
            let gap = || HandoverError::Gap {
                room: seat.room.clone(),
                seen: seat.seen,
            };
            let room = self.room_here(&seat.room).ok_or_else(gap)?;
            let joined = room
                .seat(seat.name.as_str().into(), seat.seen, mailbox.clone())
                .ok_or_else(gap)?;
            rooms.push(Membership {
                room,
                key: joined.key,
                name: joined.name,
                mailbox: joined.mailbox,
                nodes: self.inner.nodes.clone(),
            });
        }
        Ok(Subscriptions::resumed(
            self.clone(),
            mailbox,
            &state.name,
            rooms,
        ))
    }

    /// After a member's run: handed over, its socket goes to the sink (or is closed with
    /// 1001 when there is none for its transport).
    pub(crate) async fn member_ended<S>(
        &self,
        mut socket: WebSocket<S>,
        ending: Ending,
    ) -> wsduplex::Result<()>
    where
        S: AsyncRead + AsyncWrite + Unpin + 'static,
    {
        let Ending::HandedOver(state) = ending else {
            return Ok(());
        };
        let handed = HandedMember { socket, state };
        let refused = {
            let sink = self
                .inner
                .handover
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let sink: Option<&UnboundedSender<HandedMember<S>>> =
                sink.as_ref().and_then(|s| (**s).downcast_ref());
            match sink {
                Some(sink) => sink.send(handed).err().map(|e| e.0),
                None => Some(handed),
            }
        };
        let Some(handed) = refused else {
            return Ok(());
        };
        socket = handed.socket;
        let _ = socket
            .close(CloseCode::GOING_AWAY, "server restarting")
            .await;
        while let Some(item) = socket.recv().await {
            item?;
        }
        Ok(())
    }
}

/// The sink's type, erased: one per hub, whatever transport the server's members use.
pub(crate) type Sink = Box<dyn Any + Send + Sync>;
