//! Slow handshakes, the per-client limit, and connection storms.

use super::*;

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
