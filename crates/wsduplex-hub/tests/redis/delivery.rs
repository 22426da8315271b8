//! Delivery under load and through failures, across nodes: one room with concurrent senders
//! on two nodes gets one order everywhere; a long-polling session whose node dies goes on
//! on another node with nothing lost and nothing twice; one whose member has an identity
//! stays on its node.

#[path = "../common/load.rs"]
mod load;

use crate::common::{join, next_of, say};
use crate::support::{http, Node, Redis};
use crate::LIMIT;
use load::Load;
use serde_json::Value;
use std::time::{Duration, Instant};
use wsduplex::server::ServerConfig;
use wsduplex_hub::{Hub, HubConfig, RedisConfig};

/// Eight members send 50 messages each at once, spread over two nodes with two more that
/// only read: every member, on either node, gets the same ids in the same order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_senders_on_two_nodes_give_every_member_one_order() {
    let Some(redis) = Redis::start() else { return };
    let nodes: Vec<(Hub, tokio::runtime::Runtime, std::net::SocketAddr)> = (0..2)
        .map(|_| {
            let mut config = HubConfig::default();
            // Members read all the time; a 4008 would fail the test rather than hide a bug.
            config.queue = 4096;
            let hub = Hub::with_redis(config, RedisConfig::new(redis.url())).unwrap();
            let (rt, addr) = crate::common::serve::start(&hub, ServerConfig::default());
            (hub, rt, addr)
        })
        .collect();
    all_connected(&nodes).await;
    let addrs: Vec<_> = nodes.iter().map(|n| n.2).collect();
    let load = Load {
        senders: 8,
        listeners: 2,
        per_sender: 50,
    };
    let seen = load::run(&addrs, "order", load, LIMIT).await;
    load::check(&seen, load);
    for (hub, rt, _) in nodes {
        hub.shutdown();
        rt.shutdown_background();
    }
}

/// The chat messages in a poll answer, as texts: a welcome's history, then live messages.
/// Waits (bounded) until every node's backplane is connected.
async fn all_connected(nodes: &[(Hub, tokio::runtime::Runtime, std::net::SocketAddr)]) {
    for (hub, _, _) in nodes {
        let deadline = Instant::now() + LIMIT;
        while hub.is_connected() != Some(true) {
            assert!(Instant::now() < deadline, "a node never connected");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn texts(body: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for e in body["events"].as_array().unwrap() {
        let msgs = match e["type"].as_str() {
            Some("welcome") => e["history"].as_array().unwrap().clone(),
            Some("message") => vec![e.clone()],
            _ => vec![],
        };
        out.extend(msgs.iter().map(|m| m["text"].as_str().unwrap().to_string()));
    }
    out
}

/// A long-polling session on node A; A dies with messages queued for the session that the
/// client never acknowledged (one answer carrying some of them was lost with it). The
/// session goes on at node B from the client's last cursor: every message after it, once,
/// in order, those sent after the crash included. A new session on B with `since` gets the
/// same.
#[tokio::test]
async fn a_long_polling_session_survives_its_node_crashing() {
    let Some(redis) = Redis::start() else { return };
    let mut a = Node::start(&redis, Duration::from_secs(15));
    let b = Node::start(&redis, Duration::from_secs(15));
    a.connected(true).await;
    b.connected(true).await;
    let (mut talker, _) = join(b.addr, "/chat/crash?name=talker").await;
    let (status, open) = http(a.addr, "POST", "/poll/crash?name=poller", "").await;
    assert_eq!(status, 200, "{open}");
    let sid = open["session"].as_str().unwrap().to_string();
    let mut cursor = open["cursor"].as_u64().unwrap();
    assert_eq!(next_of(&mut talker, "joined").await["name"], "poller");

    // Acknowledged: m1..m3, read on A.
    for i in 1..=3 {
        say(&mut talker, &format!("m{i}")).await;
    }
    let mut read = Vec::new();
    let deadline = Instant::now() + LIMIT;
    while read.len() < 3 {
        let (status, body) = http(a.addr, "GET", &poll(&sid, cursor), "").await;
        assert_eq!(status, 200, "{body}");
        cursor = body["cursor"].as_u64().unwrap();
        read.extend(texts(&body));
        assert!(Instant::now() < deadline, "{read:?}");
    }
    assert_eq!(read, ["m1", "m2", "m3"]);
    let last_id = 3;

    // Not acknowledged: m4..m6 reach A's queue for the session, and an answer carrying
    // them is lost (the client asks again with its old cursor).
    for i in 4..=6 {
        say(&mut talker, &format!("m{i}")).await;
    }
    let deadline = Instant::now() + LIMIT;
    loop {
        let (status, lost) = http(a.addr, "GET", &poll(&sid, cursor), "").await;
        assert_eq!(status, 200, "{lost}");
        if texts(&lost).contains(&"m6".to_string()) {
            break;
        }
        assert!(Instant::now() < deadline, "m6 never reached A: {lost}");
    }
    a.kill();
    for i in 7..=9 {
        say(&mut talker, &format!("m{i}")).await;
    }

    // The same session on B, from the cursor the client holds.
    let mut resumed = Vec::new();
    let deadline = Instant::now() + LIMIT;
    while !resumed.contains(&"m9".to_string()) {
        let (status, body) = http(b.addr, "GET", &poll(&sid, cursor), "").await;
        assert_eq!(status, 200, "{body}");
        cursor = body["cursor"].as_u64().unwrap();
        resumed.extend(texts(&body));
        assert!(Instant::now() < deadline, "{resumed:?}");
    }
    let want: Vec<String> = (4..=9).map(|i| format!("m{i}")).collect();
    assert_eq!(
        resumed, want,
        "after the crash: each message once, in order"
    );

    // A new session on B with `since` (the client's last message id) gets the same.
    let path = format!("/poll/crash?name=again&since={last_id}");
    let (status, open) = http(b.addr, "POST", &path, "").await;
    assert_eq!(status, 200, "{open}");
    assert_eq!(open["events"][0]["gap"], false, "{open}");
    assert_eq!(texts(&open), want, "{open}");
}

fn poll(sid: &str, cursor: u64) -> String {
    format!("/poll/session/{sid}?cursor={cursor}")
}

/// A member with an identity (here read-only) keeps it: its long-polling session is not
/// taken over by another node, where it would have none; that node answers 404 (the client
/// opens a session there with its token and `since`) and nothing is sent in its name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_with_an_identity_is_not_taken_over_by_another_node() {
    use wsduplex::auth::{AuthHook, Authenticated, Credential, Identity, RoomSet};
    let Some(redis) = Redis::start() else { return };
    let mut server = ServerConfig::default();
    server.auth = Some(AuthHook::from_fn(|_| async {
        let reader = Identity::user("u-reader").with_rooms(RoomSet::all(), RoomSet::none());
        Ok(Authenticated::new(reader, Credential::Authorization))
    }));
    let nodes: Vec<(Hub, tokio::runtime::Runtime, std::net::SocketAddr)> = (0..2)
        .map(|_| {
            let hub = Hub::with_redis(HubConfig::default(), RedisConfig::new(redis.url())).unwrap();
            let (rt, addr) = crate::common::serve::start(&hub, server.clone());
            (hub, rt, addr)
        })
        .collect();
    all_connected(&nodes).await;
    let (a, b) = (nodes[0].2, nodes[1].2);
    let (status, open) = http(a, "POST", "/poll/ro", "").await;
    assert_eq!(status, 200, "{open}");
    let sid = open["session"].as_str().unwrap();
    let path = format!("/poll/session/{sid}");
    let body = r#"{"type":"message","text":"not allowed"}"#;
    let (status, refused) = http(a, "POST", &path, body).await;
    assert_eq!(
        (status, &refused["error"]),
        (403, &Value::from("forbidden"))
    );
    let (status, _) = http(b, "POST", &path, body).await;
    assert_eq!(status, 404, "sent in its name from another node");
    let (status, _) = http(b, "GET", &format!("{path}?cursor=1"), "").await;
    assert_eq!(status, 404, "taken over by another node");
    // Nothing was stored: a newcomer's history is empty.
    let (status, other) = http(b, "POST", "/poll/ro", "").await;
    assert_eq!(status, 200);
    let history = &other["events"][0]["history"];
    assert_eq!(history.as_array().map(Vec::len), Some(0), "{history}");
    for (hub, rt, _) in nodes {
        hub.shutdown();
        rt.shutdown_background();
    }
}
