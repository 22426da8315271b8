//! UTF-8: a validated byte string, and an incremental validator that fails on the first
//! invalid byte, even when a code point is split across frames or reads.

use bytes::Bytes;
use std::fmt;

/// Bytes that are known to be valid UTF-8; cheap to clone (a shared [`Bytes`]).
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Utf8Bytes(Bytes);

impl Utf8Bytes {
    /// An empty string.
    pub const fn new() -> Self {
        Self(Bytes::new())
    }

    /// A string from a `'static` str, without copying.
    pub const fn from_static(s: &'static str) -> Self {
        Self(Bytes::from_static(s.as_bytes()))
    }

    /// Checks `bytes` and wraps them.
    pub fn try_from_bytes(bytes: Bytes) -> Result<Self, Utf8Error> {
        match simdutf8::basic::from_utf8(&bytes) {
            Ok(_) => Ok(Self(bytes)),
            Err(_) => Err(Utf8Error),
        }
    }

    /// Wraps bytes the caller has already validated with a [`Utf8Validator`].
    pub(crate) fn from_validated(bytes: Bytes) -> Self {
        debug_assert!(std::str::from_utf8(&bytes).is_ok());
        Self(bytes)
    }

    /// The text.
    #[allow(unsafe_code)]
    pub fn as_str(&self) -> &str {
        // SAFETY: every constructor validates (or, for `from_validated`, the crate has
        // validated) the bytes, and the bytes are immutable.
        unsafe { std::str::from_utf8_unchecked(&self.0) }
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The underlying shared bytes.
    pub fn into_bytes(self) -> Bytes {
        self.0
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the string is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::ops::Deref for Utf8Bytes {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl From<String> for Utf8Bytes {
    fn from(s: String) -> Self {
        Self(Bytes::from(s))
    }
}

impl From<&str> for Utf8Bytes {
    fn from(s: &str) -> Self {
        Self(Bytes::copy_from_slice(s.as_bytes()))
    }
}

impl fmt::Debug for Utf8Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Utf8Bytes({} bytes)", self.0.len())
    }
}

impl fmt::Display for Utf8Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Input was not valid UTF-8.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid utf-8")]
pub struct Utf8Error;

/// Most text is ASCII, and most messages are short: below 64 bytes simdutf8 hands over to
/// the standard library's byte-by-byte check, where this is a few word loads.
fn short_ascii(data: &[u8]) -> bool {
    data.len() < 64 && data.is_ascii()
}

/// Validates a whole text at once (a [`Utf8Validator`] without the state a text arriving in
/// pieces needs: a whole message is checked this way).
pub(crate) fn validate(data: &[u8]) -> Result<(), Utf8Error> {
    validate_str(data).map(|_| ())
}

/// [`validate`], giving the text back as a `str`. Inlined: the short-ASCII check is a few
/// instructions, the call would be as many.
#[inline]
#[allow(unsafe_code)]
pub(crate) fn validate_str(data: &[u8]) -> Result<&str, Utf8Error> {
    if short_ascii(data) {
        // SAFETY: ASCII is UTF-8, and `short_ascii` has just checked every byte.
        return Ok(unsafe { std::str::from_utf8_unchecked(data) });
    }
    simdutf8::basic::from_utf8(data).map_err(|_| Utf8Error)
}

/// Validates a byte stream fed in arbitrary pieces; reports an error as soon as the bytes
/// seen so far cannot be the start of valid UTF-8.
#[derive(Clone, Debug, Default)]
pub struct Utf8Validator {
    /// The bytes of a code point cut by the end of the previous piece (at most 3).
    partial: [u8; 4],
    partial_len: u8,
}

impl Utf8Validator {
    /// A validator at the start of a string.
    pub const fn new() -> Self {
        Self {
            partial: [0; 4],
            partial_len: 0,
        }
    }

    /// Feeds the next piece. Fails if the bytes so far are not a prefix of valid UTF-8.
    pub fn feed(&mut self, mut data: &[u8]) -> Result<(), Utf8Error> {
        if self.partial_len > 0 {
            let have = self.partial_len as usize;
            let need = match self.partial[0] {
                0xC0..=0xDF => 2,
                0xE0..=0xEF => 3,
                _ => 4,
            };
            let take = (need - have).min(data.len());
            self.partial[have..have + take].copy_from_slice(&data[..take]);
            let len = have + take;
            match std::str::from_utf8(&self.partial[..len]) {
                Ok(_) => self.partial_len = 0,
                Err(e) if e.error_len().is_none() => {
                    self.partial_len = len as u8;
                    return Ok(());
                }
                Err(_) => return Err(Utf8Error),
            }
            data = &data[take..];
        }
        if short_ascii(data) {
            return Ok(());
        }
        match simdutf8::compat::from_utf8(data) {
            Ok(_) => Ok(()),
            // Cut mid code point, and the cut-off bytes are a valid prefix: keep them.
            Err(e) if e.error_len().is_none() => {
                let tail = &data[e.valid_up_to()..];
                self.partial[..tail.len()].copy_from_slice(tail);
                self.partial_len = tail.len() as u8;
                Ok(())
            }
            Err(_) => Err(Utf8Error),
        }
    }

    /// The bytes of a code point cut by the end of the last piece (`crate::snapshot`; a
    /// validator fed them alone is where this one is).
    #[cfg(feature = "snapshot")]
    pub(crate) fn pending(&self) -> &[u8] {
        &self.partial[..self.partial_len as usize]
    }

    /// Ends the string: fails if it stops inside a code point. Resets the validator.
    pub fn finish(&mut self) -> Result<(), Utf8Error> {
        let complete = self.partial_len == 0;
        self.partial_len = 0;
        if complete {
            Ok(())
        } else {
            Err(Utf8Error)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_all_splits(input: &[u8]) -> Result<(), Utf8Error> {
        let whole = std::str::from_utf8(input).is_ok();
        for a in 0..=input.len() {
            for b in a..=input.len() {
                let mut v = Utf8Validator::new();
                let r = v
                    .feed(&input[..a])
                    .and_then(|_| v.feed(&input[a..b]))
                    .and_then(|_| v.feed(&input[b..]))
                    .and_then(|_| v.finish());
                assert_eq!(r.is_ok(), whole, "{input:x?} split at {a},{b}");
            }
        }
        if whole {
            Ok(())
        } else {
            Err(Utf8Error)
        }
    }

    #[test]
    fn split_anywhere_agrees_with_std() {
        let samples: &[&[u8]] = &[
            "Hello-µ@ßöäüàá-UTF-8!!".as_bytes(),
            "κόσμε".as_bytes(),
            &[0xf0, 0x9f, 0x98, 0x80, 0x41],
            &[
                0xce, 0xba, 0xe1, 0xbd, 0xb9, 0xcf, 0x83, 0xce, 0xbc, 0xce, 0xb5, 0xed, 0xa0, 0x80,
            ],
            &[0xf4, 0x90, 0x80, 0x80],
            &[0xe0, 0x80, 0xaf],
            &[0xc0, 0xaf],
            &[0xf0, 0x9f, 0x98],
            &[0xed, 0x9f, 0xbf, 0xee, 0x80, 0x80],
            &[0x80],
        ];
        for s in samples {
            let _ = check_all_splits(s);
        }
    }

    #[test]
    fn fails_fast_on_first_impossible_byte() {
        // 0xF5 can never start a code point: fail on it, not at the end.
        let mut v = Utf8Validator::new();
        assert!(v.feed(b"abc").is_ok());
        assert!(v.feed(&[0xf5]).is_err());
        // A surrogate is invalid from its second byte on.
        let mut v = Utf8Validator::new();
        assert!(v.feed(&[0xed]).is_ok());
        assert!(v.feed(&[0xa0]).is_err());
        // A valid prefix is not an error until the string ends.
        let mut v = Utf8Validator::new();
        assert!(v.feed(&[0xf0, 0x9f]).is_ok());
        assert!(v.finish().is_err());
    }

    #[test]
    fn the_short_ascii_check_finds_a_high_byte_at_every_length_and_position() {
        // It is what lets short text skip validation (and `validate_str` skip the check).
        // Under Miri (slow), the lengths around the 64-byte edge and a few below it.
        let lengths =
            (0..80).filter(|&len| !cfg!(miri) || len % 9 == 0 || (60..=68).contains(&len));
        for len in lengths {
            let ascii: Vec<u8> = (0..len).map(|i| (i % 128) as u8).collect();
            assert_eq!(short_ascii(&ascii), len < 64, "{len}");
            for at in 0..len {
                for high in [0x80, 0xc3, 0xff] {
                    let mut v = ascii.clone();
                    v[at] = high;
                    assert!(!short_ascii(&v), "{len} {at} {high:#x}");
                    assert!(validate_str(&v).is_ok() == std::str::from_utf8(&v).is_ok());
                }
            }
            assert_eq!(validate_str(&ascii).unwrap().as_bytes(), &ascii[..]);
        }
    }

    #[test]
    fn as_str_reads_what_std_reads() {
        // `as_str` skips the check its constructors made: the text must be the same as the
        // checked reading of the same bytes, for every way a `Utf8Bytes` is made.
        for text in ["", "a", "héllo wörld", "€𝄞 ok", &"🎉".repeat(40)] {
            let bytes = Bytes::copy_from_slice(text.as_bytes());
            let checked = std::str::from_utf8(&bytes).unwrap();
            let all = [
                Utf8Bytes::try_from_bytes(bytes.clone()).unwrap(),
                Utf8Bytes::from_validated(bytes.clone()),
                Utf8Bytes::from(text),
                Utf8Bytes::from(text.to_string()),
            ];
            for u in &all {
                assert_eq!(u.as_str(), checked);
                assert_eq!(u.as_str().as_ptr(), u.as_bytes().as_ptr());
            }
        }
    }

    #[test]
    fn utf8_bytes_rejects_invalid() {
        assert!(Utf8Bytes::try_from_bytes(Bytes::from_static(&[0xff])).is_err());
        assert_eq!(
            Utf8Bytes::try_from_bytes(Bytes::from_static(b"hi"))
                .unwrap()
                .as_str(),
            "hi"
        );
    }
}
