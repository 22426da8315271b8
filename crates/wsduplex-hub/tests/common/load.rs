//! One room under load, and what every member must see of it: some members send as fast as
//! they can, all at once; every member (senders and listeners, spread over one or more
//! nodes) records the chat messages it receives. [`check`] asserts the hub's promise: one
//! order for everyone, the ids 1, 2, 3... with no gap and no duplicate, and each sender's
//! messages in the order it sent them.

use serde_json::Value;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Barrier;
use wsduplex::Message;

/// How much load.
#[derive(Clone, Copy, Debug)]
pub struct Load {
    /// Members that send (and receive).
    pub senders: usize,
    /// Members that only receive.
    pub listeners: usize,
    /// Messages each sender sends.
    pub per_sender: usize,
}

/// A chat message as a member saw it: `(id, name, text)`.
pub type Seen = (u64, String, String);

/// Runs `load` in `room` (which must be new: ids start at 1), members spread round-robin
/// over `nodes`; returns what each member received, senders first. `limit` bounds every
/// wait for a message.
pub async fn run(nodes: &[SocketAddr], room: &str, load: Load, limit: Duration) -> Vec<Vec<Seen>> {
    let members = load.senders + load.listeners;
    let total = load.senders * load.per_sender;
    let mut sockets = Vec::new();
    for i in 0..members {
        let name = member_name(i, load.senders);
        let url = format!("ws://{}/chat/{room}?name={name}", nodes[i % nodes.len()]);
        let (mut ws, _) = wsduplex::connect(&url)
            .await
            .unwrap_or_else(|e| panic!("connect {url}: {e}"));
        let welcome = next_event(&mut ws, limit).await;
        assert_eq!(
            (&welcome["type"], &welcome["name"]),
            (&Value::from("welcome"), &Value::from(name.as_str())),
            "{welcome}"
        );
        assert_eq!(welcome["last_id"], 0, "room {room} must be new: {welcome}");
        sockets.push((name, ws));
    }
    // The senders start together, so their messages interleave as much as they can.
    let start = Arc::new(Barrier::new(load.senders));
    let mut tasks = Vec::new();
    for (i, (name, ws)) in sockets.into_iter().enumerate() {
        let (mut read, mut write) = ws.split();
        let writer = (i < load.senders).then(|| {
            let (start, name) = (start.clone(), name.clone());
            tokio::spawn(async move {
                start.wait().await;
                for k in 0..load.per_sender {
                    let msg = serde_json::json!({"type": "message", "text": format!("{name}:{k}")});
                    write.send(msg.to_string()).await.unwrap();
                }
                // Kept open until the reader is done: a dropped half may end the connection.
                write
            })
        });
        tasks.push(tokio::spawn(async move {
            let mut seen = Vec::with_capacity(total);
            while seen.len() < total {
                let item = tokio::time::timeout(limit, read.recv())
                    .await
                    .unwrap_or_else(|_| {
                        panic!("{name}: no message in time after {} of {total}", seen.len())
                    });
                let text = match item {
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(Message::Close(c))) => panic!("{name}: closed: {c:?}"),
                    Some(Ok(_)) => continue,
                    other => panic!("{name}: connection ended: {other:?}"),
                };
                let v: Value = serde_json::from_str(text.as_str()).unwrap();
                if v["type"] == "message" {
                    seen.push((
                        v["id"].as_u64().unwrap(),
                        v["name"].as_str().unwrap().to_string(),
                        v["text"].as_str().unwrap().to_string(),
                    ));
                }
            }
            let _write = match writer {
                Some(w) => Some(w.await.unwrap()),
                None => None,
            };
            seen
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.push(t.await.unwrap());
    }
    all
}

/// Asserts what every member must have seen of `load`: the same sequence, ids 1..=total,
/// each sender's messages exactly once and in the order sent.
pub fn check(seen: &[Vec<Seen>], load: Load) {
    let total = load.senders * load.per_sender;
    let first = &seen[0];
    let ids: Vec<u64> = first.iter().map(|m| m.0).collect();
    assert_eq!(
        ids,
        (1..=total as u64).collect::<Vec<_>>(),
        "ids from 1, no gap, no duplicate"
    );
    for (i, other) in seen.iter().enumerate().skip(1) {
        if let Some(at) = (0..total).find(|&k| other[k] != first[k]) {
            panic!(
                "member {} differs from member 0 at position {at}: {:?} against {:?}",
                member_name(i, load.senders),
                other[at],
                first[at]
            );
        }
    }
    for s in 0..load.senders {
        let name = member_name(s, load.senders);
        let texts: Vec<&str> = first
            .iter()
            .filter(|m| m.1 == name)
            .map(|m| m.2.as_str())
            .collect();
        let sent: Vec<String> = (0..load.per_sender)
            .map(|k| format!("{name}:{k}"))
            .collect();
        assert_eq!(texts, sent, "{name}'s messages, once each, in its order");
    }
}

fn member_name(i: usize, senders: usize) -> String {
    match i < senders {
        true => format!("s{i}"),
        false => format!("l{}", i - senders),
    }
}

/// The next text event as JSON.
async fn next_event(
    ws: &mut wsduplex::WebSocket<wsduplex::ClientStream>,
    limit: Duration,
) -> Value {
    loop {
        match tokio::time::timeout(limit, ws.recv())
            .await
            .expect("no event in time")
        {
            Some(Ok(Message::Text(t))) => return serde_json::from_str(t.as_str()).unwrap(),
            Some(Ok(_)) => {}
            other => panic!("connection ended: {other:?}"),
        }
    }
}
