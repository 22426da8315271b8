//! Deadlines: the closing handshake, keepalive pings and their answer, the idle timeout.
//!
//! The connection never reads a clock: the caller passes the time in, and asks for the next
//! deadline. Call order, for a driver with one timer:
//!
//! 1. Before waiting for the transport, [`Connection::poll_timeout`] with a way to read the
//!    clock (it is read only when a deadline starts): set the timer to what it returns
//!    (`None`: no timer).
//! 2. When the timer fires, [`Connection::handle_timeout`] with the time; then write
//!    [`Connection::poll_transmit`] (a keepalive ping or an idle close may be queued) and
//!    look at [`Connection::timed_out`]: once it is set, close the transport.
//! 3. After appending to [`Connection::receive_buffer`], [`Connection::receive_appended`]:
//!    any bytes prove the peer alive. After an I/O error, [`Connection::transport_error`]:
//!    the close deadline then bounds closing the transport.
//!
//! Deadlines that begin without a clock reading (the closing handshake, begun by
//! [`Connection::close`], by the peer's close or by an error; the idle timeout, restarted by
//! each text or binary message) start at the next [`Connection::poll_timeout`] or
//! [`Connection::handle_timeout`]. So the clock is read once per wait at most, never per
//! message, and a connection that closes without waiting starts no deadline at all.

use super::{Connection, State};
use crate::close::CloseCode;
use std::time::{Duration, Instant};

/// The payload of keepalive pings.
const KEEPALIVE_PING: &[u8] = b"wsduplex keepalive";

/// Deadlines that start at the next clock reading ([`Timers::start`]).
pub(super) const START_PING: u8 = 1;
pub(super) const START_IDLE: u8 = 2;

/// What ended the connection (`Timers::timed_out`: a byte, where a `Timeout` would take
/// 24).
const TIMED_OUT_KEEPALIVE: u8 = 1;
pub(super) const TIMED_OUT_CLOSE: u8 = 2;

/// Why a deadline ended the connection: see [`Connection::timed_out`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Timeout {
    /// Nothing arrived within the ping timeout (the duration) after a keepalive ping: the peer
    /// is gone, and no close frame can reach it. Close the transport.
    Keepalive(Duration),
    /// The closing handshake, or closing the transport after it, took longer than the close
    /// timeout. Close the transport without waiting any longer.
    Close,
}

/// The deadlines of a connection, boxed: present only with keepalive or an idle timeout
/// configured, or once the connection is closing.
#[derive(Default)]
pub(super) struct Timers {
    pub(super) next_ping: Option<Instant>,
    /// Set while a keepalive ping is unanswered: any bytes from the peer clear it.
    pub(super) pong: Option<Instant>,
    pub(super) idle: Option<Instant>,
    pub(super) close: Option<Instant>,
    /// `START_*` bits: deadlines that began without a clock reading.
    pub(super) start: u8,
    /// The caller gave up on the transport ([`Connection::transport_error`]).
    pub(super) transport_gone: bool,
    /// `TIMED_OUT_*`, 0 while no deadline has ended the connection.
    pub(super) timed_out: u8,
}

impl Timers {
    /// The deadlines a new connection starts with, if any are configured.
    pub(super) fn new(config: &super::Timeouts) -> Option<Box<Self>> {
        let mut start = 0;
        if config.ping_interval().is_some() {
            start |= START_PING;
        }
        if config.idle().is_some() {
            start |= START_IDLE;
        }
        (start != 0).then(|| {
            Box::new(Self {
                start,
                ..Self::default()
            })
        })
    }

    /// Whether only closing the transport is left: keepalive and idle no longer apply.
    fn ended(&self, state: &State) -> bool {
        self.transport_gone
            || self.timed_out != 0
            || matches!(state, State::Closed | State::Failed(_))
    }

    /// Whether the close deadline should run but has not started.
    fn close_unstarted(&self, state: &State) -> bool {
        let closing = *state != State::Open || self.transport_gone || self.timed_out != 0;
        closing && self.close.is_none() && self.timed_out != TIMED_OUT_CLOSE
    }

    fn needs_start(&self, state: &State) -> bool {
        self.start != 0 || self.close_unstarted(state)
    }

    /// Starts the deadlines that began without a clock reading, from `now`.
    fn start(&mut self, now: Instant, state: &State, config: &super::Timeouts) {
        if self.start & START_PING != 0 {
            self.next_ping = config.ping_interval().map(|i| now + i);
        }
        if self.start & START_IDLE != 0 {
            self.idle = config.idle().map(|i| now + i);
        }
        self.start = 0;
        if self.close_unstarted(state) {
            self.close = Some(now + config.close());
        }
    }

    pub(super) fn earliest(&self, state: &State) -> Option<Instant> {
        if self.ended(state) {
            return self.close;
        }
        [self.next_ping, self.pong, self.idle, self.close]
            .into_iter()
            .flatten()
            .min()
    }
}

impl Connection {
    /// Output: when [`Connection::handle_timeout`] must next be called (`None`: no deadline).
    /// `now` reads the clock; it is called only when a deadline starts (see the module's
    /// call order), so a driver can pass its clock without reading it before every wait.
    ///
    /// Next: wait for the transport or that deadline, whichever comes first.
    #[inline]
    pub fn poll_timeout(&mut self, now: impl FnOnce() -> Instant) -> Option<Instant> {
        // An open connection without keepalive or idle timeout, as most are: nothing to do.
        if self.timers.is_none() && matches!(self.state, State::Open) {
            return None;
        }
        self.poll_timeout_slow(now)
    }

    fn poll_timeout_slow(&mut self, now: impl FnOnce() -> Instant) -> Option<Instant> {
        let t = self.timers.get_or_insert_with(Box::default);
        if t.needs_start(&self.state) {
            t.start(now(), &self.state, &self.config.timeouts);
        }
        t.earliest(&self.state)
    }

    /// Input: the time is `now` (at or past the deadline [`Connection::poll_timeout`] gave,
    /// or any time: deadlines not yet due do nothing).
    ///
    /// What is due happens: a keepalive ping is queued (and the pong deadline set), an idle
    /// connection starts the closing handshake with 1001 `idle timeout`, an unanswered ping
    /// or an unfinished close sets [`Connection::timed_out`]. Next: write
    /// [`Connection::poll_transmit`], check [`Connection::timed_out`], and ask
    /// [`Connection::poll_timeout`] for the next deadline.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.timers.is_none() && matches!(self.state, State::Open) {
            return;
        }
        let t = self.timers.get_or_insert_with(Box::default);
        if t.needs_start(&self.state) {
            t.start(now, &self.state, &self.config.timeouts);
        }
        if !t.ended(&self.state) {
            if t.pong.is_some_and(|d| d <= now) {
                // The peer is gone: no close frame can reach it, so none is sent.
                t.timed_out = TIMED_OUT_KEEPALIVE;
                return;
            }
            let idle = t.idle.is_some_and(|d| d <= now);
            if idle {
                t.idle = None;
            }
            let ping = t.next_ping.is_some_and(|d| d <= now);
            if ping {
                t.next_ping = self.config.timeouts.ping_interval().map(|i| now + i);
                if t.pong.is_none() {
                    t.pong = Some(now + self.config.timeouts.ping_timeout());
                }
            }
            if idle {
                let _ = self.close(CloseCode::GOING_AWAY, "idle timeout");
            }
            if ping {
                // Only while open: nothing follows our close frame.
                let _ = self.send_ping(KEEPALIVE_PING);
            }
        }
        let t = self.timers.get_or_insert_with(Box::default);
        if t.needs_start(&self.state) {
            // The idle close above began the closing handshake.
            t.start(now, &self.state, &self.config.timeouts);
        }
        if t.close.is_some_and(|d| d <= now) {
            t.close = None;
            t.timed_out = TIMED_OUT_CLOSE;
        }
    }

    /// Output: the deadline that ended the connection, if one did. Once set, the caller
    /// closes the transport (the connection's [`Connection::state`] is left as it was).
    pub fn timed_out(&self) -> Option<Timeout> {
        match self.timers.as_ref()?.timed_out {
            TIMED_OUT_KEEPALIVE => Some(Timeout::Keepalive(self.config.timeouts.ping_timeout())),
            TIMED_OUT_CLOSE => Some(Timeout::Close),
            _ => None,
        }
    }

    /// Input: bytes from the peer were appended to [`Connection::receive_buffer`] (they are
    /// decoded by [`Connection::receive_with`] or [`Connection::poll_event`]). Any bytes
    /// prove the peer alive: the keepalive's pong deadline is cleared.
    /// [`Connection::receive`] and [`Connection::receive_buffered`] do this themselves.
    #[inline]
    pub fn receive_appended(&mut self) {
        if let Some(t) = self.timers.as_mut() {
            t.pong = None;
        }
    }

    /// Input: reading or writing the transport failed, or the caller gave up on it for
    /// another reason. Nothing more can be exchanged: keepalive and idle stop, and the close
    /// deadline starts, bounding the transport's close. The state is left as it was (the
    /// error is the caller's to report). Next: close the transport, giving up once
    /// [`Connection::timed_out`] says so.
    pub fn transport_error(&mut self) {
        self.timers.get_or_insert_with(Box::default).transport_gone = true;
    }

    /// A text or binary message was handed out: the idle timeout starts again.
    #[inline]
    pub(super) fn data_arrived(&mut self) {
        if let Some(t) = self.timers.as_mut() {
            if t.idle.is_some() {
                t.start |= START_IDLE;
            }
        }
    }
}
