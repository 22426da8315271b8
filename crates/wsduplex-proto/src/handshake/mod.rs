//! The opening handshake (RFC 6455 §4): HTTP/1.1 request and response, both roles.
//!
//! Parsers report how many bytes they consumed: anything after the head in the same read is
//! the first WebSocket frames and belongs to the [`Connection`](crate::Connection).

pub mod client;
pub mod server;

use base64::Engine as _;
use sha1::{Digest, Sha1};

/// RFC 6455 §1.3: the GUID appended to the key.
const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key`: base64(SHA-1(key + GUID)).
pub fn accept_key(key: &[u8]) -> String {
    // base64: ASCII.
    accept_key_bytes(key)
        .iter()
        .map(|&b| char::from(b))
        .collect()
}

/// [`accept_key`] on the stack: the server writes it straight into its `101`.
pub(crate) fn accept_key_bytes(key: &[u8]) -> [u8; 28] {
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(GUID);
    let mut out = [0u8; 28];
    // 20 bytes always encode to 28.
    let _ = base64::engine::general_purpose::STANDARD.encode_slice(sha.finalize(), &mut out);
    out
}

/// Whether a comma-separated header value holds `token` (case-insensitive).
pub(crate) fn has_token(value: &[u8], token: &str) -> bool {
    // The usual value is the token alone (`Upgrade: websocket`).
    if value.eq_ignore_ascii_case(token.as_bytes()) {
        return true;
    }
    value
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

/// Whether `s` is an RFC 7230 token (subprotocol names must be).
pub(crate) fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Whether a header value is safe to put on the wire (no CR, LF or NUL).
pub(crate) fn is_safe_value(s: &str) -> bool {
    !s.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_key_matches_rfc_example() {
        // RFC 6455 §1.3.
        assert_eq!(
            accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn tokens_are_found_in_lists() {
        assert!(has_token(b"keep-alive, Upgrade", "upgrade"));
        assert!(has_token(b"UPGRADE", "upgrade"));
        assert!(!has_token(b"keep-alive, upgrades", "upgrade"));
        assert!(is_token("chat.v2"));
        assert!(!is_token("a b"));
        assert!(!is_token(""));
    }
}
