//! Identities in the hub, with an application's own asynchronous hook: names from the
//! identity (never the query string), rooms it may read and write, expiry on an open
//! connection (close 4001) and on a long-polling session (401), and `refresh`.
//!
//! The hook reads a test token `USER|READ|WRITE|TTL_MS` (patterns comma-separated) from
//! `?access_token=` or `Authorization: Bearer`, and yields once before answering, as a
//! database lookup would.

mod common;

use common::{join, next, next_of, say};
use serde_json::json;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};
use tokio::net::TcpListener;
use wsduplex::auth::{AuthHook, Authenticated, Credential, Denied, Identity, RoomSet};
use wsduplex::proto::handshake::server::Request;
use wsduplex::server::ServerConfig;
use wsduplex::Message;
use wsduplex_hub::{Hub, HubConfig, CLOSE_TOKEN_EXPIRED};

const LIMIT: Duration = Duration::from_secs(10);

fn token_of(request: &Request) -> Option<String> {
    if let Some(v) = request.header("authorization") {
        return Some(String::from_utf8_lossy(v.strip_prefix(b"Bearer ")?).into_owned());
    }
    let (_, query) = request.path().split_once('?')?;
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "access_token")
        .map(|(_, v)| v.into_owned())
}

fn hook() -> AuthHook {
    AuthHook::from_fn(|request: &Request| {
        let token = token_of(request);
        async move {
            tokio::task::yield_now().await;
            let token = token.ok_or(Denied::unauthorized("no token"))?;
            let parts: Vec<&str> = token.split('|').collect();
            let [user, read, write, ttl] = parts[..] else {
                return Err(Denied::unauthorized("bad token"));
            };
            let ttl: u64 = ttl.parse().map_err(|_| Denied::unauthorized("bad ttl"))?;
            let rooms = |s: &str| RoomSet::of(s.split(',').filter(|p| !p.is_empty()));
            let identity = Identity::user(user)
                .with_name(format!("N {user}"))
                .with_rooms(rooms(read), rooms(write))
                .expiring_at(SystemTime::now() + Duration::from_millis(ttl));
            Ok(Authenticated::new(identity, Credential::Query))
        }
    })
}

async fn start(hub_config: HubConfig) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut server = ServerConfig::default();
    server.auth = Some(hook());
    server.socket.close_timeout = Duration::from_secs(2);
    tokio::spawn(common::serve::serve(listener, Hub::new(hub_config), server));
    addr
}

fn enc(token: &str) -> String {
    url::form_urlencoded::byte_serialize(token.as_bytes()).collect()
}

async fn connect(addr: SocketAddr, room: &str, token: &str) -> wsduplex::Result<common::Ws> {
    let url = format!(
        "ws://{addr}/chat/{room}?name=forged&access_token={}",
        enc(token)
    );
    wsduplex::connect(&url).await.map(|(ws, _)| ws)
}

async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[&str],
    body: &str,
) -> common::Resp {
    common::http(addr, method, path, headers, body, LIMIT).await
}

#[tokio::test]
async fn the_name_is_the_identitys_and_rooms_are_checked() {
    let addr = start(HubConfig::default()).await;
    let mut alice = connect(addr, "lobby", "alice|lobby,team-*|lobby|60000")
        .await
        .unwrap();
    let welcome = next(&mut alice).await;
    assert_eq!(welcome["type"], "welcome");
    assert_eq!(welcome["name"], "N alice", "not ?name=forged: {welcome}");

    // A room it may not read: 403 before any upgrade, on both transports.
    match connect(addr, "secret", "alice|lobby,team-*|lobby|60000").await {
        Err(wsduplex::Error::Response(e)) => assert!(e.to_string().contains("403"), "{e}"),
        other => panic!("expected 403, got {:?}", other.map(|_| ())),
    }
    let bearer = "Authorization: Bearer alice|lobby|lobby|60000";
    let r = http(addr, "POST", "/poll/secret", &[bearer], "").await;
    assert_eq!((r.status, &r.body["error"]), (403, &json!("forbidden")));

    // Read-only in team-a: its message gets an error event, and nobody gets the message.
    let mut reader = connect(addr, "team-a", "bob|team-*||60000").await.unwrap();
    next_of(&mut reader, "welcome").await;
    let mut writer = connect(addr, "team-a", "carol|team-a|team-a|60000")
        .await
        .unwrap();
    next_of(&mut writer, "welcome").await;
    say(&mut reader, "not allowed").await;
    let e = next_of(&mut reader, "error").await;
    assert_eq!(e["error"], "forbidden", "{e}");
    say(&mut writer, "allowed").await;
    let m = next_of(&mut writer, "message").await;
    assert_eq!(
        (&m["text"], &m["name"]),
        (&json!("allowed"), &json!("N carol"))
    );
    // The first message the reader sees is the permitted one.
    let m = next_of(&mut reader, "message").await;
    assert_eq!(m["text"], "allowed");

    // Long polling: the same rule, 403 with the error event; nothing stored.
    let bearer = "Authorization: Bearer dave|team-a||60000";
    let r = http(addr, "POST", "/poll/team-a?name=forged", &[bearer], "").await;
    assert_eq!(r.status, 200, "{}", r.head);
    let welcome = r.body["events"][0].clone();
    assert_eq!(welcome["name"], "N dave");
    let session = r.body["session"].as_str().unwrap().to_string();
    let path = format!("/poll/session/{session}");
    let r = http(addr, "POST", &path, &[], r#"{"type":"message","text":"x"}"#).await;
    assert_eq!((r.status, &r.body["error"]), (403, &json!("forbidden")));
    let late = format!("/chat/team-a?access_token={}", enc("erin|team-a||60000"));
    let (_late, welcome) = join(addr, &late).await;
    let history = &welcome["history"];
    let texts: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["allowed"]);
}

/// The close code, and when it came.
async fn closed(ws: &mut common::Ws) -> Option<u16> {
    loop {
        match tokio::time::timeout(LIMIT, ws.recv())
            .await
            .expect("no close in time")
        {
            Some(Ok(Message::Close(c))) => return c.map(|c| u16::from(c.code)),
            Some(Ok(_)) => {}
            _ => return None,
        }
    }
}

#[tokio::test]
async fn an_expired_token_closes_with_4001_unless_refreshed() {
    let addr = start(HubConfig::default()).await;
    let mut ws = connect(addr, "lobby", "u|*|*|300").await.unwrap();
    next_of(&mut ws, "welcome").await;
    assert_eq!(closed(&mut ws).await, Some(CLOSE_TOKEN_EXPIRED));

    let opened = Instant::now();
    let mut ws = connect(addr, "lobby", "u|*|*|300").await.unwrap();
    next_of(&mut ws, "welcome").await;
    // Someone else's token is refused, and the connection stays.
    let other = json!({"type": "refresh", "token": "v|*|*|60000"}).to_string();
    ws.send(other).await.unwrap();
    let e = next_of(&mut ws, "error").await;
    assert_eq!(
        (&e["error"], &e["message"]),
        (&json!("bad_token"), &json!("the token is for another user"))
    );
    let fresh = json!({"type": "refresh", "token": "u|*|*|1500"}).to_string();
    ws.send(fresh).await.unwrap();
    let r = next_of(&mut ws, "refreshed").await;
    assert!(r["expires"].as_u64().is_some(), "{r}");
    assert_eq!(closed(&mut ws).await, Some(CLOSE_TOKEN_EXPIRED));
    assert!(
        opened.elapsed() >= Duration::from_millis(1400),
        "closed at the old expiry: {:?}",
        opened.elapsed()
    );
}

#[tokio::test]
async fn an_expired_session_gets_401_and_refresh_keeps_it() {
    let mut config = HubConfig::default();
    config.poll_timeout = Duration::from_millis(400);
    let addr = start(config).await;
    let open = |ttl: &str| format!("Authorization: Bearer u|*|*|{ttl}");
    let r = http(addr, "POST", "/poll/lobby", &[&open("300")], "").await;
    let session = r.body["session"].as_str().unwrap().to_string();
    let path = format!("/poll/session/{session}?cursor=1");
    // Each read waits out the poll timeout (400 ms) past the token's 300 ms.
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let r = http(addr, "GET", &path, &[], "").await;
        statuses.push(r.status);
        if r.status == 401 {
            assert_eq!(r.body["error"], "token_expired", "{}", r.body);
            break;
        }
    }
    assert_eq!(statuses.last(), Some(&401), "{statuses:?}");
    // Gone: a new session (with a new token and since) is the way back.
    assert_eq!(http(addr, "GET", &path, &[], "").await.status, 404);

    let r = http(addr, "POST", "/poll/lobby", &[&open("60000")], "").await;
    let session = r.body["session"].as_str().unwrap().to_string();
    let send = format!("/poll/session/{session}");
    let refresh = json!({"type": "refresh", "token": "u|*|*|60000"}).to_string();
    let r = http(addr, "POST", &send, &[], &refresh).await;
    assert_eq!((r.status, &r.body["type"]), (200, &json!("refreshed")));
    let wrong = json!({"type": "refresh", "token": "garbage"}).to_string();
    let r = http(addr, "POST", &send, &[], &wrong).await;
    assert_eq!((r.status, &r.body["error"]), (401, &json!("bad_token")));
}
