//! Server-Sent Events (`GET /sse/ROOM`) against a served hub, read as raw
//! `text/event-stream`: the session event, ids on messages, a member on SSE and one on
//! WebSocket in one room and one order, sending through `POST /poll/session/ID`, a cut
//! stream resumed with `Last-Event-ID` without loss or duplicate, keepalive comments when
//! idle, the member leaving with its stream, and refusals as JSON errors.

#[allow(dead_code)]
mod common;

use common::{join, next_of, say, Resp};
use serde_json::Value;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use wsduplex::ServerConfig;
use wsduplex_hub::{Hub, HubConfig};

const LIMIT: Duration = Duration::from_secs(10);

async fn start(config: HubConfig) -> (SocketAddr, Hub) {
    let hub = Hub::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(common::serve::serve(
        listener,
        hub.clone(),
        ServerConfig::default(),
    ));
    (addr, hub)
}

/// One parsed SSE event: its `event:` name, `id:`, and `data:` as JSON.
#[derive(Debug, Default)]
struct Event {
    name: Option<String>,
    id: Option<u64>,
    data: Value,
}

/// An open `text/event-stream`, read event by event; comments are counted.
struct Sse {
    tcp: TcpStream,
    buf: String,
    comments: usize,
    head: String,
}

impl Sse {
    async fn open(addr: SocketAddr, path: &str, headers: &[&str]) -> Self {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        let mut req =
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n");
        for h in headers {
            req.push_str(h);
            req.push_str("\r\n");
        }
        req.push_str("\r\n");
        tcp.write_all(req.as_bytes()).await.unwrap();
        let mut sse = Self {
            tcp,
            buf: String::new(),
            comments: 0,
            head: String::new(),
        };
        while !sse.buf.contains("\r\n\r\n") {
            assert!(sse.fill().await, "closed before the head: {:?}", sse.buf);
        }
        let (head, rest) = sse.buf.split_once("\r\n\r\n").unwrap();
        sse.head = head.to_string();
        sse.buf = rest.to_string();
        sse
    }

    /// Reads more; false at the end of the stream.
    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(LIMIT, self.tcp.read(&mut chunk))
            .await
            .expect("the stream went quiet")
            .unwrap_or(0);
        self.buf.push_str(std::str::from_utf8(&chunk[..n]).unwrap());
        n > 0
    }

    /// The next event (comments skipped and counted); `None` at the end of the stream.
    async fn next(&mut self) -> Option<Event> {
        loop {
            while let Some((block, rest)) = self.buf.split_once("\n\n") {
                let (block, rest) = (block.to_string(), rest.to_string());
                self.buf = rest;
                let mut event = Event::default();
                let mut comment = false;
                for line in block.lines() {
                    match line.split_once(": ") {
                        Some(("event", v)) => event.name = Some(v.into()),
                        Some(("id", v)) => event.id = Some(v.parse().unwrap()),
                        Some(("data", v)) => event.data = serde_json::from_str(v).unwrap(),
                        Some(("retry", _)) => {}
                        _ if line.starts_with(':') => comment = true,
                        _ => panic!("not an SSE line: {line:?}"),
                    }
                }
                if comment && event.name.is_none() && event.data.is_null() {
                    self.comments += 1;
                    continue;
                }
                return Some(event);
            }
            if !self.fill().await {
                return None;
            }
        }
    }

    /// Waits for `n` comments, with no event between them.
    async fn idle_comments(&mut self, n: usize) {
        let want = self.comments + n;
        while self.comments < want {
            match self.buf.split_once("\n\n") {
                Some((block, rest)) => {
                    assert!(block.starts_with(':'), "an event while idle: {block:?}");
                    self.comments += 1;
                    self.buf = rest.to_string();
                }
                None => assert!(self.fill().await, "the stream ended"),
            }
        }
    }

    /// The session id of the stream's first event.
    async fn session(&mut self) -> String {
        let first = self.next().await.expect("the session event");
        assert_eq!(first.name.as_deref(), Some("session"), "{first:?}");
        first.data["session"].as_str().unwrap().to_string()
    }

    /// The next event whose data has `type` `kind`.
    async fn next_of(&mut self, kind: &str) -> Event {
        loop {
            let e = self.next().await.expect("the stream ended");
            if e.data["type"] == kind {
                return e;
            }
        }
    }
}

async fn post(addr: SocketAddr, sid: &str, text: &str) -> Resp {
    let body = serde_json::json!({"type": "message", "text": text}).to_string();
    let path = format!("/poll/session/{sid}");
    common::http(addr, "POST", &path, &["Connection: close"], &body, LIMIT).await
}

#[tokio::test]
async fn sse_and_websocket_members_share_one_room_and_one_order() {
    let (addr, hub) = start(HubConfig::default()).await;
    let mut sse = Sse::open(addr, "/sse/room?name=sam", &[]).await;
    assert!(sse.head.starts_with("HTTP/1.1 200"), "{}", sse.head);
    assert!(
        sse.head.contains("Content-Type: text/event-stream"),
        "{}",
        sse.head
    );
    assert!(sse.head.contains("Cache-Control: no-store"), "{}", sse.head);
    let sid = sse.session().await;
    let welcome = sse.next_of("welcome").await;
    assert_eq!(welcome.data["name"], "sam");

    let (mut ws, _) = join(addr, "/chat/room?name=wes").await;
    say(&mut ws, "from the socket").await;
    let sent = post(addr, &sid, "from the stream").await;
    assert_eq!(sent.status, 202, "{:?}", sent.body);

    let mut over_sse = Vec::new();
    let mut over_ws = Vec::new();
    for _ in 0..2 {
        let e = sse.next_of("message").await;
        assert_eq!(e.id, e.data["id"].as_u64(), "the SSE id is the message id");
        over_sse.push(e.data);
        over_ws.push(next_of(&mut ws, "message").await);
    }
    assert_eq!(over_sse, over_ws, "one order on both transports");
    assert_eq!(hub.members("room").await.unwrap().unwrap().0.len(), 2);

    // The member leaves with its stream.
    drop(sse);
    let left = next_of(&mut ws, "left").await;
    assert_eq!(left["name"], "sam");
}

#[tokio::test]
async fn a_cut_stream_resumes_from_last_event_id_without_loss_or_duplicate() {
    let (addr, hub) = start(HubConfig::default()).await;
    let mut sse = Sse::open(addr, "/sse/r?name=sam", &[]).await;
    sse.session().await;
    hub.publish("r", "pat", "one").await.unwrap();
    let one = sse.next_of("message").await;
    let last = one.id.expect("an id");
    drop(sse);
    // Said while the stream was cut.
    hub.publish("r", "pat", "two").await.unwrap();
    hub.publish("r", "pat", "three").await.unwrap();
    // What a browser's EventSource sends when it reconnects by itself; it wins over the
    // URL's `since` (the address it reconnects to is the first one).
    let header = format!("Last-Event-ID: {last}");
    let mut again = Sse::open(addr, "/sse/r?name=sam&since=0", &[&header]).await;
    again.session().await;
    let welcome = again.next_of("welcome").await;
    let texts: Vec<&str> = welcome.data["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["two", "three"], "{:?}", welcome.data);
}

#[tokio::test]
async fn an_idle_stream_gets_comments_and_refusals_are_json() {
    let mut config = HubConfig::default();
    config.poll_timeout = Duration::from_millis(100);
    let (addr, hub) = start(config).await;
    let mut sse = Sse::open(addr, "/sse/r?name=sam", &[]).await;
    sse.session().await;
    sse.next_of("welcome").await;
    hub.publish("r", "pat", "after a while").await.unwrap();
    let e = sse.next_of("message").await;
    assert_eq!(e.data["text"], "after a while");
    // Comments while idle keep proxies from cutting the stream; the session stays.
    sse.idle_comments(2).await;
    assert_eq!(hub.session_count(), 1);

    let bad = common::http(
        addr,
        "GET",
        "/sse/r?name=%01",
        &["Connection: close"],
        "",
        LIMIT,
    )
    .await;
    assert_eq!(bad.status, 400, "{:?}", bad.body);
    assert_eq!(bad.body["type"], "error", "{:?}", bad.body);
    let wrong = common::http(addr, "POST", "/sse/r", &["Connection: close"], "", LIMIT).await;
    assert_eq!(wrong.status, 405);
}

/// A stream that follows a second room gets its events too, but only the stream's own room
/// carries `id:` (the browser resumes that room with `Last-Event-ID`; ids are per room).
#[tokio::test]
async fn a_stream_subscribes_to_another_room_whose_events_carry_no_event_id() {
    let (addr, hub) = start(HubConfig::default()).await;
    let mut sse = Sse::open(addr, "/sse/home?name=sam", &[]).await;
    let sid = sse.session().await;
    sse.next_of("welcome").await;
    hub.publish("away", "api", "first").await.unwrap();
    let body = serde_json::json!({"type": "subscribe", "room": "away"}).to_string();
    let path = format!("/poll/session/{sid}");
    let r = common::http(addr, "POST", &path, &[], &body, LIMIT).await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    let welcome = sse.next_of("welcome").await;
    assert_eq!((&welcome.data["room"], welcome.id), (&"away".into(), None));
    for i in 0..3 {
        hub.publish("home", "api", &format!("h{i}")).await.unwrap();
        hub.publish("away", "api", &format!("a{i}")).await.unwrap();
    }
    for i in 0..3 {
        let home = sse.next_of("message").await;
        assert_eq!(
            (&home.data["text"], home.id),
            (&format!("h{i}").into(), Some(i + 1))
        );
        let away = sse.next_of("message").await;
        assert_eq!(
            (&away.data["text"], away.id),
            (&format!("a{i}").into(), None)
        );
        assert_eq!(away.data["id"], i + 2, "the room's own id is in the data");
    }
}
