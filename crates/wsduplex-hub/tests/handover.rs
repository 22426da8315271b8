//! The hub handed to another hub (issue 19, the hub's part): members stopped with their
//! sockets, the rooms written down and read back (through serde), and the members resumed
//! on the new hub over the same TCP connections: no close, no presence event, ids going on
//! with no gap and no duplicate, a message published during the hand-over delivered once.
//! The states cross as bytes (`encode`, `decode`: feature `handover`); the process
//! boundary (file descriptors, the socket's state) is `wsduplex serve --take-over`'s,
//! tested in the CLI's tests.
#![cfg(feature = "handover")]

mod common;

use common::{join, next, next_of, say, Ws};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use wsduplex::server::ServerConfig;
use wsduplex::{CloseCode, Message};
use wsduplex_hub::{HandedMember, HandoverError, Hub, HubConfig, HubState, Imported, MemberState};

const LIMIT: Duration = Duration::from_secs(10);

fn server() -> ServerConfig {
    let mut server = ServerConfig::default();
    server.socket.close_timeout = Duration::from_secs(2);
    server
}

async fn start(config: HubConfig) -> (SocketAddr, Hub) {
    let hub = Hub::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(common::serve::serve(listener, hub.clone(), server()));
    (addr, hub)
}

async fn send(ws: &mut Ws, v: Value) {
    ws.send(v.to_string()).await.unwrap();
}

/// Freezes `old`, collects its `n` members, and writes its rooms down (through JSON, as
/// bytes would travel).
async fn hand_over(old: &Hub, n: usize) -> (HubState, Vec<HandedMember<TcpStream>>) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    old.hand_members_to::<TcpStream>(tx);
    old.freeze().unwrap();
    let mut members = Vec::new();
    while members.len() < n {
        let m = tokio::time::timeout(LIMIT, rx.recv())
            .await
            .unwrap()
            .unwrap();
        members.push(m);
    }
    let state = HubState::decode(&old.export_state().unwrap().encode()).unwrap();
    (state, members)
}

/// A new hub that took `old`'s rooms, written down through bytes (as they travel between
/// processes), and what its import did.
fn imported_by_a_new_hub(old: &Hub) -> (Hub, Imported) {
    let state = HubState::decode(&old.export_state().unwrap().encode()).unwrap();
    let new = Hub::new(HubConfig::default());
    let imported = new.import_state(state).unwrap();
    (new, imported)
}

fn resume_all(new: &Hub, members: Vec<HandedMember<TcpStream>>) {
    for m in members {
        let (new, state) = (new.clone(), roundtrip(&m.state));
        tokio::spawn(async move { new.resume_member(m.socket, state, &server()).await });
    }
}

fn roundtrip(state: &MemberState) -> MemberState {
    MemberState::decode(&state.encode()).unwrap()
}

#[tokio::test]
async fn members_move_to_a_new_hub_over_their_own_connections() {
    let (addr, old) = start(HubConfig::default()).await;
    let (mut alice, _) = join(addr, "/chat/lobby?name=alice").await;
    let (mut bob, _) = join(addr, "/chat/lobby?name=alice").await; // unique: alice-2
    send(&mut bob, json!({"type": "subscribe", "room": "news"})).await;
    let welcome = next_of(&mut bob, "welcome").await;
    assert_eq!(welcome["room"], "news");
    let (mut carol, _) = join(addr, "/chat/news?name=carol").await;
    for (i, text) in ["one", "two"].iter().enumerate() {
        send(&mut alice, json!({"type": "message", "text": text})).await;
        let got = next_of(&mut bob, "message").await;
        assert_eq!(
            (got["id"].as_u64(), &got["text"]),
            (Some(i as u64 + 1), &json!(text))
        );
    }
    // Everything before the hand-over read: what comes next is the test's.
    for _ in 0..2 {
        next_of(&mut alice, "message").await;
    }
    let ports = [&alice, &bob, &carol].map(|ws| ws.get_ref().tcp().unwrap().local_addr().unwrap());

    let (tx, mut rx) = mpsc::unbounded_channel();
    old.hand_members_to::<TcpStream>(tx);
    old.freeze().unwrap();
    let mut members = Vec::new();
    while members.len() < 3 {
        members.push(
            tokio::time::timeout(LIMIT, rx.recv())
                .await
                .unwrap()
                .unwrap(),
        );
    }
    // Published after the members stopped, before the rooms were written down: delivered
    // by the new hub, once.
    old.publish("news", "api", "during").await.unwrap();
    let (new, imported) = imported_by_a_new_hub(&old);
    assert_eq!(imported.skipped, 0);
    // Nothing is published on the old hub afterwards.
    assert!(old.publish("news", "api", "lost").await.is_err());

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let new_addr = listener.local_addr().unwrap();
    tokio::spawn(common::serve::serve(listener, new.clone(), server()));
    resume_all(&new, members);

    // The message published during the hand-over, once, with the next id of its room.
    for ws in [&mut bob, &mut carol] {
        let got = next(ws).await;
        assert_eq!(
            (got["type"].as_str(), got["text"].as_str()),
            (Some("message"), Some("during"))
        );
        assert_eq!(
            (got["room"].as_str(), got["id"].as_u64()),
            (Some("news"), Some(1))
        );
    }
    // Ids go on; names are the ones they had; no presence event came from the move.
    send(&mut alice, json!({"type": "message", "text": "three"})).await;
    for ws in [&mut alice, &mut bob] {
        let got = next(ws).await;
        assert_eq!(
            (got["type"].as_str(), got["id"].as_u64()),
            (Some("message"), Some(3)),
            "{got}"
        );
        assert_eq!(got["name"], "alice");
    }
    send(
        &mut bob,
        json!({"type": "message", "room": "news", "text": "x"}),
    )
    .await;
    for ws in [&mut bob, &mut carol] {
        let got = next(ws).await;
        assert_eq!(
            (got["id"].as_u64(), got["name"].as_str()),
            (Some(2), Some("alice")),
            "{got}"
        );
    }
    // The same TCP connections.
    let now = [&alice, &bob, &carol].map(|ws| ws.get_ref().tcp().unwrap().local_addr().unwrap());
    assert_eq!(ports, now);
    // A newcomer on the new hub sees the moved members, and is announced to them.
    let (_dave, welcome) = join(new_addr, "/chat/lobby?name=dave").await;
    // Moved members are seated in the order they were resumed, which is the order their
    // tasks stopped in: any order.
    let mut members: Vec<_> = welcome["members"].as_array().unwrap().clone();
    assert_eq!(members.pop(), Some(json!("dave")));
    members.sort_by_key(|m| m.to_string());
    assert_eq!(members, [json!("alice"), json!("alice-2")]);
    assert_eq!(welcome["last_id"], 3);
    let joined = next(&mut alice).await;
    assert_eq!(
        (joined["type"].as_str(), joined["name"].as_str()),
        (Some("joined"), Some("dave"))
    );
}

#[tokio::test]
async fn a_member_whose_messages_left_history_is_closed_to_resume() {
    let mut config = HubConfig::default();
    config.history = 2;
    let (addr, old) = start(config.clone()).await;
    let (mut alice, _) = join(addr, "/chat/r?name=alice").await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    old.hand_members_to::<TcpStream>(tx);
    old.freeze().unwrap();
    let member = tokio::time::timeout(LIMIT, rx.recv())
        .await
        .unwrap()
        .unwrap();
    // Three messages during the hand-over: history keeps two.
    for i in 0..3 {
        old.publish("r", "api", &format!("m{i}")).await.unwrap();
    }
    let new = Hub::new(config);
    new.import_state(old.export_state().unwrap()).unwrap();
    resume_all(&new, vec![member]);
    let item = tokio::time::timeout(LIMIT, alice.recv()).await.unwrap();
    match item {
        Some(Ok(Message::Close(Some(frame)))) => assert_eq!(frame.code, CloseCode::GOING_AWAY),
        other => panic!("expected a 1001 close, got {other:?}"),
    }
}

#[tokio::test]
async fn without_a_sink_members_are_closed_with_1001_and_history_moves() {
    let (addr, old) = start(HubConfig::default()).await;
    let (mut alice, _) = join(addr, "/chat/r?name=alice").await;
    send(&mut alice, json!({"type": "message", "text": "kept"})).await;
    next_of(&mut alice, "message").await;
    old.freeze().unwrap();
    let item = tokio::time::timeout(LIMIT, alice.recv()).await.unwrap();
    assert!(
        matches!(&item, Some(Ok(Message::Close(Some(f)))) if f.code == CloseCode::GOING_AWAY),
        "{item:?}"
    );
    let new_hub = Hub::new(HubConfig::default());
    let (state, _) = hand_over(&old, 0).await;
    new_hub.import_state(state).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let new_addr = listener.local_addr().unwrap();
    tokio::spawn(common::serve::serve(listener, new_hub, server()));
    // The client resumes on the new hub with `since`: nothing lost, nothing twice.
    let (_ws, welcome) = join(new_addr, "/chat/r?name=alice&since=0").await;
    let texts: Vec<_> = welcome["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].clone())
        .collect();
    assert_eq!(texts, [json!("kept")]);
    assert_eq!(welcome["last_id"], 1);
}

#[cfg(feature = "redis")]
#[test]
fn a_hub_on_redis_keeps_its_rooms_there() {
    let redis = wsduplex_hub::RedisConfig::new("redis://127.0.0.1:1");
    let hub = Hub::with_redis(HubConfig::default(), redis).unwrap();
    assert!(matches!(hub.freeze(), Err(HandoverError::Backplane)));
    assert!(matches!(hub.export_state(), Err(HandoverError::Backplane)));
}

async fn serve(hub: &Hub) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(common::serve::serve(listener, hub.clone(), server()));
    addr
}

#[tokio::test]
async fn ids_and_history_go_on_in_the_new_process() {
    let mut config = HubConfig::default();
    config.history = 4;
    let old = Hub::new(config.clone());
    for i in 1..=6 {
        assert_eq!(
            old.publish("lobby", "bot", &format!("m{i}")).await.unwrap(),
            i
        );
    }
    old.publish("quiet", "bot", "only").await.unwrap();

    let bytes = old.export_state().unwrap().encode();
    let state = HubState::decode(&bytes).unwrap();
    assert_eq!(state.rooms(), 2);
    let new = Hub::new(config);
    let imported = new.import_state(state).unwrap();
    assert_eq!((imported.rooms, imported.skipped), (2, 0));

    // A client that had seen up to 4 resumes on the new process: 5 and 6, no gap.
    let addr = serve(&new).await;
    let (mut ws, welcome) = join(addr, "/chat/lobby?name=alice&since=4").await;
    assert_eq!(welcome["last_id"], 6);
    assert_eq!(welcome["gap"], false);
    let ids: Vec<_> = welcome["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].clone())
        .collect();
    assert_eq!(ids, [json!(5), json!(6)]);
    // The next message is 7.
    say(&mut ws, "hello").await;
    let msg = next(&mut ws).await;
    assert_eq!((&msg["id"], &msg["text"]), (&json!(7), &json!("hello")));
    // One that had seen only 1 is told it missed some (history keeps 4: 3 to 6).
    let (_ws, welcome) = join(addr, "/chat/lobby?name=bob&since=1").await;
    assert_eq!(welcome["gap"], true);
    assert_eq!(new.members("quiet").await.unwrap().unwrap().1, 1);

    // A room that already has messages here is left as it is.
    let again = new.import_state(old.export_state().unwrap()).unwrap();
    assert_eq!((again.rooms, again.skipped), (0, 2));
}

#[test]
fn a_state_of_another_version_or_not_a_state_is_refused() {
    let mut bytes = HubState::default().encode();
    assert_eq!(&bytes[..6], b"WSDH\x00\x02");
    bytes[5] = 9;
    let err = HubState::decode(&bytes).unwrap_err();
    assert!(
        matches!(
            err,
            HandoverError::Version {
                found: 9,
                supported: 2
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "hand-over state version 9; this build reads version 2"
    );
    assert!(matches!(
        HubState::decode(b"WSDX\x00\x01"),
        Err(HandoverError::NotAState)
    ));
    assert!(matches!(
        HubState::decode(b"WSDH\x00\x02\x05"),
        Err(HandoverError::Malformed(_))
    ));
}

#[tokio::test]
async fn a_failed_hand_over_thaws_and_members_resume_on_the_old_hub() {
    let (addr, old) = start(HubConfig::default()).await;
    let (mut alice, _) = join(addr, "/chat/r?name=alice").await;
    let (mut bob, _) = join(addr, "/chat/r?name=bob").await;
    next_of(&mut alice, "joined").await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    old.hand_members_to::<TcpStream>(tx);
    old.freeze().unwrap();
    tokio::time::timeout(LIMIT, old.members_stopped())
        .await
        .expect("members stop");
    let mut members = Vec::new();
    while let Ok(m) = rx.try_recv() {
        members.push(m);
    }
    assert_eq!(
        members.len(),
        2,
        "every member is in the sink once they stopped"
    );
    old.export_state().unwrap();
    // The new process died: the old hub serves again, and takes its members back.
    old.thaw();
    resume_all(&old, members);
    say(&mut bob, "still here").await;
    for ws in [&mut alice, &mut bob] {
        let got = next(ws).await;
        assert_eq!(
            (
                got["type"].as_str(),
                got["id"].as_u64(),
                got["text"].as_str()
            ),
            // Past any id the new process may have given before it died.
            (Some("message"), Some(1 + (1 << 32)), Some("still here")),
            "{got}"
        );
    }
    old.publish("r", "api", "push").await.unwrap();
    assert_eq!(next(&mut alice).await["id"], 2 + (1u64 << 32));
}

/// While the hub is handed over, what it refuses asks the client to come back: the push
/// API after the export and a join after the freeze get `503` with `Retry-After`.
#[tokio::test]
async fn refusals_during_a_hand_over_ask_to_come_back() {
    let mut config = HubConfig::default();
    config.api_token = Some("s3cret".into());
    let (addr, old) = start(config).await;
    old.freeze().unwrap();
    old.export_state().unwrap();
    let push = common::http(
        addr,
        "POST",
        "/api/rooms/r/messages",
        &[
            "Authorization: Bearer s3cret",
            "Content-Type: application/json",
        ],
        r#"{"text":"late","name":"ci"}"#,
        LIMIT,
    )
    .await;
    assert_eq!(
        (push.status, &push.body["error"]),
        (503, &json!("handing_over"))
    );
    assert!(push.head.contains("Retry-After: 1"), "{}", push.head);
    let upgrade = common::http(
        addr,
        "GET",
        "/chat/r?name=x",
        &[
            "Upgrade: websocket",
            "Connection: Upgrade",
            "Sec-WebSocket-Version: 13",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        ],
        "",
        LIMIT,
    )
    .await;
    assert_eq!(upgrade.status, 503, "{}", upgrade.head);
    assert!(upgrade.head.contains("Retry-After: 1"), "{}", upgrade.head);
}

/// A new process took the rooms, gave ids there and died: its members' clients resume on
/// the old hub with ids it never gave. No id is given twice in a room: the old hub's ids
/// move on past the dead one's (by 2^32), so the next message reaches such a client, after
/// a welcome that says what the dead process alone had is lost.
#[tokio::test]
async fn after_a_failed_hand_over_no_id_the_dead_process_gave_is_given_again() {
    const MARGIN: u64 = 1 << 32;
    let old = Hub::new(HubConfig::default());
    for i in 1..=3 {
        assert_eq!(old.publish("r", "bot", &format!("m{i}")).await.unwrap(), i);
    }
    old.freeze().unwrap();
    let (new, _) = imported_by_a_new_hub(&old);
    // The new process serves a while: ids 4 and 5 here, and a room the old hub never had.
    assert_eq!(new.publish("r", "bot", "dead-4").await.unwrap(), 4);
    assert_eq!(new.publish("r", "bot", "dead-5").await.unwrap(), 5);
    assert_eq!(new.publish("fresh", "bot", "dead-1").await.unwrap(), 1);
    drop(new);

    old.thaw();
    let addr = serve(&old).await;
    // A client that saw the dead process's 5: nothing to replay, and told of a gap.
    let (mut dead_side, welcome) = join(addr, "/chat/r?name=carol&since=5").await;
    assert_eq!(
        (&welcome["last_id"], &welcome["gap"], &welcome["history"]),
        (&json!(3 + MARGIN), &json!(true), &json!([])),
        "{welcome}"
    );
    // One that had seen everything the old hub gave: all of it, no gap.
    let (mut old_side, welcome) = join(addr, "/chat/r?name=dave&since=3").await;
    assert_eq!(
        (&welcome["gap"], &welcome["history"]),
        (&json!(false), &json!([])),
        "{welcome}"
    );
    let (_, welcome) = join(addr, "/chat/r?name=erin&since=1").await;
    let ids: Vec<_> = welcome["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].clone())
        .collect();
    assert_eq!(
        (&welcome["gap"], ids),
        (&json!(false), vec![json!(2), json!(3)])
    );

    let id = old.publish("r", "api", "after").await.unwrap();
    assert_eq!(id, 4 + MARGIN);
    for ws in [&mut dead_side, &mut old_side] {
        let got = next_of(ws, "message").await;
        assert_eq!((&got["id"], &got["text"]), (&json!(id), &json!("after")));
    }

    // A room made here after the failure starts past any id the dead process gave in it.
    let (_ws, welcome) = join(addr, "/chat/fresh?name=carol&since=1").await;
    assert_eq!(
        (&welcome["last_id"], &welcome["gap"]),
        (&json!(MARGIN), &json!(true)),
        "{welcome}"
    );
    assert_eq!(
        old.publish("fresh", "api", "first").await.unwrap(),
        MARGIN + 1
    );
}
