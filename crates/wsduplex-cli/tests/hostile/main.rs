//! Hostile clients against the real `wsduplex serve` (issue 6, section 3).
//!
//! Each attack runs while well-behaved clients keep chatting: two members of a chat room
//! exchanging messages and an `/echo` client, from another client address (127.0.0.2), on a
//! thread of their own (the [`Chatter`]). Each test checks three things: those clients are
//! not disturbed (every message arrives, in order, and every round trip takes under 2 s), the
//! server's memory stays bounded (VmRSS from `/proc/PID/status` before and after, against a
//! generous bound), and the attacker gets the documented answer. The "Hostile clients and
//! soak" table of docs/evidence.md lists the same attacks with the figures these tests print (run
//! them with `--nocapture` to see them).
//!
//! Nothing sleeps to synchronise: conditions are polled with a deadline, and a socket timeout
//! is only ever the pace of an attack or the bound of a wait. The tests take turns (a lock):
//! the latency bound and the memory figures are then those of one attack at a time.

#[path = "../common/mod.rs"]
mod common;
mod deflate;
mod frames;
mod handshakes;
mod headers;
mod slow_readers;
mod utf8;

use common::*;
use std::io::{ErrorKind, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};
use wsduplex::client::{client_handshake, ClientConfig, Target};
use wsduplex::{CloseCode, Message, WebSocket};

/// The well-behaved clients' address. The attackers connect from 127.0.0.1, so the
/// per-client limit counts the two apart.
const GOOD: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
/// A round of chat (a message to both members, an echo) must come back within this.
const ROUND_TRIP_LIMIT: Duration = Duration::from_secs(2);
/// The chatter's pace: a round every 10 ms or so, light enough not to be the load.
const PACE: Duration = Duration::from_millis(10);
const MASK: Option<[u8; 4]> = Some([0x5a, 0x0f, 0xc3, 0x96]);

/// One attack at a time (see the module docs).
fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

// ---------------------------------------------------------------------------------------
// The well-behaved clients
// ---------------------------------------------------------------------------------------

/// Two chat members (`alice` and `bob` in room `calm`) and an `/echo` client, all from
/// [`GOOD`], built on the `wsduplex` library (which answers the server's keepalive pings).
/// Each round, alice says `round K`; both members must see exactly that message next (ids
/// increasing: nothing lost, nothing reordered), the echo client must get `echo K` back, and
/// with `fresh` a new connection must get `200` from `/healthz`, all within
/// [`ROUND_TRIP_LIMIT`].
struct Chatter {
    stop: Arc<AtomicBool>,
    rounds: Arc<AtomicU64>,
    report: mpsc::Receiver<ChatReport>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Debug, Default)]
struct ChatReport {
    rounds: u64,
    slowest: Duration,
    error: Option<String>,
}

type GoodWs = WebSocket<tokio::net::TcpStream>;

impl Chatter {
    /// Starts the clients and waits for their first rounds.
    fn start(addr: SocketAddr, fresh: bool) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let rounds = Arc::new(AtomicU64::new(0));
        let (tx, report) = mpsc::channel();
        let (s, r) = (stop.clone(), rounds.clone());
        let thread = thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("chatter runtime");
            let _ = tx.send(rt.block_on(chat(addr, fresh, s, r)));
        });
        let chatter = Self {
            stop,
            rounds,
            report,
            thread: Some(thread),
        };
        chatter.wait_rounds(3);
        chatter
    }

    /// Waits until `more` rounds have completed after this call (so the clients are still
    /// served now); fails at once if the chatter has failed.
    fn wait_rounds(&self, more: u64) {
        let target = self.rounds.load(Ordering::Acquire) + more;
        let start = Instant::now();
        while self.rounds.load(Ordering::Acquire) < target {
            if let Ok(r) = self.report.try_recv() {
                panic!("the well-behaved clients were disturbed: {r:?}");
            }
            assert!(
                start.elapsed() < TIMEOUT,
                "the well-behaved clients made no progress for {TIMEOUT:?}"
            );
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// Stops the clients (closing cleanly) and checks that they were never disturbed.
    fn finish(mut self) {
        self.stop.store(true, Ordering::Release);
        let report = self
            .report
            .recv_timeout(TIMEOUT)
            .expect("the chatter did not stop");
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        assert!(
            report.error.is_none(),
            "the well-behaved clients were disturbed: {report:?}"
        );
        assert!(report.slowest < ROUND_TRIP_LIMIT, "{report:?}");
        eprintln!(
            "[chatter] {} rounds, the slowest took {:?}",
            report.rounds, report.slowest
        );
    }
}

impl Drop for Chatter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

async fn open_good(addr: SocketAddr, path: &str) -> Result<GoodWs, String> {
    let socket = tokio::net::TcpSocket::new_v4().map_err(|e| e.to_string())?;
    socket
        .bind(SocketAddr::new(GOOD, 0))
        .map_err(|e| format!("bind {GOOD}: {e}"))?;
    let tcp = socket
        .connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    tcp.set_nodelay(true).map_err(|e| e.to_string())?;
    let target = Target::parse(&format!("ws://{addr}{path}")).map_err(|e| e.to_string())?;
    let (ws, _) = client_handshake(tcp, &target, &ClientConfig::default())
        .await
        .map_err(|e| format!("{path}: {e}"))?;
    Ok(ws)
}

async fn chat(
    addr: SocketAddr,
    fresh: bool,
    stop: Arc<AtomicBool>,
    rounds: Arc<AtomicU64>,
) -> ChatReport {
    let mut report = ChatReport::default();
    let result = async {
        let mut alice = open_good(addr, "/chat/calm?name=alice").await?;
        let mut bob = open_good(addr, "/chat/calm?name=bob").await?;
        let mut echo = open_good(addr, "/echo").await?;
        let (mut alice_last, mut bob_last) = (0, 0);
        let mut k = 0;
        while !stop.load(Ordering::Acquire) {
            k += 1;
            let said = format!("round {k}");
            let echoed = format!("echo {k}");
            let start = Instant::now();
            let round = async {
                let json = serde_json::json!({"type": "message", "text": said}).to_string();
                alice
                    .send(Message::text(json))
                    .await
                    .map_err(|e| e.to_string())?;
                echo.send(Message::text(echoed.clone()))
                    .await
                    .map_err(|e| e.to_string())?;
                tokio::try_join!(
                    next_chat(&mut alice, &said, &mut alice_last),
                    next_chat(&mut bob, &said, &mut bob_last),
                    next_echo(&mut echo, &echoed),
                    async {
                        match fresh {
                            true => healthz(addr).await,
                            false => Ok(()),
                        }
                    },
                )
            };
            match tokio::time::timeout(ROUND_TRIP_LIMIT, round).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(format!("round {k}: {e}")),
                Err(_) => return Err(format!("round {k}: not back within {ROUND_TRIP_LIMIT:?}")),
            }
            report.slowest = report.slowest.max(start.elapsed());
            report.rounds = k;
            rounds.store(k, Ordering::Release);
            tokio::time::sleep(PACE).await;
        }
        for ws in [&mut alice, &mut bob, &mut echo] {
            let close = async {
                ws.close(CloseCode::NORMAL, "").await?;
                while let Some(item) = ws.recv().await {
                    item?;
                }
                Ok::<(), wsduplex::Error>(())
            };
            match tokio::time::timeout(ROUND_TRIP_LIMIT, close).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(format!("closing: {e}")),
                Err(_) => return Err("closing: no close handshake".to_string()),
            }
        }
        Ok(())
    }
    .await;
    report.error = result.err();
    report
}

/// The next chat message a member sees must be `want`, with a larger id than the last.
async fn next_chat(ws: &mut GoodWs, want: &str, last_id: &mut u64) -> Result<(), String> {
    loop {
        match ws.recv().await {
            Some(Ok(Message::Text(t))) => {
                let v: serde_json::Value =
                    serde_json::from_str(t.as_str()).map_err(|e| format!("bad json: {e}"))?;
                match v["type"].as_str() {
                    Some("message") => {}
                    Some("error") => return Err(format!("error event {v}")),
                    _ => continue, // welcome, joined, left
                }
                let id = v["id"].as_u64().ok_or_else(|| format!("no id in {v}"))?;
                if id <= *last_id || v["text"] != want {
                    return Err(format!("expected {want:?} after id {last_id}, got {v}"));
                }
                *last_id = id;
                return Ok(());
            }
            Some(Ok(Message::Close(c))) => return Err(format!("closed by the server: {c:?}")),
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e.to_string()),
            None => return Err("connection ended".into()),
        }
    }
}

async fn next_echo(ws: &mut GoodWs, want: &str) -> Result<(), String> {
    loop {
        match ws.recv().await {
            Some(Ok(Message::Text(t))) if t.as_str() == want => return Ok(()),
            Some(Ok(m @ (Message::Text(_) | Message::Binary(_)))) => {
                return Err(format!("expected echo {want:?}, got {m:?}"))
            }
            Some(Ok(Message::Close(c))) => return Err(format!("closed by the server: {c:?}")),
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e.to_string()),
            None => return Err("connection ended".into()),
        }
    }
}

/// A new connection from [`GOOD`] gets `200 ok` from `/healthz`.
async fn healthz(addr: SocketAddr) -> Result<(), String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let socket = tokio::net::TcpSocket::new_v4().map_err(|e| e.to_string())?;
    socket
        .bind(SocketAddr::new(GOOD, 0))
        .map_err(|e| e.to_string())?;
    let mut tcp = socket.connect(addr).await.map_err(|e| e.to_string())?;
    tcp.write_all(format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut answer = Vec::new();
    tcp.read_to_end(&mut answer)
        .await
        .map_err(|e| e.to_string())?;
    match answer.starts_with(b"HTTP/1.1 200 ") {
        true => Ok(()),
        false => Err(format!(
            "/healthz on a new connection: {:?}",
            String::from_utf8_lossy(&answer)
        )),
    }
}

// ---------------------------------------------------------------------------------------
// Measurements
// ---------------------------------------------------------------------------------------

/// A field of `/proc/PID/status` in KiB (`VmRSS`, `VmHWM`).
fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc/PID/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().strip_suffix(" kB")?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

fn rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmRSS")
}

/// The server's memory over an attack: its RSS before, its peak and its RSS after.
struct Memory {
    pid: u32,
    before_kib: u64,
}

impl Memory {
    fn before(server: &Server) -> Self {
        Self {
            pid: server.pid(),
            before_kib: rss_kib(server.pid()),
        }
    }

    /// Checks that neither the peak (VmHWM, the most the process ever held) nor the RSS now
    /// grew by more than `bound_mib` over the RSS before the attack; prints the figures.
    fn check(&self, what: &str, bound_mib: u64) {
        let (now, peak) = (rss_kib(self.pid), status_kib(self.pid, "VmHWM"));
        eprintln!(
            "[{what}] server RSS {} KiB before, peak {} KiB (+{} KiB), {} KiB after",
            self.before_kib,
            peak,
            peak.saturating_sub(self.before_kib),
            now
        );
        assert!(
            peak.saturating_sub(self.before_kib) <= bound_mib << 10,
            "{what}: server peak RSS {peak} KiB, {} KiB before: over the {bound_mib} MiB bound",
            self.before_kib
        );
    }
}

/// A TCP connection from `source` (std has no bind-before-connect: tokio's socket does it).
fn connect_from(addr: SocketAddr, source: IpAddr) -> TcpStream {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let tcp = rt
        .block_on(async {
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.bind(SocketAddr::new(source, 0))?;
            tokio::time::timeout(TIMEOUT, socket.connect(addr)).await?
        })
        .expect("connect");
    let s = tcp.into_std().expect("std stream");
    s.set_nonblocking(false).expect("blocking");
    s.set_read_timeout(Some(TIMEOUT)).expect("read timeout");
    s.set_write_timeout(Some(TIMEOUT)).expect("write timeout");
    s.set_nodelay(true).expect("nodelay");
    s
}

/// Reads an HTTP answer up to the server's close; `None` if the connection was reset
/// before any byte arrived.
fn read_answer(s: &mut TcpStream) -> Option<HttpResponse> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        match read_some(s, &mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
            Err(e) => panic!("reading an http answer: {e} (got {} bytes)", buf.len()),
        }
    }
    if buf.is_empty() {
        return None;
    }
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no http head in {text:?}"));
    let status = head
        .strip_prefix("HTTP/1.1 ")
        .and_then(|r| r.get(..3))
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("bad status line in {head:?}"));
    Some(HttpResponse {
        status,
        head: head.to_string(),
        body: body.as_bytes().to_vec(),
    })
}

/// `GET /metrics` from [`GOOD`] (so that it never counts against the attacker's address).
fn metrics(addr: SocketAddr) -> String {
    let mut s = connect_from(addr, GOOD);
    s.write_all(format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
        .expect("send /metrics");
    let r = read_answer(&mut s).expect("an answer from /metrics");
    assert_eq!(r.status, 200, "{r:?}");
    r.body_str()
}

fn connections_open(addr: SocketAddr) -> u64 {
    metric(&metrics(addr), "wsduplex_connections_open")
}

/// Opens a WebSocket to `path` from the attacker's address; the status and the stream.
fn upgrade(addr: SocketAddr, path: &str) -> (u16, TcpStream, Vec<u8>) {
    let mut s = connect(addr);
    s.write_all(upgrade_request(addr, path, "").as_bytes())
        .expect("send upgrade");
    let (head, rest) = read_head(&mut s);
    (head[9..12].parse().expect("a status"), s, rest)
}

/// Expects the peer to have closed (EOF, or a reset when it closed with our bytes unread),
/// having sent nothing more.
fn assert_closed_silently(s: &mut TcpStream, what: &str) {
    let mut buf = [0u8; 1024];
    match read_some(s, &mut buf) {
        Ok(0) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        Ok(n) => panic!(
            "{what}: expected the connection closed, got {:?}",
            String::from_utf8_lossy(&buf[..n])
        ),
        Err(e) => panic!("{what}: expected the connection closed, got {e}"),
    }
}

/// Reads frames until a close; the data frames before it are skipped (the hub's events).
fn close_code(ws: &mut Ws) -> Option<u16> {
    loop {
        let f = ws.read_frame();
        if f.opcode == CLOSE {
            return f.close().0;
        }
    }
}

// ---------------------------------------------------------------------------------------
// Attackers
// ---------------------------------------------------------------------------------------

/// Opens `path` from the attacker's address; for a chat room, reads the welcome first.
fn attacker(addr: SocketAddr, path: &str) -> Ws {
    let mut ws = Ws::connect(addr, path);
    if path.starts_with("/chat") {
        let (op, welcome) = ws.read_message();
        assert_eq!(op, TEXT);
        assert!(welcome.starts_with(br#"{"type":"welcome""#), "{welcome:?}");
    }
    ws
}

/// Writes `bytes` from a thread (stopping at the first failed write, as when the server
/// closes); returns how much went through.
fn send_in_background(s: &TcpStream, bytes: Vec<u8>) -> JoinHandle<usize> {
    let mut w = s.try_clone().expect("clone");
    thread::spawn(move || {
        let mut written = 0;
        for chunk in bytes.chunks(256 << 10) {
            if w.write_all(chunk).is_err() {
                break;
            }
            written += chunk.len();
        }
        written
    })
}

/// Writes `unit` over and over until a write makes no progress for 500 ms (the server has
/// stopped reading: backpressure); returns the bytes that went through.
fn press_until_blocked(s: &mut TcpStream, unit: &[u8]) -> usize {
    press_with_until_blocked(s, |_| unit.to_vec())
}

/// Writes `unit(0)`, `unit(1)`, ... back to back until a write makes no progress for
/// 500 ms (the server has stopped reading: backpressure); returns the bytes that went
/// through. Numbered units let a test check the order of what comes back.
fn press_with_until_blocked(s: &mut TcpStream, mut unit: impl FnMut(usize) -> Vec<u8>) -> usize {
    // About 64 KiB per write, so a blocked write is noticed within one timeout.
    let mut k = 0;
    let mut pending: Vec<u8> = Vec::new();
    let mut next_batch = |pending: &mut Vec<u8>| {
        while pending.len() < 64 << 10 {
            pending.extend_from_slice(&unit(k));
            k += 1;
        }
    };
    s.set_write_timeout(Some(Duration::from_millis(500)))
        .expect("write timeout");
    let mut written = 0;
    let start = Instant::now();
    loop {
        if pending.is_empty() {
            next_batch(&mut pending);
        }
        // Each write goes on where the last one stopped: the stream stays well-formed.
        match s.write(&pending) {
            Ok(n) => {
                written += n;
                pending.drain(..n);
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => panic!("pressing: {e} after {written} bytes"),
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the server kept reading: {written} bytes"
        );
    }
    s.set_write_timeout(Some(TIMEOUT)).expect("write timeout");
    written
}
