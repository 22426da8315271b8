//! Clients that never read, and clients that vanish.

use super::*;

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
    // Message k starts with k, so the order of the echoes shows.
    let message = |k: usize| -> Vec<u8> {
        let mut m: Vec<u8> = (0..64 << 10).map(|i| (i % 251) as u8).collect();
        m[..8].copy_from_slice(&(k as u64).to_be_bytes());
        m
    };
    let unit_len = frame(true, 0, BINARY, &message(0), MASK).len();
    let mut pressed = Vec::new();
    let mut clients: Vec<Ws> = (0..4).map(|_| attacker(addr, "/echo")).collect();
    for ws in &mut clients {
        let unit = |k| frame(true, 0, BINARY, &message(k), MASK);
        pressed.push(press_with_until_blocked(&mut ws.stream, unit));
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
    for k in 0..pressed[0] / unit_len {
        assert_eq!(ws.read_message(), (BINARY, message(k)), "echo {k}");
    }
    memory.check("never reads: echo", 48);
    drop(clients);
    chatter.finish();
    server.stop();
}

/// With `--slow-reader drop`, the server never stops reading a client that does not read:
/// it drops the echoes that do not fit in `--send-buffer` (counted in
/// `wsduplex_queue_overflows_total{action="dropped"}`). A client that sends 40 MiB without
/// reading (four times what backpressure lets through above) gets the first echoes (and
/// any later one that found room), intact and in strictly increasing order; every other
/// echo is counted as dropped, and the connection still works.
#[test]
fn slow_reader_drop_keeps_reading_and_drops_the_echoes_that_do_not_fit() {
    const N: usize = 640;
    let _serial = serial();
    let server = Server::start_on_loopback(&["--slow-reader", "drop"]);
    let addr = server.addr;
    let chatter = Chatter::start(addr, true);
    let memory = Memory::before(&server);
    let mut ws = attacker(addr, "/echo");
    let message = |k: usize| -> Vec<u8> {
        let mut m = vec![(k % 251) as u8; 64 << 10];
        m[..8].copy_from_slice(&(k as u64).to_be_bytes());
        m
    };
    let flood: Vec<u8> = (0..N)
        .flat_map(|k| frame(true, 0, BINARY, &message(k), MASK))
        .collect();
    // All of it goes through: the server reads on while nobody reads its echoes.
    let written = send_in_background(&ws.stream, flood)
        .join()
        .expect("writer");
    assert_eq!(written, N * ((64 << 10) + 14));
    // A pong is never dropped, and it queues behind the echoes that were kept: once it
    // arrives, they all have.
    ws.send(PING, b"sync");
    let mut arrived: Vec<usize> = Vec::new();
    loop {
        let f = ws.read_frame();
        if f.opcode == PONG {
            assert_eq!(f.payload, b"sync");
            break;
        }
        assert_eq!(f.opcode, BINARY);
        let k = u64::from_be_bytes(f.payload[..8].try_into().unwrap()) as usize;
        assert_eq!(f.payload, message(k), "echo {k} intact");
        // In order: each echo is of a later message than the one before it (a dropped echo
        // leaves a gap; none comes twice or goes back).
        if let Some(&before) = arrived.last() {
            assert!(k > before, "echo {k} after echo {before}");
        }
        arrived.push(k);
    }
    // The first echoes: the first message's echo always fits.
    assert_eq!(arrived.first(), Some(&0), "{arrived:?}");
    // Nothing lost unseen: the echoes that arrived (distinct, being increasing) and the
    // ones counted as dropped (below) add up to every message.
    let got = arrived.len();
    // The connection goes on.
    ws.send(TEXT, b"last");
    assert_eq!(ws.read_message(), (TEXT, b"last".to_vec()));
    assert!(got < N, "nothing was dropped");
    let dropped = metric(
        &metrics(addr),
        r#"wsduplex_queue_overflows_total{action="dropped"}"#,
    );
    eprintln!("[never reads: --slow-reader drop] {got} of {N} echoes arrived, {dropped} dropped");
    assert_eq!(dropped as usize, N - got);
    memory.check("never reads: drop", 48);
    chatter.finish();
    server.stop();
}

/// With `--slow-reader close`, a client that does not read is closed with 1008 `too slow`
/// once `--send-buffer` bytes wait for it: the echoes queued before the close arrive first,
/// intact, then the close frame (the server closes TCP if it is not answered within the
/// close timeout, 5 s).
#[test]
fn slow_reader_close_closes_a_client_that_does_not_read_with_1008() {
    let _serial = serial();
    let server = Server::start_on_loopback(&["--slow-reader", "close"]);
    let addr = server.addr;
    let chatter = Chatter::start(addr, true);
    let memory = Memory::before(&server);
    let message: Vec<u8> = (0..64 << 10).map(|i| (i % 251) as u8).collect();
    let unit = frame(true, 0, BINARY, &message, MASK);
    let mut ws = attacker(addr, "/echo");
    // 16 MiB, more than the kernel's socket buffers and the 1 MiB queue can hold. The server
    // reads all of it (after its close, it discards what arrives until the close timeout).
    const N: usize = 256;
    let written = send_in_background(&ws.stream, unit.repeat(N))
        .join()
        .expect("writer");
    assert_eq!(written, N * unit.len());
    let mut echoes = 0;
    let (code, reason) = loop {
        let f = ws.read_frame();
        if f.opcode == CLOSE {
            break f.close();
        }
        assert_eq!((f.opcode, &f.payload), (BINARY, &message), "echo {echoes}");
        echoes += 1;
    };
    assert_eq!((code, reason.as_str()), (Some(1008), "too slow"));
    assert!(echoes < N, "every echo was sent");
    eprintln!("[never reads: --slow-reader close] 1008 after {echoes} echoes of {N} messages");
    let closed = r#"wsduplex_queue_overflows_total{action="closed"}"#;
    assert_eq!(metric(&metrics(addr), closed), 1);
    memory.check("never reads: close", 48);
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
