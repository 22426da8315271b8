//! The chat protocol's JSON (`docs/hub.md`): events encoded once per room, shared by every
//! recipient; client messages parsed and checked.

use serde::{Deserialize, Serialize};
use std::time::{SystemTime, UNIX_EPOCH};
use wsduplex::Utf8Bytes;

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[derive(Serialize)]
struct ChatMessage<'a> {
    r#type: &'static str,
    id: u64,
    room: &'a str,
    name: &'a str,
    text: &'a str,
    ts: u64,
    /// Delivered by this node alone while the backplane was down (not in the history the
    /// backplane keeps for every node).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    local: bool,
}

/// A message without its type and id, for the backplane (see [`message_tail`]).
#[derive(Serialize)]
#[cfg(feature = "redis")]
struct Tail<'a> {
    room: &'a str,
    name: &'a str,
    text: &'a str,
    ts: u64,
}

#[derive(Serialize)]
struct Presence<'a> {
    r#type: &'static str,
    room: &'a str,
    name: &'a str,
    ts: u64,
}

#[derive(Serialize)]
struct ErrorEvent<'a> {
    r#type: &'static str,
    error: &'a str,
    message: &'a str,
}

fn encode(value: &impl Serialize) -> Utf8Bytes {
    // Serializing these structs of strings and integers cannot fail.
    Utf8Bytes::from(serde_json::to_string(value).unwrap_or_default())
}

pub(crate) fn message(id: u64, room: &str, name: &str, text: &str, ts: u64) -> Utf8Bytes {
    encode(&ChatMessage {
        r#type: "message",
        id,
        room,
        name,
        text,
        ts,
        local: false,
    })
}

/// A message this node delivered on its own while the backplane was down.
#[cfg(feature = "redis")]
pub(crate) fn local_message(id: u64, room: &str, name: &str, text: &str, ts: u64) -> Utf8Bytes {
    encode(&ChatMessage {
        r#type: "message",
        id,
        room,
        name,
        text,
        ts,
        local: true,
    })
}

/// What comes before a message's [`message_tail`]: the id is assigned in Redis.
pub(crate) const MESSAGE_HEAD: &str = r#"{"type":"message","id":"#;

/// A message's JSON after `"id":N,`. The backplane's publish script writes
/// `MESSAGE_HEAD`, the id, `,` and this, so every node delivers the same bytes.
#[cfg(feature = "redis")]
pub(crate) fn message_tail(room: &str, name: &str, text: &str, ts: u64) -> String {
    let json = serde_json::to_string(&Tail {
        room,
        name,
        text,
        ts,
    })
    .unwrap_or_default();
    json.strip_prefix('{').unwrap_or(&json).to_string()
}

pub(crate) fn presence(kind: &'static str, room: &str, name: &str) -> Utf8Bytes {
    encode(&Presence {
        r#type: kind,
        room,
        name,
        ts: now_ms(),
    })
}

pub(crate) fn error(error: &str, message: &str) -> Utf8Bytes {
    encode(&ErrorEvent {
        r#type: "error",
        error,
        message,
    })
}

/// The welcome: `history` entries are already-encoded messages, spliced in as they are.
pub(crate) fn welcome<'a>(
    room: &str,
    name: &str,
    members: impl Iterator<Item = &'a str>,
    last_id: u64,
    history: impl Iterator<Item = &'a Utf8Bytes>,
    gap: bool,
) -> Utf8Bytes {
    use std::fmt::Write as _;
    let json = |s: &str| serde_json::to_string(s).unwrap_or_default();
    let mut out = String::with_capacity(256);
    let _ = write!(
        out,
        r#"{{"type":"welcome","room":{},"name":{},"members":["#,
        json(room),
        json(name)
    );
    for (i, m) in members.enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&json(m));
    }
    let _ = write!(out, r#"],"last_id":{last_id},"gap":{gap},"history":["#);
    for (i, h) in history.enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(h.as_str());
    }
    out.push_str("]}");
    Utf8Bytes::from(out)
}

/// The last message id a client knows once it has read `event`: a message's id, or a
/// welcome's `last_id` (its history goes up to it). `None` for anything else, and for
/// messages delivered locally while the backplane was down (their ids are this node's
/// alone: no other node knows them).
pub(crate) fn known_id(event: &Utf8Bytes) -> Option<u64> {
    let json = event.as_str();
    let number = |s: &str| -> Option<u64> {
        let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        s[..end].parse().ok()
    };
    if let Some(rest) = json.strip_prefix(MESSAGE_HEAD) {
        return match json.ends_with(r#","local":true}"#) {
            true => None,
            false => number(rest),
        };
    }
    if json.starts_with(r#"{"type":"welcome","#) {
        // Room and member names cannot hold a quote: the first `"last_id":` is the field.
        let at = json.find(r#""last_id":"#)? + r#""last_id":"#.len();
        return number(&json[at..]);
    }
    None
}

/// What a client may send.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum Inbound {
    Message { text: String },
}

/// A client message that cannot be accepted: answered with an `error` event, and the
/// connection stays open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BadMessage {
    /// Not a JSON object with a known `type` and its fields.
    #[error(r#"expected {{"type":"message","text":"..."}}"#)]
    Malformed,
    /// The text is empty or only white space.
    #[error("empty message")]
    Empty,
    /// The text has more characters than allowed.
    #[error("message over {max} characters")]
    TooLong {
        /// The limit.
        max: usize,
    },
    /// A binary WebSocket message: the protocol is JSON text.
    #[error("binary messages are not part of the chat protocol")]
    Binary,
}

impl BadMessage {
    /// The `error` field of the event sent back.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Malformed | Self::Binary => "bad_message",
            Self::Empty => "empty",
            Self::TooLong { .. } => "too_long",
        }
    }

    pub(crate) fn to_event(&self) -> Utf8Bytes {
        error(self.code(), &self.to_string())
    }
}

/// Parses a client message and returns its text.
pub(crate) fn parse_inbound(json: &[u8], max_chars: usize) -> Result<String, BadMessage> {
    let Ok(Inbound::Message { text }) = serde_json::from_slice(json) else {
        return Err(BadMessage::Malformed);
    };
    check_text(text, max_chars)
}

pub(crate) fn check_text(text: String, max_chars: usize) -> Result<String, BadMessage> {
    if text.trim().is_empty() {
        return Err(BadMessage::Empty);
    }
    // Counting chars of a long string costs; the byte length bounds it first.
    if text.len() > max_chars && text.chars().count() > max_chars {
        return Err(BadMessage::TooLong { max: max_chars });
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn message_fields() {
        let m = message(7, "lobby", "al\"ice", "<b>hi</b>", 123);
        let v: Value = serde_json::from_str(m.as_str()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type":"message","id":7,"room":"lobby","name":"al\"ice",
                "text":"<b>hi</b>","ts":123})
        );
    }

    #[test]
    #[cfg(feature = "redis")]
    fn head_id_and_tail_make_the_message() {
        let tail = message_tail("lobby", "al\"ice", "<b>hi</b>", 123);
        let assembled = format!("{MESSAGE_HEAD}{},{tail}", 7);
        assert_eq!(
            assembled,
            message(7, "lobby", "al\"ice", "<b>hi</b>", 123).as_str()
        );
        let v: Value = serde_json::from_str(local_message(8, "r", "a", "x", 1).as_str()).unwrap();
        assert_eq!(
            (&v["id"], &v["local"]),
            (&serde_json::json!(8), &Value::Bool(true))
        );
    }

    #[test]
    fn known_ids() {
        assert_eq!(known_id(&message(41, "r", "a", "x", 1)), Some(41));
        #[cfg(feature = "redis")]
        assert_eq!(known_id(&local_message(1_000_041, "r", "a", "x", 1)), None);
        let h = [message(7, "r", "a", "last_id", 1)];
        let w = welcome("r", "c", ["a"].into_iter(), 9, h.iter(), false);
        assert_eq!(known_id(&w), Some(9));
        assert_eq!(known_id(&presence("joined", "r", "a")), None);
    }

    #[test]
    fn welcome_splices_history() {
        let h = [message(1, "r", "a", "x", 1), message(2, "r", "b", "y", 2)];
        let w = welcome("r", "c", ["a", "b", "c"].into_iter(), 2, h.iter(), false);
        let v: Value = serde_json::from_str(w.as_str()).unwrap();
        assert_eq!(v["type"], "welcome");
        assert_eq!(v["members"], serde_json::json!(["a", "b", "c"]));
        assert_eq!(v["history"][1]["text"], "y");
        assert_eq!(v["last_id"], 2);
        assert_eq!(v["gap"], false);
        let empty = welcome("r", "c", std::iter::empty(), 0, [].iter(), true);
        let v: Value = serde_json::from_str(empty.as_str()).unwrap();
        assert_eq!(v["history"], serde_json::json!([]));
        assert_eq!(v["gap"], true);
    }

    #[test]
    fn inbound() {
        assert_eq!(
            parse_inbound(br#"{"type":"message","text":"hi"}"#, 10),
            Ok("hi".into())
        );
        for bad in [
            &b"nope"[..],
            br#"{"text":"hi"}"#,
            br#"{"type":"shout","text":"hi"}"#,
            br#"{"type":"message"}"#,
            br#"{"type":"message","text":5}"#,
        ] {
            assert_eq!(parse_inbound(bad, 10), Err(BadMessage::Malformed));
        }
        assert_eq!(
            parse_inbound(br#"{"type":"message","text":"  "}"#, 10),
            Err(BadMessage::Empty)
        );
        assert_eq!(
            parse_inbound(r#"{"type":"message","text":"ééééé"}"#.as_bytes(), 5),
            Ok("ééééé".into()),
            "characters, not bytes"
        );
        assert_eq!(
            parse_inbound(br#"{"type":"message","text":"123456"}"#, 5),
            Err(BadMessage::TooLong { max: 5 })
        );
    }
}
