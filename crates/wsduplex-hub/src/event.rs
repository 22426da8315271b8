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

/// What a message carries: chat text, or any JSON value (`data`).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Body<'a> {
    Text(&'a str),
    Data(&'a serde_json::Value),
}

impl<'a> Body<'a> {
    fn text(self) -> Option<&'a str> {
        match self {
            Self::Text(t) => Some(t),
            Self::Data(_) => None,
        }
    }

    fn data(self) -> Option<&'a serde_json::Value> {
        match self {
            Self::Text(_) => None,
            Self::Data(d) => Some(d),
        }
    }
}

/// A message's body as parsed: owned, checked against the limits.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Payload {
    Text(String),
    Data(serde_json::Value),
}

impl Payload {
    pub(crate) fn body(&self) -> Body<'_> {
        match self {
            Self::Text(t) => Body::Text(t),
            Self::Data(d) => Body::Data(d),
        }
    }
}

// `text` or `data` comes before `ts`, so that a message's JSON always ends with `"ts":N}`
// or `"ts":N,"local":true}` (see `known_id`), whatever the data holds.
#[derive(Serialize)]
struct ChatMessage<'a> {
    r#type: &'static str,
    id: u64,
    room: &'a str,
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a serde_json::Value>,
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
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a serde_json::Value>,
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
    /// The room the refused request named, if it named one.
    #[serde(skip_serializing_if = "Option::is_none")]
    room: Option<&'a str>,
}

#[derive(Serialize)]
struct Unsubscribed<'a> {
    r#type: &'static str,
    room: &'a str,
}

fn encode(value: &impl Serialize) -> Utf8Bytes {
    // Serializing these structs of strings and integers cannot fail.
    Utf8Bytes::from(serde_json::to_string(value).unwrap_or_default())
}

pub(crate) fn message(id: u64, room: &str, name: &str, body: Body<'_>, ts: u64) -> Utf8Bytes {
    encode(&ChatMessage {
        r#type: "message",
        id,
        room,
        name,
        text: body.text(),
        data: body.data(),
        ts,
        local: false,
    })
}

/// A message this node delivered on its own while the backplane was down.
#[cfg(feature = "redis")]
pub(crate) fn local_message(id: u64, room: &str, name: &str, body: Body<'_>, ts: u64) -> Utf8Bytes {
    encode(&ChatMessage {
        r#type: "message",
        id,
        room,
        name,
        text: body.text(),
        data: body.data(),
        ts,
        local: true,
    })
}

/// What comes before a message's [`message_tail`]: the id is assigned in Redis.
pub(crate) const MESSAGE_HEAD: &str = r#"{"type":"message","id":"#;

/// A message's JSON after `"id":N,`. The backplane's publish script writes
/// `MESSAGE_HEAD`, the id, `,` and this, so every node delivers the same bytes.
#[cfg(feature = "redis")]
pub(crate) fn message_tail(room: &str, name: &str, body: Body<'_>, ts: u64) -> String {
    let json = serde_json::to_string(&Tail {
        room,
        name,
        text: body.text(),
        data: body.data(),
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
        room: None,
    })
}

/// An `error` event about a request that named `room`.
pub(crate) fn room_error(room: &str, error: &str, message: &str) -> Utf8Bytes {
    encode(&ErrorEvent {
        r#type: "error",
        error,
        message,
        room: Some(room),
    })
}

/// The answer to an `unsubscribe`: no event of `room` follows it.
pub(crate) fn unsubscribed(room: &str) -> Utf8Bytes {
    encode(&Unsubscribed {
        r#type: "unsubscribed",
        room,
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

/// The room of a message, welcome or presence event: the first `"room"` field, which comes
/// before anything a client wrote (room names hold no quote).
pub(crate) fn room_of(event: &Utf8Bytes) -> Option<&str> {
    let json = event.as_str();
    let at = json.find(r#""room":""#)? + r#""room":""#.len();
    let len = json[at..].find('"')?;
    Some(&json[at..at + len])
}

/// What a client may send (besides `refresh`, see `identity.rs`).
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum Wire {
    Message {
        room: Option<String>,
        text: Option<String>,
        data: Option<serde_json::Value>,
    },
    Subscribe {
        room: String,
        since: Option<u64>,
    },
    Unsubscribe {
        room: String,
    },
}

/// A client message, parsed and checked.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Inbound {
    /// To `room`, or without one to the connection's first room.
    Message {
        room: Option<String>,
        payload: Payload,
    },
    Subscribe {
        room: String,
        since: Option<u64>,
    },
    Unsubscribe {
        room: String,
    },
}

/// The limits a client message is checked against.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    /// Characters of `text`.
    pub(crate) max_text: usize,
    /// Bytes of `data`, encoded as compact JSON.
    pub(crate) max_data: usize,
}

/// A client message that cannot be accepted: answered with an `error` event, and the
/// connection stays open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BadMessage {
    /// Not a JSON object with a known `type` and its fields.
    #[error(
        r#"expected {{"type":"message","room":"...","text":"..."}} (or "data" instead of "text"), {{"type":"subscribe","room":"..."}} or {{"type":"unsubscribe","room":"..."}}"#
    )]
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
    /// The `data` value, encoded, has more bytes than allowed.
    #[error("data over {max} bytes")]
    DataTooLarge {
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
            Self::TooLong { .. } | Self::DataTooLarge { .. } => "too_long",
        }
    }

    pub(crate) fn to_event(&self) -> Utf8Bytes {
        error(self.code(), &self.to_string())
    }
}

/// Parses and checks a client message.
pub(crate) fn parse_inbound(json: &[u8], limits: Limits) -> Result<Inbound, BadMessage> {
    let wire: Wire = serde_json::from_slice(json).map_err(|_| BadMessage::Malformed)?;
    Ok(match wire {
        Wire::Message { room, text, data } => {
            let payload = check_payload(text, data, limits)?;
            Inbound::Message { room, payload }
        }
        Wire::Subscribe { room, since } => Inbound::Subscribe { room, since },
        Wire::Unsubscribe { room } => Inbound::Unsubscribe { room },
    })
}

/// Exactly one of `text` and `data` (`"data":null` counts as none), within the limits.
pub(crate) fn check_payload(
    text: Option<String>,
    data: Option<serde_json::Value>,
    limits: Limits,
) -> Result<Payload, BadMessage> {
    match (text, data) {
        (Some(text), None) => Ok(Payload::Text(check_text(text, limits.max_text)?)),
        (None, Some(data)) => {
            let size = serde_json::to_vec(&data).map_or(usize::MAX, |v| v.len());
            match size <= limits.max_data {
                true => Ok(Payload::Data(data)),
                false => Err(BadMessage::DataTooLarge {
                    max: limits.max_data,
                }),
            }
        }
        _ => Err(BadMessage::Malformed),
    }
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
        let m = message(7, "lobby", "al\"ice", Body::Text("<b>hi</b>"), 123);
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
        let tail = message_tail("lobby", "al\"ice", Body::Text("<b>hi</b>"), 123);
        let assembled = format!("{MESSAGE_HEAD}{},{tail}", 7);
        assert_eq!(
            assembled,
            message(7, "lobby", "al\"ice", Body::Text("<b>hi</b>"), 123).as_str()
        );
        let v: Value =
            serde_json::from_str(local_message(8, "r", "a", Body::Text("x"), 1).as_str()).unwrap();
        assert_eq!(
            (&v["id"], &v["local"]),
            (&serde_json::json!(8), &Value::Bool(true))
        );
    }

    #[test]
    fn rooms_of_events() {
        let m = message(1, "r-1", "a", Body::Text(r#""room":"x""#), 1);
        assert_eq!(room_of(&m), Some("r-1"));
        let w = welcome("w", "c", ["a"].into_iter(), 1, [m].iter(), false);
        assert_eq!(room_of(&w), Some("w"));
        assert_eq!(room_of(&presence("left", "p", "a")), Some("p"));
        assert_eq!(room_of(&error("e", "m")), None);
    }

    #[test]
    fn known_ids() {
        assert_eq!(
            known_id(&message(41, "r", "a", Body::Text("x"), 1)),
            Some(41)
        );
        #[cfg(feature = "redis")]
        assert_eq!(
            known_id(&local_message(1_000_041, "r", "a", Body::Text("x"), 1)),
            None
        );
        let h = [message(7, "r", "a", Body::Text("last_id"), 1)];
        let w = welcome("r", "c", ["a"].into_iter(), 9, h.iter(), false);
        assert_eq!(known_id(&w), Some(9));
        assert_eq!(known_id(&presence("joined", "r", "a")), None);
    }

    #[test]
    fn welcome_splices_history() {
        let h = [
            message(1, "r", "a", Body::Text("x"), 1),
            message(2, "r", "b", Body::Text("y"), 2),
        ];
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

    fn text(t: &str) -> Result<Inbound, BadMessage> {
        Ok(Inbound::Message {
            room: None,
            payload: Payload::Text(t.into()),
        })
    }

    const L: Limits = Limits {
        max_text: 10,
        max_data: 16,
    };

    #[test]
    fn inbound() {
        assert_eq!(
            parse_inbound(br#"{"type":"message","text":"hi"}"#, L),
            text("hi")
        );
        for bad in [
            &b"nope"[..],
            br#"{"text":"hi"}"#,
            br#"{"type":"shout","text":"hi"}"#,
            br#"{"type":"message"}"#,
            br#"{"type":"message","text":5}"#,
            br#"{"type":"message","text":"a","data":1}"#,
            br#"{"type":"subscribe"}"#,
            br#"{"type":"subscribe","room":"r","since":-1}"#,
        ] {
            assert_eq!(parse_inbound(bad, L), Err(BadMessage::Malformed));
        }
        assert_eq!(
            parse_inbound(br#"{"type":"message","text":"  "}"#, L),
            Err(BadMessage::Empty)
        );
        assert_eq!(
            parse_inbound(r#"{"type":"message","text":"ééééé"}"#.as_bytes(), L),
            text("ééééé"),
            "characters, not bytes"
        );
        assert_eq!(
            parse_inbound(br#"{"type":"message","text":"12345678901"}"#, L),
            Err(BadMessage::TooLong { max: 10 })
        );
        assert_eq!(
            parse_inbound(br#"{"type":"message","room":"r","data":{"a": [1, 2]}}"#, L),
            Ok(Inbound::Message {
                room: Some("r".into()),
                payload: Payload::Data(serde_json::json!({"a":[1,2]}))
            })
        );
        // The encoded size counts, not the client's spacing.
        assert!(parse_inbound(br#"{"type":"message","data":"12345678901234"}"#, L).is_ok());
        assert_eq!(
            parse_inbound(br#"{"type":"message","data":"123456789012345"}"#, L),
            Err(BadMessage::DataTooLarge { max: 16 })
        );
        assert_eq!(
            parse_inbound(br#"{"type":"subscribe","room":"r","since":4}"#, L),
            Ok(Inbound::Subscribe {
                room: "r".into(),
                since: Some(4)
            })
        );
        assert_eq!(
            parse_inbound(br#"{"type":"unsubscribe","room":"r"}"#, L),
            Ok(Inbound::Unsubscribe { room: "r".into() })
        );
    }

    #[test]
    fn data_messages_end_like_text_messages() {
        let d = serde_json::json!({"ts": 1, "local": true});
        let m = message(3, "r", "a", Body::Data(&d), 9);
        assert!(m.as_str().ends_with(r#","ts":9}"#));
        assert_eq!(known_id(&m), Some(3));
        let v: Value = serde_json::from_str(m.as_str()).unwrap();
        assert_eq!((&v["data"], v.get("text")), (&d, None));
    }
}
