//! `Hub::export_state` and `Hub::import_state` (feature `handover`): a new process's hub
//! takes the old one's rooms, so ids go on with no duplicate and no gap, and a client that
//! resumes with `since` gets exactly what it missed.
#![cfg(feature = "handover")]

// Only the WebSocket member's helpers are used here.
#[allow(dead_code)]
mod common;

use common::{join, next, say};
use serde_json::json;
use std::time::Duration;
use tokio::net::TcpListener;
use wsduplex::server::ServerConfig;
use wsduplex_hub::{Hub, HubConfig, HubState, HubStateError};

/// Upper bound for anything a test waits for; a hang fails instead of blocking CI.
const LIMIT: Duration = Duration::from_secs(10);

async fn serve(hub: &Hub) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(common::serve::serve(
        listener,
        hub.clone(),
        ServerConfig::default(),
    ));
    addr
}

#[tokio::test]
async fn ids_and_history_go_on_in_the_new_process() {
    let mut config = HubConfig::default();
    config.history = 4;
    let old = Hub::new(config.clone());
    for i in 1..=6 {
        assert_eq!(
            old.publish("lobby", "bot", &format!("m{i}")).await.unwrap(),
            i
        );
    }
    old.publish("quiet", "bot", "only").await.unwrap();

    let bytes = old.export_state().encode();
    let state = HubState::decode(&bytes).unwrap();
    assert_eq!(state.rooms(), 2);
    let new = Hub::new(config);
    let imported = new.import_state(state);
    assert_eq!((imported.rooms, imported.skipped), (2, 0));

    // A client that had seen up to 4 resumes on the new process: 5 and 6, no gap.
    let addr = serve(&new).await;
    let (mut ws, welcome) = join(addr, "/chat/lobby?name=alice&since=4").await;
    assert_eq!(welcome["last_id"], 6);
    assert_eq!(welcome["gap"], false);
    let ids: Vec<_> = welcome["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].clone())
        .collect();
    assert_eq!(ids, [json!(5), json!(6)]);
    // The next message is 7.
    say(&mut ws, "hello").await;
    let msg = next(&mut ws).await;
    assert_eq!((&msg["id"], &msg["text"]), (&json!(7), &json!("hello")));
    // One that had seen only 1 is told it missed some (history keeps 4: 3 to 6).
    let (_ws, welcome) = join(addr, "/chat/lobby?name=bob&since=1").await;
    assert_eq!(welcome["gap"], true);
    assert_eq!(new.members("quiet").await.unwrap().unwrap().1, 1);

    // A room that already has messages here is left as it is.
    let again = new.import_state(old.export_state());
    assert_eq!((again.rooms, again.skipped), (0, 2));
}

#[test]
fn a_state_of_another_version_or_not_a_state_is_refused() {
    let mut bytes = HubState::default().encode();
    assert_eq!(&bytes[..6], b"WSDH\x00\x01");
    bytes[5] = 9;
    let err = HubState::decode(&bytes).unwrap_err();
    assert!(
        matches!(
            err,
            HubStateError::Version {
                found: 9,
                supported: 1
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "hub state format version 9 is not supported (this build reads version 1)"
    );
    assert!(matches!(
        HubState::decode(b"WSDX\x00\x01"),
        Err(HubStateError::NotAState)
    ));
    assert!(matches!(
        HubState::decode(b"WSDH\x00\x01\x05"),
        Err(HubStateError::Malformed(_))
    ));
}
