//! The hub client (`wsduplex_hub::client`) on three nodes: rooms followed on one node and
//! published from the others (members and the push API, text and `data`) in one order
//! everywhere; JWT identities and their permissions held by every node; and a client whose
//! node dies going on on another with `since`, nothing lost and nothing twice.

#[path = "../common/hub_client.rs"]
mod common_client;

use crate::support::{connected_nodes, http, Node, Redis};
use common_client::{config, messages, next, until};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;
use wsduplex::auth::{AuthHook, JwtAuth};
use wsduplex::server::ServerConfig;
use wsduplex_hub::client::{Body, HubClient, HubEvent};

fn url(addr: SocketAddr) -> String {
    format!("ws://{addr}")
}

fn welcome_of(room: &str) -> impl Fn(&HubEvent) -> bool + '_ {
    move |e| matches!(e, HubEvent::Welcome(w) if w.room == room)
}

type Seen = BTreeMap<String, Vec<(u64, String, Body)>>;

/// Every message handed out (welcome histories included) per room: `(id, name, body)`.
fn record(events: &[HubEvent], seen: &mut Seen) {
    for m in messages(events) {
        seen.entry(m.room).or_default().push((m.id, m.name, m.body));
    }
}

/// Reads until `seen` holds `n` messages.
async fn read_until(client: &mut HubClient, seen: &mut Seen, n: usize) {
    while seen.values().map(Vec::len).sum::<usize>() < n {
        record(&[next(client).await], seen);
    }
}

/// A client of `addr` following `rooms` (the first as its URL's), each welcomed.
async fn following(addr: SocketAddr, name: &str, rooms: &[&str]) -> HubClient {
    let mut client = HubClient::connect(&url(addr), config(rooms[0], name))
        .await
        .unwrap();
    until(&mut client, welcome_of(rooms[0])).await;
    for room in &rooms[1..] {
        client.subscribe(room, None).await.unwrap();
        until(&mut client, welcome_of(room)).await;
    }
    client
}

#[tokio::test]
async fn a_client_follows_rooms_published_from_the_other_nodes_in_one_order() {
    let Some(redis) = Redis::start() else { return };
    let nodes = connected_nodes(&redis, 3).await;
    let rooms = ["x", "y", "z"];
    let mut on_a = following(nodes[0].addr, "on-a", &rooms).await;
    let mut on_c = following(nodes[2].addr, "on-c", &rooms).await;
    let mut sender = following(nodes[1].addr, "sender", &rooms).await;

    // Members of node 1 and the push API of node 2 write to all three rooms at once.
    for i in 0..4 {
        for room in rooms {
            sender
                .publish_text(room, &format!("{room}{i}"))
                .await
                .unwrap();
            let body = json!({"data": {"room": room, "i": i}, "name": "feed"}).to_string();
            let path = format!("/api/rooms/{room}/messages");
            let (status, _) = http(nodes[2].addr, "POST", &path, &body).await;
            assert_eq!(status, 201);
        }
    }
    let total = rooms.len() * 8;
    let mut seen: Vec<Seen> = vec![Seen::new(), Seen::new(), Seen::new()];
    for (client, seen) in [&mut on_a, &mut on_c, &mut sender]
        .into_iter()
        .zip(&mut seen)
    {
        read_until(client, seen, total).await;
    }
    for room in rooms {
        let ids: Vec<u64> = seen[0][room].iter().map(|m| m.0).collect();
        assert_eq!(ids, (1..=8).collect::<Vec<_>>(), "room {room}");
        let data = seen[0][room]
            .iter()
            .filter(|m| matches!(&m.2, Body::Data(d) if d["room"] == room))
            .count();
        assert_eq!(data, 4, "room {room}: {:?}", seen[0][room]);
    }
    assert_eq!(seen[1], seen[0], "node 2 saw the same");
    assert_eq!(seen[2], seen[0], "the sender's node saw the same");
}

/// ES256 tokens signed with the test key (`tests/fixtures/jwt/`), checked by every node
/// with its public key.
fn jwt_nodes(redis: &Redis) -> Vec<Node> {
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/jwt");
    let public = std::fs::read(format!("{fixtures}/ec_public.pem")).unwrap();
    let mut server = ServerConfig::default();
    server.auth = Some(AuthHook::identify_with(
        JwtAuth::public_key_pem(&public).unwrap(),
    ));
    (0..3)
        .map(|_| Node::with_server(&redis.url(), Duration::from_secs(15), server.clone()))
        .collect()
}

fn token(sub: &str, name: &str, rooms: Value) -> String {
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/jwt");
    let private = std::fs::read(format!("{fixtures}/ec_private.pem")).unwrap();
    let key = EncodingKey::from_ec_pem(&private).unwrap();
    let exp = jsonwebtoken::get_current_timestamp() + 600;
    let claims = json!({"sub": sub, "name": name, "exp": exp, "rooms": rooms});
    encode(&Header::new(Algorithm::ES256), &claims, &key).unwrap()
}

fn error_of(event: &HubEvent) -> Option<(&str, Option<&str>)> {
    match event {
        HubEvent::Error(e) => Some((e.error.as_str(), e.room.as_deref())),
        _ => None,
    }
}

async fn with_token(addr: SocketAddr, room: &str, token: &str) -> HubClient {
    let mut c = config(room, "forged");
    c.token = Some(token.into());
    let mut client = HubClient::connect(&url(addr), c).await.unwrap();
    until(&mut client, welcome_of(room)).await;
    client
}

#[tokio::test]
async fn jwt_identities_and_permissions_hold_on_every_node() {
    let Some(redis) = Redis::start() else { return };
    let nodes = jwt_nodes(&redis);
    for node in &nodes {
        node.connected(true).await;
    }
    let reader = token(
        "r1",
        "Reader",
        json!({"read": ["news", "chat"], "write": ["chat"]}),
    );
    let writer = token("w1", "Writer", json!(["news", "chat"]));

    let mut reader_a = with_token(nodes[0].addr, "news", &reader).await;
    let mut writer_b = with_token(nodes[1].addr, "news", &writer).await;
    writer_b.subscribe("chat", None).await.unwrap();
    until(&mut writer_b, welcome_of("chat")).await;

    // The reader may not write news: refused by its own node and by another node its
    // token opens a connection on; nothing is numbered or stored.
    let mut reader_b = with_token(nodes[1].addr, "news", &reader).await;
    for client in [&mut reader_a, &mut reader_b] {
        client.publish_text("news", "forged news").await.unwrap();
        let e = until(client, |e| error_of(e).is_some()).await;
        assert_eq!(
            error_of(e.last().unwrap()),
            Some(("forbidden", Some("news")))
        );
    }
    // Nor read a room its token does not list, on the third node either.
    let mut reader_c = with_token(nodes[2].addr, "chat", &reader).await;
    reader_c.subscribe("secret", None).await.unwrap();
    let e = until(&mut reader_c, |e| error_of(e).is_some()).await;
    assert_eq!(
        error_of(e.last().unwrap()),
        Some(("forbidden", Some("secret")))
    );
    assert!(reader_c.rooms().iter().all(|r| r.0 != "secret"));

    // The writer's news is the room's first message, named from its token on every node.
    writer_b.publish_text("news", "real news").await.unwrap();
    let mut seen = Seen::new();
    read_until(&mut reader_a, &mut seen, 1).await;
    assert_eq!(
        seen["news"],
        [(1, "Writer".into(), Body::Text("real news".into()))]
    );
    // The reader may write chat, from node 2: the writer on node 1 gets it in its name.
    reader_c
        .publish_data("chat", json!({"hello": "from c"}))
        .await
        .unwrap();
    let mut seen = Seen::new();
    read_until(&mut writer_b, &mut seen, 2).await;
    assert_eq!(
        seen["chat"],
        [(1, "Reader".into(), Body::Data(json!({"hello": "from c"})))]
    );
    // And nothing forged reached the shared history.
    let (_, room) = http(nodes[2].addr, "GET", "/api/rooms/news", "").await;
    assert_eq!(room["last_id"], 1, "{room}");
}

#[tokio::test]
async fn a_client_whose_node_dies_resumes_on_another_with_nothing_lost_or_twice() {
    let Some(redis) = Redis::start() else { return };
    let mut nodes = connected_nodes(&redis, 3).await;
    let push = |addr: SocketAddr, room: &'static str, i: u64| async move {
        let body = json!({"data": {"i": i}}).to_string();
        let path = format!("/api/rooms/{room}/messages");
        let (status, body) = http(addr, "POST", &path, &body).await;
        assert_eq!((status, &body["id"]), (201, &json!(i)));
    };
    let mut c = config("r", "mover");
    c.fallback_urls = vec![url(nodes[1].addr)];
    let mut client = HubClient::connect(&url(nodes[0].addr), c).await.unwrap();
    until(&mut client, welcome_of("r")).await;
    client.subscribe("s", None).await.unwrap();
    until(&mut client, welcome_of("s")).await;
    let mut seen = Seen::new();
    for i in 1..=2 {
        push(nodes[2].addr, "r", i).await;
        push(nodes[2].addr, "s", i).await;
    }
    read_until(&mut client, &mut seen, 4).await;

    // Its node dies; messages go on meanwhile through the third node.
    nodes[0].kill();
    let lost = until(&mut client, |e| matches!(e, HubEvent::Disconnected { .. })).await;
    record(&lost, &mut seen);
    for i in 3..=5 {
        push(nodes[2].addr, "r", i).await;
        push(nodes[2].addr, "s", i).await;
    }
    // The next attempt finds node 0 gone and moves on to node 1.
    let back = until(&mut client, welcome_of("s")).await;
    assert_eq!(back[0], HubEvent::Reconnected, "{back:?}");
    record(&back, &mut seen);
    client.publish_text("r", "back").await.unwrap();
    read_until(&mut client, &mut seen, 11).await;
    let ids = |room: &str| seen[room].iter().map(|m| m.0).collect::<Vec<_>>();
    assert_eq!(ids("r"), [1, 2, 3, 4, 5, 6]);
    assert_eq!(ids("s"), [1, 2, 3, 4, 5]);
    assert_eq!(seen["r"][5].2, Body::Text("back".into()));
    assert_eq!(client.connections(), 2, "one reconnect, to node 1");
}
