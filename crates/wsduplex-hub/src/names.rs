//! Room and display-name rules.

/// Longest room name, in characters.
pub const MAX_ROOM_LEN: usize = 64;
/// Longest display name, in characters (before a `-N` suffix).
pub const MAX_NAME_LEN: usize = 32;

/// Why a room or display name was refused (answered with `400` and this text).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    /// The room name is empty, too long, or has a character outside `A-Z a-z 0-9 _ - .`.
    #[error("room names are 1-{MAX_ROOM_LEN} characters from A-Z a-z 0-9 _ - .")]
    Room,
    /// The display name is empty, too long, or has a character that is not a letter, a
    /// digit, a space, `_`, `-` or `.`.
    #[error("names are 1-{MAX_NAME_LEN} letters, digits, spaces, _ - or .")]
    Name,
}

/// Checks a room name: 1-64 characters from `A-Z a-z 0-9 _ - .`.
pub fn validate_room(room: &str) -> Result<&str, NameError> {
    let ok = !room.is_empty()
        && room.len() <= MAX_ROOM_LEN
        && room
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if ok {
        Ok(room)
    } else {
        Err(NameError::Room)
    }
}

/// Checks a display name and returns it trimmed: 1-32 characters, letters and digits of
/// any script, spaces, `_ - .`. Runs of spaces are kept as typed; control characters, other
/// punctuation and symbols are refused.
pub fn validate_name(name: &str) -> Result<&str, NameError> {
    let name = name.trim();
    let count = name.chars().count();
    let ok = (1..=MAX_NAME_LEN).contains(&count)
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, ' ' | '_' | '-' | '.'));
    if ok {
        Ok(name)
    } else {
        Err(NameError::Name)
    }
}

/// `name` if `taken` says it is free, else the first free `name-2`, `name-3`, ...
pub fn unique_name(name: &str, taken: impl Fn(&str) -> bool) -> String {
    if !taken(name) {
        return name.to_string();
    }
    (2u64..)
        .map(|n| format!("{name}-{n}"))
        .find(|candidate| !taken(candidate))
        .unwrap_or_else(|| name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rooms() {
        assert_eq!(validate_room("lobby"), Ok("lobby"));
        assert_eq!(validate_room("a.b-c_9"), Ok("a.b-c_9"));
        assert!(validate_room(&"r".repeat(MAX_ROOM_LEN)).is_ok());
        for bad in ["", "a b", "a/b", "é", "<x>", &"r".repeat(MAX_ROOM_LEN + 1)] {
            assert_eq!(validate_room(bad), Err(NameError::Room), "{bad:?}");
        }
    }

    #[test]
    fn names() {
        assert_eq!(validate_name("  alice "), Ok("alice"));
        assert_eq!(validate_name("Zoë 2.0"), Ok("Zoë 2.0"));
        assert_eq!(validate_name("名前"), Ok("名前"));
        assert!(validate_name(&"é".repeat(MAX_NAME_LEN)).is_ok());
        for bad in [
            "",
            "   ",
            "a\nb",
            "a\u{0}b",
            "<script>",
            "a\"b",
            "😀",
            &"x".repeat(MAX_NAME_LEN + 1),
        ] {
            assert_eq!(validate_name(bad), Err(NameError::Name), "{bad:?}");
        }
    }

    #[test]
    fn unique() {
        let taken = ["alice", "alice-2", "bob"];
        let is_taken = |n: &str| taken.contains(&n);
        assert_eq!(unique_name("carol", is_taken), "carol");
        assert_eq!(unique_name("bob", is_taken), "bob-2");
        assert_eq!(unique_name("alice", is_taken), "alice-3");
    }
}
