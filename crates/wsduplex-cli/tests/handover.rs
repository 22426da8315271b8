//! `wsduplex serve --control` / `--take-over`: live /echo connections move to a new process
//! without a close (docs/handover.md). Real processes, real clients: our library client, raw
//! frames (a fragmented message half sent across the hand-over), Python `websockets` and
//! Node `ws` with permessage-deflate, hundreds of idle connections.
//!
//! Nothing sleeps: each step waits for a line the processes print, a process's exit, or an
//! echo.
#![cfg(unix)]

mod common;
#[path = "../../../tests/interop/peer.rs"]
mod peer;

use common::{send_signal, wait_child, Ws, BIN};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// Bound of one wait on a process line: a debug build moves hundreds of connections.
const LONG: Duration = Duration::from_secs(60);

const TEXT: u8 = 1;
const CONT: u8 = 0;

/// A `wsduplex serve` whose stdout lines arrive on a channel.
struct Proc {
    child: Option<Child>,
    lines: mpsc::Receiver<String>,
    stderr: Option<JoinHandle<String>>,
}

impl Proc {
    fn spawn(args: &[&str], env: &[(&str, &str)]) -> Self {
        Self::spawn_bin(BIN, args, env)
    }

    fn spawn_bin(bin: &str, args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut child = Command::new(bin)
            .arg("serve")
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn wsduplex serve");
        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().expect("stdout");
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let stderr = child.stderr.take().expect("stderr");
        let stderr = thread::spawn(move || {
            let mut s = String::new();
            let _ = BufReader::new(stderr).read_to_string(&mut s);
            s
        });
        Self {
            child: Some(child),
            lines,
            stderr: Some(stderr),
        }
    }

    /// The next stdout line, which must start with `prefix`; returns the rest.
    fn line(&self, prefix: &str) -> String {
        let line = self
            .lines
            .recv_timeout(LONG)
            .unwrap_or_else(|_| panic!("no line {prefix:?} within {LONG:?}"));
        line.strip_prefix(prefix)
            .unwrap_or_else(|| panic!("expected {prefix:?}, got {line:?}"))
            .to_owned()
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Waits for the exit; returns the status and stderr.
    fn exit(mut self) -> (ExitStatus, String) {
        let status = wait_child(self.child.take().expect("running"));
        let stderr = self.stderr.take().map(|h| h.join().unwrap_or_default());
        (status, stderr.unwrap_or_default())
    }

    /// SIGTERM; checks exit 0.
    fn stop(self) {
        common::wait_until_caught(self.pid(), 15);
        send_signal(self.pid(), "TERM");
        let (status, stderr) = self.exit();
        assert!(status.success(), "{status}: {stderr}");
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A control socket's path in a fresh directory, removed with it at the end of the test.
struct ControlPath(PathBuf);

impl std::ops::Deref for ControlPath {
    type Target = std::path::Path;
    fn deref(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for ControlPath {
    fn drop(&mut self) {
        if let Some(dir) = self.0.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn control_path(name: &str) -> ControlPath {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "wsduplex-handover-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    ControlPath(dir.join(name))
}

/// Both processes' flags: hundreds of connections come from one address.
const FLAGS: [&str; 3] = ["--deflate", "--max-connections-per-client", "0"];

/// `serve --control PATH` on a free port, two workers.
fn serve_control(path: &std::path::Path) -> (Proc, SocketAddr) {
    let p = path.to_str().expect("utf-8 path");
    let old = Proc::spawn(
        &[
            "--listen",
            "127.0.0.1:0",
            "--workers",
            "2",
            "--control",
            p,
            FLAGS[0],
            FLAGS[1],
            FLAGS[2],
        ],
        &[],
    );
    let addr = old.line("listening on http://").parse().expect("address");
    (old, addr)
}

/// `serve --take-over PATH`, once it has taken over: the count it reports.
fn take_over(path: &std::path::Path, addr: SocketAddr) -> (Proc, usize) {
    let p = path.to_str().unwrap();
    let new = Proc::spawn(&["--take-over", p, FLAGS[0], FLAGS[1], FLAGS[2]], &[]);
    assert_eq!(new.line("listening on http://"), addr.to_string());
    let took = new.line("took over ");
    let count = took.split(' ').next().unwrap().parse().expect("count");
    (new, count)
}

/// The old process after a hand-over: it says so and exits 0.
fn handed_over(old: Proc, count: usize) {
    let line = old.line("handed over ");
    assert!(line.starts_with(&format!("{count} connections")), "{line}");
    let (status, stderr) = old.exit();
    assert!(status.success(), "old process: {status}: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// A round trip on a raw connection.
fn echo(ws: &mut Ws, text: &str) {
    ws.send(TEXT, text.as_bytes());
    assert_eq!(ws.read_message(), (TEXT, text.as_bytes().to_vec()));
}

/// The four-tuple as the client sees it.
fn tuple(ws: &Ws) -> (SocketAddr, SocketAddr) {
    (
        ws.stream.local_addr().unwrap(),
        ws.stream.peer_addr().unwrap(),
    )
}

/// A Python or Node client driven by lines (tests/interop/*/handover_client.*).
struct LineClient {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    port: String,
}

impl LineClient {
    fn start(peer: peer::Peer, addr: SocketAddr) -> Option<Self> {
        let mut cmd = peer.command("handover_client", "the hand-over with this peer")?;
        let mut child = cmd
            .arg(format!("ws://{addr}/echo"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn peer");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let stdin = child.stdin.take();
        let mut c = Self {
            child,
            stdin,
            lines,
            port: String::new(),
        };
        c.port = c.next("open ");
        Some(c)
    }

    fn next(&self, prefix: &str) -> String {
        let line = self.lines.recv_timeout(LONG).expect("peer line");
        line.strip_prefix(prefix)
            .unwrap_or_else(|| panic!("peer: expected {prefix:?}, got {line:?}"))
            .to_owned()
    }

    fn echo(&mut self, text: &str) {
        writeln!(self.stdin.as_mut().unwrap(), "send {text}").unwrap();
        assert_eq!(self.next("echo "), text);
    }

    /// Starts `n` compressed messages at once; [`LineClient::burst_done`] checks their echoes.
    fn burst(&mut self, n: usize) {
        writeln!(self.stdin.as_mut().unwrap(), "burst {n}").unwrap();
    }

    fn burst_done(&mut self, n: usize) {
        assert_eq!(self.next("burst "), n.to_string());
    }

    /// Still the same TCP connection, closed normally at the end.
    fn finish(mut self) {
        writeln!(self.stdin.as_mut().unwrap(), "port").unwrap();
        assert_eq!(
            self.next("port "),
            self.port,
            "the peer's connection changed"
        );
        drop(self.stdin.take());
        assert_eq!(self.next(""), "closed");
        let status = wait_child(self.child);
        assert!(status.success(), "peer: {status}");
    }
}

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

    // Compressed messages in flight while the connections move.
    for p in &mut peers {
        p.burst(2000);
    }
    let (new, count) = take_over(&path, addr);
    assert_eq!(count, 1 + peers.len() + 1 + idle.len());
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

/// Sends a message; whether its echo comes back (`false`: the connection was closed).
fn alive(ws: &mut Ws) -> bool {
    let _ = ws
        .stream
        .write_all(&common::frame(true, 0, TEXT, b"ping?", Some([1, 2, 3, 4])));
    let mut byte = [0u8; 1];
    match common::read_some(&mut ws.stream, &mut byte) {
        Ok(0) | Err(_) => false,
        Ok(_) => {
            // The rest of the echo: a 2-byte header and "ping?".
            let mut rest = [0u8; 6];
            ws.stream.read_exact(&mut rest).unwrap();
            assert_eq!(&rest[1..], b"ping?");
            true
        }
    }
}

#[test]
fn a_new_process_killed_mid_transfer_leaves_the_rest_with_the_old_one() {
    let path = control_path("ctl");
    let (old, addr) = serve_control(&path);
    let mut conns: Vec<Ws> = (0..40).map(|_| Ws::connect(addr, "/echo")).collect();
    echo(conns.last_mut().unwrap(), "open");
    let hook = [("WSDUPLEX_TEST_HOOK_TAKE_OVER_EXIT_AFTER", "10")];
    let dying = Proc::spawn(&["--take-over", path.to_str().unwrap()], &hook);
    let (status, stderr) = dying.exit();
    assert_eq!(status.code(), Some(75), "{stderr}");
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
    let hook = [("WSDUPLEX_TEST_HOOK_TAKE_OVER_EXIT_AFTER", "5")];
    let dying = Proc::spawn(&["--take-over", path.to_str().unwrap()], &hook);
    assert_eq!(dying.exit().0.code(), Some(75));
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

#[test]
fn connections_that_cannot_move_are_served_until_the_drain_timeout_then_get_1001() {
    let path = control_path("ctl");
    let p = path.to_str().unwrap();
    let args = [
        "--listen",
        "127.0.0.1:0",
        "--control",
        p,
        "--drain-timeout",
        "2s",
    ];
    let old = Proc::spawn(&args, &[]);
    let addr: SocketAddr = old.line("listening on http://").parse().unwrap();
    let mut member = Ws::connect(addr, "/chat/lobby?name=stays");
    assert!(String::from_utf8_lossy(&member.read_message().1).contains("welcome"));
    let mut moving = Ws::connect(addr, "/echo");
    echo(&mut moving, "moves");
    let new = Proc::spawn(&["--take-over", p], &[]);
    new.line("listening on http://");
    assert_eq!(
        new.line("took over "),
        "1 connections from process ".to_owned() + &old.pid().to_string()
    );
    assert!(old.line("handed over ").starts_with("1 connections"));
    // The chat member is still the old process's: it is served on.
    member.send(TEXT, br#"{"type":"message","text":"still here"}"#);
    let said = member.read_message().1;
    assert!(
        String::from_utf8_lossy(&said).contains("still here"),
        "{said:?}"
    );
    // Then, at the drain timeout, 1001; and the old process exits 0.
    assert_eq!(member.expect_close().0, Some(1001));
    member.send_close(1001, "");
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

/// Benchmark, not a test: the pause a connection sees during a hand-over, and the total
/// time, with many connections (docs/handover.md shows the figures). Idle connections make
/// up the crowd; a sample of them echo in lockstep all along, and each one's longest gap
/// between two echoes during the hand-over is its pause.
///
/// `WSDUPLEX_HANDOVER_BIN=target/release/wsduplex cargo test -p wsduplex-cli --test handover
/// -- --ignored --nocapture pause` (`WSDUPLEX_HANDOVER_CONNECTIONS`, default 10000).
#[test]
#[ignore = "a benchmark: run with --ignored --nocapture"]
fn pause_per_connection() {
    use std::time::Instant;
    let bin = std::env::var("WSDUPLEX_HANDOVER_BIN").unwrap_or_else(|_| BIN.to_owned());
    let n: usize = std::env::var("WSDUPLEX_HANDOVER_CONNECTIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let sampled = 200.min(n);
    let path = control_path("ctl");
    let p = path.to_str().unwrap();
    let limits = [
        "--max-connections",
        "0",
        "--max-connections-per-client",
        "0",
    ];
    let mut args = vec!["--listen", "127.0.0.1:0", "--workers", "2", "--control", p];
    args.extend(limits);
    let old = Proc::spawn_bin(&bin, &args, &[]);
    let addr: SocketAddr = old.line("listening on http://").parse().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut config = wsduplex::ClientConfig::default();
    config.proxy = wsduplex::ProxySetting::None;
    config.deflate = None;
    let url = format!("ws://{addr}/echo");
    let connected = Instant::now();
    let mut sockets = rt.block_on(async {
        let mut all = Vec::with_capacity(n);
        for chunk in (0..n).collect::<Vec<_>>().chunks(256) {
            let mut set = tokio::task::JoinSet::new();
            for _ in chunk {
                let (url, config) = (url.clone(), config.clone());
                set.spawn(async move { wsduplex::connect_with(url, &config).await });
            }
            while let Some(r) = set.join_next().await {
                all.push(r.unwrap().expect("connect").0);
            }
        }
        all
    });
    eprintln!("{n} connections in {:?}", connected.elapsed());
    // 0: before the hand-over, 1: during it, 2: stop.
    let phase = Arc::new(AtomicUsize::new(0));
    let trips = Arc::new(AtomicUsize::new(0));
    // Spread over the crowd (connections are asked in about the order they came).
    let step = n / sampled;
    let mut picked = Vec::with_capacity(sampled);
    for i in (0..sampled).rev() {
        picked.push(sockets.swap_remove(i * step));
    }
    let probes: Vec<_> = picked
        .into_iter()
        .map(|mut ws| {
            let (phase, trips) = (phase.clone(), trips.clone());
            rt.spawn(async move {
                let (mut before, mut during) = (Duration::ZERO, Duration::ZERO);
                let mut last = Instant::now();
                loop {
                    let now_phase = phase.load(Ordering::Relaxed);
                    if now_phase == 2 {
                        break;
                    }
                    ws.send(wsduplex::Message::text("probe"))
                        .await
                        .expect("send");
                    match ws.recv().await {
                        Some(Ok(wsduplex::Message::Text(_))) => {}
                        other => panic!("probe: {other:?}"),
                    }
                    let now = Instant::now();
                    let gap = now - last;
                    last = now;
                    let slot = if now_phase == 0 {
                        &mut before
                    } else {
                        &mut during
                    };
                    *slot = (*slot).max(gap);
                    trips.fetch_add(1, Ordering::Relaxed);
                }
                (before, during)
            })
        })
        .collect();
    let wait_trips = |k: usize| {
        let start = trips.load(Ordering::Relaxed);
        while trips.load(Ordering::Relaxed) < start + k {
            thread::yield_now();
        }
    };
    wait_trips(sampled * 50);
    phase.store(1, Ordering::Relaxed);
    let t0 = Instant::now();
    let new = Proc::spawn_bin(
        &bin,
        &["--take-over", p, limits[0], limits[1], limits[2], limits[3]],
        &[],
    );
    new.line("listening on http://");
    let took = new.line("took over ");
    let total = t0.elapsed();
    handed_over(old, n);
    wait_trips(sampled * 50);
    phase.store(2, Ordering::Relaxed);
    let gaps: Vec<(Duration, Duration)> = rt.block_on(async {
        let mut out = Vec::new();
        for p in probes {
            out.push(p.await.unwrap());
        }
        out
    });
    let pct = |mut v: Vec<Duration>, q: f64| {
        v.sort();
        v[((v.len() - 1) as f64 * q).round() as usize]
    };
    let during: Vec<_> = gaps.iter().map(|g| g.1).collect();
    let before: Vec<_> = gaps.iter().map(|g| g.0).collect();
    eprintln!("took over {took}; total {total:?} from starting the new process");
    eprintln!(
        "pause per connection ({sampled} sampled of {n}): p50 {:?}, p99 {:?}, max {:?}",
        pct(during.clone(), 0.5),
        pct(during.clone(), 0.99),
        pct(during, 1.0)
    );
    eprintln!(
        "longest gap before the hand-over: p50 {:?}, p99 {:?}, max {:?}",
        pct(before.clone(), 0.5),
        pct(before.clone(), 0.99),
        pct(before, 1.0)
    );
    drop(sockets);
    new.stop();
}

#[test]
fn connections_the_new_process_declines_stay_with_the_old_one() {
    let path = control_path("ctl");
    let p = path.to_str().unwrap();
    let args = [
        "--listen",
        "127.0.0.1:0",
        "--control",
        p,
        "--drain-timeout",
        "1s",
    ];
    let old = Proc::spawn(&args, &[]);
    let addr: SocketAddr = old.line("listening on http://").parse().unwrap();
    let mut conns: Vec<Ws> = (0..10).map(|_| Ws::connect(addr, "/echo")).collect();
    echo(conns.last_mut().unwrap(), "open");
    // Room for five: the other five are declined, and served on by the old process.
    let new = Proc::spawn(&["--take-over", p, "--max-connections", "5"], &[]);
    new.line("listening on http://");
    assert!(new.line("took over ").starts_with("5 connections"));
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
