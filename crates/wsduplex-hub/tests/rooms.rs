//! Many rooms on one connection, and `data` messages (issue 16 §1): subscribe and
//! unsubscribe over a WebSocket and a long-polling session, the per-connection limit,
//! permissions per room, data with ids, history and `since`, and `/chat/ROOM` as before.
//! Tests of the wire format use a raw WebSocket; those of behaviour (permissions, refresh),
//! the hub client.

mod common;

use common::{join, next, next_of, Ws};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpListener;
use wsduplex::auth::{AuthHook, Authenticated, Credential, Denied, Identity, RoomSet};
use wsduplex::proto::handshake::server::Request;
use wsduplex::server::ServerConfig;
use wsduplex_hub::client::{Body, HubClient, HubClientConfig, HubEvent};
use wsduplex_hub::{Hub, HubConfig};

const LIMIT: Duration = Duration::from_secs(10);
const TOKEN: &str = "s3cret";

async fn start_with(hub_config: HubConfig, auth: Option<AuthHook>) -> (SocketAddr, Hub) {
    let hub = Hub::new(hub_config);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut server = ServerConfig::default();
    server.auth = auth;
    server.socket.close_timeout = Duration::from_secs(2);
    tokio::spawn(common::serve::serve(listener, hub.clone(), server));
    (addr, hub)
}

async fn start(hub_config: HubConfig) -> (SocketAddr, Hub) {
    start_with(hub_config, None).await
}

fn config() -> HubConfig {
    let mut c = HubConfig::default();
    c.api_token = Some(TOKEN.into());
    c
}

async fn send(ws: &mut Ws, v: Value) {
    ws.send(v.to_string()).await.unwrap();
}

async fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> common::Resp {
    common::http(addr, method, path, &[], body, LIMIT + LIMIT).await
}

/// The events of one long-polling `GET` after `cursor`, and the next cursor.
async fn poll(addr: SocketAddr, sid: &str, cursor: u64) -> (u64, Vec<Value>) {
    let r = http(
        addr,
        "GET",
        &format!("/poll/session/{sid}?cursor={cursor}"),
        "",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let events = r.body["events"].as_array().unwrap().clone();
    (r.body["cursor"].as_u64().unwrap(), events)
}

#[tokio::test]
async fn one_socket_follows_three_rooms_and_leaves_one() {
    let (addr, hub) = start(config()).await;
    hub.publish("b", "api", "before").await.unwrap();
    let (mut ws, welcome) = join(addr, "/chat/a?name=eve").await;
    assert_eq!(
        (&welcome["room"], &welcome["name"]),
        (&json!("a"), &json!("eve"))
    );
    for room in ["b", "c"] {
        send(&mut ws, json!({"type": "subscribe", "room": room})).await;
        let w = next_of(&mut ws, "welcome").await;
        assert_eq!(
            (&w["room"], &w["name"]),
            (&json!(room), &json!("eve")),
            "{w}"
        );
    }
    // The welcome of b carried its history.
    assert_eq!(
        hub.members("b").await.unwrap().unwrap(),
        (vec!["eve".into()], 1)
    );
    for room in ["c", "a", "b"] {
        hub.publish(room, "api", &format!("to {room}"))
            .await
            .unwrap();
    }
    for room in ["c", "a", "b"] {
        let m = next_of(&mut ws, "message").await;
        assert_eq!(
            (&m["room"], &m["text"]),
            (&json!(room), &json!(format!("to {room}")))
        );
    }
    // A message names its room; without one it goes to the first (compatibility).
    send(
        &mut ws,
        json!({"type": "message", "room": "c", "text": "in c"}),
    )
    .await;
    send(&mut ws, json!({"type": "message", "text": "in a"})).await;
    let m = next_of(&mut ws, "message").await;
    assert_eq!(
        (&m["room"], &m["text"], &m["id"]),
        (&json!("c"), &json!("in c"), &json!(2))
    );
    let m = next_of(&mut ws, "message").await;
    assert_eq!(
        (&m["room"], &m["text"], &m["id"]),
        (&json!("a"), &json!("in a"), &json!(2))
    );

    send(&mut ws, json!({"type": "unsubscribe", "room": "b"})).await;
    let u = next_of(&mut ws, "unsubscribed").await;
    assert_eq!(u, json!({"type": "unsubscribed", "room": "b"}));
    assert!(hub.members("b").await.unwrap().unwrap().0.is_empty());
    hub.publish("b", "api", "gone").await.unwrap();
    hub.publish("c", "api", "still here").await.unwrap();
    let m = next_of(&mut ws, "message").await;
    assert_eq!(
        (&m["room"], &m["text"]),
        (&json!("c"), &json!("still here")),
        "b stopped"
    );

    // Requests about rooms it does not follow, or already follows: error events naming them.
    send(&mut ws, json!({"type": "unsubscribe", "room": "b"})).await;
    let e = next_of(&mut ws, "error").await;
    assert_eq!(
        (&e["error"], &e["room"]),
        (&json!("not_subscribed"), &json!("b"))
    );
    send(
        &mut ws,
        json!({"type": "message", "room": "b", "text": "x"}),
    )
    .await;
    let e = next_of(&mut ws, "error").await;
    assert_eq!(
        (&e["error"], &e["room"]),
        (&json!("not_subscribed"), &json!("b"))
    );
    send(&mut ws, json!({"type": "subscribe", "room": "c"})).await;
    let e = next_of(&mut ws, "error").await;
    assert_eq!(
        (&e["error"], &e["room"]),
        (&json!("already_subscribed"), &json!("c"))
    );
    send(&mut ws, json!({"type": "subscribe", "room": "no/such"})).await;
    let e = next_of(&mut ws, "error").await;
    assert_eq!(
        (&e["error"], &e["room"]),
        (&json!("bad_room"), &json!("no/such"))
    );
}

#[tokio::test]
async fn subscriptions_are_limited_per_connection() {
    let mut c = config();
    c.max_subscriptions = 2;
    let (addr, hub) = start(c).await;
    let (mut ws, _) = join(addr, "/chat/a?name=eve").await;
    send(&mut ws, json!({"type": "subscribe", "room": "b"})).await;
    next_of(&mut ws, "welcome").await;
    send(&mut ws, json!({"type": "subscribe", "room": "c"})).await;
    let e = next(&mut ws).await;
    assert_eq!(
        (&e["type"], &e["error"], &e["room"]),
        (
            &json!("error"),
            &json!("too_many_subscriptions"),
            &json!("c")
        )
    );
    assert!(hub.members("c").await.unwrap().is_none(), "never joined");
    // Leaving one makes room.
    send(&mut ws, json!({"type": "unsubscribe", "room": "a"})).await;
    next_of(&mut ws, "unsubscribed").await;
    send(&mut ws, json!({"type": "subscribe", "room": "c"})).await;
    assert_eq!(next_of(&mut ws, "welcome").await["room"], "c");
    // The first room is now b.
    send(&mut ws, json!({"type": "message", "text": "hi"})).await;
    assert_eq!(next_of(&mut ws, "message").await["room"], "b");
}

#[tokio::test]
async fn data_messages_have_ids_history_and_since() {
    let mut c = config();
    c.max_data = 64;
    let (addr, _hub) = start(c).await;
    let (mut ws, _) = join(addr, "/chat/d?name=eve").await;
    let data = json!({"kind": "alert", "level": 3, "tags": ["x", null, true]});
    send(
        &mut ws,
        json!({"type": "message", "room": "d", "data": data}),
    )
    .await;
    let m = next_of(&mut ws, "message").await;
    assert_eq!(
        (&m["id"], &m["data"], m.get("text")),
        (&json!(1), &data, None)
    );
    // From the push API too, with the same ids.
    let bearer = format!("Authorization: Bearer {TOKEN}");
    let push = |body: Value| {
        let bearer = bearer.clone();
        async move {
            let path = "/api/rooms/d/messages";
            common::http(addr, "POST", path, &[&bearer], &body.to_string(), LIMIT).await
        }
    };
    let r = push(json!({"data": [1, 2, 3]})).await;
    assert_eq!((r.status, &r.body), (201, &json!({"id": 2})));
    let m = next_of(&mut ws, "message").await;
    assert_eq!(
        (&m["id"], &m["data"], &m["name"]),
        (&json!(2), &json!([1, 2, 3]), &json!("api"))
    );
    // Too large, both ways: refused, nothing published.
    let big = json!({"blob": "x".repeat(64)});
    let r = push(json!({"data": big})).await;
    assert_eq!((r.status, &r.body["error"]), (400, &json!("too_long")));
    let r = push(json!({"data": 1, "text": "both"})).await;
    assert_eq!((r.status, &r.body["error"]), (400, &json!("bad_message")));
    send(&mut ws, json!({"type": "message", "data": big})).await;
    let e = next(&mut ws).await;
    assert_eq!(
        (&e["type"], &e["error"]),
        (&json!("error"), &json!("too_long")),
        "{e}"
    );
    // History and since: a newcomer resuming after 1 gets exactly message 2.
    let (_late, welcome) = join(addr, "/chat/d?name=late&since=1").await;
    let history = welcome["history"].as_array().unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(
        (&history[0]["id"], &history[0]["data"]),
        (&json!(2), &json!([1, 2, 3]))
    );
}

#[tokio::test]
async fn a_polling_session_subscribes_and_shares_the_order() {
    let (addr, hub) = start(config()).await;
    let r = http(addr, "POST", "/poll/a?name=lp", "").await;
    assert_eq!(r.status, 200);
    let sid = r.body["session"].as_str().unwrap().to_string();
    let mut cursor = r.body["cursor"].as_u64().unwrap();
    let send_path = format!("/poll/session/{sid}");
    let sub = json!({"type": "subscribe", "room": "b"}).to_string();
    let r = http(addr, "POST", &send_path, &sub).await;
    assert_eq!(r.status, 202, "{}", r.body);
    // A WebSocket in b sends; both see b's messages in one order.
    let (mut ws, _) = join(addr, "/chat/b?name=ws").await;
    let (c, events) = poll(addr, &sid, cursor).await;
    cursor = c;
    assert_eq!(
        (&events[0]["type"], &events[0]["room"]),
        (&json!("welcome"), &json!("b"))
    );
    for i in 0..3 {
        common::say(&mut ws, &format!("ws {i}")).await;
        let body = json!({"type": "message", "room": "b", "data": {"lp": i}}).to_string();
        assert_eq!(http(addr, "POST", &send_path, &body).await.status, 202);
    }
    let mut ws_order = Vec::new();
    while ws_order.len() < 6 {
        let m = next_of(&mut ws, "message").await;
        ws_order.push((m["id"].clone(), m["text"].clone(), m["data"].clone()));
    }
    let mut lp_order = Vec::new();
    while lp_order.len() < 6 {
        let (c, events) = poll(addr, &sid, cursor).await;
        cursor = c;
        lp_order.extend(
            events
                .iter()
                .filter(|e| e["type"] == "message")
                .inspect(|e| assert_eq!(e["room"], "b"))
                .map(|m| (m["id"].clone(), m["text"].clone(), m["data"].clone())),
        );
    }
    assert_eq!(ws_order, lp_order);
    // Unsubscribe: answered in the stream, and b's events stop.
    let unsub = json!({"type": "unsubscribe", "room": "b"}).to_string();
    assert_eq!(http(addr, "POST", &send_path, &unsub).await.status, 202);
    hub.publish("b", "api", "gone").await.unwrap();
    hub.publish("a", "api", "here").await.unwrap();
    let mut seen = Vec::new();
    while !seen.iter().any(|e: &Value| e["type"] == "message") {
        let (c, events) = poll(addr, &sid, cursor).await;
        cursor = c;
        seen.extend(events.into_iter().filter(|e| e["type"] != "left"));
    }
    assert_eq!(seen[0], json!({"type": "unsubscribed", "room": "b"}));
    assert_eq!(
        (&seen[1]["room"], &seen[1]["text"]),
        (&json!("a"), &json!("here"))
    );
    // A refused request is the POST's answer: the status and an error event.
    let r = http(addr, "POST", &send_path, &unsub).await;
    assert_eq!(
        (r.status, &r.body["error"], &r.body["room"]),
        (409, &json!("not_subscribed"), &json!("b"))
    );
}

/// Reads rooms `pub-*` and `a`, writes `a` only.
fn hook() -> AuthHook {
    AuthHook::from_fn(|_: &Request| async {
        let identity =
            Identity::user("u1").with_rooms(RoomSet::of(["a", "pub-*"]), RoomSet::of(["a"]));
        Ok::<_, Denied>(Authenticated::new(identity, Credential::Query))
    })
}

/// Reads and writes the rooms of its token (comma-separated), from `?access_token=` or
/// `Authorization: Bearer` (as the hub client sends it, and as a `refresh` carries it).
fn hook_by_token() -> AuthHook {
    AuthHook::from_fn(|r: &Request| {
        let bearer = r.header("authorization").map(|v| v[7..].to_vec());
        let query = r
            .path()
            .split_once("access_token=")
            .map(|(_, t)| t.as_bytes().to_vec());
        let token = String::from_utf8(bearer.or(query).unwrap_or_default()).unwrap();
        async move {
            let rooms = RoomSet::of(token.split(',').filter(|p| !p.is_empty()));
            let identity = Identity::user("u1").with_rooms(rooms.clone(), rooms);
            Ok::<_, Denied>(Authenticated::new(identity, Credential::Query))
        }
    })
}

/// A hub client of `addr` in `room`, with `token` if any, once welcomed.
async fn client(addr: SocketAddr, room: &str, token: Option<&str>) -> HubClient {
    let mut c = HubClientConfig::default();
    c.room = room.into();
    c.token = token.map(str::to_string);
    let mut client = HubClient::connect(&format!("ws://{addr}"), c)
        .await
        .unwrap();
    welcomed(&mut client, room).await;
    client
}

/// The next event that is not presence.
async fn event(client: &mut HubClient) -> HubEvent {
    loop {
        let event = tokio::time::timeout(LIMIT, client.next_event())
            .await
            .expect("no event in time")
            .expect("the client ended");
        if !matches!(event, HubEvent::Joined(_) | HubEvent::Left(_)) {
            return event;
        }
    }
}

async fn welcomed(client: &mut HubClient, room: &str) {
    match event(client).await {
        HubEvent::Welcome(w) if w.room == room => {}
        other => panic!("expected the welcome of {room}: {other:?}"),
    }
}

/// The next event, which must be an error: its code and room.
async fn refused(client: &mut HubClient) -> (String, Option<String>) {
    match event(client).await {
        HubEvent::Error(e) => (e.error, e.room),
        other => panic!("expected an error: {other:?}"),
    }
}

fn forbidden(room: &str) -> (String, Option<String>) {
    ("forbidden".into(), Some(room.into()))
}

#[tokio::test]
async fn a_refresh_that_drops_a_room_unsubscribes_it() {
    let (addr, hub) = start_with(config(), Some(hook_by_token())).await;
    let mut c = client(addr, "a", Some("a,b")).await;
    c.subscribe("b", None).await.unwrap();
    welcomed(&mut c, "b").await;
    c.refresh("a").await.unwrap();
    assert!(matches!(event(&mut c).await, HubEvent::Refreshed { .. }));
    assert_eq!(refused(&mut c).await, forbidden("b"));
    let unsubscribed = HubEvent::Unsubscribed { room: "b".into() };
    assert_eq!(event(&mut c).await, unsubscribed);
    assert!(hub.members("b").await.unwrap().unwrap().0.is_empty());
    // Room a stays.
    c.publish_text("a", "still").await.unwrap();
    assert!(matches!(event(&mut c).await, HubEvent::Message(m) if m.room == "a"));
}

#[tokio::test]
async fn permissions_are_checked_room_by_room() {
    let (addr, hub) = start_with(config(), Some(hook())).await;
    let mut c = client(addr, "a", None).await;
    c.subscribe("secret", None).await.unwrap();
    assert_eq!(refused(&mut c).await, forbidden("secret"));
    assert!(hub.members("secret").await.unwrap().is_none());
    c.subscribe("pub-1", None).await.unwrap();
    welcomed(&mut c, "pub-1").await;
    c.publish_text("pub-1", "no").await.unwrap();
    assert_eq!(refused(&mut c).await, forbidden("pub-1"));
    c.publish_data("a", json!({"ok": true})).await.unwrap();
    match event(&mut c).await {
        HubEvent::Message(m) => assert_eq!(
            (m.room.as_str(), m.body),
            ("a", Body::Data(json!({"ok": true})))
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        hub.members("pub-1").await.unwrap().unwrap().1,
        0,
        "nothing published"
    );
}
