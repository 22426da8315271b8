//! Writes the seed corpus, `corpus/<target>/<name>`: small valid (and a few nearly valid)
//! frames, handshakes and deflated messages in each target's input layout (see the targets'
//! docs and `src/lib.rs`). Deterministic; run from `fuzz/` after changing a layout:
//!
//! ```text
//! cargo +nightly run --locked --example seeds
//! ```

use flate2::{Compress, Compression, FlushCompress};
use std::path::Path;
use wsduplex_fuzz::raw_frame;

const KEY: Option<[u8; 4]> = Some([0x37, 0xfa, 0x21, 0x3d]);
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// RFC 7692 §7.2.3.1: "Hello", compressed.
const HELLO: &[u8] = &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
/// §7.2.3.2: the second "Hello" with the context kept.
const HELLO_AGAIN: &[u8] = &[0xf2, 0x00, 0x11, 0x00, 0x00];
/// §7.2.3.3: a stored block.
const HELLO_STORED: &[u8] = &[
    0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00,
];
/// §7.2.3.4: a block with BFINAL set.
const HELLO_FINAL: &[u8] = &[0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00];
/// §7.2.3.5: two blocks.
const HELLO_TWO_BLOCKS: &[u8] = &[
    0xf2, 0x48, 0x05, 0x00, 0x00, 0x00, 0xff, 0xff, 0xca, 0xc9, 0xc9, 0x07, 0x00,
];

/// Raw DEFLATE with a sync flush and the tail removed, as a sender does (RFC 7692 §7.2.1).
fn deflate(z: &mut Compress, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 64);
    let start = z.total_in();
    loop {
        let done = (z.total_in() - start) as usize;
        z.compress_vec(&data[done..], &mut out, FlushCompress::Sync)
            .unwrap();
        if (z.total_in() - start) as usize == data.len() && out.len() < out.capacity() {
            break;
        }
        out.reserve(out.capacity());
    }
    assert!(out.ends_with(&TAIL));
    out.truncate(out.len() - 4);
    out
}

fn compressor(bits: u8) -> Compress {
    Compress::new_with_window_bits(Compression::new(6), false, bits)
}

fn text(n: usize) -> Vec<u8> {
    "the quick brown fox jumps over the lazy dog; ünïcödé ✓ "
        .bytes()
        .cycle()
        .take(n)
        .collect()
}

/// A frame as the given role would receive it: masked for a server.
fn frame(server: bool, b0: u8, payload: &[u8]) -> Vec<u8> {
    raw_frame(b0, if server { KEY } else { None }, payload)
}

fn close_payload(code: u16, reason: &str) -> Vec<u8> {
    let mut p = code.to_be_bytes().to_vec();
    p.extend_from_slice(reason.as_bytes());
    p
}

struct Seeds {
    root: &'static Path,
    count: usize,
}

impl Seeds {
    fn put(&mut self, target: &str, name: &str, bytes: &[u8]) {
        let dir = self.root.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), bytes).unwrap();
        self.count += 1;
    }
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

fn le(n: usize) -> [u8; 2] {
    (n as u16).to_le_bytes()
}

fn bytes_targets(s: &mut Seeds) {
    for (server, target) in [
        (true, "connection_server_bytes"),
        (false, "connection_client_bytes"),
    ] {
        let f = |b0, p: &[u8]| frame(server, b0, p);
        // Header: flags, deflate params, level; then the piece sizes byte.
        let plain: &[u8] = &[0, 0, 6, 0x21];
        let deflated: &[u8] = &[1, 0, 6, 0x00];
        let deflate_small: &[u8] = &[0x03, 0xff, 1, 0x00, 0x10, 0x00, 0x01, 0x01];
        let small: &[u8] = &[0x22, 0, 0, 0x40, 0x00, 0x80, 0x00, 0x13];
        s.put(
            target,
            "echo",
            &cat(&[
                plain,
                &f(0x81, b"Hello"),
                &f(0x82, &[0, 1, 2, 255]),
                &f(0x89, b"ping"),
                &f(0x88, &close_payload(1000, "bye")),
            ]),
        );
        s.put(
            target,
            "fragments",
            &cat(&[
                plain,
                &f(0x01, b"Hel"),
                &f(0x89, b""),
                &f(0x00, "lo ✓".as_bytes()),
                &f(0x80, b"!"),
                &f(0x8a, b"pong"),
            ]),
        );
        s.put(
            target,
            "lengths",
            &cat(&[
                plain,
                &f(0x82, &[7; 126]),
                &f(0x82, &[8; 300]),
                &f(0x81, &text(1000)),
            ]),
        );
        let huge = [
            0x82,
            if server { 0xff } else { 0x7f },
            0,
            0,
            0,
            1,
            0,
            0,
            0,
            0,
            1,
            2,
            3,
            4,
        ];
        s.put(
            target,
            "huge_length",
            &cat(&[small, &huge[..if server { 14 } else { 10 }]]),
        );
        s.put(
            target,
            "bad_utf8",
            &cat(&[plain, &f(0x01, &[0xce]), &f(0x80, &[0xba, 0xff])]),
        );
        s.put(target, "close_bad", &cat(&[plain, &f(0x88, &[3])]));
        s.put(
            target,
            "close_code",
            &cat(&[plain, &f(0x88, &close_payload(1005, ""))]),
        );
        s.put(
            target,
            "close_empty",
            &cat(&[plain, &f(0x81, b"x"), &f(0x88, b""), &f(0x81, b"after")]),
        );
        s.put(target, "reserved", &cat(&[plain, &f(0x83, b"x")]));
        s.put(target, "rsv2", &cat(&[plain, &f(0xa1, b"x")]));
        s.put(
            target,
            "wrong_mask",
            &cat(&[
                plain,
                &raw_frame(0x81, if server { None } else { KEY }, b"x"),
            ]),
        );
        s.put(
            target,
            "unmasked_allowed",
            &cat(&[&[0x04, 0, 0, 0], &raw_frame(0x81, None, b"x")]),
        );
        s.put(target, "ping_too_long", &cat(&[plain, &f(0x89, &[1; 126])]));
        s.put(
            target,
            "truncated",
            &cat(&[plain, &f(0x82, &[5; 40])[..20]]),
        );
        s.put(
            target,
            "deflate_hello",
            &cat(&[
                deflated,
                &f(0xc1, HELLO),
                &f(0xc1, HELLO_AGAIN),
                &f(0xc1, HELLO_STORED),
                &f(0xc1, HELLO_FINAL),
                &f(0xc1, HELLO_TWO_BLOCKS),
            ]),
        );
        s.put(
            target,
            "deflate_fragments",
            &cat(&[
                deflated,
                &f(0x41, &HELLO[..3]),
                &f(0x89, b""),
                &f(0x80, &HELLO[3..]),
                &f(0x82, b"plain"),
            ]),
        );
        let mut z = compressor(15);
        let long = deflate(&mut z, &text(3000));
        let again = deflate(&mut z, &text(3000));
        s.put(
            target,
            "deflate_long",
            &cat(&[deflated, &f(0xc1, &long), &f(0xc1, &again)]),
        );
        let bomb = deflate(&mut compressor(15), &vec![0; 100_000]);
        s.put(
            target,
            "deflate_bomb",
            &cat(&[deflate_small, &f(0xc2, &bomb)]),
        );
        s.put(
            target,
            "deflate_rsv1_continuation",
            &cat(&[deflated, &f(0x41, &HELLO[..3]), &f(0xc0, &HELLO[3..])]),
        );
        s.put(
            target,
            "deflate_garbage",
            &cat(&[deflated, &f(0xc2, &[0xff; 12])]),
        );
        // What the fuzzer found (tests/regressions.rs in the core): text inflating to 0xb1,
        // then a distance too far back; 257 bytes past a 256-byte limit, then a bad distance
        // code.
        s.put(
            target,
            "found_utf8_then_corrupt",
            &cat(&[
                deflated,
                &f(0xc1, &[0xdb, 0x48, 0xe4, 0xc9, 0xb6, 0x07, 0x00]),
            ]),
        );
        let limit_256: &[u8] = &[0x03, 0x03, 1, 0x00, 0x10, 0x00, 0x01, 0x01];
        let past_limit = [
            0x0a, 0xeb, 0x1a, 0xc6, 0x00, 0x01, 0x3b, 0xfa, 0xaf, 0x55, 0x62, 0xf3, 0x67, 0x6a,
            0x3b, 0xfa, 0x37, 0xfb, 0x3b, 0x00, 0x16, 0xc6, 0x0c, 0x00,
        ];
        s.put(
            target,
            "found_limit_then_corrupt",
            &cat(&[limit_256, &f(0xc2, &past_limit)]),
        );
    }
}

fn ops(s: &mut Seeds) {
    let t = "connection_ops";
    let text16 = |op: u8, b: &[u8]| cat(&[&[op], &le(b.len()), b]);
    let len8 = |op: u8, b: &[u8]| cat(&[&[op, b.len() as u8], b]);
    let all = |op: u8| vec![op, 0, 0];
    let close = |op: u8, code: u16, reason: &[u8]| {
        cat(&[&[op], &code.to_le_bytes(), &[reason.len() as u8], reason])
    };
    let conversation = cat(&[
        &text16(3, b"hello"),
        &all(7),
        &[16],
        &text16(10, b"hello back"),
        &all(15),
        &len8(5, b"ping"),
        &[0x08, 0x03, 0x00],
        &all(8),
        &[16, 16],
        &text16(11, &[1, 2, 3]),
        &text16(11, &[2, 3, 4]),
        &len8(12, b"are you there"),
        &all(15),
        &all(7),
        &close(14, 1000, b"done"),
        &all(15),
        &all(7),
        &[16, 16, 17, 9],
    ]);
    // Role, config (flags, params, level), peer fragment size.
    s.put(t, "server", &cat(&[&[0, 0, 0, 6, 0], &conversation]));
    s.put(t, "client", &cat(&[&[1, 0, 0, 6, 1], &conversation]));
    s.put(
        t,
        "server_deflate",
        &cat(&[&[0, 0x01, 0x00, 6, 2], &conversation]),
    );
    s.put(
        t,
        "client_deflate_fragmented",
        &cat(&[&[1, 0x29, 0xc5, 9, 3], &conversation]),
    );
    s.put(
        t,
        "small_limits",
        &cat(&[
            &[0, 0x02, 0, 0, 0x10, 0x00, 0x20, 0x00, 0],
            &text16(4, &[9; 40]),
            &all(7),
            &[16],
            &all(15),
        ]),
    );
    s.put(
        t,
        "peer_closes_first",
        &cat(&[
            &[0, 0, 0, 0, 0],
            &close(6, 1001, b"away"),
            &all(7),
            &[16],
            &text16(10, b"late"),
            &all(15),
            &[9],
        ]),
    );
    s.put(
        t,
        "raw_frames",
        &cat(&[
            &[0, 0, 0, 0, 0],
            &[1, 0x81],
            &le(2),
            b"hi",
            &[16],
            &[2, 0x81, 1, b'x'],
            &[16],
            &all(15),
        ]),
    );
    s.put(
        t,
        "raw_bytes",
        &cat(&[
            &[1, 0, 0, 0, 0],
            &text16(0, &[0x81, 0x02, b'h', b'i', 0x89, 0x00]),
            &[16, 16],
            &all(15),
        ]),
    );
    s.put(
        t,
        "usage_errors",
        &cat(&[
            &[0, 0, 0, 0, 0],
            &len8(12, &[0; 200]),
            &close(14, 1005, b""),
            &close(14, 0, b""),
            &text16(10, b"after close"),
            &all(15),
        ]),
    );
    // What the fuzzer found: the end of the stream while a message waits to be taken.
    s.put(
        t,
        "found_eof_with_event_waiting",
        &cat(&[
            &[0, 0, 0, 0, 0],
            &text16(3, b"hello"),
            &all(7),
            &[9],
            &len8(5, b"ping"),
            &all(8),
            &[16, 16],
            &all(15),
        ]),
    );
}

fn handshakes(s: &mut Seeds) {
    let t = "handshake_request";
    let policy: &[u8] = &[15, 15, 6];
    let rfc = "GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\n\
               Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
               Origin: http://example.com\r\nSec-WebSocket-Protocol: chat, superchat\r\n\
               Sec-WebSocket-Version: 13\r\n";
    let req = |extra: &str| format!("{rfc}{extra}\r\n").into_bytes();
    s.put(t, "rfc", &cat(&[policy, &req("")]));
    s.put(
        t,
        "deflate",
        &cat(&[
            policy,
            &req("Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"),
        ]),
    );
    s.put(t, "deflate_params", &cat(&[&[0x8a, 0x0c, 1], &req("Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=10; client_no_context_takeover, permessage-deflate\r\n")]));
    s.put(t, "deflate_quoted", &cat(&[policy, &req("Sec-WebSocket-Extensions: x-webkit-deflate-frame, permessage-deflate; client_max_window_bits=\"9\"; server_no_context_takeover\r\nSec-WebSocket-Extensions: foo; bar=baz\r\n")]));
    s.put(t, "deflate_bad", &cat(&[policy, &req("Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=16; server_max_window_bits=8\r\n")]));
    let mut with_frames = cat(&[policy, &req("")]);
    with_frames.extend(raw_frame(0x81, KEY, b"first frame"));
    s.put(t, "trailing_frame", &with_frames);
    let mut with_deflated = cat(&[
        policy,
        &req("Sec-WebSocket-Extensions: permessage-deflate\r\n"),
    ]);
    with_deflated.extend(raw_frame(0xc1, KEY, HELLO));
    s.put(t, "trailing_deflated", &with_deflated);
    s.put(
        t,
        "http10",
        &cat(&[
            policy,
            rfc.replace("HTTP/1.1", "HTTP/1.0").as_bytes(),
            b"\r\n",
        ]),
    );
    s.put(
        t,
        "post",
        &cat(&[policy, rfc.replace("GET", "POST").as_bytes(), b"\r\n"]),
    );
    s.put(
        t,
        "version8",
        &cat(&[
            policy,
            rfc.replace("Version: 13", "Version: 8").as_bytes(),
            b"\r\n",
        ]),
    );
    s.put(
        t,
        "two_keys",
        &cat(&[
            policy,
            &req("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"),
        ]),
    );
    s.put(t, "partial", &cat(&[policy, rfc.as_bytes()]));

    let t = "handshake_response";
    let head = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                Sec-WebSocket-Accept: {ACCEPT}\r\n";
    let resp = |extra: &str| format!("{head}{extra}\r\n").into_bytes();
    // Flags (bit 0: offer deflate, bit 1: offer subprotocols), policy.
    let plain: &[u8] = &[0, 15, 15, 6];
    let both: &[u8] = &[3, 15, 15, 6];
    s.put(t, "plain", &cat(&[plain, &resp("")]));
    s.put(
        t,
        "subprotocol",
        &cat(&[both, &resp("Sec-WebSocket-Protocol: chat\r\n")]),
    );
    s.put(t, "deflate", &cat(&[both, &resp("Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=10; client_max_window_bits=12\r\n")]));
    s.put(
        t,
        "deflate_unoffered",
        &cat(&[
            plain,
            &resp("Sec-WebSocket-Extensions: permessage-deflate\r\n"),
        ]),
    );
    s.put(
        t,
        "deflate_twice",
        &cat(&[
            both,
            &resp("Sec-WebSocket-Extensions: permessage-deflate, permessage-deflate\r\n"),
        ]),
    );
    let mut with_frames = cat(&[plain, &resp("")]);
    with_frames.extend(raw_frame(0x82, None, &[1, 2, 3]));
    s.put(t, "trailing_frame", &with_frames);
    let mut with_deflated = cat(&[
        both,
        &resp("Sec-WebSocket-Extensions: permessage-deflate\r\n"),
    ]);
    with_deflated.extend(raw_frame(0xc2, None, HELLO));
    s.put(t, "trailing_deflated", &with_deflated);
    s.put(
        t,
        "forbidden",
        &cat(&[
            plain,
            b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n",
        ]),
    );
    s.put(
        t,
        "wrong_accept",
        &cat(&[plain, resp("").replace_accept().as_slice()]),
    );
    // A head just past the 16 KiB limit, complete in one read: refused all the same.
    let filler = format!("X-Filler: {}\r\n", "a".repeat(16 * 1024));
    s.put(t, "head_too_large", &cat(&[plain, &resp(&filler)]));
    s.put(
        t,
        "no_upgrade",
        &cat(&[
            plain,
            head.replace("Upgrade: websocket\r\n", "").as_bytes(),
            b"\r\n",
        ]),
    );
}

trait ReplaceAccept {
    fn replace_accept(&self) -> Vec<u8>;
}

impl ReplaceAccept for Vec<u8> {
    fn replace_accept(&self) -> Vec<u8> {
        String::from_utf8_lossy(self)
            .replace("{ACCEPT}", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
            .into_bytes()
    }
}

fn inflate(s: &mut Seeds) {
    let t = "inflate";
    // Flags (window bits, no context takeover, text, pings, trickle), max size, fragments.
    let frag = |fin: bool, b: &[u8]| cat(&[&[fin as u8], &le(b.len()), b]);
    let text_flags = |bits: u8| 0x10 | (bits - 8);
    s.put(
        t,
        "rfc_hello",
        &cat(&[
            &[text_flags(15), 0, 0],
            &frag(true, HELLO),
            &frag(true, HELLO_AGAIN),
            &frag(true, HELLO_STORED),
            &frag(true, HELLO_FINAL),
            &frag(true, HELLO_TWO_BLOCKS),
        ]),
    );
    s.put(
        t,
        "rfc_fragments_pings",
        &cat(&[
            &[text_flags(15) | 0x20, 0, 0],
            &frag(false, &HELLO[..2]),
            &frag(false, &HELLO[2..4]),
            &frag(true, &HELLO[4..]),
        ]),
    );
    s.put(
        t,
        "trickle",
        &cat(&[
            &[text_flags(15) | 0x40, 0, 0],
            &frag(true, HELLO),
            &frag(true, HELLO_AGAIN),
        ]),
    );
    for bits in [9u8, 12, 15] {
        let mut z = compressor(bits);
        let a = deflate(&mut z, &text(2000));
        let b = deflate(&mut z, &text(500));
        s.put(
            t,
            &format!("text_bits{bits}"),
            &cat(&[&[text_flags(bits), 0, 0], &frag(true, &a), &frag(true, &b)]),
        );
        let mut z = compressor(bits);
        let bin: Vec<u8> = (0..1500u32).map(|i| (i * i % 251) as u8).collect();
        let c = deflate(&mut z, &bin);
        z.reset();
        let d = deflate(&mut z, &bin);
        s.put(
            t,
            &format!("binary_bits{bits}_reset"),
            &cat(&[
                &[0x08 | (bits - 8), 0, 0],
                &frag(false, &c[..c.len() / 2]),
                &frag(true, &c[c.len() / 2..]),
                &frag(true, &d),
            ]),
        );
    }
    let bomb = deflate(&mut compressor(15), &vec![0; 200_000]);
    s.put(t, "bomb", &cat(&[&[0x07, 0x00, 0x10], &frag(true, &bomb)]));
    s.put(
        t,
        "bomb_just_fits",
        &cat(&[
            &[0x07, 0x40, 0x0d],
            &frag(true, &deflate(&mut compressor(15), &[0; 3392])),
        ]),
    );
    s.put(
        t,
        "empty",
        &cat(&[
            &[0x07, 0, 0],
            &frag(true, &[0x00]),
            &frag(true, b""),
            &frag(true, &[0x02, 0x00]),
        ]),
    );
    s.put(
        t,
        "bad_utf8",
        &cat(&[
            &[text_flags(15), 0, 0],
            &frag(true, &deflate(&mut compressor(15), &[b'a', 0xff, b'b'])),
        ]),
    );
    s.put(
        t,
        "garbage",
        &cat(&[&[0x07, 0, 0], &frag(true, &[0xff, 0xfe, 0xfd])]),
    );
}

fn frame_header(s: &mut Seeds) {
    let t = "frame_header";
    let mut n = 0;
    for len in [0u64, 125, 126, 65535, 65536, 1 << 40] {
        for mask in [None, KEY] {
            let h = proto::frame::FrameHeader {
                fin: true,
                rsv1: false,
                rsv2: false,
                rsv3: false,
                opcode: proto::frame::OpCode::Binary,
                mask,
                payload_len: len,
            };
            let (buf, m) = h.encode();
            s.put(t, &format!("h{n}"), &buf[..m]);
            n += 1;
        }
    }
    s.put(t, "non_minimal", &[0x81, 0x7e, 0x00, 0x05]);
    s.put(t, "top_bit", &[0x82, 0x7f, 0x80, 0, 0, 0, 0, 0, 0, 1]);
    s.put(t, "reserved", &[0x8b, 0x00]);
}

fn main() {
    let root: &'static Path = Box::leak(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("corpus")
            .into_boxed_path(),
    );
    let mut s = Seeds { root, count: 0 };
    frame_header(&mut s);
    bytes_targets(&mut s);
    ops(&mut s);
    handshakes(&mut s);
    inflate(&mut s);
    println!("wrote {} seeds under {}", s.count, root.display());
}
