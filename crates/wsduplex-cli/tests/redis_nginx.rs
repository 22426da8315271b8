//! The example of docs/scale-out.md ("Scale-out over Redis"), run as written: the `redis-server` and the
//! three `wsduplex serve --redis ...` nodes of its shell block (their arguments read from
//! the block), and its nginx configuration (the ```conf block) in front, with the fixed
//! ports (6379, 8080, 8081-8083) replaced by free loopback ports. Through nginx:
//! - three WebSocket chat members land on the three nodes (round robin, seen on each node's
//!   `/metrics`) and all see one sequence of messages with the same ids; the push API
//!   (`--api-token` of the block) answers through nginx too;
//! - a long-polling session, whose requests nginx spreads over the nodes (seen in nginx's
//!   access log), sees every message once, in order, and sends from every node;
//! - a node is killed (`SIGKILL`): its member reconnects through nginx with `since` and
//!   gets exactly what it missed, and the long-polling session goes on.
//!
//! Everything runs as the current user on 127.0.0.1, writing in a temporary directory:
//! Debian's `redis-server` and nginx (`daemon off; master_process off;`). Without either
//! the test prints a note and passes; `WSDUPLEX_REQUIRE_INTEROP=1` (CI) makes that a
//! failure.

mod common;
// The hub's tests' member helpers (`next` waits up to this file's `LIMIT`).
#[allow(dead_code)]
#[path = "../../wsduplex-hub/tests/common/mod.rs"]
mod hub_common;

mod redis_site;

use hub_common::{next, Ws};
use redis_site::{tools, Deployment, Example, LIMIT};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::Instant;
use wsduplex::Message;
const ROOM: &str = "scale";

#[tokio::test]
async fn the_documented_deployment_works_as_written() {
    let Some(nginx) = tools() else { return };
    let example = Example::from_doc();
    let mut site = Deployment::start(&example, &nginx);
    for i in 0..site.nodes.len() {
        site.wait_for_redis(i).await;
    }

    // Three members through nginx, each on its own node.
    let mut members = Vec::new();
    // Which node each member is on, and how many members each node has.
    let mut homes = Vec::new();
    let mut spread = vec![0; site.nodes.len()];
    for name in ["alice", "bob", "carol"] {
        let (ws, welcome) = site.join(&format!("/chat/{ROOM}?name={name}")).await;
        assert_eq!(welcome["name"], name, "{welcome}");
        homes.push(site.landed_on(&mut spread).await);
        members.push(Member::new(ws, name));
    }
    let nodes: BTreeSet<usize> = homes.iter().copied().collect();
    assert_eq!(
        nodes.len(),
        3,
        "round robin spreads the members: {spread:?}"
    );

    // Everyone talks; everyone gets one sequence, with the same ids.
    for m in &mut members {
        let text = format!("hello from {}", m.name);
        m.say(&text).await;
    }
    for m in &mut members {
        m.catch_up(3).await;
    }
    let (status, body) = site
        .http_json(
            site.front,
            "POST",
            &format!("/api/rooms/{ROOM}/messages"),
            r#"{"text":"news","name":"desk"}"#,
        )
        .await;
    assert_eq!((status, &body), (201, &json!({"id": 4})));
    for m in &mut members {
        m.catch_up(4).await;
    }
    assert_eq!(members[0].seen.last().unwrap().1, "desk");
    same_history(&members);

    // Long polling through nginx: no stickiness, every request may go to another node.
    let (status, open) = site
        .http_json(site.front, "POST", &format!("/poll/{ROOM}?name=poller"), "")
        .await;
    assert_eq!(status, 200, "{open}");
    let mut poller = Poller::new(&open);
    assert_eq!(poller.ids, [1, 2, 3, 4], "the welcome's history");
    let mut last = 4;
    for round in 0..6 {
        for i in 0..2 {
            members[0].say(&format!("round {round}.{i}")).await;
        }
        last += 2;
        poller.poll_until(&site, last).await;
    }
    for m in &mut members {
        m.catch_up(last).await;
    }
    let path = format!("/poll/session/{}", poller.sid);
    for _ in 0..3 {
        let body = r#"{"type":"message","text":"from the poller"}"#;
        let (status, answer) = site.http_json(site.front, "POST", &path, body).await;
        assert_eq!(status, 202, "{answer}");
    }
    last += 3;
    for m in &mut members {
        m.catch_up(last).await;
        let tail: Vec<&str> = m.seen[m.seen.len() - 3..]
            .iter()
            .map(|s| s.1.as_str())
            .collect();
        assert_eq!(tail, ["poller"; 3]);
    }
    poller.poll_until(&site, last).await;
    same_history(&members);
    assert_eq!(poller.ids, (1..=last).collect::<Vec<_>>(), "once, in order");
    // The session moved between nodes, and nginx sent its requests to every node.
    assert!(poller.welcomes >= 3, "{} welcomes", poller.welcomes);
    let upstreams = site.poll_upstreams();
    let all: BTreeSet<String> = site.nodes.iter().map(|n| n.addr.to_string()).collect();
    assert_eq!(
        upstreams.iter().cloned().collect::<BTreeSet<_>>(),
        all,
        "{upstreams:?}"
    );

    // Bob's node dies; bob reconnects through nginx with `since`.
    let bob = members.remove(1);
    let dead = homes[1];
    let since = bob.last_id();
    site.nodes[dead].kill();
    bob.wait_for_end().await;
    for text in ["while", "bob", "was away"] {
        members[0].say(text).await;
    }
    last += 3;
    for m in &mut members {
        m.catch_up(last).await;
    }
    let (ws, welcome) = site
        .join(&format!("/chat/{ROOM}?name=bob&since={since}"))
        .await;
    // The dead node's "bob" stays listed until the presence TTL (15 to 20 s) runs out.
    let name = welcome["name"].as_str().unwrap();
    assert!(name.starts_with("bob"), "{welcome}");
    assert_eq!(welcome["gap"], false, "{welcome}");
    let missed: Vec<Seen> = welcome["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(Seen::from)
        .collect();
    assert_eq!(missed, members[0].seen[since as usize..], "{welcome}");
    let mut bob = Member::new(ws, name);
    bob.seen = members[0].seen.clone();
    members.push(bob);
    members[0].say("welcome back").await;
    last += 1;
    for m in &mut members {
        m.catch_up(last).await;
    }
    same_history(&members);
    assert_eq!(members[2].seen.last().unwrap().2, "welcome back");
    // The long-polling session goes on, whichever node held it.
    poller.poll_until(&site, last).await;
    assert_eq!(poller.ids, (1..=last).collect::<Vec<_>>(), "once, in order");
}

// ---------------------------------------------------------------------------------------
// Clients
// ---------------------------------------------------------------------------------------

/// A chat message as a member saw it: id, sender, text.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen(u64, String, String);

impl From<&Value> for Seen {
    fn from(m: &Value) -> Self {
        Self(
            m["id"].as_u64().unwrap_or_else(|| panic!("no id in {m}")),
            m["name"].as_str().unwrap().to_string(),
            m["text"].as_str().unwrap().to_string(),
        )
    }
}

/// A WebSocket member and every message it has seen.
struct Member {
    ws: Ws,
    name: String,
    seen: Vec<Seen>,
}

impl Member {
    fn new(ws: Ws, name: &str) -> Self {
        Self {
            ws,
            name: name.to_string(),
            seen: Vec::new(),
        }
    }

    async fn say(&mut self, text: &str) {
        let msg = json!({"type": "message", "text": text}).to_string();
        self.ws.send(msg).await.unwrap();
    }

    fn last_id(&self) -> u64 {
        self.seen.last().map_or(0, |s| s.0)
    }

    /// Reads messages up to id `last`, checking that none is missing or repeated.
    async fn catch_up(&mut self, last: u64) {
        while self.last_id() < last {
            let event = next(&mut self.ws).await;
            if event["type"] != "message" {
                continue;
            }
            let m = Seen::from(&event);
            assert_eq!(
                m.0,
                self.last_id() + 1,
                "{}: after {:?}",
                self.name,
                self.seen
            );
            assert_eq!(event.get("local"), None, "{event}");
            self.seen.push(m);
        }
    }

    /// Its node died: nginx closes the connection.
    async fn wait_for_end(mut self) {
        let ended = async {
            loop {
                match self.ws.recv().await {
                    None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                    Some(Ok(Message::Text(t))) => {
                        let v: Value = serde_json::from_str(t.as_str()).unwrap();
                        assert_ne!(v["type"], "message", "{}: {v}", self.name);
                    }
                    Some(Ok(_)) => {}
                }
            }
        };
        tokio::time::timeout(LIMIT, ended)
            .await
            .expect("the dead node's connection ends");
    }
}

/// Every member saw the same messages, with the same ids, in the same order.
fn same_history(members: &[Member]) {
    for m in &members[1..] {
        assert_eq!(
            m.seen, members[0].seen,
            "{} and {}",
            m.name, members[0].name
        );
    }
}

/// A long-polling session and the message ids it has seen.
struct Poller {
    sid: String,
    cursor: u64,
    ids: Vec<u64>,
    /// Welcomes received: one when the session opens, one each time it moves node.
    welcomes: usize,
}

impl Poller {
    fn new(open: &Value) -> Self {
        let mut poller = Self {
            sid: open["session"].as_str().unwrap().to_string(),
            cursor: open["cursor"].as_u64().unwrap(),
            ids: Vec::new(),
            welcomes: 0,
        };
        poller.read(open);
        poller
    }

    fn read(&mut self, answer: &Value) {
        for e in answer["events"].as_array().unwrap() {
            let messages: Vec<&Value> = match e["type"].as_str() {
                Some("welcome") => {
                    self.welcomes += 1;
                    e["history"].as_array().unwrap().iter().collect()
                }
                Some("message") => vec![e],
                _ => vec![],
            };
            self.ids
                .extend(messages.iter().map(|m| m["id"].as_u64().unwrap()));
        }
    }

    /// `GET`s through nginx (each on the next node) until it has seen id `last`.
    async fn poll_until(&mut self, site: &Deployment, last: u64) {
        let deadline = Instant::now() + LIMIT;
        while self.ids.last().copied().unwrap_or(0) < last {
            let path = format!("/poll/session/{}?cursor={}", self.sid, self.cursor);
            let (status, answer) = site.http_json(site.front, "GET", &path, "").await;
            assert_eq!(status, 200, "{answer}");
            self.cursor = answer["cursor"].as_u64().unwrap();
            self.read(&answer);
            assert!(
                Instant::now() < deadline,
                "seen {:?}, want {last}",
                self.ids
            );
        }
    }
}
