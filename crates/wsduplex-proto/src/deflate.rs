//! permessage-deflate (RFC 7692): negotiation of its four parameters, and the per-message
//! compressor and decompressor a [`Connection`](crate::Connection) uses once it is agreed.
//!
//! Negotiation is pure string work: a client sends [`DeflateConfig::offer`] and checks the
//! answer with [`DeflateConfig::accept_response`]; a server picks the first acceptable offer
//! with [`DeflateConfig::negotiate`]. Either way the result is a [`DeflateParams`], which goes
//! into [`Config::deflate`](crate::Config::deflate).
//!
//! The compression itself needs the feature `deflate` (on by default). Without it this module
//! still compiles, so code that configures deflate builds either way, but nothing is ever
//! agreed: [`DeflateConfig::negotiate`] declines every offer, a client's
//! [`Request::deflate`](crate::handshake::client::Request::deflate) offers nothing, and a
//! [`Connection`](crate::Connection) ignores [`Config::deflate`](crate::Config::deflate).
//!
//! Window bits: zlib cannot compress with an 8-bit (256-byte) window, and silently uses 9
//! (zlib-rs does the same). That is safe whatever the peer: a zlib deflater never emits a
//! match farther back than its window size minus 262 bytes (`MAX_DIST`), which for 9 bits
//! is 250, within the 256 bytes an 8-bit inflater keeps. So an agreed 8 is accepted, and this
//! end compresses with 9 (RFC 7692 §7.1.2.1 allows any window up to the agreed one only in
//! the sense that back references stay within it, which `MAX_DIST` guarantees). Inflating
//! with 9 when the peer promised 8 is always safe: a larger window decodes a smaller one's
//! stream.

#[cfg(feature = "deflate")]
mod codec;
#[cfg(not(feature = "deflate"))]
#[path = "deflate/unavailable.rs"]
mod codec;
#[cfg(all(feature = "deflate", feature = "snapshot"))]
mod window;

pub(crate) use codec::{Deflater, InflateError, Inflater};

/// The extension's name in `Sec-WebSocket-Extensions`.
pub const EXTENSION_NAME: &str = "permessage-deflate";

/// What both ends agreed on in the opening handshake (RFC 7692 §7.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeflateParams {
    /// The server resets its compression context after each message.
    pub server_no_context_takeover: bool,
    /// The client resets its compression context after each message.
    pub client_no_context_takeover: bool,
    /// The largest LZ77 window the server compresses with, 8..=15 (15: not limited).
    pub server_max_window_bits: u8,
    /// The largest LZ77 window the client compresses with, 8..=15 (15: not limited).
    pub client_max_window_bits: u8,
}

impl Default for DeflateParams {
    fn default() -> Self {
        Self {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: 15,
            client_max_window_bits: 15,
        }
    }
}

impl DeflateParams {
    /// The `Sec-WebSocket-Extensions` value a server answers with for this agreement.
    pub fn to_header(&self) -> String {
        let mut s = String::from(EXTENSION_NAME);
        if self.server_no_context_takeover {
            s.push_str("; server_no_context_takeover");
        }
        if self.client_no_context_takeover {
            s.push_str("; client_no_context_takeover");
        }
        if self.server_max_window_bits < 15 {
            s.push_str(&format!(
                "; server_max_window_bits={}",
                self.server_max_window_bits
            ));
        }
        if self.client_max_window_bits < 15 {
            s.push_str(&format!(
                "; client_max_window_bits={}",
                self.client_max_window_bits
            ));
        }
        s
    }
}

/// This end's permessage-deflate policy: what it offers or accepts, and how it compresses.
///
/// The window bits and context takeover settings bound the memory a connection uses:
/// a compressor keeps about `2^(bits+2)` bytes plus 128 KiB of hash tables, a decompressor
/// `2^bits` bytes plus about 7 KiB. Without context takeover, nothing needs to survive
/// between messages and [`Connection::shrink_buffers`](crate::Connection::shrink_buffers)
/// frees both.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeflateConfig {
    /// zlib compression level, 0 (store) to 9 (smallest).
    pub level: u32,
    /// Messages shorter than this many bytes are sent uncompressed.
    pub threshold: usize,
    /// Largest window the server compresses with (a server limits itself; a client asks
    /// the server for it when below 15).
    pub server_max_window_bits: u8,
    /// Largest window the client compresses with (a client limits itself; a server asks the
    /// client for it when below 15, and declines offers that do not let it).
    pub client_max_window_bits: u8,
    /// The server resets its context per message (a server does it; a client asks for it).
    pub server_no_context_takeover: bool,
    /// The client resets its context per message (a client does it; a server asks for it).
    pub client_no_context_takeover: bool,
}

impl Default for DeflateConfig {
    /// Level 6 (zlib's default), threshold 64 bytes, 15-bit windows, context takeover.
    fn default() -> Self {
        Self {
            level: 6,
            threshold: 64,
            server_max_window_bits: 15,
            client_max_window_bits: 15,
            server_no_context_takeover: false,
            client_no_context_takeover: false,
        }
    }
}

/// Why a server's permessage-deflate response is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NegotiationError {
    /// The header is not a valid extension list.
    #[error("malformed Sec-WebSocket-Extensions header")]
    Malformed,
    /// An extension this end did not offer.
    #[error("server enabled extension {0:?}, which was not offered")]
    Unoffered(String),
    /// permessage-deflate accepted more than once.
    #[error("permessage-deflate accepted more than once")]
    Duplicate,
    /// A parameter that is unknown, repeated, has a bad value, or was not allowed by the offer.
    #[error("invalid permessage-deflate parameter {0:?}")]
    InvalidParam(String),
}

/// One element of an extension list: a name and its parameters, values unquoted.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Extension {
    pub(crate) name: String,
    pub(crate) params: Vec<(String, Option<String>)>,
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Parses a `Sec-WebSocket-Extensions` value (RFC 6455 §9.1): `1#(token *(";" token
/// ["=" (token | quoted-string)]))`. Empty list elements are skipped (RFC 7230 §7).
pub(crate) fn parse_extensions(value: &[u8]) -> Result<Vec<Extension>, NegotiationError> {
    struct P<'a> {
        s: &'a [u8],
        i: usize,
    }
    impl P<'_> {
        fn ws(&mut self) {
            while self.i < self.s.len() && matches!(self.s[self.i], b' ' | b'\t') {
                self.i += 1;
            }
        }
        fn peek(&self) -> Option<u8> {
            self.s.get(self.i).copied()
        }
        fn token(&mut self) -> Result<String, NegotiationError> {
            let start = self.i;
            while self.peek().is_some_and(is_tchar) {
                self.i += 1;
            }
            if self.i == start {
                return Err(NegotiationError::Malformed);
            }
            Ok(String::from_utf8_lossy(&self.s[start..self.i]).into_owned())
        }
        fn quoted(&mut self) -> Result<String, NegotiationError> {
            self.i += 1; // the opening quote
            let mut out = Vec::new();
            loop {
                match self.peek() {
                    None => return Err(NegotiationError::Malformed),
                    Some(b'"') => {
                        self.i += 1;
                        break;
                    }
                    Some(b'\\') => {
                        let c = self.s.get(self.i + 1).ok_or(NegotiationError::Malformed)?;
                        out.push(*c);
                        self.i += 2;
                    }
                    Some(c) => {
                        out.push(c);
                        self.i += 1;
                    }
                }
            }
            // RFC 6455 §9.1: a quoted value must still be a token once unquoted.
            if out.is_empty() || !out.iter().copied().all(is_tchar) {
                return Err(NegotiationError::Malformed);
            }
            Ok(String::from_utf8_lossy(&out).into_owned())
        }
    }
    let mut p = P { s: value, i: 0 };
    let mut out = Vec::new();
    loop {
        p.ws();
        match p.peek() {
            None => break,
            Some(b',') => {
                p.i += 1;
                continue;
            }
            Some(_) => {}
        }
        let name = p.token()?;
        let mut params = Vec::new();
        loop {
            p.ws();
            match p.peek() {
                None | Some(b',') => break,
                Some(b';') => p.i += 1,
                Some(_) => return Err(NegotiationError::Malformed),
            }
            p.ws();
            let key = p.token()?;
            p.ws();
            let val = if p.peek() == Some(b'=') {
                p.i += 1;
                p.ws();
                Some(if p.peek() == Some(b'"') {
                    p.quoted()?
                } else {
                    p.token()?
                })
            } else {
                None
            };
            params.push((key, val));
        }
        out.push(Extension { name, params });
    }
    if out.is_empty() {
        return Err(NegotiationError::Malformed);
    }
    Ok(out)
}

/// A window-bits value: a decimal 8..=15 without leading zeros (RFC 7692 §7.1.2).
fn window_bits(v: &str) -> Option<u8> {
    match v {
        "8" | "9" | "10" | "11" | "12" | "13" | "14" | "15" => v.parse().ok(),
        _ => None,
    }
}

/// The four parameters as one side wrote them, checked for RFC 7692 §7.1 syntax.
#[derive(Default)]
struct Raw {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: Option<u8>,
    /// `Some(None)`: present without a value (only legal in an offer).
    client_max_window_bits: Option<Option<u8>>,
}

impl Raw {
    /// RFC 7692 §5.1/§5.2: unknown parameters, repeated ones and bad values are refused.
    fn parse(params: &[(String, Option<String>)]) -> Result<Self, String> {
        let mut raw = Raw::default();
        let mut seen = [false; 4];
        for (key, val) in params {
            let bad = || {
                format!(
                    "{key}{}",
                    val.as_ref().map_or(String::new(), |v| format!("={v}"))
                )
            };
            let k = key.to_ascii_lowercase();
            let slot = match k.as_str() {
                "server_no_context_takeover" => 0,
                "client_no_context_takeover" => 1,
                "server_max_window_bits" => 2,
                "client_max_window_bits" => 3,
                _ => return Err(bad()),
            };
            if std::mem::replace(&mut seen[slot], true) {
                return Err(bad());
            }
            match (slot, val.as_deref()) {
                (0, None) => raw.server_no_context_takeover = true,
                (1, None) => raw.client_no_context_takeover = true,
                (2, Some(v)) => raw.server_max_window_bits = Some(window_bits(v).ok_or_else(bad)?),
                (3, None) => raw.client_max_window_bits = Some(None),
                (3, Some(v)) => {
                    raw.client_max_window_bits = Some(Some(window_bits(v).ok_or_else(bad)?))
                }
                _ => return Err(bad()),
            }
        }
        Ok(raw)
    }
}

fn clamp_bits(b: u8) -> u8 {
    b.clamp(8, 15)
}

impl DeflateConfig {
    /// The client's offer for `Sec-WebSocket-Extensions`. It always includes
    /// `client_max_window_bits`, telling the server it may limit this end's window (RFC 7692
    /// §7.1.2.2; browsers send it too).
    pub fn offer(&self) -> String {
        let mut s = String::from(EXTENSION_NAME);
        if self.server_no_context_takeover {
            s.push_str("; server_no_context_takeover");
        }
        if self.client_no_context_takeover {
            s.push_str("; client_no_context_takeover");
        }
        if self.server_max_window_bits < 15 {
            let b = clamp_bits(self.server_max_window_bits);
            s.push_str(&format!("; server_max_window_bits={b}"));
        }
        match self.client_max_window_bits {
            15.. => s.push_str("; client_max_window_bits"),
            b => s.push_str(&format!("; client_max_window_bits={}", clamp_bits(b))),
        }
        s
    }

    /// Server: picks the first acceptable permessage-deflate offer among every
    /// `Sec-WebSocket-Extensions` value, in the client's order (RFC 7692 §5: offers are in
    /// preference order, and an offer the server cannot accept is declined, not fatal).
    /// `None`: no offer, or none acceptable; answer without the extension. A header that is
    /// not a valid extension list declines everything. Built without the feature `deflate`,
    /// always `None`: this end could not compress.
    pub fn negotiate<'a>(
        &self,
        values: impl IntoIterator<Item = &'a [u8]>,
    ) -> Option<DeflateParams> {
        if !cfg!(feature = "deflate") {
            return None;
        }
        for value in values {
            let Ok(exts) = parse_extensions(value) else {
                return None;
            };
            for ext in exts {
                if !ext.name.eq_ignore_ascii_case(EXTENSION_NAME) {
                    continue;
                }
                if let Some(p) = Raw::parse(&ext.params)
                    .ok()
                    .and_then(|r| self.accept_offer(&r))
                {
                    return Some(p);
                }
            }
        }
        None
    }

    fn accept_offer(&self, offer: &Raw) -> Option<DeflateParams> {
        let own = clamp_bits(self.server_max_window_bits);
        // RFC 7692 §7.1.2.1: answer with the same or a smaller value; 8 is handled by
        // compressing with 9 (see the module docs).
        let server_max_window_bits = offer.server_max_window_bits.map_or(own, |b| b.min(own));
        let want = clamp_bits(self.client_max_window_bits);
        let client_max_window_bits = match offer.client_max_window_bits {
            // RFC 7692 §7.1.2.2: without the parameter in the offer the server cannot limit
            // the client's window: decline rather than receive more than configured.
            None if want < 15 => return None,
            None => 15,
            Some(None) => want,
            Some(Some(hint)) => want.min(hint),
        };
        Some(DeflateParams {
            server_no_context_takeover: offer.server_no_context_takeover
                || self.server_no_context_takeover,
            client_no_context_takeover: offer.client_no_context_takeover
                || self.client_no_context_takeover,
            server_max_window_bits,
            client_max_window_bits,
        })
    }

    /// Client: checks the server's `Sec-WebSocket-Extensions` values against
    /// [`DeflateConfig::offer`]. `Ok(None)`: the server declined (no header). Anything the
    /// offer did not allow fails the connection (RFC 7692 §5.1, §7.1).
    pub fn accept_response<'a>(
        &self,
        values: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<Option<DeflateParams>, NegotiationError> {
        let mut agreed = None;
        for value in values {
            if value.trim_ascii().is_empty() {
                continue;
            }
            for ext in parse_extensions(value)? {
                if !ext.name.eq_ignore_ascii_case(EXTENSION_NAME) {
                    return Err(NegotiationError::Unoffered(ext.name));
                }
                if agreed.is_some() {
                    return Err(NegotiationError::Duplicate);
                }
                agreed = Some(self.check_response(&ext.params)?);
            }
        }
        Ok(agreed)
    }

    fn check_response(
        &self,
        params: &[(String, Option<String>)],
    ) -> Result<DeflateParams, NegotiationError> {
        let raw = Raw::parse(params).map_err(NegotiationError::InvalidParam)?;
        // RFC 7692 §7.1.1.1, §7.1.2.1: a server that accepts an offer with these parameters
        // answers with them; without them it did not accept what was asked.
        if self.server_no_context_takeover && !raw.server_no_context_takeover {
            return Err(NegotiationError::InvalidParam(
                "server_no_context_takeover missing".into(),
            ));
        }
        if self.server_max_window_bits < 15 && raw.server_max_window_bits.is_none() {
            return Err(NegotiationError::InvalidParam(
                "server_max_window_bits missing".into(),
            ));
        }
        let offered_server = clamp_bits(self.server_max_window_bits);
        let server_max_window_bits = match raw.server_max_window_bits {
            // RFC 7692 §7.1.2.1: a larger value than offered fails the connection.
            Some(b) if b > offered_server => {
                return Err(NegotiationError::InvalidParam(format!(
                    "server_max_window_bits={b}"
                )))
            }
            Some(b) => b,
            None => offered_server,
        };
        let own = clamp_bits(self.client_max_window_bits);
        let client_max_window_bits = match raw.client_max_window_bits {
            None => own,
            // RFC 7692 §7.1.2.2: in a response the parameter has a value.
            Some(None) => {
                return Err(NegotiationError::InvalidParam(
                    "client_max_window_bits".into(),
                ))
            }
            Some(Some(b)) => b.min(own),
        };
        Ok(DeflateParams {
            server_no_context_takeover: raw.server_no_context_takeover,
            client_no_context_takeover: raw.client_no_context_takeover
                || self.client_no_context_takeover,
            server_max_window_bits,
            client_max_window_bits,
        })
    }
}

#[cfg(all(test, feature = "deflate"))]
#[path = "deflate_tests.rs"]
pub(crate) mod tests;
