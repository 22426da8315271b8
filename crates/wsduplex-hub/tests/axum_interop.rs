//! Real peers through the hub inside an axum app (feature `axum`): Python `websockets` and
//! Node `ws` join a room of the `axum_chat` example (nested under `/hub`) beside one of our
//! own members, and all three see each other's messages. The peers come from
//! `tests/interop/setup.sh`; without them this test prints a note and passes, unless
//! `WSDUPLEX_REQUIRE_INTEROP=1` (CI) makes that a failure.

#[allow(dead_code)]
#[path = "../examples/axum_chat.rs"]
mod example;

#[allow(dead_code)]
mod common;

use common::{join, next_of, say};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;
use tokio::net::TcpListener;
use wsduplex::ServerConfig;
use wsduplex_hub::{Hub, HubConfig};

const LIMIT: Duration = Duration::from_secs(20);

/// Joins as `me`; on the conductor's `go`, says `from me`; done once both `from` messages
/// (its own and `other`'s) came back.
const PYTHON: &str = r#"
import asyncio, json, sys
from websockets.asyncio.client import connect
async def main(url, me, other):
    async with connect(url) as ws:
        seen = set()
        async for raw in ws:
            e = json.loads(raw)
            if e.get("type") != "message":
                continue
            if e["text"] == "go":
                await ws.send(json.dumps({"type": "message", "text": "from " + me}))
            elif e["text"].startswith("from "):
                seen.add(e["text"])
            if seen == {"from " + me, "from " + other}:
                print("ok")
                return
asyncio.run(main(*sys.argv[-3:]))
"#;

const NODE: &str = r#"
const WebSocket = require('ws');
const [url, me, other] = process.argv.slice(-3);
const ws = new WebSocket(url);
const seen = new Set();
ws.on('message', (data) => {
  const e = JSON.parse(data.toString());
  if (e.type !== 'message') return;
  if (e.text === 'go') ws.send(JSON.stringify({ type: 'message', text: 'from ' + me }));
  else if (e.text.startsWith('from ')) seen.add(e.text);
  if (seen.has('from ' + me) && seen.has('from ' + other)) {
    console.log('ok');
    ws.close();
  }
});
ws.on('error', (e) => { console.error(e); process.exit(1); });
"#;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Both peers' commands, or `None` (after a loud note) if either is not installed.
fn peers() -> Option<(Command, Command)> {
    let python = root().join("target/interop/venv/bin/python");
    let modules = root().join("tests/interop/node/node_modules");
    let installed = Command::new(&python)
        .args(["-c", "import websockets"])
        .output()
        .is_ok_and(|o| o.status.success())
        && modules.join("ws/package.json").exists();
    if !installed {
        if std::env::var_os("WSDUPLEX_REQUIRE_INTEROP").is_some_and(|v| v == "1") {
            panic!("python websockets or node ws is not installed: run tests/interop/setup.sh");
        }
        eprintln!(
            "\n*** interop: python websockets or node ws is not installed, SKIPPING; run \
             tests/interop/setup.sh (WSDUPLEX_REQUIRE_INTEROP=1 makes this fail) ***\n"
        );
        return None;
    }
    let mut py = Command::new(python);
    py.args(["-c", PYTHON]);
    let mut node = Command::new("node");
    node.env("NODE_PATH", modules).args(["-e", NODE]);
    Some((py, node))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_and_node_chat_through_the_axum_app() {
    let Some((mut py, mut node)) = peers() else {
        return;
    };
    let hub = Hub::new(HubConfig::default());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let app = example::app(&hub, ServerConfig::default());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let (mut conductor, _) = join(addr, "/hub/chat/interop?name=conductor").await;
    let url = |name: &str| format!("ws://{addr}/hub/chat/interop?name={name}");
    let spawn = |cmd: &mut Command, me: &str, other: &str| {
        cmd.args([url(me), me.to_string(), other.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the peer")
    };
    let py = spawn(&mut py, "py", "node");
    let node = spawn(&mut node, "node", "py");
    // Both in the room, then go.
    for _ in 0..2 {
        next_of(&mut conductor, "joined").await;
    }
    say(&mut conductor, "go").await;
    let mut from = Vec::new();
    while from.len() < 2 {
        let e = next_of(&mut conductor, "message").await;
        if e["text"] != "go" {
            from.push(e["text"].as_str().unwrap().to_string());
        }
    }
    from.sort();
    assert_eq!(from, ["from node", "from py"]);
    for (name, child) in [("python websockets", py), ("node ws", node)] {
        let waited = tokio::task::spawn_blocking(move || child.wait_with_output());
        let out = tokio::time::timeout(LIMIT, waited)
            .await
            .unwrap_or_else(|_| panic!("{name} did not finish"))
            .unwrap()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.trim() == "ok",
            "{name}: {}\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
