//! The chat page in a real browser: headless Chromium (Debian's `/usr/bin/chromium`, driven
//! by `playwright-core`) against the real `wsduplex serve --api-token TOKEN`, which serves the
//! page (`crates/wsduplex-hub/web/`) and the hub (`docs/hub.md`).
//!
//! The browser side is `tests/browser/chat.mjs`, installed by `tests/browser/setup.sh`: pages
//! chatting over WebSocket and over long polling, a refused upgrade falling back to long
//! polling, connections cut by the server and resumed without loss or duplicates, HTML shown as
//! text. It prints one line per check, saves screenshots under `target/browser/chat-*.png`, and
//! exits non-zero on any failure. Without Chromium or `node_modules` this test prints a note
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
    let Some(script) = browser_harness::script("chat.mjs", "browser chat test") else {
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
