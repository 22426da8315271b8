//! Handing the hub to a new process without closing its WebSockets (`wsduplex serve
//! --take-over`, `docs/handover.md`): the rooms (ids, history), each WebSocket member (its
//! rooms, the name it has in each, who it is) and each long-polling session (the same, with
//! its queue and what the client's cursor stands for) as plain values.
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
//! Long-polling sessions travel inside [`HubState`]: at the freeze a `GET` waiting for one
//! answers with nothing (its cursor unchanged), later ones with nothing to read answer
//! `503` (the client asks again, and reaches the new process); the new hub has the same
//! session, its queue numbered as before, so the client's next `GET` with its cursor goes
//! on exactly. See `docs/hub.md` ("Handing the hub to a new process") for what does not
//! move: a hub on Redis keeps its rooms there ([`HandoverError::Backplane`]), and an SSE
//! stream's session ends with its stream (the browser resumes with `Last-Event-ID`).
//!
//! Between processes the states travel as bytes (feature `handover`): [`HubState::encode`]
//! and [`MemberState::encode`] write a magic (`WSDH`, `WSDM`), the format version
//! ([`HANDOVER_VERSION`], a big-endian `u16`) and postcard; `decode` refuses another
//! version with [`HandoverError::Version`].

use crate::identity::Access;
use crate::mailbox::Mailbox;
use crate::poll::Session;
use crate::subscriptions::Subscriptions;
use crate::ws::{Ending, Member};
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
/// another it cannot read ([`HandoverError::Version`]). 2: [`HubState`] carries the
/// long-polling sessions.
pub const HANDOVER_VERSION: u16 = 2;

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
    /// A long-polling session's queue is longer than this hub's ([`crate::HubConfig::queue`]):
    /// the session is left out, and its client opens a new one with `since`.
    #[error("a session's {len} queued events do not fit in a queue of {max}")]
    QueueTooLong {
        /// Events queued.
        len: usize,
        /// This hub's queue.
        max: usize,
    },
    /// A member's messages since the hand-over began are no longer all in a room's history
    /// (more than even a held history keeps, [`Hub::hold_history`]; or the room is gone): it
    /// is closed, and resumes with `since`.
    #[error("room {room} no longer has every message after {seen}")]
    Gap {
        /// The room.
        room: String,
        /// The last id the member had.
        seen: u64,
    },
}

/// The rooms of a hub of one node (ids and history) and its long-polling sessions. Serde
/// makes it bytes; the format is [`HANDOVER_VERSION`].
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct HubState {
    rooms: Vec<RoomState>,
    sessions: Vec<SessionState>,
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

/// A long-polling session: a member whose mailbox the client reads by cursor.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SessionState {
    id: String,
    /// The name it asked for.
    name: String,
    seats: Vec<Seat>,
    /// The sequence number of `queue[0]`: the client's cursor means the same thing on the
    /// new hub (it acknowledges up to it, and reads what follows).
    first_seq: u64,
    /// Encoded events not yet acknowledged, oldest first.
    queue: Vec<String>,
    identity: IdentityState,
    /// It subscribed or unsubscribed (with a backplane, it would stay on its node; kept so
    /// that the session is the same value on the new hub).
    pinned: bool,
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
        MemberState {
            name: self.asked().to_string(),
            seats: self.seats(),
            identity: IdentityState::new(access.identity()),
        }
    }

    /// Its rooms, in order, each with the last id its mailbox had when the room froze.
    fn seats(&self) -> Vec<Seat> {
        self.memberships()
            .iter()
            .map(|m| Seat {
                room: m.room().to_string(),
                name: m.name().to_string(),
                seen: m.room.freeze(),
            })
            .collect()
    }
}

impl SessionState {
    /// Session `id` as the new process takes it on (its rooms are frozen, so nothing more
    /// enters its mailbox).
    pub(crate) fn new(
        id: &str,
        subs: &Subscriptions,
        mailbox: &Mailbox,
        access: &Access,
        pinned: bool,
    ) -> Self {
        let seats = subs.seats();
        // After the seats: every room is frozen, the queue is final (a read may still
        // acknowledge part of it, which the client's cursor does again on the new hub).
        let (first_seq, queue) = mailbox.snapshot();
        Self {
            id: id.to_string(),
            name: subs.asked().to_string(),
            seats,
            first_seq,
            queue: queue.iter().map(|e| e.as_str().to_string()).collect(),
            identity: IdentityState::new(access.identity()),
            pinned,
        }
    }
}

impl Hub {
    /// Begins a hand-over: no one joins any more, and every WebSocket member stops once
    /// its queued events are in its socket's buffer, to be given to the sink of
    /// [`Hub::hand_members_to`] (or closed with 1001 without one). Long-polling sessions
    /// stay, to be exported with their queues: a `GET` waiting answers at once with no
    /// event and its cursor unchanged. Then call [`Hub::export_state`].
    pub fn freeze(&self) -> Result<(), HandoverError> {
        use std::sync::atomic::Ordering::SeqCst;
        if self.inner.nodes.is_up().is_some() {
            return Err(HandoverError::Backplane);
        }
        // Before the rooms wake them: a read waiting now answers with nothing (a `200`),
        // one arriving from now on with nothing to read is asked to come back (a `503`).
        let sessions = self.answer_waiting_reads();
        self.inner.frozen.store(true, SeqCst);
        self.inner.shutting_down.store(true, SeqCst);
        let rooms: Vec<_> = self.rooms().values().cloned().collect();
        for room in rooms {
            room.freeze();
        }
        // A session following no room is woken by nobody else.
        for session in sessions {
            session.wake();
        }
        Ok(())
    }

    /// After [`Hub::freeze`]: completes once every WebSocket member has stopped and its
    /// socket is in the sink of [`Hub::hand_members_to`] (or closed), so that
    /// [`Hub::export_state`] sees every room as final.
    pub async fn members_stopped(&self) {
        use std::sync::atomic::Ordering::SeqCst;
        loop {
            let notified = self.inner.stopped.notified();
            if self.inner.running.load(SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    }

    /// A hand-over failed after [`Hub::freeze`] (the new process died or refused): the hub
    /// serves again, and the members given up come back through [`Hub::resume_member`] on
    /// this hub. Long-polling sessions are dropped (their clients get `404` and open new
    /// ones with `since`).
    ///
    /// After [`Hub::export_state`], the new process may have served members and given ids
    /// (from each room's last one on, or from 1 in a room it made) before it died, and
    /// their clients resume here with those ids as `since`. So that no id is given twice
    /// in a room, each room's ids move on by 2^32 (rooms made here later start after
    /// 2^32 times the failed hand-overs): a resume from an id of the dead process gets no
    /// history and `gap: true` (what only that process had is lost), then the next
    /// message.
    pub fn thaw(&self) {
        use std::sync::atomic::Ordering::SeqCst;
        if self.inner.exported.swap(false, SeqCst) {
            self.inner
                .id_floor
                .fetch_add(crate::room::THAW_ID_MARGIN, SeqCst);
        }
        let floor = self.inner.id_floor.load(SeqCst);
        let rooms: Vec<_> = self.rooms().values().cloned().collect();
        for room in rooms {
            room.thaw(floor);
        }
        self.drop_sessions();
        self.inner.frozen.store(false, SeqCst);
        self.inner.shutting_down.store(false, SeqCst);
    }

    /// Counts a WebSocket member's task until the guard drops (after its socket is handed
    /// on).
    pub(crate) fn member_running(&self) -> Running {
        self.inner
            .running
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Running(self.clone())
    }

    /// [`Hub::freeze`] ran.
    pub(crate) fn is_frozen(&self) -> bool {
        self.inner.frozen.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The rooms and the long-polling sessions (each with its queue), for the new process,
    /// once the members have stopped: nothing is published here afterwards (the push API
    /// answers 503). An SSE stream's session is left out: it ends with its stream.
    pub fn export_state(&self) -> Result<HubState, HandoverError> {
        if self.inner.nodes.is_up().is_some() {
            return Err(HandoverError::Backplane);
        }
        self.inner
            .exported
            .store(true, std::sync::atomic::Ordering::SeqCst);
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
        Ok(HubState {
            rooms,
            sessions: self.export_sessions(),
        })
    }

    /// Takes on the rooms and the long-polling sessions of the process handing over,
    /// before serving anyone: each room gets its last id and history (cut to this hub's
    /// `history` setting), so ids go on from there. A room that already has messages here,
    /// or whose history is out of order, is left as it is (counted in
    /// [`Imported::skipped`]). A session that cannot be seated again (its queue larger than
    /// this hub's, a message it needs gone from history) is left out: its client gets `404`
    /// and opens a new session with `since`.
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
        for session in state.sessions {
            let id = session.id.clone();
            if let Err(e) = self.resume_session(session) {
                tracing::debug!("handed-over session {id} left out: {e}");
            }
        }
        Ok(done)
    }

    /// Seats a handed-over session in its rooms again, its queue first.
    fn resume_session(&self, state: SessionState) -> Result<(), HandoverError> {
        let max = self.inner.config.queue;
        if state.queue.len() > max {
            self.left_out(&state.seats, true);
            let len = state.queue.len();
            return Err(HandoverError::QueueTooLong { len, max });
        }
        let cursor = state.first_seq.saturating_sub(1);
        let mailbox = Arc::new(Mailbox::starting_after(max, cursor));
        for event in &state.queue {
            mailbox.push(Utf8Bytes::from(event.as_str()));
        }
        let rooms = self.seat_all(&state.seats, &mailbox)?;
        let subs = Subscriptions::resumed(self.clone(), mailbox.clone(), &state.name, rooms);
        // The request's own hook checks a `refresh` (`poll_send`).
        let access = Access::new(state.identity.identity(), None);
        let session = Session::resumed(subs, mailbox, &state.name, access, state.pinned);
        self.insert_session(state.id, session);
        Ok(())
    }

    /// Keeps every message in the rooms' history while the hold (or a clone) lives, up to
    /// 100,000 a room; then history is cut back to its length. A process taking over holds
    /// it from before [`Hub::import_state`] until every member handed to it is seated
    /// ([`Hub::resumed_member`] has returned): a member seated late, while the members moved
    /// before it publish, then still finds every message since the freeze, and takes them
    /// beyond its queue's length, instead of being closed with 1001 to resume.
    pub fn hold_history(&self) -> HistoryHold {
        use std::sync::atomic::Ordering::SeqCst;
        let rooms = self.rooms();
        if self.inner.history_holds.fetch_add(1, SeqCst) == 0 {
            for room in rooms.values() {
                room.hold_history(true);
            }
        }
        drop(rooms);
        HistoryHold(self.clone())
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
        socket: WebSocket<S>,
        state: MemberState,
        config: &ServerConfig,
    ) -> wsduplex::Result<()>
    where
        S: AsyncRead + AsyncWrite + Unpin + 'static,
    {
        match self.resumed_member(socket, state, config).await? {
            Some(member) => member.run().await,
            None => Ok(()),
        }
    }

    /// [`Hub::resume_member`] up to the running: the member seated again, for the caller
    /// to run as it likes (and park: [`Member::run_or_idle`]); `None` once it has been
    /// closed with 1001 instead.
    pub async fn resumed_member<S>(
        &self,
        mut socket: WebSocket<S>,
        state: MemberState,
        config: &ServerConfig,
    ) -> wsduplex::Result<Option<Member<S>>>
    where
        S: AsyncRead + AsyncWrite + Unpin + 'static,
    {
        let running = self.member_running();
        let subs = match self.seat(&state) {
            Ok(subs) => subs,
            Err(e) => {
                tracing::debug!("a handed-over member: {e}");
                let _ = socket.close(CloseCode::GOING_AWAY, "please resume").await;
                while let Some(item) = socket.recv().await {
                    item?;
                }
                return Ok(None);
            }
        };
        let access = Access::new(state.identity.identity(), config.auth.clone());
        let close_timeout = config.socket.close_timeout;
        let member = Member::new(socket, subs, self.limits(), close_timeout, access, running);
        Ok(Some(member))
    }

    /// Seats a handed-over member in each of its rooms.
    fn seat(&self, state: &MemberState) -> Result<Subscriptions, HandoverError> {
        let mailbox = Arc::new(Mailbox::new(self.inner.config.queue));
        let rooms = self.seat_all(&state.seats, &mailbox)?;
        Ok(Subscriptions::resumed(
            self.clone(),
            mailbox,
            &state.name,
            rooms,
        ))
    }

    /// Seats a connection's mailbox in each of its rooms, in order, unannounced.
    fn seat_all(
        &self,
        seats: &[Seat],
        mailbox: &Arc<Mailbox>,
    ) -> Result<Vec<Membership>, HandoverError> {
        let mut rooms = Vec::with_capacity(seats.len());
        for (i, seat) in seats.iter().enumerate() {
            let seated = self.room_here(&seat.room).and_then(|room| {
                let joined = room.seat(seat.name.as_str().into(), seat.seen, mailbox.clone())?;
                Some(Membership {
                    room,
                    key: joined.key,
                    name: joined.name,
                    mailbox: joined.mailbox,
                    nodes: self.inner.nodes.clone(),
                })
            });
            match seated {
                Some(member) => rooms.push(member),
                None => {
                    // The rooms it was seated in see it leave as it leaves them.
                    drop(rooms);
                    self.left_out(&seats[..i], false);
                    self.left_out(&seats[i..], true);
                    return Err(HandoverError::Gap {
                        room: seat.room.clone(),
                        seen: seat.seen,
                    });
                }
            }
        }
        Ok(rooms)
    }

    /// A member or session of the old process that is not seated again here (its client
    /// resumes with `since`): everyone in the rooms it was in sees it leave, whenever they
    /// are seated, so that no roster keeps it. `announce`: to the members there now too.
    fn left_out(&self, seats: &[Seat], announce: bool) {
        for seat in seats {
            if let Some(room) = self.room_here(&seat.room) {
                room.left_out(&seat.name, announce);
            }
        }
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

/// While it lives, the hub's rooms keep every message in history, not only the last
/// `history` of them (up to 100,000 a room): see [`Hub::hold_history`]. Clones hold too.
#[must_use = "history is held only while the hold lives"]
pub struct HistoryHold(Hub);

impl std::fmt::Debug for HistoryHold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HistoryHold").finish_non_exhaustive()
    }
}

impl Clone for HistoryHold {
    fn clone(&self) -> Self {
        self.0.hold_history()
    }
}

impl Drop for HistoryHold {
    fn drop(&mut self) {
        use std::sync::atomic::Ordering::SeqCst;
        let rooms = self.0.rooms();
        if self.0.inner.history_holds.fetch_sub(1, SeqCst) == 1 {
            for room in rooms.values() {
                room.hold_history(false);
            }
        }
    }
}

/// A WebSocket member's task, counted (see [`Hub::members_stopped`]).
pub(crate) struct Running(Hub);

impl Drop for Running {
    fn drop(&mut self) {
        let inner = &self.0.inner;
        if inner
            .running
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst)
            == 1
        {
            inner.stopped.notify_waiters();
        }
    }
}

/// The sink's type, erased: one per hub, whatever transport the server's members use.
pub(crate) type Sink = Box<dyn Any + Send + Sync>;
