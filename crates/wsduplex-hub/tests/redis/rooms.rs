//! Many rooms on one connection, and `data` messages, across nodes: a WebSocket on one
//! node follows rooms whose messages come from members and the push API on the others, with
//! the same ids, order and history everywhere; a long-polling session that subscribes stays
//! on its node.

use crate::common::{join, next_of, Ws};
use crate::support::{connected_nodes, http, Redis};
use serde_json::{json, Value};

async fn send(ws: &mut Ws, v: Value) {
    ws.send(v.to_string()).await.unwrap();
}

#[tokio::test]
async fn subscriptions_and_data_cross_nodes() {
    let Some(redis) = Redis::start() else { return };
    let nodes = connected_nodes(&redis, 3).await;
    // One socket on node 0 follows a and b.
    let (mut multi, _) = join(nodes[0].addr, "/chat/a?name=multi").await;
    send(&mut multi, json!({"type": "subscribe", "room": "b"})).await;
    let w = next_of(&mut multi, "welcome").await;
    assert_eq!(
        (&w["room"], &w["members"]),
        (&json!("b"), &json!(["multi"]))
    );
    let (mut other, w) = join(nodes[1].addr, "/chat/b?name=other").await;
    assert_eq!(
        w["members"],
        json!(["multi", "other"]),
        "the subscription is seen elsewhere"
    );

    // Data from a member of node 1 to b, and from the push API of node 2 to a.
    let data = json!({"kind": "price", "value": 12.5, "path": ["x", "y"]});
    send(
        &mut other,
        json!({"type": "message", "room": "b", "data": data}),
    )
    .await;
    let pushed = json!({"data": [true, null, {"deep": {"er": 1}}], "name": "feed"});
    let (status, body) = http(
        nodes[2].addr,
        "POST",
        "/api/rooms/a/messages",
        &pushed.to_string(),
    )
    .await;
    assert_eq!((status, &body), (201, &json!({"id": 1})));

    let mut got = Vec::new();
    while got.len() < 2 {
        let m = next_of(&mut multi, "message").await;
        got.push(m);
    }
    got.sort_by_key(|m| m["room"].as_str().unwrap().to_string());
    assert_eq!(
        (&got[0]["room"], &got[0]["id"], &got[0]["data"]),
        (&json!("a"), &json!(1), &pushed["data"])
    );
    assert_eq!(
        (&got[1]["room"], &got[1]["id"], &got[1]["data"]),
        (&json!("b"), &json!(1), &data)
    );
    let seen_by_other = next_of(&mut other, "message").await;
    assert_eq!(seen_by_other, got[1], "the same bytes on both nodes");

    // History of data, resumed on another node.
    let (_late, w) = join(nodes[2].addr, "/chat/b?name=late&since=0").await;
    assert_eq!(w["history"], json!([got[1]]));

    // Unsubscribing leaves the room on every node.
    send(&mut multi, json!({"type": "unsubscribe", "room": "b"})).await;
    next_of(&mut multi, "unsubscribed").await;
    assert_eq!(next_of(&mut other, "left").await["name"], "multi");

    // A long-polling session that subscribes stays on its node.
    let (status, open) = http(nodes[1].addr, "POST", "/poll/a?name=lp", "").await;
    assert_eq!(status, 200, "{open}");
    let sid = open["session"].as_str().unwrap().to_string();
    let path = format!("/poll/session/{sid}");
    let sub = json!({"type": "subscribe", "room": "b"}).to_string();
    let (status, _) = http(nodes[1].addr, "POST", &path, &sub).await;
    assert_eq!(status, 202);
    let (status, body) = http(nodes[2].addr, "GET", &format!("{path}?cursor=1"), "").await;
    assert_eq!((status, &body["error"]), (404, &json!("unknown_session")));
    let (status, body) = http(nodes[1].addr, "GET", &format!("{path}?cursor=1"), "").await;
    assert_eq!(status, 200);
    assert_eq!(body["events"][0]["type"], "welcome");
    assert_eq!(body["events"][0]["room"], "b");
}
