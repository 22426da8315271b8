//! `rediss://`: nodes reach a TLS-only `redis-server` (`--port 0 --tls-port ...`) whose
//! certificate comes from a test CA (made here with rcgen), trusted with `?cacert=PATH`.

use crate::common::{join, next_of, say};
use crate::support::{free_port, have_redis, http, logged, Node, Pki, Redis, TempDir};
use crate::{messages, LIMIT, LOCAL_ID_GAP};
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn two_nodes_chat_over_tls_and_a_node_with_the_wrong_ca_refuses_joins() {
    if !have_redis() {
        return;
    }
    let dir = TempDir::new("tls");
    let (pki, other) = (Pki::new(&dir, "a"), Pki::new(&dir, "b"));
    let port = free_port();
    let _redis = Redis::tls(port, &pki, "no", &[]);
    let nodes: Vec<Node> = (0..2)
        .map(|_| Node::with_url(&pki.url(port), Duration::from_secs(15)))
        .collect();
    for n in &nodes {
        n.connected(true).await;
    }
    let (mut alice, _) = join(nodes[0].addr, "/chat/tls?name=alice").await;
    let (mut bob, w) = join(nodes[1].addr, "/chat/tls?name=bob").await;
    assert_eq!(w["members"], json!(["alice", "bob"]));
    say(&mut alice, "over").await;
    say(&mut bob, "tls").await;
    let seen = messages(&mut alice, 2).await;
    assert_eq!(seen, messages(&mut bob, 2).await);
    assert_eq!(
        seen.iter().map(|m| m.0).collect::<Vec<_>>(),
        [1, 2],
        "{seen:?}"
    );

    // A node that trusts another CA: the error is logged, the node is down, joins are
    // refused (it retries; nothing panics).
    let wrong = Node::with_url(&other.url(port), Duration::from_secs(15));
    let line = logged(&[&other.ca.to_string_lossy(), "cannot connect"]).await;
    assert!(line.contains("certificate"), "{line}");
    assert_eq!(wrong.hub.is_connected(), Some(false));
    let refused = wsduplex::connect(&format!("ws://{}/chat/tls?name=zed", wrong.addr))
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("503"), "{refused}");
    let (status, body) = http(wrong.addr, "POST", "/poll/tls?name=zed", "").await;
    assert_eq!((status, &body["error"]), (503, &json!("unavailable")));
    // The others go on.
    say(&mut bob, "still").await;
    assert_eq!(messages(&mut alice, 1).await[0].0, 3);
}

/// Redis comes back with a certificate from a CA the nodes do not trust: they count it as
/// down (local chat, joins refused) until it presents one they trust again.
#[tokio::test]
async fn an_untrusted_certificate_counts_as_redis_down() {
    if !have_redis() {
        return;
    }
    let dir = TempDir::new("tls");
    let (pki, other) = (Pki::new(&dir, "a"), Pki::new(&dir, "b"));
    let port = free_port();
    let mut redis = Redis::tls(port, &pki, "no", &[]);
    let trusted = redis.args().to_vec();
    let untrusted = other.server_args(port, "no");
    let nodes: Vec<Node> = (0..2)
        .map(|_| Node::with_url(&pki.url(port), Duration::from_secs(15)))
        .collect();
    for n in &nodes {
        n.connected(true).await;
    }
    let (mut alice, _) = join(nodes[0].addr, "/chat/rot?name=alice").await;
    let (mut amy, _) = join(nodes[0].addr, "/chat/rot?name=amy").await;
    let (mut bob, _) = join(nodes[1].addr, "/chat/rot?name=bob").await;
    say(&mut alice, "one").await;
    for ws in [&mut alice, &mut amy, &mut bob] {
        assert_eq!(messages(ws, 1).await[0].0, 1);
    }

    redis.restart_as(&untrusted);
    for n in &nodes {
        n.connected(false).await;
    }
    let line = logged(&[&pki.ca.to_string_lossy(), "cannot reconnect"]).await;
    assert!(line.contains("certificate"), "{line}");
    say(&mut alice, "local").await;
    for ws in [&mut alice, &mut amy] {
        let m = next_of(ws, "message").await;
        assert_eq!(
            (&m["local"], &m["id"]),
            (&json!(true), &json!(1 + LOCAL_ID_GAP))
        );
    }
    let (status, body) = http(nodes[1].addr, "POST", "/poll/rot?name=zed", "").await;
    assert_eq!((status, &body["error"]), (503, &json!("unavailable")));

    redis.restart_as(&trusted);
    for n in &nodes {
        n.connected(true).await;
    }
    say(&mut bob, "back").await;
    let a = next_of(&mut alice, "message").await;
    let b = next_of(&mut bob, "message").await;
    assert_eq!(a, b);
    assert!(a["id"].as_u64().unwrap() > 1 + LOCAL_ID_GAP, "{a}");
}

/// `tls-auth-clients yes`: a node with `cert` and `key` in its URL gets in, one without
/// is refused (and says so in the log).
#[tokio::test]
async fn a_client_certificate_for_a_redis_that_asks_for_one() {
    if !have_redis() {
        return;
    }
    let dir = TempDir::new("tls");
    let pki = Pki::new(&dir, "a");
    let port = free_port();
    let _redis = Redis::tls(port, &pki, "yes", &[]);
    let url = format!(
        "{}&cert={}&key={}",
        pki.url(port),
        pki.client_cert.display(),
        pki.client_key.display()
    );
    let node = Node::with_url(&url, Duration::from_secs(15));
    node.connected(true).await;
    let (mut alice, _) = join(node.addr, "/chat/mtls?name=alice").await;
    say(&mut alice, "signed").await;
    assert_eq!(messages(&mut alice, 1).await[0].0, 1);

    // The same CA, no client certificate (the URL differs by a harmless db number).
    let anonymous = Node::with_url(&pki.url(port).replace("/?", "/0?"), LIMIT);
    logged(&[&format!("{port}/0?cacert"), "cannot connect"]).await;
    assert_eq!(anonymous.hub.is_connected(), Some(false));
}
