//! What the backplane keeps in Redis: the keys of each room and session, and the events on a
//! room's channel. The Lua scripts that change them are in `lua/` (see `scripts.rs`).
//!
//! Keys of room `R` (prefix `P`, `wsduplex` by default; `{R}` keeps a room's keys in one
//! cluster slot):
//! - `P:{R}:id`: the last message id (`INCR`).
//! - `P:{R}:log`: the history, a stream whose entry ids are `0-<message id>`, capped with
//!   `MAXLEN ~ history`; field `m` is the message's JSON, `t` the token its node tagged
//!   it with (`<node>-<n>`: the node recognises its own message if the publish failed on
//!   its side but ran in Redis).
//! - `P:{R}:members`: name → `"<node> <presence seq>"`; names are unique in the room.
//! - `P:{R}:nodes`: sorted set, node → when its heartbeat expires (ms, Redis clock).
//! - `P:{R}:pseq`: the last presence change's number.
//!
//! - `P:session:<id>`: a long-polling session: `room`, `name`, `node` (where its member
//!   is), and `c:<cursor>` → the last message id among the events up to that cursor. It
//!   expires with the session.
//!
//! Channel `P:{R}` carries, in order: `M<id> <json>`, `J<seq> <node> <token> <name>`,
//! `L<seq> <name>`, `C<name>` (cut that member wherever it is: any node may ask),
//! `T<token> <session> <name>` (the session moves to the node waiting with that token) and
//! `X<session>` (close it).

pub(crate) fn session_key(prefix: &str, session: &str) -> String {
    format!("{prefix}:session:{session}")
}

/// The keys and channel of one room.
pub(crate) struct Keys {
    pub(super) id: String,
    pub(super) log: String,
    pub(super) members: String,
    pub(super) nodes: String,
    pub(super) pseq: String,
    pub(crate) channel: String,
}

impl Keys {
    pub(crate) fn new(prefix: &str, room: &str) -> Self {
        Self {
            id: format!("{prefix}:{{{room}}}:id"),
            log: format!("{prefix}:{{{room}}}:log"),
            members: format!("{prefix}:{{{room}}}:members"),
            nodes: format!("{prefix}:{{{room}}}:nodes"),
            pseq: format!("{prefix}:{{{room}}}:pseq"),
            channel: channel(prefix, room),
        }
    }
}

pub(crate) fn channel(prefix: &str, room: &str) -> String {
    format!("{prefix}:{{{room}}}")
}

/// The room a channel belongs to.
pub(crate) fn room_of<'a>(prefix: &str, channel: &'a str) -> Option<&'a str> {
    channel
        .strip_prefix(prefix)?
        .strip_prefix(":{")?
        .strip_suffix('}')
}

/// An event on a room's channel.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Event<'a> {
    Message {
        id: u64,
        json: &'a str,
    },
    Joined {
        seq: u64,
        node: &'a str,
        token: u64,
        name: &'a str,
    },
    Left {
        seq: u64,
        name: &'a str,
    },
    Cut {
        name: &'a str,
    },
    Moved {
        token: u64,
        session: &'a str,
        name: &'a str,
    },
    Closed {
        session: &'a str,
    },
}

pub(crate) fn parse_event(payload: &str) -> Option<Event<'_>> {
    let mut chars = payload.chars();
    let kind = chars.next()?;
    let rest = chars.as_str();
    Some(match kind {
        'M' => {
            let (id, json) = rest.split_once(' ')?;
            Event::Message {
                id: id.parse().ok()?,
                json,
            }
        }
        'J' => {
            let mut parts = rest.splitn(4, ' ');
            let seq = parts.next()?.parse().ok()?;
            let node = parts.next()?;
            let token = parts.next()?.parse().ok()?;
            let name = parts.next()?;
            Event::Joined {
                seq,
                node,
                token,
                name,
            }
        }
        'L' => {
            let (seq, name) = rest.split_once(' ')?;
            Event::Left {
                seq: seq.parse().ok()?,
                name,
            }
        }
        'C' => Event::Cut { name: rest },
        'T' => {
            let mut parts = rest.splitn(3, ' ');
            let token = parts.next()?.parse().ok()?;
            let session = parts.next()?;
            let name = parts.next()?;
            Event::Moved {
                token,
                session,
                name,
            }
        }
        'X' => Event::Closed { session: rest },
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events() {
        assert_eq!(
            parse_event(r#"M12 {"type":"message","id":12}"#),
            Some(Event::Message {
                id: 12,
                json: r#"{"type":"message","id":12}"#
            })
        );
        assert_eq!(
            parse_event("J5 ab12 99 Zoë 2.0"),
            Some(Event::Joined {
                seq: 5,
                node: "ab12",
                token: 99,
                name: "Zoë 2.0"
            })
        );
        assert_eq!(
            parse_event("L6 a b"),
            Some(Event::Left {
                seq: 6,
                name: "a b"
            })
        );
        assert_eq!(parse_event("Cbob"), Some(Event::Cut { name: "bob" }));
        assert_eq!(
            parse_event("T7 ab12 Zoë 2"),
            Some(Event::Moved {
                token: 7,
                session: "ab12",
                name: "Zoë 2"
            })
        );
        assert_eq!(
            parse_event("Xab12"),
            Some(Event::Closed { session: "ab12" })
        );
        for bad in ["", "Q1 a", "Mx {}", "J1 n", "L1", "T1 s"] {
            assert_eq!(parse_event(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn channels() {
        let keys = Keys::new("wsduplex", "lobby");
        assert_eq!(keys.channel, "wsduplex:{lobby}");
        assert_eq!(keys.log, "wsduplex:{lobby}:log");
        assert_eq!(room_of("wsduplex", &keys.channel), Some("lobby"));
        assert_eq!(room_of("wsduplex", "other:{lobby}"), None);
    }
}
