//! The hub inside an axum app (feature `axum`): the `axum_chat` example's app on
//! 127.0.0.1:0, the hub nested under `/hub`: its page, two WebSocket members chatting and a
//! long-polling member seeing the same messages in the same order, the hub client under
//! the prefix, and the front door's refusals.

#[allow(dead_code)]
#[path = "../examples/axum_chat.rs"]
mod example;

#[allow(dead_code)]
mod common;

use common::{join, next_of, say};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpListener;
use wsduplex::ServerConfig;
use wsduplex_hub::{Hub, HubConfig};

const LIMIT: Duration = Duration::from_secs(10);

async fn start(config: ServerConfig) -> (SocketAddr, Hub) {
    start_hub(HubConfig::default(), config).await
}

async fn start_hub(hub: HubConfig, config: ServerConfig) -> (SocketAddr, Hub) {
    let hub = Hub::new(hub);
    tokio::spawn(hub.clone().maintain());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = example::app(&hub, config).into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, hub)
}

/// One request on a connection of its own (`Connection: close`: hyper keeps it open
/// otherwise).
async fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> common::Resp {
    common::http(addr, method, path, &["Connection: close"], body, LIMIT).await
}

/// The whole answer to a `GET`, as text.
async fn raw(addr: SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    tcp.write_all(head.as_bytes()).await.unwrap();
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).await.unwrap();
    answer
}

#[tokio::test]
async fn the_page_and_its_assets_live_under_the_prefix() {
    let (addr, _hub) = start(ServerConfig::default()).await;
    let r = http(addr, "GET", "/hub", "").await;
    assert_eq!(r.status, 200, "{}", r.head);
    assert!(r.head.contains("text/html"), "{}", r.head);
    let page = raw(addr, "/hub").await;
    // Its links carry the prefix; its script finds the hub's paths from its own address.
    assert!(page.contains(r#"src="/hub/chat.js""#), "{page}");
    assert!(page.contains(r#"href="/hub/chat.css""#), "{page}");
    for (asset, kind) in [
        ("/hub/chat.js", "text/javascript"),
        ("/hub/chat.css", "text/css"),
        ("/hub/wsduplex.js", "text/javascript"),
    ] {
        let r = http(addr, "GET", asset, "").await;
        assert_eq!(r.status, 200, "{asset}: {}", r.head);
        assert!(r.head.contains(kind), "{}", r.head);
    }
    let r = http(addr, "GET", "/hub/nothing/here", "").await;
    assert_eq!(r.status, 404, "{}", r.head);
    let r = http(addr, "GET", "/", "").await;
    assert_eq!(r.status, 200, "the app's own route: {}", r.head);
    // Not an upgrade: the hub's own answer.
    let r = http(addr, "GET", "/hub/chat/room", "").await;
    assert_eq!(r.status, 426, "{}", r.head);
}

#[tokio::test]
async fn websocket_and_long_polling_members_chat_through_the_app() {
    let (addr, _hub) = start(ServerConfig::default()).await;
    let (mut alice, _) = join(addr, "/hub/chat/room?name=alice").await;
    let (mut bob, welcome) = join(addr, "/hub/chat/room?name=bob").await;
    assert_eq!(welcome["members"], json!(["alice", "bob"]), "{welcome}");
    let open = http(addr, "POST", "/hub/poll/room?name=lp", "").await;
    assert_eq!(open.status, 200, "{}", open.body);
    let sid = open.body["session"].as_str().unwrap().to_string();
    assert_eq!(
        open.body["events"][0]["members"],
        json!(["alice", "bob", "lp"])
    );

    say(&mut alice, "hello from alice").await;
    say(&mut bob, "hello from bob").await;
    let sent = http(
        addr,
        "POST",
        &format!("/hub/poll/session/{sid}"),
        r#"{"type":"message","text":"hello from lp"}"#,
    )
    .await;
    assert_eq!(sent.status, 202, "{}", sent.body);

    let mut seen_by_alice = Vec::new();
    let mut seen_by_bob = Vec::new();
    for _ in 0..3 {
        seen_by_alice.push(next_of(&mut alice, "message").await);
        seen_by_bob.push(next_of(&mut bob, "message").await);
    }
    let mut seen_by_lp: Vec<Value> = Vec::new();
    let mut cursor = open.body["cursor"].as_u64().unwrap();
    while seen_by_lp.len() < 3 {
        let path = format!("/hub/poll/session/{sid}?cursor={cursor}");
        let r = http(addr, "GET", &path, "").await;
        assert_eq!(r.status, 200, "{}", r.body);
        cursor = r.body["cursor"].as_u64().unwrap();
        let events = r.body["events"].as_array().unwrap();
        seen_by_lp.extend(events.iter().filter(|e| e["type"] == "message").cloned());
    }
    assert_eq!(seen_by_alice, seen_by_bob);
    assert_eq!(seen_by_alice, seen_by_lp, "same messages, same order");
    let mut texts: Vec<&str> = seen_by_lp
        .iter()
        .map(|e| e["text"].as_str().unwrap())
        .collect();
    texts.sort();
    assert_eq!(
        texts,
        ["hello from alice", "hello from bob", "hello from lp"]
    );
}

/// The hub client given the prefix as its base URL (with a trailing slash too).
#[tokio::test]
async fn the_hub_client_works_under_the_prefix() {
    use wsduplex_hub::client::{Body, HubClient, HubClientConfig, HubEvent};
    let (addr, _hub) = start(ServerConfig::default()).await;
    for base in [format!("ws://{addr}/hub"), format!("ws://{addr}/hub/")] {
        let mut config = HubClientConfig::default();
        config.room = "one".into();
        let mut client = HubClient::connect(&base, config).await.unwrap();
        client.subscribe("two", None).await.unwrap();
        client
            .publish_data("two", json!({"via": base}))
            .await
            .unwrap();
        let message = loop {
            let event = tokio::time::timeout(LIMIT, client.next_event()).await;
            if let HubEvent::Message(m) = event.unwrap().unwrap() {
                break m;
            }
        };
        assert_eq!(
            (message.room.as_str(), message.body),
            ("two", Body::Data(json!({"via": base})))
        );
        client.close().await.unwrap();
    }
}

#[tokio::test]
async fn the_front_door_applies_to_the_hubs_paths() {
    let mut config = ServerConfig::default();
    config.allowed_origins = vec!["http://chat.example".into()];
    let (addr, _hub) = start(config).await;
    let request = wsduplex::http::Request::get(format!("ws://{addr}/hub/chat/room?name=eve"))
        .header("Origin", "http://evil.example")
        .body(())
        .unwrap();
    let refused = wsduplex::connect(request).await.unwrap_err();
    assert!(refused.to_string().contains("403"), "{refused}");
    let request = wsduplex::http::Request::get(format!("ws://{addr}/hub/chat/room?name=ann"))
        .header("Origin", "http://chat.example")
        .body(())
        .unwrap();
    let (_ws, handshake) = wsduplex::connect(request).await.unwrap();
    assert_eq!(handshake.response.status, 101);
}

/// An application's own asynchronous hook, through the app: the member's name is the
/// identity's, a room it may not read is refused, a room it may not write refuses its
/// messages.
#[tokio::test]
async fn identities_apply_through_the_app() {
    use wsduplex::auth::{AuthHook, Authenticated, Credential, Denied, Identity, RoomSet};
    let mut config = ServerConfig::default();
    config.auth = Some(AuthHook::from_fn(|request| {
        let known = request.path().contains("access_token=ann-session");
        async move {
            tokio::task::yield_now().await;
            if !known {
                return Err(Denied::unauthorized("no session"));
            }
            let rooms = (RoomSet::of(["lobby", "news"]), RoomSet::of(["lobby"]));
            let ann = Identity::user("u-ann")
                .with_name("Ann")
                .with_rooms(rooms.0, rooms.1);
            Ok(Authenticated::new(ann, Credential::Query))
        }
    }));
    let (addr, _hub) = start(config).await;
    let (_lobby, welcome) = join(addr, "/hub/chat/lobby?name=eve&access_token=ann-session").await;
    assert_eq!(welcome["name"], "Ann", "{welcome}");
    let (mut news, _) = join(addr, "/hub/chat/news?access_token=ann-session").await;
    say(&mut news, "read only here").await;
    let e = next_of(&mut news, "error").await;
    assert_eq!(e["error"], "forbidden", "{e}");
    let url = format!("ws://{addr}/hub/chat/secret?access_token=ann-session");
    let refused = wsduplex::connect(url.as_str()).await.unwrap_err();
    assert!(refused.to_string().contains("403"), "{refused}");
    let url = format!("ws://{addr}/hub/chat/lobby?access_token=forged");
    let refused = wsduplex::connect(url.as_str()).await.unwrap_err();
    assert!(refused.to_string().contains("401"), "{refused}");
}

#[tokio::test]
async fn the_push_api_reads_its_body_through_the_app() {
    let mut hub = HubConfig::default();
    hub.api_token = Some("push-token".into());
    let (addr, _hub) = start_hub(hub, ServerConfig::default()).await;
    let (mut reader, _) = join(addr, "/hub/chat/news?name=reader").await;
    let push = |headers: &'static [&'static str]| {
        let body = r#"{"text":"pushed","name":"bot"}"#;
        common::http(
            addr,
            "POST",
            "/hub/api/rooms/news/messages",
            headers,
            body,
            LIMIT,
        )
    };
    let r = push(&["Connection: close", "Authorization: Bearer push-token"]).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let event = next_of(&mut reader, "message").await;
    assert_eq!(
        (&event["text"], &event["name"]),
        (&json!("pushed"), &json!("bot"))
    );
    assert_eq!(event["id"], r.body["id"]);
    let r = push(&["Connection: close"]).await;
    assert_eq!((r.status, &r.body["error"]), (401, &json!("unauthorized")));
    let r = http(addr, "GET", "/hub/api/rooms/news", "").await;
    assert_eq!(r.status, 401, "{}", r.body);
}

/// Over HTTP/2 (axum::serve speaks h2c with prior knowledge and enables extended CONNECT):
/// a member joins `/hub/chat/ROOM` with our HTTP/2 client, chats with an HTTP/1.1 member,
/// and its connection carries a second member beside it.
#[tokio::test]
async fn members_join_over_http2_beside_http1() {
    use wsduplex::client::Http2;
    let (addr, _hub) = start(ServerConfig::default()).await;
    let (mut ann, _) = join(addr, "/hub/chat/h2?name=ann").await;
    let mut config = wsduplex::ClientConfig::default();
    config.http2 = Http2::Always;
    let url = format!("ws://{addr}/hub/chat/h2?name=bob");
    let (mut bob, handshake) = wsduplex::connect_with(&url, &config).await.unwrap();
    assert_eq!(handshake.response.status, 200, "RFC 8441: 200, not 101");
    let welcome = common::next(&mut bob).await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    say(&mut bob, "bob over h2").await;
    assert_eq!(next_of(&mut ann, "message").await["text"], "bob over h2");
    say(&mut ann, "ann over h1").await;
    // Bob sees his own message too, in the room's order.
    assert_eq!(next_of(&mut bob, "message").await["text"], "bob over h2");
    assert_eq!(next_of(&mut bob, "message").await["text"], "ann over h1");
    // A second member through the same config, whose pool shares the HTTP/2 connection.
    let url = format!("ws://{addr}/hub/chat/h2?name=cat");
    let (mut cat, _) = wsduplex::connect_with(&url, &config).await.unwrap();
    assert_eq!(
        common::next(&mut cat).await["members"],
        json!(["ann", "bob", "cat"])
    );
}
