//! Who a connection is: the [`Identity`] an authentication hook returns, and the rooms it
//! may read and write ([`RoomSet`]), checked room by room so that a connection following
//! many rooms is checked for each.

use std::time::SystemTime;

/// The rooms an identity may read, or write: every room, or those matching one of a list
/// of patterns (a room name, or a prefix ending in `*`: `team-*`; `*` alone is every room).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RoomSet {
    all: bool,
    patterns: Vec<String>,
}

impl RoomSet {
    /// Every room.
    pub fn all() -> Self {
        Self {
            all: true,
            patterns: Vec::new(),
        }
    }

    /// No room.
    pub fn none() -> Self {
        Self::default()
    }

    /// The rooms matching any of `patterns` (`lobby`, `team-*`, `*`).
    pub fn of<T: Into<String>>(patterns: impl IntoIterator<Item = T>) -> Self {
        let patterns: Vec<String> = patterns.into_iter().map(Into::into).collect();
        Self {
            all: patterns.iter().any(|p| p == "*"),
            patterns,
        }
    }

    /// Whether every room is in the set.
    pub fn is_all(&self) -> bool {
        self.all
    }

    /// The patterns it was made of ([`RoomSet::of`]); empty for [`RoomSet::all`].
    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }

    /// Whether `room` is in the set.
    pub fn contains(&self, room: &str) -> bool {
        self.all
            || self.patterns.iter().any(|p| match p.strip_suffix('*') {
                Some(prefix) => room.starts_with(prefix),
                None => p == room,
            })
    }
}

/// Who made a request, as an authentication hook found out: a user id (none for an
/// anonymous member), a display name, the rooms it may read and write, and when its
/// credentials expire (a connection still open then is closed, unless refreshed).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Identity {
    /// The user id (a JWT's `sub`); `None`: anonymous, named by the client itself.
    pub user: Option<String>,
    /// The display name chosen by the server (a JWT's `name`); `None`: the client's choice
    /// for an anonymous member, the user id otherwise.
    pub name: Option<String>,
    /// The rooms it may join and read.
    pub read: RoomSet,
    /// The rooms it may send to.
    pub write: RoomSet,
    /// When the credentials stop being valid (a JWT's `exp`).
    pub expires: Option<SystemTime>,
}

impl Identity {
    /// Anonymous, every room, no expiry: a request let in by a shared-secret token, or by
    /// a server without authentication.
    pub fn anonymous() -> Self {
        Self {
            user: None,
            name: None,
            read: RoomSet::all(),
            write: RoomSet::all(),
            expires: None,
        }
    }

    /// The user `id`, every room, no expiry; narrow it with the `with_` methods.
    pub fn user(id: impl Into<String>) -> Self {
        Self {
            user: Some(id.into()),
            ..Self::anonymous()
        }
    }

    /// With a display name.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// With the rooms it may read and write.
    pub fn with_rooms(mut self, read: RoomSet, write: RoomSet) -> Self {
        self.read = read;
        self.write = write;
        self
    }

    /// Expiring at `at`.
    pub fn expiring_at(mut self, at: SystemTime) -> Self {
        self.expires = Some(at);
        self
    }

    /// Whether it has expired at `now`.
    pub fn is_expired(&self, now: SystemTime) -> bool {
        self.expires.is_some_and(|at| now >= at)
    }
}

impl Default for Identity {
    fn default() -> Self {
        Self::anonymous()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn patterns_match_names_and_prefixes() {
        let set = RoomSet::of(["lobby", "team-*"]);
        assert!(set.contains("lobby"));
        assert!(set.contains("team-a"));
        assert!(!set.contains("lobby2"));
        assert!(!set.contains("team"));
        assert!(!set.is_all());
        assert!(RoomSet::of(["*"]).contains("anything"));
        assert!(!RoomSet::none().contains("lobby"));
        assert!(RoomSet::all().is_all());
    }

    #[test]
    fn expiry() {
        let now = SystemTime::now();
        let id = Identity::user("u").expiring_at(now + Duration::from_secs(5));
        assert!(!id.is_expired(now));
        assert!(id.is_expired(now + Duration::from_secs(5)));
        assert!(!Identity::anonymous().is_expired(now));
    }
}
