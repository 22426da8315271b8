//! What the hub's integration tests share: serving a hub ([`serve`]: on a listener, or as
//! a node on a runtime of its own) and a WebSocket member's view of it. The test file
//! defines `LIMIT`, the longest wait for an event.

pub mod serve;

use serde_json::{json, Value};
use std::net::SocketAddr;
use wsduplex::{ClientStream, Message, WebSocket};

pub type Ws = WebSocket<ClientStream>;

/// Joins with `path` (`/chat/ROOM?name=...`) and returns the socket and its welcome.
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
pub async fn next_of(ws: &mut Ws, kind: &str) -> Value {
    loop {
        let v = next(ws).await;
        if v["type"] == kind {
            return v;
        }
    }
}

/// Sends a chat message.
pub async fn say(ws: &mut Ws, text: &str) {
    let msg = json!({"type": "message", "text": text}).to_string();
    ws.send(msg).await.unwrap();
}
