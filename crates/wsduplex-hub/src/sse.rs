//! Server-Sent Events: `GET /sse/ROOM?name=NAME[&since=ID]` streams a room's events as
//! `text/event-stream`, the streaming transport browsers have besides WebSocket
//! (`EventSource`). A stream is a long-polling session read without pause: the same
//! membership, bounded queue and slow-member rule, the same order as every other
//! transport. What the member says goes through the session's `POST
//! /poll/session/ID`, whose id the stream names first.
//!
//! ```text
//!  retry: 1000                                   reconnect after 1 s when cut
//!  event: session                                the id for POST /poll/session/ID
//!  data: {"session":"9f..."}
//!
//!  id: 41                                        a message id (and the welcome's last id):
//!  data: {"type":"welcome",...}                  the browser sends it back as Last-Event-ID
//!                                                when it reconnects, and the welcome resumes
//!  data: {"type":"joined",...}                   from there (events without an id keep it)
//!
//!  : keepalive                                   a comment when idle for the poll timeout,
//!                                                so that idle proxies keep the stream
//! ```
//!
//! A session may follow more rooms (`subscribe` through its `POST`); ids are per room, and
//! the browser resumes the stream's own room (the URL's) with `Last-Event-ID`, so only that
//! room's events carry `id:`. The client resubscribes the others with their own `since`.

use crate::event;
use crate::poll::{Batch, PollError};
use crate::Hub;
use bytes::Bytes;
use futures_core::Stream;
use std::fmt::Write as _;
use std::pin::Pin;
use wsduplex::proto::handshake::server::Request;

/// The stream's body: chunks of events, ending when the session does.
pub(crate) type EventStream = Pin<Box<dyn Stream<Item = Bytes> + Send>>;

/// Where a stream resumes: the browser's `Last-Event-ID` (sent on its own reconnects, the
/// last `id:` it saw) before the URL's `since` (the page's own resume).
pub(crate) fn resume_from(request: &Request, since: Option<u64>) -> Option<u64> {
    let last = request.header("last-event-id").and_then(|v| {
        let v = std::str::from_utf8(v).ok()?.trim();
        v.parse().ok()
    });
    last.or(since)
}

/// The events of `batch` in the stream's format; events of `room` carry their ids.
fn encode(out: &mut String, room: &str, (_, events): &Batch) {
    if events.is_empty() {
        out.push_str(": keepalive\n\n");
    }
    for e in events {
        let id = event::known_id(e).filter(|_| event::room_of(e) == Some(room));
        if let Some(id) = id {
            let _ = writeln!(out, "id: {id}");
        }
        // An event is one line of JSON: newlines in its text are escaped.
        let _ = write!(out, "data: {}\n\n", e.as_str());
    }
}

/// The stream of session `id`, opened with `first` (its welcome): the session event, then
/// every batch as it comes. The session ends with the stream (the client left) and the
/// stream with the session (cut, too slow, closed with `DELETE`).
pub(crate) fn stream(hub: Hub, id: String, room: String, first: Batch) -> EventStream {
    let mut head = format!("retry: 1000\nevent: session\ndata: {{\"session\":\"{id}\"}}\n\n");
    encode(&mut head, &room, &first);
    let state = Reader {
        session: Session { hub, id },
        room,
        cursor: first.0,
        first: Some(Bytes::from(head)),
    };
    Box::pin(futures_util::stream::unfold(state, |mut s| async move {
        if let Some(first) = s.first.take() {
            return Some((first, s));
        }
        // The stream holds its session here: never one taken over from another node.
        let read = s
            .session
            .hub
            .poll_read(&s.session.id, s.cursor, false)
            .await;
        match read {
            Ok(batch) => {
                s.cursor = batch.0;
                let mut out = String::new();
                encode(&mut out, &s.room, &batch);
                Some((Bytes::from(out), s))
            }
            Err(PollError::UnknownSession) => None,
            Err(e) => {
                tracing::debug!("sse session {}: {e:?}", s.session.id);
                None
            }
        }
    }))
}

struct Reader {
    session: Session,
    /// The room of the URL: the one `Last-Event-ID` resumes.
    room: String,
    cursor: u64,
    first: Option<Bytes>,
}

/// The stream's session, closed when the stream is dropped (its member leaves the room).
struct Session {
    hub: Hub,
    id: String,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.hub.session_ended(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::HubConfig;
    use futures_util::StreamExt;

    #[tokio::test]
    async fn the_stream_names_its_session_then_carries_ids_and_ends_with_it() {
        let hub = Hub::new(HubConfig::default());
        let (id, first) = hub
            .poll_open("r", "ann", None, Default::default())
            .await
            .unwrap();
        let mut s = stream(hub.clone(), id.clone(), "r".into(), first);
        let head = String::from_utf8(s.next().await.unwrap().to_vec()).unwrap();
        assert!(head.starts_with("retry: 1000\nevent: session\n"), "{head}");
        assert!(
            head.contains(&format!("data: {{\"session\":\"{id}\"}}\n\n")),
            "{head}"
        );
        assert!(
            head.contains("id: 0\ndata: {\"type\":\"welcome\""),
            "{head}"
        );
        hub.publish("r", "bob", "hello").await.unwrap();
        let next = String::from_utf8(s.next().await.unwrap().to_vec()).unwrap();
        assert!(
            next.starts_with("id: 1\ndata: {\"type\":\"message\""),
            "{next}"
        );
        assert_eq!(hub.session_count(), 1);
        drop(s);
        assert_eq!(hub.session_count(), 0, "the member leaves with its stream");
        assert!(hub.members("r").await.unwrap().unwrap().0.is_empty());
    }

    #[tokio::test]
    async fn a_closed_session_ends_the_stream() {
        let hub = Hub::new(HubConfig::default());
        let (id, first) = hub
            .poll_open("r", "ann", None, Default::default())
            .await
            .unwrap();
        let mut s = stream(hub.clone(), id.clone(), "r".into(), first);
        let _ = s.next().await;
        hub.poll_close(&id).await.unwrap();
        assert!(s.next().await.is_none());
    }
}
