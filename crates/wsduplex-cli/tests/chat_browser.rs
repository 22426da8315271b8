//! The chat page in a real browser: headless Chromium (Debian's `/usr/bin/chromium`, driven
//! by `playwright-core`) against the real `wsduplex serve --api-token TOKEN`, which serves the
//! page (`crates/wsduplex-hub/web/`) and the hub (`docs/hub.md`).
//!
//! The browser side is `tests/browser/chat.mjs`, installed by `tests/browser/setup.sh`: pages
//! chatting over WebSocket and over long polling, a refused upgrade falling back to long
//! polling, connections cut by the server and resumed without loss or duplicates, HTML shown as
//! text. It prints one line per check, saves screenshots under `target/browser/chat-*.png`, and
//! exits non-zero on any failure. `tests/browser/sse.mjs` does the same for the page's
//! Server-Sent Events transport: a page forced onto SSE chatting with a WebSocket page, a
//! refused upgrade falling back to SSE before long polling, and a stream cut by the server
//! resumed by the browser's own reconnect with `Last-Event-ID`. Without Chromium or `node_modules` this test prints a note
//! and passes, unless `WSDUPLEX_REQUIRE_INTEROP=1` (CI) makes that a failure.

mod common;

mod browser_harness;

use browser_harness::run_bounded;
use common::Server;
use std::process::Command;
/// The server's `--api-token`, which the script needs to cut members and push messages.
const TOKEN: &str = "chat-browser-test-token";

#[test]
fn chromium_chat_page() {
    chromium("chat.mjs", "the chat page");
}

#[test]
fn chromium_sse_transport() {
    chromium("sse.mjs", "the SSE transport");
}

/// Runs `tests/browser/SCRIPT` against a fresh `wsduplex serve --api-token TOKEN`.
fn chromium(script: &str, what: &str) {
    let Some(path) = browser_harness::script(script, "browser chat test") else {
        return;
    };
    let server = Server::start_with(&["--listen", "127.0.0.1:0", "--api-token", TOKEN]);
    let base = format!("http://{}/", server.addr);
    let mut cmd = Command::new("node");
    cmd.arg(&path).arg(&base).arg(TOKEN);
    let (status, stdout, stderr) = run_bounded(cmd);
    assert!(
        status.is_some_and(|s| s.success()),
        "headless Chromium on {what} of `wsduplex serve` failed ({})\n\
         --- {script} stdout ---\n{stdout}\n--- {script} stderr ---\n{stderr}",
        status.map_or("killed after the timeout".to_string(), |s| s.to_string()),
    );
    // Its checks, one per line: shown with --nocapture.
    eprintln!("--- headless Chromium on {what} ---\n{stdout}");
    server.stop();
}
