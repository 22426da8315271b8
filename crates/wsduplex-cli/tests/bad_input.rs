//! Bad input against `wsduplex serve` (path `/echo`): every malformed handshake and every
//! broken framing rule gets its documented answer, and after each one a well-behaved client
//! on a fresh connection still gets its echo. The bad-input table of docs/evidence.md lists the same cases.

mod common;

use common::*;
use std::net::SocketAddr;

/// A well-behaved client still gets served: echo, then a clean close and EOF.
fn assert_still_serving(addr: SocketAddr, after: &str) {
    let mut ws = Ws::connect(addr, "/echo");
    let msg = format!("still serving after {after}");
    ws.send(TEXT, msg.as_bytes());
    assert_eq!(ws.read_message(), (TEXT, msg.into_bytes()), "after {after}");
    ws.send_close(1000, "");
    assert_eq!(ws.expect_close().0, Some(1000), "after {after}");
    ws.expect_eof();
}

// ---------------------------------------------------------------------------------------
// Opening handshake
// ---------------------------------------------------------------------------------------

/// A good request with one header line replaced (or removed, with an empty `to`).
fn broken_request(addr: SocketAddr, from: &str, to: &str) -> String {
    let good = upgrade_request(addr, "/echo", "");
    assert!(good.contains(from), "{from:?} not in {good:?}");
    good.replacen(from, to, 1)
}

/// Checks a refusal: the status, a one-line reason as the body, a matching
/// Content-Length, and a closed connection (`http` reads to EOF).
fn assert_refused(addr: SocketAddr, case: &str, request: &[u8], status: u16) -> HttpResponse {
    let resp = http(addr, request);
    assert_eq!(resp.status, status, "{case}: {resp:?}");
    let body = resp.body_str();
    assert!(
        body.ends_with('\n') && body.lines().count() == 1 && body.trim().len() > 3,
        "{case}: body is not a one-line reason: {body:?}"
    );
    assert_eq!(
        resp.header("content-length"),
        Some(resp.body.len().to_string().as_str()),
        "{case}: {resp:?}"
    );
    resp
}

#[test]
fn malformed_handshakes_get_400() {
    let server = Server::start();
    let addr = server.addr;
    let host = format!("Host: {addr}\r\n");
    let key = format!("Sec-WebSocket-Key: {KEY}\r\n");
    let cases: Vec<(&str, &str, &str)> = vec![
        ("method POST", "GET ", "POST "),
        ("HTTP/1.0", "HTTP/1.1\r\n", "HTTP/1.0\r\n"),
        ("missing Host", &host, ""),
        ("empty Host", &host, "Host: \r\n"),
        ("missing Upgrade", "Upgrade: websocket\r\n", ""),
        ("Upgrade: h2c", "Upgrade: websocket", "Upgrade: h2c"),
        ("missing Connection", "Connection: Upgrade\r\n", ""),
        (
            "Connection without upgrade",
            "Connection: Upgrade",
            "Connection: keep-alive",
        ),
        ("missing key", &key, ""),
        (
            "key of 10 bytes",
            KEY,
            "dGhlIHNhbXBsZQ==", // "the sample"
        ),
        (
            "key of 17 bytes",
            KEY,
            "dGhlIHNhbXBsZSBub25jZSE=", // "the sample nonce!"
        ),
        ("key not base64", KEY, "not base64 at all!!!!!!!"),
    ];
    for (case, from, to) in cases {
        let req = broken_request(addr, from, to);
        assert_refused(addr, case, req.as_bytes(), 400);
        assert_still_serving(addr, case);
    }
    server.stop();
}

#[test]
fn wrong_or_missing_version_gets_426_with_version_13() {
    let server = Server::start();
    let addr = server.addr;
    for (case, to) in [
        ("Sec-WebSocket-Version: 8", "Sec-WebSocket-Version: 8\r\n"),
        ("missing Sec-WebSocket-Version", ""),
    ] {
        let req = broken_request(addr, "Sec-WebSocket-Version: 13\r\n", to);
        let resp = assert_refused(addr, case, req.as_bytes(), 426);
        assert!(
            resp.head.starts_with("HTTP/1.1 426 Upgrade Required\r\n"),
            "{case}: {resp:?}"
        );
        // RFC 6455 §4.2.2: the versions the server speaks.
        assert_eq!(
            resp.header("sec-websocket-version"),
            Some("13"),
            "{case}: {resp:?}"
        );
        assert_still_serving(addr, case);
    }
    server.stop();
}

#[test]
fn connection_with_several_tokens_is_accepted() {
    let server = Server::start();
    let addr = server.addr;
    let req = broken_request(
        addr,
        "Connection: Upgrade",
        "Connection: keep-alive, Upgrade",
    );
    let (mut ws, _) = Ws::connect_with(addr, &req);
    ws.send(TEXT, b"accepted");
    assert_eq!(ws.read_message(), (TEXT, b"accepted".to_vec()));
    ws.send_close(1000, "");
    assert_eq!(ws.expect_close().0, Some(1000));
    ws.expect_eof();
    server.stop();
}

#[test]
fn oversized_heads_get_431() {
    let server = Server::start();
    let addr = server.addr;
    let huge = upgrade_request(
        addr,
        "/echo",
        &format!("X-Big: {}\r\n", "a".repeat(20 * 1024)),
    );
    assert_refused(addr, "a 20 KiB header", huge.as_bytes(), 431);
    assert_still_serving(addr, "a 20 KiB header");
    let many: String = (0..100).map(|i| format!("X-Header-{i}: {i}\r\n")).collect();
    let req = upgrade_request(addr, "/echo", &many);
    assert_refused(addr, "100 headers", req.as_bytes(), 431);
    assert_still_serving(addr, "100 headers");
    server.stop();
}

#[test]
fn binary_garbage_gets_400() {
    let server = Server::start();
    let addr = server.addr;
    let garbage: Vec<(&str, Vec<u8>)> = vec![
        ("nul bytes", b"\x00\x01\x02\x03\xff\xfe\r\n\r\n".to_vec()),
        (
            "a websocket frame instead of a request",
            [
                frame(true, 0, TEXT, b"hi", Some([1, 2, 3, 4])),
                b"\r\n\r\n".to_vec(),
            ]
            .concat(),
        ),
        (
            "a request line of noise",
            b"\x16\x03\x01 \xc0\xc0 x\r\n\r\n".to_vec(),
        ),
    ];
    for (case, bytes) in garbage {
        assert_refused(addr, case, &bytes, 400);
        assert_still_serving(addr, case);
    }
    server.stop();
}

#[test]
fn a_stalled_half_request_does_not_block_others() {
    let server = Server::start();
    let addr = server.addr;
    let mut stalled = connect(addr);
    let req = upgrade_request(addr, "/echo", "");
    std::io::Write::write_all(&mut stalled, &req.as_bytes()[..req.len() / 2]).expect("send half");
    // While it stalls (the server waits up to its 10 s handshake timeout), others are served.
    assert_still_serving(addr, "a stalled half request");
    assert_still_serving(addr, "a stalled half request (twice)");
    drop(stalled);
    server.stop();
}

// ---------------------------------------------------------------------------------------
// Framing
// ---------------------------------------------------------------------------------------

const MASK: Option<[u8; 4]> = Some([0x37, 0xfa, 0x21, 0x3d]);

/// Opens `/echo`, sends `bytes` in one write, expects a close with `code` and then the
/// server closing TCP; then checks that others are still served.
fn assert_fails_with(addr: SocketAddr, case: &str, bytes: &[u8], code: u16) {
    let mut ws = Ws::connect(addr, "/echo");
    ws.send_raw(bytes);
    let f = ws.read_frame();
    assert_eq!(f.opcode, CLOSE, "{case}: expected a close, got {f:?}");
    let (got, reason) = f.close();
    assert_eq!(got, Some(code), "{case}: close reason {reason:?}");
    ws.expect_eof();
    assert_still_serving(addr, case);
}

#[test]
fn framing_violations_get_1002() {
    let server = Server::start();
    let addr = server.addr;
    let mut cases: Vec<(String, Vec<u8>)> = vec![
        (
            "unmasked frame".into(),
            frame(true, 0, TEXT, b"hello", None),
        ),
        ("RSV1".into(), frame(true, RSV1, TEXT, b"x", MASK)),
        ("RSV2".into(), frame(true, RSV2, TEXT, b"x", MASK)),
        ("RSV3".into(), frame(true, RSV3, BINARY, b"x", MASK)),
        ("RSV1 on a ping".into(), frame(true, RSV1, PING, b"x", MASK)),
        (
            "ping with 126 bytes".into(),
            frame(true, 0, PING, &[b'p'; 126], MASK),
        ),
        (
            "close with 126 bytes".into(),
            frame(true, 0, CLOSE, &close_payload(1000, &[b'r'; 124]), MASK),
        ),
        (
            "fragmented ping (FIN=0)".into(),
            frame(false, 0, PING, b"x", MASK),
        ),
        (
            "continuation without a start".into(),
            frame(true, 0, CONT, b"x", MASK),
        ),
        (
            "unfinished continuation without a start".into(),
            frame(false, 0, CONT, b"x", MASK),
        ),
        (
            "new text frame during a fragmented message".into(),
            [
                frame(false, 0, TEXT, b"a", MASK),
                frame(true, 0, TEXT, b"b", MASK),
            ]
            .concat(),
        ),
        (
            "new binary frame during a fragmented message".into(),
            [
                frame(false, 0, BINARY, b"a", MASK),
                frame(false, 0, CONT, b"b", MASK),
                frame(true, 0, BINARY, b"c", MASK),
            ]
            .concat(),
        ),
        (
            "64-bit length with the top bit set".into(),
            frame_header(true, 0, BINARY, 1 << 63, MASK),
        ),
        (
            "close payload of 1 byte".into(),
            frame(true, 0, CLOSE, &[0x03], MASK),
        ),
    ];
    for op in (0x3..=0x7).chain(0xB..=0xF) {
        cases.push((
            format!("reserved opcode {op:#x}"),
            frame(true, 0, op, b"x", MASK),
        ));
    }
    for code in [
        0, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535,
    ] {
        cases.push((
            format!("close code {code}"),
            frame(true, 0, CLOSE, &close_payload(code, b""), MASK),
        ));
    }
    for (case, bytes) in &cases {
        assert_fails_with(addr, case, bytes, 1002);
    }
    server.stop();
}

#[test]
fn invalid_utf8_gets_1007() {
    let server = Server::start();
    let addr = server.addr;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "invalid utf-8 text",
            frame(true, 0, TEXT, b"caf\xc3\x28", MASK),
        ),
        (
            "text ending in half a character",
            frame(true, 0, TEXT, b"caf\xc3", MASK),
        ),
        (
            "utf-16 surrogate in text",
            frame(true, 0, TEXT, b"\xed\xa0\x80", MASK),
        ),
        (
            "invalid utf-8 in the last fragment",
            [
                frame(false, 0, TEXT, b"good ", MASK),
                frame(true, 0, CONT, b"\xff", MASK),
            ]
            .concat(),
        ),
        (
            "invalid utf-8 close reason",
            frame(true, 0, CLOSE, &close_payload(1000, b"bye \xff"), MASK),
        ),
    ];
    for (case, bytes) in &cases {
        assert_fails_with(addr, case, bytes, 1007);
    }
    server.stop();
}

#[test]
fn invalid_utf8_in_a_fragment_fails_fast() {
    let server = Server::start();
    let addr = server.addr;
    for (case, fragments) in [
        (
            "bad first fragment",
            vec![frame(false, 0, TEXT, b"ok \xff more", MASK)],
        ),
        (
            "bad middle fragment",
            vec![
                frame(false, 0, TEXT, b"fine so far, ", MASK),
                frame(false, 0, CONT, b"then \xc0\xaf", MASK),
            ],
        ),
    ] {
        let mut ws = Ws::connect(addr, "/echo");
        for f in &fragments {
            ws.send_raw(f);
        }
        // No final fragment is ever sent: the close must come from the bad bytes alone.
        let (code, _) = ws.expect_close();
        assert_eq!(code, Some(1007), "{case}");
        ws.expect_eof();
        assert_still_serving(addr, case);
    }
    server.stop();
}

#[test]
fn a_frame_over_16_mib_gets_1009_before_its_payload() {
    let server = Server::start();
    let addr = server.addr;
    for (case, bytes) in [
        (
            "a frame of 16 MiB + 1 (header only)",
            frame_header(true, 0, BINARY, (16 << 20) + 1, MASK),
        ),
        (
            "a fragment taking the message over 16 MiB",
            [
                frame(false, 0, BINARY, b"0123456789", MASK),
                frame_header(true, 0, CONT, 16 << 20, MASK),
            ]
            .concat(),
        ),
        (
            "a frame of 2^63 - 1 bytes (header only)",
            frame_header(true, 0, TEXT, u64::MAX >> 1, MASK),
        ),
    ] {
        // Only the header is sent: waiting for the payload would time out.
        assert_fails_with(addr, case, &bytes, 1009);
    }
    server.stop();
}

#[test]
fn valid_close_codes_are_echoed_and_tcp_closed() {
    let server = Server::start();
    let addr = server.addr;
    for code in [1000, 1001, 1003, 1007, 1011, 3000, 4000, 4999] {
        let mut ws = Ws::connect(addr, "/echo");
        ws.send_close(code, "bye");
        let (got, _) = ws.expect_close();
        assert_eq!(got, Some(code));
        // RFC 6455 §7.1.1: the server closes TCP first.
        ws.expect_eof();
    }
    // A close without a body is answered with an empty close.
    let mut ws = Ws::connect(addr, "/echo");
    ws.send(CLOSE, b"");
    assert_eq!(ws.expect_close(), (None, String::new()));
    ws.expect_eof();
    assert_still_serving(addr, "valid closes");
    server.stop();
}

#[test]
fn ping_gets_a_pong_with_the_same_payload() {
    let server = Server::start();
    let addr = server.addr;
    let mut ws = Ws::connect(addr, "/echo");
    for payload in [&b""[..], b"ping payload", &[0xff; 125]] {
        ws.send(PING, payload);
        let f = ws.read_frame();
        assert_eq!((f.fin, f.opcode), (true, PONG), "{f:?}");
        assert_eq!(f.payload, payload);
    }
    // A ping between the fragments of a message is answered at once.
    ws.send_frame(false, TEXT, b"split ");
    ws.send(PING, b"between");
    let f = ws.read_frame();
    assert_eq!((f.opcode, f.payload), (PONG, b"between".to_vec()));
    ws.send_frame(true, CONT, b"message");
    assert_eq!(ws.read_message(), (TEXT, b"split message".to_vec()));
    // Unsolicited pongs are ignored.
    ws.send(PONG, b"nobody asked");
    ws.send(TEXT, b"after pong");
    assert_eq!(ws.read_message(), (TEXT, b"after pong".to_vec()));
    ws.send_close(1000, "");
    assert_eq!(ws.expect_close().0, Some(1000));
    ws.expect_eof();
    server.stop();
}

#[test]
fn messages_before_a_violation_are_echoed_first() {
    let server = Server::start();
    let addr = server.addr;
    let mut ws = Ws::connect(addr, "/echo");
    ws.send_raw(
        &[
            frame(true, 0, TEXT, b"first", MASK),
            frame(true, 0, BINARY, b"second", MASK),
            frame(true, 0, 0x3, b"reserved", MASK),
        ]
        .concat(),
    );
    assert_eq!(ws.read_message(), (TEXT, b"first".to_vec()));
    assert_eq!(ws.read_message(), (BINARY, b"second".to_vec()));
    assert_eq!(ws.expect_close().0, Some(1002));
    ws.expect_eof();
    server.stop();
}
