//! Protocol scenarios: bytes only, grouped by RFC 6455 section.

//!
//! Split by concern: `deflate_7692` and `borrowed_receive` beside the RFC 6455 sections here.

use super::*;
use crate::close::{CloseCode, CloseFrame};
use crate::error::UsageError;
use crate::frame::{FrameHeader, OpCode, MAX_HEADER_LEN};
use crate::mask::apply_mask;
use bytes::{Buf, Bytes};

mod borrowed_receive;
#[cfg(feature = "deflate")]
mod deflate_7692;

/// Built without compression, an agreement set by hand is ignored: the peer's compressed
/// frame is an RSV1 nobody negotiated (RFC 6455 §5.2: fail the connection, 1002), and this
/// end sends uncompressed.
#[test]
#[cfg(not(feature = "deflate"))]
fn without_the_feature_a_deflate_agreement_is_ignored() {
    let config = Config {
        deflate: Some(crate::deflate::DeflateParams::default()),
        compression_threshold: 0,
        ..Config::default()
    };
    let mut c = Connection::new(Role::Client, config.clone());
    c.send_text("hello hello hello").unwrap();
    let tx = take_tx(&mut c);
    assert_eq!(tx[0], 0x81, "FIN, no RSV1, text");
    let mut s = Connection::new(Role::Server, config);
    let r = s.receive(&raw(0xc1, K, b"anything"));
    assert_failed_with(&mut s, r, CloseCode::PROTOCOL_ERROR);
}

/// Encodes one raw frame, masking when a key is given.
fn raw(b0: u8, mask: Option<[u8; 4]>, payload: &[u8]) -> Vec<u8> {
    let h = FrameHeader {
        fin: b0 & 0x80 != 0,
        rsv1: b0 & 0x40 != 0,
        rsv2: b0 & 0x20 != 0,
        rsv3: b0 & 0x10 != 0,
        opcode: OpCode::Text,
        mask,
        payload_len: payload.len() as u64,
    };
    let (mut head, n) = h.encode();
    // Patch in the raw opcode so reserved opcodes can be written too.
    head[0] = b0;
    let mut out = head[..n].to_vec();
    let start = out.len();
    out.extend_from_slice(payload);
    if let Some(k) = mask {
        apply_mask(&mut out[start..], k, 0);
    }
    out
}

const K: Option<[u8; 4]> = Some([0x37, 0xfa, 0x21, 0x3d]);

fn server() -> Connection {
    Connection::new(Role::Server, Config::default())
}

fn client() -> Connection {
    Connection::new(Role::Client, Config::default())
}

fn take_tx(c: &mut Connection) -> Vec<u8> {
    match c.poll_transmit() {
        Some(t) => t.copy_to_bytes(t.remaining()).to_vec(),
        None => Vec::new(),
    }
}

fn events(c: &mut Connection) -> Vec<Message> {
    std::iter::from_fn(|| c.poll_event()).collect()
}

/// Asserts the connection failed with `code` and queued exactly that close frame.
fn assert_failed_with(c: &mut Connection, r: Result<(), Error>, code: CloseCode) {
    let Err(Error::Protocol(e)) = r else {
        panic!("expected a protocol error, got {r:?}");
    };
    assert_eq!(e.close_code(), code, "{e}");
    let mut out = take_tx(c);
    let (h, n) = FrameHeader::decode(&out).unwrap().unwrap();
    assert_eq!(h.opcode, OpCode::Close, "a close frame is owed");
    let body = &mut out[n..];
    if let Some(k) = h.mask {
        apply_mask(body, k, 0);
    }
    assert_eq!(u16::from_be_bytes([body[0], body[1]]), code.as_u16());
    assert!(matches!(c.state(), State::Failed(_)));
    // Sticky: everything after fails the same way and sends nothing.
    assert!(c.receive(&raw(0x81, K, b"x")).is_err());
    assert!(c.send_text("x").is_err());
    assert!(c.poll_transmit().is_none());
}

/// Moves everything `from` has queued into `to`, one `chunk` bytes at a time.
fn pump(from: &mut Connection, to: &mut Connection, chunk: usize) -> Vec<Message> {
    let bytes = take_tx(from);
    for piece in bytes.chunks(chunk.max(1)) {
        to.receive(piece).unwrap();
    }
    events(to)
}

mod framing_5_2 {
    use super::*;

    #[test]
    fn data_roundtrips_both_ways_in_any_chunking() {
        let sizes: &[usize] = if cfg!(miri) {
            // Each length form once: Miri is slow.
            &[0, 1, 125, 126, 127, 65535, 65536]
        } else {
            &[0, 1, 125, 126, 127, 65535, 65536, 70000]
        };
        for &size in sizes {
            let payload: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
            for chunk in [1usize, 7, 4096, usize::MAX] {
                // Byte by byte is slow for large payloads; under Miri, so is 7 at a time.
                if (chunk == 1 || (cfg!(miri) && chunk == 7)) && size > 1000 {
                    continue;
                }
                let (mut c, mut s) = (client(), server());
                c.send_binary(&payload).unwrap();
                c.send_text("é").unwrap();
                let got = pump(&mut c, &mut s, chunk);
                assert_eq!(got.len(), 2);
                assert_eq!(got[0], Message::Binary(payload.clone().into()));
                assert_eq!(got[1], Message::text("é"));
                s.send_binary(&payload).unwrap();
                let got = pump(&mut s, &mut c, chunk);
                assert_eq!(got, vec![Message::Binary(payload.clone().into())]);
            }
        }
    }

    #[test]
    fn client_masks_every_frame_with_a_fresh_key_and_server_never_masks() {
        let mut c = client();
        c.send_text("aaaa").unwrap();
        c.send_text("aaaa").unwrap();
        let out = take_tx(&mut c);
        assert_eq!(out.len(), 2 * (2 + 4 + 4));
        assert!(out[1] & 0x80 != 0 && out[11] & 0x80 != 0);
        assert_ne!(out[2..6], out[12..16], "mask keys repeat");
        let mut s = server();
        s.send_text("aaaa").unwrap();
        assert_eq!(take_tx(&mut s), b"\x81\x04aaaa");
    }

    #[test]
    fn server_rejects_unmasked_and_client_rejects_masked_frames() {
        let mut s = server();
        let r = s.receive(&raw(0x81, None, b"hi"));
        assert_failed_with(&mut s, r, CloseCode::PROTOCOL_ERROR);
        let mut c = client();
        let r = c.receive(&raw(0x81, K, b"hi"));
        assert_failed_with(&mut c, r, CloseCode::PROTOCOL_ERROR);
    }

    #[test]
    fn rsv_bits_and_reserved_opcodes_fail_with_1002() {
        for b0 in [0xC1, 0xA1, 0x91, 0x83, 0x87, 0x8B, 0x8F] {
            let mut s = server();
            let r = s.receive(&raw(b0, K, b"x"));
            assert_failed_with(&mut s, r, CloseCode::PROTOCOL_ERROR);
        }
    }

    #[test]
    fn messages_before_an_error_are_delivered_and_answers_go_out_first() {
        let mut s = server();
        let mut bytes = raw(0x81, K, b"first");
        bytes.extend(raw(0x83, K, b""));
        s.receive(&bytes).unwrap();
        assert_eq!(s.poll_event(), Some(Message::text("first")));
        // The application echoes before the bad frame is even decoded (Autobahn 3.2, 4.1.3).
        s.send_text("first").unwrap();
        assert_eq!(s.poll_event(), None);
        assert!(matches!(
            s.state(),
            State::Failed(ProtocolError::ReservedOpCode(3))
        ));
        let out = take_tx(&mut s);
        assert_eq!(&out[..7], b"\x81\x05first");
        assert_eq!(&out[7..9], &[0x88, 0x10]);
    }
}

mod fragmentation_5_4 {
    use super::*;

    #[test]
    fn fragments_reassemble_with_control_frames_between_them() {
        let mut s = server();
        let mut bytes = raw(0x01, K, b"Hel");
        bytes.extend(raw(0x89, K, b"p"));
        bytes.extend(raw(0x00, K, b"lo, "));
        bytes.extend(raw(0x8A, K, b"unsolicited"));
        bytes.extend(raw(0x80, K, b"world"));
        for chunk in [1, 3, bytes.len()] {
            let mut s2 = server();
            for piece in bytes.chunks(chunk) {
                s2.receive(piece).unwrap();
            }
            assert_eq!(
                events(&mut s2),
                vec![
                    Message::Ping("p".into()),
                    Message::Pong("unsolicited".into()),
                    Message::text("Hello, world"),
                ]
            );
            assert_eq!(take_tx(&mut s2), b"\x8a\x01p", "the pong echoes the ping");
        }
        s.receive(&bytes).unwrap();
    }

    #[test]
    fn continuation_rules_fail_with_1002() {
        for bytes in [
            raw(0x80, K, b"no message to continue"),
            [raw(0x01, K, b"a"), raw(0x81, K, b"new message mid-way")].concat(),
            raw(0x09, K, b"fragmented ping"),
        ] {
            let mut s = server();
            let r = s.receive(&bytes);
            assert_failed_with(&mut s, r, CloseCode::PROTOCOL_ERROR);
        }
    }

    #[test]
    fn outgoing_messages_split_at_the_fragment_size() {
        let mut c = Connection::new(Role::Client, Config::default().fragment_size(Some(4)));
        let mut s = server();
        c.send_text("0123456789").unwrap();
        let bytes = take_tx(&mut c);
        assert_eq!(bytes[0], 0x01);
        s.receive(&bytes).unwrap();
        assert_eq!(events(&mut s), vec![Message::text("0123456789")]);
    }
}

mod control_5_5 {
    use super::*;

    #[test]
    fn control_frames_over_125_bytes_fail() {
        let mut s = server();
        let r = s.receive(&raw(0x89, K, &[0; 126]));
        assert_failed_with(&mut s, r, CloseCode::PROTOCOL_ERROR);
        let mut s = server();
        s.receive(&raw(0x89, K, &[7; 125])).unwrap();
        let out = take_tx(&mut s);
        assert_eq!(&out[..2], &[0x8A, 125]);
        assert_eq!(&out[2..], &[7; 125]);
        assert!(matches!(
            client().send_ping(&[0; 126]),
            Err(Error::Usage(UsageError::ControlPayloadTooLong { len: 126 }))
        ));
    }
}

mod utf8_8_1 {
    use super::*;

    #[test]
    fn invalid_utf8_fails_on_the_frame_that_carries_it() {
        let mut s = server();
        s.receive(&raw(0x01, K, "κόσμε".as_bytes())).unwrap();
        // Not the final fragment, and still the error comes now (fail fast).
        let r = s.receive(&raw(0x00, K, &[0xce, 0xba, 0xed, 0xa0, 0x80]));
        assert_failed_with(&mut s, r, CloseCode::INVALID_PAYLOAD);
    }

    #[test]
    fn invalid_utf8_fails_inside_a_partly_received_frame() {
        let mut s = server();
        let bytes = raw(0x81, K, &[b'a', b'b', 0xff, b'c', b'd', b'e']);
        s.receive(&bytes[..8]).unwrap();
        let r = s.receive(&bytes[8..9]);
        assert_failed_with(&mut s, r, CloseCode::INVALID_PAYLOAD);
    }

    #[test]
    fn a_code_point_split_across_fragments_is_valid() {
        let mut s = server();
        let smile = "😀".as_bytes();
        s.receive(&raw(0x01, K, &smile[..1])).unwrap();
        s.receive(&raw(0x00, K, &smile[1..3])).unwrap();
        s.receive(&raw(0x80, K, &smile[3..])).unwrap();
        assert_eq!(events(&mut s), vec![Message::text("😀")]);
    }

    #[test]
    fn a_message_ending_mid_code_point_fails() {
        let mut s = server();
        let r = s.receive(&raw(0x81, K, &[0xf0, 0x9f]));
        assert_failed_with(&mut s, r, CloseCode::INVALID_PAYLOAD);
    }
}

mod closing_7 {
    use super::*;

    #[test]
    fn a_close_is_answered_with_the_same_code_and_nothing_follows() {
        let mut s = server();
        let mut body = 1000u16.to_be_bytes().to_vec();
        body.extend_from_slice(b"bye");
        s.receive(&raw(0x88, K, &body)).unwrap();
        assert_eq!(
            events(&mut s),
            vec![Message::Close(Some(CloseFrame {
                code: CloseCode::NORMAL,
                reason: "bye".into()
            }))]
        );
        assert_eq!(take_tx(&mut s), b"\x88\x02\x03\xe8");
        assert_eq!(s.state(), &State::Closed);
        assert!(matches!(
            s.send_text("late"),
            Err(Error::Usage(UsageError::Closed))
        ));
        s.receive(&raw(0x81, K, b"ignored after close")).unwrap();
        assert!(events(&mut s).is_empty());
        s.receive_eof().unwrap();
    }

    #[test]
    fn an_empty_close_is_answered_with_an_empty_close() {
        let mut s = server();
        s.receive(&raw(0x88, K, b"")).unwrap();
        assert_eq!(events(&mut s), vec![Message::Close(None)]);
        assert_eq!(take_tx(&mut s), b"\x88\x00");
    }

    #[test]
    fn bad_close_payloads_fail() {
        let cases: Vec<(Vec<u8>, CloseCode)> = vec![
            (vec![0x03], CloseCode::PROTOCOL_ERROR),
            (1005u16.to_be_bytes().to_vec(), CloseCode::PROTOCOL_ERROR),
            (999u16.to_be_bytes().to_vec(), CloseCode::PROTOCOL_ERROR),
            (2000u16.to_be_bytes().to_vec(), CloseCode::PROTOCOL_ERROR),
            (
                [&1000u16.to_be_bytes()[..], &[0xff]].concat(),
                CloseCode::INVALID_PAYLOAD,
            ),
        ];
        for (body, code) in cases {
            let mut s = server();
            let r = s.receive(&raw(0x88, K, &body));
            assert_failed_with(&mut s, r, code);
        }
    }

    #[test]
    fn the_codes_sent_and_received_are_recorded() {
        let mut s = server();
        assert_eq!((s.sent_close_code(), s.received_close_code()), (None, None));
        s.receive(&raw(0x88, K, &4000u16.to_be_bytes())).unwrap();
        events(&mut s);
        let codes = (s.sent_close_code(), s.received_close_code());
        assert_eq!(
            codes,
            (Some(CloseCode::new(4000)), Some(CloseCode::new(4000)))
        );

        let mut s = server();
        s.close(CloseCode::GOING_AWAY, "bye").unwrap();
        s.receive(&raw(0x88, K, b"")).unwrap();
        events(&mut s);
        let codes = (s.sent_close_code(), s.received_close_code());
        assert_eq!(
            codes,
            (
                Some(CloseCode::GOING_AWAY),
                Some(CloseCode::NO_STATUS_RECEIVED)
            )
        );

        let mut s = server();
        let _ = s.receive(&raw(0x81, K, b"\xff"));
        assert_eq!(s.sent_close_code(), Some(CloseCode::INVALID_PAYLOAD));
        let _ = s.receive_eof();
        assert_eq!(s.received_close_code(), None);
    }

    #[test]
    fn a_close_mid_message_is_a_normal_close() {
        // Autobahn 7.1.5: the unfinished message is dropped, the close is answered with 1000.
        let mut s = server();
        s.receive(&raw(0x01, K, b"frag")).unwrap();
        s.receive(&raw(0x88, K, &1000u16.to_be_bytes())).unwrap();
        assert_eq!(take_tx(&mut s), b"\x88\x02\x03\xe8");
    }

    #[test]
    fn initiating_close_keeps_receiving_until_the_peer_answers() {
        let (mut c, mut s) = (client(), server());
        c.close(CloseCode::GOING_AWAY, "bye").unwrap();
        c.close(CloseCode::NORMAL, "again").unwrap();
        assert_eq!(c.state(), &State::Closing);
        assert!(c.send_text("late").is_err());
        s.send_text("in flight").unwrap();
        let got = pump(&mut c, &mut s, 1);
        assert!(matches!(&got[..], [Message::Close(Some(f))] if f.code == CloseCode::GOING_AWAY));
        let got = pump(&mut s, &mut c, 1);
        assert_eq!(got[0], Message::text("in flight"));
        assert!(matches!(&got[1], Message::Close(Some(f)) if f.code == CloseCode::GOING_AWAY));
        assert_eq!(c.state(), &State::Closed);
        assert!(c.poll_transmit().is_none(), "no second close frame");
    }

    #[test]
    fn unsendable_codes_and_long_reasons_are_usage_errors() {
        let mut c = client();
        assert!(matches!(
            c.close(CloseCode::new(1005), ""),
            Err(Error::Usage(_))
        ));
        assert!(matches!(
            c.close(CloseCode::NORMAL, &"x".repeat(124)),
            Err(Error::Usage(_))
        ));
        assert_eq!(c.state(), &State::Open);
    }

    #[test]
    fn eof_before_the_closing_handshake_is_abnormal() {
        let mut s = server();
        let r = s.receive_eof();
        assert!(matches!(
            r,
            Err(Error::Protocol(ProtocolError::UnexpectedEof))
        ));
        assert!(s.poll_transmit().is_none(), "1006 is never sent");
    }
}

mod limits {
    use super::*;

    #[test]
    fn oversized_frames_fail_with_1009_from_the_header_alone() {
        let mut s = Connection::new(Role::Server, Config::default().max_frame_size(100));
        let mut head = [0u8; MAX_HEADER_LEN];
        head[0] = 0x82;
        head[1] = 0x80 | 127;
        head[2..10].copy_from_slice(&(1u64 << 40).to_be_bytes());
        let r = s.receive(&head);
        assert_failed_with(&mut s, r, CloseCode::MESSAGE_TOO_BIG);
    }

    #[test]
    fn oversized_messages_fail_with_1009_across_fragments() {
        let mut s = Connection::new(Role::Server, Config::default().max_message_size(10));
        s.receive(&raw(0x02, K, &[0; 6])).unwrap();
        let r = s.receive(&raw(0x80, K, &[0; 5]));
        assert_failed_with(&mut s, r, CloseCode::MESSAGE_TOO_BIG);
    }

    #[test]
    fn a_message_in_more_fragments_than_the_limit_fails_with_1009() {
        let mut s = Connection::new(Role::Server, Config::default().max_fragments(3));
        // Three fragments make a message; control frames between them do not count.
        s.receive(&raw(0x01, K, b"a")).unwrap();
        s.receive(&raw(0x89, K, b"ping")).unwrap();
        s.receive(&raw(0x00, K, b"b")).unwrap();
        s.receive(&raw(0x80, K, b"c")).unwrap();
        let got = events(&mut s);
        assert_eq!(got.last(), Some(&Message::text("abc")));
        take_tx(&mut s); // the pong
                         // The count starts again with each message; the fourth fragment fails, before FIN.
        for b0 in [0x01, 0x00, 0x00] {
            s.receive(&raw(b0, K, b"x")).unwrap();
        }
        let r = s.receive(&raw(0x00, K, b"x"));
        assert_failed_with(&mut s, r, CloseCode::MESSAGE_TOO_BIG);
        let State::Failed(e) = s.state() else {
            panic!("{:?}", s.state())
        };
        assert_eq!(e, &ProtocolError::TooManyFragments { max: 3 });
        assert_eq!(e.close_reason(), "too many fragments");
    }

    #[test]
    #[cfg_attr(
        miri,
        ignore = "65,537 frames are too slow under Miri; the fragment limit is tested small above"
    )]
    fn the_default_fragment_limit_takes_a_4_mib_message_in_64_byte_fragments() {
        // Autobahn case 9.4.1: an empty first frame, then 65,536 continuations of 64 bytes.
        let mut s = server();
        let n = (4 << 20) / 64;
        let mut wire = Vec::with_capacity(n * 70);
        wire.extend_from_slice(&raw(0x02, K, b""));
        for i in 0..n {
            let b0 = if i == n - 1 { 0x80 } else { 0x00 };
            wire.extend_from_slice(&raw(b0, K, &[7; 64]));
        }
        s.receive(&wire).unwrap();
        let got = events(&mut s);
        assert!(matches!(&got[..], [Message::Binary(b)] if b.len() == 4 << 20));
    }

    #[test]
    fn buffers_shrink_when_idle() {
        let mut s = server();
        s.receive(&raw(0x82, K, &[1; 1000])).unwrap();
        events(&mut s);
        s.shrink_buffers();
        assert_eq!(s.receive_buffer().capacity(), 0);
    }
}

/// A server's connections may hold one copy of their settings; each keeps its own state.
#[test]
fn connections_built_with_shared_config_hold_one_copy() {
    let config = std::sync::Arc::new(Config::default().max_message_size(4));
    let mut a = Connection::with_shared_config(Role::Server, config.clone());
    let b = Connection::with_shared_config(Role::Server, config.clone());
    assert!(std::ptr::eq(a.config(), b.config()));
    assert_eq!(std::sync::Arc::strong_count(&config), 3);
    let mut c = client();
    c.send_binary(b"12345").unwrap();
    let r = a.receive(&take_tx(&mut c));
    assert_failed_with(&mut a, r, CloseCode::MESSAGE_TOO_BIG);
    assert_eq!(b.state(), &State::Open);
    drop(a);
    assert_eq!(std::sync::Arc::strong_count(&config), 2);
}
