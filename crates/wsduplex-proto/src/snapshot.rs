//! A live connection as a value, and back (feature `snapshot`): to hand a connection to
//! another process, which resumes it on the same transport.
//!
//! [`Connection::snapshot`] writes down everything the next byte depends on:
//!
//! - where the closing handshake stands, the close codes sent and received, a failure;
//! - the bytes read but not yet decoded, the frame half received (its header, and how much of
//!   its payload is already unmasked and checked), the message half received (its fragments,
//!   the UTF-8 validator's position), the event decoded but not yet taken;
//! - the bytes queued but not yet written (frames of a message half sent among them: the core
//!   frames a whole message at once, so what remains of it is bytes);
//! - with permessage-deflate, the agreement and each direction's context: the last
//!   `2^max_window_bits` bytes of uncompressed data (kept only for a context with takeover,
//!   see below), and the compressed bytes of a message half received;
//! - the deadlines (keepalive ping, its pong, idle, close), as durations from `now`: an
//!   `Instant` means nothing in another process.
//!
//! [`Connection::restore`] rebuilds the connection with the new process's [`Config`] (limits,
//! timeouts, compression level, randomness), but the role and the permessage-deflate
//! agreement come from the state: they were negotiated with the peer. The restored
//! compressor and decompressor are primed with the saved windows (zlib's
//! `deflateSetDictionary` and `inflateSetDictionary`), so a message the peer compresses with
//! back references into what it sent before the snapshot inflates here, and the other way
//! round.
//!
//! zlib does not hand its window out, so with this feature a context with takeover keeps a
//! copy of its last window (a ring buffer, updated once per message: a copy of at most the
//! message, capped at the window). Without the feature, or without takeover, nothing is kept.
//!
//! The state is plain serde data; the `wsduplex` crate writes it with a version header
//! (`SocketState::encode`). Its layout changes only with that version.

use crate::connection::Config;
use crate::Connection;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Instant;

/// A connection's whole state, from [`Connection::snapshot`], for
/// [`Connection::restore`]. Its fields are private: serialize it, move it, restore it.
#[derive(Clone, Serialize, Deserialize)]
pub struct ConnectionState {
    pub(crate) core: crate::connection::snapshot::CoreState,
}

impl std::fmt::Debug for ConnectionState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.core.fmt(f)
    }
}

/// Why a state cannot be restored.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotError {
    /// The state holds permessage-deflate contexts, and this build has no feature `deflate`.
    #[error("the connection uses permessage-deflate, which this build cannot run (feature `deflate` off)")]
    DeflateUnavailable,
    /// The state contradicts itself (it was not written by [`Connection::snapshot`], or was
    /// altered): what is wrong.
    #[error("invalid connection state: {0}")]
    Invalid(&'static str),
    /// A compressed message half received does not inflate again with the saved context.
    #[error("the compressed message in progress does not inflate with the saved context")]
    Inflate,
}

#[cfg_attr(docsrs, doc(cfg(feature = "snapshot")))]
impl Connection {
    /// The connection's whole state at `now` (deadlines are saved as what remains of them).
    /// The connection itself is left as it was: drop it once the state is safely elsewhere,
    /// and write nothing more to the transport meanwhile.
    pub fn snapshot(&self, now: Instant) -> ConnectionState {
        ConnectionState {
            core: self.snapshot_core(now),
        }
    }

    /// A connection resumed from `state`, with `config`'s limits, timeouts, compression level
    /// and randomness; the role and the permessage-deflate agreement come from the state
    /// (`config.deflate` is ignored). Deadlines count from `now`.
    ///
    /// Next: as after any input, drain [`Connection::poll_event`] (an event may have been
    /// pending), write [`Connection::poll_transmit`] (bytes may be queued) and ask
    /// [`Connection::poll_timeout`].
    pub fn restore(
        state: ConnectionState,
        config: Config,
        now: Instant,
    ) -> Result<Connection, SnapshotError> {
        Connection::restore_core(state.core, Arc::new(config), now)
    }

    /// [`Connection::restore`] with settings shared with other connections
    /// ([`Connection::with_shared_config`]): the connection holds `config` itself if its
    /// `deflate` is the state's agreement (`None` for a connection without the extension),
    /// else a copy with the state's agreement.
    pub fn restore_shared(
        state: ConnectionState,
        config: Arc<Config>,
        now: Instant,
    ) -> Result<Connection, SnapshotError> {
        Connection::restore_core(state.core, config, now)
    }
}
