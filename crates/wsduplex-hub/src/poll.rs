//! Long-polling sessions: the same membership as a WebSocket member, read by cursor over
//! plain HTTP. A session lives in the hub (not in a connection) and expires when unused.
//!
//! With a backplane, a session also moves: each answer records in Redis which message id
//! its cursor stands for, and a node that gets a request for a session it does not have
//! takes the member over (see [`crate::backplane::Backplane::take_over`]) and goes on from
//! the client's cursor, with a welcome first. [`crate::backplane::Nodes`] holds that
//! branch: for a hub of one node its session calls do nothing.
//!
//! A hub handed to a new process (`handover.rs`) takes its sessions along, except those
//! an SSE stream reads (they end with their stream). From [`Hub::freeze`] on, this hub
//! has nothing more for them: a read waiting then answers with no event, later reads with
//! nothing to read are told to come back ([`PollError::HandingOver`], `503`), and so are
//! subscribing, unsubscribing, a `refresh`, and a message once the rooms are written down
//! (the session moves as it was at the export; the client sends the request again, to the
//! new process).

use crate::event::{self, parse_inbound, Inbound};
use crate::handover::SessionState;
use crate::identity::{self, Access};
use crate::mailbox::{Ended, Mailbox};
use crate::subscriptions::Subscriptions;
use crate::{BadMessage, Hub, JoinError, Membership};
use std::collections::BTreeMap;
use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Instant;
use wsduplex::auth::AuthHook;
use wsduplex::Utf8Bytes;

/// Events returned per `GET` at most.
const MAX_EVENTS: usize = 256;
/// How long the export of a session waits for a request changing its rooms.
const EXPORT_WAIT: std::time::Duration = std::time::Duration::from_millis(10);

pub(crate) struct Session {
    /// Its rooms; locked while a request subscribes (which may wait for the backplane).
    subs: tokio::sync::Mutex<Subscriptions>,
    /// The connection's mailbox, every room's events in one queue.
    mailbox: Arc<Mailbox>,
    /// The room it opened in, and its name there: what a backplane records to move it.
    room: Arc<str>,
    name: Arc<str>,
    /// It subscribed or unsubscribed: it stays on this node (another node answers `404`,
    /// and the client opens a session there and subscribes again with `since`).
    pinned: AtomicBool,
    /// Who it is: its rooms, and when its token expires.
    access: Mutex<Access>,
    last_seen: Mutex<Instant>,
    /// Bumped by every `GET`: an older `GET` still waiting answers at once when it sees a
    /// newer one (a browser retrying after a timeout, say).
    generation: AtomicU64,
    /// With a backplane: cursor → the last message id among the events up to it, for the
    /// cursors the client may still send.
    cursors: Mutex<Cursors>,
    /// An SSE stream reads it: it ends with the stream, and is not handed over (the
    /// browser reconnects with `Last-Event-ID`, which opens a new session).
    streamed: AtomicBool,
}

type Cursors = BTreeMap<u64, u64>;

impl Session {
    fn touch(&self) {
        *self.last_seen.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
    }

    fn last_seen(&self) -> Instant {
        *self.last_seen.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn new(hub: &Hub, member: Membership, name: &str, access: Access, cursors: Cursors) -> Self {
        Self {
            mailbox: member.mailbox.clone(),
            room: member.room.name.clone(),
            name: member.name.clone(),
            subs: tokio::sync::Mutex::new(Subscriptions::new(hub.clone(), member, name)),
            pinned: AtomicBool::new(false),
            access: Mutex::new(access),
            last_seen: Mutex::new(Instant::now()),
            generation: AtomicU64::new(0),
            cursors: Mutex::new(cursors),
            streamed: AtomicBool::new(false),
        }
    }

    /// A session handed over by another process (`handover.rs`), seated in its rooms.
    pub(crate) fn resumed(
        subs: Subscriptions,
        mailbox: Arc<Mailbox>,
        asked: &str,
        access: Access,
        pinned: bool,
    ) -> Self {
        // What a backplane would record it by (its first room); a hub on Redis never takes
        // sessions over this way.
        let (room, name) = match subs.memberships().first() {
            Some(m) => (m.room.name.clone(), m.name.clone()),
            None => (Arc::from(""), Arc::from(asked)),
        };
        Self {
            subs: tokio::sync::Mutex::new(subs),
            mailbox,
            room,
            name,
            pinned: AtomicBool::new(pinned),
            access: Mutex::new(access),
            last_seen: Mutex::new(Instant::now()),
            generation: AtomicU64::new(0),
            cursors: Mutex::new(BTreeMap::from([(0, 0)])),
            streamed: AtomicBool::new(false),
        }
    }

    /// Why delivery ended for good (a hand-over is not an end: the session moves).
    fn ended(&self) -> Option<Ended> {
        self.mailbox.ended().filter(|why| *why != Ended::HandedOver)
    }

    /// A read waiting for this session answers at once, with nothing.
    pub(crate) fn wake(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.mailbox.nudge();
    }

    /// The session as the new process takes it on; `None` if it does not move: an SSE
    /// stream reads it, its delivery ended, or a request kept its rooms locked for longer
    /// than [`EXPORT_WAIT`] (its client then gets `404` from the new process and opens a
    /// session with `since`).
    fn hand_over(&self, id: &str) -> Option<SessionState> {
        if self.streamed.load(Ordering::SeqCst) || self.ended().is_some() {
            return None;
        }
        // A hub of one node holds the lock across no real wait (joining and publishing are
        // synchronous there): a holder is running on another thread and lets go at once.
        let deadline = Instant::now() + EXPORT_WAIT;
        let subs = loop {
            match self.subs.try_lock() {
                Ok(subs) => break subs,
                Err(_) if Instant::now() < deadline => std::thread::yield_now(),
                Err(_) => return None,
            }
        };
        let pinned = self.pinned.load(Ordering::SeqCst);
        let access = self.access();
        Some(SessionState::new(id, &subs, &self.mailbox, &access, pinned))
    }

    fn access(&self) -> Access {
        self.access
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// A long-polling request that cannot be served.
#[derive(Debug)]
pub(crate) enum PollError {
    /// No such session, or it expired or ended (`404`).
    UnknownSession,
    /// The join was refused.
    Join(JoinError),
    /// Too many sessions (`503`).
    TooManySessions,
    /// The client message was refused (`400`, with an `error` event).
    Bad(BadMessage),
    /// The session's token expired (`401`): the session is closed.
    Expired,
    /// The hub is being handed to a new process (`503`): the session moves there, and the
    /// client asks again (with the same cursor, the same message).
    HandingOver,
    /// Answered with this status and `error` event (a forbidden room, a refused refresh).
    Event(u16, Utf8Bytes),
}

/// A session id as [`Hub::poll_open`] makes them: 32 lowercase hex digits.
fn is_session_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The events of a read: the cursor that acknowledges them, and the events.
pub(crate) type Batch = (u64, Vec<Utf8Bytes>);

impl Hub {
    fn sessions(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, Arc<Session>>> {
        self.inner
            .sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    fn session(&self, id: &str) -> Result<Arc<Session>, PollError> {
        self.sessions()
            .get(id)
            .cloned()
            .ok_or(PollError::UnknownSession)
    }

    /// Opens a session in `room` and returns its id and first batch (the welcome).
    pub(crate) async fn poll_open(
        &self,
        room: &str,
        name: &str,
        since: Option<u64>,
        access: Access,
    ) -> Result<(String, Batch), PollError> {
        self.open_session(room, name, since, access, false).await
    }

    /// [`Hub::poll_open`] for an SSE stream: the session ends with the stream, and does
    /// not move to another process.
    pub(crate) async fn sse_open(
        &self,
        room: &str,
        name: &str,
        since: Option<u64>,
        access: Access,
    ) -> Result<(String, Batch), PollError> {
        self.open_session(room, name, since, access, true).await
    }

    async fn open_session(
        &self,
        room: &str,
        name: &str,
        since: Option<u64>,
        access: Access,
        streamed: bool,
    ) -> Result<(String, Batch), PollError> {
        if self.sessions().len() >= self.inner.config.max_sessions {
            return Err(PollError::TooManySessions);
        }
        let member = self
            .join(room, name, since)
            .await
            .map_err(PollError::Join)?;
        let id = format!("{:032x}", rand::random::<u128>());
        let cursors = BTreeMap::from([(0, 0)]);
        let session = Session::new(self, member, name, access, cursors);
        session.streamed.store(streamed, Ordering::SeqCst);
        self.sessions().insert(id.clone(), Arc::new(session));
        let batch = self.poll_read(&id, 0, false).await?;
        Ok((id, batch))
    }

    /// A session of this node, or (with `adopt`) one taken over from another node.
    async fn session_here(
        &self,
        id: &str,
        cursor: u64,
        adopt: bool,
    ) -> Result<Arc<Session>, PollError> {
        match self.session(id) {
            Ok(session) => Ok(session),
            Err(unknown) if !adopt => Err(unknown),
            Err(unknown) => self.adopt(id, cursor).await?.ok_or(unknown),
        }
    }

    /// Takes over a session of another node (`None`: no such session anywhere).
    async fn adopt(&self, id: &str, cursor: u64) -> Result<Option<Arc<Session>>, PollError> {
        if !is_session_id(id) {
            return Ok(None);
        }
        let nodes = &self.inner.nodes;
        let Some(info) = nodes.find_session(id).await else {
            return Ok(None);
        };
        // What the client has: the messages up to the id its cursor stands for.
        let since = info
            .cursors
            .iter()
            .filter(|(c, _)| *c <= cursor)
            .max_by_key(|(c, _)| *c)
            .map(|(_, last)| *last);
        let room = self.room(&info.room).map_err(PollError::Join)?;
        let mailbox = Arc::new(Mailbox::starting_after(self.inner.config.queue, cursor));
        let asked = info.name.clone();
        let taken = nodes
            .take_over(room.clone(), id.to_string(), info, since, mailbox)
            .await
            .map_err(PollError::Join)?;
        let Some(joined) = taken else {
            return Ok(None);
        };
        let member = Membership {
            room,
            key: joined.key,
            name: joined.name,
            mailbox: joined.mailbox,
            nodes: nodes.clone(),
        };
        let cursors = BTreeMap::from([(cursor, since.unwrap_or(0))]);
        // Taken over only from a server without authentication (see `poll_read`): the
        // anonymous identity is the one it had.
        let session = Session::new(self, member, &asked, Access::default(), cursors);
        let session = Arc::new(session);
        self.sessions().insert(id.to_string(), session.clone());
        Ok(Some(session))
    }

    /// With a backplane: records what the cursor of an answer stands for (before the client
    /// can send it to another node), and that the session is alive.
    async fn remember(&self, id: &str, session: &Session, asked: u64, batch: &Batch) {
        if !self.inner.nodes.moves_sessions() || session.pinned.load(Ordering::SeqCst) {
            return;
        }
        let (cursor, events) = batch;
        let (last, stale) = {
            let mut cursors = session.cursors.lock().unwrap_or_else(|p| p.into_inner());
            let before = cursors.range(..=asked).next_back().map_or(0, |(_, id)| *id);
            let last = events
                .iter()
                .filter_map(event::known_id)
                .fold(before, u64::max);
            cursors.insert(*cursor, last);
            // The client has acknowledged `asked`: older cursors will not come back.
            let stale: Vec<u64> = cursors.range(..asked).map(|(c, _)| *c).collect();
            for c in &stale {
                cursors.remove(c);
            }
            (last, stale)
        };
        let (room, name) = (&*session.room, &*session.name);
        let cursor = (*cursor, last);
        let recorded = self
            .inner
            .nodes
            .record_session(id, room, name, cursor, stale);
        recorded.await;
    }

    /// Another node has this session now, or closed it: drop it here (a `GET` waiting for
    /// it answers at once, with nothing).
    pub(crate) fn session_gone(&self, id: &str) {
        let removed = self.sessions().remove(id);
        if let Some(session) = removed {
            session.generation.fetch_add(1, Ordering::SeqCst);
            session.mailbox.nudge();
        }
    }

    /// Every session of this node goes (a hand-over that failed: see `Hub::thaw`).
    pub(crate) fn drop_sessions(&self) {
        let ids: Vec<String> = self.sessions().keys().cloned().collect();
        for id in ids {
            self.session_gone(&id);
        }
    }

    pub(crate) fn session_ended(&self, id: &str) {
        self.sessions().remove(id);
        self.inner.nodes.forget_session(id);
    }

    /// Acknowledges events up to `cursor` and returns the ones after it, waiting up to the
    /// poll timeout for the first. `adopt`: a session of another node may be taken over
    /// (not when members have identities: those stay on the node that checked them, and
    /// the client opens a new session here with its token and `since`).
    pub(crate) async fn poll_read(
        &self,
        id: &str,
        cursor: u64,
        adopt: bool,
    ) -> Result<Batch, PollError> {
        let session = self.session_here(id, cursor, adopt).await?;
        if session.access().is_expired() {
            self.session_ended(id);
            return Err(PollError::Expired);
        }
        session.touch();
        let generation = session.generation.fetch_add(1, Ordering::SeqCst) + 1;
        let mailbox = session.mailbox.clone();
        // An SSE stream waits on (its connection is cut when the process hands over, and
        // the browser reconnects by itself); a `GET` is told to come back.
        let streamed = session.streamed.load(Ordering::SeqCst);
        let wait = poll_fn(|cx| {
            if session.generation.load(Ordering::SeqCst) != generation {
                return Poll::Ready(Ok(Some((cursor, Vec::new()))));
            }
            match mailbox.poll_read(cx, cursor, MAX_EVENTS) {
                // Nothing more arrives here: the events are for the new process to hand out.
                Poll::Pending if !streamed && self.is_frozen() => Poll::Ready(Ok(None)),
                read => read.map(|r| r.map(Some)),
            }
        });
        let read = tokio::time::timeout(self.inner.config.poll_timeout, wait).await;
        session.touch();
        match read {
            Err(_timeout) => {
                let batch = (cursor, Vec::new());
                self.remember(id, &session, cursor, &batch).await;
                Ok(batch)
            }
            Ok(Ok(Some(batch))) => {
                self.remember(id, &session, cursor, &batch).await;
                Ok(batch)
            }
            Ok(Ok(None)) => Err(PollError::HandingOver),
            Ok(Err(Ended::Overflow | Ended::Cut | Ended::Shutdown | Ended::HandedOver)) => {
                self.session_ended(id);
                Err(PollError::UnknownSession)
            }
        }
    }

    /// A client message from a session (of this node, or with `adopt` of another: then
    /// sent from here in its member's name). `hook`: the server's, to check a `refresh`
    /// (a session handed over from another process has none of its own).
    pub(crate) async fn poll_send(
        &self,
        id: &str,
        body: &[u8],
        adopt: bool,
        hook: Option<AuthHook>,
    ) -> Result<Option<Utf8Bytes>, PollError> {
        let session = match self.session(id) {
            Ok(session) => session,
            Err(unknown) if !adopt || !is_session_id(id) => return Err(unknown),
            // A session of another node: sent from here in its member's name.
            Err(unknown) => {
                let nodes = &self.inner.nodes;
                let info = nodes.find_session(id).await.ok_or(unknown)?;
                let payload = match parse_inbound(body, self.limits()) {
                    Ok(Inbound::Message {
                        room: None,
                        payload,
                    }) => payload,
                    Ok(Inbound::Message {
                        room: Some(r),
                        payload,
                    }) if r == info.room => payload,
                    // Subscribing pins a session to its node: the client opens one here.
                    Ok(_) => return Err(PollError::UnknownSession),
                    Err(bad) => return Err(PollError::Bad(bad)),
                };
                nodes
                    .publish(self, &info.room, &info.name, payload.body())
                    .await
                    .map_err(PollError::Join)?;
                return Ok(None);
            }
        };
        if session.ended().is_some() {
            self.session_ended(id);
            return Err(PollError::UnknownSession);
        }
        let mut access = session.access().or_hook(hook);
        if access.is_expired() {
            self.session_ended(id);
            return Err(PollError::Expired);
        }
        session.touch();
        if let Some(token) = identity::refresh_token(body) {
            if self.is_frozen() {
                // The identity is written down as it is: the new process refreshes it.
                return Err(PollError::HandingOver);
            }
            access
                .refresh(&token)
                .await
                .map_err(|e| PollError::Event(401, e.to_event()))?;
            let event = access.refreshed_event();
            session.subs.lock().await.keep_readable(&access);
            *session.access.lock().unwrap_or_else(|p| p.into_inner()) = access;
            return Ok(Some(event));
        }
        let request = parse_inbound(body, self.limits()).map_err(PollError::Bad)?;
        let message = matches!(request, Inbound::Message { .. });
        if !message && self.is_frozen() {
            // Its rooms are written down as they are: the new process subscribes.
            return Err(PollError::HandingOver);
        }
        if !message && !session.pinned.swap(true, Ordering::SeqCst) {
            // It follows rooms another node would not know of: it stays here.
            self.inner.nodes.forget_session(id);
        }
        let mut subs = session.subs.lock().await;
        let published = subs
            .handle(request, &access)
            .await
            .map_err(|r| PollError::Event(r.status, r.event))?;
        if published == Some(0) && self.is_frozen() {
            // Not published: the room was already written down for the new process.
            return Err(PollError::HandingOver);
        }
        Ok(None)
    }

    /// Ends a session (its member leaves the room), wherever it is.
    pub(crate) async fn poll_close(&self, id: &str) -> Result<(), PollError> {
        let removed = self.sessions().remove(id);
        let nodes = &self.inner.nodes;
        match removed {
            Some(session) => {
                // A read still waiting (a `GET`, an SSE stream) answers at once.
                session.generation.fetch_add(1, Ordering::SeqCst);
                session.mailbox.nudge();
                drop(session);
                nodes.forget_session(id);
                Ok(())
            }
            None if !is_session_id(id) => Err(PollError::UnknownSession),
            // Wherever it is.
            None => {
                let info = nodes.find_session(id).await;
                let info = info.ok_or(PollError::UnknownSession)?;
                nodes.close_session(id, &info.room).await;
                Ok(())
            }
        }
    }

    /// Drops sessions unused for the session TTL, and sessions whose delivery ended.
    pub(crate) fn expire_sessions(&self, now: Instant) {
        let ttl = self.inner.config.session_ttl;
        let expired: Vec<Arc<Session>> = {
            let mut sessions = self.sessions();
            let ids: Vec<String> = sessions
                .iter()
                .filter(|(_, s)| {
                    now.saturating_duration_since(s.last_seen()) >= ttl || s.ended().is_some()
                })
                .map(|(id, _)| id.clone())
                .collect();
            ids.iter()
                .filter_map(|id| {
                    self.inner.nodes.forget_session(id);
                    sessions.remove(id)
                })
                .collect()
        };
        // Members leave their rooms here, outside the sessions lock.
        drop(expired);
    }

    /// Open long-polling sessions.
    pub fn session_count(&self) -> usize {
        self.sessions().len()
    }

    /// A hand-over begins: every session's waiting read answers (once woken).
    pub(crate) fn answer_waiting_reads(&self) -> Vec<Arc<Session>> {
        let sessions: Vec<_> = self.sessions().values().cloned().collect();
        for session in &sessions {
            session.generation.fetch_add(1, Ordering::SeqCst);
        }
        sessions
    }

    /// The sessions that move, for [`Hub::export_state`].
    pub(crate) fn export_sessions(&self) -> Vec<SessionState> {
        let sessions: Vec<_> = self
            .sessions()
            .iter()
            .map(|(id, s)| (id.clone(), s.clone()))
            .collect();
        sessions
            .iter()
            .filter_map(|(id, session)| session.hand_over(id))
            .collect()
    }

    /// A session handed over from another process, under its id.
    pub(crate) fn insert_session(&self, id: String, session: Session) {
        self.sessions().insert(id, Arc::new(session));
    }
}

#[cfg(test)]
mod tests {
    use super::PollError;
    use crate::{Hub, HubConfig};
    use std::future::Future;
    use std::task::Poll;
    use std::time::{Duration, Instant};

    #[tokio::test]
    async fn a_read_waiting_at_the_freeze_answers_with_nothing_and_the_session_stays() {
        let hub = Hub::new(HubConfig::default());
        let (id, (cursor, _)) = hub
            .poll_open("r", "lp", None, Default::default())
            .await
            .unwrap();
        let mut read = std::pin::pin!(hub.poll_read(&id, cursor, true));
        let once = std::future::poll_fn(|cx| Poll::Ready(read.as_mut().poll(cx))).await;
        assert!(once.is_pending(), "nothing to read: it waits");
        hub.freeze().unwrap();
        let (after, events) = read.await.unwrap();
        assert_eq!((after, events.len()), (cursor, 0));
        // Later reads with nothing to read are told to come back; the session stays.
        let again = hub.poll_read(&id, cursor, true).await;
        assert!(matches!(again, Err(PollError::HandingOver)), "{again:?}");
        // Its identity and rooms are written down as they are: changes wait for the new hub.
        for body in [
            &br#"{"type":"refresh","token":"t"}"#[..],
            br#"{"type":"subscribe","room":"news"}"#,
            br#"{"type":"unsubscribe","room":"r"}"#,
        ] {
            let sent = hub.poll_send(&id, body, true, None).await;
            assert!(matches!(sent, Err(PollError::HandingOver)), "{sent:?}");
        }
        hub.expire_sessions(Instant::now());
        assert_eq!(hub.session_count(), 1);
        assert_eq!(hub.export_sessions().len(), 1);
    }

    #[tokio::test]
    async fn a_session_whose_rooms_stay_locked_at_the_export_does_not_move() {
        let hub = Hub::new(HubConfig::default());
        let (id, _) = hub
            .poll_open("r", "lp", None, Default::default())
            .await
            .unwrap();
        let session = hub.session(&id).unwrap();
        let changing = session.subs.lock().await;
        hub.freeze().unwrap();
        assert!(hub.export_sessions().is_empty());
        drop(changing);
        assert_eq!(hub.export_sessions().len(), 1);
    }

    #[tokio::test]
    async fn a_streamed_session_does_not_move() {
        let hub = Hub::new(HubConfig::default());
        hub.sse_open("r", "ann", None, Default::default())
            .await
            .unwrap();
        hub.poll_open("r", "bob", None, Default::default())
            .await
            .unwrap();
        hub.freeze().unwrap();
        assert_eq!((hub.session_count(), hub.export_sessions().len()), (2, 1));
    }

    #[tokio::test]
    async fn unused_sessions_expire_and_leave_their_room() {
        let hub = Hub::new(HubConfig::default());
        let (id, (cursor, events)) = hub
            .poll_open("r", "lp", None, Default::default())
            .await
            .unwrap();
        assert_eq!((cursor, events.len()), (1, 1));
        assert_eq!(hub.members("r").await.unwrap().unwrap().0, ["lp"]);
        // Not yet.
        hub.expire_sessions(Instant::now() + Duration::from_secs(30));
        assert_eq!(hub.session_count(), 1);
        hub.expire_sessions(Instant::now() + hub.config().session_ttl);
        assert_eq!(hub.session_count(), 0);
        assert!(hub.members("r").await.unwrap().unwrap().0.is_empty());
        assert!(hub
            .poll_send(&id, br#"{"type":"message","text":"x"}"#, true, None)
            .await
            .is_err());
    }

    #[tokio::test]
    async fn a_full_queue_ends_the_session() {
        let hub = Hub::new(HubConfig {
            queue: 3,
            ..HubConfig::default()
        });
        let (id, _) = hub
            .poll_open("r", "lp", None, Default::default())
            .await
            .unwrap();
        // The welcome is still unacknowledged: two more fit, the third overflows.
        for i in 0..3 {
            hub.publish("r", "p", &format!("m{i}")).await.unwrap();
        }
        assert!(hub.poll_read(&id, 1, true).await.is_err());
        assert_eq!(hub.session_count(), 0);
    }
}
