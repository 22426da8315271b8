//! What the headless Chromium tests share: finding a `tests/browser/*.mjs` script (or
//! skipping loudly when Chromium, node or `playwright-core` is missing), and running node with
//! a deadline.

use crate::common;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

const CHROMIUM: &str = "/usr/bin/chromium";
/// Above the scripts' own 60 s hard timeout, so that their message is the one seen.
const NODE_TIMEOUT: Duration = Duration::from_secs(75);

/// `tests/browser/{name}`, or `None` (after a loud note naming `what`) if Chromium, node or
/// `playwright-core` is missing; with `WSDUPLEX_REQUIRE_INTEROP=1`, a missing one fails.
pub fn script(name: &str, what: &str) -> Option<PathBuf> {
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
        return Some(dir.join(name));
    }
    let missing = missing.join(", ");
    if std::env::var_os("WSDUPLEX_REQUIRE_INTEROP").is_some_and(|v| v == "1") {
        panic!("{what}: missing {missing}: run tests/browser/setup.sh");
    }
    // Straight to stderr, past the test harness's capture: a skip must be seen.
    let _ = writeln!(
        std::io::stderr(),
        "\n*** {what}: missing {missing}, SKIPPING the headless Chromium test; run \
         tests/browser/setup.sh (WSDUPLEX_REQUIRE_INTEROP=1 makes this fail) ***\n"
    );
    None
}

/// Runs `cmd` (node) to completion, at most [`NODE_TIMEOUT`] (then it is killed and the
/// status is `None`): its status, stdout and stderr.
pub fn run_bounded(mut cmd: Command) -> (Option<ExitStatus>, String, String) {
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
