//! The bytes of `bench fanout`: what a publisher sends, reading a delivery back, and a
//! connection's read buffer.
//!
//! A delivery is read by looking for the few fields the run needs, not by a JSON parser: on
//! one load core the generator reads every delivery the server makes, and a full parse of
//! each would make it, not the server, the limit. Anything that does not read as expected
//! is a failure of the run (a mismatch), never skipped.

use anyhow::{bail, Context as _};
use std::ops::Range;
use tokio::io::AsyncReadExt as _;
use tokio::net::TcpStream;
use wsduplex::proto::frame::{FrameHeader, OpCode};

/// Largest frame a connection buffers (a hub's welcome to the last of 10,000 members lists
/// them all: about 100 KB).
const MAX_FRAME: u64 = 16 << 20;

/// The client message that publishes message `seq` of publisher `publisher` in `room`,
/// stamped `nanos`: the hub's chat message with `data` (or `text`). A relay server passes
/// these bytes on as they are, and they read back the same way.
pub(super) fn publish(room: &str, publisher: u32, seq: u64, nanos: u64, text: bool) -> String {
    if text {
        format!(r#"{{"type":"message","room":"{room}","text":"{publisher} {seq} {nanos}"}}"#)
    } else {
        format!(
            r#"{{"type":"message","room":"{room}","data":{{"p":{publisher},"s":{seq},"t":{nanos}}}}}"#
        )
    }
}

/// A `subscribe` of the hub's protocol.
pub(super) fn subscribe(room: &str) -> String {
    format!(r#"{{"type":"subscribe","room":"{room}"}}"#)
}

/// What a text message from the server is.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Inbound {
    /// A published message: its room's number, the publisher, its sequence number in that
    /// publisher's stream to that room, its send stamp, and the hub's id (None from a relay).
    Delivery {
        room: u32,
        publisher: u32,
        seq: u64,
        nanos: u64,
        id: Option<u64>,
    },
    Welcome,
    /// Presence (`joined`, `left`) and anything else the hub may add that carries no message.
    Other,
    /// The hub's `error` event (its text).
    Error,
}

/// Reads a text message from the server; `prefix` is the rooms' common name, `fanout-` for
/// rooms `fanout-0`, `fanout-1`...
pub(super) fn read(payload: &[u8], prefix: &str) -> Option<Inbound> {
    let (rest, id) = if let Some(rest) = payload.strip_prefix(br#"{"type":"message","id":"#) {
        let (id, rest) = number(rest)?;
        (rest.strip_prefix(b",")?, Some(id))
    } else if let Some(rest) = payload.strip_prefix(br#"{"type":"message","#) {
        (rest, None)
    } else if payload.starts_with(br#"{"type":"welcome""#) {
        return Some(Inbound::Welcome);
    } else if payload.starts_with(br#"{"type":"error""#) {
        return Some(Inbound::Error);
    } else if payload.starts_with(br#"{"type":"#) {
        return Some(Inbound::Other);
    } else {
        return None;
    };
    let rest = rest.strip_prefix(br#""room":""#)?;
    let rest = rest.strip_prefix(prefix.as_bytes())?;
    let (room, rest) = number(rest)?;
    let room = u32::try_from(room).ok()?;
    let rest = rest.strip_prefix(b"\"")?;
    let (publisher, seq, nanos) = if let Some(at) = find(rest, br#""data":{"p":"#) {
        let (p, rest) = number(&rest[at..])?;
        let (s, rest) = number(rest.strip_prefix(br#","s":"#)?)?;
        let (t, rest) = number(rest.strip_prefix(br#","t":"#)?)?;
        rest.strip_prefix(b"}")?;
        (p, s, t)
    } else {
        let at = find(rest, br#""text":""#)?;
        let (p, rest) = number(&rest[at..])?;
        let (s, rest) = number(rest.strip_prefix(b" ")?)?;
        let (t, rest) = number(rest.strip_prefix(b" ")?)?;
        rest.strip_prefix(b"\"")?;
        (p, s, t)
    };
    Some(Inbound::Delivery {
        room,
        publisher: u32::try_from(publisher).ok()?,
        seq,
        nanos,
        id,
    })
}

/// Where `needle` ends in `hay`.
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len())
        .position(|w| w == needle)
        .map(|at| at + needle.len())
}

/// A decimal number at the start of `s`, and what follows it.
fn number(s: &[u8]) -> Option<(u64, &[u8])> {
    let digits = s.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || digits > 19 {
        return None;
    }
    let n = s[..digits]
        .iter()
        .fold(0u64, |n, &d| n * 10 + u64::from(d - b'0'));
    Some((n, &s[digits..]))
}

/// A connection's bytes from the server, read into one buffer and taken frame by frame.
pub(super) struct Inbox {
    pub(super) buf: Vec<u8>,
    start: usize,
}

impl Inbox {
    /// After the handshake, with the bytes that came with its response.
    pub(super) fn new(leftover: Vec<u8>) -> Self {
        Self {
            buf: leftover,
            start: 0,
        }
    }

    /// The next complete frame: its opcode and where its payload is in `buf`. Servers send
    /// whole messages unmasked; anything else fails the connection.
    pub(super) fn frame(&mut self) -> anyhow::Result<Option<(OpCode, Range<usize>)>> {
        let Some((h, n)) = FrameHeader::decode(&self.buf[self.start..])? else {
            return Ok(None);
        };
        if h.mask.is_some() || !h.fin || h.opcode == OpCode::Continuation {
            bail!("the server sent a masked or fragmented frame ({h:?})");
        }
        if h.payload_len > MAX_FRAME {
            bail!("the server sent a {} byte frame", h.payload_len);
        }
        let begin = self.start + n;
        let end = begin + h.payload_len as usize;
        if self.buf.len() < end {
            // Make room for the rest of it at once.
            self.buf.reserve(end - self.buf.len());
            return Ok(None);
        }
        self.start = end;
        Ok(Some((h.opcode, begin..end)))
    }

    /// Reads more from `stream`; an end of stream is an error (the server closed on us).
    pub(super) async fn fill(&mut self, stream: &mut TcpStream) -> anyhow::Result<()> {
        self.make_room();
        match stream.read_buf(&mut self.buf).await.context("read")? {
            0 => bail!("the server closed the connection"),
            _ => Ok(()),
        }
    }

    /// Drops what was read and leaves room to read into; call before each read.
    pub(super) fn make_room(&mut self) {
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        } else if self.start > 0 && self.start >= self.buf.len() / 2 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        if self.buf.capacity() - self.buf.len() < 1024 {
            self.buf.reserve(4096);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_deliveries_and_relayed_messages_read_back() {
        let sent = publish("fanout-12", 3, 41, 123_456_789, false);
        let expected = Inbound::Delivery {
            room: 12,
            publisher: 3,
            seq: 41,
            nanos: 123_456_789,
            id: None,
        };
        assert_eq!(read(sent.as_bytes(), "fanout-"), Some(expected));
        let hub = br#"{"type":"message","id":7,"room":"fanout-12","name":"p3","data":{"p":3,"s":41,"t":123456789},"ts":1765108800000}"#;
        let Some(Inbound::Delivery { id, seq, .. }) = read(hub, "fanout-") else {
            panic!("not read");
        };
        assert_eq!((id, seq), (Some(7), 41));
        let text =
            br#"{"type":"message","id":8,"room":"fanout-0","name":"p0","text":"0 5 99","ts":1}"#;
        assert_eq!(
            read(text, "fanout-"),
            Some(Inbound::Delivery {
                room: 0,
                publisher: 0,
                seq: 5,
                nanos: 99,
                id: Some(8)
            })
        );
        let relayed_text = publish("fanout-0", 0, 5, 99, true);
        assert!(matches!(
            read(relayed_text.as_bytes(), "fanout-"),
            Some(Inbound::Delivery { seq: 5, .. })
        ));
    }

    #[test]
    fn other_events_and_garbage() {
        assert_eq!(
            read(br#"{"type":"welcome","room":"fanout-0"}"#, "fanout-"),
            Some(Inbound::Welcome)
        );
        assert_eq!(
            read(br#"{"type":"joined","room":"fanout-0"}"#, "fanout-"),
            Some(Inbound::Other)
        );
        assert_eq!(
            read(br#"{"type":"error","error":"forbidden"}"#, "fanout-"),
            Some(Inbound::Error)
        );
        // Another room prefix, a cut stamp, a truncated body, not JSON at all.
        assert_eq!(
            read(publish("other-1", 0, 1, 2, false).as_bytes(), "fanout-"),
            None
        );
        assert_eq!(
            read(
                br#"{"type":"message","room":"fanout-1","data":{"p":0,"s":1}}"#,
                "fanout-"
            ),
            None
        );
        assert_eq!(
            read(br#"{"type":"message","id":x,"room":"fanout-1"}"#, "fanout-"),
            None
        );
        assert_eq!(read(b"0 1 2", "fanout-"), None);
    }
}
