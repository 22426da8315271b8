//! Long-polling sessions handed to a new hub with the rooms (issue 19, the hub's part),
//! over raw HTTP: queued events not yet acknowledged, a `GET` waiting at the freeze, a
//! message published during the hand-over and one sent by the session itself; the client's
//! next `GET` with its cursor on the new hub gets exactly the next events, then live ones.
//! Subscribing during the hand-over waits for the new process; a session whose queue does
//! not fit, or whose messages left history, is left out (`404`, the client resumes with
//! `since`) and seen to leave; an SSE stream's session does not move, and the browser's
//! reconnect with `Last-Event-ID` resumes on the new hub.

#![cfg(feature = "handover")]

mod common;

use common::{http, Resp};
use serde_json::{json, Value};
use std::future::{poll_fn, Future};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use wsduplex::server::{read_request, ServerConfig};
use wsduplex_hub::{HandoverError, Hub, HubConfig, HubState};

const LIMIT: Duration = Duration::from_secs(10);

async fn serve(hub: &Hub) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = ServerConfig::default();
    tokio::spawn(common::serve::serve(listener, hub.clone(), server));
    addr
}

/// [`serve`], and a signal each time the hub's answer to a request first has to wait (a
/// `GET` with nothing to read yet): the test knows the request is waiting, without a sleep.
async fn serve_watched(hub: &Hub) -> (SocketAddr, mpsc::UnboundedReceiver<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    let hub = hub.clone();
    tokio::spawn(async move {
        let server = ServerConfig::default();
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let (hub, server, tx) = (hub.clone(), server.clone(), tx.clone());
            tokio::spawn(async move {
                let Ok(incoming) = read_request(tcp, &server).await else {
                    return;
                };
                let mut answer = std::pin::pin!(hub.serve(incoming, &server));
                let mut told = false;
                let answered = poll_fn(|cx| {
                    let poll = answer.as_mut().poll(cx);
                    if poll.is_pending() && !std::mem::replace(&mut told, true) {
                        let _ = tx.send(());
                    }
                    poll
                })
                .await;
                assert!(answered.is_none(), "a path of the hub");
            });
        }
    });
    (addr, rx)
}

/// Opens a session: its id, cursor and events.
async fn open(addr: SocketAddr, room: &str, name: &str) -> (String, u64) {
    let r = http(
        addr,
        "POST",
        &format!("/poll/{room}?name={name}"),
        &[],
        "",
        LIMIT,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let sid = r.body["session"].as_str().unwrap().to_string();
    (sid, r.body["cursor"].as_u64().unwrap())
}

async fn get(addr: SocketAddr, sid: &str, cursor: u64) -> Resp {
    let path = format!("/poll/session/{sid}?cursor={cursor}");
    http(addr, "GET", &path, &[], "", LIMIT).await
}

async fn post(addr: SocketAddr, sid: &str, body: Value) -> Resp {
    let path = format!("/poll/session/{sid}");
    http(addr, "POST", &path, &[], &body.to_string(), LIMIT).await
}

/// A `200` batch: its cursor and each event as `type` and `id` (messages) or `name`.
fn batch(r: &Resp) -> (u64, Vec<(String, Value)>) {
    assert_eq!(r.status, 200, "{}", r.body);
    let events = r.body["events"].as_array().unwrap();
    let seen = events
        .iter()
        .map(|e| {
            let kind = e["type"].as_str().unwrap().to_string();
            let what = match kind.as_str() {
                "message" => json!([e["id"], e["text"]]),
                _ => e["name"].clone(),
            };
            (kind, what)
        })
        .collect();
    (r.body["cursor"].as_u64().unwrap(), seen)
}

fn msg(id: u64, text: &str) -> (String, Value) {
    ("message".to_string(), json!([id, text]))
}

fn handing_over(r: &Resp) {
    assert_eq!(
        (r.status, r.body["error"].as_str()),
        (503, Some("handing_over")),
        "{}",
        r.body
    );
    assert!(r.head.contains("Retry-After: 1"), "{}", r.head);
    // And the connection ends with it (`http` reads to the end): a browser's retry opens a
    // new one, which the new process accepts, rather than reusing one to the frozen hub.
    assert!(r.head.contains("Connection: close"), "{}", r.head);
}

/// The state as bytes, as it travels between processes.
fn roundtrip(state: HubState) -> HubState {
    HubState::decode(&state.encode()).unwrap()
}

#[tokio::test]
async fn a_session_moves_with_its_queue_and_its_cursor_goes_on() {
    let old = Hub::new(HubConfig::default());
    let (addr, mut waits) = serve_watched(&old).await;
    let (ann, ann_cursor) = open(addr, "r", "ann").await;
    let (bob, bob_open) = open(addr, "r", "bob").await;
    old.publish("r", "api", "one").await.unwrap();
    old.publish("r", "api", "two").await.unwrap();
    // Bob reads; ann reads nothing: her queue (bob's `joined`, both messages) waits.
    let (bob_cursor, got) = batch(&get(addr, &bob, bob_open).await);
    assert_eq!(got, [msg(1, "one"), msg(2, "two")]);
    // Bob's next GET waits for more when the hand-over begins: it answers with no event,
    // its cursor unchanged.
    while waits.try_recv().is_ok() {}
    let sid = bob.clone();
    let waiting = tokio::spawn(async move { get(addr, &sid, bob_cursor).await });
    waits.recv().await.unwrap();
    old.freeze().unwrap();
    assert_eq!(batch(&waiting.await.unwrap()), (bob_cursor, vec![]));
    // From now on an empty read is told to come back; the session stays.
    handing_over(&get(addr, &bob, bob_cursor).await);
    // Published during the hand-over: by the push API, and by bob's session.
    assert_eq!(old.publish("r", "api", "during").await.unwrap(), 3);
    let sent = post(addr, &bob, json!({"type": "message", "text": "mine"})).await;
    assert_eq!(sent.status, 202, "{}", sent.body);
    // Subscribing waits for the new process: the rooms move as they are.
    let sub = post(addr, &bob, json!({"type": "subscribe", "room": "news"})).await;
    handing_over(&sub);

    let state = roundtrip(old.export_state().unwrap());
    // Written down: a message now would be lost here, so the client is asked to resend.
    let late = post(addr, &bob, json!({"type": "message", "text": "late"})).await;
    handing_over(&late);

    let new = Hub::new(HubConfig::default());
    new.import_state(state).unwrap();
    let addr = serve(&new).await;
    assert_eq!(new.session_count(), 2);
    // Ann's cursor acknowledges her welcome; then everything queued, the hand-over's
    // messages after it, once, with their ids.
    let queued = [
        ("joined".to_string(), json!("bob")),
        msg(1, "one"),
        msg(2, "two"),
        msg(3, "during"),
        msg(4, "mine"),
    ];
    let (ann_next, got) = batch(&get(addr, &ann, ann_cursor).await);
    assert_eq!(got, queued);
    // The same cursor again (a lost response): the same events.
    assert_eq!(
        batch(&get(addr, &ann, ann_cursor).await),
        (ann_next, queued.to_vec())
    );
    let (bob_next, got) = batch(&get(addr, &bob, bob_cursor).await);
    assert_eq!(got, [msg(3, "during"), msg(4, "mine")]);
    // Then live events, ids going on; no presence event came from the move.
    assert_eq!(new.publish("r", "api", "live").await.unwrap(), 5);
    assert_eq!(batch(&get(addr, &ann, ann_next).await).1, [msg(5, "live")]);
    assert_eq!(batch(&get(addr, &bob, bob_next).await).1, [msg(5, "live")]);
    // Both members, once each (seated again in any order), and nobody else.
    let (mut members, last_id) = new.members("r").await.unwrap().unwrap();
    members.sort();
    assert_eq!((members, last_id), (vec!["ann".into(), "bob".into()], 5));
    // The moved session subscribes, says, and is heard as before.
    let sub = post(addr, &bob, json!({"type": "subscribe", "room": "news"})).await;
    assert_eq!(sub.status, 202, "{}", sub.body);
    let sent = post(addr, &bob, json!({"type": "message", "text": "back"})).await;
    assert_eq!(sent.status, 202, "{}", sent.body);
    let (_, got) = batch(&get(addr, &bob, bob_next + 1).await);
    assert_eq!(got, [("welcome".to_string(), json!("bob")), msg(6, "back")]);
}

#[tokio::test]
async fn a_session_whose_queue_does_not_fit_is_left_out_and_resumes_with_since() {
    let old = Hub::new(HubConfig::default());
    let addr = serve(&old).await;
    let (sid, cursor) = open(addr, "r", "ann").await;
    for text in ["one", "two", "three"] {
        old.publish("r", "api", text).await.unwrap();
    }
    old.freeze().unwrap();
    let state = roundtrip(old.export_state().unwrap());
    // Four events queued (the welcome and three messages): the new hub queues three.
    let mut config = HubConfig::default();
    config.queue = 3;
    let new = Hub::new(config);
    new.import_state(state).unwrap();
    let addr = serve(&new).await;
    assert_eq!(new.session_count(), 0);
    let r = get(addr, &sid, cursor).await;
    assert_eq!(
        (r.status, r.body["error"].as_str()),
        (404, Some("unknown_session"))
    );
    // The client opens a session with `since`: nothing lost, and nobody left behind.
    let r = http(addr, "POST", "/poll/r?name=ann&since=1", &[], "", LIMIT).await;
    let history: Vec<_> = r.body["events"][0]["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].clone())
        .collect();
    assert_eq!(history, [json!(2), json!(3)]);
    assert_eq!(r.body["events"][0]["members"], json!(["ann"]));
}

#[tokio::test]
async fn a_session_whose_messages_left_history_is_left_out_and_seen_to_leave() {
    let mut config = HubConfig::default();
    config.history = 2;
    let old = Hub::new(config.clone());
    let addr = serve(&old).await;
    let (ann, ann_cursor) = open(addr, "busy", "ann").await;
    let (bob, bob_cursor) = open(addr, "quiet", "bob").await;
    let sub = post(addr, &ann, json!({"type": "subscribe", "room": "quiet"})).await;
    assert_eq!(sub.status, 202, "{}", sub.body);
    old.freeze().unwrap();
    // Three messages in ann's first room during the hand-over: history keeps two.
    for text in ["one", "two", "three"] {
        old.publish("busy", "api", text).await.unwrap();
    }
    let new = Hub::new(config);
    new.import_state(roundtrip(old.export_state().unwrap()))
        .unwrap();
    let addr = serve(&new).await;
    assert_eq!(new.session_count(), 1);
    let r = get(addr, &ann, ann_cursor).await;
    assert_eq!(
        (r.status, r.body["error"].as_str()),
        (404, Some("unknown_session"))
    );
    // Bob saw ann join his room; he sees her leave, and no roster keeps her.
    let (_, got) = batch(&get(addr, &bob, bob_cursor).await);
    let ann_moves = [
        ("joined".into(), json!("ann")),
        ("left".into(), json!("ann")),
    ];
    assert_eq!(got, ann_moves);
    assert_eq!(
        new.members("quiet").await.unwrap().unwrap(),
        (vec!["bob".into()], 0)
    );
    assert_eq!(new.members("busy").await.unwrap().unwrap(), (vec![], 3));
}

#[tokio::test]
async fn a_state_of_version_1_is_refused_by_its_version() {
    let old = Hub::new(HubConfig::default());
    old.freeze().unwrap();
    // What a process of the first format wrote: the same magic, version 1.
    let mut bytes = old.export_state().unwrap().encode();
    bytes[4..6].copy_from_slice(&1u16.to_be_bytes());
    let err = HubState::decode(&bytes).unwrap_err();
    assert!(
        matches!(
            err,
            HandoverError::Version {
                found: 1,
                supported: 2
            }
        ),
        "{err}"
    );
}

/// An open `text/event-stream`, read event by event (comments skipped).
struct Sse {
    tcp: TcpStream,
    buf: String,
}

impl Sse {
    async fn open(addr: SocketAddr, path: &str, headers: &[&str]) -> Self {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        let mut req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n");
        for h in headers {
            req.push_str(&format!("{h}\r\n"));
        }
        tcp.write_all(format!("{req}\r\n").as_bytes())
            .await
            .unwrap();
        let mut sse = Self {
            tcp,
            buf: String::new(),
        };
        let head = sse.until("\r\n\r\n").await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        sse
    }

    /// Everything up to and including `end`, read as needed.
    async fn until(&mut self, end: &str) -> String {
        loop {
            if let Some(i) = self.buf.find(end) {
                let taken = self.buf[..i + end.len()].to_string();
                self.buf.drain(..i + end.len());
                return taken;
            }
            let mut chunk = [0u8; 4096];
            let n = tokio::time::timeout(LIMIT, self.tcp.read(&mut chunk))
                .await
                .expect("the stream went quiet")
                .unwrap();
            assert!(n > 0, "the stream ended: {:?}", self.buf);
            self.buf.push_str(std::str::from_utf8(&chunk[..n]).unwrap());
        }
    }

    /// The next event with data: its `id:` and its data as JSON.
    async fn next(&mut self) -> (Option<u64>, Value) {
        loop {
            let event = self.until("\n\n").await;
            let mut id = None;
            let mut data = None;
            for line in event.lines() {
                if let Some(v) = line.strip_prefix("id: ") {
                    id = Some(v.parse().unwrap());
                }
                if let Some(v) = line.strip_prefix("data: ") {
                    data = Some(serde_json::from_str(v).unwrap());
                }
            }
            if let Some(data) = data {
                return (id, data);
            }
        }
    }
}

#[tokio::test]
async fn an_event_stream_reconnects_to_the_new_hub_from_its_last_event_id() {
    let old = Hub::new(HubConfig::default());
    let addr = serve(&old).await;
    let mut stream = Sse::open(addr, "/sse/r?name=ann", &[]).await;
    assert!(stream.next().await.1["session"].is_string());
    assert_eq!(stream.next().await.1["type"], "welcome");
    old.publish("r", "api", "one").await.unwrap();
    let (id, one) = stream.next().await;
    assert_eq!((id, &one["text"]), (Some(1), &json!("one")));
    old.freeze().unwrap();
    old.publish("r", "api", "during").await.unwrap();
    let state = roundtrip(old.export_state().unwrap());
    let new = Hub::new(HubConfig::default());
    new.import_state(state).unwrap();
    // The stream's session ends with its stream: the new hub has no one left behind.
    assert_eq!(new.session_count(), 0);
    let addr = serve(&new).await;
    // The old process cut the connection; the browser reconnects to the same URL with the
    // last id it saw.
    drop(stream);
    let mut stream = Sse::open(addr, "/sse/r?name=ann", &["Last-Event-ID: 1"]).await;
    assert!(stream.next().await.1["session"].is_string());
    let (id, welcome) = stream.next().await;
    assert_eq!((id, &welcome["type"]), (Some(2), &json!("welcome")));
    let history: Vec<_> = welcome["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["id"].clone(), m["text"].clone()))
        .collect();
    assert_eq!(history, [(json!(2), json!("during"))]);
    assert_eq!(welcome["members"], json!(["ann"]));
    new.publish("r", "api", "live").await.unwrap();
    let (id, live) = stream.next().await;
    assert_eq!((id, &live["text"]), (Some(3), &json!("live")));
}
