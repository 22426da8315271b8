//! RFC 7692: permessage-deflate once agreed.

use super::*;
use crate::deflate::tests::zero_bomb;
use crate::deflate::DeflateParams;

fn pair(params: DeflateParams, config: Config) -> (Connection, Connection) {
    let config = Config {
        deflate: Some(params),
        compression_threshold: 0,
        ..config
    };
    (
        Connection::new(Role::Client, config.clone()),
        Connection::new(Role::Server, config),
    )
}

fn compressed(data: &[u8]) -> Vec<u8> {
    crate::deflate::Deflater::new(6, 15, true)
        .compress(data)
        .to_vec()
}

fn deflate_server(config: Config) -> Connection {
    Connection::new(
        Role::Server,
        Config {
            deflate: Some(DeflateParams::default()),
            ..config
        },
    )
}

#[test]
#[cfg_attr(
    miri,
    ignore = "zlib is too slow under Miri, and reaches no unsafe code of ours"
)]
fn messages_roundtrip_compressed_both_ways_with_and_without_context_takeover() {
    let text = "compress me, compress me, compress me ".repeat(50);
    for reset in [false, true] {
        let params = DeflateParams {
            server_no_context_takeover: reset,
            client_no_context_takeover: reset,
            server_max_window_bits: 10,
            client_max_window_bits: 9,
        };
        let (mut c, mut s) = pair(params, Config::default());
        for chunk in [1, 5, 1 << 20] {
            for _ in 0..3 {
                c.send_text(&text).unwrap();
                s.send_binary(text.as_bytes()).unwrap();
            }
            let out = take_tx(&mut c);
            assert_eq!(out[0], 0xc1, "RSV1 and FIN on a compressed text frame");
            assert!(out.len() < text.len(), "compressed: {} bytes", out.len());
            for piece in out.chunks(chunk) {
                s.receive(piece).unwrap();
            }
            for m in events(&mut s) {
                assert!(matches!(m, Message::Text(t) if t.as_str() == text));
            }
            let got = pump(&mut s, &mut c, chunk);
            assert_eq!(got.len(), 3);
            for m in got {
                assert!(matches!(m, Message::Binary(b) if b == text.as_bytes()));
            }
        }
    }
}

#[test]
#[cfg_attr(
    miri,
    ignore = "zlib is too slow under Miri, and reaches no unsafe code of ours"
)]
fn a_compressed_message_is_fragmented_with_rsv1_on_the_first_frame_only() {
    let (mut c, mut s) = pair(
        DeflateParams::default(),
        Config::default().fragment_size(Some(10)),
    );
    let data: Vec<u8> = (0..2000u32).map(|i| (i * i % 251) as u8).collect();
    c.send_binary(&data).unwrap();
    let out = take_tx(&mut c);
    let (first, n) = FrameHeader::decode(&out).unwrap().unwrap();
    assert!(first.rsv1 && !first.fin && first.opcode == OpCode::Binary);
    let (second, _) = FrameHeader::decode(&out[n + 10..]).unwrap().unwrap();
    assert!(!second.rsv1 && second.opcode == OpCode::Continuation);
    s.receive(&out).unwrap();
    assert!(matches!(&events(&mut s)[..], [Message::Binary(b)] if *b == data));
}

#[test]
#[cfg_attr(
    miri,
    ignore = "zlib is too slow under Miri, and reaches no unsafe code of ours"
)]
fn an_incoming_compressed_message_in_fragments_with_a_ping_between() {
    let mut s = deflate_server(Config::default());
    let c = compressed("Hello, fragmented world".as_bytes());
    let (a, rest) = c.split_at(3);
    let (b, d) = rest.split_at(4);
    s.receive(&raw(0x41, K, a)).unwrap();
    s.receive(&raw(0x89, K, b"p")).unwrap();
    s.receive(&raw(0x00, K, b)).unwrap();
    s.receive(&raw(0x80, K, d)).unwrap();
    let ev = events(&mut s);
    assert!(matches!(&ev[0], Message::Ping(_)));
    assert!(matches!(&ev[1], Message::Text(t) if t.as_str() == "Hello, fragmented world"));
}

#[test]
#[cfg_attr(
    miri,
    ignore = "zlib is too slow under Miri, and reaches no unsafe code of ours"
)]
fn the_rfc_example_and_small_messages_uncompressed_below_the_threshold() {
    let mut s = deflate_server(Config::default());
    // RFC 7692 §7.2.3.1, masked.
    s.receive(&raw(0xc1, K, &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]))
        .unwrap();
    assert!(matches!(&events(&mut s)[..], [Message::Text(t)] if t.as_str() == "Hello"));
    // The default threshold sends short messages as they are.
    s.send_text("Hello").unwrap();
    assert_eq!(take_tx(&mut s), b"\x81\x05Hello");
}

#[test]
#[cfg_attr(
    miri,
    ignore = "zlib is too slow under Miri, and reaches no unsafe code of ours"
)]
fn rsv1_is_only_allowed_on_the_first_frame_of_a_data_message() {
    let cases: &[(&[Vec<u8>], bool)] = &[
        // Without the extension, RSV1 is a protocol error.
        (&[raw(0xc1, K, &compressed(b"x"))], false),
        (&[raw(0xc9, K, b"")], true),
        (&[raw(0xca, K, b"")], true),
        (&[raw(0xc8, K, b"")], true),
        (&[raw(0x01, K, b"a"), raw(0xc0, K, b"b")], true),
        (&[raw(0x41, K, &compressed(b"a")), raw(0xc0, K, b"")], true),
        // RSV2 and RSV3 stay reserved.
        (&[raw(0xa1, K, b"a")], true),
        (&[raw(0x91, K, b"a")], true),
    ];
    for (frames, with_deflate) in cases {
        let mut s = if *with_deflate {
            deflate_server(Config::default())
        } else {
            server()
        };
        let (last, first) = frames.split_last().unwrap();
        for f in first {
            s.receive(f).unwrap();
        }
        let r = s.receive(last);
        assert_failed_with(&mut s, r, CloseCode::PROTOCOL_ERROR);
    }
}

#[test]
#[cfg_attr(
    miri,
    ignore = "zlib is too slow under Miri, and reaches no unsafe code of ours"
)]
fn invalid_utf8_in_compressed_text_fails_with_1007_before_the_message_ends() {
    let mut s = deflate_server(Config::default());
    let mut bad = b"fine so far ".repeat(10);
    bad.extend_from_slice(&[0xc0, 0x80]);
    bad.extend_from_slice(&b"more".repeat(100));
    let c = compressed(&bad);
    // First frame of a longer message: no FIN, and the rest never arrives.
    let r = s.receive(&raw(0x41, K, &c));
    assert_failed_with(&mut s, r, CloseCode::INVALID_PAYLOAD);
}

#[test]
#[cfg_attr(
    miri,
    ignore = "zlib is too slow under Miri, and reaches no unsafe code of ours"
)]
fn invalid_deflate_data_fails_with_1002() {
    let mut s = deflate_server(Config::default());
    let r = s.receive(&raw(0xc2, K, &[0xff; 8]));
    assert_failed_with(&mut s, r, CloseCode::PROTOCOL_ERROR);
}

#[test]
#[cfg_attr(
    miri,
    ignore = "zlib is too slow under Miri, and reaches no unsafe code of ours"
)]
fn a_compression_bomb_fails_with_1009_at_the_inflated_limit() {
    let max = 256 << 10;
    let mut s = deflate_server(Config::default().max_message_size(max));
    let bomb = zero_bomb(16 << 20);
    let r = s.receive(&raw(0xc2, K, &bomb));
    let Err(Error::Protocol(ProtocolError::MessageTooBig { size, .. })) = r else {
        panic!("{r:?}");
    };
    assert!(size > max && size <= max + (1 << 20), "{size}");
    assert_failed_with(&mut s, r, CloseCode::MESSAGE_TOO_BIG);
}

#[test]
#[cfg_attr(
    miri,
    ignore = "zlib is too slow under Miri, and reaches no unsafe code of ours"
)]
fn context_is_released_when_idle_without_context_takeover() {
    let params = DeflateParams {
        server_no_context_takeover: true,
        client_no_context_takeover: true,
        ..DeflateParams::default()
    };
    let (mut c, mut s) = pair(params, Config::default());
    for _ in 0..2 {
        c.send_text("abc abc abc abc").unwrap();
        let got = pump(&mut c, &mut s, 1 << 20);
        assert!(matches!(&got[..], [Message::Text(t)] if t.as_str() == "abc abc abc abc"));
        c.shrink_buffers();
        s.shrink_buffers();
    }
}
