//! `wsduplex relay --trace-json`: messages pass both ways with subprotocols and
//! permessage-deflate negotiated end to end, and the trace shows every frame of both
//! connections as it was on the wire, checked frame by frame against what was sent.
//!
//! Our client through the relay to `wsduplex serve` always runs; Node `ws` through the
//! relay to Python `websockets` needs the interop peers (`tests/interop/setup.sh`) and is
//! skipped loudly without them. Protocol errors on either side are forged with raw frames.

mod common;
#[path = "../../../tests/interop/peer.rs"]
mod peer;

use common::{
    accept_upgrade, close_payload, frame, FakeServer, Server, Ws, BIN, CLOSE, TEXT, TIMEOUT,
};
use peer::Peer;
use serde_json::Value;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Instant;
use wsduplex::{ClientConfig, CloseCode, Message, ProxySetting};

/// A running `wsduplex relay --trace-json`, killed on drop.
struct Relay {
    child: Child,
    addr: SocketAddr,
    lines: mpsc::Receiver<String>,
    stderr: Option<thread::JoinHandle<String>>,
}

impl Relay {
    fn start(to: &str) -> Self {
        let mut child = Command::new(BIN)
            .args([
                "relay",
                "--listen",
                "127.0.0.1:0",
                "--to",
                to,
                "--trace-json",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn wsduplex relay");
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = thread::spawn(move || {
            let mut s = String::new();
            let _ = BufReader::new(stderr).read_to_string(&mut s);
            s
        });
        let ready = lines
            .recv_timeout(TIMEOUT)
            .expect("wsduplex relay printed no ready line");
        let addr = ready
            .strip_prefix("listening on ws://")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("unexpected ready line {ready:?}"));
        Self {
            child,
            addr,
            lines,
            stderr: Some(stderr),
        }
    }

    /// The trace of connection 1 up to its `closed` event.
    fn trace(&self) -> Trace {
        let deadline = Instant::now() + TIMEOUT;
        let mut all = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no `closed` event; the trace so far: {all:#?}"));
            let v: Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
            assert_eq!(v["conn"], 1, "{line}");
            assert!(v["t"].as_f64().is_some_and(|t| t >= 0.0), "{line}");
            let closed = v["event"] == "closed";
            all.push(v);
            if closed {
                return Trace(all);
            }
        }
    }

    /// Stops the relay; its stderr.
    fn stop(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.stderr
            .take()
            .map(|h| h.join().unwrap_or_default())
            .unwrap_or_default()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The JSON lines of one connection.
struct Trace(Vec<Value>);

/// A data message rebuilt from its frames.
#[derive(Debug, PartialEq)]
struct Rebuilt {
    opcode: String,
    compressed: bool,
    data: Vec<u8>,
    frames: usize,
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

/// A frame's payload as the application sees it: inflated if compressed.
fn data(f: &Value) -> Vec<u8> {
    for (key, hex) in [
        ("inflated_text", false),
        ("inflated_hex", true),
        ("payload_text", false),
        ("payload_hex", true),
    ] {
        if let Some(s) = f[key].as_str() {
            return if hex { unhex(s) } else { s.as_bytes().to_vec() };
        }
    }
    panic!("no payload in {f}")
}

impl Trace {
    /// The frames from `from` to `to`, in order.
    fn frames(&self, from: &str, to: &str) -> Vec<&Value> {
        self.0
            .iter()
            .filter(|v| v["type"] == "frame" && v["from"] == from && v["to"] == to)
            .collect()
    }

    fn events(&self, name: &str) -> Vec<&Value> {
        self.0.iter().filter(|v| v["event"] == name).collect()
    }

    /// The data messages on one wire, checking the RFC's framing rules on the way: RSV1
    /// only on a first frame, FIN only on a last, masking by direction, no errors.
    fn messages(&self, from: &str, to: &str) -> Vec<Rebuilt> {
        let masked = from == "client" || to == "upstream";
        let mut out: Vec<Rebuilt> = Vec::new();
        let mut open = false;
        for f in self.frames(from, to) {
            assert_eq!(f["masked"], masked, "{f}");
            assert!(f.get("error").is_none(), "{f}");
            assert_eq!(
                (&f["rsv2"], &f["rsv3"]),
                (&false.into(), &false.into()),
                "{f}"
            );
            let op = f["opcode"].as_str().unwrap();
            if !matches!(op, "text" | "binary" | "cont") {
                continue;
            }
            if op == "cont" {
                assert!(open, "continuation without a message: {f}");
                assert_eq!(f["rsv1"], false, "RSV1 on a continuation: {f}");
                let m = out.last_mut().unwrap();
                assert_eq!(f["message"].as_str(), Some(m.opcode.as_str()), "{f}");
                m.data.extend(data(f));
                m.frames += 1;
            } else {
                assert!(!open, "a new message inside a fragmented one: {f}");
                out.push(Rebuilt {
                    opcode: op.to_string(),
                    compressed: f["rsv1"] == true,
                    data: data(f),
                    frames: 1,
                });
            }
            open = f["fin"] == false;
            if f["fin"] == true && out.last().unwrap().compressed {
                let len = out.last().unwrap().data.len() as u64;
                assert_eq!(f["message_len"].as_u64(), Some(len), "{f}");
            }
        }
        assert!(!open, "a message left unfinished on {from}→{to}");
        out
    }

    /// The close frames on one wire: code and reason.
    fn closes(&self, from: &str, to: &str) -> Vec<(u64, String)> {
        self.frames(from, to)
            .into_iter()
            .filter(|f| f["opcode"] == "close")
            .map(|f| {
                (
                    f["close_code"].as_u64().unwrap_or(1005),
                    f["close_reason"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    }
}

fn text(s: &str) -> (String, Vec<u8>) {
    ("text".into(), s.as_bytes().to_vec())
}

fn contents(m: &[Rebuilt]) -> Vec<(String, Vec<u8>)> {
    m.iter()
        .map(|m| (m.opcode.clone(), m.data.clone()))
        .collect()
}

#[tokio::test]
async fn our_client_through_the_relay_to_serve_every_frame_traced() {
    let server = Server::start_on_loopback(&["--deflate", "--workers", "1"]);
    let relay = Relay::start(&server.url(""));
    let mut config = ClientConfig::default();
    config.proxy = ProxySetting::None;
    // Small fragments: a compressed message spans several frames.
    config.socket.protocol = config.socket.protocol.clone().fragment_size(Some(16));
    let url = format!("ws://{}/echo", relay.addr);
    let (mut ws, handshake) = wsduplex::connect_with(url, &config).await.unwrap();
    assert!(
        handshake.response.deflate.is_some(),
        "upstream accepted deflate"
    );
    let long: String = (0..40).map(|i| format!("word{i} ")).collect();
    let binary: Vec<u8> = (1..=20).collect();
    ws.send(Message::text(long.clone())).await.unwrap();
    ws.send(Message::Binary(binary.clone().into()))
        .await
        .unwrap();
    let mut echoes = Vec::new();
    while echoes.len() < 2 {
        match ws.recv().await {
            Some(Ok(m)) if m.is_data() => echoes.push(m),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(echoes[0], Message::text(long.clone()));
    assert_eq!(echoes[1], Message::Binary(binary.clone().into()));
    ws.close(CloseCode::new(4000), "bye").await.unwrap();
    while let Some(item) = ws.recv().await {
        if let Ok(Message::Close(frame)) = item {
            assert_eq!(frame.map(|f| f.code), Some(CloseCode::new(4000)));
        }
    }
    let trace = relay.trace();

    // Every wire carries the same two messages, however each sender framed them.
    let sent = vec![text(&long), ("binary".into(), binary)];
    let from_client = trace.messages("client", "relay");
    assert_eq!(contents(&from_client), sent);
    assert!(
        from_client[0].compressed && from_client[0].frames > 1,
        "{from_client:?}"
    );
    assert!(
        !from_client[1].compressed && from_client[1].frames == 2,
        "{from_client:?}"
    );
    for (from, to) in [
        ("relay", "upstream"),
        ("upstream", "relay"),
        ("relay", "client"),
    ] {
        let m = trace.messages(from, to);
        assert_eq!(contents(&m), sent, "{from}→{to}");
        assert!(
            m[0].compressed,
            "{from}→{to} compresses the long text: {m:?}"
        );
    }
    // The client's close reached upstream with its reason; each end echoed its code.
    let bye = || vec![(4000, "bye".to_string())];
    assert_eq!(trace.closes("client", "relay"), bye());
    assert_eq!(trace.closes("relay", "upstream"), bye());
    assert_eq!(trace.closes("relay", "client")[0].0, 4000);
    assert_eq!(trace.closes("upstream", "relay")[0].0, 4000);
    // The four handshake heads, and deflate agreed on both connections.
    let heads: Vec<_> = trace.0.iter().filter(|v| v["type"] == "head").collect();
    assert_eq!(heads.len(), 4, "{heads:#?}");
    let open = trace.events("open");
    assert!(open[0]["deflate"]
        .as_str()
        .is_some_and(|d| d.starts_with("permessage-deflate")));
    let stderr = relay.stop();
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn node_client_through_the_relay_to_python_fragmented_and_compressed() {
    let skipped = "the relay's Node-to-Python trace test";
    let Some(mut python) = Peer::Python.command("server", skipped) else {
        return;
    };
    let Some(mut node) = Peer::Node.command("relay_client", skipped) else {
        return;
    };
    let mut upstream = KillOnDrop(
        python
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn python server"),
    );
    let mut port = String::new();
    BufReader::new(upstream.0.stdout.take().unwrap())
        .read_line(&mut port)
        .expect("python prints its port");
    let relay = Relay::start(&format!("ws://127.0.0.1:{}", port.trim()));
    let out = node
        .arg(format!("ws://{}/", relay.addr))
        .output()
        .expect("run node client");
    assert!(
        out.status.success(),
        "node client failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok chat");
    let trace = relay.trace();

    // What relay_client.js sent, frame by frame.
    let frames = trace.frames("client", "relay");
    let expect = [
        // opcode, fin, rsv1, what the frame carries (inflated if compressed)
        ("text", true, true, b"hello relay".to_vec()),
        ("text", false, true, b"part one, ".to_vec()),
        ("cont", false, false, b"part two, ".to_vec()),
        ("cont", true, false, b"part three".to_vec()),
        ("binary", false, false, vec![0, 1, 2]),
        ("cont", true, false, vec![3, 4, 5]),
    ];
    for (i, (op, fin, rsv1, payload)) in expect.iter().enumerate() {
        let f = frames[i];
        assert_eq!(f["opcode"], *op, "frame {i}: {f}");
        assert_eq!(
            (f["fin"] == *fin, f["rsv1"] == *rsv1),
            (true, true),
            "frame {i}: {f}"
        );
        assert_eq!(f["masked"], true, "frame {i}: {f}");
        assert_eq!(&data(f), payload, "frame {i}: {f}");
        assert_eq!(f.get("inflated_len").is_some(), i < 4, "frame {i}: {f}");
    }
    assert_eq!(frames[3]["message_len"], 30);
    assert_eq!(frames[6]["opcode"], "close");
    assert_eq!(
        (&frames[6]["close_code"], &frames[6]["close_reason"]),
        (&4000.into(), &"bye".into())
    );
    // The same messages on every other wire.
    let sent = vec![
        text("hello relay"),
        text("part one, part two, part three"),
        ("binary".into(), vec![0, 1, 2, 3, 4, 5]),
    ];
    for (from, to) in [
        ("client", "relay"),
        ("relay", "upstream"),
        ("upstream", "relay"),
        ("relay", "client"),
    ] {
        assert_eq!(contents(&trace.messages(from, to)), sent, "{from}→{to}");
    }
    assert_eq!(
        trace.closes("relay", "upstream"),
        [(4000, "bye".to_string())]
    );
    let open = trace.events("open");
    assert_eq!(open[0]["subprotocol"], "chat");
    assert!(open[0]["deflate"]
        .as_str()
        .is_some_and(|d| d.starts_with("permessage-deflate")));
    let stderr = relay.stop();
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// Kills a peer process when the test ends, however it ends.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_client_protocol_error_is_traced_answered_and_passed_upstream() {
    let server = Server::start_on_loopback(&["--workers", "1"]);
    let relay = Relay::start(&server.url(""));
    let mut ws = Ws::connect(relay.addr, "/echo");
    // RFC 6455 §5.1: a client frame MUST be masked.
    ws.send_raw(&frame(true, 0, TEXT, b"x", None));
    assert_eq!(
        ws.expect_close(),
        (Some(1002), "protocol error".to_string())
    );
    ws.send_close(1002, "");
    let trace = relay.trace();
    let bad = trace.frames("client", "relay")[0];
    assert_eq!(
        (&bad["masked"], &bad["error_code"]),
        (&false.into(), &1002.into()),
        "{bad}"
    );
    assert_eq!(bad["error"], "client frame is not masked");
    let error = trace.events("error");
    assert_eq!(error.len(), 1, "{error:?}");
    assert_eq!(
        (&error[0]["side"], &error[0]["close_code"]),
        (&"client".into(), &1002.into())
    );
    assert_eq!(
        trace.closes("relay", "upstream"),
        [(1002, "client: protocol error".to_string())]
    );
    let stderr = relay.stop();
    assert!(
        stderr.contains("client failed: client frame is not masked (1002)"),
        "{stderr}"
    );
}

#[test]
fn an_upstream_protocol_error_is_traced_answered_and_passed_to_the_client() {
    // Upstream closes with 1005, a code that must never be on the wire (RFC 6455 §7.4.1).
    let upstream = FakeServer::start(|stream| {
        let (mut ws, _) = accept_upgrade(stream);
        ws.send_raw(&frame(true, 0, CLOSE, &close_payload(1005, b""), None));
        ws.expect_close()
    });
    let relay = Relay::start(&upstream.url(""));
    let mut ws = Ws::connect(relay.addr, "/");
    assert_eq!(
        ws.expect_close(),
        (Some(1002), "upstream: protocol error".to_string())
    );
    ws.send_close(1002, "");
    assert_eq!(
        upstream.finish(),
        (Some(1002), "protocol error".to_string())
    );
    let trace = relay.trace();
    let bad = &trace.frames("upstream", "relay")[0];
    assert_eq!(
        (&bad["close_code"], &bad["error_code"]),
        (&1005.into(), &1002.into()),
        "{bad}"
    );
    let error = trace.events("error");
    assert_eq!(
        (&error[0]["side"], &error[0]["passed_on"]),
        (&"upstream".into(), &1002.into())
    );
    assert_eq!(
        trace.closes("relay", "client")[0],
        (1002, "upstream: protocol error".to_string())
    );
    relay.stop();
}

#[test]
fn an_upstream_refusal_reaches_the_client_with_its_status() {
    let upstream = FakeServer::start(|mut stream| {
        let _ = common::read_head(&mut stream);
        std::io::Write::write_all(
            &mut stream,
            b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        )
        .unwrap();
    });
    let relay = Relay::start(&upstream.url(""));
    let mut tcp = common::connect(relay.addr);
    std::io::Write::write_all(
        &mut tcp,
        common::upgrade_request(relay.addr, "/", "").as_bytes(),
    )
    .unwrap();
    let (head, _) = common::read_head(&mut tcp);
    assert!(head.starts_with("HTTP/1.1 403 "), "{head}");
    upstream.finish();
    let stderr = relay.stop();
    assert!(stderr.contains("answering the client 403"), "{stderr}");
}

#[test]
fn client_vv_traces_its_own_frames_on_stderr() {
    let server = Server::start_on_loopback(&["--deflate", "--workers", "1"]);
    let long = "xyz".repeat(40);
    let out = common::run(
        &["client", "-vv", &server.url("/echo")],
        format!("hi\n{long}\n").as_bytes(),
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout_str(), format!("hi\n{long}\n"));
    let lines: Vec<&str> = out.stderr.lines().collect();
    let find = |needle: &str| {
        lines
            .iter()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no {needle:?} in\n{}", out.stderr))
            .to_string()
    };
    assert!(find("client→server").contains("GET /echo HTTP/1.1"));
    assert!(find("server→client").contains("101 Switching Protocols"));
    let hi = find("\"hi\"");
    assert!(
        hi.contains("client→server") && hi.contains("TEXT   fin=1 rsv=000 mask="),
        "{hi}"
    );
    // The long text went out compressed: RSV1, its inflated length, the text cut at 60.
    let compressed = find("inflated=120 message=120");
    assert!(compressed.contains("rsv=100 mask="), "{compressed}");
    assert!(
        compressed.ends_with(&format!("\"{}…\"", &long[..60])),
        "{compressed}"
    );
    assert!(find("CLOSE").contains("code=1000"));
}

/// The relay answers a client's close with upstream's reply, once it comes: what upstream
/// was still sending arrives first, as it would without the relay.
#[test]
fn a_client_that_closes_at_once_still_gets_the_replies_in_flight() {
    let server = Server::start_on_loopback(&["--workers", "1"]);
    let relay = Relay::start(&server.url(""));
    // stdin ends right after the lines: the client closes before any echo can arrive.
    let out = common::run(
        &["client", &format!("ws://{}/echo", relay.addr)],
        b"one\ntwo\n",
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout_str(), "one\ntwo\n");
    let trace = relay.trace();
    let relay_to_client: Vec<_> = trace
        .frames("relay", "client")
        .into_iter()
        .map(|f| f["opcode"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(relay_to_client, ["text", "text", "close"]);
    relay.stop();
}
