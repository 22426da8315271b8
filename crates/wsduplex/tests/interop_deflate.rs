//! Interop with compression on (RFC 7692): Python `websockets` (compression is its default)
//! and Node `ws` (`perMessageDeflate: true`), as clients of our server and as servers for
//! our client, with the peers installed by `tests/interop/setup.sh`.
//!
//! The peers' scripts are small and live here, so the shared interop scripts stay as they
//! are. Without the peers these tests print a note and pass, unless
//! `WSDUPLEX_REQUIRE_INTEROP=1` makes that a failure (as in `interop.rs`).

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
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

/// Node client: perMessageDeflate on (threshold 0, so everything is compressed).
const NODE_CLIENT: &str = r#"
const WebSocket = require('ws');
const ws = new WebSocket(process.argv[1], { perMessageDeflate: { threshold: 0 }, maxPayload: 64 << 20 });
const msgs = ['hello', '', Buffer.from([0, 1, 255]), 'text, '.repeat(20000),
  Buffer.alloc(1 << 20, 7), 'κόσμε '.repeat(5000)];
let i = 0;
const all = msgs.concat(msgs);
function next() {
  if (i === all.length) { console.log('ok', ws.extensions); ws.close(1000); return; }
  ws.send(all[i]);
}
ws.on('open', () => {
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
  i += 1; next();
});
ws.on('close', (code) => process.exit(code === 1000 ? 0 : 1));
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

/// Our echo server with permessage-deflate accepted; returns its ws:// URL.
async fn our_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    let mut config = ServerConfig::default();
    config.deflate = Some(DeflateConfig::default());
    config.socket.protocol = config.socket.protocol.max_message_size(64 << 20);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let config = config.clone();
            tokio::spawn(async move {
                let mut ws = read_request(tcp, &config).await?.accept(&config).await?;
                while let Some(Ok(m)) = ws.recv().await {
                    if m.is_data() {
                        ws.send(m).await?;
                    }
                }
                Ok::<_, wsduplex::Error>(())
            });
        }
    });
    url
}

async fn peer_client_against_our_server(p: Peer, extra: &[&str]) {
    let script = match p {
        Peer::Python => PY_CLIENT,
        Peer::Node => NODE_CLIENT,
    };
    let Some(mut cmd) = peer(p, script) else {
        return;
    };
    let url = our_server().await;
    cmd.arg(&url).args(extra);
    let out = tokio::time::timeout(TIMEOUT, tokio::task::spawn_blocking(move || cmd.output()))
        .await
        .expect("peer client timed out")
        .unwrap()
        .expect("spawn peer client");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        out.status.success(),
        "peer client failed ({})\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
        out.status
    );
    eprintln!("{stdout}");
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
    peer_client_against_our_server(Peer::Node, &[]).await;
}

#[tokio::test]
async fn python_server_with_deflate_for_our_client() {
    our_client_against_peer_server(Peer::Python).await;
}

#[tokio::test]
async fn node_server_with_deflate_for_our_client() {
    our_client_against_peer_server(Peer::Node).await;
}
