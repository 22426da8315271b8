//! `wsduplex serve --control` / `--take-over`: live /echo connections move to a new process
//! without a close (docs/handover.md). Real processes, real clients: our library client, raw
//! frames (a fragmented message half sent across the hand-over), Python `websockets` and
//! Node `ws` with permessage-deflate, hundreds of idle connections.
//!
//! Nothing sleeps: each step waits for a line the processes print, a process's exit, or an
//! echo.
#![cfg(unix)]

#[path = "../common/mod.rs"]
mod common;
#[path = "../../../../tests/interop/peer.rs"]
mod peer;

mod chat_stress;
mod drain;
mod pause;
mod procs;

use common::{Ws, BIN};
use procs::{
    alive, control_path, echo, handed_over, serve_control, serve_control_with, take_over,
    take_over_dies, take_over_with, tuple, LineClient, Proc, CONT, TEXT,
};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::{self, JoinHandle};

#[test]
fn the_new_process_serves_every_connection_without_a_close() {
    let path = control_path("ctl");
    let (old, addr) = serve_control(&path);
    let mode = std::fs::metadata(&*path).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o600
    );
    // Our library client, with permessage-deflate (offered by default, accepted by --deflate).
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut config = wsduplex::ClientConfig::default();
    config.proxy = wsduplex::ProxySetting::None;
    let (mut ours, handshake) = rt
        .block_on(wsduplex::connect_with(format!("ws://{addr}/echo"), &config))
        .expect("connect");
    assert!(
        format!("{handshake:?}").contains("deflate"),
        "{handshake:?}"
    );
    let ours_tuple = match ours.get_ref() {
        wsduplex::ClientStream::Plain(tcp) => (tcp.local_addr().unwrap(), tcp.peer_addr().unwrap()),
        _ => unreachable!("plain ws://"),
    };
    let round_trip = |ws: &mut wsduplex::WebSocket<_>, text: String| {
        rt.block_on(async {
            ws.send(wsduplex::Message::text(text.clone()))
                .await
                .unwrap();
            match ws.recv().await {
                Some(Ok(wsduplex::Message::Text(t))) => assert_eq!(t.as_str(), text),
                other => panic!("expected the echo, got {other:?}"),
            }
        })
    };
    round_trip(&mut ours, "before".repeat(100));
    let mut peers: Vec<LineClient> = [peer::Peer::Python, peer::Peer::Node]
        .into_iter()
        .filter_map(|p| LineClient::start(p, addr))
        .collect();
    for p in &mut peers {
        p.echo("compressed before the hand-over");
    }
    // A message half sent: its first fragment is in the old process, the rest goes to the new.
    let mut half = Ws::connect(addr, "/echo");
    half.send_frame(false, TEXT, b"half sent, ");
    let mut idle: Vec<Ws> = (0..300).map(|_| Ws::connect(addr, "/echo")).collect();
    echo(idle.last_mut().unwrap(), "the last one is open");
    let tuples: Vec<_> = idle.iter().map(tuple).collect();
    let half_tuple = tuple(&half);
    // A frame half received: its first bytes reach the old process, the rest the new.
    let mut cut = Ws::connect(addr, "/echo");
    let frame = common::frame(true, 0, TEXT, b"a frame cut in two", Some([1, 2, 3, 4]));
    cut.send_raw(&frame[..9]);
    // The CLI client, as a user runs it.
    let mut cli = common::Running::spawn(&["client", &format!("ws://{addr}/echo")]);
    cli.send_line("from the terminal, before");
    assert_eq!(cli.next_line(), "from the terminal, before");

    // Compressed messages in flight while the connections move.
    for p in &mut peers {
        p.burst(2000);
    }
    let (new, count) = take_over(&path, addr);
    assert_eq!(count, 1 + peers.len() + 1 + idle.len() + 2);
    for p in &mut peers {
        p.burst_done(2000);
    }
    handed_over(old, count);

    half.send_frame(true, CONT, b"half in the new process");
    assert_eq!(
        half.read_message(),
        (TEXT, b"half sent, half in the new process".to_vec())
    );
    assert_eq!(tuple(&half), half_tuple);
    cut.send_raw(&frame[9..]);
    assert_eq!(cut.read_message(), (TEXT, b"a frame cut in two".to_vec()));
    cli.send_line("from the terminal, after");
    assert_eq!(cli.next_line(), "from the terminal, after");
    cli.close_stdin();
    let (status, _, stderr) = cli.wait();
    assert!(status.success(), "{status}: {stderr}");
    for (ws, before) in idle.iter_mut().zip(&tuples) {
        echo(ws, "still here");
        assert_eq!(tuple(ws), *before);
    }
    round_trip(&mut ours, "after".repeat(100));
    let now = match ours.get_ref() {
        wsduplex::ClientStream::Plain(tcp) => (tcp.local_addr().unwrap(), tcp.peer_addr().unwrap()),
        _ => unreachable!(),
    };
    assert_eq!(now, ours_tuple);
    for mut p in peers {
        p.echo("compressed after the hand-over, same context");
        p.finish();
    }
    // The new process accepts, and answers the next hand-over on the same path.
    echo(&mut Ws::connect(addr, "/echo"), "a new connection");
    assert!(path.exists());
    drop((idle, half, ours));
    new.stop();
}

/// One client echoing in batches on its own thread until told to stop; panics (joined)
/// on anything but the echoes it expects, in order.
fn load(addr: SocketAddr, stop: Arc<AtomicBool>) -> JoinHandle<usize> {
    thread::spawn(move || {
        let mut ws = Ws::connect(addr, "/echo");
        let mut n = 0usize;
        while !stop.load(Ordering::Relaxed) {
            // Ten in flight: some are read, echoed or unsent at the hand-over.
            for i in n..n + 10 {
                ws.send(TEXT, format!("message {i}").as_bytes());
            }
            for i in n..n + 10 {
                assert_eq!(
                    ws.read_message(),
                    (TEXT, format!("message {i}").into_bytes())
                );
            }
            n += 10;
        }
        n
    })
}

#[test]
fn ten_hand_overs_in_a_row_under_load_lose_nothing() {
    let path = control_path("ctl");
    let (mut current, addr) = serve_control(&path);
    let stop = Arc::new(AtomicBool::new(false));
    let loaders: Vec<_> = (0..4).map(|_| load(addr, stop.clone())).collect();
    let mut idle: Vec<Ws> = (0..50).map(|_| Ws::connect(addr, "/echo")).collect();
    echo(idle.last_mut().unwrap(), "open");
    for round in 0..10 {
        let (new, count) = take_over(&path, addr);
        assert_eq!(count, 54, "round {round}");
        handed_over(current, count);
        current = new;
    }
    stop.store(true, Ordering::Relaxed);
    for l in loaders {
        let sent = l.join().expect("a loader saw a wrong echo or a close");
        assert!(sent > 0);
    }
    for ws in &mut idle {
        echo(ws, "after ten");
    }
    drop(idle);
    current.stop();
}

#[test]
fn a_new_process_killed_mid_transfer_leaves_the_rest_with_the_old_one() {
    let path = control_path("ctl");
    let (old, addr) = serve_control(&path);
    let mut conns: Vec<Ws> = (0..40).map(|_| Ws::connect(addr, "/echo")).collect();
    echo(conns.last_mut().unwrap(), "open");
    take_over_dies(&path, 10);
    // The ten it acknowledged died with it; every other one is served by the old process.
    let kept = conns.iter_mut().map(alive).filter(|a| *a).count();
    assert_eq!(kept, 30);
    // The old process accepts again, and a later hand-over takes everything it holds.
    let mut fresh = Ws::connect(addr, "/echo");
    echo(&mut fresh, "accepted again");
    let (new, count) = take_over(&path, addr);
    assert_eq!(count, 31);
    handed_over(old, count);
    echo(&mut fresh, "moved");
    drop((fresh, conns));
    new.stop();
}

/// Killed after taking every connection, before confirming the end: the old process
/// accepts again (the listening sockets are never left to nobody).
#[test]
fn a_new_process_killed_before_confirming_leaves_accepting_to_the_old_one() {
    let path = control_path("ctl");
    let (old, addr) = serve_control(&path);
    let mut conns: Vec<Ws> = (0..5).map(|_| Ws::connect(addr, "/echo")).collect();
    echo(&mut conns[4], "open");
    take_over_dies(&path, 5);
    assert_eq!(conns.iter_mut().map(alive).filter(|a| *a).count(), 0);
    echo(
        &mut Ws::connect(addr, "/echo"),
        "the old process accepts again",
    );
    old.stop();
}

#[test]
fn misuse_is_one_clear_error() {
    let path = control_path("ctl");
    // Nothing to take over.
    let out = common::run(&["serve", "--take-over", path.to_str().unwrap()], b"");
    let line = out.assert_one_line_error();
    assert!(line.contains("--take-over"), "{line}");
    let (old, addr) = serve_control(&path);
    // The control socket of a live process is not taken.
    let p = path.to_str().unwrap();
    let out = common::run(&["serve", "--listen", "127.0.0.1:0", "--control", p], b"");
    let line = out.assert_one_line_error();
    assert!(line.contains("a running wsduplex listens on it"), "{line}");
    // --listen elsewhere than the sockets taken over: refused, and the old one serves on.
    let out = common::run(&["serve", "--take-over", p, "--listen", "127.0.0.2:1"], b"");
    let line = out.assert_one_line_error();
    assert!(line.contains("--listen 127.0.0.2:1"), "{line}");
    echo(&mut Ws::connect(addr, "/echo"), "still serving");
    // A control socket that speaks another version: the new process says so and exits.
    let fake = control_path("fake");
    let listener = std::os::unix::net::UnixListener::bind(&*fake).unwrap();
    let server = thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut hello = vec![0, 0, 0, 13, 1];
        hello.extend_from_slice(b"WSDH");
        hello.extend_from_slice(&[0, 99, 0, 1, 0, 0, 0, 1]);
        s.write_all(&hello).unwrap();
        let mut answer = Vec::new();
        let _ = s.read_to_end(&mut answer);
        answer
    });
    let out = common::run(&["serve", "--take-over", fake.to_str().unwrap()], b"");
    let line = out.assert_one_line_error();
    assert!(line.contains("control format version 99"), "{line}");
    let answer = server.join().unwrap();
    assert_eq!(answer.get(4), Some(&2), "a Refuse: {answer:?}");
    // Not a control socket at all.
    let garbage = control_path("garbage");
    let listener = std::os::unix::net::UnixListener::bind(&*garbage).unwrap();
    thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n");
    });
    let out = common::run(&["serve", "--take-over", garbage.to_str().unwrap()], b"");
    let line = out.assert_one_line_error();
    assert!(line.contains("control socket"), "{line}");
    old.stop();
}

/// 5,000 idle connections held by `wsduplex bench idle` move with no drop: the load
/// generator fails if the server closes any (or any fails) before it lets them go.
#[test]
fn five_thousand_idle_connections_from_bench_idle_move() {
    const N: usize = 5_000;
    let path = control_path("ctl");
    let unlimited = [
        "--max-connections",
        "0",
        "--max-connections-per-client",
        "0",
    ];
    let (old, addr) = serve_control_with(&path, &unlimited);
    let mut bench = Command::new(BIN)
        .args([
            "bench",
            "idle",
            &format!("ws://{addr}/echo"),
            "-c",
            &N.to_string(),
        ])
        .args(["--threads", "1", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn wsduplex bench idle");
    let mut stderr = BufReader::new(bench.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), format!("idle: {N} connections open"));
    let (new, count, from) = take_over_with(&path, addr, &unlimited);
    assert_eq!((count, from), (N, old.pid()));
    let (status, err) = old.exit();
    assert!(status.success(), "{status}: {err}");
    // Let them go: the report counts any connection the server dropped meanwhile.
    common::send_signal(bench.id(), "INT");
    let out = bench.wait_with_output().unwrap();
    let mut rest = String::new();
    let _ = stderr.read_to_string(&mut rest);
    assert!(out.status.success(), "{}: {rest}", out.status);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (report["opened"].as_u64(), report["dropped"].as_u64()),
        (Some(N as u64), Some(0))
    );
    new.stop();
}

/// The JSON of a hub member's next message.
fn event(ws: &mut Ws) -> serde_json::Value {
    let (_, payload) = ws.read_message();
    serde_json::from_slice(&payload).unwrap_or_else(|e| panic!("{e}: {payload:?}"))
}

/// Hub members move with their rooms: the same TCP connections, no close, no presence
/// event, ids going on, names kept; a newcomer on the new process sees them.
#[test]
fn chat_members_move_with_their_rooms() {
    let path = control_path("ctl");
    let (old, addr) = serve_control_with(&path, &[]);
    let mut alice = Ws::connect(addr, "/chat/lobby?name=alice");
    assert_eq!(event(&mut alice)["type"], "welcome");
    let mut bob = Ws::connect(addr, "/chat/lobby?name=bob");
    assert_eq!(event(&mut bob)["type"], "welcome");
    assert_eq!(event(&mut alice)["type"], "joined");
    alice.send(TEXT, br#"{"type":"message","text":"one"}"#);
    for ws in [&mut alice, &mut bob] {
        assert_eq!(event(ws)["id"], 1);
    }
    let before = [&alice, &bob].map(|ws| ws.stream.local_addr().unwrap());
    let (new, count, from) = take_over_with(&path, addr, &[]);
    assert_eq!((count, from), (2, old.pid()));
    let (status, stderr) = old.exit();
    assert!(status.success(), "{status}: {stderr}");
    // Served by the new process: the next id, no presence event in between.
    bob.send(TEXT, br#"{"type":"message","text":"two"}"#);
    for ws in [&mut alice, &mut bob] {
        let got = event(ws);
        assert_eq!(
            (&got["type"], &got["id"], &got["name"]),
            (&"message".into(), &2.into(), &"bob".into()),
            "{got}"
        );
    }
    assert_eq!(
        before,
        [&alice, &bob].map(|ws| ws.stream.local_addr().unwrap())
    );
    let mut carol = Ws::connect(addr, "/chat/lobby?name=carol");
    let welcome = event(&mut carol);
    assert_eq!(welcome["last_id"], 2, "{welcome}");
    let mut members: Vec<String> = serde_json::from_value(welcome["members"].clone()).unwrap();
    members.sort();
    assert_eq!(members, ["alice", "bob", "carol"]);
    new.stop();
}

/// What cannot move (here an SSE stream, whose session ends with its stream) is served by
/// the old process until it ends or `--drain-timeout` passes; then the old process exits 0.
#[test]
fn connections_that_cannot_move_are_served_until_the_drain_timeout() {
    let path = control_path("ctl");
    let (old, addr) = serve_control_with(&path, &["--drain-timeout", "2s"]);
    let mut sse = common::connect(addr);
    sse.write_all(format!("GET /sse/lobby?name=stays HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
        .unwrap();
    let (head, _) = common::read_head(&mut sse);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let mut moving = Ws::connect(addr, "/echo");
    echo(&mut moving, "moves");
    let (new, count, from) = take_over_with(&path, addr, &[]);
    assert_eq!((count, from), (1, old.pid()));
    assert!(old.line("handed over ").starts_with("1 connections"));
    // The stream stays the old process's until the drain timeout ends it.
    let mut rest = Vec::new();
    let _ = sse.read_to_end(&mut rest);
    let (status, stderr) = old.exit();
    assert!(status.success(), "{status}: {stderr}");
    echo(&mut moving, "served by the new one");
    drop(moving);
    new.stop();
}

/// systemd socket activation, as `systemd-socket-activate` does it: the listening socket is
/// descriptor 3, `LISTEN_FDS=1`, `LISTEN_PID` the server's own pid (Python binds it and execs
/// the server in its place). The server listens on it, and hands it over like its own.
#[test]
fn socket_activation_serves_the_passed_socket_and_hands_it_over() {
    let python = ["python3", "python"]
        .into_iter()
        .find(|p| Command::new(p).arg("--version").output().is_ok());
    let Some(python) = python else {
        eprintln!("\n*** no python3: SKIPPING socket activation ***\n");
        return;
    };
    let path = control_path("ctl");
    let p = path.to_str().unwrap();
    let exec = r#"
import os, socket, sys
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(16)
os.dup2(s.fileno(), 3)
os.set_inheritable(3, True)
os.environ["LISTEN_FDS"] = "1"
os.environ["LISTEN_PID"] = str(os.getpid())
print("passed 127.0.0.1:%d" % s.getsockname()[1], flush=True)
os.execv(sys.argv[1], sys.argv[1:])
"#;
    let mut child = Command::new(python)
        .args(["-c", exec, BIN, "serve", "--workers", "2", "--control", p])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn python");
    let (tx, lines) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let old = Proc {
        child: Some(child),
        lines,
        stderr: None,
    };
    let passed = old.line("passed ");
    let addr: SocketAddr = old.line("listening on http://").parse().unwrap();
    assert_eq!(addr.to_string(), passed);
    let mut ws = Ws::connect(addr, "/echo");
    echo(&mut ws, "through the passed socket");
    let (new, count) = take_over(&path, addr);
    assert_eq!(count, 1);
    handed_over(old, 1);
    echo(&mut ws, "moved");
    echo(
        &mut Ws::connect(addr, "/echo"),
        "accepted by the new process",
    );
    drop(ws);
    new.stop();
}

#[test]
fn connections_the_new_process_declines_stay_with_the_old_one() {
    let path = control_path("ctl");
    let (old, addr) = serve_control_with(&path, &["--drain-timeout", "1s"]);
    let mut conns: Vec<Ws> = (0..10).map(|_| Ws::connect(addr, "/echo")).collect();
    echo(conns.last_mut().unwrap(), "open");
    // Room for five: the other five are declined, and served on by the old process.
    let (new, count, from) = take_over_with(&path, addr, &["--max-connections", "5"]);
    assert_eq!((count, from), (5, old.pid()));
    assert!(old.line("handed over ").starts_with("5 connections"));
    for ws in &mut conns {
        echo(ws, "served by one or the other");
    }
    // The old process closes its five with 1001 at the drain timeout, and exits 0 (after
    // its close timeout: these clients do not answer).
    let (status, stderr) = old.exit();
    assert!(status.success(), "{status}: {stderr}");
    let mut closed = 0;
    for ws in &mut conns {
        // The old process is gone: what it sent has arrived.
        ws.stream.set_nonblocking(true).unwrap();
        let pending = ws.stream.peek(&mut [0; 1]).is_ok();
        ws.stream.set_nonblocking(false).unwrap();
        if pending {
            assert_eq!(ws.expect_close().0, Some(1001));
            closed += 1;
        } else {
            echo(ws, "the new process's");
        }
    }
    assert_eq!(closed, 5);
    drop(conns);
    new.stop();
}

#[test]
fn parked_connections_move_too() {
    let path = control_path("ctl");
    let flags = ["--park-idle", "50ms", "--max-connections-per-client", "0"];
    let (old, addr) = serve_control_with(&path, &flags);
    let parked = || common::metric_of(addr, "wsduplex_parked_connections");
    let mut clients: Vec<Ws> = (0..20).map(|_| Ws::connect(addr, "/echo")).collect();
    for (i, ws) in clients.iter_mut().enumerate() {
        echo(ws, &format!("before {i}"));
    }
    let tuples: Vec<_> = clients.iter().map(tuple).collect();
    common::eventually(
        "20 connections parked",
        std::time::Duration::from_secs(20),
        || parked() == 20,
    );
    let (new, count, from) = take_over_with(&path, addr, &flags);
    assert_eq!((count, from), (20, old.pid()));
    handed_over(old, 20);
    for (i, ws) in clients.iter_mut().enumerate() {
        echo(ws, &format!("after {i}"));
    }
    assert_eq!(clients.iter().map(tuple).collect::<Vec<_>>(), tuples);
    // And they park in the new process.
    common::eventually("parked again", std::time::Duration::from_secs(20), || {
        parked() == 20
    });
    drop(clients);
    new.stop();
}
