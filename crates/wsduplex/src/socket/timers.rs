//! Keepalive, idle and close timers.

use super::{Config, Inner};
use crate::error::Error;
use proto::CloseCode;
use std::future::Future;
use std::pin::Pin;
use std::task::Context;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{Instant, Sleep};

/// Keepalive and idle deadlines, served by one sleep reset to the earliest of them.
pub(super) struct Timers {
    sleep: Pin<Box<Sleep>>,
    ping_interval: Option<Duration>,
    ping_timeout: Duration,
    idle_timeout: Option<Duration>,
    next_ping: Option<Instant>,
    /// Set while a ping is unanswered: any bytes from the peer clear it.
    pub(super) pong_deadline: Option<Instant>,
    idle_deadline: Option<Instant>,
}

impl Timers {
    pub(super) fn new(config: &Config) -> Option<Box<Self>> {
        if config.ping_interval.is_none() && config.idle_timeout.is_none() {
            return None;
        }
        let now = Instant::now();
        let mut t = Self {
            sleep: Box::pin(tokio::time::sleep_until(now)),
            ping_interval: config.ping_interval,
            ping_timeout: config.ping_timeout,
            idle_timeout: config.idle_timeout,
            next_ping: config.ping_interval.map(|i| now + i),
            pong_deadline: None,
            idle_deadline: config.idle_timeout.map(|i| now + i),
        };
        if let Some(d) = t.earliest() {
            t.sleep.as_mut().reset(d);
        }
        Some(Box::new(t))
    }

    fn earliest(&self) -> Option<Instant> {
        [self.next_ping, self.pong_deadline, self.idle_deadline]
            .into_iter()
            .flatten()
            .min()
    }
}

/// What a timer asks of the socket.
pub(super) enum Due {
    Nothing,
    Ping,
    PeerGone(Duration),
    Idle,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Inner<S> {
    /// Polls the keepalive and idle timers and acts on what is due. `true`: something
    /// changed (a ping or a close was queued, or the peer is gone).
    pub(super) fn poll_timers(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(t) = self.timers.as_mut() else {
            return false;
        };
        let Some(deadline) = t.earliest() else {
            return false;
        };
        if t.sleep.deadline() != deadline {
            t.sleep.as_mut().reset(deadline);
        }
        if t.sleep.as_mut().poll(cx).is_pending() {
            return false;
        }
        let now = Instant::now();
        let due = if t.pong_deadline.is_some_and(|d| d <= now) {
            Due::PeerGone(t.ping_timeout)
        } else if t.idle_deadline.is_some_and(|d| d <= now) {
            t.idle_deadline = None;
            Due::Idle
        } else if t.next_ping.is_some_and(|d| d <= now) {
            t.next_ping = t.ping_interval.map(|i| now + i);
            if t.pong_deadline.is_none() {
                t.pong_deadline = Some(now + t.ping_timeout);
            }
            Due::Ping
        } else {
            Due::Nothing
        };
        match due {
            Due::Nothing => false,
            Due::Ping => {
                // Only while open: nothing follows our close frame.
                let _ = self.conn.send_ping(b"wsduplex keepalive");
                true
            }
            Due::Idle => {
                let _ = self.conn.close(CloseCode::GOING_AWAY, "idle timeout");
                true
            }
            Due::PeerGone(after) => {
                self.timers = None;
                self.finish_with(Error::KeepaliveTimeout(after));
                true
            }
        }
    }

    /// Arms the close timer on first use and polls it. Called only on paths that are about
    /// to wait: a close that completes at once never touches the timer wheel (which costs a
    /// wake-up of the runtime's driver).
    pub(super) fn close_timer_expired(&mut self, cx: &mut Context<'_>) -> bool {
        let timeout = self.close_timeout;
        self.cold()
            .close_timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)))
            .as_mut()
            .poll(cx)
            .is_ready()
    }

    /// A text or binary message arrived: the idle timer starts again.
    pub(super) fn data_arrived(&mut self) {
        if let Some(t) = self.timers.as_mut() {
            if let Some(idle) = t.idle_timeout {
                t.idle_deadline = Some(Instant::now() + idle);
            }
        }
    }
}
