//! JSON Web Tokens (RFC 7519) as identities: HS256 with a shared secret, RS256 or ES256
//! with a public key, verified by the `jsonwebtoken` crate.
//!
//! The claims read (the shape is in `docs/auth.md`):
//! - `sub` (required): the user id;
//! - `exp` (required) and `nbf` (if present), with [`LEEWAY_SECS`] of leeway;
//! - `name`: the display name (no control characters);
//! - `rooms`: the permissions, `{"read": ["lobby", "team-*"], "write": ["lobby"]}` (a
//!   missing list is no room), or a list meaning both; without the claim, every room;
//! - `aud` and `iss`, when [`JwtAuth::audience`] or [`JwtAuth::issuer`] asks for them.
//!
//! Only the configured key's algorithm is accepted: a token that says `alg: none`, or
//! HS256 against a public key (algorithm confusion), is refused. A refusal is logged with
//! its reason, never with the token.

use super::{tokens, Authenticated, Denied, Identify, IdentifyFuture, Identity, RoomSet};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use proto::handshake::server::Request;
use std::fmt;
use std::time::{Duration, SystemTime};

/// Seconds of clock difference allowed on `exp` and `nbf`.
pub const LEEWAY_SECS: u64 = 5;

/// Why a key could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JwtKeyError {
    /// The secret is empty.
    #[error("the JWT secret is empty")]
    EmptySecret,
    /// Neither an RSA nor a P-256 public key in PEM.
    #[error("not an RSA or EC (P-256) public key in PEM")]
    NotAPublicKey,
}

/// Lets in requests that carry a valid JWT (in `Authorization: Bearer`, `?access_token=`
/// or the `wsduplex_token` cookie), as the [`Identity`] its claims describe.
#[derive(Clone)]
pub struct JwtAuth {
    key: DecodingKey,
    validation: Validation,
}

impl fmt::Debug for JwtAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JwtAuth({:?})", self.validation.algorithms)
    }
}

#[derive(serde::Deserialize)]
struct Claims {
    // Optional here, required by the validation: a missing one is reported as such.
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    exp: Option<u64>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    rooms: Option<Rooms>,
}

#[derive(serde::Deserialize)]
#[serde(untagged)]
enum Rooms {
    Both(Vec<String>),
    Split {
        #[serde(default)]
        read: Vec<String>,
        #[serde(default)]
        write: Vec<String>,
    },
}

impl JwtAuth {
    /// HS256 tokens signed with `secret`.
    pub fn hs256(secret: &[u8]) -> Result<Self, JwtKeyError> {
        if secret.is_empty() {
            return Err(JwtKeyError::EmptySecret);
        }
        Ok(Self::with(
            DecodingKey::from_secret(secret),
            Algorithm::HS256,
        ))
    }

    /// RS256 or ES256 tokens, by the kind of the public key in `pem` (`PUBLIC KEY`, or
    /// `RSA PUBLIC KEY`).
    pub fn public_key_pem(pem: &[u8]) -> Result<Self, JwtKeyError> {
        // A private key parses too, and would then verify nothing.
        let text = String::from_utf8_lossy(pem);
        if !text.contains("PUBLIC KEY-----") || text.contains("PRIVATE KEY-----") {
            return Err(JwtKeyError::NotAPublicKey);
        }
        if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
            return Ok(Self::with(key, Algorithm::RS256));
        }
        match DecodingKey::from_ec_pem(pem) {
            Ok(key) => Ok(Self::with(key, Algorithm::ES256)),
            Err(_) => Err(JwtKeyError::NotAPublicKey),
        }
    }

    fn with(key: DecodingKey, algorithm: Algorithm) -> Self {
        let mut validation = Validation::new(algorithm);
        validation.algorithms = vec![algorithm];
        validation.leeway = LEEWAY_SECS;
        validation.validate_nbf = true;
        validation.validate_aud = false;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Self { key, validation }
    }

    /// Requires `aud` to be (or contain) `audience`.
    pub fn audience(mut self, audience: &str) -> Self {
        self.validation.set_audience(&[audience]);
        self.validation.validate_aud = true;
        self
    }

    /// Requires `iss` to be `issuer`.
    pub fn issuer(mut self, issuer: &str) -> Self {
        self.validation.set_issuer(&[issuer]);
        self
    }

    /// The identity `token` stands for, or why it is refused (`401`).
    pub fn verify(&self, token: &str) -> Result<Identity, Denied> {
        if !self.accepts_algorithm(token) {
            return Err(Denied::unauthorized("token algorithm not accepted"));
        }
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map_err(|e| Denied::unauthorized(reason(e.kind())))?;
        let claims = data.claims;
        let (Some(sub), Some(exp)) = (claims.sub, claims.exp) else {
            return Err(Denied::unauthorized(
                "token lacks a required claim (exp, sub)",
            ));
        };
        if sub.is_empty() || sub.chars().any(char::is_control) {
            return Err(Denied::unauthorized("invalid sub claim"));
        }
        if let Some(name) = &claims.name {
            if name.trim().is_empty() || name.chars().any(char::is_control) {
                return Err(Denied::unauthorized("invalid name claim"));
            }
        }
        let (read, write) = match claims.rooms {
            None => (RoomSet::all(), RoomSet::all()),
            Some(Rooms::Both(rooms)) => (RoomSet::of(rooms.clone()), RoomSet::of(rooms)),
            Some(Rooms::Split { read, write }) => (RoomSet::of(read), RoomSet::of(write)),
        };
        let mut identity = Identity::user(sub)
            .with_rooms(read, write)
            .expiring_at(SystemTime::UNIX_EPOCH + Duration::from_secs(exp));
        identity.name = claims.name;
        Ok(identity)
    }

    /// Whether the header's `alg` is the key's: `none`, or HS256 against a public key, is
    /// told apart from a malformed token (`jsonwebtoken` cannot even parse `none`).
    fn accepts_algorithm(&self, token: &str) -> bool {
        use base64::Engine as _;
        let Some(header) = token.split('.').next() else {
            return false;
        };
        let Ok(json) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(header) else {
            return true; // malformed: reported as such by the decoder
        };
        #[derive(serde::Deserialize)]
        struct Alg {
            alg: Option<String>,
        }
        match serde_json::from_slice::<Alg>(&json) {
            Ok(Alg { alg: Some(alg) }) => self
                .validation
                .algorithms
                .iter()
                .any(|a| format!("{a:?}") == alg),
            Ok(Alg { alg: None }) => false,
            Err(_) => true,
        }
    }

    fn check(&self, request: &Request) -> Result<Authenticated, Denied> {
        let (found, _) = tokens(request, false);
        let Some((credential, token)) = found.into_iter().next() else {
            return Err(Denied::unauthorized(
                "a token is required (Authorization: Bearer, ?access_token= or the wsduplex_token cookie)",
            ));
        };
        let token =
            std::str::from_utf8(&token).map_err(|_| Denied::unauthorized("malformed token"))?;
        let identity = self.verify(token)?;
        Ok(Authenticated::new(identity, credential))
    }
}

impl Identify for JwtAuth {
    fn identify<'a>(&'a self, request: &'a Request) -> IdentifyFuture<'a> {
        let checked = self.check(request);
        if let Err(denied) = &checked {
            // The reason only: a token in a log is a credential in a log.
            tracing::info!(reason = denied.reason(), "jwt refused");
        }
        Box::pin(std::future::ready(checked))
    }
}

/// The one-line reason for a refused token.
fn reason(kind: &ErrorKind) -> &'static str {
    match kind {
        ErrorKind::ExpiredSignature => "token expired",
        ErrorKind::ImmatureSignature => "token not yet valid",
        ErrorKind::InvalidSignature => "invalid token signature",
        ErrorKind::InvalidAudience => "token for another audience",
        ErrorKind::InvalidIssuer => "token from another issuer",
        ErrorKind::InvalidAlgorithm
        | ErrorKind::InvalidAlgorithmName
        | ErrorKind::MissingAlgorithm => "token algorithm not accepted",
        ErrorKind::MissingRequiredClaim(_) => "token lacks a required claim (exp, sub)",
        _ => "malformed token",
    }
}

#[cfg(test)]
mod tests;
