//! The raw-TCP ceiling: the cheapest WebSocket echo that `wsduplex bench` accepts.
//!
//! A plain TCP echo (read, `write_all` the same bytes back) would return the client's
//! *masked* frames, which the load generator rightly rejects: a server's frames are never
//! masked (RFC 6455 §5.1), and it checks every echo's header and payload. So this server does
//! the least a correct echo must do and nothing else:
//!
//! - the opening handshake: read up to the blank line, find `Sec-WebSocket-Key`, answer
//!   `101` with its `Sec-WebSocket-Accept` (no other header is checked);
//! - then, per read, every complete frame in the buffer is unmasked in place and moved down
//!   over its own (longer, masked) header with a server header in front, and everything the
//!   read produced leaves in one `write_all`: one `read` and one `write` per batch, no
//!   allocation, no copy beyond the `memmove`;
//! - fragments are echoed as they come, a ping gets its pong, a close is echoed and the TCP
//!   connection closed (RFC 6455 §7.1.1: the server closes first).
//!
//! What it skips, and a real server may not: UTF-8 validation of text, message size limits
//! beyond a sanity cap, checking the request line and the other upgrade headers, fragment
//! sequencing, close code validation. Its figures are a ceiling, not a competitor.
//!
//! Usage: `raw-tcp-echo 127.0.0.1:0`; prints `listening on http://HOST:PORT`.

use base64::Engine as _;
use sha1::{Digest as _, Sha1};
use std::io::{self, Write as _};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

/// Initial buffer: the upgrade request, small frames and the close fit in it. A handshake-only
/// connection (scenario E) must not pay for a bulk buffer it never uses: allocating and
/// zeroing it, and faulting its pages in again after glibc trimmed them off the heap's top,
/// would make raw TCP's E figure a measure of this buffer instead of a ceiling.
const BUF: usize = 4 * 1024;
/// A buffer that grows grows to at least this, so bulk transfers (scenario B) read as they
/// did with the 64 KiB buffer.
const GROWN: usize = 64 * 1024;
/// Frames above this are refused (the connection is dropped).
const MAX_FRAME: usize = 16 << 20;
/// RFC 6455 §1.3.
const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

#[tokio::main(flavor = "current_thread")]
async fn main() -> io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8080".to_string());
    let listener = TcpListener::bind(&addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    io::stdout().flush()?;
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(async move {
            let _ = serve(stream).await;
        });
    }
}

async fn serve(mut stream: TcpStream) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut buf = vec![0u8; BUF];
    let mut filled = 0;
    // The opening handshake.
    loop {
        let n = stream.read(&mut buf[filled..]).await?;
        if n == 0 {
            return Ok(());
        }
        filled += n;
        if let Some(end) = find(&buf[..filled], b"\r\n\r\n") {
            let Some(key) = websocket_key(&buf[..end]) else {
                stream
                    .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
                    .await?;
                return Ok(());
            };
            let accept = base64::engine::general_purpose::STANDARD
                .encode(Sha1::new().chain_update(key).chain_update(GUID).finalize());
            let response = format!(
                "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n\
                 connection: Upgrade\r\nsec-websocket-accept: {accept}\r\n\r\n"
            );
            stream.write_all(response.as_bytes()).await?;
            buf.copy_within(end + 4..filled, 0);
            filled -= end + 4;
            break;
        }
        if filled == buf.len() {
            return Ok(()); // a request head of 4 KiB is not this benchmark's upgrade
        }
    }
    // Frames. Bytes that came with the request are handled before the first read.
    loop {
        let step = echo_in_place(&mut buf[..filled]);
        let Some(step) = step else {
            return Ok(()); // unmasked or oversized frame: drop the connection
        };
        if step.out > 0 {
            stream.write_all(&buf[..step.out]).await?;
        }
        if step.closed {
            stream.shutdown().await?;
            return Ok(());
        }
        buf.copy_within(step.consumed..filled, 0);
        filled -= step.consumed;
        if step.need > buf.len() {
            buf.resize(step.need.next_power_of_two().max(GROWN), 0);
        }
        let n = stream.read(&mut buf[filled..]).await?;
        if n == 0 {
            return Ok(());
        }
        filled += n;
    }
}

struct Step {
    /// The echoes are `buf[..out]`.
    out: usize,
    /// Input bytes used; the partial frame after them moves to the front.
    consumed: usize,
    /// Bytes the partial frame needs in all (0 if unknown yet).
    need: usize,
    /// A close frame was echoed: stop.
    closed: bool,
}

/// Rewrites every complete client frame in `buf` into its server echo, in place. Server
/// headers are 4 bytes shorter than masked client headers, so output never overtakes input.
/// `None` when the client broke the protocol.
fn echo_in_place(buf: &mut [u8]) -> Option<Step> {
    let (mut at, mut out) = (0, 0);
    loop {
        let Some((head, len)) = frame_header(&buf[at..])? else {
            // A partial header always fits: the buffer is far larger than 14 bytes.
            return Some(Step {
                out,
                consumed: at,
                need: 0,
                closed: false,
            });
        };
        let total = head + len;
        if buf.len() - at < total {
            return Some(Step {
                out,
                consumed: at,
                need: total,
                closed: false,
            });
        }
        let (b0, key) = (buf[at], [0, 1, 2, 3].map(|i| buf[at + head - 4 + i]));
        let opcode = b0 & 0x0F;
        let payload = at + head..at + total;
        at += total;
        let reply = match opcode {
            0x0..=0x2 => b0,  // continuation, text, binary: same fin and opcode
            0x8 => 0x88,      // close: echo it, then close
            0x9 => 0x8A,      // ping: pong with the same payload
            0xA => continue,  // pong: nothing to do
            _ => return None, // reserved opcodes
        };
        unmask(&mut buf[payload.clone()], key);
        out += write_header(&mut buf[out..], reply, len);
        buf.copy_within(payload, out);
        out += len;
        if opcode == 0x8 {
            return Some(Step {
                out,
                consumed: at,
                need: 0,
                closed: true,
            });
        }
    }
}

/// A masked frame's header length, from its second byte.
fn header_len(b1: u8) -> usize {
    match b1 & 0x7F {
        126 => 2 + 2 + 4,
        127 => 2 + 8 + 4,
        _ => 2 + 4,
    }
}

/// `Some(None)`: incomplete header. `Some(Some((header length, payload length)))`.
/// `None`: unmasked (RFC 6455 §5.1: the server MUST close) or oversized.
fn frame_header(data: &[u8]) -> Option<Option<(usize, usize)>> {
    if data.len() < 2 {
        return Some(None);
    }
    if data[1] & 0x80 == 0 {
        return None;
    }
    let head = header_len(data[1]);
    if data.len() < head {
        return Some(None);
    }
    let len = match data[1] & 0x7F {
        126 => u16::from_be_bytes([data[2], data[3]]) as usize,
        127 => usize::try_from(u64::from_be_bytes(data[2..10].try_into().ok()?)).ok()?,
        n => n as usize,
    };
    (len <= MAX_FRAME).then_some(Some((head, len)))
}

/// Writes an unmasked server header at the start of `out`; returns its length.
fn write_header(out: &mut [u8], b0: u8, len: usize) -> usize {
    out[0] = b0;
    if len < 126 {
        out[1] = len as u8;
        2
    } else if len <= 0xFFFF {
        out[1] = 126;
        out[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        4
    } else {
        out[1] = 127;
        out[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        10
    }
}

/// XORs the key over `data`, eight bytes at a time (the compiler vectorises the loop).
fn unmask(data: &mut [u8], key: [u8; 4]) {
    let wide = u64::from_ne_bytes([
        key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3],
    ]);
    let mut chunks = data.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let v = u64::from_ne_bytes((&*chunk).try_into().expect("8 bytes")) ^ wide;
        chunk.copy_from_slice(&v.to_ne_bytes());
    }
    // The remainder starts at a multiple of 8, so at key offset 0.
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= key[i % 4];
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The value of the `Sec-WebSocket-Key` header in a request head.
fn websocket_key(head: &[u8]) -> Option<&[u8]> {
    const NAME: &[u8] = b"sec-websocket-key:";
    head.split(|&b| b == b'\n').find_map(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        (line.len() > NAME.len() && line[..NAME.len()].eq_ignore_ascii_case(NAME))
            .then(|| line[NAME.len()..].trim_ascii())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masked(b0: u8, payload: &[u8], key: [u8; 4]) -> Vec<u8> {
        let mut f = vec![b0];
        match payload.len() {
            n if n < 126 => f.push(0x80 | n as u8),
            n if n <= 0xFFFF => {
                f.push(0x80 | 126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(0x80 | 127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        f.extend_from_slice(&key);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        f
    }

    #[test]
    fn rfc_accept_example() {
        // RFC 6455 §1.3.
        let head = b"GET /chat HTTP/1.1\r\nHost: x\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==";
        let key = websocket_key(head).unwrap();
        let accept = base64::engine::general_purpose::STANDARD
            .encode(Sha1::new().chain_update(key).chain_update(GUID).finalize());
        assert_eq!(accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn frames_echo_unmasked_across_sizes() {
        let key = [0x37, 0xfa, 0x21, 0x3d];
        for len in [0, 1, 7, 8, 9, 125, 126, 127, 65535, 65536, 70_000] {
            let payload: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            let mut wire = masked(0x82, &payload, key);
            let first = wire.len();
            wire.extend_from_slice(&masked(0x81, b"hi", key));
            let total = wire.len();
            // Cut short: nothing is echoed, and the whole first frame is asked for.
            let step = echo_in_place(&mut wire.clone()[..first - 1]).unwrap();
            assert_eq!((step.out, step.consumed), (0, 0));
            assert!(step.need == first || first - 1 < 14, "{len}");
            let step = echo_in_place(&mut wire).unwrap();
            assert_eq!(step.consumed, total);
            assert!(!step.closed);
            let mut head = [0u8; 10];
            let hn = write_header(&mut head, 0x82, len);
            let mut expected = head[..hn].to_vec();
            expected.extend_from_slice(&payload);
            expected.extend_from_slice(&[0x81, 2, b'h', b'i']);
            assert_eq!(&wire[..step.out], &expected[..], "{len}");
        }
    }

    #[test]
    fn control_frames_and_bad_frames() {
        let key = [1, 2, 3, 4];
        let mut wire = masked(0x89, b"p", key);
        wire.extend_from_slice(&masked(0x8A, b"ignored", key));
        wire.extend_from_slice(&masked(0x88, &1000u16.to_be_bytes(), key));
        wire.extend_from_slice(&masked(0x81, b"after close", key));
        let step = echo_in_place(&mut wire).unwrap();
        assert!(step.closed);
        assert_eq!(&wire[..step.out], &[0x8A, 1, b'p', 0x88, 2, 0x03, 0xE8]);
        assert!(echo_in_place(&mut [0x81, 0x02, b'h', b'i']).is_none());
    }
}
