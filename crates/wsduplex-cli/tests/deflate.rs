//! `--deflate` on `wsduplex serve` and `wsduplex client`, run as real processes.

mod common;

use common::*;
use std::io::Write as _;

fn extension_lines(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| l.contains("Sec-WebSocket-Extensions"))
        .collect()
}

#[test]
fn serve_deflate_accepts_the_clients_default_offer() {
    let server = Server::start_with(&["--deflate"]);
    let long = "compress me ".repeat(1000);
    let input = format!("x\n{long}\n");
    let out = run(&["client", "-v", &server.url("/echo")], input.as_bytes());
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout_str(), input);
    assert_eq!(
        extension_lines(&out.stderr),
        [
            "> Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits",
            "< Sec-WebSocket-Extensions: permessage-deflate",
        ],
        "{}",
        out.stderr
    );
    // --no-deflate: nothing offered, nothing agreed.
    let out = run(
        &["client", "-v", "--no-deflate", &server.url("/echo")],
        b"y\n",
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout_str(), "y\n");
    assert!(extension_lines(&out.stderr).is_empty(), "{}", out.stderr);
    server.stop();
}

#[test]
fn serve_declines_by_default() {
    let server = Server::start();
    let out = run(&["client", "-v", "--deflate", &server.url("/echo")], b"z\n");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout_str(), "z\n");
    assert_eq!(
        extension_lines(&out.stderr),
        ["> Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits"],
        "{}",
        out.stderr
    );
    server.stop();
}

/// The `< Sec-WebSocket-Extensions` line of a `-v` run: what the server agreed to.
fn agreed(stderr: &str) -> &str {
    extension_lines(stderr)
        .into_iter()
        .find_map(|l| l.strip_prefix("< Sec-WebSocket-Extensions: "))
        .unwrap_or_else(|| panic!("no extension agreed:\n{stderr}"))
}

/// Pseudo-random characters of every UTF-8 length (matches at all distances), then a long
/// repetition: echoed intact, it shows each side inflates what the other deflated with the
/// agreed window.
fn varied_text() -> String {
    let mut x = 0x2545_f491_u32;
    (0..30_000)
        .map(|_| {
            // xorshift32
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            ['a', 'é', '漢', '🎉', ' '][(x % 5) as usize]
        })
        .collect::<String>()
        + &"again ".repeat(2000)
}

#[test]
fn serve_window_bits_and_no_context_takeover_are_asked_of_the_client() {
    let server = Server::start_with(&[
        "--listen",
        "127.0.0.1:0",
        "--deflate",
        "--deflate-window-bits",
        "10",
        "--deflate-no-context-takeover",
    ]);
    let text = varied_text();
    let input = format!("{text}\n{text}\nshort\n");
    let out = run(&["client", "-v", &server.url("/echo")], input.as_bytes());
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout_str(), input);
    // The client's default offer lets the server limit the client's window.
    assert_eq!(
        agreed(&out.stderr),
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
         server_max_window_bits=10; client_max_window_bits=10"
    );
    server.stop();
}

#[test]
fn client_window_bits_and_no_context_takeover_are_offered() {
    let server = Server::start_with(&["--listen", "127.0.0.1:0", "--deflate"]);
    let text = varied_text();
    let input = format!("{text}\n{text}\n");
    let out = run(
        &[
            "client",
            "-v",
            "--deflate-window-bits",
            "11",
            "--deflate-no-context-takeover",
            &server.url("/echo"),
        ],
        input.as_bytes(),
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout_str(), input);
    let both = "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
                server_max_window_bits=11; client_max_window_bits=11";
    assert_eq!(
        extension_lines(&out.stderr),
        [
            format!("> Sec-WebSocket-Extensions: {both}"),
            format!("< Sec-WebSocket-Extensions: {both}"),
        ],
        "{}",
        out.stderr
    );
    server.stop();
}

#[test]
fn the_smaller_window_wins() {
    let server = Server::start_with(&[
        "--listen",
        "127.0.0.1:0",
        "--deflate",
        "--deflate-window-bits",
        "12",
    ]);
    let input = format!("{}\n", varied_text());
    let out = run(
        &[
            "client",
            "-v",
            "--deflate-window-bits",
            "9",
            &server.url("/echo"),
        ],
        input.as_bytes(),
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout_str(), input);
    assert_eq!(
        agreed(&out.stderr),
        "permessage-deflate; server_max_window_bits=9; client_max_window_bits=9"
    );
    server.stop();
}

/// A raw client that offers permessage-deflate (no parameters) and sends uncompressed text.
fn raw_deflate_client(server: &Server) -> Ws {
    let request = upgrade_request(
        server.addr,
        "/echo",
        "Sec-WebSocket-Extensions: permessage-deflate\r\n",
    );
    let (ws, head) = Ws::connect_with(server.addr, &request);
    assert_eq!(
        header(&head, "sec-websocket-extensions"),
        Some("permessage-deflate"),
        "{head}"
    );
    ws
}

/// A DEFLATE stream made of stored blocks only (level 0) holds the message as it is.
fn is_stored(payload: &[u8], text: &[u8]) -> bool {
    // RFC 1951 §3.2.3: BTYPE 00 is a stored block; the data follows LEN and NLEN.
    payload.len() > text.len()
        && payload[0] & 0b110 == 0
        && payload.windows(text.len()).any(|w| w == text)
}

#[test]
fn serve_level_and_threshold_shape_the_frames() {
    // Level 0, threshold 100: 99 bytes go out plain, 100 bytes in a stored block.
    let server = Server::start_with(&[
        "--listen",
        "127.0.0.1:0",
        "--deflate",
        "--deflate-level",
        "0",
        "--deflate-threshold",
        "100",
    ]);
    let mut ws = raw_deflate_client(&server);
    let below = "a".repeat(99);
    ws.send(TEXT, below.as_bytes());
    let f = ws.read_frame();
    assert_eq!(
        (f.rsv, f.payload.as_slice()),
        (0, below.as_bytes()),
        "{f:?}"
    );
    let at = "a".repeat(100);
    ws.send(TEXT, at.as_bytes());
    let f = ws.read_frame();
    assert_eq!(f.rsv, RSV1, "{f:?}");
    assert!(is_stored(&f.payload, at.as_bytes()), "{f:?}");
    ws.send_close(1000, "");
    assert_eq!(ws.expect_close(), (Some(1000), String::new()));
    drop(ws);
    server.stop();

    // Level 9, threshold 0: one byte is compressed, 100 equal bytes shrink to a few.
    let server = Server::start_with(&[
        "--listen",
        "127.0.0.1:0",
        "--deflate",
        "--deflate-level",
        "9",
        "--deflate-threshold",
        "0",
    ]);
    let mut ws = raw_deflate_client(&server);
    ws.send(TEXT, b"x");
    assert_eq!(ws.read_frame().rsv, RSV1);
    ws.send(TEXT, at.as_bytes());
    let f = ws.read_frame();
    assert!(f.rsv == RSV1 && f.payload.len() < 10, "{f:?}");
    ws.send_close(1000, "");
    assert_eq!(ws.expect_close(), (Some(1000), String::new()));
    drop(ws);
    server.stop();
}

#[test]
fn client_level_and_threshold_shape_the_frames() {
    // A fake server that agrees to permessage-deflate and records the client's frames.
    let server = FakeServer::start(|mut stream| {
        let (head, leftover) = read_head(&mut stream);
        let key = header(&head, "sec-websocket-key").expect("a key");
        let response = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {}\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n",
            accept_key(key)
        );
        stream.write_all(response.as_bytes()).expect("send 101");
        let mut ws = Ws::new(stream, leftover, false);
        let frames = [ws.read_frame(), ws.read_frame()];
        let (code, _) = ws.expect_close();
        ws.send_close(code.expect("a close code"), "");
        (head, frames)
    });
    let long = "b".repeat(10);
    let out = run(
        &[
            "client",
            "--deflate-level",
            "0",
            "--deflate-threshold",
            "10",
            &server.url("/"),
        ],
        format!("123456789\n{long}\n").as_bytes(),
    );
    assert!(out.status.success(), "{out:?}");
    let (head, [below, at]) = server.finish();
    assert_eq!(
        header(&head, "sec-websocket-extensions"),
        Some("permessage-deflate; client_max_window_bits"),
        "{head}"
    );
    assert_eq!(
        (below.rsv, below.payload.as_slice()),
        (0, &b"123456789"[..])
    );
    assert_eq!(at.rsv, RSV1, "{at:?}");
    assert!(is_stored(&at.payload, long.as_bytes()), "{at:?}");
}

#[test]
fn bad_values_are_refused_before_anything_starts() {
    let url = "ws://127.0.0.1:9/";
    for (args, says) in [
        (
            &[
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--deflate",
                "--deflate-level",
                "10",
            ][..],
            "invalid value '10' for '--deflate-level <0-9>': 10 is not in 0..=9",
        ),
        (
            &[
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--deflate",
                "--deflate-window-bits",
                "8",
            ],
            "invalid value '8' for '--deflate-window-bits <9-15>': 8 is not in 9..=15",
        ),
        (
            &["client", "--deflate-window-bits", "16", url],
            "invalid value '16' for '--deflate-window-bits <9-15>': 16 is not in 9..=15",
        ),
        (
            &["client", "--deflate-threshold", "lots", url],
            "invalid value 'lots' for '--deflate-threshold <BYTES>'",
        ),
        // On the server the options tune --deflate, which is off by default.
        (
            &[
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--deflate-no-context-takeover",
            ],
            "the following required arguments were not provided: --deflate",
        ),
        (
            &["client", "--no-deflate", "--deflate-level", "1", url],
            "the argument '--no-deflate' cannot be used with",
        ),
    ] {
        let out = run(args, b"");
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        assert!(out.stderr.contains(says), "{args:?}: {}", out.stderr);
        assert!(out.stdout.is_empty(), "{args:?}: {out:?}");
    }
}
