//! `wsduplex bench` run as a binary: against `wsduplex serve`, and against broken servers
//! that must make it fail.

use serde_json::Value;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Output, Stdio};
use wsduplex::proto::frame::{FrameHeader, OpCode};
use wsduplex::proto::handshake::accept_key;
use wsduplex::proto::mask::apply_mask;

const BIN: &str = env!("CARGO_BIN_EXE_wsduplex");

/// `wsduplex serve` on a free port, killed on drop.
struct Serve {
    child: Child,
    url: String,
}

impl Serve {
    fn start() -> Self {
        let mut child = Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("serve starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on http://")
            .unwrap_or_else(|| panic!("unexpected ready line {line:?}"));
        Self {
            url: format!("ws://{addr}/echo"),
            child,
        }
    }

    /// `flags` and `--server-pid` with this server's process id.
    fn probed(&self, flags: &str) -> String {
        format!("{flags} --server-pid {}", self.child.id())
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn bench(args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("bench")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("bench runs")
}

/// Runs `wsduplex bench MODE URL FLAGS --json` (FLAGS split at spaces): the run and its report.
fn bench_json(mode: &str, url: &str, flags: &str) -> (Output, Value) {
    let mut args = vec![mode, url];
    args.extend(flags.split_whitespace());
    args.push("--json");
    let out = bench(&args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON object ({e}): {stdout}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out, report)
}

/// [`bench_json`] for a run that must succeed: its report.
fn passing(mode: &str, url: &str, flags: &str) -> Value {
    let (out, r) = bench_json(mode, url, flags);
    assert!(out.status.success(), "{r}");
    r
}

#[test]
fn echo_against_serve_reports_throughput_and_checks_every_echo() {
    let serve = Serve::start();
    let flags =
        serve.probed("--connections 4 --in-flight 4 --threads 2 --warmup 200ms --duration 1s");
    let r = passing("echo", &serve.url, &flags);
    assert_eq!(r["mode"], "echo");
    assert!(r["messages"].as_u64().unwrap() > 0, "{r}");
    assert_eq!(r["mismatches"], 0, "{r}");
    assert_eq!(r["errors"], 0, "{r}");
    assert!(r["latency"]["p50_us"].as_f64().unwrap() > 0.0, "{r}");
    assert!(r["server"]["cpu_ns_per_op"].as_f64().unwrap() > 0.0, "{r}");
    assert!(r["server"]["rss_kib"].as_u64().unwrap() > 0, "{r}");
}

#[test]
fn echo_with_large_binary_payloads() {
    let serve = Serve::start();
    let flags = "-c 2 -d 3 -s 70000 --binary --warmup 0 --duration 300ms";
    let r = passing("echo", &serve.url, flags);
    assert!(r["messages"].as_u64().unwrap() > 0, "{r}");
    assert!(r["mb_per_sec"].as_f64().unwrap() > 0.0, "{r}");
}

#[test]
fn connect_counts_handshakes() {
    let serve = Serve::start();
    let r = passing("connect", &serve.url, "--concurrency 4 --count 40");
    assert_eq!(r["handshakes"], 40, "{r}");
    assert_eq!(r["errors"], 0, "{r}");
    assert!(r["latency"]["p99_us"].as_f64().is_some(), "{r}");
}

#[test]
fn idle_spreads_source_addresses() {
    let serve = Serve::start();
    let flags = serve.probed("--connections 7 --per-source 3 --duration 200ms");
    let r = passing("idle", &serve.url, &flags);
    assert_eq!(r["opened"], 7, "{r}");
    assert_eq!(r["source_addresses"], 3, "{r}");
    assert!(r["server"]["bytes_per_connection"].is_number(), "{r}");
}

#[test]
fn human_report_and_usage_errors() {
    let serve = Serve::start();
    let out = bench(&["connect", &serve.url, "--count", "3", "-c", "1"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("handshakes 3"), "{text}");
    let refused = bench(&["echo", "ws://127.0.0.1:1/echo", "--duration", "100ms"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("failed to open"));
}

/// How a fake server mangles the payload of echo number `n` (`previous`: the last payload).
type Corrupt = fn(n: usize, payload: &mut Vec<u8>, previous: &[u8]);

/// A server that answers the handshake and echoes frames through `corrupt`.
fn broken_server(corrupt: Corrupt) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://{}/echo", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for tcp in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let _ = serve_badly(tcp, corrupt);
            });
        }
    });
    url
}

/// Answers a client's upgrade on `tcp` (any path, any key); the reader of its frames.
fn upgrade(mut tcp: &TcpStream) -> std::io::Result<BufReader<TcpStream>> {
    let mut reader = BufReader::new(tcp.try_clone()?);
    let mut key = String::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("sec-websocket-key") {
                key = value.trim().to_string();
            }
        }
        if line == "\r\n" || line.is_empty() {
            break;
        }
    }
    write!(
        tcp,
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n\r\n",
        accept_key(key.as_bytes())
    )?;
    Ok(reader)
}

/// A client's next frame, unmasked.
fn read_frame(reader: &mut BufReader<TcpStream>) -> std::io::Result<(FrameHeader, Vec<u8>)> {
    let mut head = vec![0u8; 2];
    reader.read_exact(&mut head)?;
    let (h, len) = loop {
        if let Some(parsed) = FrameHeader::decode(&head).unwrap() {
            break parsed;
        }
        let mut more = [0u8; 1];
        reader.read_exact(&mut more)?;
        head.push(more[0]);
    };
    assert_eq!(len, head.len());
    let mut payload = vec![0u8; h.payload_len as usize];
    reader.read_exact(&mut payload)?;
    apply_mask(&mut payload, h.mask.unwrap(), 0);
    Ok((h, payload))
}

fn serve_badly(mut tcp: TcpStream, corrupt: Corrupt) -> std::io::Result<()> {
    let mut reader = upgrade(&tcp)?;
    let mut previous = Vec::new();
    for n in 0.. {
        let (h, mut payload) = read_frame(&mut reader)?;
        if h.opcode == OpCode::Close {
            tcp.write_all(&[0x88, 0])?;
            return Ok(());
        }
        let original = payload.clone();
        corrupt(n, &mut payload, &previous);
        previous = original;
        let echo = FrameHeader {
            mask: None,
            payload_len: payload.len() as u64,
            ..h
        };
        let (head, len) = echo.encode();
        tcp.write_all(&head[..len])?;
        tcp.write_all(&payload)?;
    }
    Ok(())
}

fn assert_caught(url: &str) {
    let (out, r) = bench_json("echo", url, "-c 2 -d 4 --warmup 0 --duration 300ms");
    assert!(!out.status.success(), "a broken server passed: {r}");
    assert!(r["mismatches"].as_u64().unwrap() > 0, "{r}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("did not match"), "{stderr}");
}

#[test]
fn a_server_that_corrupts_payloads_fails_the_run() {
    // One flipped bit in every hundredth echo.
    assert_caught(&broken_server(|n, payload, _| {
        if n % 100 == 7 {
            let last = payload.len() - 1;
            payload[last] ^= 0x01;
        }
    }));
}

#[test]
fn a_server_that_replays_old_payloads_fails_the_run() {
    // Every echo after the first carries the previous message's payload.
    assert_caught(&broken_server(|n, payload, previous| {
        if n > 0 {
            payload.copy_from_slice(previous);
        }
    }));
}

#[test]
fn transports_measures_every_transport_and_writes_the_table_and_chart() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("bench-transports");
    let _ = std::fs::remove_dir_all(&dir);
    let flags = "-n 3 --rate 20 --duration 1s --max-rate 40 --step-duration 300ms --quiet";
    let mut args = vec!["transports"];
    args.extend(flags.split_whitespace());
    args.extend(["--out", dir.to_str().unwrap()]);
    let out = bench(&args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let table = std::fs::read_to_string(dir.join("transports.md")).unwrap();
    // Every transport has its row, and 3 subscribers × 20 messages delivered.
    for t in ["ws", "ws-h2", "sse", "longpoll", "poll"] {
        assert!(table.contains(&format!("\n| {t} | ")), "{t}: {table}");
        assert!(table.contains(&format!(" {t} 60")), "{t}: {table}");
    }
    assert!(stdout.contains("| ws-h2 | "), "{stdout}");
    let svg = std::fs::read_to_string(dir.join("transports.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("longpoll"), "{svg}");
}

#[test]
fn transports_usage_errors_are_one_line() {
    let out = Command::new(BIN)
        .args(["bench", "transports", "--url", "http://127.0.0.1:9"])
        .env_remove("WSDUPLEX_API_TOKEN")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--url needs --api-token"), "{stderr}");
    let out = bench(&["transports", "--transports", "carrier-pigeon"]);
    assert!(!out.status.success());
}

/// `wsduplex serve`'s hub: the URL of its rooms.
fn hub_rooms(serve: &Serve) -> String {
    serve.url.replace("/echo", "/chat")
}

fn assert_every_delivery_checked(r: &Value) {
    assert_eq!(r["mode"], "fanout", "{r}");
    for count in ["lost", "duplicated", "out_of_order", "mismatches", "errors"] {
        assert_eq!(r[count], 0, "{count}: {r}");
    }
    assert!(r["deliveries"].as_u64().unwrap() > 0, "{r}");
    assert!(r["latency"]["p99_us"].as_f64().unwrap() > 0.0, "{r}");
}

#[test]
fn fanout_against_the_hub_checks_every_delivery() {
    let serve = Serve::start();
    // Five rooms of one member each, two publishers (one of them in three rooms).
    let flags = serve.probed(
        "-c 5 --rooms 5 -p 2 --rate 200 --threads 2 --warmup 100ms --duration 500ms --quiet",
    );
    let r = passing("fanout", &hub_rooms(&serve), &flags);
    assert_every_delivery_checked(&r);
    // Each message reaches its room's member and its publisher.
    let per_message = r["deliveries_per_message"].as_f64().unwrap();
    assert!((1.5..2.5).contains(&per_message), "{r}");
    assert!(r["server"]["cpu_ns_per_op"].is_number(), "{r}");

    // One connection in four rooms, text messages, two publishers sharing each room.
    let flags = "-c 1 --rooms-per-connection 4 -p 8 --text --rate 200 --warmup 0 \
                 --duration 300ms --room-prefix many- --quiet";
    let r = passing("fanout", &hub_rooms(&serve), flags);
    assert_every_delivery_checked(&r);
    assert_eq!(r["rooms"], 4, "{r}");
}

/// A relay of one room (uWebSockets' room server's protocol) that passes message `n` on
/// `copies(n)` times to every connection.
fn faulty_relay(copies: fn(usize) -> usize) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://{}", listener.local_addr().unwrap());
    let members = std::sync::Arc::new(std::sync::Mutex::new(Vec::<TcpStream>::new()));
    std::thread::spawn(move || {
        for tcp in listener.incoming().flatten() {
            let members = members.clone();
            std::thread::spawn(move || -> std::io::Result<()> {
                let mut reader = upgrade(&tcp)?;
                members.lock().unwrap().push(tcp.try_clone()?);
                for n in 0.. {
                    let (h, payload) = read_frame(&mut reader)?;
                    let (head, len) = FrameHeader { mask: None, ..h }.encode();
                    let frame = [&head[..len], &payload].concat();
                    for mut member in members.lock().unwrap().iter() {
                        for _ in 0..copies(n) {
                            member.write_all(&frame)?;
                        }
                    }
                }
                Ok(())
            });
        }
    });
    url
}

#[test]
fn fanout_fails_on_a_lost_or_repeated_delivery() {
    let flags = "--protocol relay -c 3 --rate 100 --warmup 0 --duration 400ms --quiet";
    let (out, r) = bench_json("fanout", &faulty_relay(|_| 1), flags);
    assert!(out.status.success(), "{r}");
    assert_every_delivery_checked(&r);
    let (out, r) = bench_json("fanout", &faulty_relay(|n| usize::from(n != 5)), flags);
    assert!(
        !out.status.success(),
        "a relay that lost a message passed: {r}"
    );
    assert_eq!(
        r["lost"], 4,
        "one message lost for each of the 4 connections: {r}"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("FAILED: lost 4"));
    let (out, r) = bench_json("fanout", &faulty_relay(|n| 1 + usize::from(n == 5)), flags);
    assert!(
        !out.status.success(),
        "a relay that repeated a message passed: {r}"
    );
    assert_eq!(r["duplicated"], 4, "{r}");
}

#[test]
fn fanout_usage_errors_are_one_line() {
    for (flags, says) in [
        (
            "--protocol relay --rooms-per-connection 2",
            "--protocol relay",
        ),
        ("--rooms 3 -p 4", "not a multiple"),
        (
            "--rooms-per-connection 3 --rooms 2",
            "more than the 2 rooms",
        ),
        ("--rate 0", "--rate"),
    ] {
        let mut args = vec!["fanout", "ws://127.0.0.1:9/chat"];
        args.extend(flags.split_whitespace());
        let out = bench(&args);
        assert!(!out.status.success(), "{flags}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(says) && stderr.lines().count() == 1,
            "{flags}: {stderr}"
        );
    }
}
