//! An idle socket as a small value, without its transport's registration or a task: for a
//! server holding many connections that mostly wait.
//!
//! [`WebSocket::park`] gives back the transport and a [`Parked`] socket when nothing is in
//! flight (the core's [`proto::Quiet`], plus the socket's own settings: six words); the
//! caller keeps the transport wherever it likes (a `TcpStream` turned back into a std one
//! leaves tokio's reactor and frees its registration) and watches it for readability and
//! [`Parked::deadline`]. [`WebSocket::unpark`] resumes the socket on the same transport,
//! as if it had kept waiting.

use super::timers::now;
use super::{Cold, Inner, Phase, SlowReader, WebSocket};
use proto::{Connection, Quiet};
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncWrite};

/// A socket with nothing in flight, without its transport ([`WebSocket::park`]).
pub struct Parked {
    conn: Quiet,
    max_write_buffer: usize,
    slow_reader: SlowReader,
    /// Only the subprotocol, if any: a finishing socket is never parked.
    cold: Option<Box<Cold>>,
}

impl std::fmt::Debug for Parked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Parked").field("conn", &self.conn).finish()
    }
}

impl Parked {
    /// When the socket must be unparked at the latest, for a keepalive ping or a timeout
    /// (`None`: it waits for the peer alone).
    pub fn deadline(&self) -> Option<Instant> {
        self.conn.deadline()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WebSocket<S> {
    /// The transport and the socket without it, when nothing is in flight: open, nothing
    /// read and not yet handed out, nothing queued to write (flush first), no closing
    /// handshake begun, no deadline passed. Otherwise the socket itself, unchanged but for
    /// its buffers going back to the thread's pool (the next read takes them again).
    ///
    /// Before resuming with [`WebSocket::unpark`], the caller waits until the transport is
    /// readable or [`Parked::deadline`] passes; unparking earlier is harmless.
    // The socket itself comes back, as it was: boxing it would allocate per refusal.
    #[allow(clippy::result_large_err)]
    pub fn park(self) -> Result<(S, Parked), Self> {
        let mut inner = self.inner;
        let quiet = inner.phase == Phase::Open
            && !inner.server_closed
            && !inner.write_shutdown
            && inner
                .cold
                .as_ref()
                .is_none_or(|c| c.final_close.is_none() && c.final_error.is_none());
        if !quiet || !inner.conn.is_quiet() {
            return Err(Self { inner });
        }
        inner.release_buffers();
        match inner.conn.into_quiet(now) {
            Ok(conn) => Ok((
                inner.io,
                Parked {
                    conn,
                    max_write_buffer: inner.max_write_buffer,
                    slow_reader: inner.slow_reader,
                    cold: inner.cold,
                },
            )),
            Err(conn) => {
                inner.conn = conn;
                Err(Self { inner })
            }
        }
    }

    /// Resumes a parked socket on its transport.
    pub fn unpark(io: S, parked: Parked) -> Self {
        Self {
            inner: Inner {
                io,
                conn: Connection::from_quiet(parked.conn),
                max_write_buffer: parked.max_write_buffer,
                slow_reader: parked.slow_reader,
                phase: Phase::Open,
                server_closed: false,
                write_shutdown: false,
                // The next read takes a buffer from the pool.
                rx_released: true,
                timer: None,
                cold: parked.cold,
            },
        }
    }
}
