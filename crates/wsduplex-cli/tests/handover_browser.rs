//! The chat page in headless Chromium across hand-overs to new processes (issue 19;
//! docs/handover.md): `tests/browser/handover.mjs` chats with bob, a raw WebSocket of this
//! test, on `wsduplex serve --control PATH`, and asks this test (lines on its stdout) to
//! make bob speak and to hand the server over (`serve --take-over PATH`) while the page
//! keeps publishing. Over WebSocket, two hand-overs in a row: the page's one socket never
//! closes, `#state` stays "open", the old processes exit 0. Over long polling, one: the
//! session moves with the hub, the page's next poll on the new process goes on. Either way
//! the page shows ids 1..N once each in order, and bob, on the same TCP connection, got
//! exactly the same messages (id, name, text) and no presence event. And a new process
//! that dies mid-transfer: the page reconnects by itself to the old one and resumes with
//! `since`, ids going on once each. Without Chromium,
//! node or `playwright-core` these tests print a note and pass, unless
//! `WSDUPLEX_REQUIRE_INTEROP=1` (CI).
#![cfg(unix)]

mod common;

mod browser_harness;
#[allow(dead_code)] // the hand-over tests' helpers, not all used here
#[path = "../../../tests/interop/peer.rs"]
mod peer;
#[allow(dead_code)]
#[path = "handover/procs.rs"]
mod procs;

use browser_harness::run_driven;
use common::Ws;
use procs::{control_path, handed_over, serve_control, take_over, TEXT};
use serde_json::{json, Value};
use std::process::Command;

/// `/echo` connections moved beside the chat.
const IDLE: usize = 300;

/// Runs the page over `transport` through `rounds` hand-overs; `moved`: the chat
/// connections each hand-over moves (bob's WebSocket, and the page's over WebSocket).
fn page_across_hand_overs(transport: &str, rounds: usize, moved: usize) {
    let what = format!("the chat page over {transport} across hand-overs");
    let Some(script) = browser_harness::script("handover.mjs", &what) else {
        return;
    };
    let path = control_path("ctl");
    let (old, addr) = serve_control(&path);
    let mut bob = Ws::connect(addr, "/chat/handover?name=bob");
    let welcome = event(&mut bob);
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    let bob_tuple = procs::tuple(&bob);
    // Idle connections that move too: the transfer takes a while, and the page publishes
    // meanwhile.
    let mut idle: Vec<Ws> = (0..IDLE).map(|_| Ws::connect(addr, "/echo")).collect();
    procs::echo(idle.last_mut().expect("one"), "open");

    let mut current = Some(old);
    let mut handed = 0;
    let mut shown: Option<Value> = None;
    let mut cmd = Command::new("node");
    cmd.arg(script)
        .arg(format!("http://{addr}/"))
        .arg(transport)
        .arg(rounds.to_string());
    let (status, stdout, stderr) = run_driven(cmd, |line| {
        if let Some(text) = line.strip_prefix("say ") {
            say(&mut bob, text);
        } else if let Some(n) = line.strip_prefix("handover ") {
            let (new, count) = take_over(&path, addr);
            assert_eq!(count, moved + IDLE, "hand-over {n}: connections moved");
            handed_over(current.take().expect("a process"), count);
            current = Some(new);
            handed += 1;
            say(&mut bob, &format!("bob after hand-over {n}"));
        } else if let Some(json) = line.strip_prefix("done ") {
            shown = Some(serde_json::from_str(json).expect("the page's messages"));
        }
    });
    assert!(
        status.is_some_and(|s| s.success()),
        "{what} failed ({})\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
        status.map_or("killed after the timeout".to_string(), |s| s.to_string()),
    );
    assert_eq!(handed, rounds, "{stdout}");
    let shown = shown.expect("the page's messages");
    let shown = shown.as_array().expect("an array");
    // Bob got the same messages, in the same order; the page joined once, nobody left.
    let (mut got, mut others) = (Vec::new(), Vec::new());
    while got.len() < shown.len() {
        let e = event(&mut bob);
        match e["type"].as_str() {
            Some("message") => got.push(json!([e["id"], e["name"], e["text"]])),
            _ => others.push(json!([e["type"], e["name"]])),
        }
    }
    assert_eq!(&got, shown);
    assert_eq!(others, [json!(["joined", "alice"])]);
    assert_eq!(procs::tuple(&bob), bob_tuple, "bob's connection changed");
    for ws in &mut idle {
        procs::echo(ws, "still here");
    }
    eprintln!("--- {what} ---\n{stdout}");
    drop((bob, idle));
    current.take().expect("a process").stop();
}

fn event(ws: &mut Ws) -> Value {
    let (_, payload) = ws.read_message();
    serde_json::from_slice(&payload).expect("JSON")
}

fn say(bob: &mut Ws, text: &str) {
    let m = json!({"type": "message", "text": text}).to_string();
    bob.send(TEXT, m.as_bytes());
}

/// The new process dies once it has acknowledged the page's WebSocket (the test hook
/// `WSDUPLEX_TEST_HOOK_TAKE_OVER_EXIT_AFTER=1`, status 75): the page reconnects by itself to
/// the old process, which takes accepting back and serves on, and resumes with `since`; bob
/// speaks through the push API, so the page's is the only connection that moves.
#[test]
fn chromium_chat_page_resumes_on_the_old_process_when_the_new_one_dies() {
    let what = "the chat page when the new process dies";
    let Some(script) = browser_harness::script("handover.mjs", what) else {
        return;
    };
    let path = control_path("ctl");
    let token = "handover-browser-token";
    let (old, addr) = procs::serve_control_with(&path, &["--api-token", token]);
    let push = |text: &str| {
        let body = json!({"text": text, "name": "bob"}).to_string();
        let request = format!(
            "POST /api/rooms/handover/messages HTTP/1.1\r\nHost: {addr}\r\n\
             Authorization: Bearer {token}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let answer = common::http(addr, request.as_bytes());
        assert_eq!(answer.status, 201, "{}", answer.body_str());
    };
    let mut died = 0;
    let mut cmd = Command::new("node");
    cmd.arg(script)
        .arg(format!("http://{addr}/"))
        .args(["websocket", "1", "killed"]);
    let (status, stdout, stderr) = run_driven(cmd, |line| {
        if let Some(text) = line.strip_prefix("say ") {
            push(text);
        } else if let Some(n) = line.strip_prefix("handover ") {
            procs::take_over_dies(&path, 1);
            died += 1;
            push(&format!("bob after hand-over {n}"));
        }
    });
    assert!(
        status.is_some_and(|s| s.success()),
        "{what} failed ({})\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
        status.map_or("killed after the timeout".to_string(), |s| s.to_string()),
    );
    assert_eq!(died, 1, "{stdout}");
    assert!(stdout.contains("\ndone [[1,"), "{stdout}");
    eprintln!("--- {what} ---\n{stdout}");
    // The old process served on all along, and still does.
    procs::echo(&mut Ws::connect(addr, "/echo"), "still serving");
    old.stop();
}

#[test]
fn chromium_chat_page_over_websocket_across_two_hand_overs() {
    page_across_hand_overs("websocket", 2, 2);
}

#[test]
fn chromium_chat_page_over_long_polling_across_a_hand_over() {
    page_across_hand_overs("longpoll", 1, 1);
}
