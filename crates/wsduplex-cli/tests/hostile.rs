//! Hostile clients against the real `wsduplex serve` (issue 6, section 3).
//!
//! Each attack runs while well-behaved clients keep chatting: two members of a chat room
//! exchanging messages and an `/echo` client, from another client address (127.0.0.2), on a
//! thread of their own (the [`Chatter`]). Each test checks three things: those clients are
//! not disturbed (every message arrives, in order, and every round trip takes under 2 s), the
//! server's memory stays bounded (VmRSS from `/proc/PID/status` before and after, against a
//! generous bound), and the attacker gets the documented answer. The README's "Hostile
//! clients and soak" table lists the same attacks with the figures these tests print (run
//! them with `--nocapture` to see them).
//!
//! Nothing sleeps to synchronise: conditions are polled with a deadline, and a socket timeout
//! is only ever the pace of an attack or the bound of a wait. The tests take turns (a lock):
//! the latency bound and the memory figures are then those of one attack at a time.

mod common;

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
// Slow handshakes
// ---------------------------------------------------------------------------------------

/// A client that sends its request one byte every 100 ms (15 s for the whole request) is cut
/// when the handshake timeout runs out, with no answer, while others chat.
#[test]
fn slowloris_is_cut_at_the_handshake_timeout_without_an_answer() {
    let _serial = serial();
    let server = Server::start_on_loopback(&["--handshake-timeout", "1s"]);
    let chatter = Chatter::start(server.addr, true);
    let memory = Memory::before(&server);
    let request = upgrade_request(server.addr, "/echo", "");
    let mut s = connect(server.addr);
    // The pace of the attack: one byte, then up to 100 ms for an answer.
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .expect("read timeout");
    let start = Instant::now();
    let mut sent = 0;
    loop {
        if s.write_all(&request.as_bytes()[sent..sent + 1]).is_err() {
            break; // closed while we were writing
        }
        sent += 1;
        let mut buf = [0u8; 1024];
        match read_some(&mut s, &mut buf) {
            Ok(0) => break,
            Ok(n) => panic!(
                "a slow request got an answer: {:?}",
                String::from_utf8_lossy(&buf[..n])
            ),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
            Err(e) => panic!("slowloris: {e}"),
        }
        assert!(sent < request.len(), "the whole request went through");
    }
    let cut = start.elapsed();
    eprintln!("[slowloris] cut after {cut:?}, {sent} bytes sent");
    assert!(
        cut >= Duration::from_millis(900) && cut < Duration::from_secs(3),
        "cut after {cut:?}, the timeout is 1 s"
    );
    chatter.wait_rounds(3);
    memory.check("slowloris", 16);
    chatter.finish();
    server.stop();
}

/// 2,000 half-sent requests are held at a few KiB each (the per-client limit is lifted here:
/// from one address it would refuse all but 256 at accept, see
/// `slowloris_from_one_address_cannot_lock_out_other_clients`), new clients are served
/// meanwhile, and every one of them is closed when the handshake timeout runs out.
#[test]
fn thousands_of_slowloris_are_held_cheaply_and_all_cut_at_the_timeout() {
    const N: usize = 2_000;
    let _serial = serial();
    let server = Server::start_on_loopback(&[
        "--handshake-timeout",
        "3s",
        "--max-connections-per-client",
        "0",
    ]);
    let addr = server.addr;
    let chatter = Chatter::start(addr, true);
    let memory = Memory::before(&server);
    let baseline = connections_open(addr);
    let request = upgrade_request(addr, "/echo", "");
    let half = &request.as_bytes()[..request.len() / 2];
    let start = Instant::now();
    let mut held: Vec<TcpStream> = (0..N)
        .map(|_| {
            let mut s = connect(addr);
            s.write_all(half).expect("send half a request");
            s
        })
        .collect();
    let opened = start.elapsed();
    // Every one accepted and counted (the last ones may still wait in the listen backlog).
    // The baseline may have counted one of the chatter's /healthz connections.
    let mut open = 0;
    eventually("all the slowloris connections accepted", TIMEOUT, || {
        open = connections_open(addr);
        open + 1 >= baseline + N as u64
    });
    let rss_held = rss_kib(server.pid());
    // New connections (the chatter's /healthz) are served while they are held.
    chatter.wait_rounds(5);
    for (i, s) in held.iter_mut().enumerate() {
        assert_closed_silently(s, &format!("slowloris {i}"));
    }
    let all_cut = start.elapsed();
    eventually("slowloris connections released", TIMEOUT, || {
        connections_open(addr) <= baseline
    });
    let per_connection = (rss_held.saturating_sub(memory.before_kib) << 10) / N as u64;
    eprintln!(
        "[slowloris x{N}] opened in {opened:?}; {open} connections open (baseline {baseline}); \
         RSS +{} KiB held = {per_connection} B each; all cut {all_cut:?} after the first",
        rss_held.saturating_sub(memory.before_kib)
    );
    assert!(all_cut >= Duration::from_secs(3), "cut before the timeout");
    assert!(
        per_connection < 16 << 10,
        "{per_connection} B per connection"
    );
    memory.check("slowloris x2000", 64);
    drop(held);
    chatter.finish();
    server.stop();
}

/// The per-client limit itself: from one address, the 257th WebSocket (and any plain request)
/// gets `429` with `Retry-After: 5` while 256 are open; another address is not affected; a
/// slot frees when a connection closes.
#[test]
fn per_client_limit_answers_429_past_256_connections_from_one_address() {
    let _serial = serial();
    let server = Server::start_on_loopback(&[]);
    let addr = server.addr;
    let chatter = Chatter::start(addr, true);
    let memory = Memory::before(&server);
    let mut held = Vec::new();
    while held.len() < 256 {
        let (status, s, _) = upgrade(addr, "/echo");
        assert_eq!(status, 101, "connection {} refused", held.len() + 1);
        held.push(s);
    }
    let mut refused = 0;
    for i in 0..100 {
        let request = match i % 2 {
            0 => upgrade_request(addr, "/echo", ""),
            _ => format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n\r\n"),
        };
        let r = http(addr, request.as_bytes());
        assert_eq!(r.status, 429, "{r:?}");
        assert_eq!(r.header("retry-after"), Some("5"), "{r:?}");
        assert!(r.body_str().contains("too many connections"), "{r:?}");
        refused += 1;
    }
    // The chatter's new /healthz connections come from another address: served.
    chatter.wait_rounds(5);
    let counted = metric(
        &metrics(addr),
        r#"wsduplex_connections_refused_total{reason="max_connections_per_client"}"#,
    );
    assert_eq!(counted, refused);
    drop(held.pop());
    eventually("a slot freed by a closed connection", TIMEOUT, || {
        let (status, s, _) = upgrade(addr, "/echo");
        if status == 101 {
            held.push(s);
        }
        status == 101
    });
    memory.check("per-client limit", 32);
    drop(held);
    chatter.finish();
    server.stop();
}

// ---------------------------------------------------------------------------------------
// Header floods
// ---------------------------------------------------------------------------------------

/// What a flood of request bytes got.
struct Flood {
    answer: Option<HttpResponse>,
    written: usize,
    /// How the writer stopped: `None` when it wrote everything.
    write_error: Option<ErrorKind>,
}

/// Sends `first`, then `chunk` `repeat` times (forever with `None`) from a thread until a
/// write fails, while this thread reads the answer.
fn flood(addr: SocketAddr, first: Vec<u8>, chunk: Vec<u8>, repeat: Option<usize>) -> Flood {
    let mut s = connect(addr);
    let mut w = s.try_clone().expect("clone");
    let writer = thread::spawn(move || {
        let mut written = 0;
        let mut write = |bytes: &[u8]| -> Result<(), ErrorKind> {
            w.write_all(bytes).map_err(|e| e.kind())?;
            written += bytes.len();
            Ok(())
        };
        let result = write(&first).and_then(|()| {
            let mut i = 0;
            while repeat.is_none_or(|n| i < n) {
                write(&chunk)?;
                i += 1;
            }
            Ok(())
        });
        (written, result.err())
    });
    let answer = read_answer(&mut s);
    drop(s);
    let (written, write_error) = writer.join().expect("writer");
    Flood {
        answer,
        written,
        write_error,
    }
}

fn assert_431(what: &str, answer: Option<&HttpResponse>) {
    let r = answer.unwrap_or_else(|| panic!("{what}: no answer"));
    assert_eq!(r.status, 431, "{what}: {r:?}");
    let body = r.body_str();
    assert!(
        body.ends_with('\n') && body.lines().count() == 1,
        "{what}: {body:?}"
    );
}

/// Heads far over the 8 KiB / 64-field limits get `431` and the connection is closed after
/// at most a few KiB were read: one header of 1 MiB, 10,000 header fields, a header line that
/// never ends (the writer is stopped by the close, not by a timeout), and 500 clients at once
/// each sending a 64 KiB head.
#[test]
fn header_floods_get_431_and_are_not_read_past_the_limit() {
    let _serial = serial();
    // 500 at once from one address: past the per-client default of 256.
    let server = Server::start_on_loopback(&["--max-connections-per-client", "0"]);
    let addr = server.addr;
    let chatter = Chatter::start(addr, true);
    let memory = Memory::before(&server);
    let start_of = |extra: &str| {
        format!("GET /echo HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\n{extra}").into_bytes()
    };
    let huge = flood(
        addr,
        start_of("X-Big: "),
        vec![b'a'; 64 << 10],
        Some(16), // 1 MiB
    );
    assert_431("one 1 MiB header", huge.answer.as_ref());
    let many = flood(addr, start_of(""), b"X-Field: 1\r\n".to_vec(), Some(10_000));
    assert_431("10,000 header fields", many.answer.as_ref());
    let endless = flood(addr, start_of("X-Endless: "), vec![b'a'; 64 << 10], None);
    assert_431("an endless header line", endless.answer.as_ref());
    assert!(
        matches!(
            endless.write_error,
            Some(ErrorKind::BrokenPipe | ErrorKind::ConnectionReset)
        ),
        "the endless writer stopped with {:?} after {} bytes",
        endless.write_error,
        endless.written
    );
    // 500 connections at once, each sending a 64 KiB head, then all the answers are read.
    let big_head = [start_of("X-Big: "), vec![b'a'; 64 << 10]].concat();
    let mut at_once: Vec<TcpStream> = (0..500).map(|_| connect(addr)).collect();
    for s in &mut at_once {
        // The server may answer and close before it has read everything: a failed write is
        // expected then, the answer is what counts.
        let _ = s.write_all(&big_head);
    }
    for (i, s) in at_once.iter_mut().enumerate() {
        assert_431(&format!("500 at once ({i})"), read_answer(s).as_ref());
    }
    eprintln!(
        "[header floods] an endless header line: the writer was stopped ({:?}) after {} KiB \
         (kernel buffers included)",
        endless.write_error,
        endless.written >> 10
    );
    chatter.wait_rounds(3);
    memory.check("header floods", 32);
    chatter.finish();
    server.stop();
}

// ---------------------------------------------------------------------------------------
// Frames
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

/// A frame header announcing 2^63 bytes (the most significant bit, which RFC 6455 §5.2 says
/// MUST be 0) gets 1002, and one announcing 2^63 - 1 gets 1009, at once, from the header
/// alone: nothing is allocated for the length (the server's RSS does not move).
#[test]
fn a_frame_header_announcing_2_pow_63_bytes_is_refused_from_the_header() {
    let _serial = serial();
    let server = Server::start_on_loopback(&[]);
    let addr = server.addr;
    let chatter = Chatter::start(addr, true);
    let memory = Memory::before(&server);
    for path in ["/echo", "/chat/big?name=mallory"] {
        for (len, code) in [(1u64 << 63, 1002), (u64::MAX >> 1, 1009), (u64::MAX, 1002)] {
            let mut ws = attacker(addr, path);
            let start = Instant::now();
            ws.send_raw(&frame_header(true, 0, BINARY, len, MASK));
            // (In the room, events about others may come first.)
            assert_eq!(close_code(&mut ws), Some(code), "{path}, length {len}");
            ws.expect_eof();
            assert!(start.elapsed() < Duration::from_secs(2), "not at once");
            // The same inside a fragmented message.
            let mut ws = attacker(addr, path);
            ws.send_raw(&frame(false, 0, TEXT, b"start", MASK));
            ws.send_raw(&frame_header(true, 0, CONT, len, MASK));
            assert_eq!(
                close_code(&mut ws),
                Some(code),
                "{path}, continuation of {len}"
            );
            ws.expect_eof();
        }
    }
    chatter.wait_rounds(3);
    memory.check("2^63", 8);
    chatter.finish();
    server.stop();
}

/// Frames of 1 byte of payload each (7 bytes on the wire), `n` of them as one text message,
/// the last one final if `fin`.
fn one_byte_fragments(n: usize, fin: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(n * 7);
    for i in 0..n {
        let op = if i == 0 { TEXT } else { CONT };
        let last = fin && i == n - 1;
        out.extend_from_slice(&frame(last, 0, op, &[b'a' + (i % 26) as u8], MASK));
    }
    out
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

/// A message in 1,048,576 fragments of 1 byte (7 MiB on the wire) is reassembled and echoed
/// intact: the server has no limit on the number of fragments, only on the message's size.
/// In a chat room (64 KiB messages), a stream of 1-byte fragments is closed with 1009 after
/// 65,537 of them. The server's memory grows with the message, not with the fragment count.
#[test]
fn floods_of_1_byte_fragments_are_bounded_by_the_message_size_limit() {
    const N: usize = 1 << 20;
    let _serial = serial();
    let server = Server::start_on_loopback(&[]);
    let addr = server.addr;
    let chatter = Chatter::start(addr, true);
    let memory = Memory::before(&server);
    let mut ws = attacker(addr, "/echo");
    let start = Instant::now();
    let writer = send_in_background(&ws.stream, one_byte_fragments(N, true));
    let (op, payload) = ws.read_message();
    let took = start.elapsed();
    assert_eq!((op, payload.len()), (TEXT, N));
    assert!(payload
        .iter()
        .enumerate()
        .all(|(i, &b)| b == b'a' + (i % 26) as u8));
    assert_eq!(writer.join().expect("writer"), N * 7);
    eprintln!(
        "[1-byte fragments] {N} fragments echoed as one message in {took:?} ({:.2} µs each)",
        took.as_secs_f64() * 1e6 / N as f64
    );
    ws.send_close(1000, "");
    assert_eq!(ws.expect_close().0, Some(1000));
    ws.expect_eof();

    // A chat room: a message of more than 64 KiB is not a chat message.
    let mut ws = attacker(addr, "/chat/fragments?name=mallory");
    let start = Instant::now();
    let writer = send_in_background(&ws.stream, one_byte_fragments(200_000, false));
    assert_eq!(close_code(&mut ws), Some(1009));
    let took = start.elapsed();
    ws.expect_eof();
    let written = writer.join().expect("writer");
    eprintln!(
        "[1-byte fragments] chat: 1009 after {took:?}; {} of 200,000 fragments written",
        written / 7
    );
    chatter.wait_rounds(3);
    memory.check("1-byte fragments", 48);
    chatter.finish();
    server.stop();
}

/// Pings of 125 bytes and empty pings, 20,000 each, sent as fast as the socket takes them:
/// every pong carries a ping's payload, in order, and the server sends no more bytes than it
/// received (a pong is 4 bytes shorter than its masked ping: no amplification). A client that
/// floods pings and never reads the pongs is stopped by backpressure: the server stops
/// reading it, and its memory stays bounded.
#[test]
fn ping_floods_get_no_amplification_and_are_stopped_by_backpressure() {
    const N: usize = 20_000;
    let _serial = serial();
    let server = Server::start_on_loopback(&[]);
    let addr = server.addr;
    let chatter = Chatter::start(addr, true);
    let memory = Memory::before(&server);
    for size in [125usize, 0] {
        let mut ws = attacker(addr, "/echo");
        let pings: Vec<u8> = (0..N)
            .flat_map(|i| {
                let mut payload = (i as u32).to_be_bytes().repeat(32);
                payload.truncate(size);
                frame(true, 0, PING, &payload, MASK)
            })
            .chain(frame(true, 0, CLOSE, &close_payload(1000, b""), MASK))
            .collect();
        let bytes_in = pings.len();
        let start = Instant::now();
        let writer = send_in_background(&ws.stream, pings);
        let (mut pongs, mut bytes_out, mut last) = (0usize, 0usize, None::<u32>);
        loop {
            let f = ws.read_frame();
            bytes_out += 2 + f.payload.len() + if f.payload.len() > 125 { 2 } else { 0 };
            if f.opcode == CLOSE {
                assert_eq!(f.close().0, Some(1000));
                break;
            }
            assert_eq!(f.opcode, PONG, "{f:?}");
            assert_eq!(f.payload.len(), size, "{f:?}");
            if size >= 4 {
                let i = u32::from_be_bytes(f.payload[..4].try_into().expect("4 bytes"));
                assert!(last.is_none_or(|l| i > l), "pong {i} after {last:?}");
                assert_eq!(f.payload, i.to_be_bytes().repeat(32)[..size], "{f:?}");
                last = Some(i);
            }
            pongs += 1;
        }
        ws.expect_eof();
        assert_eq!(writer.join().expect("writer"), bytes_in);
        eprintln!(
            "[ping flood] {N} pings of {size} B in {:?}: {pongs} pongs, {bytes_in} B in, \
             {bytes_out} B out ({:.2}x)",
            start.elapsed(),
            bytes_out as f64 / bytes_in as f64
        );
        assert!(pongs <= N);
        assert!(
            bytes_out <= bytes_in,
            "amplified: {bytes_out} B out for {bytes_in} B in"
        );
    }

    // Never reading the pongs: the server stops reading once its queue is full.
    let mut ws = attacker(addr, "/echo");
    let pressed = press_until_blocked(&mut ws.stream, &frame(true, 0, PING, &[b'p'; 125], MASK));
    eprintln!(
        "[ping flood] a client that never reads the pongs: the server stopped reading it after \
         {} KiB of pings (kernel buffers included)",
        pressed >> 10
    );
    assert!(pressed < 64 << 20, "{pressed} bytes taken");
    chatter.wait_rounds(3);
    memory.check("ping floods", 32);
    drop(ws);
    chatter.finish();
    server.stop();
}

/// Writes `unit` over and over until a write makes no progress for 500 ms (the server has
/// stopped reading: backpressure); returns the bytes that went through.
fn press_until_blocked(s: &mut TcpStream, unit: &[u8]) -> usize {
    let batch = unit.repeat((64 << 10) / unit.len() + 1);
    s.set_write_timeout(Some(Duration::from_millis(500)))
        .expect("write timeout");
    let mut written = 0;
    let start = Instant::now();
    loop {
        // Each write goes on where the last one stopped: the stream stays well-formed.
        match s.write(&batch[written % batch.len()..]) {
            Ok(n) => written += n,
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

// ---------------------------------------------------------------------------------------
// Compression bomb
// ---------------------------------------------------------------------------------------

/// Raw DEFLATE (RFC 1951), fixed Huffman codes: `prefix` as literals, then `repeat` copies of
/// the previous byte in back-references of 258 bytes at distance 1 (13 bits each: a ratio of
/// about 160:1), then `suffix`, then an empty stored block with its `00 00 ff ff` removed, as
/// permessage-deflate sends a message (RFC 7692 §7.2.1). Inflates to `prefix + 258 * repeat
/// + suffix` bytes.
fn deflate_bomb(prefix: &[u8], repeat: usize, suffix: &[u8]) -> Vec<u8> {
    struct Bits {
        out: Vec<u8>,
        acc: u64,
        n: u32,
    }
    impl Bits {
        /// `len` bits of `value`, least significant first (header fields).
        fn put(&mut self, value: u32, len: u32) {
            self.acc |= u64::from(value) << self.n;
            self.n += len;
            while self.n >= 8 {
                self.out.push(self.acc as u8);
                self.acc >>= 8;
                self.n -= 8;
            }
        }
        /// A Huffman code: most significant bit first.
        fn code(&mut self, code: u32, len: u32) {
            self.put(code.reverse_bits() >> (32 - len), len);
        }
        fn literal(&mut self, b: u8) {
            assert!(b < 144, "only literals 0-143 are encoded here");
            self.code(0x30 + u32::from(b), 8);
        }
    }
    let mut bits = Bits {
        out: Vec::with_capacity(repeat * 13 / 8 + 64),
        acc: 0,
        n: 0,
    };
    bits.put(0, 1); // BFINAL = 0
    bits.put(1, 2); // BTYPE = 01, fixed Huffman codes
    prefix.iter().for_each(|&b| bits.literal(b));
    for _ in 0..repeat {
        bits.code(0xC5, 8); // length code 285: 258 bytes
        bits.code(0, 5); // distance code 0: distance 1
    }
    suffix.iter().for_each(|&b| bits.literal(b));
    bits.code(0, 7); // end of block (256)
    bits.put(0, 3); // an empty stored block: its header, then padding to a byte
    bits.put(0, 7);
    bits.out
}

/// Opens `path` offering permessage-deflate; checks that the server agreed.
fn deflate_attacker(addr: SocketAddr, path: &str) -> Ws {
    let request = upgrade_request(
        addr,
        path,
        "Sec-WebSocket-Extensions: permessage-deflate\r\n",
    );
    let (mut ws, head) = Ws::connect_with(addr, &request);
    assert!(
        header(&head, "sec-websocket-extensions").is_some_and(|e| e.contains("permessage-deflate")),
        "deflate not agreed: {head}"
    );
    if path.starts_with("/chat") {
        let (op, _welcome) = ws.read_message();
        assert_eq!(op, TEXT);
    }
    ws
}

/// With `--deflate`: a 6.5 MB message that inflates to 1 GiB gets 1009 once the inflated
/// bytes pass the 16 MiB message limit, long before the bomb has even been sent, and a 52 KB
/// one that inflates to 8 MiB gets 1009 in a chat room (64 KiB messages); the server's memory
/// grows by the limit at most. The same encoder's small message is echoed intact (the bombs
/// are well-formed DEFLATE).
#[test]
fn a_compression_bomb_gets_1009_at_the_limit_before_inflating_the_rest() {
    let _serial = serial();
    // Echoes go out uncompressed, so that this raw client can compare them.
    let server = Server::start_on_loopback(&["--deflate", "--deflate-threshold", "1000000000"]);
    let addr = server.addr;
    let chatter = Chatter::start(addr, true);
    let memory = Memory::before(&server);
    // Well-formed: 1 + 258 * 400 bytes from 656 bytes.
    let small = deflate_bomb(b"x", 400, b"y");
    let mut ws = deflate_attacker(addr, "/echo");
    ws.send_raw(&frame(true, RSV1, TEXT, &small, MASK));
    let (op, echoed) = ws.read_message();
    assert_eq!(op, TEXT);
    assert_eq!(echoed, [&b"x"[..], &[b'x'; 258 * 400], b"y"].concat());
    eprintln!(
        "[compression bomb] sanity: {} B inflate to {} B, echoed intact",
        small.len(),
        echoed.len()
    );
    ws.send_close(1000, "");
    assert_eq!(ws.expect_close().0, Some(1000));
    ws.expect_eof();

    for (path, op, inflated) in [
        ("/echo", BINARY, 1u64 << 30),
        // Under the room's 64 KiB frame limit once compressed (52 KB): the inflated size
        // is what fails.
        ("/chat/bomb?name=mallory", TEXT, 8 << 20),
    ] {
        let bomb = deflate_bomb(b"a", (inflated / 258) as usize, b"");
        let mut ws = deflate_attacker(addr, path);
        let start = Instant::now();
        let mut bytes = frame_header(true, RSV1, op, bomb.len() as u64, MASK);
        let mask = MASK.expect("a mask");
        bytes.extend(bomb.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        let writer = send_in_background(&ws.stream, bytes);
        assert_eq!(close_code(&mut ws), Some(1009), "{path}");
        let took = start.elapsed();
        ws.expect_eof();
        let written = writer.join().expect("writer");
        eprintln!(
            "[compression bomb] {path}: {} KiB inflating to {} MiB: 1009 after {took:?}, \
             {} KiB of it written (kernel buffers included)",
            bomb.len() >> 10,
            inflated >> 20,
            written >> 10
        );
        assert!(took < Duration::from_secs(5), "{path}: {took:?}");
    }
    chatter.wait_rounds(3);
    memory.check("compression bomb", 64);
    chatter.finish();
    server.stop();
}

// ---------------------------------------------------------------------------------------
// Invalid UTF-8
// ---------------------------------------------------------------------------------------

/// A byte that is never valid in UTF-8, put at every position of a text of 1- to 4-byte
/// characters, gets 1007: in a single frame (on `/echo` and in a chat room), and in a
/// fragment that ends right after it with the rest of the message never sent (so the server
/// checks as the bytes arrive), both as one fragment and as 1-byte fragments.
#[test]
fn invalid_utf8_at_every_position_gets_1007() {
    let _serial = serial();
    let server = Server::start_on_loopback(&[]);
    let addr = server.addr;
    let chatter = Chatter::start(addr, true);
    let memory = Memory::before(&server);
    let text = "héllo wörld, ünïcödé: 漢字 and 🎉🎉 done".as_bytes();
    let mut checked = 0;
    for i in 0..text.len() {
        let mut bad = text.to_vec();
        bad[i] = 0xFF;
        let cases: [(&str, &str, Vec<u8>); 4] = [
            ("/echo", "one frame", frame(true, 0, TEXT, &bad, MASK)),
            (
                "/chat/utf8?name=mallory",
                "one frame",
                frame(true, 0, TEXT, &bad, MASK),
            ),
            (
                "/echo",
                "a fragment ending after it",
                frame(false, 0, TEXT, &bad[..=i], MASK),
            ),
            (
                "/echo",
                "1-byte fragments up to it",
                (0..=i)
                    .flat_map(|j| {
                        frame(
                            false,
                            0,
                            if j == 0 { TEXT } else { CONT },
                            &bad[j..=j],
                            MASK,
                        )
                    })
                    .collect(),
            ),
        ];
        for (path, how, bytes) in cases {
            let mut ws = attacker(addr, path);
            ws.send_raw(&bytes);
            assert_eq!(close_code(&mut ws), Some(1007), "{path}, {how}, byte {i}");
            ws.expect_eof();
            checked += 1;
        }
    }
    eprintln!(
        "[invalid utf-8] {} positions, {checked} connections: all 1007",
        text.len()
    );
    chatter.wait_rounds(3);
    memory.check("invalid utf-8", 16);
    chatter.finish();
    server.stop();
}

// ---------------------------------------------------------------------------------------
// Clients that never read
// ---------------------------------------------------------------------------------------

/// Four `/echo` clients send 64 KiB messages and never read the echoes: the server stops
/// reading each of them once about 1 MiB of echoes waits for it (backpressure), so its memory
/// stays bounded, and others chat on. Once one starts reading, every echo arrives intact.
#[test]
fn echo_clients_that_never_read_are_held_by_backpressure() {
    let _serial = serial();
    let server = Server::start_on_loopback(&[]);
    let addr = server.addr;
    let chatter = Chatter::start(addr, true);
    let memory = Memory::before(&server);
    let message: Vec<u8> = (0..64 << 10).map(|i| (i % 251) as u8).collect();
    let unit = frame(true, 0, BINARY, &message, MASK);
    let mut pressed = Vec::new();
    let mut clients: Vec<Ws> = (0..4).map(|_| attacker(addr, "/echo")).collect();
    for ws in &mut clients {
        pressed.push(press_until_blocked(&mut ws.stream, &unit));
    }
    let rss_pressed = rss_kib(server.pid());
    chatter.wait_rounds(5);
    eprintln!(
        "[never reads: echo] the server stopped reading after {:?} KiB each; RSS +{} KiB",
        pressed.iter().map(|p| p >> 10).collect::<Vec<_>>(),
        rss_pressed.saturating_sub(memory.before_kib)
    );
    for p in &pressed {
        assert!(*p < 64 << 20, "{p} bytes taken");
    }
    // The first one reads now: the complete messages it sent all come back, in order.
    let ws = &mut clients[0];
    for k in 0..pressed[0] / unit.len() {
        assert_eq!(ws.read_message(), (BINARY, message.clone()), "echo {k}");
    }
    memory.check("never reads: echo", 48);
    drop(clients);
    chatter.finish();
    server.stop();
}

/// A chat member that never reads, in a busy room: once its queue is full it is removed from
/// the room (the others see it leave) and closed with 4008 `too slow`, which it reads when it
/// finally reads. The member sending the traffic and the calm room are never slowed.
#[test]
fn a_chat_member_that_never_reads_is_closed_with_4008() {
    let _serial = serial();
    let server = Server::start_on_loopback(&[]);
    let addr = server.addr;
    let chatter = Chatter::start(addr, true);
    let memory = Memory::before(&server);
    let mut slow = attacker(addr, "/chat/busy?name=slow");
    let mut noisy = attacker(addr, "/chat/busy?name=noisy");
    // The noisy member's writer stays at most 64 messages ahead of what it has read back.
    let seen = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let text = "x".repeat(4000);
    let mut w = noisy.stream.try_clone().expect("clone");
    let writer = {
        let (seen, stop) = (seen.clone(), stop.clone());
        let json = serde_json::json!({"type": "message", "text": text}).to_string();
        thread::spawn(move || {
            let mut sent = 0u64;
            let mut mask = 0x1234_5678u32;
            while !stop.load(Ordering::Acquire) {
                if sent >= seen.load(Ordering::Acquire) + 64 {
                    thread::yield_now();
                    continue;
                }
                mask = mask.wrapping_mul(1_103_515_245).wrapping_add(12345);
                let f = frame(true, 0, TEXT, json.as_bytes(), Some(mask.to_be_bytes()));
                w.write_all(&f).expect("noisy writes");
                sent += 1;
            }
            sent
        })
    };
    let start = Instant::now();
    let mut last_id = 0;
    let mut own = 0u64;
    loop {
        let (op, payload) = noisy.read_message();
        assert_eq!(op, TEXT);
        let v: serde_json::Value = serde_json::from_slice(&payload).expect("json");
        match v["type"].as_str() {
            Some("message") => {
                let id = v["id"].as_u64().expect("id");
                assert!(id > last_id, "id {id} after {last_id}");
                assert_eq!(v["text"], text.as_str());
                last_id = id;
                own += 1;
                seen.store(own, Ordering::Release);
            }
            Some("left") if v["name"] == "slow" => break,
            _ => {}
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the slow member was never removed"
        );
    }
    let removed_after = start.elapsed();
    stop.store(true, Ordering::Release);
    let sent = writer.join().expect("writer");
    // The noisy member still gets the rest of its own messages, in order.
    while own < sent {
        let (_, payload) = noisy.read_message();
        let v: serde_json::Value = serde_json::from_slice(&payload).expect("json");
        if v["type"] == "message" {
            let id = v["id"].as_u64().expect("id");
            assert!(id > last_id);
            last_id = id;
            own += 1;
        }
    }
    // The slow member reads at last: the events that were queued, then 4008.
    let mut delivered = 0;
    let (code, reason) = loop {
        let f = slow.read_frame();
        if f.opcode == CLOSE {
            break f.close();
        }
        delivered += 1;
    };
    assert_eq!((code, reason.as_str()), (Some(4008), "too slow"));
    slow.send_close(4008, "");
    slow.expect_eof();
    eprintln!(
        "[never reads: chat] removed after {removed_after:?} and {own} messages of 4 KB; it \
         had been sent {delivered} events before the 4008"
    );
    chatter.wait_rounds(3);
    memory.check("never reads: chat", 64);
    noisy.send_close(1000, "");
    assert_eq!(close_code(&mut noisy), Some(1000));
    chatter.finish();
    server.stop();
}

// ---------------------------------------------------------------------------------------
// Vanished clients
// ---------------------------------------------------------------------------------------

/// With `--ping-interval 200ms --ping-timeout 300ms`: 20 `/echo` clients and 20 chat members
/// that go silent after their handshake (they neither read nor answer, as a peer whose
/// network vanished without a FIN) are dropped by keepalive within about half a second:
/// `wsduplex_connections_open` goes back to where it was, and each saw only pings, then the
/// end of the connection (no close frame: nobody is there to answer one).
#[test]
fn vanished_clients_are_dropped_by_keepalive() {
    let _serial = serial();
    let server =
        Server::start_on_loopback(&["--ping-interval", "200ms", "--ping-timeout", "300ms"]);
    let addr = server.addr;
    // No /healthz connections: the count of open connections must settle.
    let chatter = Chatter::start(addr, false);
    let memory = Memory::before(&server);
    let baseline = connections_open(addr);
    let mut ghosts = Vec::new();
    for i in 0..20 {
        ghosts.push(upgrade(addr, "/echo"));
        ghosts.push(upgrade(addr, &format!("/chat/ghosts?name=g{i}")));
    }
    assert!(ghosts.iter().all(|(status, _, _)| *status == 101));
    let start = Instant::now();
    let up = connections_open(addr);
    let gone = eventually("ghosts dropped by keepalive", TIMEOUT, || {
        connections_open(addr) <= baseline
    });
    for (_, s, rest) in ghosts {
        let mut ws = Ws::new(s, rest, true);
        while let Some(f) = ws.try_read_frame() {
            assert!(
                f.opcode == PING || f.opcode == TEXT,
                "a vanished client was sent {f:?}"
            );
        }
    }
    eprintln!(
        "[vanished] {up} open with 40 ghosts (baseline {baseline}); back to {baseline} \
         {gone:?} later ({:?} after the last handshake)",
        start.elapsed()
    );
    chatter.wait_rounds(3);
    memory.check("vanished", 16);
    chatter.finish();
    server.stop();
}

// ---------------------------------------------------------------------------------------
// Connection limits
// ---------------------------------------------------------------------------------------

/// 2,000 WebSocket openings at once from 8 threads against `--max-connections 64`: the
/// connections under the limit are accepted and held, every other gets `503` with
/// `Retry-After: 5` at once; the established clients chat on; once the storm lets go, new
/// connections are accepted again.
#[test]
fn a_connection_storm_past_max_connections_gets_503_and_the_server_recovers() {
    let _serial = serial();
    let server = Server::start_on_loopback(&["--max-connections", "64"]);
    let addr = server.addr;
    // No /healthz: while the server is full, new connections get 503, whoever opens them.
    let chatter = Chatter::start(addr, false);
    let memory = Memory::before(&server);
    let start = Instant::now();
    let storm: Vec<_> = (0..8)
        .map(|_| {
            thread::spawn(move || {
                let (mut held, mut refused, mut other) = (Vec::new(), 0u64, Vec::new());
                for _ in 0..250 {
                    let mut s = connect(addr);
                    let _ = s.write_all(upgrade_request(addr, "/echo", "").as_bytes());
                    match read_head_or_answer(&mut s) {
                        Some((101, _)) => held.push(s),
                        Some((503, head)) if header(&head, "retry-after") == Some("5") => {
                            refused += 1
                        }
                        answer => other.push(format!("{answer:?}")),
                    }
                }
                (held, refused, other)
            })
        })
        .collect();
    let (mut held, mut refused, mut other) = (Vec::new(), 0, Vec::new());
    for t in storm {
        let (h, r, o) = t.join().expect("storm thread");
        held.extend(h);
        refused += r;
        other.extend(o);
    }
    let took = start.elapsed();
    eprintln!(
        "[storm] 2000 openings in {took:?}: {} accepted and held, {refused} got 503, {} other",
        held.len(),
        other.len()
    );
    assert!(other.is_empty(), "not the documented answers: {other:?}");
    assert!(held.len() <= 64 - 3, "{} held", held.len());
    assert_eq!(held.len() as u64 + refused, 2000);
    chatter.wait_rounds(5);
    drop(held);
    eventually("new connections accepted after the storm", TIMEOUT, || {
        let (status, _, _) = upgrade(addr, "/echo");
        status == 101
    });
    let counted = metric(
        &metrics(addr),
        r#"wsduplex_connections_refused_total{reason="max_connections"}"#,
    );
    assert!(counted >= refused, "{counted} counted, {refused} seen");
    memory.check("storm", 32);
    chatter.finish();
    server.stop();
}

/// The status and head of an answer; `None` if the connection ended without one.
fn read_head_or_answer(s: &mut TcpStream) -> Option<(u16, String)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match read_some(s, &mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let head = String::from_utf8_lossy(&buf).into_owned();
    Some((head.get(9..12)?.parse().ok()?, head))
}

/// Half-sent requests count against their sender's per-client limit from accept (the peer's
/// address is known then; a `--trust-proxy` proxy's own connections are the exception): from
/// one address, against `--max-connections 300`, 256 are held and the 44 others get `429` at
/// once, so it cannot hold every connection the server allows and lock out all other
/// clients (before this was fixed, they all got `503`).
#[test]
fn slowloris_from_one_address_cannot_lock_out_other_clients() {
    let _serial = serial();
    let server =
        Server::start_on_loopback(&["--max-connections", "300", "--handshake-timeout", "5s"]);
    let addr = server.addr;
    // Other clients, from another address, with a new connection every round.
    let chatter = Chatter::start(addr, true);
    let memory = Memory::before(&server);
    let request = upgrade_request(addr, "/echo", "");
    let half = &request.as_bytes()[..request.len() / 2];
    let mut sent: Vec<TcpStream> = (0..300)
        .map(|_| {
            let mut s = connect(addr);
            // A refused one may already be closed.
            let _ = s.write_all(half);
            s
        })
        .collect();
    let per_client = r#"wsduplex_connections_refused_total{reason="max_connections_per_client"}"#;
    eventually("44 refused", TIMEOUT, || {
        metric(&metrics(addr), per_client) >= 44
    });
    // The refused ones have their answer already; the held ones get none before the timeout.
    let mut refused = 0;
    for s in &mut sent {
        s.set_nonblocking(true).expect("nonblocking");
        let mut buf = [0u8; 1024];
        match read_some(s, &mut buf) {
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Ok(n) if buf[..n].starts_with(b"HTTP/1.1 429 ") => refused += 1,
            other => panic!(
                "expected nothing or a 429, got {other:?}: {:?}",
                String::from_utf8_lossy(&buf)
            ),
        }
    }
    assert_eq!(refused, 44);
    chatter.wait_rounds(5);
    memory.check("slowloris past the per-client limit", 16);
    drop(sent);
    chatter.finish();
    server.stop();
}
