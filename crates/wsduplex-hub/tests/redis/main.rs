//! The hub as nodes sharing rooms through a real Redis: Debian's `redis-server`, started
//! on a free loopback port with no persistence, and hubs in this process, each on its own
//! runtime (so a node can die at once, as a killed process would: its sockets close,
//! nothing says goodbye) on `127.0.0.1:0`. Here: one plain Redis; `tls`: `rediss://`;
//! `sentinel`: a master, a replica and a sentinel, and failovers; `rooms`: many rooms on one
//! connection and `data` across nodes; `hub_client`: the Rust hub client on three nodes
//! (rooms, `data`, JWT permissions, a node killed under it).
//!
//! Without `redis-server` these tests print a note and pass; `WSDUPLEX_REQUIRE_INTEROP=1`
//! (CI) makes that a failure.

#[path = "../common/mod.rs"]
mod common;
mod delivery;
mod hub_client;
mod rooms;
mod sentinel;
mod support;
mod tls;

use common::{join, next, next_of, say, Ws};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use support::{connected_nodes, http, members_become, Node, Redis};

/// Upper bound for anything a test waits for; a hang fails instead of blocking CI.
const LIMIT: Duration = Duration::from_secs(15);
/// The first id a node hands out on its own while Redis is down is this far past the last.
const LOCAL_ID_GAP: u64 = 1_000_000;

/// The next `n` messages, as `(id, name, text)`.
async fn messages(ws: &mut Ws, n: usize) -> Vec<(u64, String, String)> {
    let mut out = Vec::new();
    while out.len() < n {
        let m = next_of(ws, "message").await;
        out.push(summary(&m));
    }
    out
}

fn summary(m: &Value) -> (u64, String, String) {
    (
        m["id"].as_u64().unwrap(),
        m["name"].as_str().unwrap().to_string(),
        m["text"].as_str().unwrap().to_string(),
    )
}

#[tokio::test]
async fn clients_on_three_nodes_chat_with_the_same_ids_in_the_same_order() {
    let Some(redis) = Redis::start() else { return };
    let nodes = connected_nodes(&redis, 3).await;
    let (mut alice, w) = join(nodes[0].addr, "/chat/lobby?name=alice").await;
    assert_eq!(
        (&w["members"], &w["last_id"]),
        (&json!(["alice"]), &json!(0))
    );
    let (mut bob, w) = join(nodes[1].addr, "/chat/lobby?name=bob").await;
    assert_eq!(w["members"], json!(["alice", "bob"]));
    assert_eq!(next(&mut alice).await["name"], "bob", "alice sees bob join");
    let (mut carol, w) = join(nodes[2].addr, "/chat/lobby?name=carol").await;
    assert_eq!(w["members"], json!(["alice", "bob", "carol"]));
    for ws in [&mut alice, &mut bob] {
        let joined = next(ws).await;
        assert_eq!(
            (&joined["type"], &joined["name"]),
            (&json!("joined"), &json!("carol"))
        );
    }
    // Names are unique across nodes.
    let (mut alice2, w) = join(nodes[1].addr, "/chat/lobby?name=alice").await;
    assert_eq!(w["name"], "alice-2");
    for ws in [&mut alice, &mut bob, &mut carol] {
        assert_eq!(next(ws).await["name"], "alice-2");
    }

    // Everyone talks at once; everyone receives the same sequence.
    for i in 0..5 {
        say(&mut alice, &format!("a{i}")).await;
        say(&mut bob, &format!("b{i}")).await;
        say(&mut carol, &format!("c{i}")).await;
    }
    let mut seen = Vec::new();
    for ws in [&mut alice, &mut bob, &mut carol, &mut alice2] {
        seen.push(messages(ws, 15).await);
    }
    let ids: Vec<u64> = seen[0].iter().map(|m| m.0).collect();
    assert_eq!(ids, (1..=15).collect::<Vec<u64>>());
    for other in &seen[1..] {
        assert_eq!(other, &seen[0], "one order, the same ids, on every node");
    }
    for who in ["alice", "bob", "carol"] {
        let texts: Vec<&str> = seen[0]
            .iter()
            .filter(|m| m.1 == who)
            .map(|m| m.2.as_str())
            .collect();
        let p = &who[..1];
        assert_eq!(texts, (0..5).map(|i| format!("{p}{i}")).collect::<Vec<_>>());
    }

    // The push API works on any node, and so does the room's state.
    let (status, body) = http(
        nodes[2].addr,
        "POST",
        "/api/rooms/lobby/messages",
        r#"{"text":"news","name":"desk"}"#,
    )
    .await;
    assert_eq!((status, &body), (201, &json!({"id": 16})));
    for ws in [&mut alice, &mut bob, &mut carol] {
        let m = next_of(ws, "message").await;
        assert_eq!((&m["id"], &m["name"]), (&json!(16), &json!("desk")));
    }
    let (_, body) = http(nodes[0].addr, "GET", "/api/rooms/lobby", "").await;
    assert_eq!(body["last_id"], 16);
    members_become(
        nodes[0].addr,
        "lobby",
        &["alice", "bob", "carol", "alice-2"],
    )
    .await;

    // A newcomer anywhere gets the same history.
    let (_dave, w) = join(nodes[2].addr, "/chat/lobby?name=dave&since=13").await;
    let ids: Vec<u64> = w["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_u64().unwrap())
        .collect();
    assert_eq!((ids, &w["gap"]), (vec![14, 15, 16], &json!(false)));

    // Leaving is seen everywhere.
    bob.close(wsduplex::CloseCode::NORMAL, "").await.unwrap();
    for ws in [&mut alice, &mut carol] {
        let left = next_of(ws, "left").await;
        assert_eq!(left["name"], "bob");
    }
    // Cutting works from any node.
    let (status, _) = http(
        nodes[0].addr,
        "DELETE",
        "/api/rooms/lobby/members/carol",
        "",
    )
    .await;
    assert_eq!(status, 204);
    assert!(matches!(
        tokio::time::timeout(LIMIT, carol.recv()).await.unwrap(),
        Some(Err(_)) | None
    ));
    assert_eq!(next_of(&mut alice, "left").await["name"], "carol");
}

#[tokio::test]
async fn a_dead_nodes_members_leave_and_its_clients_resume_on_another_node() {
    let Some(redis) = Redis::start() else { return };
    let ttl = Duration::from_millis(900);
    let mut nodes: Vec<Node> = (0..3).map(|_| Node::start(&redis, ttl)).collect();
    for n in &nodes {
        n.connected(true).await;
    }
    let (mut alice, _) = join(nodes[0].addr, "/chat/r?name=alice").await;
    let (mut bob, _) = join(nodes[1].addr, "/chat/r?name=bob").await;
    next_of(&mut alice, "joined").await;
    say(&mut alice, "before").await;
    let last = messages(&mut bob, 1).await[0].0;
    assert_eq!(messages(&mut alice, 1).await[0].0, last);

    // Bob's node dies.
    let died = Instant::now();
    nodes[1].kill();
    let ended = tokio::time::timeout(LIMIT, bob.recv()).await.unwrap();
    assert!(matches!(ended, Some(Err(_)) | None), "{ended:?}");
    for t in ["while", "bob", "was away"] {
        say(&mut alice, t).await;
    }
    // Its members leave within the presence TTL (plus a heartbeat).
    let left = next_of(&mut alice, "left").await;
    assert_eq!(left["name"], "bob");
    assert!(died.elapsed() < ttl * 4, "left after {:?}", died.elapsed());

    // Bob reconnects to another node and gets what he missed, then live messages.
    let (mut bob, w) = join(nodes[2].addr, &format!("/chat/r?name=bob&since={last}")).await;
    assert_eq!(w["name"], "bob", "the dead node's name was released");
    assert_eq!(w["gap"], false);
    let missed: Vec<&str> = w["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert_eq!(missed, ["while", "bob", "was away"]);
    assert_eq!(w["members"], json!(["alice", "bob"]));
    say(&mut alice, "welcome back").await;
    let live = messages(&mut bob, 1).await;
    assert_eq!(live[0], (last + 4, "alice".into(), "welcome back".into()));
}

#[tokio::test]
async fn redis_restarts_local_members_chat_meanwhile_and_then_chat_resumes() {
    let Some(mut redis) = Redis::start() else {
        return;
    };
    let nodes = connected_nodes(&redis, 2).await;
    let (mut alice, _) = join(nodes[0].addr, "/chat/x?name=alice").await;
    let (mut amy, _) = join(nodes[0].addr, "/chat/x?name=amy").await;
    let (mut bob, _) = join(nodes[1].addr, "/chat/x?name=bob").await;
    say(&mut alice, "one").await;
    for ws in [&mut alice, &mut amy, &mut bob] {
        assert_eq!(messages(ws, 1).await[0].0, 1);
    }

    redis.stop();
    for n in &nodes {
        n.connected(false).await;
    }
    // The node's own members keep chatting: local ids, marked local.
    say(&mut alice, "still here").await;
    for ws in [&mut alice, &mut amy] {
        let m = next_of(ws, "message").await;
        assert_eq!(
            (&m["text"], &m["local"]),
            (&json!("still here"), &json!(true))
        );
        assert_eq!(m["id"], 1 + LOCAL_ID_GAP);
    }
    say(&mut bob, "alone").await;
    assert_eq!(next_of(&mut bob, "message").await["local"], true);
    // Joins are refused meanwhile, with a reason.
    let refused = wsduplex::connect(&format!("ws://{}/chat/x?name=zed", nodes[0].addr))
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("503"), "{refused}");
    let (status, body) = http(nodes[1].addr, "POST", "/poll/x?name=zed", "").await;
    assert_eq!((status, &body["error"]), (503, &json!("unavailable")));
    // Leaving still tells the node's members.
    amy.close(wsduplex::CloseCode::NORMAL, "").await.unwrap();
    assert_eq!(next_of(&mut alice, "left").await["name"], "amy");

    // Redis comes back empty; the nodes reconnect, restore ids and presence.
    redis.restart();
    for n in &nodes {
        n.connected(true).await;
    }
    members_become(nodes[1].addr, "x", &["alice", "bob"]).await;
    members_become(nodes[0].addr, "x", &["alice", "bob"]).await;
    say(&mut bob, "back").await;
    let a = next_of(&mut alice, "message").await;
    let b = next_of(&mut bob, "message").await;
    assert_eq!(a, b, "the same message, the same id, on both nodes");
    assert_eq!(a["text"], "back");
    assert_eq!(a.get("local"), None);
    assert!(
        a["id"].as_u64().unwrap() > 1 + LOCAL_ID_GAP,
        "ids never go back: {a}"
    );
    // Joining works again, on either node.
    let (_zed, w) = join(nodes[0].addr, "/chat/x?name=zed").await;
    assert_eq!(w["last_id"], a["id"]);
    assert_eq!(next_of(&mut bob, "joined").await["name"], "zed");
}

#[tokio::test]
async fn a_redis_that_stops_answering_counts_as_down_until_it_answers_again() {
    let Some(redis) = Redis::start() else { return };
    let nodes: Vec<Node> = (0..2)
        .map(|_| Node::start(&redis, Duration::from_millis(900)))
        .collect();
    for n in &nodes {
        n.connected(true).await;
    }
    let (mut alice, _) = join(nodes[0].addr, "/chat/h?name=alice").await;
    let (mut bob, _) = join(nodes[1].addr, "/chat/h?name=bob").await;
    next_of(&mut alice, "joined").await;
    redis.signal("-STOP");
    // Noticed by the next heartbeat's timeout.
    for n in &nodes {
        n.connected(false).await;
    }
    say(&mut alice, "anyone?").await;
    let m = next_of(&mut alice, "message").await;
    assert_eq!(
        (&m["local"], &m["id"]),
        (&json!(true), &json!(LOCAL_ID_GAP))
    );
    redis.signal("-CONT");
    for n in &nodes {
        n.connected(true).await;
    }
    say(&mut bob, "yes").await;
    let (a, b) = (
        next_of(&mut alice, "message").await,
        next_of(&mut bob, "message").await,
    );
    assert_eq!(a, b);
    assert_eq!(a["id"], LOCAL_ID_GAP + 1, "past the local id alice saw");
}

/// Redis freezes (`SIGSTOP`) just as a member sends: the publish times out and its node
/// delivers the message locally, but Redis has the script in its socket buffer and runs it
/// when it thaws. Every member still gets the message once: the sender's node recognises
/// it in the resync and does not deliver it again; the other node delivers the copy from Redis.
#[tokio::test]
async fn a_message_sent_as_redis_froze_is_delivered_once_everywhere() {
    let Some(redis) = Redis::start() else { return };
    let nodes = connected_nodes(&redis, 2).await;
    let (mut alice, _) = join(nodes[0].addr, "/chat/fz?name=alice").await;
    let (mut amy, _) = join(nodes[0].addr, "/chat/fz?name=amy").await;
    let (mut bob, _) = join(nodes[1].addr, "/chat/fz?name=bob").await;
    next_of(&mut alice, "joined").await;
    next_of(&mut alice, "joined").await;
    next_of(&mut amy, "joined").await;
    say(&mut alice, "before").await;
    for ws in [&mut alice, &mut amy, &mut bob] {
        assert_eq!(messages(ws, 1).await[0].0, 1);
    }

    redis.signal("-STOP");
    // Alice's publish waits for its answer (the node's timeout), then her node delivers
    // the message itself.
    say(&mut alice, "frozen").await;
    let mut seen: Vec<Vec<Value>> = vec![Vec::new(), Vec::new(), Vec::new()];
    for (ws, seen) in [&mut alice, &mut amy].into_iter().zip(&mut seen) {
        let m = next_of(ws, "message").await;
        assert_eq!((&m["text"], &m["local"]), (&json!("frozen"), &json!(true)));
        seen.push(m);
    }
    nodes[0].connected(false).await;
    redis.signal("-CONT");
    for n in &nodes {
        n.connected(true).await;
    }
    members_become(nodes[0].addr, "fz", &["alice", "amy", "bob"]).await;
    say(&mut bob, "after").await;
    for (ws, seen) in [&mut alice, &mut amy, &mut bob].into_iter().zip(&mut seen) {
        loop {
            let m = next_of(ws, "message").await;
            let last = m["text"] == "after";
            seen.push(m);
            if last {
                break;
            }
        }
    }
    for (who, seen) in ["alice", "amy", "bob"].iter().zip(&seen) {
        let frozen: Vec<&Value> = seen.iter().filter(|m| m["text"] == "frozen").collect();
        assert_eq!(frozen.len(), 1, "{who} got {seen:?}");
    }
    // Bob's node never had it locally: he gets the copy Redis ran, with its id from Redis.
    let ran = seen[2].iter().find(|m| m["text"] == "frozen").unwrap();
    assert_eq!(ran.get("local"), None, "{ran}");
    assert_eq!(ran["id"], 2, "{ran}");
    let after: Vec<&Value> = seen.iter().map(|s| s.last().unwrap()).collect();
    assert!(after.iter().all(|m| m == &after[0]), "{after:?}");
}

/// Long polling with no sticky sessions: every request of one session goes to another
/// node, and the session still sees every message once, in order.
#[tokio::test]
async fn a_long_polling_session_hops_between_nodes() {
    let Some(redis) = Redis::start() else { return };
    let mut nodes: Vec<Node> = (0..3)
        .map(|_| Node::start(&redis, Duration::from_millis(900)))
        .collect();
    for n in &nodes {
        n.connected(true).await;
    }
    let (mut ws, _) = join(nodes[0].addr, "/chat/lp?name=ws").await;
    let (status, open) = http(nodes[1].addr, "POST", "/poll/lp?name=poller", "").await;
    assert_eq!(status, 200, "{open}");
    let sid = open["session"].as_str().unwrap().to_string();
    let mut cursor = open["cursor"].as_u64().unwrap();
    assert_eq!(next_of(&mut ws, "joined").await["name"], "poller");

    // What the poller has seen: message ids, from welcomes' history and live events.
    let mut seen: Vec<u64> = Vec::new();
    let mut welcomes = 0;
    let read = |body: &Value, seen: &mut Vec<u64>, welcomes: &mut usize| {
        for e in body["events"].as_array().unwrap() {
            let msgs: Vec<&Value> = match e["type"].as_str() {
                Some("welcome") => {
                    *welcomes += 1;
                    e["history"].as_array().unwrap().iter().collect()
                }
                Some("message") => vec![e],
                _ => vec![],
            };
            for m in msgs {
                seen.push(m["id"].as_u64().unwrap());
            }
        }
    };
    let mut sent = 0;
    for round in 0..9 {
        // Two messages from the WebSocket member, then a read on the next node.
        for _ in 0..2 {
            sent += 1;
            say(&mut ws, &format!("m{sent}")).await;
        }
        let want = sent;
        let node = &nodes[(round + 2) % 3];
        let deadline = Instant::now() + LIMIT;
        while seen.last().copied().unwrap_or(0) < want {
            let path = format!("/poll/session/{sid}?cursor={cursor}");
            let (status, body) = http(node.addr, "GET", &path, "").await;
            assert_eq!(status, 200, "round {round}: {body}");
            cursor = body["cursor"].as_u64().unwrap();
            read(&body, &mut seen, &mut welcomes);
            assert!(Instant::now() < deadline, "round {round}: seen {seen:?}");
        }
    }
    assert_eq!(
        seen,
        (1..=sent).collect::<Vec<u64>>(),
        "each message once, in order"
    );
    assert!(welcomes >= 7, "each hop starts with a welcome ({welcomes})");

    // Sending through a node that does not hold the session.
    let path = format!("/poll/session/{sid}");
    let body = r#"{"type":"message","text":"from the poller"}"#;
    for n in &nodes {
        let (status, _) = http(n.addr, "POST", &path, body).await;
        assert_eq!(status, 202);
    }
    let mut from_poller = 0;
    while from_poller < 3 {
        let m = next_of(&mut ws, "message").await;
        if m["name"] == "poller" {
            assert_eq!(m["text"], "from the poller");
            from_poller += 1;
        }
    }
    // The hops were invisible to the room: no one left or joined.
    members_become(nodes[0].addr, "lp", &["ws", "poller"]).await;

    // The node holding the session dies; the session goes on elsewhere.
    let holder = (8 + 2) % 3;
    nodes[holder].kill();
    say(&mut ws, "after the crash").await;
    let other = &nodes[(holder + 1) % 3];
    let deadline = Instant::now() + LIMIT;
    let mut texts = Vec::new();
    while !texts.contains(&"after the crash".to_string()) {
        let path = format!("/poll/session/{sid}?cursor={cursor}");
        let (status, body) = http(other.addr, "GET", &path, "").await;
        assert_eq!(status, 200, "{body}");
        cursor = body["cursor"].as_u64().unwrap();
        for e in body["events"].as_array().unwrap() {
            let msgs = match e["type"].as_str() {
                Some("welcome") => e["history"].as_array().unwrap().clone(),
                Some("message") => vec![e.clone()],
                _ => vec![],
            };
            texts.extend(msgs.iter().map(|m| m["text"].as_str().unwrap().to_string()));
        }
        assert!(Instant::now() < deadline, "{texts:?}");
    }
    assert_eq!(texts.last().unwrap(), "after the crash");

    // Closing from yet another node: the room sees the poller leave.
    let last = &nodes[(holder + 2) % 3];
    let (status, _) = http(last.addr, "DELETE", &format!("/poll/session/{sid}"), "").await;
    assert_eq!(status, 204);
    let deadline = Instant::now() + LIMIT;
    loop {
        let e = next(&mut ws).await;
        if e["type"] == "left" && e["name"] == "poller" {
            break;
        }
        assert!(Instant::now() < deadline);
    }
    let path = format!("/poll/session/{sid}?cursor={cursor}");
    let (status, body) = http(last.addr, "GET", &path, "").await;
    assert_eq!((status, &body["error"]), (404, &json!("unknown_session")));
}

/// `GET /api/rooms/ROOM` and cuts answer on a node that never had the room: presence is
/// read from Redis, and the cut reaches the node holding the member.
#[tokio::test]
async fn room_state_and_cuts_work_on_a_node_without_the_room() {
    let Some(mut redis) = Redis::start() else {
        return;
    };
    let nodes = connected_nodes(&redis, 3).await;
    let (mut alice, _) = join(nodes[0].addr, "/chat/st?name=alice").await;
    let (mut bob, _) = join(nodes[1].addr, "/chat/st?name=bob").await;
    next_of(&mut alice, "joined").await;
    say(&mut alice, "hi").await;
    assert_eq!(messages(&mut bob, 1).await[0].0, 1);

    // Node 2 has never had a member in the room.
    let elsewhere = nodes[2].addr;
    let (status, body) = http(elsewhere, "GET", "/api/rooms/st", "").await;
    assert_eq!(
        (status, body),
        (
            200,
            json!({"room": "st", "members": ["alice", "bob"], "last_id": 1})
        )
    );
    let (status, body) = http(elsewhere, "GET", "/api/rooms/nowhere", "").await;
    assert_eq!((status, &body["error"]), (404, &json!("unknown_room")));
    let (status, body) = http(elsewhere, "DELETE", "/api/rooms/st/members/nobody", "").await;
    assert_eq!((status, &body["error"]), (404, &json!("unknown_member")));

    // Cutting bob from there: his node cuts him, everyone sees him leave.
    let (status, _) = http(elsewhere, "DELETE", "/api/rooms/st/members/bob", "").await;
    assert_eq!(status, 204);
    assert!(matches!(
        tokio::time::timeout(LIMIT, bob.recv()).await.unwrap(),
        Some(Err(_)) | None
    ));
    assert_eq!(next_of(&mut alice, "left").await["name"], "bob");
    members_become(elsewhere, "st", &["alice"]).await;
    // Still not following the room: a message is counted, not delivered, there.
    say(&mut alice, "again").await;
    assert_eq!(messages(&mut alice, 1).await[0].0, 2);
    let (_, body) = http(elsewhere, "GET", "/api/rooms/st", "").await;
    assert_eq!(body["last_id"], 2);

    // Without Redis, only a node that follows the room knows it.
    redis.stop();
    for n in &nodes {
        n.connected(false).await;
    }
    for (method, path) in [
        ("GET", "/api/rooms/st"),
        ("DELETE", "/api/rooms/st/members/alice"),
    ] {
        let (status, body) = http(elsewhere, method, path, "").await;
        assert_eq!((status, &body["error"]), (503, &json!("unavailable")));
    }
    let (status, body) = http(nodes[0].addr, "GET", "/api/rooms/st", "").await;
    assert_eq!((status, &body["members"]), (200, &json!(["alice"])));
    let (status, _) = http(nodes[0].addr, "DELETE", "/api/rooms/st/members/alice", "").await;
    assert_eq!(status, 204);
    assert!(matches!(
        tokio::time::timeout(LIMIT, alice.recv()).await.unwrap(),
        Some(Err(_)) | None
    ));
}
