//! The connection's fields as serde data, and back (feature `snapshot`; the public face is
//! `crate::snapshot`).

use super::{Config, Connection, Role};
use crate::error::ProtocolError;
use crate::snapshot::SnapshotError;
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

/// Every field of [`Connection`] that is state, not configuration.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct CoreState {
    client: bool,
    state: StateCode,
    /// Bytes read, not yet decoded (the front of the frame in progress already unmasked).
    rx: Vec<u8>,
    frame: Option<FrameState>,
    message: Option<MessageState>,
    event: Option<EventState>,
    /// Bytes queued, not yet written.
    tx: Vec<u8>,
    deflate: Option<DeflateSnapshot>,
    close_sent: u16,
    close_received: u16,
    timers: Option<TimersState>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
enum StateCode {
    Open,
    Closing,
    Closed,
    Failed(ProtocolError),
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct FrameState {
    fin: bool,
    rsv1: bool,
    opcode: u8,
    mask: Option<[u8; 4]>,
    payload_len: u64,
    done: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct MessageState {
    text: bool,
    buf: Vec<u8>,
    len: u64,
    fragments: u32,
    /// The UTF-8 validator's position: the bytes of a code point cut so far.
    utf8_partial: Vec<u8>,
    compressed: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
enum EventState {
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<(u16, String)>),
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct DeflateSnapshot {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: u8,
    client_max_window_bits: u8,
    /// The last window of what this end compressed (empty without takeover).
    own_window: Vec<u8>,
    /// The last window of what the peer's messages inflated to, up to the message in
    /// progress (empty without takeover).
    peer_window: Vec<u8>,
    /// The compressed message in progress as received so far (inflated again on restore).
    partial: Vec<u8>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct TimersState {
    next_ping: Option<Duration>,
    pong: Option<Duration>,
    idle: Option<Duration>,
    close: Option<Duration>,
    start: u8,
    transport_gone: bool,
    timed_out: u8,
}

impl Connection {
    pub(crate) fn snapshot_core(&self, _now: Instant) -> CoreState {
        todo!("API skeleton")
    }

    pub(crate) fn restore_core(
        _state: CoreState,
        _config: Config,
        _now: Instant,
    ) -> Result<Connection, SnapshotError> {
        let _ = Role::Client;
        todo!("API skeleton")
    }
}
