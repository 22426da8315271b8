//! Interop with a browser: headless Chromium (Debian's `/usr/bin/chromium`, driven by
//! `playwright-core`) against the real `wsduplex serve`, once with `--deflate` (the browser
//! offers permessage-deflate by default, and it must be accepted) and once without (no
//! extension, the same echoes).
//!
//! The browser side is `tests/browser/deflate.mjs`, installed by `tests/browser/setup.sh`; it
//! checks every echo itself, prints one line per check and the handshake's
//! `Sec-WebSocket-Extensions` headers, saves a screenshot under `target/browser/`, and exits
//! non-zero on any failure. Without Chromium or `node_modules` these tests print a note and
//! pass, unless `WSDUPLEX_REQUIRE_INTEROP=1` (CI) makes that a failure.

mod common;

mod browser_harness;

use browser_harness::run_bounded;
use common::Server;
use std::process::Command;

#[test]
fn chromium_with_permessage_deflate() {
    run_browser(true);
}

#[test]
fn chromium_without_deflate() {
    run_browser(false);
}

fn run_browser(deflate: bool) {
    let Some(script) = browser_harness::script("deflate.mjs", "browser interop") else {
        return;
    };
    let mut args = vec!["--listen", "127.0.0.1:0"];
    if deflate {
        args.insert(0, "--deflate");
    }
    let server = Server::start_with(&args);
    let page = format!("http://{}/echo.html", server.addr);
    let mut cmd = Command::new("node");
    cmd.arg(&script).arg(&page);
    if !deflate {
        cmd.arg("--no-deflate");
    }
    let (status, stdout, stderr) = run_bounded(cmd);
    let what = if deflate {
        "serve --deflate"
    } else {
        "serve (no --deflate)"
    };
    assert!(
        status.is_some_and(|s| s.success()),
        "headless Chromium against `wsduplex {what}` failed ({})\n--- deflate.mjs stdout ---\n\
         {stdout}\n--- deflate.mjs stderr ---\n{stderr}",
        status.map_or("killed after the timeout".to_string(), |s| s.to_string()),
    );
    // Its checks, one per line: shown with --nocapture.
    eprintln!("--- headless Chromium against `wsduplex {what}` ---\n{stdout}");
    server.stop();
}
