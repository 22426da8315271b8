//! `Hub::accept`: the hub's paths answered, any other handed back untouched, and a
//! WebSocket member handed back to be run wherever the server likes (here, in a task of its
//! own, as `wsduplex serve` does).

mod common;

use common::{join, next_of, say};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use wsduplex::server::{read_request, ServerConfig};
use wsduplex_hub::{Accepted, Hub, HubConfig};

/// Upper bound for anything a test waits for; a hang fails instead of blocking CI.
const LIMIT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn members_come_back_to_run_and_other_paths_come_back_untouched() {
    let hub = Hub::new(HubConfig::default());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = ServerConfig::default();
    // What each request became, in the order they were accepted.
    let (tx, mut became) = mpsc::unbounded_channel();
    let served = hub.clone();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let (hub, config, tx) = (served.clone(), config.clone(), tx.clone());
            tokio::spawn(async move {
                let incoming = read_request(tcp, &config).await.unwrap();
                match hub.accept(incoming, &config).await {
                    Accepted::Member(member) => {
                        tx.send("member").unwrap();
                        tokio::spawn(member.run());
                    }
                    Accepted::NotMine(other) => {
                        tx.send("not mine").unwrap();
                        other
                            .respond(404, &[], "text/plain", b"ours\n")
                            .await
                            .unwrap();
                    }
                    Accepted::Answered => tx.send("answered").unwrap(),
                }
            });
        }
    });
    let mut next = async || tokio::time::timeout(LIMIT, became.recv()).await.unwrap();

    let (mut alice, _) = join(addr, "/chat/r?name=alice").await;
    assert_eq!(next().await, Some("member"));
    let (mut bob, _) = join(addr, "/chat/r?name=bob").await;
    assert_eq!(next().await, Some("member"));
    // Both run in their own tasks: they chat, and the hub knows them.
    say(&mut bob, "hello").await;
    assert_eq!(next_of(&mut alice, "message").await["text"], "hello");
    let (members, _) = hub.members("r").await.unwrap().unwrap();
    assert_eq!(members, ["alice", "bob"]);

    let other = common::http(addr, "GET", "/elsewhere", &[], "", LIMIT).await;
    assert_eq!((other.status, next().await), (404, Some("not mine")));
    let page = common::http(addr, "GET", "/", &[], "", LIMIT).await;
    assert_eq!((page.status, next().await), (200, Some("answered")));
    // A join refused (a bad room name) is answered by the hub, not handed back.
    let bad = common::http(addr, "GET", "/chat/no%20spaces", &[], "", LIMIT).await;
    assert_eq!(next().await, Some("answered"));
    assert_ne!(bad.status, 200);

    // A member's task ends when its client leaves, and the room sees it go.
    drop(bob);
    assert_eq!(next_of(&mut alice, "left").await["name"], "bob");
}
