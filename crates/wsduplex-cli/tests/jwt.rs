//! `wsduplex serve --jwt-secret-file` / `--jwt-public-key`: members need a valid token,
//! their name comes from it (never from `?name=`), bad tokens get `401` with a reason and
//! are logged without the token, an expiring token closes its connection with 4001 unless
//! refreshed, and a long-polling session of an expired token gets `401`.

mod common;

use common::{eventually, http, metric_of, upgrade_request, Server, Ws, CLOSE, TEXT, TIMEOUT};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::Instant;

const SECRET: &str = "cli-test-secret";

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

fn token(claims: Value) -> String {
    let key = EncodingKey::from_secret(SECRET.as_bytes());
    encode(&Header::new(Algorithm::HS256), &claims, &key).unwrap()
}

fn alice(ttl: u64) -> String {
    token(json!({"sub": "u-alice", "name": "Alice", "exp": now() + ttl}))
}

/// A file in a directory of this test's own.
fn file(name: &str, contents: &[u8]) -> PathBuf {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("wsduplex-jwt-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

/// A server that logs everything it would (`debug`: no level may print a token), with
/// `extra` flags.
fn server(extra: &[&str]) -> Server {
    // Every test here wants the refusals logged; the variable is read at the child's spawn.
    std::env::set_var("WSDUPLEX_LOG", "debug");
    let secret = file("secret", format!("{SECRET}\n").as_bytes());
    let mut args = vec!["--jwt-secret-file", secret.to_str().unwrap()];
    args.extend_from_slice(extra);
    Server::start_on_loopback(&args)
}

/// The next text frame as JSON; `None` at a close frame (its code in `close`).
fn next(ws: &mut Ws) -> Result<Value, Option<u16>> {
    loop {
        let f = ws.read_frame();
        match f.opcode {
            TEXT => return Ok(serde_json::from_slice(&f.payload).unwrap()),
            CLOSE => return Err(f.close().0),
            _ => {}
        }
    }
}

fn next_of(ws: &mut Ws, kind: &str) -> Value {
    loop {
        let v = next(ws).unwrap_or_else(|code| panic!("closed with {code:?} before {kind}"));
        if v["type"] == kind {
            return v;
        }
    }
}

fn send(ws: &mut Ws, v: Value) {
    ws.send(TEXT, v.to_string().as_bytes());
}

fn upgrade_status(server: &Server, path: &str, extra: &str) -> (u16, String) {
    let r = http(
        server.addr,
        upgrade_request(server.addr, path, extra).as_bytes(),
    );
    (r.status, r.body_str())
}

#[test]
fn the_name_comes_from_the_token_on_both_transports() {
    let server = server(&[]);
    let t = alice(600);
    let mut ws = Ws::connect(
        server.addr,
        &format!("/chat/lobby?name=Mallory&access_token={t}"),
    );
    let welcome = next_of(&mut ws, "welcome");
    assert_eq!(welcome["name"], "Alice", "{welcome}");
    // Authorization: Bearer, and a token without a name claim: its sub.
    let bare = token(json!({"sub": "u-bob", "exp": now() + 600}));
    let request = upgrade_request(
        server.addr,
        "/chat/lobby?name=Mallory",
        &format!("Authorization: Bearer {bare}\r\n"),
    );
    let (mut bob, _) = Ws::connect_with(server.addr, &request);
    assert_eq!(next_of(&mut bob, "welcome")["name"], "u-bob");
    // Long polling, with the token as a bearer.
    let r = http(
        server.addr,
        format!(
            "POST /poll/lobby?name=Mallory HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {t}\r\nContent-Length: 0\r\n\r\n"
        )
        .as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.body_str());
    let body: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(body["events"][0]["name"], "Alice-2", "{body}");
    // No token at all.
    assert_eq!(upgrade_status(&server, "/chat/lobby?name=Alice", "").0, 401);
    server.stop();
}

#[test]
fn bad_tokens_get_401_with_a_reason_and_never_reach_the_log() {
    let server = server(&["--jwt-audience", "chat"]);
    let good = json!({"sub": "u1", "exp": now() + 600, "aud": "chat"});
    let with = |extra: Value| {
        let mut c = good.clone();
        c.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        token(c)
    };
    let expired = token(json!({"sub": "u1", "exp": now() - 600, "aud": "chat"}));
    let forged = {
        let key = EncodingKey::from_secret(b"not the secret");
        encode(&Header::new(Algorithm::HS256), &good, &key).unwrap()
    };
    // `{"alg":"none"}`, the good claims, no signature.
    let none = format!(
        "eyJhbGciOiJub25lIn0.{}.",
        token(good.clone()).split('.').nth(1).unwrap()
    );
    let cases = [
        (expired, "token expired"),
        (forged, "invalid token signature"),
        (none, "token algorithm not accepted"),
        (
            with(json!({"aud": "billing"})),
            "token for another audience",
        ),
        (
            with(json!({"name": "ali\u{1b}[31mce"})),
            "invalid name claim",
        ),
    ];
    for (t, reason) in &cases {
        let (status, body) = upgrade_status(&server, &format!("/chat/lobby?access_token={t}"), "");
        assert_eq!((status, body.trim()), (401, *reason));
        let r = http(
            server.addr,
            format!("POST /poll/lobby HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {t}\r\nContent-Length: 0\r\n\r\n").as_bytes(),
        );
        assert_eq!(r.status, 401, "{reason}");
        assert!(r.header("www-authenticate").is_some());
    }
    // A name the hub's rules refuse (punctuation) is the join's 400, as a typed one is.
    let odd = with(json!({"name": "<script>"}));
    assert_eq!(
        upgrade_status(&server, &format!("/chat/lobby?access_token={odd}"), "").0,
        400
    );
    // The good token goes in.
    let ok = token(good.clone());
    let mut ws = Ws::connect(server.addr, &format!("/chat/lobby?access_token={ok}"));
    next_of(&mut ws, "welcome");
    drop(ws);
    server.signal("TERM");
    let exit = server.wait();
    assert!(exit.stderr.contains("jwt refused"), "{}", exit.stderr);
    for (t, reason) in &cases {
        assert!(exit.stderr.contains(reason), "{reason} not logged");
        // Neither the token nor its signature.
        let signature = t.rsplit('.').next().unwrap();
        assert!(
            !exit.stderr.contains(t.as_str()),
            "token in the log: {}",
            exit.stderr
        );
        assert!(signature.is_empty() || !exit.stderr.contains(signature));
    }
    assert!(!exit.stderr.contains(&ok));
}

#[test]
fn refresh_extends_an_open_connection_and_expiry_closes_it_with_4001() {
    let server = server(&[]);
    // Expires within 1 to 2 s (exp counts whole seconds: a token of 1 s could expire
    // before a busy machine has sent the refresh; CI failed so at eccc3f1).
    let opened = Instant::now();
    let mut ws = Ws::connect(
        server.addr,
        &format!("/chat/lobby?access_token={}", alice(2)),
    );
    next_of(&mut ws, "welcome");
    let other = token(json!({"sub": "u-eve", "exp": now() + 600}));
    send(&mut ws, json!({"type": "refresh", "token": other}));
    let e = next_of(&mut ws, "error");
    assert_eq!(e["error"], "bad_token", "{e}");
    // Expires 3 to 4 s from now: later than the first token could.
    send(&mut ws, json!({"type": "refresh", "token": alice(4)}));
    let r = next_of(&mut ws, "refreshed");
    assert!(r["expires"].as_u64().unwrap() >= now() + 3, "{r}");
    let code = loop {
        match next(&mut ws) {
            Ok(_) => {}
            Err(code) => break code,
        }
    };
    assert_eq!(code, Some(4001));
    let lived = opened.elapsed();
    assert!(
        // The first token could last 2 s at most.
        lived.as_millis() >= 2900 && lived < TIMEOUT,
        "closed after {lived:?}: the refresh did not count"
    );
    server.stop();
}

/// A member parked without a task (`--park-idle`) is resumed when its token expires.
#[test]
fn a_parked_member_is_closed_with_4001_when_its_token_expires() {
    let server = server(&["--park-idle", "50ms"]);
    let opened = Instant::now();
    let mut ws = Ws::connect(
        server.addr,
        &format!("/chat/lobby?access_token={}", alice(4)),
    );
    next_of(&mut ws, "welcome");
    eventually("the member parked", TIMEOUT, || {
        metric_of(server.addr, "wsduplex_parked_connections") == 1
    });
    // Its token lives 3 to 4 s (whole seconds): parked well before.
    assert!(opened.elapsed().as_secs() < 3, "parked too late to tell");
    let code = loop {
        match next(&mut ws) {
            Ok(_) => {}
            Err(code) => break code,
        }
    };
    assert_eq!(code, Some(4001));
    assert!(
        opened.elapsed().as_millis() >= 1900,
        "closed before its token expired"
    );
    server.stop();
}

#[test]
fn an_expired_long_polling_session_gets_401() {
    let server = server(&["--poll-timeout", "1s"]);
    let r = http(
        server.addr,
        format!(
            "POST /poll/lobby HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Length: 0\r\n\r\n",
            // `exp` is in whole seconds: a token for 1 s may live only a moment, and a busy
            // machine's open can come after it. 2 s gives it at least 1.
            alice(2)
        )
        .as_bytes(),
    );
    assert_eq!(r.status, 200);
    let body: Value = serde_json::from_slice(&r.body).unwrap();
    let session = body["session"].as_str().unwrap();
    let read = format!("GET /poll/session/{session}?cursor=1 HTTP/1.1\r\nHost: x\r\n\r\n");
    // Each read waits out the poll timeout; the token is gone within three.
    let mut last = 0;
    for _ in 0..5 {
        let r = http(server.addr, read.as_bytes());
        last = r.status;
        if r.status == 401 {
            let body: Value = serde_json::from_slice(&r.body).unwrap();
            assert_eq!(body["error"], "token_expired", "{body}");
            break;
        }
        assert_eq!(r.status, 200);
    }
    assert_eq!(last, 401);
    server.stop();
}

#[test]
fn bad_key_files_are_one_line_errors() {
    let out = common::run(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--jwt-public-key",
            "/nonexistent/key.pem",
        ],
        b"",
    );
    assert!(out
        .assert_one_line_error()
        .contains("cannot read /nonexistent/key.pem"));
    let not_a_key = file("k.pem", b"hello");
    let out = common::run(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--jwt-public-key",
            not_a_key.to_str().unwrap(),
        ],
        b"",
    );
    assert!(out
        .assert_one_line_error()
        .contains("not an RSA or EC (P-256) public key"));
    let empty = file("secret", b"\n");
    let out = common::run(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--jwt-secret-file",
            empty.to_str().unwrap(),
        ],
        b"",
    );
    assert!(out
        .assert_one_line_error()
        .contains("the JWT secret is empty"));
    let out = common::run(
        &["serve", "--listen", "127.0.0.1:0", "--jwt-audience", "chat"],
        b"",
    );
    assert!(out
        .assert_one_line_error()
        .contains("need --jwt-secret-file or --jwt-public-key"));
}

#[test]
fn rs256_from_a_public_key_file() {
    std::env::set_var("WSDUPLEX_LOG", "info");
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/jwt/");
    let server = Server::start_on_loopback(&["--jwt-public-key", &format!("{dir}rsa_public.pem")]);
    let private = std::fs::read(format!("{dir}rsa_private.pem")).unwrap();
    let claims = json!({"sub": "u-rsa", "name": "Rosa", "exp": now() + 600});
    let key = EncodingKey::from_rsa_pem(&private).unwrap();
    let t = encode(&Header::new(Algorithm::RS256), &claims, &key).unwrap();
    let mut ws = Ws::connect(server.addr, &format!("/chat/lobby?access_token={t}"));
    assert_eq!(next_of(&mut ws, "welcome")["name"], "Rosa");
    // HS256 signed with the public key's text: algorithm confusion.
    let public = std::fs::read(format!("{dir}rsa_public.pem")).unwrap();
    let confused = encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(&public),
    )
    .unwrap();
    let (status, body) =
        upgrade_status(&server, &format!("/chat/lobby?access_token={confused}"), "");
    assert_eq!((status, body.trim()), (401, "token algorithm not accepted"));
    drop(ws);
    server.stop();
}

/// Over HTTP/2 (h2c, RFC 8441's extended CONNECT): the same front door, the same identity.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_http2_streams_too() {
    let server = server(&[]);
    let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let (client, conn) = h2::client::handshake(tcp).await.expect("h2 handshake");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let open = move |token: String| {
        let client = client.clone();
        let addr = server.addr;
        async move {
            let mut request = http::Request::builder()
                .method(http::Method::CONNECT)
                .uri(format!(
                    "http://{addr}/chat/lobby?name=Mallory&access_token={token}"
                ))
                .header("sec-websocket-version", "13")
                .body(())
                .unwrap();
            request
                .extensions_mut()
                .insert(h2::ext::Protocol::from("websocket"));
            let mut client = client.ready().await.unwrap();
            let (response, send) = client.send_request(request, false).unwrap();
            let response = tokio::time::timeout(TIMEOUT, response)
                .await
                .unwrap()
                .unwrap();
            (response, send)
        }
    };
    let expired = token(json!({"sub": "u1", "exp": now() - 600}));
    let (refused, _) = open(expired).await;
    assert_eq!(refused.status(), 401);
    let (response, _send) = open(alice(600)).await;
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let mut buf = Vec::new();
    // The welcome: one unmasked text frame (its length fits 16 bits).
    let welcome = loop {
        let chunk = tokio::time::timeout(TIMEOUT, body.data())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let _ = body.flow_control().release_capacity(chunk.len());
        buf.extend_from_slice(&chunk);
        let (len, start) = match buf.get(1).map(|b| b & 0x7f) {
            Some(126) if buf.len() >= 4 => (usize::from(u16::from_be_bytes([buf[2], buf[3]])), 4),
            Some(n) if n < 126 => (usize::from(n), 2),
            _ => continue,
        };
        if buf.len() >= start + len {
            break serde_json::from_slice::<Value>(&buf[start..start + len]).unwrap();
        }
    };
    assert_eq!(
        (&welcome["type"], &welcome["name"]),
        (&json!("welcome"), &json!("Alice"))
    );
    // The connection ends with its last handle: the server need not wait for it.
    drop((body, _send, open));
    server.stop();
}

/// A token in the `wsduplex_token` cookie is sent by the browser from any page: another
/// origin's upgrade is refused (cross-site WebSocket hijacking), the server's own page joins.
#[test]
fn a_cookie_token_needs_the_same_origin() {
    let server = server(&[]);
    let cookie = format!("Cookie: theme=dark; wsduplex_token={}\r\n", alice(600));
    let evil = format!("{cookie}Origin: http://evil.example\r\n");
    let (status, body) = upgrade_status(&server, "/chat/lobby", &evil);
    assert_eq!((status, body.trim()), (403, "origin not allowed"));
    let own = format!("{cookie}Origin: http://{}\r\n", server.addr);
    let request = upgrade_request(server.addr, "/chat/lobby?name=Mallory", &own);
    let (mut ws, _) = Ws::connect_with(server.addr, &request);
    assert_eq!(next_of(&mut ws, "welcome")["name"], "Alice");
    drop(ws);
    server.stop();
}
