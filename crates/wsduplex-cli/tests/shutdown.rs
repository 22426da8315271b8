//! Graceful shutdown of `wsduplex serve` under load (SIGTERM): clients that never answer
//! the close, data queued for a slow reader, chat members and long-polling members.
//! `cli.rs` has the simple case (one echo connection that answers).

mod common;

use common::*;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The server's close timeout (the library's default; `serve` has no flag for it).
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long after SIGTERM `serve` may take at most: each worker waits the close timeout
/// and one second more for its connections.
const BOUND: Duration = Duration::from_secs(6);
/// Slack on [`BOUND`] for a loaded machine.
const SLACK: Duration = Duration::from_secs(3);

/// Signals TERM once the handler is installed; returns when.
fn terminate(server: &Server) -> Instant {
    wait_until_caught(server.pid(), 15);
    server.signal("TERM");
    Instant::now()
}

/// A data message: opcode and payload.
type Data = (u8, Vec<u8>);

/// Reads frames up to the close; returns the data messages before it, and the close.
fn drain_to_close(ws: &mut Ws) -> (Vec<Data>, (Option<u16>, String)) {
    let mut data = Vec::new();
    loop {
        let f = ws.read_frame();
        match f.opcode {
            CLOSE => return (data, f.close()),
            TEXT | BINARY => {
                assert!(f.fin, "no fragments expected here: {f:?}");
                data.push((f.opcode, f.payload));
            }
            PING | PONG => {}
            other => panic!("unexpected opcode {other}: {f:?}"),
        }
    }
}

fn json(payload: &[u8]) -> serde_json::Value {
    serde_json::from_slice(payload)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(payload)))
}

/// Echo and chat clients that read nothing once served and never answer the close: the
/// server still exits 0 within its bound, and each of them finds a 1001 close waiting.
#[test]
fn clients_that_never_answer_the_close_do_not_hold_the_server() {
    let server = Server::start_on_loopback(&["--workers", "2"]);
    let mut silent = Vec::new();
    for i in 0..4 {
        let mut ws = Ws::connect(server.addr, "/echo");
        let text = format!("hello {i}");
        ws.send(TEXT, text.as_bytes());
        assert_eq!(ws.read_message(), (TEXT, text.into_bytes()));
        silent.push(ws);
    }
    let mut members = Vec::new();
    for i in 0..4 {
        let mut ws = Ws::connect(server.addr, &format!("/chat/quiet?name=m{i}"));
        let (_, welcome) = ws.read_message();
        assert_eq!(json(&welcome)["type"], "welcome");
        members.push(ws);
    }
    let signalled = terminate(&server);
    let exit = server.wait();
    let took = signalled.elapsed();
    assert!(exit.status.success(), "{exit:?}");
    assert!(!exit.stderr.contains("panicked"), "{exit:?}");
    assert!(
        took < BOUND + SLACK,
        "exited {took:?} after SIGTERM, bound {BOUND:?}"
    );
    for ws in &mut silent {
        let (data, close) = drain_to_close(ws);
        assert!(data.is_empty(), "{data:?}");
        assert_eq!(close, (Some(1001), "server shutting down".to_string()));
        ws.expect_eof();
    }
    for ws in &mut members {
        let (data, close) = drain_to_close(ws);
        // Presence events of the others joining may come first; no chat messages.
        for (_, p) in &data {
            assert_eq!(
                json(p)["type"],
                "joined",
                "{:?}",
                String::from_utf8_lossy(p)
            );
        }
        assert_eq!(close, (Some(1001), "server shutting down".to_string()));
        ws.expect_eof();
    }
}

/// A chat member that reads nothing while another sends 250 messages of 4096 characters:
/// they wait for it in the server (queue, socket buffer, kernel). After SIGTERM it reads at
/// last, and gets every one of them, in order, then 1001; the sender gets 1001 too.
#[test]
fn a_slow_chat_reader_gets_every_queued_message_before_1001() {
    const N: usize = 250;
    let server = Server::start_on_loopback(&["--workers", "2", "--send-queue", "1024"]);
    let mut slow = Ws::connect(server.addr, "/chat/slow?name=slow");
    assert_eq!(json(&slow.read_message().1)["type"], "welcome");
    let mut fast = Ws::connect(server.addr, "/chat/slow?name=fast");
    assert_eq!(json(&fast.read_message().1)["type"], "welcome");
    let body = "x".repeat(4096 - 4);
    for i in 0..N {
        let text = format!("{i:04}{body}");
        let msg = serde_json::json!({"type": "message", "text": text}).to_string();
        fast.send(TEXT, msg.as_bytes());
        // The sender reads its own message back: by then the room has queued it for every
        // member, the slow one included.
        let echo = json(&fast.read_message().1);
        assert_eq!(echo["type"], "message", "{echo}");
        assert_eq!(echo["id"], i + 1);
    }
    let signalled = terminate(&server);
    let (data, close) = drain_to_close(&mut slow);
    let ids: Vec<u64> = data
        .iter()
        .map(|(_, p)| json(p))
        .filter(|v| v["type"] == "message")
        .map(|v| {
            let id = v["id"].as_u64().unwrap();
            let text = v["text"].as_str().unwrap();
            assert_eq!(&text[..4], format!("{:04}", id - 1), "message {id} intact");
            assert_eq!(text.len(), 4096);
            id
        })
        .collect();
    assert_eq!(
        ids,
        (1..=N as u64).collect::<Vec<_>>(),
        "every message, in order"
    );
    assert_eq!(close, (Some(1001), "server shutting down".to_string()));
    slow.send_close(1001, "");
    let (rest, close) = drain_to_close(&mut fast);
    assert!(rest.is_empty(), "{} more events for the sender", rest.len());
    assert_eq!(close, (Some(1001), "server shutting down".to_string()));
    fast.send_close(1001, "");
    let exit = server.wait();
    assert!(exit.status.success(), "{exit:?}");
    assert!(signalled.elapsed() < BOUND + SLACK);
    slow.expect_eof();
    fast.expect_eof();
}

/// An echo client that writes 200 messages and reads only the first before SIGTERM: the
/// echoes that follow are whole messages, in order, from the second on, then the 1001; no
/// frame is cut and nothing comes after the close.
#[test]
fn a_slow_echo_reader_gets_whole_echoes_in_order_then_1001() {
    let server = Server::start_on_loopback(&["--workers", "2"]);
    let mut ws = Ws::connect(server.addr, "/echo");
    let payload = |i: usize| {
        let mut p = vec![(i % 251) as u8; 1024];
        p[..4].copy_from_slice(&(i as u32).to_be_bytes());
        p
    };
    for i in 0..200 {
        ws.send(BINARY, &payload(i));
    }
    assert_eq!(ws.read_message(), (BINARY, payload(0)));
    let signalled = terminate(&server);
    let (data, close) = drain_to_close(&mut ws);
    for (k, (op, p)) in data.iter().enumerate() {
        assert_eq!((*op, p), (BINARY, &payload(k + 1)), "echo {}", k + 1);
    }
    assert_eq!(close, (Some(1001), "server shutting down".to_string()));
    ws.send_close(1001, "");
    ws.expect_eof();
    let exit = server.wait();
    assert!(exit.status.success(), "{exit:?}");
    assert!(signalled.elapsed() < BOUND + SLACK);
}

/// A child process killed if the test fails before it is waited for.
struct Guard(Option<Child>);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A long-polling member waiting on a GET (the poll timeout is a minute) is answered at once
/// on SIGTERM, its session ended (`404 unknown_session`, as for any session the server no
/// longer has), and the server exits 0 within its bound. The signal goes once the server has
/// logged the GET (`WSDUPLEX_LOG=debug` logs each request when it has been read): a request
/// still arriving when the server stops is dropped unanswered, by design.
#[test]
fn a_pending_long_poll_is_answered_at_shutdown() {
    let mut child = Guard(Some(
        Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--poll-timeout", "60s"])
            .env("WSDUPLEX_LOG", "debug")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn wsduplex serve"),
    ));
    let pid = child.0.as_ref().unwrap().id();
    let mut ready = String::new();
    BufReader::new(child.0.as_mut().unwrap().stdout.take().unwrap())
        .read_line(&mut ready)
        .unwrap();
    let addr: std::net::SocketAddr = ready
        .trim_end()
        .strip_prefix("listening on http://")
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("unexpected ready line {ready:?}"));
    let (log_tx, log) = mpsc::channel();
    let stderr = child.0.as_mut().unwrap().stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let _ = log_tx.send(line);
        }
    });

    let open = http(
        addr,
        format!("POST /poll/lp?name=poller HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\n\r\n")
            .as_bytes(),
    );
    assert_eq!(open.status, 200, "{}", open.body_str());
    let open = json(&open.body);
    let sid = open["session"].as_str().unwrap().to_string();
    let cursor = open["cursor"].as_u64().unwrap();
    let path = format!("/poll/session/{sid}");
    let poller = std::thread::spawn(move || {
        let mut tcp = connect(addr);
        let req = format!("GET {path}?cursor={cursor} HTTP/1.1\r\nHost: {addr}\r\n\r\n");
        tcp.write_all(req.as_bytes()).unwrap();
        let (head, rest) = read_head(&mut tcp);
        (Instant::now(), head, rest, tcp)
    });
    let wanted = format!("GET /poll/session/{sid}");
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = log
            .recv_timeout(left)
            .expect("the server never logged the GET");
        if line.contains(&wanted) {
            break;
        }
    }
    wait_until_caught(pid, 15);
    send_signal(pid, "TERM");
    let signalled = Instant::now();
    let (answered, head, mut body, mut tcp) = poller.join().unwrap();
    let waited = answered.duration_since(signalled);
    assert!(
        waited < CLOSE_TIMEOUT,
        "the pending poll was answered {waited:?} after SIGTERM"
    );
    assert!(head.starts_with("HTTP/1.1 404 "), "{head}");
    let mut chunk = [0u8; 1024];
    loop {
        match read_some(&mut tcp, &mut chunk) {
            Ok(0) => break,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
            Err(e) => panic!("reading the answer: {e}"),
        }
    }
    assert_eq!(json(&body)["error"], "unknown_session");
    let status = wait_child(child.0.take().unwrap());
    assert!(status.success(), "{status}");
    assert!(signalled.elapsed() < BOUND + SLACK);
}
