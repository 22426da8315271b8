use super::*;
use crate::auth::Credential;
use jsonwebtoken::{encode, EncodingKey, Header};
use proto::handshake::server::Limits;
use serde_json::{json, Value};

const SECRET: &[u8] = b"test-secret-for-unit-tests";
const RSA_PRIVATE: &str = include_str!("../../../../../tests/fixtures/jwt/rsa_private.pem");
const RSA_PUBLIC: &str = include_str!("../../../../../tests/fixtures/jwt/rsa_public.pem");
const EC_PRIVATE: &str = include_str!("../../../../../tests/fixtures/jwt/ec_private.pem");
const EC_PUBLIC: &str = include_str!("../../../../../tests/fixtures/jwt/ec_public.pem");

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

fn claims(extra: Value) -> Value {
    let mut c = json!({"sub": "u1", "exp": now() + 600});
    c.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    c
}

fn hs(claims: &Value) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(SECRET),
    )
    .unwrap()
}

fn refused(auth: &JwtAuth, token: &str) -> &'static str {
    let denied = auth.verify(token).unwrap_err();
    assert_eq!(denied.status(), 401);
    denied.reason()
}

#[test]
fn hs256_claims_become_the_identity() {
    let auth = JwtAuth::hs256(SECRET).unwrap();
    let token = hs(&claims(json!({
        "name": "Alice", "rooms": {"read": ["lobby", "team-*"], "write": ["lobby"]}
    })));
    let id = auth.verify(&token).unwrap();
    assert_eq!(id.user.as_deref(), Some("u1"));
    assert_eq!(id.name.as_deref(), Some("Alice"));
    assert!(id.read.contains("team-x") && !id.read.contains("other"));
    assert!(id.write.contains("lobby") && !id.write.contains("team-x"));
    assert!(id.expires.is_some());
    // A list means both; no claim means every room.
    let both = auth.verify(&hs(&claims(json!({"rooms": ["a"]})))).unwrap();
    assert!(both.read.contains("a") && both.write.contains("a") && !both.write.contains("b"));
    let all = auth.verify(&hs(&claims(json!({})))).unwrap();
    assert!(all.read.is_all() && all.write.is_all() && all.name.is_none());
}

#[test]
fn rs256_and_es256_from_pem() {
    let rsa = JwtAuth::public_key_pem(RSA_PUBLIC.as_bytes()).unwrap();
    let key = EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap();
    let token = encode(&Header::new(Algorithm::RS256), &claims(json!({})), &key).unwrap();
    assert_eq!(rsa.verify(&token).unwrap().user.as_deref(), Some("u1"));

    let ec = JwtAuth::public_key_pem(EC_PUBLIC.as_bytes()).unwrap();
    let key = EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()).unwrap();
    let token = encode(&Header::new(Algorithm::ES256), &claims(json!({})), &key).unwrap();
    assert_eq!(ec.verify(&token).unwrap().user.as_deref(), Some("u1"));
    // Each key its own algorithm only.
    assert_eq!(refused(&rsa, &token), "token algorithm not accepted");

    assert!(JwtAuth::public_key_pem(b"not a key").is_err());
    assert!(JwtAuth::public_key_pem(RSA_PRIVATE.as_bytes()).is_err());
    assert!(JwtAuth::hs256(b"").is_err());
}

#[test]
fn algorithm_confusion_and_none_are_refused() {
    let rsa = JwtAuth::public_key_pem(RSA_PUBLIC.as_bytes()).unwrap();
    // HS256 signed with the public key's bytes: the classic confusion attack.
    let forged = encode(
        &Header::new(Algorithm::HS256),
        &claims(json!({})),
        &EncodingKey::from_secret(RSA_PUBLIC.as_bytes()),
    )
    .unwrap();
    assert_eq!(refused(&rsa, &forged), "token algorithm not accepted");

    use base64::Engine as _;
    let b64 = |v: &Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string().as_bytes())
    };
    let none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(&claims(json!({})))
    );
    let hs = JwtAuth::hs256(SECRET).unwrap();
    assert_eq!(refused(&hs, &none), "token algorithm not accepted");
    assert_eq!(refused(&rsa, &none), "token algorithm not accepted");
}

#[test]
fn bad_tokens_each_with_a_reason() {
    let auth = JwtAuth::hs256(SECRET).unwrap();
    let other = encode(
        &Header::new(Algorithm::HS256),
        &claims(json!({})),
        &EncodingKey::from_secret(b"another secret"),
    )
    .unwrap();
    assert_eq!(refused(&auth, &other), "invalid token signature");
    let expired = hs(&json!({"sub": "u1", "exp": now() - 60}));
    assert_eq!(refused(&auth, &expired), "token expired");
    // Within the leeway: still good.
    assert!(auth
        .verify(&hs(&json!({"sub": "u1", "exp": now() - 2})))
        .is_ok());
    let early = hs(&claims(json!({"nbf": now() + 600})));
    assert_eq!(refused(&auth, &early), "token not yet valid");
    let no_exp = hs(&json!({"sub": "u1"}));
    assert_eq!(
        refused(&auth, &no_exp),
        "token lacks a required claim (exp, sub)"
    );
    let no_sub = hs(&json!({"exp": now() + 60}));
    assert_eq!(
        refused(&auth, &no_sub),
        "token lacks a required claim (exp, sub)"
    );
    let control = hs(&claims(json!({"name": "ali\u{7}ce"})));
    assert_eq!(refused(&auth, &control), "invalid name claim");
    assert_eq!(refused(&auth, "not.a.token"), "malformed token");
    // A flipped payload byte: the signature no longer matches.
    let good = hs(&claims(json!({"name": "Al"})));
    let mut parts: Vec<String> = good.split('.').map(str::to_string).collect();
    parts[1] = hs(&claims(json!({"name": "Eve"})))
        .split('.')
        .nth(1)
        .unwrap()
        .into();
    assert_eq!(refused(&auth, &parts.join(".")), "invalid token signature");
}

#[test]
fn audience_and_issuer() {
    let auth = JwtAuth::hs256(SECRET)
        .unwrap()
        .audience("chat")
        .issuer("https://login.example");
    let good = hs(&claims(
        json!({"aud": "chat", "iss": "https://login.example"}),
    ));
    assert!(auth.verify(&good).is_ok());
    let other = hs(&claims(
        json!({"aud": "billing", "iss": "https://login.example"}),
    ));
    assert_eq!(refused(&auth, &other), "token for another audience");
    let issuer = hs(&claims(
        json!({"aud": "chat", "iss": "https://evil.example"}),
    ));
    assert_eq!(refused(&auth, &issuer), "token from another issuer");
    // Without an audience asked for, a token that names one is still fine.
    let plain = JwtAuth::hs256(SECRET).unwrap();
    assert!(plain.verify(&other).is_ok());
}

#[tokio::test]
async fn found_in_each_place_with_its_credential() {
    let auth = crate::auth::AuthHook::identify_with(JwtAuth::hs256(SECRET).unwrap());
    let token = hs(&claims(json!({})));
    let req = |target: String, headers: String| {
        let head = format!("GET {target} HTTP/1.1\r\nHost: x\r\n{headers}\r\n");
        Request::parse(head.as_bytes(), &Limits::default())
            .unwrap()
            .unwrap()
            .0
    };
    for (target, headers, credential) in [
        (
            "/".into(),
            format!("Authorization: Bearer {token}\r\n"),
            Credential::Authorization,
        ),
        (
            format!("/?access_token={token}"),
            String::new(),
            Credential::Query,
        ),
        (
            "/".into(),
            format!("Cookie: a=b; wsduplex_token={token}\r\n"),
            Credential::Cookie,
        ),
    ] {
        let got = auth.identify(&req(target, headers)).await.unwrap();
        assert_eq!(got.credential, credential);
        assert_eq!(got.identity.user.as_deref(), Some("u1"));
    }
    let missing = auth.identify(&req("/".into(), String::new())).await;
    assert_eq!(missing.unwrap_err().status(), 401);
    // A refresh is checked by the same hook.
    assert!(auth.refresh(&token).await.is_ok());
    assert!(auth.refresh("x\r\nHost: y").await.is_err());
}
