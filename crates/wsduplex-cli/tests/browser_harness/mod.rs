//! What the headless Chromium and Node script tests share: finding a `tests/browser/*.mjs`
//! script (or skipping loudly when Chromium, node or `playwright-core` is missing), or a
//! `tests/interop/node` script that needs `ws`, and running node with a deadline.

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
#[allow(dead_code)] // not every test binary runs a script unattended
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

/// Runs `cmd` (node) like [`run_bounded`], handing each line it prints on stdout to
/// `on_line` as it comes: a script asks the test to act that way (restart a server, kill a
/// node) and goes on by itself once it sees the effect.
#[allow(dead_code)] // only the JS client's tests drive a script
pub fn run_driven(
    mut cmd: Command,
    mut on_line: impl FnMut(&str),
) -> (Option<ExitStatus>, String, String) {
    use std::io::BufRead;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn node");
    let out = std::io::BufReader::new(child.stdout.take().expect("piped stdout"));
    let mut err = child.stderr.take().expect("piped stderr");
    let (lines_tx, lines) = mpsc::channel();
    thread::spawn(move || {
        for line in out.lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let stderr = thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = err.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    });
    let deadline = std::time::Instant::now() + NODE_TIMEOUT;
    let mut stdout = String::new();
    let mut in_time = true;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => {
                stdout.push_str(&line);
                stdout.push('\n');
                on_line(&line);
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                in_time = false;
                break;
            }
        }
    }
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    let status = match in_time {
        true => rx
            .recv_timeout(common::TIMEOUT)
            .ok()
            .map(|s| s.expect("wait for node")),
        false => None,
    };
    if status.is_none() {
        common::send_signal(pid, "KILL");
        let _ = rx.recv_timeout(common::TIMEOUT);
    }
    (status, stdout, stderr.join().unwrap_or_default())
}

/// `node tests/interop/node/SCRIPT`, or `None` (after a loud note) without node or `ws`.
#[allow(dead_code)] // only the JS client's tests use `ws`
pub fn node_with_ws(script: &str, what: &str) -> Option<Command> {
    let cmd = common::node_script(script, what)?;
    let ws = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/interop/node/node_modules/ws/package.json");
    if ws.exists() {
        return Some(cmd);
    }
    if std::env::var_os("WSDUPLEX_REQUIRE_INTEROP").is_some_and(|v| v == "1") {
        panic!("{what}: node ws is not installed: run tests/interop/setup.sh");
    }
    eprintln!("\n*** node ws is not installed: SKIPPING {what}; run tests/interop/setup.sh ***\n");
    None
}
