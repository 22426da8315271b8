//! `bench echo` connections driven by the library's `WebSocket` instead of the
//! hand-written [`super::pipeline`]: what `--http2` needs (the stream is an HTTP/2 stream,
//! not a socket to write frames into), and `--via-socket` runs the same driver over
//! HTTP/1.1 so that the two are compared like for like.

use super::report::Tally;
use super::{Control, Counter, Phase};
use anyhow::bail;
use futures_sink::Sink;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::pin::Pin;
use std::time::Instant;
use wsduplex::{ClientStream, CloseCode, Message, WebSocket};

/// The payload of message `seq` of connection `id`: `size` bytes, ASCII, unique at its
/// start so that an echo crossed with another is caught.
fn payload(id: u64, seq: u64, size: usize) -> Vec<u8> {
    let mut p = format!("{id:x}.{seq:x}.").into_bytes();
    p.resize(size.max(p.len()), b'x');
    p.truncate(size);
    p
}

/// Keeps `depth` messages in flight on `ws` until the phase is `Done` and every echo is
/// in, then closes it.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn run(
    mut ws: WebSocket<ClientStream>,
    id: u64,
    size: usize,
    depth: usize,
    binary: bool,
    control: &Control,
    counter: &Counter,
    stats: &RefCell<Tally>,
) -> anyhow::Result<()> {
    let message = |seq: u64| {
        let p = payload(id, seq, size);
        if binary {
            Message::binary(p)
        } else {
            Message::text(String::from_utf8(p).expect("ascii"))
        }
    };
    let mut in_flight = VecDeque::with_capacity(depth);
    let mut seq = 0u64;
    for _ in 0..depth {
        ws.feed(message(seq)).await?;
        in_flight.push_back((Instant::now(), seq));
        seq += 1;
    }
    std::future::poll_fn(|cx| Sink::poll_flush(Pin::new(&mut ws), cx)).await?;
    while let Some((sent_at, expected)) = in_flight.pop_front() {
        let Some(echo) = ws.recv().await else {
            bail!("the server closed the connection");
        };
        let echo = echo?;
        let phase = control.phase();
        {
            let mut stats = stats.borrow_mut();
            if echo.as_payload() != payload(id, expected, size) {
                stats.mismatches += 1;
            } else if phase == Phase::Measure {
                stats.count += 1;
                stats
                    .latency
                    .saturating_record(sent_at.elapsed().as_nanos() as u64);
            }
        }
        counter.add(1);
        if phase != Phase::Done {
            ws.send(message(seq)).await?;
            in_flight.push_back((Instant::now(), seq));
            seq += 1;
        }
    }
    ws.close(CloseCode::NORMAL, "").await?;
    while let Some(item) = ws.recv().await {
        item?;
    }
    Ok(())
}
