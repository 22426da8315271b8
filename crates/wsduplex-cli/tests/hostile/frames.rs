//! Frame headers, fragment floods and ping floods.

use super::*;

// ---------------------------------------------------------------------------------------
// Frames
// ---------------------------------------------------------------------------------------

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

/// A message in 131,072 fragments of 1 byte (the `--max-fragments` default) is reassembled and
/// echoed intact; a stream of 1,048,576 of them is closed with 1009 "too many fragments" at
/// the 131,073rd, without waiting for the rest. In a chat room (64 KiB messages), 1-byte
/// fragments are closed with 1009 too. The server's memory grows with the message, not with
/// the fragment count.
#[test]
fn floods_of_1_byte_fragments_are_bounded_by_the_fragment_limit() {
    const N: usize = 1 << 17;
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

    // Eight times as many: 1009 at the limit, long before the message is sent.
    let mut ws = attacker(addr, "/echo");
    let start = Instant::now();
    let writer = send_in_background(&ws.stream, one_byte_fragments(8 * N, false));
    let (code, reason) = ws.expect_close();
    let took = start.elapsed();
    assert_eq!((code, reason.as_str()), (Some(1009), "too many fragments"));
    ws.expect_eof();
    let written = writer.join().expect("writer");
    assert!(written < 8 * N * 7, "the server read the whole flood");
    eprintln!(
        "[1-byte fragments] {} fragments: 1009 after {took:?}; {} of them written",
        8 * N,
        written / 7
    );

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
