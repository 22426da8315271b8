//! Headless Chromium over HTTP/2 (RFC 8441): the echo page loaded over `https` with h2, then
//! WebSockets opened from it with extended CONNECT on the same connection (one TCP
//! connection accepted by the server, the handshakes answered `200` as DevTools shows
//! them), and two pages chat in a room. The control run (`--no-http2`) shows the browser on
//! HTTP/1.1 (`101`), chatting all the same.
//!
//! The browser side is `tests/browser/http2.mjs` (installed by `tests/browser/setup.sh`);
//! without Chromium or `node_modules` these tests print a note and pass, unless
//! `WSDUPLEX_REQUIRE_INTEROP=1`.

mod common;

mod browser_harness;

use browser_harness::run_bounded;
use common::BIN;
use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};

#[test]
fn chromium_opens_websockets_on_the_pages_http2_connection() {
    let stderr = run("h2", &[]);
    // The server's log names every connection it accepts: one, for both pages, the favicon
    // and all the WebSockets.
    let mut ids: Vec<&str> = stderr
        .split("conn{id=")
        .skip(1)
        .filter_map(|rest| rest.split(' ').next())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids, ["1"], "connections accepted: {ids:?}\n{stderr}");
    assert!(stderr.contains("http/2 websocket /echo"), "{stderr}");
}

#[test]
fn without_http2_chromium_falls_back_to_http1() {
    run("http/1.1", &["--no-http2"]);
}

/// Runs `http2.mjs` against `wsduplex serve --tls-self-signed EXTRA` expecting `protocol`;
/// the server's log (`debug`).
fn run(protocol: &str, extra: &[&str]) -> String {
    let Some(script) = browser_harness::script("http2.mjs", "browser http/2") else {
        return String::new();
    };
    let mut server = Command::new(BIN)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--workers",
            "1",
            "--tls-self-signed",
        ])
        .args(extra)
        .env("WSDUPLEX_LOG", "debug")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn wsduplex serve");
    let mut stdout = BufReader::new(server.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let base = line
        .trim()
        .strip_prefix("listening on ")
        .expect("ready line");
    let mut log = server.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = log.read_to_string(&mut s);
        s
    });
    let mut cmd = Command::new("node");
    cmd.arg(&script).arg(base).arg(protocol);
    let (status, out, err) = run_bounded(cmd);
    let _ = server.kill();
    let _ = server.wait();
    let log = reader.join().unwrap_or_default();
    assert!(
        status.is_some_and(|s| s.success()),
        "headless Chromium over {protocol} failed ({status:?})\n--- stdout ---\n{out}\n\
         --- stderr ---\n{err}\n--- server ---\n{log}"
    );
    eprintln!("--- headless Chromium over {protocol} ---\n{out}");
    log
}
