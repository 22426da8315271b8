//! Interop with compression on (RFC 7692): Python `websockets` (compression is its default)
//! and Node `ws` (`perMessageDeflate: true`), as clients of our server and as servers for
//! our client, with the peers installed by `tests/interop/setup.sh`.
//!
//! The peers' scripts are small and live here, so the shared interop scripts stay as they
//! are. Without the peers these tests print a note and pass, unless
//! `WSDUPLEX_REQUIRE_INTEROP=1` makes that a failure (as in `interop.rs`).

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpListener;
use wsduplex::server::{read_request, ServerConfig};
use wsduplex::{connect_with, ClientConfig, CloseCode, DeflateConfig, Message};

const TIMEOUT: Duration = Duration::from_secs(60);

/// Python client: checks that permessage-deflate was agreed, then echoes every kind of
/// message twice (context takeover). Optional second argument: server_max_window_bits to ask
/// for (8 checks that our 9-bit compressor stays within a 256-byte window).
const PY_CLIENT: &str = r#"
import asyncio, sys
from websockets.asyncio.client import connect
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory

async def main(url, bits):
    kw = {}
    if bits:
        kw["extensions"] = [ClientPerMessageDeflateFactory(
            server_max_window_bits=bits, client_max_window_bits=True)]
    async with connect(url, max_size=None, **kw) as ws:
        names = [e.name for e in ws.protocol.extensions]
        assert names == ["permessage-deflate"], names
        msgs = ["hello", "", b"\x00\x01\xff", "text, " * 20000,
                bytes(range(256)) * 4000, "\u03ba\u1f79\u03c3\u03bc\u03b5 " * 5000,
                "".join(chr(0x20 + (i * 7919) % 90) for i in range(100000))]
        for _ in range(2):
            for m in msgs:
                await ws.send(m)
                got = await ws.recv()
                assert got == m, (type(m), len(m), len(got))
        e = ws.protocol.extensions[0]
        print("ok", names, "server window", e.remote_max_window_bits)

asyncio.run(main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else None))
"#;

/// Python server: an echo server with its default compression; prints its port.
const PY_SERVER: &str = r#"
import asyncio
from websockets.asyncio.server import serve

async def echo(ws):
    async for m in ws:
        await ws.send(m)

async def main():
    async with serve(echo, "127.0.0.1", 0, max_size=None) as server:
        print(server.sockets[0].getsockname()[1], flush=True)
        await asyncio.Future()

asyncio.run(main())
"#;

/// Node client: perMessageDeflate on (threshold 0, so everything is compressed). Prints
/// what it agreed and every echo it got (`echo INDEX KIND BYTES`), then how the connection
/// closed: the test compares that with what it sent.
const NODE_CLIENT: &str = r#"
const WebSocket = require('ws');
const ws = new WebSocket(process.argv[1], { perMessageDeflate: { threshold: 0 }, maxPayload: 64 << 20 });
const msgs = ['hello', '', Buffer.from([0, 1, 255]), 'text, '.repeat(20000),
  Buffer.alloc(1 << 20, 7), 'κόσμε '.repeat(5000)];
let i = 0;
const all = msgs.concat(msgs);
function next() {
  if (i === all.length) { ws.close(1000); return; }
  ws.send(all[i]);
}
ws.on('open', () => {
  console.log('extensions ' + ws.extensions);
  if (!ws.extensions.startsWith('permessage-deflate')) {
    console.error('not negotiated: ' + ws.extensions); process.exit(1);
  }
  next();
});
ws.on('message', (data, isBinary) => {
  const want = all[i];
  const ok = typeof want === 'string' ? !isBinary && data.toString() === want
                                      : isBinary && Buffer.compare(data, want) === 0;
  if (!ok) { console.error('mismatch at ' + i); process.exit(1); }
  console.log('echo ' + i + ' ' + (isBinary ? 'binary' : 'text') + ' ' + data.length);
  i += 1; next();
});
ws.on('close', (code) => {
  console.log('closed ' + code);
  process.exit(code === 1000 && i === all.length ? 0 : 1);
});
ws.on('error', (e) => { console.error(e.message); process.exit(1); });
"#;

/// Node server: perMessageDeflate on; prints its port.
const NODE_SERVER: &str = r#"
const { WebSocketServer } = require('ws');
const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, maxPayload: 64 << 20,
  perMessageDeflate: { threshold: 0 } });
wss.on('listening', () => console.log(wss.address().port));
wss.on('connection', (ws) => ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary })));
"#;

#[derive(Clone, Copy)]
enum Peer {
    Python,
    Node,
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The command running `script` with the peer, or `None` (after a loud note) if the peer is
/// not installed.
fn peer(peer: Peer, script: &str) -> Option<Command> {
    let (name, installed, cmd) = match peer {
        Peer::Python => {
            let python = root().join("target/interop/venv/bin/python");
            let ok = Command::new(&python)
                .args(["-c", "import websockets"])
                .output()
                .is_ok_and(|o| o.status.success());
            let mut cmd = Command::new(python);
            cmd.args(["-c", script]);
            ("python websockets", ok, cmd)
        }
        Peer::Node => {
            let modules = root().join("tests/interop/node/node_modules");
            let ok = modules.join("ws/package.json").exists()
                && Command::new("node")
                    .arg("--version")
                    .output()
                    .is_ok_and(|o| o.status.success());
            let mut cmd = Command::new("node");
            cmd.env("NODE_PATH", modules).args(["-e", script]);
            ("node ws", ok, cmd)
        }
    };
    if installed {
        return Some(cmd);
    }
    if std::env::var_os("WSDUPLEX_REQUIRE_INTEROP").is_some_and(|v| v == "1") {
        panic!("{name} is not installed: run tests/interop/setup.sh");
    }
    let _ = writeln!(
        std::io::stderr(),
        "\n*** interop: {name} is not installed, SKIPPING a deflate test; run \
         tests/interop/setup.sh (WSDUPLEX_REQUIRE_INTEROP=1 makes this fail) ***\n"
    );
    None
}

/// Kills the peer when the test ends, however it ends.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What our server saw of one connection: every byte each way (the handshake included)
/// and the messages it received.
struct Seen {
    from_peer: Vec<u8>,
    to_peer: Vec<u8>,
    messages: Vec<Message>,
}

/// A transport that keeps a copy of everything read and written.
struct Tap {
    io: tokio::net::TcpStream,
    read: Arc<Mutex<Vec<u8>>>,
    written: Arc<Mutex<Vec<u8>>>,
}

impl tokio::io::AsyncRead for Tap {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.io).poll_read(cx, buf);
        self.read
            .lock()
            .unwrap()
            .extend_from_slice(&buf.filled()[before..]);
        r
    }
}

impl tokio::io::AsyncWrite for Tap {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = r {
            self.written.lock().unwrap().extend_from_slice(&buf[..n]);
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Our echo server with permessage-deflate accepted; returns its ws:// URL and, for each
/// connection once it has ended, what the server saw of it.
async fn our_server() -> (String, tokio::sync::mpsc::UnboundedReceiver<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    let mut config = ServerConfig::default();
    config.deflate = Some(DeflateConfig::default());
    config.socket.protocol = config.socket.protocol.max_message_size(64 << 20);
    let (seen_tx, seen_rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let config = config.clone();
            let seen_tx = seen_tx.clone();
            tokio::spawn(async move {
                let (read, written) = (Arc::default(), Arc::default());
                let io = Tap {
                    io: tcp,
                    read: Arc::clone(&read),
                    written: Arc::clone(&written),
                };
                let mut ws = read_request(io, &config).await?.accept(&config).await?;
                let mut messages = Vec::new();
                while let Some(Ok(m)) = ws.recv().await {
                    if m.is_data() {
                        messages.push(m.clone());
                        ws.send(m).await?;
                    }
                }
                drop(ws);
                let take = |v: Arc<Mutex<Vec<u8>>>| std::mem::take(&mut *v.lock().unwrap());
                let _ = seen_tx.send(Seen {
                    from_peer: take(read),
                    to_peer: take(written),
                    messages,
                });
                Ok::<_, wsduplex::Error>(())
            });
        }
    });
    (url, seen_rx)
}

/// The HTTP head at the start of `bytes`, and the frames after it as (first byte, payload
/// length): FIN, RSV1 and the opcode are in the first byte.
fn head_and_frames(bytes: &[u8]) -> (String, Vec<(u8, u64)>) {
    let end = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP head")
        + 4;
    let head = String::from_utf8_lossy(&bytes[..end]).into_owned();
    let mut frames = Vec::new();
    let mut rest = &bytes[end..];
    while rest.len() >= 2 {
        let (b0, b1) = (rest[0], rest[1]);
        let (len, mut at) = match b1 & 0x7f {
            126 => (u64::from(u16::from_be_bytes([rest[2], rest[3]])), 4),
            127 => (u64::from_be_bytes(rest[2..10].try_into().unwrap()), 10),
            n => (u64::from(n), 2),
        };
        if b1 & 0x80 != 0 {
            at += 4;
        }
        frames.push((b0, len));
        rest = &rest[at + len as usize..];
    }
    assert!(rest.is_empty(), "a frame cut short");
    (head, frames)
}

async fn peer_client_against_our_server(p: Peer, extra: &[&str]) {
    let script = match p {
        Peer::Python => PY_CLIENT,
        Peer::Node => NODE_CLIENT,
    };
    let Some(mut cmd) = peer(p, script) else {
        return;
    };
    let (url, _) = our_server().await;
    cmd.arg(&url).args(extra);
    let (stdout, _) = run_peer_client(cmd).await;
    eprintln!("{stdout}");
}

/// Runs the peer client `cmd` to its end (within [`TIMEOUT`]) and asserts that it exited
/// with success: its stdout, and a report of both its outputs for assertion messages.
async fn run_peer_client(mut cmd: Command) -> (String, String) {
    let out = tokio::time::timeout(TIMEOUT, tokio::task::spawn_blocking(move || cmd.output()))
        .await
        .expect("peer client timed out")
        .unwrap()
        .expect("spawn peer client");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    let report = format!("--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}");
    assert!(
        out.status.success(),
        "peer client failed ({})\n{report}",
        out.status
    );
    (stdout.into_owned(), report)
}

async fn our_client_against_peer_server(p: Peer) {
    let script = match p {
        Peer::Python => PY_SERVER,
        Peer::Node => NODE_SERVER,
    };
    let Some(mut cmd) = peer(p, script) else {
        return;
    };
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn peer server");
    let stdout = child.stdout.take().unwrap();
    let _guard = Killed(child);
    let port = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        line.trim().parse::<u16>().expect("a port")
    })
    .await
    .unwrap();
    let mut config = ClientConfig::default();
    config.socket.protocol = config.socket.protocol.max_message_size(64 << 20);
    let mut policy = DeflateConfig::default();
    policy.threshold = 0;
    config.deflate = Some(policy);
    let test = async {
        let (mut ws, hs) = connect_with(&format!("ws://127.0.0.1:{port}/"), &config)
            .await
            .expect("connect");
        assert!(hs.response.deflate.is_some(), "{}", hs.response_head);
        let big: Vec<u8> = (0..(1u32 << 20)).map(|i| (i % 251) as u8).collect();
        let msgs = [
            Message::text("hello"),
            Message::text(""),
            Message::binary(vec![0u8, 1, 255]),
            Message::text("text, ".repeat(20_000)),
            Message::binary(big),
            Message::text("κόσμε ".repeat(5000)),
        ];
        for _ in 0..2 {
            for m in &msgs {
                ws.send(m.clone()).await.unwrap();
                let got = ws.recv().await.expect("echo").expect("echo");
                assert_eq!(&got, m);
            }
        }
        ws.close(CloseCode::NORMAL, "").await.unwrap();
    };
    tokio::time::timeout(TIMEOUT, test)
        .await
        .expect("timed out");
}

#[tokio::test]
async fn python_client_with_deflate_against_our_server() {
    peer_client_against_our_server(Peer::Python, &[]).await;
}

#[tokio::test]
async fn python_client_asking_for_an_8_bit_server_window() {
    // Python's zlib inflates with a 256-byte window here: our 9-bit compressor's matches
    // must stay within it.
    peer_client_against_our_server(Peer::Python, &["8"]).await;
}

#[tokio::test]
async fn node_client_with_deflate_against_our_server() {
    let Some(mut cmd) = peer(Peer::Node, NODE_CLIENT) else {
        return;
    };
    let (url, mut seen) = our_server().await;
    cmd.arg(&url);
    let (stdout, report) = run_peer_client(cmd).await;
    // The messages the script sends, twice.
    let msgs = [
        Message::text("hello"),
        Message::text(""),
        Message::binary(vec![0u8, 1, 255]),
        Message::text("text, ".repeat(20_000)),
        Message::binary(vec![7u8; 1 << 20]),
        Message::text("κόσμε ".repeat(5000)),
    ];
    let sent: Vec<Message> = msgs.iter().chain(&msgs).cloned().collect();
    let bytes = |m: &Message| match m {
        Message::Text(t) => t.as_str().len(),
        Message::Binary(b) => b.len(),
        _ => unreachable!(),
    };

    // What Node got: the extension, each echo in order (checked against what it sent by the
    // script), then a normal close.
    let mut want = vec!["extensions permessage-deflate".to_string()];
    for (i, m) in sent.iter().enumerate() {
        let kind = if matches!(m, Message::Text(_)) {
            "text"
        } else {
            "binary"
        };
        want.push(format!("echo {i} {kind} {}", bytes(m)));
    }
    want.push("closed 1000".into());
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        lines[0].starts_with(&want[0]),
        "not negotiated as Node sees it\n{report}"
    );
    assert_eq!(lines[1..], want[1..], "{report}");

    // What our server got: the same messages, permessage-deflate agreed, and every one of
    // Node's messages compressed (RSV1 on its first frame: threshold 0).
    let seen = tokio::time::timeout(TIMEOUT, seen.recv())
        .await
        .expect("the connection ended")
        .expect("one connection");
    assert_eq!(seen.messages, sent);
    let (request, from_node) = head_and_frames(&seen.from_peer);
    let (response, to_node) = head_and_frames(&seen.to_peer);
    assert!(
        request.contains("Sec-WebSocket-Extensions: permessage-deflate"),
        "{request}"
    );
    assert!(response.starts_with("HTTP/1.1 101 "), "{response}");
    assert!(
        response.contains("Sec-WebSocket-Extensions: permessage-deflate"),
        "{response}"
    );
    // A message's first frame carries RSV1 (0x40); continuations (opcode 0) never do.
    let firsts = |frames: &[(u8, u64)]| -> Vec<u8> {
        frames
            .iter()
            .filter(|(b0, _)| matches!(b0 & 0x0f, 1 | 2))
            .map(|(b0, _)| *b0)
            .collect()
    };
    let (node_data, our_data) = (firsts(&from_node), firsts(&to_node));
    assert_eq!(node_data.len(), sent.len(), "{from_node:?}");
    assert!(
        node_data.iter().all(|b0| b0 & 0x40 != 0),
        "a message from Node went uncompressed: {from_node:?}"
    );
    // Ours: compressed from the threshold of our policy up, the short ones as they are.
    assert_eq!(our_data.len(), sent.len(), "{to_node:?}");
    let threshold = DeflateConfig::default().threshold;
    for (m, b0) in sent.iter().zip(&our_data) {
        assert_eq!(
            b0 & 0x40 != 0,
            bytes(m) >= threshold,
            "{} bytes: {to_node:?}",
            bytes(m)
        );
    }
}

#[tokio::test]
async fn python_server_with_deflate_for_our_client() {
    our_client_against_peer_server(Peer::Python).await;
}

#[tokio::test]
async fn node_server_with_deflate_for_our_client() {
    our_client_against_peer_server(Peer::Node).await;
}
