//! The Rust hub client (`wsduplex_hub::client`) against a served hub: three rooms, text and
//! `data`, the server killed and restarted on the same port while messages go on (the
//! client resumes each room with `since`: exact id sequences, nothing twice, nothing
//! missing), a gap reported, a forbidden room, a refresh, and an expired token.

mod common;
#[path = "common/hub_client.rs"]
mod hub_client;

use hub_client::{config, messages, next, until};
use serde_json::json;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};
use wsduplex::auth::{AuthHook, Authenticated, Credential, Denied, Identity, RoomSet};
use wsduplex::proto::handshake::client::ResponseError;
use wsduplex::proto::handshake::server::Request;
use wsduplex::server::ServerConfig;
use wsduplex_hub::client::{Body, HubClient, HubClientConfig, HubEvent};
use wsduplex_hub::{Hub, HubConfig, CLOSE_TOKEN_EXPIRED};

const LIMIT: Duration = Duration::from_secs(10);

/// A hub served by a runtime of its own, which can die (every connection drops at once, as
/// in a crash) and come back on the same port with the same rooms.
struct Server {
    hub: Hub,
    addr: SocketAddr,
    auth: Option<AuthHook>,
    rt: Option<tokio::runtime::Runtime>,
}

impl Server {
    fn start(config: HubConfig, auth: Option<AuthHook>) -> Self {
        let mut server = Self {
            hub: Hub::new(config),
            addr: "127.0.0.1:0".parse().unwrap(),
            auth,
            rt: None,
        };
        server.restart();
        server
    }

    fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    fn kill(&mut self) {
        if let Some(rt) = self.rt.take() {
            // The tasks, the listener among them, are dropped on the runtime's thread a
            // moment later: `restart` waits for the port.
            rt.shutdown_background();
        }
    }

    /// (Re)starts serving: on a free port the first time, then on the same one.
    fn restart(&mut self) {
        // The port can still be taken for a moment: by the old listener (see `kill`), or by
        // a client's outgoing connection, which the kernel may give that port as its own
        // (it came from the ephemeral range). Try again until it is free.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let listener = loop {
            match std::net::TcpListener::bind(self.addr) {
                Ok(listener) => break listener,
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                    assert!(
                        std::time::Instant::now() < deadline,
                        "{} stays taken",
                        self.addr
                    );
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => panic!("bind {}: {e}", self.addr),
            }
        };
        listener.set_nonblocking(true).unwrap();
        self.addr = listener.local_addr().unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let mut config = ServerConfig::default();
        config.auth = self.auth.clone();
        config.socket.close_timeout = Duration::from_secs(2);
        let hub = self.hub.clone();
        rt.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            common::serve::serve(listener, hub, config).await;
        });
        self.rt = Some(rt);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

fn welcome_of(room: &'static str) -> impl Fn(&HubEvent) -> bool {
    move |e| matches!(e, HubEvent::Welcome(w) if w.room == room)
}

/// Every message handed out (welcome histories included) per room, as `(id, body)`.
fn by_room(events: &[HubEvent], into: &mut BTreeMap<String, Vec<(u64, Body)>>) {
    for m in messages(events) {
        into.entry(m.room).or_default().push((m.id, m.body));
    }
}

fn count(seen: &BTreeMap<String, Vec<(u64, Body)>>) -> usize {
    seen.values().map(Vec::len).sum()
}

#[tokio::test]
async fn three_rooms_resume_after_a_restart_with_nothing_lost_or_twice() {
    let mut server = Server::start(HubConfig::default(), None);
    let hub = server.hub.clone();
    hub.publish("c", "api", "c before").await.unwrap();
    let mut client = HubClient::connect(&server.url(), config("a", "eve"))
        .await
        .unwrap();
    let mut seen = BTreeMap::new();
    let first = until(&mut client, welcome_of("a")).await;
    client.subscribe("b", None).await.unwrap();
    client.subscribe("c", None).await.unwrap();
    let mut events = first;
    events.extend(until(&mut client, welcome_of("b")).await);
    events.extend(until(&mut client, welcome_of("c")).await);
    by_room(&events, &mut seen);
    assert_eq!(
        seen["c"],
        [(1, Body::Text("c before".into()))],
        "c's history"
    );

    // Text and data from the client, and from the push side.
    client.publish_text("a", "a1").await.unwrap();
    client.publish_data("b", json!({"n": 1})).await.unwrap();
    hub.publish_data("c", "api", &json!([2])).await.unwrap();
    while count(&seen) < 4 {
        by_room(&[next(&mut client).await], &mut seen);
    }

    // The server dies; messages go on meanwhile (the hub keeps its rooms), then it comes
    // back on the same port.
    server.kill();
    let lost = until(&mut client, |e| matches!(e, HubEvent::Disconnected { .. })).await;
    by_room(&lost, &mut seen);
    for i in 2..=3 {
        hub.publish("a", "api", &format!("a{i}")).await.unwrap();
        hub.publish_data("b", "api", &json!({"n": i}))
            .await
            .unwrap();
        hub.publish("c", "api", &format!("c{i}")).await.unwrap();
    }
    server.restart();
    let back = until(&mut client, welcome_of("c")).await;
    assert_eq!(back[0], HubEvent::Reconnected, "{back:?}");
    for e in &back {
        if let HubEvent::Welcome(w) = e {
            assert!(w.resumed && !w.gap, "{w:?}");
        }
    }
    by_room(&back, &mut seen);
    client.publish_text("b", "live").await.unwrap();
    hub.publish("a", "api", "a4").await.unwrap();
    while count(&seen) < 4 + 6 + 2 {
        by_room(&[next(&mut client).await], &mut seen);
    }

    let ids = |room: &str| seen[room].iter().map(|m| m.0).collect::<Vec<_>>();
    assert_eq!(ids("a"), [1, 2, 3, 4]);
    assert_eq!(ids("b"), [1, 2, 3, 4]);
    assert_eq!(ids("c"), [1, 2, 3, 4]);
    let b: Vec<&Body> = seen["b"].iter().map(|m| &m.1).collect();
    assert_eq!(
        b,
        [
            &Body::Data(json!({"n": 1})),
            &Body::Data(json!({"n": 2})),
            &Body::Data(json!({"n": 3})),
            &Body::Text("live".into())
        ]
    );
    assert_eq!(client.connections(), 2);
    let rooms: Vec<_> = client.rooms();
    assert_eq!(
        rooms,
        [
            ("a".into(), Some(4)),
            ("b".into(), Some(4)),
            ("c".into(), Some(4))
        ]
    );
    client.close().await.unwrap();
}

/// `next_event` dropped each time the other branch of a `select!` wins loses nothing.
#[tokio::test]
async fn next_event_waits_in_select_beside_publishing() {
    let server = Server::start(HubConfig::default(), None);
    let mut client = HubClient::connect(&server.url(), config("s", "sel"))
        .await
        .unwrap();
    let mut tick = tokio::time::interval(Duration::from_millis(2));
    let (mut sent, mut got) = (0, Vec::new());
    let all = async {
        while got.len() < 50 {
            tokio::select! {
                event = client.next_event() => match event {
                    Some(HubEvent::Message(m)) => got.push(m.id),
                    Some(_) => {}
                    None => panic!("ended"),
                },
                _ = tick.tick(), if sent < 50 => {
                    sent += 1;
                    client.publish_text("s", &sent.to_string()).await.unwrap();
                }
            }
        }
    };
    tokio::time::timeout(LIMIT, all)
        .await
        .expect("not every message came");
    assert_eq!(got, (1..=50).collect::<Vec<u64>>());
}

#[tokio::test]
async fn messages_that_left_history_meanwhile_are_reported_as_a_gap() {
    let mut hub_config = HubConfig::default();
    hub_config.history = 3;
    let mut server = Server::start(hub_config, None);
    let hub = server.hub.clone();
    let mut client = HubClient::connect(&server.url(), config("g", "gus"))
        .await
        .unwrap();
    until(&mut client, welcome_of("g")).await;
    hub.publish("g", "api", "1").await.unwrap();
    until(&mut client, |e| matches!(e, HubEvent::Message(_))).await;
    server.kill();
    until(&mut client, |e| matches!(e, HubEvent::Disconnected { .. })).await;
    for i in 2..=6 {
        hub.publish("g", "api", &i.to_string()).await.unwrap();
    }
    server.restart();
    let back = until(&mut client, welcome_of("g")).await;
    let Some(HubEvent::Welcome(w)) = back.last() else {
        panic!("{back:?}")
    };
    let ids: Vec<u64> = w.history.iter().map(|m| m.id).collect();
    assert_eq!((w.gap, w.resumed, ids), (true, true, vec![4, 5, 6]));
}

/// Reads a test token `USER|READ|WRITE|TTL_MS` (patterns comma-separated) from
/// `Authorization: Bearer`, as the client sends it (and as a `refresh` carries it).
fn hook() -> AuthHook {
    AuthHook::from_fn(|request: &Request| {
        let token = request
            .header("authorization")
            .and_then(|v| v.strip_prefix(b"Bearer "))
            .map(|v| String::from_utf8_lossy(v).into_owned());
        async move {
            let token = token.ok_or(Denied::unauthorized("no token"))?;
            let parts: Vec<&str> = token.split('|').collect();
            let [user, read, write, ttl] = parts[..] else {
                return Err(Denied::unauthorized("bad token"));
            };
            let ttl: u64 = ttl.parse().map_err(|_| Denied::unauthorized("bad ttl"))?;
            let rooms = |s: &str| RoomSet::of(s.split(',').filter(|p| !p.is_empty()));
            let identity = Identity::user(user)
                .with_rooms(rooms(read), rooms(write))
                .expiring_at(SystemTime::now() + Duration::from_millis(ttl));
            Ok(Authenticated::new(identity, Credential::Authorization))
        }
    })
}

fn error_of(event: &HubEvent) -> Option<(&str, Option<&str>)> {
    match event {
        HubEvent::Error(e) => Some((e.error.as_str(), e.room.as_deref())),
        _ => None,
    }
}

#[tokio::test]
async fn identities_forbidden_rooms_refresh_and_an_expired_token() {
    let server = Server::start(HubConfig::default(), Some(hook()));
    let hub = server.hub.clone();
    let mut c = config("a", "forged");
    c.token = Some("u1|a,b,pub|a|60000".into());
    let mut client = HubClient::connect(&server.url(), c).await.unwrap();
    let w = until(&mut client, welcome_of("a")).await;
    let Some(HubEvent::Welcome(w)) = w.last() else {
        panic!()
    };
    assert_eq!(w.name, "u1", "the identity's name, not ?name=");

    // A room it may not read: an error event naming it, and the room is forgotten.
    client.subscribe("secret", None).await.unwrap();
    let e = until(&mut client, |e| error_of(e).is_some()).await;
    assert_eq!(error_of(&e[0]), Some(("forbidden", Some("secret"))));
    client.subscribe("pub", None).await.unwrap();
    client.subscribe("b", None).await.unwrap();
    until(&mut client, welcome_of("b")).await;
    assert_eq!(
        client
            .rooms()
            .iter()
            .map(|r| r.0.as_str())
            .collect::<Vec<_>>(),
        ["a", "pub", "b"]
    );
    // A room it may read but not write: an error, nothing published.
    client.publish_text("pub", "no").await.unwrap();
    let e = until(&mut client, |e| error_of(e).is_some()).await;
    assert_eq!(error_of(&e[0]), Some(("forbidden", Some("pub"))));
    assert_eq!(hub.members("pub").await.unwrap().unwrap().1, 0);

    // A refresh that may read only a: pub and b are left.
    client.refresh("u1|a|a|60000").await.unwrap();
    let events = until(
        &mut client,
        |e| matches!(e, HubEvent::Unsubscribed { room } if room == "b"),
    )
    .await;
    assert!(
        matches!(events[0], HubEvent::Refreshed { expires: Some(_) }),
        "{events:?}"
    );
    assert_eq!(client.rooms(), [("a".into(), Some(0))]);

    // A token about to expire: close 4001; a new token, and the client resumes with
    // what was sent meanwhile.
    client.refresh("u1|a|a|300").await.unwrap();
    until(&mut client, |e| matches!(e, HubEvent::Refreshed { .. })).await;
    let closed = until(&mut client, |e| matches!(e, HubEvent::Disconnected { .. })).await;
    let Some(HubEvent::Disconnected { code, .. }) = closed.last() else {
        panic!()
    };
    assert_eq!(*code, Some(CLOSE_TOKEN_EXPIRED));
    hub.publish("a", "api", "meanwhile").await.unwrap();
    client.refresh("u1|a|a|60000").await.unwrap();
    let back = until(&mut client, welcome_of("a")).await;
    let Some(HubEvent::Welcome(w)) = back.last() else {
        panic!()
    };
    let texts: Vec<_> = w.history.iter().map(|m| m.body.as_text()).collect();
    assert_eq!((w.resumed, texts), (true, vec![Some("meanwhile")]));
}

#[tokio::test]
async fn a_refused_first_connection_is_an_error_at_once() {
    let server = Server::start(HubConfig::default(), Some(hook()));
    let status = |token: Option<&str>, room: &str, name: &str| {
        let mut c = config(room, name);
        c.token = token.map(str::to_string);
        let url = server.url();
        async move {
            match HubClient::connect(&url, c).await {
                Err(wsduplex::Error::Response(ResponseError::Status { status, .. })) => status,
                other => panic!("expected a refusal: {other:?}"),
            }
        }
    };
    assert_eq!(status(None, "a", "x").await, 401, "no token");
    assert_eq!(status(Some("u1|a|a|60000"), "secret", "x").await, 403);
    let anonymous = Server::start(HubConfig::default(), None);
    match HubClient::connect(&anonymous.url(), config("a", "bell\u{7}")).await {
        Err(wsduplex::Error::Response(ResponseError::Status { status, .. })) => {
            assert_eq!(status, 400, "a bad name")
        }
        other => panic!("expected a refusal: {other:?}"),
    }
}

#[tokio::test]
async fn a_bad_url_room_or_token_is_refused_before_any_attempt() {
    for url in [
        "http://127.0.0.1:1",
        "not a url",
        "ws://127.0.0.1:1/hub?x=1",
    ] {
        let err = HubClient::connect(url, HubClientConfig::default())
            .await
            .unwrap_err();
        assert!(matches!(err, wsduplex::Error::Url(_)), "{url}: {err}");
    }
    // A room against the hub's rules, a token that cannot be a header: refused before
    // any attempt (nothing listens at port 1).
    let err = HubClient::connect("ws://127.0.0.1:1", config("a b", "x"))
        .await
        .unwrap_err();
    assert!(matches!(err, wsduplex::Error::Url(_)), "{err}");
    let mut c = config("a", "x");
    c.token = Some("line\nbreak".into());
    let err = HubClient::connect("ws://127.0.0.1:1", c).await.unwrap_err();
    assert!(matches!(err, wsduplex::Error::Request(_)), "{err}");
    assert!(
        !err.to_string().contains("break"),
        "the token is not shown: {err}"
    );
}
