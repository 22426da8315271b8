//! The chat page in a real browser: headless Chromium (Debian's `/usr/bin/chromium`, driven
//! by `playwright-core`) against the real `wsduplex serve --api-token TOKEN`, which serves the
//! page (`web/`) and the hub (`docs/hub.md`).
//!
//! The browser side is `tests/browser/chat.mjs`, installed by `tests/browser/setup.sh`: pages
//! chatting over WebSocket and over long polling, a refused upgrade falling back to long
//! polling, connections cut by the server and resumed without loss or duplicates, HTML shown as
//! text. It prints one line per check, saves screenshots under `target/browser/chat-*.png`, and
//! exits non-zero on any failure. Without Chromium or `node_modules` this test prints a note
//! and passes, unless `WSDUPLEX_REQUIRE_INTEROP=1` (CI) makes that a failure.

mod common;

use common::Server;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

const CHROMIUM: &str = "/usr/bin/chromium";
/// Above the script's own 60 s hard timeout, so that its message is the one seen.
const NODE_TIMEOUT: Duration = Duration::from_secs(75);
/// The server's `--api-token`, which the script needs to cut members and push messages.
const TOKEN: &str = "chat-browser-test-token";

#[test]
fn chromium_chat_page() {
    let Some(script) = browser_script() else {
        return;
    };
    let server = Server::start_with(&["--listen", "127.0.0.1:0", "--api-token", TOKEN]);
    let base = format!("http://{}/", server.addr);
    let mut cmd = Command::new("node");
    cmd.arg(&script).arg(&base).arg(TOKEN);
    let (status, stdout, stderr) = run_bounded(cmd);
    assert!(
        status.is_some_and(|s| s.success()),
        "headless Chromium on the chat page of `wsduplex serve` failed ({})\n\
         --- chat.mjs stdout ---\n{stdout}\n--- chat.mjs stderr ---\n{stderr}",
        status.map_or("killed after the timeout".to_string(), |s| s.to_string()),
    );
    // Its checks, one per line: shown with --nocapture.
    eprintln!("--- headless Chromium on the chat page ---\n{stdout}");
    server.stop();
}

/// `tests/browser/chat.mjs`, or `None` (after a loud note) if Chromium, node or
/// `playwright-core` is missing.
fn browser_script() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/browser");
    let playwright = dir.join("node_modules/playwright-core/package.json");
    let node = Command::new("node").arg("--version").output();
    let mut missing = Vec::new();
    if !PathBuf::from(CHROMIUM).exists() {
        missing.push(CHROMIUM);
    }
    if !node.is_ok_and(|o| o.status.success()) {
        missing.push("node");
    }
    if !playwright.exists() {
        missing.push("tests/browser/node_modules (playwright-core)");
    }
    if missing.is_empty() {
        return Some(dir.join("chat.mjs"));
    }
    let missing = missing.join(", ");
    if std::env::var_os("WSDUPLEX_REQUIRE_INTEROP").is_some_and(|v| v == "1") {
        panic!("browser chat test: missing {missing}: run tests/browser/setup.sh");
    }
    // Straight to stderr, past the test harness's capture: a skip must be seen.
    let _ = writeln!(
        std::io::stderr(),
        "\n*** browser chat test: missing {missing}, SKIPPING the headless Chromium test of \
         the chat page; run tests/browser/setup.sh (WSDUPLEX_REQUIRE_INTEROP=1 makes this \
         fail) ***\n"
    );
    None
}

/// Runs `cmd` to completion, at most [`NODE_TIMEOUT`] (then it is killed and the status is
/// `None`): its status, stdout and stderr.
fn run_bounded(mut cmd: Command) -> (Option<ExitStatus>, String, String) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn node");
    let drain = |mut r: Box<dyn Read + Send>| -> JoinHandle<String> {
        thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let stdout = drain(Box::new(child.stdout.take().expect("piped stdout")));
    let stderr = drain(Box::new(child.stderr.take().expect("piped stderr")));
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    let status = match rx.recv_timeout(NODE_TIMEOUT) {
        Ok(status) => Some(status.expect("wait for node")),
        Err(_) => {
            // Its browser is its child: with node gone, Chromium's pipe to it closes and it
            // exits too.
            common::send_signal(pid, "KILL");
            let _ = rx.recv_timeout(common::TIMEOUT);
            None
        }
    };
    let join = |h: JoinHandle<String>| h.join().unwrap_or_default();
    (status, join(stdout), join(stderr))
}
