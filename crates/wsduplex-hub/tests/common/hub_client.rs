//! The Rust hub client (`wsduplex_hub::client`) as the tests drive it: a config with quick
//! retries, its events read with a deadline, the messages they hand out. Included by `#[path]` in the test binaries
//! that use the client; the including binary defines `LIMIT`, the longest wait for an event.

use std::time::Duration;
use wsduplex_hub::client::{ChatMessage, HubClient, HubClientConfig, HubEvent};

/// A client of `room` named `name`, retrying quickly: the tests restart or kill servers and
/// want the client back at once.
pub fn config(room: &str, name: &str) -> HubClientConfig {
    let mut c = HubClientConfig::default();
    c.room = room.into();
    c.name = Some(name.into());
    c.backoff.initial = Duration::from_millis(20);
    c.backoff.max = Duration::from_millis(200);
    c
}

/// The next event, which must come within `LIMIT` with the client still running.
pub async fn next(client: &mut HubClient) -> HubEvent {
    tokio::time::timeout(crate::LIMIT, client.next_event())
        .await
        .expect("no event in time")
        .expect("the client ended")
}

/// Events up to the one `done` accepts (included), presence left out.
pub async fn until(client: &mut HubClient, done: impl Fn(&HubEvent) -> bool) -> Vec<HubEvent> {
    let mut out = Vec::new();
    loop {
        let event = next(client).await;
        let last = done(&event);
        if !matches!(event, HubEvent::Joined(_) | HubEvent::Left(_)) {
            out.push(event);
        }
        if last {
            return out;
        }
    }
}

/// Every message `events` hand out, welcome histories included, in order.
pub fn messages(events: &[HubEvent]) -> impl Iterator<Item = ChatMessage> + '_ {
    events.iter().flat_map(|event| match event {
        HubEvent::Welcome(w) => w.history.clone(),
        HubEvent::Message(m) => vec![m.clone()],
        _ => Vec::new(),
    })
}
