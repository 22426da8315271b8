//! The chat page's Server-Sent Events transport in a real browser: headless Chromium
//! (Debian's `/usr/bin/chromium`, driven by `playwright-core`) against the real `wsduplex
//! serve --api-token TOKEN`. The browser side is `tests/browser/sse.mjs`: a page forced onto
//! SSE chatting with a WebSocket page, a refused upgrade falling back to SSE before long
//! polling, and a stream cut by the server resumed by the browser's own reconnect with
//! `Last-Event-ID`. Without Chromium or `node_modules` this test prints a note and passes,
//! unless `WSDUPLEX_REQUIRE_INTEROP=1` (CI) makes that a failure.

mod common;

mod browser_harness;

use browser_harness::run_bounded;
use common::Server;
use std::process::Command;
/// The server's `--api-token`, which the script needs to cut members and push messages.
const TOKEN: &str = "sse-browser-test-token";

#[test]
fn chromium_sse_transport() {
    let Some(script) = browser_harness::script("sse.mjs", "browser SSE test") else {
        return;
    };
    let server = Server::start_with(&["--listen", "127.0.0.1:0", "--api-token", TOKEN]);
    let base = format!("http://{}/", server.addr);
    let mut cmd = Command::new("node");
    cmd.arg(&script).arg(&base).arg(TOKEN);
    let (status, stdout, stderr) = run_bounded(cmd);
    assert!(
        status.is_some_and(|s| s.success()),
        "headless Chromium on the SSE transport of `wsduplex serve` failed ({})\n\
         --- sse.mjs stdout ---\n{stdout}\n--- sse.mjs stderr ---\n{stderr}",
        status.map_or("killed after the timeout".to_string(), |s| s.to_string()),
    );
    // Its checks, one per line: shown with --nocapture.
    eprintln!("--- headless Chromium on the SSE transport ---\n{stdout}");
    server.stop();
}
