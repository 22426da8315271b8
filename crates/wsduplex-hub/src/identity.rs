//! A member's identity in the hub: the name it gets, the rooms it may read and write, and
//! the expiry of its credentials, with the `refresh` message that extends them.
//!
//! Every check takes the room, so a connection that follows many rooms is checked room by
//! room.

use crate::event;
use std::time::{Duration, SystemTime};
use wsduplex::auth::{AuthHook, Denied, Identity};
use wsduplex::Utf8Bytes;

/// The close code sent to a member whose credentials expired on an open connection (no
/// `refresh` came in time): reconnect with a new token and `since`.
pub const CLOSE_TOKEN_EXPIRED: u16 = 4001;

/// What a member may do, and how to check a refreshed token.
#[derive(Clone, Debug, Default)]
pub(crate) struct Access {
    identity: Identity,
    hook: Option<AuthHook>,
}

/// Why a `refresh` was refused (answered with an `error` event; the connection stays open
/// until the old credentials expire).
#[derive(Debug)]
pub(crate) enum RefreshError {
    /// The server has no authentication: nothing to refresh.
    Off,
    /// The token was refused.
    Denied(Denied),
    /// A valid token, for someone else.
    OtherUser,
}

impl RefreshError {
    pub(crate) fn to_event(&self) -> Utf8Bytes {
        match self {
            Self::Off => event::error("bad_token", "this server takes no tokens"),
            Self::Denied(d) => event::error("bad_token", d.reason()),
            Self::OtherUser => event::error("bad_token", "the token is for another user"),
        }
    }
}

impl Access {
    pub(crate) fn new(identity: Identity, hook: Option<AuthHook>) -> Self {
        Self { identity, hook }
    }

    /// The display name: the identity's for a known user (never the client's own choice),
    /// else the one asked for in the query string.
    pub(crate) fn name<'a>(&'a self, asked: Option<&'a str>) -> &'a str {
        let id = &self.identity;
        match (&id.user, &id.name) {
            (Some(_), Some(name)) => name,
            (Some(user), None) => user,
            (None, Some(name)) => name,
            (None, None) => asked.unwrap_or("guest"),
        }
    }

    /// With `hook` if it had none (a session handed over from another process: the hook
    /// is the server's, not part of the state).
    pub(crate) fn or_hook(mut self, hook: Option<AuthHook>) -> Self {
        if self.hook.is_none() {
            self.hook = hook;
        }
        self
    }

    pub(crate) fn identity(&self) -> &Identity {
        &self.identity
    }

    pub(crate) fn may_read(&self, room: &str) -> bool {
        self.identity.read.contains(room)
    }

    pub(crate) fn may_write(&self, room: &str) -> bool {
        self.identity.write.contains(room)
    }

    pub(crate) fn is_expired(&self) -> bool {
        self.identity.is_expired(SystemTime::now())
    }

    /// When the credentials expire, on tokio's clock.
    pub(crate) fn deadline(&self) -> Option<tokio::time::Instant> {
        let at = self.identity.expires?;
        let left = at
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO);
        Some(tokio::time::Instant::now() + left)
    }

    /// Checks `token` as the opening request's was checked; the user must stay the same.
    /// On success the new identity (its rooms, its expiry) replaces the old one.
    pub(crate) async fn refresh(&mut self, token: &str) -> Result<(), RefreshError> {
        let hook = self.hook.as_ref().ok_or(RefreshError::Off)?;
        let fresh = hook.refresh(token).await.map_err(|d| {
            // The reason only, never the token.
            tracing::info!(reason = d.reason(), "refresh refused");
            RefreshError::Denied(d)
        })?;
        if fresh.user != self.identity.user {
            return Err(RefreshError::OtherUser);
        }
        self.identity = fresh;
        Ok(())
    }

    /// `{"type":"refreshed","expires":SECONDS}` (seconds since the epoch, or `null`).
    pub(crate) fn refreshed_event(&self) -> Utf8Bytes {
        let expires = self
            .identity
            .expires
            .and_then(|at| at.duration_since(SystemTime::UNIX_EPOCH).ok())
            .map(|d| d.as_secs());
        let json = serde_json::json!({"type": "refreshed", "expires": expires});
        Utf8Bytes::from(json.to_string())
    }
}

/// The token of a `{"type":"refresh","token":"..."}` client message, if it is one.
pub(crate) fn refresh_token(json: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Refresh {
        r#type: String,
        token: String,
    }
    // Cheap first: most messages are chat.
    if !json.windows(9).any(|w| w == b"\"refresh\"") {
        return None;
    }
    let r: Refresh = serde_json::from_slice(json).ok()?;
    (r.r#type == "refresh").then_some(r.token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use wsduplex::auth::RoomSet;

    #[test]
    fn names_come_from_the_identity_when_there_is_a_user() {
        let anon = Access::default();
        assert_eq!(anon.name(Some("eve")), "eve");
        assert_eq!(anon.name(None), "guest");
        let named = Access::new(Identity::user("u1").with_name("Alice"), None);
        assert_eq!(named.name(Some("eve")), "Alice");
        let unnamed = Access::new(Identity::user("u1"), None);
        assert_eq!(unnamed.name(Some("eve")), "u1");
    }

    #[test]
    fn rooms_are_checked_one_by_one() {
        let id = Identity::user("u").with_rooms(RoomSet::of(["a", "t-*"]), RoomSet::of(["a"]));
        let access = Access::new(id, None);
        assert!(access.may_read("t-1") && !access.may_write("t-1"));
        assert!(access.may_write("a") && !access.may_read("b"));
    }

    #[test]
    fn refresh_messages() {
        assert_eq!(
            refresh_token(br#"{"type":"refresh","token":"abc"}"#).as_deref(),
            Some("abc")
        );
        assert_eq!(
            refresh_token(br#"{"type":"message","text":"refresh"}"#),
            None
        );
        assert_eq!(
            refresh_token(br#"{"type":"message","text":"\"refresh\""}"#),
            None
        );
    }

    #[tokio::test]
    async fn refresh_keeps_the_user() {
        let hook = AuthHook::from_fn(|r: &wsduplex::proto::handshake::server::Request| {
            let user = r.header("authorization").map(|v| v[7..].to_vec());
            async move {
                let user = String::from_utf8(user.unwrap()).unwrap();
                Ok(wsduplex::auth::Authenticated::new(
                    Identity::user(user),
                    wsduplex::auth::Credential::Authorization,
                ))
            }
        });
        let mut access = Access::new(Identity::user("u1"), Some(hook));
        assert!(access.refresh("u1").await.is_ok());
        assert!(matches!(
            access.refresh("u2").await,
            Err(RefreshError::OtherUser)
        ));
        assert!(matches!(
            Access::default().refresh("x").await,
            Err(RefreshError::Off)
        ));
    }
}
