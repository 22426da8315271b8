//! The clients of `bench transports`: a subscriber per transport, and the publisher.

use super::tracker::{Event, Tracker};
use super::wire::{exchange, read_head, Counted, Wire};
use super::Transport;
use anyhow::{bail, Context as _};
use serde::Deserialize;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use wsduplex::client::{ClientConfig, Target};
use wsduplex::Message;

/// Where the subscribers and the publisher go.
#[derive(Clone)]
pub(super) struct Hub {
    pub(super) addr: SocketAddr,
    pub(super) room: String,
}

/// A subscriber on `transport`, until the last message is in (then it leaves) or it fails.
/// `phase` staggers a plain poller's second among the others'.
pub(super) async fn subscribe(
    transport: Transport,
    hub: &Hub,
    name: &str,
    phase: Duration,
    tracker: &mut Tracker,
) -> anyhow::Result<()> {
    let wire = tracker.wire().clone();
    match transport {
        Transport::Ws | Transport::WsH2 => websocket(transport, hub, name, &wire, tracker).await,
        Transport::Sse => sse(hub, name, &wire, tracker).await,
        Transport::LongPoll => poll(hub, name, &wire, None, tracker).await,
        Transport::Poll => poll(hub, name, &wire, Some(phase), tracker).await,
    }
}

async fn websocket(
    transport: Transport,
    hub: &Hub,
    name: &str,
    wire: &Arc<Wire>,
    tracker: &mut Tracker,
) -> anyhow::Result<()> {
    let url = format!("ws://{}/chat/{}?name={name}", hub.addr, hub.room);
    let mut config = ClientConfig::default();
    config.deflate = None;
    let io = Counted::connect(hub.addr, wire).await?;
    wire.requests.fetch_add(1, Ordering::Relaxed);
    if transport == Transport::WsH2 {
        let (ws, _) = wsduplex::client::client_handshake_http2(io, url.as_str(), &config).await?;
        read_websocket(ws, tracker).await
    } else {
        let target = Target::parse(&url)?;
        let (ws, _) = wsduplex::client::client_handshake(io, &target, &config).await?;
        read_websocket(ws, tracker).await
    }
}

async fn read_websocket<S: AsyncRead + AsyncWrite + Unpin>(
    mut ws: wsduplex::WebSocket<S>,
    tracker: &mut Tracker,
) -> anyhow::Result<()> {
    while let Some(message) = ws.recv().await {
        match message? {
            Message::Text(t) if tracker.event(t.as_bytes())? => {
                tracker.shared().everyone_done().await;
                ws.close(wsduplex::CloseCode::NORMAL, "").await?;
                return Ok(());
            }
            Message::Close(Some(frame)) => {
                bail!(
                    "the server closed the connection: {} {}",
                    u16::from(frame.code),
                    frame.reason
                )
            }
            _ => {}
        }
    }
    bail!("the server closed the connection")
}

/// A `/poll` answer.
#[derive(Deserialize)]
struct Batch<'a> {
    session: Option<String>,
    cursor: u64,
    #[serde(borrow)]
    events: Vec<Event<'a>>,
}

/// How long a plain poll may take to be answered.
const HELD: Duration = Duration::from_secs(2);

/// Long polling (`phase: None`: each `GET` waits for events) or plain polling (a `GET`
/// a second, each answered at once: the server's poll timeout is 0).
async fn poll(
    hub: &Hub,
    name: &str,
    wire: &Arc<Wire>,
    phase: Option<Duration>,
    tracker: &mut Tracker,
) -> anyhow::Result<()> {
    let path = format!("/poll/{}?name={name}", hub.room);
    let (status, body) = exchange(hub.addr, wire, "POST", &path, "", b"").await?;
    if status != 200 {
        bail!(
            "POST {path}: {status} {}",
            String::from_utf8_lossy(&body).trim()
        );
    }
    let first: Batch<'_> = serde_json::from_slice(&body).context("POST /poll answer")?;
    let session = first.session.clone().context("no session in the answer")?;
    let mut cursor = first.cursor;
    for e in first.events {
        tracker.handle(e)?;
    }
    let mut tick = phase.map(|phase| {
        let start = tokio::time::Instant::now() + phase;
        let mut t = tokio::time::interval_at(start, Duration::from_secs(1));
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        t
    });
    let get = format!("/poll/session/{session}");
    let result = async {
        while !tracker.finished() {
            if let Some(tick) = tick.as_mut() {
                tick.tick().await;
            }
            let path = format!("{get}?cursor={cursor}");
            let asked = exchange(hub.addr, wire, "GET", &path, "", b"");
            let (status, body) = match tick {
                // A plain poll is answered at once, or the server holds it: it is not plain.
                Some(_) => tokio::time::timeout(HELD, asked).await.map_err(|_| {
                    anyhow::anyhow!(
                        "a poll took over {} s to answer: plain polling needs a server started \
                         with --poll-timeout 0",
                        HELD.as_secs()
                    )
                })??,
                None => asked.await?,
            };
            if status != 200 {
                bail!(
                    "GET {path}: {status} {}",
                    String::from_utf8_lossy(&body).trim()
                );
            }
            let batch: Batch<'_> = serde_json::from_slice(&body).context("GET /poll answer")?;
            cursor = batch.cursor;
            for e in batch.events {
                if tracker.handle(e)? {
                    break;
                }
            }
        }
        anyhow::Ok(())
    }
    .await;
    if result.is_ok() {
        tracker.shared().everyone_done().await;
    }
    // Leave the room at once rather than after the session's time-to-live.
    let _ = exchange(hub.addr, wire, "DELETE", &get, "", b"").await;
    result
}

/// Server-Sent Events: one `GET`, then the stream's `data:` lines.
async fn sse(hub: &Hub, name: &str, wire: &Arc<Wire>, tracker: &mut Tracker) -> anyhow::Result<()> {
    let path = format!("/sse/{}?name={name}", hub.room);
    let mut io = Counted::connect(hub.addr, wire).await?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\n\r\n",
        hub.addr
    );
    wire.requests.fetch_add(1, Ordering::Relaxed);
    io.write_all(request.as_bytes()).await?;
    let (status, mut buf) = read_head(&mut io).await?;
    if status != 200 {
        let mut rest = buf;
        let _ = io.read_to_end(&mut rest).await;
        bail!(
            "GET {path}: {status} {}",
            String::from_utf8_lossy(&rest).trim()
        );
    }
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        // One event ends with a blank line; its `data:` line carries the JSON.
        while let Some(end) = buf.windows(2).position(|w| w == b"\n\n") {
            let done = sse_event(&buf[..end], tracker)?;
            buf.drain(..end + 2);
            if done {
                tracker.shared().everyone_done().await;
                return Ok(());
            }
        }
        let n = io.read(&mut chunk).await?;
        if n == 0 {
            bail!("the server ended the event stream");
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// One SSE event: true once the last message is in.
fn sse_event(event: &[u8], tracker: &mut Tracker) -> anyhow::Result<bool> {
    let mut done = false;
    let mut session = false;
    for line in event.split(|&b| b == b'\n') {
        if line == b"event: session" {
            session = true;
        } else if let Some(data) = line.strip_prefix(b"data: ") {
            if !session {
                done |= tracker.event(data)?;
            }
        }
    }
    Ok(done)
}

/// The publisher's side: `POST /api/rooms/ROOM/messages`; the id the room gave.
pub(super) async fn publish(
    hub: &Hub,
    token: &str,
    wire: &Arc<Wire>,
    text: &str,
) -> anyhow::Result<u64> {
    let path = format!("/api/rooms/{}/messages", hub.room);
    let body = serde_json::json!({ "text": text, "name": "publisher" }).to_string();
    let headers = format!("Authorization: Bearer {token}\r\nContent-Type: application/json\r\n");
    let (status, answer) =
        exchange(hub.addr, wire, "POST", &path, &headers, body.as_bytes()).await?;
    if status != 201 {
        bail!(
            "POST {path}: {status} {} (is the push API on, with this --api-token?)",
            String::from_utf8_lossy(&answer).trim()
        );
    }
    #[derive(Deserialize)]
    struct Published {
        id: u64,
    }
    let p: Published = serde_json::from_slice(&answer).context("the push API's answer")?;
    Ok(p.id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::transports::tracker::{text, Shared, Tracker};
    use crate::bench::transports::wire::Wire;
    use std::time::Instant;

    fn message(id: u64, text: &str) -> Vec<u8> {
        serde_json::json!({"type":"message","id":id,"room":"r","name":"p","text":text,"ts":1})
            .to_string()
            .into_bytes()
    }

    #[test]
    fn sse_events_skip_the_session_and_read_data_lines() {
        let shared = Shared::new(Instant::now(), 1);
        let mut t = Tracker::new(shared, Arc::new(Wire::default()));
        let session = b"event: session\ndata: {\"session\":\"ab\"}";
        assert!(!sse_event(session, &mut t).unwrap());
        let welcome = b"id: 0\ndata: {\"type\":\"welcome\",\"last_id\":0}";
        assert!(!sse_event(welcome, &mut t).unwrap());
        assert!(!sse_event(b": keepalive", &mut t).unwrap());
        let mut m = b"id: 1\ndata: ".to_vec();
        m.extend(message(1, &text(0, 1, 0)));
        assert!(!sse_event(&m, &mut t).unwrap());
        let mut m = b"id: 2\ndata: ".to_vec();
        m.extend(message(2, &text(1, 1, 0)));
        assert!(sse_event(&m, &mut t).unwrap());
    }
}
