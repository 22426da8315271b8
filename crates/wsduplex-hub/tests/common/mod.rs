//! What the hub's integration tests share: serving a hub ([`serve`]: on a listener, or as
//! a node on a runtime of its own) and a WebSocket member's view of it. The test file
//! defines `LIMIT`, the longest wait for an event.

pub mod serve;

use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wsduplex::{ClientStream, Message, WebSocket};

pub type Ws = WebSocket<ClientStream>;

/// Joins with `path` (`/chat/ROOM?name=...`) and returns the socket and its welcome.
#[allow(dead_code)] // not every test binary uses it
pub async fn join(addr: SocketAddr, path: &str) -> (Ws, Value) {
    let (mut ws, _) = wsduplex::connect(&format!("ws://{addr}{path}"))
        .await
        .unwrap_or_else(|e| panic!("connect {path}: {e}"));
    let welcome = next(&mut ws).await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    (ws, welcome)
}

/// The next event (text message) as JSON.
pub async fn next(ws: &mut Ws) -> Value {
    loop {
        let item = tokio::time::timeout(crate::LIMIT, ws.recv())
            .await
            .expect("no event in time");
        match item {
            Some(Ok(Message::Text(t))) => return serde_json::from_str(t.as_str()).unwrap(),
            Some(Ok(Message::Close(c))) => panic!("closed: {c:?}"),
            Some(Ok(_)) => {}
            other => panic!("connection ended: {other:?}"),
        }
    }
}

/// The next event of `kind`, skipping others (presence, say).
#[allow(dead_code)] // not every test binary uses it
pub async fn next_of(ws: &mut Ws, kind: &str) -> Value {
    loop {
        let v = next(ws).await;
        if v["type"] == kind {
            return v;
        }
    }
}

/// Sends a chat message.
#[allow(dead_code)] // not every test binary uses it
pub async fn say(ws: &mut Ws, text: &str) {
    let msg = json!({"type": "message", "text": text}).to_string();
    ws.send(msg).await.unwrap();
}

/// What [`http`] got back: the status, the head, and the body as JSON (`Null` if it is not).
#[allow(dead_code)] // not every test binary makes requests
pub struct Resp {
    pub status: u16,
    #[allow(dead_code)] // not every test binary looks at the head
    pub head: String,
    pub body: Value,
}

/// One HTTP request on a fresh connection (`headers` are whole lines; a body goes as JSON);
/// the server closes the connection after its response, which must come within `wait`.
#[allow(dead_code)] // not every test binary makes requests
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[&str],
    body: &str,
    wait: Duration,
) -> Resp {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\n");
    for h in headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
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
    tokio::time::timeout(wait, tcp.read_to_end(&mut raw))
        .await
        .expect("no response in time")
        .unwrap();
    let raw = String::from_utf8(raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    Resp {
        status: head[9..12].parse().unwrap(),
        head: head.to_string(),
        body: serde_json::from_str(body).unwrap_or(Value::Null),
    }
}
