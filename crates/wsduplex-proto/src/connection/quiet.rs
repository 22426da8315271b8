//! A connection with nothing in flight, reduced to the few pointers it needs to go on.
//!
//! A server holding many idle connections need not keep each one's whole state (the
//! buffers, the frame and message in progress, the decoded event: 300 bytes or so) while
//! it waits: when nothing is half read, queued or closing, what is left is the role, the
//! settings, the deflate contexts (if agreed) and the deadlines. [`Connection::into_quiet`]
//! keeps exactly those, in a [`Quiet`] of four words; [`Connection::from_quiet`] gives back
//! a connection that goes on as if it had never been reduced.

use super::{timers::Timers, Connection, DeflateState, State};
use std::time::Instant;

/// A connection with nothing in flight ([`Connection::into_quiet`]).
pub struct Quiet {
    role: super::Role,
    config: std::sync::Arc<super::Config>,
    deflate: Option<Box<DeflateState>>,
    timers: Option<Box<Timers>>,
}

impl std::fmt::Debug for Quiet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Quiet")
            .field("role", &self.role)
            .field("deadline", &self.deadline())
            .finish()
    }
}

impl Quiet {
    /// When [`Connection::handle_timeout`] is next due (`None`: no deadline): the reduced
    /// connection must be given back by then.
    pub fn deadline(&self) -> Option<Instant> {
        self.timers.as_ref()?.earliest(&State::Open)
    }
}

impl Connection {
    /// Whether nothing is in flight: open, no bytes read and not yet decoded, no frame or
    /// message half received, no event untaken, nothing queued to send, no close frame
    /// either way, and no deadline that has ended the connection.
    pub fn is_quiet(&self) -> bool {
        self.state == State::Open
            && self.rx.is_empty()
            && self.frame.is_none()
            && self.message.is_none()
            && self.event.is_none()
            && self.tx.is_empty()
            && self.close_sent == 0
            && self.close_received == 0
            && self.deflate.as_ref().is_none_or(|d| d.is_quiet())
            && self
                .timers
                .as_ref()
                .is_none_or(|t| !t.transport_gone && t.timed_out == 0)
    }

    /// The connection reduced to what it needs while nothing is in flight
    /// ([`Connection::is_quiet`]), or itself when something is. The buffers are dropped
    /// (a driver takes them out first to keep them: [`Connection::take_receive_buffer`],
    /// [`Connection::take_transmit_buffer`]). `now` reads the clock if a deadline has not
    /// started yet, as [`Connection::poll_timeout`] does.
    // The connection itself comes back, as it was: boxing it would allocate per refusal.
    #[allow(clippy::result_large_err)]
    pub fn into_quiet(mut self, now: impl FnOnce() -> Instant) -> Result<Quiet, Self> {
        if !self.is_quiet() {
            return Err(self);
        }
        let _ = self.poll_timeout(now);
        Ok(Quiet {
            role: self.role,
            config: self.config,
            deflate: self.deflate,
            timers: self.timers,
        })
    }

    /// The connection a [`Quiet`] stands for, going on where it stopped.
    pub fn from_quiet(quiet: Quiet) -> Self {
        Self::open(quiet.role, quiet.config, quiet.deflate, quiet.timers)
    }
}

impl DeflateState {
    /// No compressed message is half received.
    fn is_quiet(&self) -> bool {
        #[cfg(feature = "snapshot")]
        if !self.partial.is_empty() {
            return false;
        }
        self.inflated.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connection::{Config, Role, Timeouts};
    use crate::message::Message;
    use bytes::Buf;
    use std::time::Duration;

    fn take_tx(c: &mut Connection) -> Vec<u8> {
        match c.poll_transmit() {
            Some(t) => t.copy_to_bytes(t.remaining()).to_vec(),
            None => Vec::new(),
        }
    }

    fn client_frame(opcode: u8, payload: &[u8], fin: bool) -> Vec<u8> {
        let mask = [1, 2, 3, 4];
        let mut f = vec![
            if fin { 0x80 } else { 0 } | opcode,
            0x80 | payload.len() as u8,
        ];
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        f
    }

    #[test]
    #[cfg(target_pointer_width = "64")]
    fn a_quiet_connection_is_four_words() {
        assert!(
            std::mem::size_of::<Quiet>() <= 32,
            "{}",
            std::mem::size_of::<Quiet>()
        );
    }

    #[test]
    fn a_connection_with_anything_in_flight_stays_whole() {
        let mut conn = Connection::new(Role::Server, Config::default());
        assert!(conn.is_quiet());
        // Half a frame read.
        conn.receive(&client_frame(0x1, b"hello", true)[..4])
            .unwrap();
        let mut conn = conn.into_quiet(Instant::now).expect_err("half a frame");
        conn.receive(&client_frame(0x1, b"hello", true)[4..])
            .unwrap();
        // A message decoded and not taken.
        let mut conn = conn.into_quiet(Instant::now).expect_err("an event untaken");
        assert!(matches!(conn.poll_event(), Some(Message::Text(t)) if t.as_str() == "hello"));
        assert!(conn.is_quiet());
        // The first fragment of a message.
        conn.receive(&client_frame(0x1, b"hel", false)).unwrap();
        assert!(conn.poll_event().is_none());
        let mut conn = conn
            .into_quiet(Instant::now)
            .expect_err("a message half received");
        conn.receive(&client_frame(0x0, b"lo", true)).unwrap();
        assert!(matches!(conn.poll_event(), Some(Message::Text(t)) if t.as_str() == "hello"));
        // Something queued to send.
        conn.send_text("hi").unwrap();
        let mut conn = conn.into_quiet(Instant::now).expect_err("a frame queued");
        assert!(!take_tx(&mut conn).is_empty());
        assert!(conn.is_quiet());
        // Closing.
        conn.close(crate::CloseCode::NORMAL, "").unwrap();
        assert!(!take_tx(&mut conn).is_empty());
        assert!(conn.into_quiet(Instant::now).is_err(), "closing");
    }

    #[test]
    fn a_quiet_connection_goes_on_with_its_deadlines() {
        let start = Instant::now();
        let mut timeouts = Timeouts::default();
        timeouts.set_ping_interval(Some(Duration::from_secs(30)));
        let mut conn = Connection::new(Role::Server, Config::default().timeouts(timeouts));
        let quiet = conn.into_quiet(|| start).expect("quiet");
        assert_eq!(quiet.deadline(), Some(start + Duration::from_secs(30)));
        conn = Connection::from_quiet(quiet);
        assert_eq!(
            conn.poll_timeout(|| unreachable!()),
            Some(start + Duration::from_secs(30))
        );
        conn.handle_timeout(start + Duration::from_secs(30));
        // The keepalive ping is queued: an unmasked ping frame from the server.
        assert_eq!(take_tx(&mut conn)[0], 0x89);
        // And the connection still reads.
        conn.receive(&client_frame(0x2, b"\x01\x02", true)).unwrap();
        assert!(matches!(conn.poll_event(), Some(Message::Binary(b)) if b[..] == [1, 2]));
    }
}
