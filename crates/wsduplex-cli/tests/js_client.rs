//! The JavaScript client (`crates/wsduplex-hub/web/wsduplex.js`, published from `clients/js`;
//! docs/js-client.md) against the real `wsduplex serve --api-token TOKEN`, in Node with `ws`
//! (`tests/interop/node/js_client.mjs`) and in headless Chromium
//! (`tests/browser/js_client.mjs`, the module imported from the server). Both run
//! `tests/interop/node/js_client_scenario.mjs`: three rooms on one connection, `data`
//! published and pushed, the connection cut by the server, then the server restarted on the
//! same port; the exact `[id, n]` sequence of every room is checked (no loss, no duplicate,
//! the restarted rooms read again after a `reset`), over the default transport in both,
//! over long polling in Node and over Server-Sent Events in Chromium. Also: the TypeScript
//! declarations name exactly what the module exports. Without node, `ws`, Chromium or
//! `playwright-core` these tests print a note and pass, unless `WSDUPLEX_REQUIRE_INTEROP=1`
//! (CI).

mod common;

mod browser_harness;

use browser_harness::{node_with_ws, run_bounded, run_driven};
use common::Server;
use std::process::Command;

/// The server's `--api-token`: the scenario cuts its own connection and pushes with it.
const TOKEN: &str = "js-client-test-token";

/// Runs `cmd` (given the server's URL, the token, the mode `restart` and the transport to
/// force, if any) against a fresh server, restarting that server on the same port when the
/// script prints `restart`.
fn resume_across_a_restart(mut cmd: Command, transport: Option<&str>, what: &str) {
    let server = Server::start_on_loopback(&["--api-token", TOKEN]);
    let addr = server.addr.to_string();
    cmd.arg(format!("http://{addr}/")).args([TOKEN, "restart"]);
    cmd.args(transport);
    let mut server = Some(server);
    let mut restarts = 0;
    let (status, stdout, stderr) = run_driven(cmd, |line| {
        if line == "restart" {
            server.take().expect("a server").stop();
            server = Some(Server::start_with(&[
                "--listen",
                &addr,
                "--api-token",
                TOKEN,
            ]));
            restarts += 1;
        }
    });
    assert!(
        status.is_some_and(|s| s.success()),
        "{what} failed ({})\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
        status.map_or("killed after the timeout".to_string(), |s| s.to_string()),
    );
    assert_eq!(restarts, 1, "{stdout}");
    let last = stdout.lines().last().unwrap_or_default();
    assert!(last.contains("ok {"), "{stdout}");
    // The sequences, shown with --nocapture.
    eprintln!("--- {what} ---\n{stdout}");
    server.take().expect("a server").stop();
}

#[test]
fn node_client_resumes_every_room_across_a_cut_and_a_restart() {
    let what = "the JS client in Node";
    let Some(cmd) = node_with_ws("js_client.mjs", what) else {
        return;
    };
    resume_across_a_restart(cmd, None, what);
}

#[test]
fn node_client_over_long_polling_resumes_every_room() {
    let what = "the JS client in Node over long polling";
    let Some(cmd) = node_with_ws("js_client.mjs", what) else {
        return;
    };
    resume_across_a_restart(cmd, Some("longpoll"), what);
}

/// Chromium running `tests/browser/js_client.mjs`, forcing `transport` if given.
fn chromium(transport: Option<&str>, what: &str) {
    let Some(path) = browser_harness::script("js_client.mjs", what) else {
        return;
    };
    let mut cmd = Command::new("node");
    cmd.arg(path);
    resume_across_a_restart(cmd, transport, what);
}

#[test]
fn chromium_client_resumes_every_room_across_a_cut_and_a_restart() {
    chromium(None, "the JS client in Chromium");
}

/// Over SSE the browser reconnects the stream by itself (`Last-Event-ID` resumes the
/// stream's room); the client subscribes the other rooms again under the new session.
#[test]
fn chromium_client_over_sse_resumes_every_room() {
    chromium(Some("sse"), "the JS client in Chromium over SSE");
}

/// `tests/interop/node/js_client_edges.mjs`: a 401 without a retry loop and `refresh`,
/// text and `data`, presence, a room over `--max-subscriptions` refused, `refresh` over
/// both transports, `unsubscribe`.
#[test]
fn node_client_handles_tokens_refusals_and_presence() {
    let what = "the JS client's edges in Node";
    let Some(mut cmd) = node_with_ws("js_client_edges.mjs", what) else {
        return;
    };
    let token = "js-client-edges-token";
    let server = Server::start_on_loopback(&["--auth-token", token, "--max-subscriptions", "2"]);
    cmd.arg(format!("http://{}/", server.addr)).arg(token);
    let (status, stdout, stderr) = run_bounded(cmd);
    assert!(
        status.is_some_and(|s| s.success()),
        "{what} failed ({})\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
        status.map_or("killed after the timeout".to_string(), |s| s.to_string()),
    );
    eprintln!("--- {what} ---\n{stdout}");
    server.stop();
}

/// `tests/interop/node/js_client_retry.mjs`: over long polling, against a fake hub that
/// refuses a message and a subscribe once with `503 handing_over` (as a hub handing over to a
/// new process does), each is sent again after its `Retry-After` and taken once; a long
/// poll so refused asks again without the state leaving "open"; another `503` is an
/// `error`, not sent again.
#[test]
fn node_client_sends_again_what_a_hand_over_refused() {
    let what = "the JS client's retry of a 503 in Node";
    let Some(cmd) = common::node_script("js_client_retry.mjs", what) else {
        return;
    };
    let (status, stdout, stderr) = run_bounded(cmd);
    assert!(
        status.is_some_and(|s| s.success()),
        "{what} failed ({})\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
        status.map_or("killed after the timeout".to_string(), |s| s.to_string()),
    );
    assert!(stdout.lines().last() == Some("ok"), "{stdout}");
    eprintln!("--- {what} ---\n{stdout}");
}

#[test]
fn typescript_declarations_match_the_exports() {
    let what = "the JS client's declarations check";
    let Some(mut cmd) = common::node_script("js_client_types.mjs", what) else {
        return;
    };
    let out = cmd.output().expect("run node");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
