//! The socket's one timer, set to the core's next deadline.
//!
//! The deadlines themselves (keepalive pings and their answer, the idle timeout, the close
//! timeout) live in the core ([`proto::Connection::poll_timeout`]): this file only sleeps
//! until the next one and hands the core the time when it passes.

use super::{Inner, Phase};
use crate::error::Error;
use proto::{State, Timeout};
use std::future::Future;
use std::task::Context;
use tokio::time::Instant;

/// The time as the core takes it: tokio's clock (which tests pause and advance).
pub(super) fn now() -> std::time::Instant {
    Instant::now().into_std()
}

impl<S> Inner<S> {
    /// Starts the deadlines that count from the socket's creation (keepalive, idle).
    pub(super) fn start_timers(&mut self) {
        let _ = self.conn.poll_timeout(now);
    }

    /// Resets the timer to the core's next deadline and polls it; when it has passed, hands
    /// the core the time. `true`: it fired (a ping or a close may be queued, or a deadline
    /// ended the connection: see [`proto::Connection::timed_out`]).
    #[inline]
    fn poll_timer(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(deadline) = self.conn.poll_timeout(now) else {
            return false;
        };
        let deadline = Instant::from_std(deadline);
        // Created on first use: a socket that never waits on a deadline (most close at
        // once) never touches the runtime's timer wheel.
        let sleep = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if sleep.deadline() != deadline {
            sleep.as_mut().reset(deadline);
        }
        if sleep.as_mut().poll(cx).is_pending() {
            return false;
        }
        self.conn.handle_timeout(now());
        true
    }

    /// While messages flow (or our close waits for the peer's): polls the timer and ends the
    /// stream if a deadline ended the connection. `true`: it fired, so look again at what
    /// changed before waiting.
    #[inline]
    pub(super) fn poll_deadlines(&mut self, cx: &mut Context<'_>) -> bool {
        // Once the protocol is finished, only `close_timed_out` looks at the timer: a close
        // that completes without waiting never starts the close timeout.
        if self.phase != Phase::Open
            || !matches!(self.conn.state(), State::Open | State::Closing)
            || !self.poll_timer(cx)
        {
            return false;
        }
        match self.conn.timed_out() {
            Some(Timeout::Keepalive(after)) => self.finish_with(Error::KeepaliveTimeout(after)),
            Some(Timeout::Close) => self.finish_with(Error::CloseTimeout),
            _ => {}
        }
        true
    }

    /// While closing the transport: whether the close timeout has passed (each step that
    /// would wait gives up then).
    pub(super) fn close_timed_out(&mut self, cx: &mut Context<'_>) -> bool {
        if self.conn.timed_out() != Some(Timeout::Close) {
            self.poll_timer(cx);
        }
        self.conn.timed_out() == Some(Timeout::Close)
    }
}
