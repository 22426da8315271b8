//! The hub's protocol over real sockets: a server on `127.0.0.1:0` serving only the hub,
//! WebSocket members (the `wsduplex` client), long-polling sessions and the push API over
//! plain HTTP.

mod common;

use common::{join, next, next_of, say, Resp};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpListener;
use wsduplex::server::ServerConfig;
use wsduplex::Message;
use wsduplex_hub::{Hub, HubConfig};

const TOKEN: &str = "s3cret";
/// Upper bound for anything a test waits for; a hang fails instead of blocking CI.
const LIMIT: Duration = Duration::from_secs(10);

fn config() -> HubConfig {
    let mut c = HubConfig::default();
    c.api_token = Some(TOKEN.into());
    c
}

async fn start(hub_config: HubConfig) -> (SocketAddr, Hub) {
    let hub = Hub::new(hub_config);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut server = ServerConfig::default();
    server.socket.close_timeout = Duration::from_secs(2);
    tokio::spawn(common::serve::serve(listener, hub.clone(), server));
    (addr, hub)
}

/// One HTTP request on a fresh connection, with time for a long poll to end.
async fn http(addr: SocketAddr, method: &str, path: &str, headers: &[&str], body: &str) -> Resp {
    let wait = LIMIT + Duration::from_secs(30);
    common::http(addr, method, path, headers, body, wait).await
}

fn bearer() -> String {
    format!("Authorization: Bearer {TOKEN}")
}

#[tokio::test]
async fn two_members_chat_with_increasing_ids() {
    let (addr, _hub) = start(config()).await;
    let (mut alice, welcome) = join(addr, "/chat/r1?name=alice").await;
    assert_eq!(welcome["name"], "alice");
    assert_eq!(welcome["room"], "r1");
    assert_eq!(welcome["members"], json!(["alice"]));
    assert_eq!(welcome["last_id"], 0);
    assert_eq!(welcome["history"], json!([]));
    let (mut bob, welcome) = join(addr, "/chat/r1?name=bob").await;
    assert_eq!(welcome["members"], json!(["alice", "bob"]));
    let joined = next(&mut alice).await;
    assert_eq!(
        (&joined["type"], &joined["name"]),
        (&json!("joined"), &json!("bob"))
    );

    say(&mut alice, "hello <b>bob</b>").await;
    say(&mut bob, "hi alice").await;
    for ws in [&mut alice, &mut bob] {
        let m1 = next_of(ws, "message").await;
        let m2 = next_of(ws, "message").await;
        assert_eq!(
            (&m1["id"], &m1["name"], &m1["text"], &m1["room"]),
            (
                &json!(1),
                &json!("alice"),
                &json!("hello <b>bob</b>"),
                &json!("r1")
            )
        );
        assert_eq!((&m2["id"], &m2["name"]), (&json!(2), &json!("bob")));
        assert!(m1["ts"].as_u64().unwrap() > 1_700_000_000_000);
    }
    bob.close(wsduplex::CloseCode::NORMAL, "").await.unwrap();
    let left = next(&mut alice).await;
    assert_eq!(
        (&left["type"], &left["name"]),
        (&json!("left"), &json!("bob"))
    );
}

#[tokio::test]
async fn history_and_resume_with_since_lose_nothing() {
    let mut c = config();
    c.history = 5;
    let (addr, hub) = start(c).await;
    for i in 1..=8 {
        assert_eq!(
            hub.publish("h", "pusher", &format!("m{i}")).await.unwrap(),
            i
        );
    }
    // Each message of a history as (id, text): message i is "m{i}", so a wrong, missing,
    // repeated or reordered message shows.
    let history = |welcome: &Value| -> Vec<(u64, String)> {
        welcome["history"]
            .as_array()
            .unwrap_or_else(|| panic!("no history in {welcome}"))
            .iter()
            .map(|m| {
                (
                    m["id"].as_u64().unwrap(),
                    m["text"].as_str().unwrap().into(),
                )
            })
            .collect()
    };
    let messages = |ids: std::ops::RangeInclusive<u64>| -> Vec<(u64, String)> {
        ids.map(|i| (i, format!("m{i}"))).collect()
    };
    // A newcomer sees the last 5.
    let (_a, welcome) = join(addr, "/chat/h?name=a").await;
    assert_eq!(history(&welcome), messages(4..=8));
    assert_eq!(welcome["last_id"], 8);
    // Resuming inside the window: exactly what came after, no gap.
    let (mut b, welcome) = join(addr, "/chat/h?name=b&since=6").await;
    assert_eq!(history(&welcome), messages(7..=8));
    assert_eq!(welcome["gap"], false);
    // ... then live messages, continuing the sequence.
    hub.publish("h", "pusher", "m9").await.unwrap();
    let m = next_of(&mut b, "message").await;
    assert_eq!((&m["id"], &m["text"]), (&json!(9), &json!("m9")));
    // Up to date: nothing in history, no gap.
    let (_c, welcome) = join(addr, "/chat/h?name=c&since=9").await;
    assert_eq!(
        (history(&welcome), &welcome["gap"]),
        (vec![], &json!(false))
    );
    // Behind the window: what is left, and the gap is reported.
    let (_d, welcome) = join(addr, "/chat/h?name=d&since=2").await;
    assert_eq!(history(&welcome), messages(5..=9));
    assert_eq!(welcome["gap"], true);
    // An id from the future (a room that was dropped and recreated): all of it, gap.
    let (_e, welcome) = join(addr, "/chat/h?name=e&since=1000").await;
    assert_eq!(history(&welcome), messages(5..=9));
    assert_eq!(welcome["gap"], true);
}

#[tokio::test]
async fn reconnect_resumes_exactly_where_it_left() {
    let (addr, hub) = start(config()).await;
    let (mut a, _) = join(addr, "/chat/resume?name=a").await;
    hub.publish("resume", "p", "one").await.unwrap();
    let last = next_of(&mut a, "message").await["id"].as_u64().unwrap();
    drop(a);
    // Sent while a is away.
    for t in ["two", "three"] {
        hub.publish("resume", "p", t).await.unwrap();
    }
    let (mut a, welcome) = join(addr, &format!("/chat/resume?name=a&since={last}")).await;
    let texts: Vec<&str> = welcome["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["two", "three"]);
    hub.publish("resume", "p", "four").await.unwrap();
    let m = next_of(&mut a, "message").await;
    assert_eq!((&m["id"], &m["text"]), (&json!(4), &json!("four")));
}

#[tokio::test]
async fn name_and_room_rules() {
    let (addr, _hub) = start(config()).await;
    let (_a, w) = join(addr, "/chat/n?name=%20alice%20").await;
    assert_eq!(w["name"], "alice", "trimmed");
    let (_b, w) = join(addr, "/chat/n?name=alice").await;
    assert_eq!(w["name"], "alice-2", "made unique");
    let (_c, w) = join(addr, "/chat/n?name=alice").await;
    assert_eq!(w["name"], "alice-3");
    let (_d, w) = join(addr, "/chat").await;
    assert_eq!((&w["room"], &w["name"]), (&json!("lobby"), &json!("guest")));
    let (_e, w) = join(addr, "/chat/n?name=Zo%C3%AB").await;
    assert_eq!(w["name"], "Zoë");
    for bad in [
        "/chat/n?name=%3Cscript%3E",
        "/chat/n?name=",
        "/chat/n?name=a%0Ab",
        &format!("/chat/n?name={}", "x".repeat(33)),
        "/chat/bad%20room?name=a",
        &format!("/chat/{}?name=a", "r".repeat(65)),
        "/chat/n?name=a&since=x",
    ] {
        let err = wsduplex::connect(&format!("ws://{addr}{bad}"))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("400"), "{bad}: {err}");
    }
    // Over long polling, the refusal is an error event naming what is wrong.
    let r = http(addr, "POST", "/poll/bad%20room?name=a", &[], "").await;
    assert_eq!((r.status, &r.body["error"]), (400, &json!("bad_room")));
    let r = http(addr, "POST", "/poll/n?name=%3Cb%3E", &[], "").await;
    assert_eq!((r.status, &r.body["error"]), (400, &json!("bad_name")));
    // Plain GET of the endpoint: told it is a WebSocket endpoint.
    assert_eq!(http(addr, "GET", "/chat/n", &[], "").await.status, 426);
}

#[tokio::test]
async fn bad_client_messages_get_an_error_event_and_the_connection_stays() {
    let mut c = config();
    c.max_text = 10;
    let (addr, _hub) = start(c).await;
    let (mut a, _) = join(addr, "/chat/bad?name=a").await;
    for (msg, code) in [
        (Message::text("not json"), "bad_message"),
        (
            Message::text(r#"{"type":"shout","text":"x"}"#),
            "bad_message",
        ),
        (Message::text(r#"{"type":"message","text":"   "}"#), "empty"),
        (
            Message::text(r#"{"type":"message","text":"12345678901"}"#),
            "too_long",
        ),
        (Message::binary(vec![1, 2, 3]), "bad_message"),
    ] {
        a.send(msg).await.unwrap();
        let e = next(&mut a).await;
        assert_eq!(
            (&e["type"], &e["error"]),
            (&json!("error"), &json!(code)),
            "{e}"
        );
    }
    say(&mut a, "fine").await;
    assert_eq!(next(&mut a).await["text"], "fine");
}

#[tokio::test]
async fn push_api_needs_the_token() {
    let (addr, _hub) = start(config()).await;
    let (mut a, _) = join(addr, "/chat/news?name=a").await;
    let body = r#"{"text":"breaking","name":"newsdesk"}"#;
    let path = "/api/rooms/news/messages";
    let r = http(addr, "POST", path, &[], body).await;
    assert_eq!(r.status, 401);
    assert!(r
        .head
        .to_ascii_lowercase()
        .contains("www-authenticate: bearer"));
    let r = http(addr, "POST", path, &["Authorization: Bearer nope"], body).await;
    assert_eq!(r.status, 401);
    let r = http(addr, "POST", path, &[&bearer()], "{oops").await;
    assert_eq!(r.status, 400);
    let r = http(addr, "POST", path, &[&bearer()], body).await;
    assert_eq!((r.status, &r.body), (201, &json!({"id": 1})));
    let m = next_of(&mut a, "message").await;
    assert_eq!(
        (&m["name"], &m["text"], &m["id"]),
        (&json!("newsdesk"), &json!("breaking"), &json!(1))
    );
    // Room state, for operators.
    let r = http(addr, "GET", "/api/rooms/news", &[&bearer()], "").await;
    assert_eq!(
        r.body,
        json!({"room": "news", "members": ["a"], "last_id": 1})
    );

    // Without a token configured the API does not exist.
    let (addr, _hub) = start(HubConfig::default()).await;
    let r = http(addr, "POST", path, &[&bearer()], body).await;
    assert_eq!(r.status, 404);
}

#[tokio::test]
async fn long_polling_shares_the_room_and_its_order() {
    let (addr, _hub) = start(config()).await;
    let (mut ws, _) = join(addr, "/chat/mix?name=wsuser").await;
    let open = http(addr, "POST", "/poll/mix?name=lp", &[], "").await;
    assert_eq!(open.status, 200, "{}", open.body);
    let sid = open.body["session"].as_str().unwrap().to_string();
    assert_eq!(sid.len(), 32);
    assert_eq!(open.body["cursor"], 1);
    let welcome = &open.body["events"][0];
    assert_eq!(welcome["type"], "welcome");
    assert_eq!(welcome["members"], json!(["wsuser", "lp"]));
    assert_eq!(next(&mut ws).await["type"], "joined");

    say(&mut ws, "from ws").await;
    let sent = http(
        addr,
        "POST",
        &format!("/poll/session/{sid}"),
        &[],
        r#"{"type":"message","text":"from lp"}"#,
    )
    .await;
    assert_eq!(sent.status, 202);
    let ws_order: Vec<Value> = vec![next(&mut ws).await, next(&mut ws).await];
    // The poller reads until it has both, acknowledging as it goes.
    let mut cursor = 1;
    let mut lp_order = Vec::new();
    while lp_order.len() < 2 {
        let r = http(
            addr,
            "GET",
            &format!("/poll/session/{sid}?cursor={cursor}"),
            &[],
            "",
        )
        .await;
        assert_eq!(r.status, 200);
        cursor = r.body["cursor"].as_u64().unwrap();
        lp_order.extend(r.body["events"].as_array().unwrap().iter().cloned());
    }
    assert_eq!(ws_order, lp_order, "same events, same order");
    // A repeated cursor returns the same events (a lost response loses nothing).
    let again = http(
        addr,
        "GET",
        &format!("/poll/session/{sid}?cursor=1"),
        &[],
        "",
    )
    .await;
    assert_eq!(again.body["events"].as_array().unwrap().len(), 2);

    // Bad message: 400 with an error event.
    let bad = http(addr, "POST", &format!("/poll/session/{sid}"), &[], "{}").await;
    assert_eq!(
        (bad.status, &bad.body["error"]),
        (400, &json!("bad_message"))
    );
    // Leaving: the WebSocket member sees it; the session is gone.
    let del = http(addr, "DELETE", &format!("/poll/session/{sid}"), &[], "").await;
    assert_eq!(del.status, 204);
    let left = next(&mut ws).await;
    assert_eq!(
        (&left["type"], &left["name"]),
        (&json!("left"), &json!("lp"))
    );
    let gone = http(
        addr,
        "GET",
        &format!("/poll/session/{sid}?cursor={cursor}"),
        &[],
        "",
    )
    .await;
    assert_eq!(
        (gone.status, &gone.body["error"]),
        (404, &json!("unknown_session"))
    );
}

#[tokio::test]
async fn a_long_poll_waits_for_the_next_event_and_times_out_empty() {
    let mut c = config();
    c.poll_timeout = Duration::from_millis(300);
    let (addr, hub) = start(c).await;
    let open = http(addr, "POST", "/poll/wait?name=lp", &[], "").await;
    let sid = open.body["session"].as_str().unwrap().to_string();
    // Nothing happens: an empty answer with the same cursor.
    let r = http(
        addr,
        "GET",
        &format!("/poll/session/{sid}?cursor=1"),
        &[],
        "",
    )
    .await;
    assert_eq!(r.body, json!({"cursor": 1, "events": []}));

    // A waiting GET is answered by the next event. The hub serves it here, on an in-memory
    // stream, and the test polls it by hand: it must be waiting (polled and pending) before
    // the publish, and the publish itself must wake it.
    use std::future::Future;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::task::{Context, Poll, Wake, Waker};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    struct Woken(AtomicBool);
    impl Wake for Woken {
        fn wake(self: Arc<Self>) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let (mut client, server_end) = tokio::io::duplex(64 << 10);
    client
        .write_all(
            format!("GET /poll/session/{sid}?cursor=1 HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
    let server = ServerConfig::default();
    let incoming = wsduplex::server::read_request(server_end, &server)
        .await
        .unwrap();
    let woken = Arc::new(Woken(AtomicBool::new(false)));
    let waker = Waker::from(woken.clone());
    let mut cx = Context::from_waker(&waker);
    let mut serving = std::pin::pin!(hub.serve(incoming, &server));
    // Polled until it waits: pending without having woken itself (a step before the wait
    // may yield first).
    let mut polls = 0;
    loop {
        woken.0.store(false, Ordering::SeqCst);
        assert!(
            serving.as_mut().poll(&mut cx).is_pending(),
            "a GET with nothing to read was answered at once"
        );
        polls += 1;
        if !woken.0.load(Ordering::SeqCst) {
            break;
        }
        assert!(polls < 100, "the GET never waits");
    }
    hub.publish("wait", "p", "wake up").await.unwrap();
    assert!(
        woken.0.load(Ordering::SeqCst),
        "the publish did not wake the waiting GET"
    );
    // Answered now (polled on while it asks for it: writing the answer may yield).
    let mut polls = 0;
    loop {
        woken.0.store(false, Ordering::SeqCst);
        if let Poll::Ready(other) = serving.as_mut().poll(&mut cx) {
            assert!(other.is_none(), "the hub's own path");
            break;
        }
        polls += 1;
        assert!(
            woken.0.load(Ordering::SeqCst) && polls < 100,
            "woken, the GET waits again"
        );
    }
    let mut raw = Vec::new();
    client.read_to_end(&mut raw).await.unwrap();
    let raw = String::from_utf8(raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{raw}");
    let body: Value = serde_json::from_str(body).unwrap();
    let events = body["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{body}");
    assert_eq!(
        (&events[0]["type"], &events[0]["text"], &body["cursor"]),
        (&json!("message"), &json!("wake up"), &json!(2)),
        "{body}"
    );
}

#[tokio::test]
async fn a_slow_member_is_closed_with_4008_and_the_room_goes_on() {
    let mut c = config();
    c.queue = 4;
    let (addr, hub) = start(c).await;
    let (mut fast, _) = join(addr, "/chat/slow?name=fast").await;
    // A member that never reads.
    let (mut slow, _) = join(addr, "/chat/slow?name=slow").await;
    assert_eq!(next(&mut fast).await["type"], "joined");
    let text = "x".repeat(4000);
    let mut sent = 0;
    // Publish until the slow member is removed (the kernel's and the socket's buffers fill
    // first, then its queue). The fast member reads everything meanwhile.
    let left = loop {
        hub.publish("slow", "p", &text).await.unwrap();
        sent += 1;
        assert!(sent < 100_000, "the slow member was never removed");
        let ev = next(&mut fast).await;
        if ev["type"] == "left" {
            break ev;
        }
        assert_eq!(ev["id"], sent);
    };
    assert_eq!(left["name"], "slow");
    assert_eq!(hub.members("slow").await.unwrap().unwrap().0, ["fast"]);
    // The message whose delivery overflowed the slow member came before `left`.
    assert_eq!(next_of(&mut fast, "message").await["id"], sent);
    // The slow member, reading at last, gets what was buffered, then close 4008.
    let code = loop {
        match tokio::time::timeout(LIMIT, slow.recv())
            .await
            .expect("close in time")
        {
            Some(Ok(Message::Text(_))) => {}
            Some(Ok(Message::Close(frame))) => break frame.map(|f| f.code.as_u16()),
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(code, Some(wsduplex_hub::CLOSE_TOO_SLOW));
    // The room goes on.
    hub.publish("slow", "p", "after").await.unwrap();
    assert_eq!(next_of(&mut fast, "message").await["text"], "after");
}

#[tokio::test]
async fn cut_drops_the_connection_without_a_close_frame() {
    let (addr, _hub) = start(config()).await;
    let (mut a, _) = join(addr, "/chat/cut?name=a").await;
    let (mut b, _) = join(addr, "/chat/cut?name=b").await;
    let r = http(addr, "DELETE", "/api/rooms/cut/members/b", &[], "").await;
    assert_eq!(r.status, 401);
    let r = http(addr, "DELETE", "/api/rooms/cut/members/b", &[&bearer()], "").await;
    assert_eq!(r.status, 204);
    let ended = tokio::time::timeout(LIMIT, b.recv()).await.unwrap();
    assert!(
        matches!(ended, Some(Err(_)) | None),
        "no close frame, just the end: {ended:?}"
    );
    assert_eq!(next_of(&mut a, "left").await["name"], "b");
    let r = http(
        addr,
        "DELETE",
        "/api/rooms/cut/members/zed",
        &[&bearer()],
        "",
    )
    .await;
    assert_eq!(r.status, 404);
}

#[tokio::test]
async fn many_rooms_at_once_stay_apart() {
    let (addr, hub) = start(config()).await;
    let mut members = Vec::new();
    for room in 0..20 {
        for name in ["a", "b"] {
            let (ws, _) = join(addr, &format!("/chat/room{room}?name={name}")).await;
            members.push((room, name, ws));
        }
    }
    // Every member says something only it says: a message that strays into another room,
    // or arrives twice, shows by its text.
    for (room, name, ws) in members.iter_mut() {
        say(ws, &format!("room{room} from {name}")).await;
    }
    let mut seen = Vec::new();
    for (room, _, ws) in members.iter_mut() {
        let mut got = Vec::new();
        for _ in 0..2 {
            let m = next_of(ws, "message").await;
            let id = m["id"].as_u64().unwrap();
            let (r, name, text) = (&m["room"], &m["name"], &m["text"]);
            assert_eq!(r, &json!(format!("room{room}")), "{m}");
            assert_eq!(
                text,
                &json!(format!("room{room} from {}", name.as_str().unwrap())),
                "{m}"
            );
            got.push((id, name.as_str().unwrap().to_string()));
        }
        // The room's own two messages, numbered 1 and 2, one from each member (in the order
        // the room took them).
        let mut names: Vec<&str> = got.iter().map(|(_, n)| n.as_str()).collect();
        names.sort_unstable();
        assert_eq!(names, ["a", "b"], "room{room}: {got:?}");
        assert_eq!(got.iter().map(|(id, _)| *id).collect::<Vec<_>>(), [1, 2]);
        seen.push(got);
    }
    for (room, pair) in seen.chunks(2).enumerate() {
        assert_eq!(pair[0], pair[1], "room{room}: both members, the same order");
        // Nothing else was said in the room.
        let (_, last_id) = hub.members(&format!("room{room}")).await.unwrap().unwrap();
        assert_eq!(last_id, 2, "room{room}");
    }
}

#[tokio::test]
async fn shutdown_closes_members_with_1001_and_refuses_joins() {
    let (addr, hub) = start(config()).await;
    let (mut a, _) = join(addr, "/chat/bye?name=a").await;
    hub.shutdown();
    let code = loop {
        match tokio::time::timeout(LIMIT, a.recv()).await.unwrap() {
            Some(Ok(Message::Close(f))) => break f.map(|f| f.code.as_u16()),
            Some(Ok(_)) => {}
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(code, Some(1001));
    let err = wsduplex::connect(&format!("ws://{addr}/chat/bye?name=b"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("503"), "{err}");
}

#[tokio::test]
async fn page_and_assets() {
    let (addr, _hub) = start(config()).await;
    let r = http(addr, "GET", "/", &[], "").await;
    assert_eq!(r.status, 200);
    assert!(r
        .head
        .contains("Content-Security-Policy: default-src 'none'"));
    let r = http(addr, "POST", "/", &[], "").await;
    assert_eq!(r.status, 405);
    assert_eq!(http(addr, "GET", "/elsewhere", &[], "").await.status, 404);
    // An upgrade to a path that is no WebSocket gets no 200 (over HTTP/2 a 2xx would open
    // the WebSocket): the page, the stream, a session's read, a room's API.
    let upgrade = [
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version: 13",
    ];
    for path in ["/", "/chat.js", "/sse/r", "/api/rooms/r", "/poll/session/x"] {
        let r = http(addr, "GET", path, &upgrade, "").await;
        assert_eq!(r.status, 404, "{path}: {}", r.head);
    }
}

/// A hub whose server takes the `wsduplex_token` cookie (the front door's default Origin
/// policy applies: no allow-list, no opt-out).
async fn start_with_cookie_auth() -> SocketAddr {
    let hub = Hub::new(config());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut server = ServerConfig::default();
    server.auth = Some(wsduplex::auth::AuthHook::new(
        wsduplex::auth::TokenAuth::new([TOKEN]),
    ));
    tokio::spawn(common::serve::serve(listener, hub, server));
    addr
}

/// Joins `/chat/ROOM` as a browser page of `origin` would, with the user's cookie.
async fn join_from(addr: SocketAddr, origin: &str, name: &str) -> wsduplex::Result<common::Ws> {
    let mut c = wsduplex::ClientConfig::default();
    c.headers = vec![
        (
            "Cookie".into(),
            format!("theme=dark; wsduplex_token={TOKEN}"),
        ),
        ("Origin".into(), origin.into()),
    ];
    let url = format!("ws://{addr}/chat/home?name={name}");
    wsduplex::connect_with(&url, &c).await.map(|(ws, _)| ws)
}

/// Cross-site WebSocket hijacking: a page on another origin that the browser sends the
/// cookie from is refused with 403 (no member joins), while the server's own page chats.
#[tokio::test]
async fn a_cookie_from_another_origin_is_refused_and_the_same_origin_chats() {
    let addr = start_with_cookie_auth().await;
    match join_from(addr, "http://evil.example", "eve").await {
        Err(wsduplex::Error::Response(e)) => {
            assert!(e.to_string().contains("403"), "{e}");
        }
        Err(e) => panic!("expected a 403 answer, got {e}"),
        Ok(_) => panic!("a page on another origin joined with the cookie"),
    }
    // The long-polling fallback too: a cross-site POST with the cookie.
    let cookie = format!("Cookie: wsduplex_token={TOKEN}");
    let r = http(
        addr,
        "POST",
        "/poll/home?name=eve",
        &[&cookie, "Origin: http://evil.example"],
        "",
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.head);
    // The same origin (the page served by this host) joins and chats.
    let own = format!("http://{addr}");
    let mut alice = join_from(addr, &own, "alice").await.expect("same origin");
    let welcome = next(&mut alice).await;
    assert_eq!(welcome["type"], "welcome");
    assert_eq!(welcome["members"], json!(["alice"]), "eve never joined");
    let mut bob = join_from(addr, &own, "bob").await.expect("same origin");
    assert_eq!(next(&mut bob).await["type"], "welcome");
    say(&mut bob, "hello from this origin").await;
    let m = next_of(&mut alice, "message").await;
    assert_eq!(
        (&m["name"], &m["text"]),
        (&json!("bob"), &json!("hello from this origin"))
    );
    let r = http(
        addr,
        "POST",
        "/poll/home?name=carol",
        &[&cookie, &format!("Origin: {own}")],
        "",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.head);
    // A token the page's script knows is not ambient: any origin may use it.
    let r = http(
        addr,
        "POST",
        &format!("/poll/home?name=dave&access_token={TOKEN}"),
        &["Origin: http://evil.example"],
        "",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.head);
}
