//! `wsduplex serve` over HTTP/2 with prior knowledge (`h2c`), fed hand-written frames: what
//! no client library sends (HTTP/1.1 connection fields, streams past the concurrency limit,
//! an HPACK bomb), each answered on its stream while the connection, or the next one, goes on.

mod common;
mod h2c;

use common::*;
use h2c::{connect, get};
use tokio::net::TcpStream;
use tokio::time::timeout;

/// An HTTP/2 frame: length, type, flags, stream id, payload.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = len.to_be_bytes()[1..].to_vec();
    f.extend_from_slice(&[kind, flags]);
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// A header block of literal fields, never indexed, no Huffman (RFC 7541 §6.2.3): what no
/// client library sends for connection-specific fields, written by hand.
fn literal_block(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut block = Vec::new();
    for (name, value) in fields {
        assert!(name.len() < 127 && value.len() < 127);
        block.push(0x10);
        block.push(name.len() as u8);
        block.extend_from_slice(name.as_bytes());
        block.push(value.len() as u8);
        block.extend_from_slice(value.as_bytes());
    }
    block
}

#[tokio::test]
async fn http1_connection_fields_reset_their_stream_only() {
    use tokio::io::AsyncWriteExt;
    let server = Server::start();
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    let authority = server.addr.to_string();
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend(frame(0x4, 0, 0, &[])); // SETTINGS
                                       // RFC 9113 §8.2.2: `Upgrade` and `Connection` make the request malformed.
    let bad = literal_block(&[
        (":method", "CONNECT"),
        (":protocol", "websocket"),
        (":scheme", "http"),
        (":path", "/echo"),
        (":authority", &authority),
        ("sec-websocket-version", "13"),
        ("upgrade", "websocket"),
        ("connection", "upgrade"),
    ]);
    out.extend(frame(0x1, 0x4, 1, &bad)); // HEADERS, END_HEADERS
    let good = literal_block(&[
        (":method", "GET"),
        (":scheme", "http"),
        (":path", "/healthz"),
        (":authority", &authority),
    ]);
    out.extend(frame(0x1, 0x4 | 0x1, 3, &good)); // HEADERS, END_HEADERS | END_STREAM
    tcp.write_all(&out).await.unwrap();
    let (mut reset, mut answered) = (None, false);
    let mut buf = Vec::new();
    read_frames(&mut tcp, &mut buf, |kind, _, stream, payload| {
        match (kind, stream) {
            (0x3, 1) => reset = Some(u32::from_be_bytes(payload[..4].try_into().unwrap())),
            (0x1, 3) => answered = true,
            _ => {}
        }
        reset.is_some() && answered
    })
    .await;
    assert_eq!(reset, Some(0x1), "RST_STREAM(PROTOCOL_ERROR)");
    drop(tcp);
    server.stop();
}

/// Reads HTTP/2 frames from `tcp` until `done` says so: (type, flags, stream, payload).
async fn read_frames(
    tcp: &mut TcpStream,
    buf: &mut Vec<u8>,
    mut done: impl FnMut(u8, u8, u32, &[u8]) -> bool,
) {
    use tokio::io::AsyncReadExt;
    loop {
        while buf.len() >= 9 {
            let len = u32::from_be_bytes([0, buf[0], buf[1], buf[2]]) as usize;
            if buf.len() < 9 + len {
                break;
            }
            let (kind, flags) = (buf[3], buf[4]);
            let stream = u32::from_be_bytes([buf[5], buf[6], buf[7], buf[8]]) & 0x7fff_ffff;
            let payload: Vec<u8> = buf.drain(..9 + len).skip(9).collect();
            assert_ne!(kind, 0x7, "GOAWAY: the connection was torn down");
            if done(kind, flags, stream, &payload) {
                return;
            }
        }
        let mut chunk = [0u8; 16 * 1024];
        let n = timeout(TIMEOUT, tcp.read(&mut chunk))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "the connection closed");
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[tokio::test]
async fn streams_beyond_the_concurrent_limit_are_refused_not_the_connection() {
    use tokio::io::AsyncWriteExt;
    let server = Server::start();
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    let authority = server.addr.to_string();
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend(frame(0x4, 0, 0, &[]));
    tcp.write_all(&out).await.unwrap();
    // The server's SETTINGS, acknowledged: its stream limit (128) applies from then on.
    let mut buf = Vec::new();
    read_frames(&mut tcp, &mut buf, |kind, flags, _, _| {
        kind == 0x4 && flags & 1 == 0
    })
    .await;
    let connect = literal_block(&[
        (":method", "CONNECT"),
        (":protocol", "websocket"),
        (":scheme", "http"),
        (":path", "/echo"),
        (":authority", &authority),
        ("sec-websocket-version", "13"),
    ]);
    let mut out = frame(0x4, 0x1, 0, &[]);
    const OPENED: u32 = 300;
    for i in 0..OPENED {
        out.extend(frame(0x1, 0x4, 2 * i + 1, &connect));
    }
    tcp.write_all(&out).await.unwrap();
    let (mut answered, mut refused) = (0, 0);
    read_frames(&mut tcp, &mut buf, |kind, _, stream, payload| {
        match kind {
            0x1 if stream > 0 => answered += 1,
            0x3 => {
                // RST_STREAM(REFUSED_STREAM): the client may retry it.
                assert_eq!(payload, 7u32.to_be_bytes(), "stream {stream}");
                refused += 1;
            }
            _ => {}
        }
        answered + refused == OPENED
    })
    .await;
    assert_eq!((answered, refused), (128, OPENED - 128));
    drop(tcp);
    server.stop();
}

/// An HPACK integer with an `n`-bit prefix (RFC 7541 §5.1), `flags` in the prefix byte.
fn hpack_int(flags: u8, n: u32, mut value: usize, out: &mut Vec<u8>) {
    let max = (1usize << n) - 1;
    if value < max {
        out.push(flags | value as u8);
        return;
    }
    out.push(flags | max as u8);
    value -= max;
    while value >= 128 {
        out.push((value % 128) as u8 | 0x80);
        value /= 128;
    }
    out.push(value as u8);
}

#[tokio::test]
async fn an_hpack_bomb_is_stopped_and_other_connections_go_on() {
    use tokio::io::AsyncWriteExt;
    let server = Server::start();
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    let authority = server.addr.to_string();
    // 3 KB put in the dynamic table once, then named by one byte 2,000 times: 6 MB of
    // header list from 5 KB on the wire.
    let mut block = literal_block(&[
        (":method", "GET"),
        (":scheme", "http"),
        (":path", "/healthz"),
        (":authority", &authority),
    ]);
    block.push(0x40); // literal with incremental indexing, new name
    hpack_int(0, 7, 6, &mut block);
    block.extend_from_slice(b"x-bomb");
    hpack_int(0, 7, 3000, &mut block);
    block.extend(std::iter::repeat_n(b'b', 3000));
    block.extend(std::iter::repeat_n(0x80 | 62, 2000)); // indexed: the entry just added
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend(frame(0x4, 0, 0, &[]));
    // HEADERS and CONTINUATION within the default frame size (16 KiB).
    let mut chunks = block.chunks(16 * 1024).peekable();
    let mut first = true;
    while let Some(chunk) = chunks.next() {
        let last = chunks.peek().is_none();
        let (kind, flags) = if first { (0x1, 0x1) } else { (0x9, 0) };
        out.extend(frame(kind, flags | if last { 0x4 } else { 0 }, 1, chunk));
        first = false;
    }
    tcp.write_all(&out).await.unwrap();
    // Refused on its stream (431), or the connection ends: either way, soon.
    use tokio::io::AsyncReadExt;
    let mut answer = Vec::new();
    let mut chunk = [0u8; 4096];
    let ended = timeout(TIMEOUT, async {
        loop {
            match tcp.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => answer.extend_from_slice(&chunk[..n]),
            }
            // A HEADERS on stream 1 with END_STREAM: the 431.
            if answer.windows(5).any(|w| w == [0x1, 0x5, 0, 0, 0]) {
                return;
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "no answer to the bomb");
    let mut client = connect(server.addr).await;
    let (status, _) = get(&mut client, server.addr, "/healthz").await;
    assert_eq!(status, 200);
    drop((tcp, client));
    // `client`'s connection task is not polled while `stop` blocks: the server does not
    // wait the grace period for its answer to the GOAWAY.
    let stopping = std::time::Instant::now();
    server.stop();
    assert!(stopping.elapsed() < std::time::Duration::from_secs(4));
}
