//! The connection's fields as serde data, and back (feature `snapshot`; the public face is
//! `crate::snapshot`).

use super::timers::{Timers, START_IDLE, START_PING, TIMED_OUT_CLOSE};
use super::{directions, Config, Connection, Role, RxFrame, RxMessage, State};
use crate::close::{CloseCode, CloseFrame};
use crate::deflate::{DeflateParams, Deflater, Inflater};
use crate::error::ProtocolError;
use crate::frame::{FrameHeader, OpCode};
use crate::message::Message;
use crate::snapshot::SnapshotError;
use crate::transmit::Transmit;
use crate::utf8::{Utf8Bytes, Utf8Validator};
use bytes::{Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Every field of [`Connection`] that is state, not configuration.
#[derive(Clone, Serialize, Deserialize)]
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

/// Lengths, not bytes (payloads are never printed).
impl std::fmt::Debug for CoreState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionState")
            .field("client", &self.client)
            .field("state", &self.state)
            .field("buffered_in", &self.rx.len())
            .field("frame_in_progress", &self.frame.is_some())
            .field("message_in_progress", &self.message.is_some())
            .field("event_pending", &self.event.is_some())
            .field("buffered_out", &self.tx.len())
            .field("deflate", &self.deflate.is_some())
            .field("timers", &self.timers)
            .finish()
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
enum StateCode {
    Open,
    Closing,
    Closed,
    Failed(ProtocolError),
}

#[derive(Clone, Serialize, Deserialize)]
struct FrameState {
    fin: bool,
    rsv1: bool,
    opcode: u8,
    mask: Option<[u8; 4]>,
    payload_len: u64,
    done: u64,
}

#[derive(Clone, Serialize, Deserialize)]
struct MessageState {
    text: bool,
    buf: Vec<u8>,
    len: u64,
    fragments: u32,
    /// The UTF-8 validator's position: the bytes of a code point cut so far.
    utf8_partial: Vec<u8>,
    compressed: bool,
}

#[derive(Clone, Serialize, Deserialize)]
enum EventState {
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<(u16, String)>),
}

#[derive(Clone, Serialize, Deserialize)]
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
    pub(crate) fn snapshot_core(&self, now: Instant) -> CoreState {
        let remaining = |t: Option<Instant>| t.map(|t| t.saturating_duration_since(now));
        CoreState {
            client: self.role == Role::Client,
            state: match &self.state {
                State::Open => StateCode::Open,
                State::Closing => StateCode::Closing,
                State::Closed => StateCode::Closed,
                State::Failed(e) => StateCode::Failed(e.clone()),
            },
            rx: self.rx.to_vec(),
            frame: self.frame.as_ref().map(|f| FrameState {
                fin: f.header.fin,
                rsv1: f.header.rsv1,
                opcode: f.header.opcode.as_u8(),
                mask: f.header.mask,
                payload_len: f.header.payload_len,
                done: f.done as u64,
            }),
            message: self.message.as_ref().map(|m| MessageState {
                text: m.text,
                buf: m.buf.to_vec(),
                len: m.len,
                fragments: m.fragments,
                utf8_partial: m.utf8.pending().to_vec(),
                compressed: m.compressed,
            }),
            event: self.event.as_ref().map(|e| match e {
                Message::Text(t) => EventState::Text(t.as_str().to_owned()),
                Message::Binary(b) => EventState::Binary(b.to_vec()),
                Message::Ping(b) => EventState::Ping(b.to_vec()),
                Message::Pong(b) => EventState::Pong(b.to_vec()),
                Message::Close(f) => EventState::Close(
                    f.as_ref()
                        .map(|f| (f.code.as_u16(), f.reason.as_str().to_owned())),
                ),
            }),
            tx: self.tx.to_vec(),
            deflate: self.deflate.as_ref().map(|d| {
                let p = self.config.deflate.unwrap_or_default();
                DeflateSnapshot {
                    server_no_context_takeover: p.server_no_context_takeover,
                    client_no_context_takeover: p.client_no_context_takeover,
                    server_max_window_bits: p.server_max_window_bits,
                    client_max_window_bits: p.client_max_window_bits,
                    own_window: d.deflater.window(),
                    peer_window: d.inflater.window(),
                    partial: d.partial.clone(),
                }
            }),
            close_sent: self.close_sent,
            close_received: self.close_received,
            timers: self.timers.as_ref().map(|t| TimersState {
                next_ping: remaining(t.next_ping),
                pong: remaining(t.pong),
                idle: remaining(t.idle),
                close: remaining(t.close),
                start: t.start,
                transport_gone: t.transport_gone,
                timed_out: t.timed_out,
            }),
        }
    }

    pub(crate) fn restore_core(
        s: CoreState,
        config: Arc<Config>,
        now: Instant,
    ) -> Result<Connection, SnapshotError> {
        use SnapshotError::Invalid;
        let role = if s.client { Role::Client } else { Role::Server };
        let params = s.deflate.as_ref().map(|d| DeflateParams {
            server_no_context_takeover: d.server_no_context_takeover,
            client_no_context_takeover: d.client_no_context_takeover,
            server_max_window_bits: d.server_max_window_bits,
            client_max_window_bits: d.client_max_window_bits,
        });
        if params.is_some() && !cfg!(feature = "deflate") {
            return Err(SnapshotError::DeflateUnavailable);
        }
        let config = match config.deflate == params {
            true => config,
            false => Arc::new(Config {
                deflate: params,
                ..Config::clone(&config)
            }),
        };
        let timeouts = config.timeouts;
        let mut conn = Connection::with_shared_config(role, config);

        if let (Some(p), Some(saved), Some(d)) = (params, s.deflate, conn.deflate.as_mut()) {
            let bits = 8..=15;
            if !bits.contains(&p.server_max_window_bits)
                || !bits.contains(&p.client_max_window_bits)
            {
                return Err(Invalid("window bits out of 8..=15"));
            }
            let (own_bits, own_reset, peer_bits, peer_reset) = directions(role, &p);
            if saved.own_window.len() > 1 << 15 || saved.peer_window.len() > 1 << 15 {
                return Err(Invalid("deflate window larger than 32 KiB"));
            }
            let level = conn.config.compression_level;
            d.deflater = Deflater::restore(level, own_bits, own_reset, &saved.own_window)
                .map_err(|()| Invalid("deflate window refused"))?;
            d.inflater = Inflater::restore(peer_bits, peer_reset, &saved.peer_window)
                .map_err(|()| Invalid("inflate window refused"))?;
            d.partial = saved.partial;
        }

        conn.state = match s.state {
            StateCode::Open => State::Open,
            StateCode::Closing => State::Closing,
            StateCode::Closed => State::Closed,
            StateCode::Failed(e) => State::Failed(e),
        };
        conn.rx = BytesMut::from(&s.rx[..]);
        conn.frame = match s.frame {
            None => None,
            Some(f) => {
                let opcode =
                    OpCode::from_u8(f.opcode).map_err(|_| Invalid("reserved frame opcode"))?;
                let done = usize::try_from(f.done).map_err(|_| Invalid("frame offset"))?;
                // RFC 6455 §5.2: a length's most significant bit is 0.
                if f.payload_len >> 63 != 0 {
                    return Err(Invalid("frame length"));
                }
                if f.done > f.payload_len || done > conn.rx.len() {
                    return Err(Invalid("frame offset past its payload or the buffer"));
                }
                if !opcode.is_control() && s.message.is_none() {
                    return Err(Invalid("data frame without a message"));
                }
                let header = FrameHeader {
                    fin: f.fin,
                    rsv1: f.rsv1,
                    rsv2: false,
                    rsv3: false,
                    opcode,
                    mask: f.mask,
                    payload_len: f.payload_len,
                };
                Some(RxFrame { header, done })
            }
        };
        if let Some(m) = s.message {
            // Far beyond any limit, and the sum with a frame's length stays a u64.
            if m.len >> 62 != 0 {
                return Err(Invalid("message length"));
            }
            let mut utf8 = Utf8Validator::new();
            if utf8.feed(&m.utf8_partial).is_err() || utf8.pending() != m.utf8_partial {
                return Err(Invalid("utf-8 validator position"));
            }
            if m.compressed {
                let d = conn
                    .deflate
                    .as_mut()
                    .ok_or(Invalid("compressed message without permessage-deflate"))?;
                // Inflated again from the message's start, with the context as it was then:
                // the fragments received, then what the frame in progress brought.
                let mut input = std::mem::take(&mut d.partial);
                let kept = input.len();
                if let Some(f) = conn
                    .frame
                    .as_ref()
                    .filter(|f| !f.header.opcode.is_control())
                {
                    input.extend_from_slice(&conn.rx[..f.done]);
                }
                if !input.is_empty() {
                    let max = conn.config.max_message_size;
                    d.inflater
                        .inflate(&input, &mut d.inflated, max)
                        .map_err(|_| SnapshotError::Inflate)?;
                }
                input.truncate(kept);
                d.partial = input;
            }
            conn.message = Some(RxMessage {
                text: m.text,
                buf: BytesMut::from(&m.buf[..]),
                len: m.len,
                fragments: m.fragments,
                utf8,
                compressed: m.compressed,
            });
        }
        conn.event = s.event.map(|e| match e {
            EventState::Text(t) => Message::Text(Utf8Bytes::from(t)),
            EventState::Binary(b) => Message::Binary(Bytes::from(b)),
            EventState::Ping(b) => Message::Ping(Bytes::from(b)),
            EventState::Pong(b) => Message::Pong(Bytes::from(b)),
            EventState::Close(f) => Message::Close(f.map(|(code, reason)| CloseFrame {
                code: CloseCode::new(code),
                reason: Utf8Bytes::from(reason),
            })),
        });
        conn.tx = Transmit::from_vec(s.tx);
        conn.close_sent = s.close_sent;
        conn.close_received = s.close_received;
        if let Some(t) = s.timers {
            if t.start & !(START_PING | START_IDLE) != 0 || t.timed_out > TIMED_OUT_CLOSE {
                return Err(Invalid("timer flags"));
            }
            let at = |d: Option<Duration>| match d {
                None => Ok(None),
                Some(d) => now
                    .checked_add(d)
                    .map(Some)
                    .ok_or(Invalid("deadline too far")),
            };
            let mut timers = Timers {
                next_ping: at(t.next_ping)?,
                pong: at(t.pong)?,
                idle: at(t.idle)?,
                close: at(t.close)?,
                start: t.start,
                transport_gone: t.transport_gone,
                timed_out: t.timed_out,
            };
            // The new configuration decides which deadlines run: one it turns off stops,
            // one it turns on starts at the next clock reading.
            let keep = |on: bool, deadline: &mut Option<Instant>, start: &mut u8, bit: u8| {
                if !on {
                    *deadline = None;
                    *start &= !bit;
                } else if deadline.is_none() {
                    *start |= bit;
                }
            };
            let ping_on = timeouts.ping_interval().is_some();
            keep(
                ping_on,
                &mut timers.next_ping,
                &mut timers.start,
                START_PING,
            );
            let idle_on = timeouts.idle().is_some();
            keep(idle_on, &mut timers.idle, &mut timers.start, START_IDLE);
            conn.timers = Some(Box::new(timers));
        }
        Ok(conn)
    }
}
