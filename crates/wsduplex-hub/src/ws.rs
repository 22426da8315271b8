//! A WebSocket member: client messages go to their rooms (or subscribe and unsubscribe);
//! the connection's mailbox, fed by every room it follows, drains into the socket in
//! batches, written together when the socket next waits for input. A member over plain TCP
//! that waits with nothing to send is written to by the rooms themselves (`direct.rs`).

use crate::direct::Direct;
use crate::event::{parse_inbound, BadMessage, Limits};
use crate::identity::{self, Access, CLOSE_TOKEN_EXPIRED};
use crate::mailbox::{Ended, Mailbox};
use crate::subscriptions::Subscriptions;
use crate::CLOSE_TOO_SLOW;
use bytes::{Buf as _, Bytes};
use futures_core::Stream;
use futures_sink::Sink;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt as _};
use wsduplex::proto::State;
use wsduplex::{CloseCode, Message, Utf8Bytes, WebSocket};

/// Events taken from the mailbox per batch.
const BATCH: usize = 32;
/// Above this many unsent bytes, the mailbox is left alone: events wait there, and a member
/// that stays behind overflows its mailbox instead of growing the socket's buffer.
const HIGH_WATER: usize = 256 * 1024;

enum Step {
    Inbound(Option<wsduplex::Result<Message>>),
    Outbound,
    Ended(Ended),
    /// The credentials expired, and no `refresh` came.
    Expired,
    /// Waiting with nothing in flight, and asked to stop there.
    Idle,
}

/// A WebSocket member, upgraded and seated ([`crate::Hub::accept`]): [`Member::run`] serves
/// it until it leaves. All it holds while it runs is here and in `run`'s own state, so a task
/// that runs only this stays small; a member that waits can leave its task altogether
/// ([`Member::run_or_idle`], [`Member::park`]).
pub struct Member<S> {
    ws: WebSocket<S>,
    /// The mailbox still holds a second descriptor of the socket, lent before the member
    /// last stopped idle (the rooms may be writing to it): `run` takes it back first.
    lent: bool,
    core: Core,
}

/// What a member is besides its socket, parked or not.
struct Core {
    subs: Subscriptions,
    limits: Limits,
    close_timeout: Duration,
    access: Access,
    _running: crate::handover::Running,
}

impl<S> std::fmt::Debug for Member<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Member").finish_non_exhaustive()
    }
}

/// How [`Member::run_or_idle`] came back.
// Returned once, straight into the caller's match: boxing the member would cost an
// allocation each time it stops idle.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Run<S> {
    /// The member is gone (what [`Member::run`] returns).
    Over(wsduplex::Result<()>),
    /// It waited with nothing in flight, and was asked to stop there: park it
    /// ([`Member::park`]), or run it again.
    Idle(Member<S>),
}

impl<S: AsyncRead + AsyncWrite + Unpin + 'static> Member<S> {
    pub(crate) fn new(
        ws: WebSocket<S>,
        subs: Subscriptions,
        limits: Limits,
        close_timeout: Duration,
        access: Access,
        running: crate::handover::Running,
    ) -> Self {
        let core = Core {
            subs,
            limits,
            close_timeout,
            access,
            _running: running,
        };
        Self {
            ws,
            lent: false,
            core,
        }
    }

    /// Serves the member until either side ends it, or the hub is handed to a new process
    /// (then the member goes there, or is closed with 1001 to resume).
    // Not an `async fn`: its state would hold the member twice (the argument, and the
    // running future's own), about 600 bytes more a member.
    pub fn run(self) -> impl Future<Output = wsduplex::Result<()>> {
        let run = self.run_or_idle(|_| false);
        async move {
            match run.await {
                Run::Over(result) => result,
                // Nothing asked it to stop.
                Run::Idle(_) => Ok(()),
            }
        }
    }

    /// [`Member::run`], but each time the member waits with nothing in flight (nothing
    /// queued either way, no frame half-written, the socket's rooms writing to it directly)
    /// it calls `stop` with the task's waker; `true` ends the run there, with the member
    /// given back as it was ([`Run::Idle`]). `stop` may keep the waker, to wake the task
    /// when it wants to be asked again.
    // Not an `async fn` either (the argument would be held twice, as in `run`).
    #[allow(clippy::manual_async_fn)]
    pub fn run_or_idle<F>(mut self, stop: F) -> impl Future<Output = Run<S>>
    where
        F: FnMut(&Waker) -> bool,
    {
        async move {
            match run(&mut self, stop).await {
                Ok(Ending::Idle) => Run::Idle(self),
                // Boxed: its stages (a hand-over's, a close) would otherwise be room in
                // every member's state, for what happens once.
                Ok(ending) => Run::Over(Box::pin(self.end(ending)).await),
                Err(e) => Run::Over(Err(e)),
            }
        }
    }

    async fn end(self, ending: Ending) -> wsduplex::Result<()> {
        let Self { ws, core, .. } = self;
        let Core { subs, _running, .. } = core;
        let hub = subs.hub().clone();
        // Out of its rooms before the socket goes anywhere.
        drop(subs);
        hub.member_ended(ws, ending).await
    }

    /// The transport and the member without it, when [`Member::run_or_idle`] stopped it
    /// idle and its socket can be parked ([`WebSocket::park`]): nothing in flight, and the
    /// rooms write its messages to the socket themselves (plain TCP). Otherwise the member,
    /// to run again.
    // The member itself comes back, as it was: boxing it would allocate per refusal.
    #[allow(clippy::result_large_err)]
    pub fn park(self) -> Result<(S, ParkedMember), Self> {
        if !self.lent {
            return Err(self);
        }
        let Self { ws, lent, core } = self;
        match ws.park() {
            Ok((io, ws)) => {
                let expires = core.access.deadline().map(tokio::time::Instant::into_std);
                let deadline = match (ws.deadline(), expires) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                Ok((io, ParkedMember { ws, deadline, core }))
            }
            Err(ws) => Err(Self { ws, lent, core }),
        }
    }
}

/// A member parked without its transport or a task ([`Member::park`]): its socket's state,
/// its rooms and identity. Its rooms go on writing messages to its socket; it needs a task
/// again when its transport becomes readable, when [`ParkedMember::deadline`] passes, or
/// when the waker given to [`ParkedMember::wake_with`] is woken (an event the rooms could not
/// write, the member cut, the hub stopping or handed over).
pub struct ParkedMember {
    ws: wsduplex::Parked,
    deadline: Option<Instant>,
    core: Core,
}

impl std::fmt::Debug for ParkedMember {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParkedMember")
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

impl ParkedMember {
    /// When the member must be resumed at the latest: a keepalive ping, a timeout, its
    /// credentials' expiry (`None`: nothing but its client and its rooms).
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Has `waker` woken when the member needs its task (see [`ParkedMember`]). `false` if
    /// it already does (something came between its last wait and now): resume it at once.
    pub fn wake_with(&self, waker: Waker) -> bool {
        self.core.subs.mailbox().park(waker)
    }

    /// The member on its transport again, to run (it goes on as if it had kept waiting).
    pub fn resume<S>(self, io: S) -> Member<S>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        Member {
            ws: WebSocket::unpark(io, self.ws),
            lent: true,
            core: self.core,
        }
    }
}

/// How a member's run ended.
pub(crate) enum Ending {
    /// The connection is over (closed, failed, or cut).
    Done,
    /// The hub is being handed to a new process: the member is stopped with its queue
    /// written into the socket's buffer (not yet sent), and this is what the new process
    /// needs to go on with it.
    HandedOver(crate::handover::MemberState),
    /// Stopped idle, as asked ([`Member::run_or_idle`]): the rooms still write to its socket.
    Idle,
}

/// Runs a member until either side ends: the client closes or fails, the member is cut
/// (the transport is dropped with no close frame), too slow (close 4008), its token expires
/// (close 4001), or the hub stops (close 1001); or until the hub is handed over, or `stop`
/// stops it idle.
async fn run<S, P>(member: &mut Member<S>, mut stop: P) -> wsduplex::Result<Ending>
where
    S: AsyncRead + AsyncWrite + Unpin + 'static,
    P: FnMut(&Waker) -> bool,
{
    let Member {
        ws,
        lent: was_lent,
        core:
            Core {
                subs,
                limits,
                close_timeout,
                access,
                ..
            },
    } = member;
    let (limits, close_timeout) = (*limits, *close_timeout);
    let mut batch: Vec<Utf8Bytes> = Vec::new();
    let mailbox = subs.mailbox().clone();
    // Stopped idle before: the mailbox has the socket still, and the rooms may be writing.
    let resumed = std::mem::take(was_lent);
    let mut lent = match resumed {
        true => Lent::resumed(&mailbox),
        false => Lent::new(&mailbox, Direct::lend(ws.get_ref())),
    };
    // What a room's direct write left unwritten: written before anything else.
    let mut rest: Option<Bytes> = None;
    // The rooms may be writing to the socket: take it back before looking at anything.
    let mut idle = resumed;
    let mut expiry = access
        .deadline()
        .map(|at| Box::pin(tokio::time::sleep_until(at)));
    loop {
        let step = poll_fn(|cx| {
            // Idle only ever starts with nothing left to write (`rest` is empty then).
            if std::mem::take(&mut idle) {
                rest = mailbox.wake_up();
            }
            let mut expired = |cx: &mut std::task::Context<'_>| {
                expiry
                    .as_mut()
                    .is_some_and(|sleep| sleep.as_mut().poll(cx).is_ready())
            };
            if let Some(bytes) = rest.as_mut() {
                match poll_write_all(ws.get_mut(), cx, bytes) {
                    Poll::Ready(Ok(())) => rest = None,
                    Poll::Ready(Err(e)) => return Poll::Ready(Step::Inbound(Some(Err(e.into())))),
                    // Nothing else goes out before it; an end still ends.
                    Poll::Pending if expired(cx) => return Poll::Ready(Step::Expired),
                    Poll::Pending => {
                        return mailbox.poll_ended(cx).map(Step::Ended);
                    }
                }
            }
            if expired(cx) {
                return Poll::Ready(Step::Expired);
            }
            // The socket first: it also writes what the last batch queued.
            if let Poll::Ready(item) = Pin::new(&mut *ws).poll_next(cx) {
                return Poll::Ready(Step::Inbound(item));
            }
            if ws.buffered_amount() < HIGH_WATER {
                let quiet =
                    lent.is_some() && ws.buffered_amount() == 0 && *ws.state() == State::Open;
                match mailbox.poll_take(cx, &mut batch, BATCH, quiet) {
                    Poll::Ready(Ok(())) => return Poll::Ready(Step::Outbound),
                    Poll::Ready(Err(why)) => return Poll::Ready(Step::Ended(why)),
                    Poll::Pending => {
                        idle = quiet;
                        // Waiting: no batch to hold room for (512 bytes a member).
                        if batch.capacity() > 0 {
                            batch = Vec::new();
                        }
                        // Idle, the rooms writing to the socket: all of it is at rest.
                        if quiet && stop(cx.waker()) {
                            return Poll::Ready(Step::Idle);
                        }
                    }
                }
            } else if let Poll::Ready(why) = mailbox.poll_ended(cx) {
                return Poll::Ready(Step::Ended(why));
            }
            Poll::Pending
        })
        .await;
        match step {
            Step::Idle => {
                // The mailbox keeps the socket, marked idle: the rooms go on writing to it.
                lent.keep();
                *was_lent = true;
                return Ok(Ending::Idle);
            }
            Step::Inbound(Some(Ok(Message::Text(text)))) => {
                if let Some(token) = identity::refresh_token(text.as_bytes()) {
                    match access.refresh(&token).await {
                        Ok(()) => {
                            expiry = access
                                .deadline()
                                .map(|at| Box::pin(tokio::time::sleep_until(at)));
                            queue(ws, access.refreshed_event())?;
                            subs.keep_readable(access);
                        }
                        Err(e) => queue(ws, e.to_event())?,
                    }
                    continue;
                }
                match parse_inbound(text.as_bytes(), limits) {
                    Ok(request) => {
                        if let Err(refused) = subs.handle(request, access).await {
                            queue(ws, refused.event)?;
                        }
                    }
                    Err(bad) => queue(ws, bad.to_event())?,
                }
            }
            Step::Inbound(Some(Ok(Message::Binary(_)))) => {
                queue(ws, BadMessage::Binary.to_event())?;
            }
            Step::Inbound(Some(Ok(_))) => {}
            Step::Inbound(Some(Err(e))) => return Err(e),
            Step::Inbound(None) => return Ok(Ending::Done),
            Step::Outbound => {
                for event in batch.drain(..) {
                    queue(ws, event)?;
                }
            }
            Step::Ended(Ended::Cut) => return Ok(Ending::Done),
            Step::Ended(Ended::HandedOver) => {
                // The new process goes on from a frame boundary, or not at all.
                if !lent.finish(ws, rest.take(), close_timeout).await {
                    return Ok(Ending::Done);
                }
                for event in batch.drain(..).chain(mailbox.take_all()) {
                    queue(ws, event)?;
                }
                return Ok(Ending::HandedOver(subs.hand_over(access)));
            }
            step @ (Step::Ended(_) | Step::Expired) => {
                // Leave the rooms now: the closing handshake may take a while.
                subs.leave_all();
                // A close frame cannot follow part of a frame.
                if !lent.finish(ws, rest.take(), close_timeout).await {
                    return Ok(Ending::Done);
                }
                let (code, reason) = match step {
                    Step::Expired => (CloseCode::from(CLOSE_TOKEN_EXPIRED), "token expired"),
                    Step::Ended(Ended::Overflow) => (CloseCode::from(CLOSE_TOO_SLOW), "too slow"),
                    _ => (CloseCode::GOING_AWAY, "server shutting down"),
                };
                // A member too slow to read may not take the close frame either.
                let _ = tokio::time::timeout(close_timeout, ws.close(code, reason)).await;
                while let Some(item) = ws.recv().await {
                    item?;
                }
                return Ok(Ending::Done);
            }
        }
    }
}

/// The member's socket, lent to its mailbox for as long as the member runs here.
struct Lent<'a> {
    mailbox: &'a Mailbox,
    lent: bool,
}

impl<'a> Lent<'a> {
    fn new(mailbox: &'a Mailbox, direct: Option<Direct>) -> Self {
        let lent = direct.is_some();
        if lent {
            mailbox.lend(direct);
        }
        Self { mailbox, lent }
    }

    /// The mailbox has had the socket since the member last stopped idle.
    fn resumed(mailbox: &'a Mailbox) -> Self {
        Self {
            mailbox,
            lent: true,
        }
    }

    /// The member stops idle: the mailbox keeps the socket (the rooms write to it).
    fn keep(&mut self) {
        self.lent = false;
    }

    fn is_some(&self) -> bool {
        self.lent
    }

    /// Takes the socket back, then writes what the rooms' direct writes left unwritten
    /// (`rest`, the task's, or the mailbox's) within `timeout`. `false` if it could not: the
    /// stream ends inside a frame, and the member must be cut.
    async fn finish<S>(
        &mut self,
        ws: &mut WebSocket<S>,
        rest: Option<Bytes>,
        timeout: Duration,
    ) -> bool
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        if !std::mem::take(&mut self.lent) {
            return true;
        }
        let lent_rest = self.mailbox.reclaim();
        let Some(rest) = rest.or(lent_rest) else {
            return true;
        };
        let write = ws.get_mut().write_all(&rest);
        matches!(tokio::time::timeout(timeout, write).await, Ok(Ok(())))
    }
}

impl Drop for Lent<'_> {
    fn drop(&mut self) {
        if self.lent {
            self.mailbox.reclaim();
        }
    }
}

/// Writes `bytes` to the transport, advancing it; ready once all is written.
fn poll_write_all<S: AsyncWrite + Unpin>(
    io: &mut S,
    cx: &mut std::task::Context<'_>,
    bytes: &mut Bytes,
) -> Poll<std::io::Result<()>> {
    while !bytes.is_empty() {
        match Pin::new(&mut *io).poll_write(cx, bytes) {
            Poll::Ready(Ok(0)) => return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into())),
            Poll::Ready(Ok(n)) => bytes.advance(n),
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => return Poll::Pending,
        }
    }
    Poll::Ready(Ok(()))
}

/// Queues an event without flushing (the next poll of the socket writes it).
fn queue<S>(ws: &mut WebSocket<S>, event: Utf8Bytes) -> wsduplex::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    Pin::new(ws).start_send(Message::Text(event))
}
