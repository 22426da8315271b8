//! The hub as three nodes sharing rooms through a real Redis: Debian's `redis-server`,
//! started on a free loopback port with no persistence, and three hubs in this process,
//! each on its own runtime (so a node can die at once, as a killed process would: its
//! sockets close, nothing says goodbye) on `127.0.0.1:0`.
//!
//! Without `redis-server` these tests print a note and pass; `WSDUPLEX_REQUIRE_INTEROP=1`
//! (CI) makes that a failure.

mod common;

use common::{join, next, next_of, say, Ws};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wsduplex::server::ServerConfig;
use wsduplex_hub::{Hub, HubConfig, RedisConfig};

const TOKEN: &str = "s3cret";
/// Upper bound for anything a test waits for; a hang fails instead of blocking CI.
const LIMIT: Duration = Duration::from_secs(15);
/// The first id a node hands out on its own while Redis is down is this far past the last.
const LOCAL_ID_GAP: u64 = 1_000_000;

/// A `redis-server` of our own; killed when dropped.
struct Redis {
    port: u16,
    child: Option<Child>,
}

impl Redis {
    /// `None` (after a note) if Debian's `redis-server` is not installed.
    fn start() -> Option<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut redis = Self { port, child: None };
        match redis.spawn() {
            Ok(()) => Some(redis),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if std::env::var_os("WSDUPLEX_REQUIRE_INTEROP").is_some_and(|v| v == "1") {
                    panic!("redis-server is required (apt-get install redis-server)");
                }
                eprintln!(
                    "\n*** skipped: no redis-server (apt-get install redis-server; \
                     WSDUPLEX_REQUIRE_INTEROP=1 makes this fail) ***\n"
                );
                None
            }
            Err(e) => panic!("redis-server: {e}"),
        }
    }

    fn spawn(&mut self) -> std::io::Result<()> {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--dir", &std::env::temp_dir().to_string_lossy()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        self.child = Some(child);
        // Ready when it answers PING.
        let deadline = Instant::now() + LIMIT;
        loop {
            if let Ok(mut tcp) = std::net::TcpStream::connect(("127.0.0.1", self.port)) {
                use std::io::{Read, Write};
                let mut pong = [0u8; 7];
                if tcp.write_all(b"PING\r\n").is_ok()
                    && tcp.read_exact(&mut pong).is_ok()
                    && &pong == b"+PONG\r\n"
                {
                    return Ok(());
                }
            }
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes (`SIGSTOP`) or thaws (`SIGCONT`) the server: connections stay open and
    /// nothing answers.
    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().unwrap().id().to_string();
        let status = Command::new("kill").args([signal, &pid]).status().unwrap();
        assert!(status.success());
    }

    /// Stopped, then started again on the same port: empty (no persistence).
    fn restart(&mut self) {
        self.stop();
        self.spawn().unwrap();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One hub node with its own runtime.
struct Node {
    addr: SocketAddr,
    hub: Hub,
    rt: Option<tokio::runtime::Runtime>,
}

impl Node {
    fn start(redis: &Redis, presence_ttl: Duration) -> Self {
        let mut config = HubConfig::default();
        config.api_token = Some(TOKEN.into());
        config.history = 20;
        let mut backplane = RedisConfig::new(redis.url());
        backplane.presence_ttl = presence_ttl;
        backplane.timeout = Duration::from_millis(500);
        backplane.max_backoff = Duration::from_millis(200);
        let hub = Hub::with_redis(config, backplane).unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        rt.spawn(hub.clone().maintain());
        let served = hub.clone();
        let mut server = ServerConfig::default();
        server.socket.close_timeout = Duration::from_secs(2);
        rt.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            common::serve(listener, served, server).await;
        });
        Self {
            addr,
            hub,
            rt: Some(rt),
        }
    }

    /// Dies at once: every task and socket of the node goes, nothing says goodbye.
    fn kill(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }

    async fn connected(&self, up: bool) {
        let deadline = Instant::now() + LIMIT;
        while self.hub.is_connected() != Some(up) {
            assert!(
                Instant::now() < deadline,
                "node {} never {}",
                self.addr,
                if up {
                    "connected"
                } else {
                    "noticed Redis was gone"
                }
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

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

/// One HTTP request on a fresh connection: status and JSON body.
async fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, Value) {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let mut req =
        format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {TOKEN}\r\n");
    if !body.is_empty() {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    req.push_str("\r\n");
    req.push_str(body);
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(LIMIT, tcp.read_to_end(&mut raw))
        .await
        .expect("no response in time")
        .unwrap();
    let raw = String::from_utf8(raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head[9..12].parse().unwrap();
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

/// Waits until `GET /api/rooms/ROOM` on `addr` lists exactly `members` (in any order).
async fn members_become(addr: SocketAddr, room: &str, members: &[&str]) {
    let mut want: Vec<&str> = members.to_vec();
    want.sort();
    let deadline = Instant::now() + LIMIT;
    loop {
        let (_, body) = http(addr, "GET", &format!("/api/rooms/{room}"), "").await;
        let mut got: Vec<String> = body["members"]
            .as_array()
            .map(|a| a.iter().map(|v| v.as_str().unwrap().to_string()).collect())
            .unwrap_or_default();
        got.sort();
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "members {got:?}, expected {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn clients_on_three_nodes_chat_with_the_same_ids_in_the_same_order() {
    let Some(redis) = Redis::start() else { return };
    let nodes: Vec<Node> = (0..3)
        .map(|_| Node::start(&redis, Duration::from_secs(15)))
        .collect();
    for n in &nodes {
        n.connected(true).await;
    }
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
    let nodes: Vec<Node> = (0..2)
        .map(|_| Node::start(&redis, Duration::from_secs(15)))
        .collect();
    for n in &nodes {
        n.connected(true).await;
    }
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
