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

#[test]
fn chromium_with_permessage_deflate() {
    run_browser(true);
}

#[test]
fn chromium_without_deflate() {
    run_browser(false);
}

fn run_browser(deflate: bool) {
    let Some(script) = browser_script() else {
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

/// `tests/browser/deflate.mjs`, or `None` (after a loud note) if Chromium, node or
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
        return Some(dir.join("deflate.mjs"));
    }
    let missing = missing.join(", ");
    if std::env::var_os("WSDUPLEX_REQUIRE_INTEROP").is_some_and(|v| v == "1") {
        panic!("browser interop: missing {missing}: run tests/browser/setup.sh");
    }
    // Straight to stderr, past the test harness's capture: a skip must be seen.
    let _ = writeln!(
        std::io::stderr(),
        "\n*** browser interop: missing {missing}, SKIPPING the headless Chromium test; \
         run tests/browser/setup.sh (WSDUPLEX_REQUIRE_INTEROP=1 makes this fail) ***\n"
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
