//! What the hub client hands out: the server's events, typed as the JSON Schemas of
//! `docs/hub.md` describe them, and the connection's own state changes.

use serde::{Deserialize, Serialize};

/// What a message carries: chat text, or any JSON value (`data`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Body {
    /// `"text"`: a chat message.
    Text(String),
    /// `"data"`: any JSON value but `null`.
    Data(serde_json::Value),
}

impl Body {
    /// The text, if it is a chat message.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Self::Text(t) => Some(t),
            Self::Data(_) => None,
        }
    }

    /// The data, if it is not a chat message.
    pub fn as_data(&self) -> Option<&serde_json::Value> {
        match self {
            Self::Text(_) => None,
            Self::Data(d) => Some(d),
        }
    }
}

/// `server.message`: a message of a room, with its id.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ChatMessage {
    /// Its id in its room (1, 2, 3...).
    pub id: u64,
    /// The room.
    pub room: String,
    /// The sender's display name (`api` for the push API's default).
    pub name: String,
    /// `text` or `data`.
    #[serde(flatten)]
    pub body: Body,
    /// Milliseconds since the Unix epoch.
    pub ts: u64,
    /// Delivered by one node alone while it could not reach Redis: its id is that node's
    /// (`docs/hub.md`), so it counts neither for `since` nor for duplicates.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub local: bool,
}

/// `server.welcome`: the answer to a subscription (or to the connection's first room).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Welcome {
    /// The room.
    pub room: String,
    /// The name this connection has in it (made unique: `alice-2`).
    pub name: String,
    /// The room's members now, on every node.
    pub members: Vec<String>,
    /// The newest id of the room (0 if none).
    pub last_id: u64,
    /// Some messages after the client's last id have left history: they are lost to it.
    pub gap: bool,
    /// The messages after the client's last id that it has not seen, oldest first (the
    /// client drops those it has already handed out).
    pub history: Vec<ChatMessage>,
    /// `true` when the client subscribed again after a reconnect (with `since`), `false`
    /// for the first subscription.
    #[serde(skip)]
    pub resumed: bool,
}

/// `server.joined` and `server.left`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Presence {
    /// The room.
    pub room: String,
    /// Who joined or left.
    pub name: String,
    /// Milliseconds since the Unix epoch.
    pub ts: u64,
}

/// `server.error`: a refused request; the connection stays open.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ErrorEvent {
    /// The code: `forbidden`, `too_many_subscriptions`, `bad_token`... (`docs/hub.md`).
    pub error: String,
    /// A sentence for people.
    pub message: String,
    /// The room the refused request named, if it named one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room: Option<String>,
}

/// One thing that happened, in the order it happened.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum HubEvent {
    /// A room's welcome: the first of each subscription, and again (`resumed`) after each
    /// reconnect, with only the messages the client has not handed out yet.
    Welcome(Welcome),
    /// A new message of a room (never one already handed out).
    Message(ChatMessage),
    /// Someone joined a room.
    Joined(Presence),
    /// Someone left a room.
    Left(Presence),
    /// The answer to [`HubClient::unsubscribe`](super::HubClient::unsubscribe), or a room
    /// left because a refreshed identity may no longer read it: no event of the room
    /// follows.
    Unsubscribed {
        /// The room.
        room: String,
    },
    /// The answer to [`HubClient::refresh`](super::HubClient::refresh): the new token's
    /// expiry (seconds since the epoch), if any.
    Refreshed {
        /// Seconds since the Unix epoch.
        expires: Option<u64>,
    },
    /// A refused request. A refused subscription is forgotten (it is not tried again on
    /// a reconnect).
    Error(ErrorEvent),
    /// The connection was lost: the next call to
    /// [`HubClient::next_event`](super::HubClient::next_event) reconnects (with backoff)
    /// and resubscribes every room with its `since`.
    Disconnected {
        /// The server's close code, if it closed (`4001`: the token expired, give a new
        /// one to [`HubClient::refresh`](super::HubClient::refresh) first; `4008`: too
        /// slow; `1001`: shutting down).
        code: Option<u16>,
        /// The close reason or the error, for people.
        reason: String,
    },
    /// A new connection is up; each room's welcome (`resumed`) follows.
    Reconnected,
}

/// Every event the server sends, as its `type` says.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub(super) enum Wire {
    Welcome(Welcome),
    Message(ChatMessage),
    Joined(Presence),
    Left(Presence),
    Unsubscribed { room: String },
    Refreshed { expires: Option<u64> },
    Error(ErrorEvent),
}
