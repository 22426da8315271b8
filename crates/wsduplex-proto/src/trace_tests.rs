use super::*;
use crate::deflate::Deflater;

const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// Encodes a frame; `rsv` is or-ed into the first byte.
fn frame(fin: bool, rsv: u8, opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let header = FrameHeader {
        fin,
        rsv1: rsv & 0x40 != 0,
        rsv2: rsv & 0x20 != 0,
        rsv3: rsv & 0x10 != 0,
        opcode: OpCode::from_u8(opcode).unwrap(),
        mask,
        payload_len: payload.len() as u64,
    };
    let (h, n) = header.encode();
    let mut out = h[..n].to_vec();
    let start = out.len();
    out.extend_from_slice(payload);
    if let Some(key) = mask {
        apply_mask(&mut out[start..], key, 0);
    }
    out
}

fn frames(t: &mut Tracer) -> Vec<TracedFrame> {
    std::iter::from_fn(|| t.poll_event())
        .map(|e| match e {
            TraceEvent::Frame(f) => f,
            other => panic!("expected a frame, got {other:?}"),
        })
        .collect()
}

fn one(t: &mut Tracer) -> TracedFrame {
    let mut all = frames(t);
    assert_eq!(all.len(), 1, "{all:?}");
    all.remove(0)
}

#[test]
fn frames_split_anywhere_come_out_whole_and_unmasked() {
    let mut bytes = frame(true, 0, 0x1, b"hello, world", Some(KEY));
    bytes.extend(frame(true, 0, 0x2, &[0u8; 300], Some(KEY)));
    for split in [1, 2, 3, 7, 13, bytes.len()] {
        let mut t = Tracer::upgraded(None);
        for piece in bytes.chunks(split) {
            t.receive(Direction::FromClient, piece);
        }
        let got = frames(&mut t);
        assert_eq!(got.len(), 2, "pieces of {split}");
        let (text, bin) = (&got[0], &got[1]);
        assert_eq!(
            (text.opcode, text.fin, text.mask),
            (OpCode::Text, true, Some(KEY))
        );
        assert_eq!((text.header_len, text.payload_len), (6, 12));
        assert_eq!(text.payload, b"hello, world");
        assert_eq!(
            (bin.opcode, bin.header_len, bin.payload_len),
            (OpCode::Binary, 8, 300)
        );
        assert_eq!(bin.payload, vec![0u8; 300]);
        assert!(text.error.is_none() && bin.error.is_none());
    }
}

#[test]
fn masking_is_checked_by_direction() {
    let mut t = Tracer::upgraded(None);
    t.receive(Direction::FromClient, &frame(true, 0, 0x1, b"x", None));
    t.receive(Direction::FromServer, &frame(true, 0, 0x1, b"y", Some(KEY)));
    t.receive(Direction::FromServer, &frame(true, 0, 0x1, b"z", None));
    let got = frames(&mut t);
    assert_eq!(got[0].error, Some(ProtocolError::UnmaskedFrame));
    assert_eq!(
        got[0].error.as_ref().unwrap().close_code(),
        CloseCode::PROTOCOL_ERROR
    );
    assert_eq!(
        (got[1].error.clone(), got[1].payload.clone()),
        (Some(ProtocolError::MaskedFrame), b"y".to_vec())
    );
    assert_eq!(
        (got[2].error.clone(), got[2].payload.clone()),
        (None, b"z".to_vec())
    );
}

#[test]
fn a_fragmented_compressed_message_inflates_frame_by_frame_with_context_takeover() {
    let params = DeflateParams::default();
    let mut deflater = Deflater::new(6, 15, false);
    let text = "the quick brown fox jumps over the lazy dog; ".repeat(8);
    let mut t = Tracer::upgraded(Some(params));
    for round in 0..2 {
        // The second message leans on the first's window (context takeover).
        let compressed = deflater.compress(text.as_bytes()).to_vec();
        let (a, b) = compressed.split_at(compressed.len() / 2);
        t.receive(Direction::FromServer, &frame(false, 0x40, 0x1, a, None));
        // A ping between fragments belongs to no message.
        t.receive(Direction::FromServer, &frame(true, 0, 0x9, b"p", None));
        t.receive(Direction::FromServer, &frame(true, 0, 0x0, b, None));
        let got = frames(&mut t);
        assert_eq!(got.len(), 3, "round {round}");
        let (first, ping, last) = (&got[0], &got[1], &got[2]);
        assert!(first.rsv1 && !first.fin && !last.rsv1 && last.fin);
        assert_eq!(last.message_opcode, OpCode::Text);
        assert!(ping.inflated.is_none() && ping.error.is_none());
        let (i1, i2) = (
            first.inflated.as_ref().unwrap(),
            last.inflated.as_ref().unwrap(),
        );
        let mut whole = i1.data.clone();
        whole.extend_from_slice(&i2.data);
        assert_eq!(String::from_utf8(whole).unwrap(), text, "round {round}");
        assert_eq!(i1.len + i2.len, text.len() as u64);
        assert_eq!(
            (i1.message_len, i2.message_len),
            (None, Some(text.len() as u64))
        );
        assert!(first.error.is_none() && last.error.is_none());
        if round == 1 {
            assert!(
                compressed.len() < 20,
                "no context takeover? {}",
                compressed.len()
            );
        }
    }
}

#[test]
fn each_direction_has_its_own_inflate_context() {
    let mut t = Tracer::upgraded(Some(DeflateParams::default()));
    let mut client = Deflater::new(6, 15, false);
    let mut server = Deflater::new(6, 15, false);
    for (from, d, mask) in [
        (Direction::FromClient, &mut client, Some(KEY)),
        (Direction::FromServer, &mut server, None),
    ] {
        for _ in 0..2 {
            let c = d.compress(b"same words, same words, same words").to_vec();
            t.receive(from, &frame(true, 0x40, 0x2, &c, mask));
            let f = one(&mut t);
            assert_eq!(
                f.inflated.unwrap().data,
                b"same words, same words, same words"
            );
        }
    }
}

#[test]
fn corrupt_compressed_data_is_reported_and_the_rest_still_framed() {
    let mut t = Tracer::upgraded(Some(DeflateParams::default()));
    t.receive(
        Direction::FromServer,
        &frame(true, 0x40, 0x1, &[0xff; 8], None),
    );
    t.receive(Direction::FromServer, &frame(true, 0, 0x1, b"after", None));
    let got = frames(&mut t);
    assert_eq!(got[0].error, Some(ProtocolError::InvalidCompressedData));
    assert_eq!(got[1].payload, b"after");
}

#[test]
fn close_frames_are_parsed_and_checked() {
    let mut t = Tracer::upgraded(None);
    let mut body = 4000u16.to_be_bytes().to_vec();
    body.extend_from_slice(b"bye now");
    t.receive(Direction::FromServer, &frame(true, 0, 0x8, &body, None));
    t.receive(Direction::FromServer, &frame(true, 0, 0x8, &[], None));
    t.receive(Direction::FromServer, &frame(true, 0, 0x8, &[3], None));
    t.receive(
        Direction::FromServer,
        &frame(true, 0, 0x8, &1005u16.to_be_bytes(), None),
    );
    t.receive(
        Direction::FromServer,
        &frame(true, 0, 0x8, &[0x03, 0xe8, 0xff], None),
    );
    let got = frames(&mut t);
    assert_eq!(got[0].close, Some((CloseCode::new(4000), "bye now".into())));
    assert_eq!(got[0].error, None);
    assert_eq!((got[1].close.clone(), got[1].error.clone()), (None, None));
    assert_eq!(got[2].error, Some(ProtocolError::InvalidClosePayload));
    assert_eq!(got[3].close, Some((CloseCode::new(1005), String::new())));
    assert_eq!(got[3].error, Some(ProtocolError::InvalidCloseCode(1005)));
    assert_eq!(got[4].error, Some(ProtocolError::InvalidUtf8));
    assert_eq!(
        got[4].error.as_ref().unwrap().close_code(),
        CloseCode::INVALID_PAYLOAD
    );
}

#[test]
fn bad_frames_carry_the_error_an_endpoint_would_close_with() {
    let mut t = Tracer::upgraded(None);
    let s = Direction::FromServer;
    t.receive(s, &frame(true, 0x40, 0x1, b"a", None)); // RSV1 without deflate
    t.receive(s, &frame(true, 0x20, 0x1, b"a", None)); // RSV2
    t.receive(s, &frame(true, 0, 0x0, b"a", None)); // nothing to continue
    t.receive(s, &frame(true, 0, 0x9, &[0; 126], None)); // control too long
    t.receive(s, &frame(false, 0, 0xA, b"", None)); // fragmented control
    t.receive(s, &frame(false, 0, 0x1, b"a", None));
    t.receive(s, &frame(true, 0, 0x1, b"b", None)); // a new message before the end
                                                    // UTF-8 cut between fragments is fine; invalid UTF-8 is not.
    t.receive(s, &frame(false, 0, 0x1, &[0xc3], None));
    t.receive(s, &frame(true, 0, 0x0, &[0xa9], None));
    t.receive(s, &frame(true, 0, 0x1, &[0xc3, 0x28], None));
    let errors: Vec<_> = frames(&mut t).into_iter().map(|f| f.error).collect();
    assert_eq!(
        errors,
        [
            Some(ProtocolError::ReservedBits),
            Some(ProtocolError::ReservedBits),
            Some(ProtocolError::UnexpectedContinuation),
            Some(ProtocolError::ControlFrameTooLong { len: 126 }),
            Some(ProtocolError::FragmentedControlFrame),
            None,
            Some(ProtocolError::ExpectedContinuation),
            None,
            None,
            Some(ProtocolError::InvalidUtf8),
        ]
    );
}

#[test]
fn a_reserved_opcode_loses_the_direction_not_the_other() {
    let mut t = Tracer::upgraded(None);
    t.receive(Direction::FromClient, &[0x83, 0x80, 1, 2, 3, 4]);
    t.receive(
        Direction::FromClient,
        &frame(true, 0, 0x1, b"ignored", Some(KEY)),
    );
    t.receive(Direction::FromServer, &frame(true, 0, 0x1, b"seen", None));
    assert_eq!(
        t.poll_event(),
        Some(TraceEvent::Lost {
            from: Direction::FromClient,
            error: ProtocolError::ReservedOpCode(3)
        })
    );
    assert_eq!(one(&mut t).payload, b"seen");
}

#[test]
fn the_handshake_gives_the_deflate_agreement() {
    let mut t = Tracer::new();
    let request = "GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
                   Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n";
    // The request and the client's first frame in pieces that cut the head's end.
    let mut client = request.as_bytes().to_vec();
    let mut deflater = Deflater::new(6, 10, true);
    let compressed = deflater
        .compress(b"compressed, compressed, compressed")
        .to_vec();
    let response = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                    Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits=10; \
                    client_no_context_takeover\r\n\r\n";
    let mut server = response.as_bytes().to_vec();
    server.extend(frame(true, 0, 0x1, b"welcome", None));
    client.extend(frame(true, 0x40, 0x1, &compressed, Some(KEY)));
    let cut = request.len() - 2;
    t.receive(Direction::FromClient, &client[..cut]);
    t.receive(Direction::FromServer, &server);
    t.receive(Direction::FromClient, &client[cut..]);
    match t.poll_event() {
        Some(TraceEvent::Head {
            from: Direction::FromServer,
            head,
        }) => {
            assert!(head.starts_with("HTTP/1.1 101"));
            assert!(head.ends_with("client_no_context_takeover"), "{head:?}");
        }
        other => panic!("{other:?}"),
    }
    let agreed = *t.deflate().unwrap();
    assert_eq!(
        (
            agreed.client_max_window_bits,
            agreed.client_no_context_takeover
        ),
        (10, true)
    );
    assert_eq!(one_of(&mut t, 1)[0].payload, b"welcome");
    match t.poll_event() {
        Some(TraceEvent::Head {
            from: Direction::FromClient,
            head,
        }) => {
            assert!(head.starts_with("GET /chat"))
        }
        other => panic!("{other:?}"),
    }
    let f = one(&mut t);
    assert_eq!(
        f.inflated.unwrap().data,
        b"compressed, compressed, compressed"
    );
}

fn one_of(t: &mut Tracer, n: usize) -> Vec<TracedFrame> {
    (0..n)
        .map(|_| match t.poll_event() {
            Some(TraceEvent::Frame(f)) => f,
            other => panic!("expected a frame, got {other:?}"),
        })
        .collect()
}

#[test]
fn a_refused_handshake_frames_nothing() {
    let mut t = Tracer::new();
    t.receive(Direction::FromClient, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    t.receive(
        Direction::FromServer,
        b"HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\n\r\n\x81\x01a",
    );
    t.receive(Direction::FromClient, &frame(true, 0, 0x1, b"x", Some(KEY)));
    let events: Vec<_> = std::iter::from_fn(|| t.poll_event()).collect();
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(events.iter().all(|e| matches!(e, TraceEvent::Head { .. })));
}

#[test]
fn large_payloads_keep_a_bounded_preview() {
    let mut t = Tracer::upgraded(Some(DeflateParams::default())).with_preview(16);
    let big = vec![b'a'; 100_000];
    t.receive(Direction::FromServer, &frame(true, 0, 0x2, &big, None));
    let f = one(&mut t);
    assert_eq!(
        (f.payload.len(), f.payload_len, f.is_truncated()),
        (16, 100_000, true)
    );
    let compressed = Deflater::new(6, 15, false).compress(&big).to_vec();
    // A frame shows while it arrives, with what its header broke.
    let mut arriving = Tracer::upgraded(None);
    arriving.receive(
        Direction::FromServer,
        &[0xA2, 127, 0, 0, 1, 0, 0, 0, 0, 0, 7],
    );
    let f = arriving.frame_in_progress(Direction::FromServer).unwrap();
    assert_eq!(f.payload_len, 1 << 40);
    assert_eq!(
        (f.payload.clone(), f.error.clone()),
        (vec![7], Some(ProtocolError::ReservedBits))
    );
    assert!(arriving.poll_event().is_none());
    t.receive(
        Direction::FromServer,
        &frame(true, 0x40, 0x2, &compressed, None),
    );
    let i = one(&mut t).inflated.unwrap();
    assert_eq!(
        (i.data.len(), i.len, i.message_len),
        (16, 100_000, Some(100_000))
    );
}

mod properties {
    use super::*;
    use crate::{Config, Connection, Role};
    use bytes::Buf;
    use proptest::prelude::*;

    #[derive(Clone, Debug)]
    enum Sent {
        Text(String),
        Binary(Vec<u8>),
    }

    fn sent() -> impl Strategy<Value = Sent> {
        prop_oneof![
            "[a-zé ]{0,200}".prop_map(Sent::Text),
            prop::collection::vec(any::<u8>(), 0..200).prop_map(Sent::Binary),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// What our own client sends (fragmented or not, compressed or not), in pieces of
        /// any size, the tracer sees whole and unbroken: each message's frames rebuild it.
        #[test]
        fn the_tracer_sees_what_a_connection_sent(
            messages in prop::collection::vec(sent(), 1..6),
            deflate in any::<bool>(),
            fragment in prop::option::of(1usize..48),
            piece in 1usize..40,
        ) {
            let agreed = deflate.then(DeflateParams::default);
            let policy = DeflateConfig { threshold: 0, ..DeflateConfig::default() };
            let config = Config::default().deflate(agreed, &policy).fragment_size(fragment);
            let mut client = Connection::new(Role::Client, config);
            for m in &messages {
                match m {
                    Sent::Text(t) => client.send_text(t.as_str()).unwrap(),
                    Sent::Binary(b) => client.send_binary(b).unwrap(),
                }
            }
            client.close(CloseCode::NORMAL, "bye").unwrap();
            let mut wire = Vec::new();
            while let Some(tx) = client.poll_transmit() {
                wire.extend_from_slice(&tx.copy_to_bytes(tx.remaining()));
            }
            let mut t = Tracer::upgraded(agreed);
            for p in wire.chunks(piece) {
                t.receive(Direction::FromClient, p);
            }
            let mut rebuilt: Vec<(OpCode, Vec<u8>)> = Vec::new();
            let mut close = None;
            for f in frames(&mut t) {
                prop_assert!(f.error.is_none(), "{:?}", f);
                prop_assert!(f.mask.is_some());
                let data = f.inflated.as_ref().map_or(f.payload.clone(), |i| i.data.clone());
                match f.opcode {
                    OpCode::Continuation => rebuilt.last_mut().unwrap().1.extend(data),
                    OpCode::Close => close = f.close.clone(),
                    op => rebuilt.push((op, data)),
                }
            }
            let want: Vec<(OpCode, Vec<u8>)> = messages
                .iter()
                .map(|m| match m {
                    Sent::Text(t) => (OpCode::Text, t.as_bytes().to_vec()),
                    Sent::Binary(b) => (OpCode::Binary, b.clone()),
                })
                .collect();
            prop_assert_eq!(rebuilt, want);
            prop_assert_eq!(close, Some((CloseCode::NORMAL, "bye".to_string())));
        }

        /// Arbitrary bytes, both ways, in any pieces: no panic, and the same events
        /// whatever the pieces (but for what a corrupt compressed message inflated to).
        #[test]
        fn any_bytes_in_any_pieces_give_the_same_events(
            client in prop::collection::vec(any::<u8>(), 0..400),
            server in prop::collection::vec(any::<u8>(), 0..400),
            deflate in any::<bool>(),
            piece in 1usize..40,
        ) {
            let agreed = deflate.then(DeflateParams::default);
            let run = |n: usize| {
                let mut t = Tracer::upgraded(agreed).with_preview(16);
                for (c, s) in client.chunks(n).zip(server.chunks(n)) {
                    t.receive(Direction::FromClient, c);
                    t.receive(Direction::FromServer, s);
                }
                let (c, s) = (client.len().div_ceil(n), server.len().div_ceil(n));
                for rest in client.chunks(n).skip(s.min(c)) {
                    t.receive(Direction::FromClient, rest);
                }
                for rest in server.chunks(n).skip(c.min(s)) {
                    t.receive(Direction::FromServer, rest);
                }
                let mut by_side: [Vec<TraceEvent>; 2] = Default::default();
                // Where the input of a corrupt compressed message is cut decides how much
                // zlib inflates before it notices, and so whether bad DEFLATE or bad UTF-8
                // in what it inflated shows first (as for an endpoint): from the first of
                // either to the message's end, both count as one corruption, and what was
                // inflated is left out of the comparison.
                let mut corrupt = [false; 2];
                while let Some(mut e) = t.poll_event() {
                    if let TraceEvent::Frame(f) = &mut e {
                        let c = &mut corrupt[f.from as usize];
                        let bad = f.inflated.is_some()
                            && matches!(
                                f.error,
                                Some(ProtocolError::InvalidCompressedData | ProtocolError::InvalidUtf8)
                            );
                        if bad {
                            f.error = (!*c).then_some(ProtocolError::InvalidCompressedData);
                            *c = true;
                        }
                        if *c {
                            f.inflated = None;
                        }
                        if f.fin && !f.opcode.is_control() {
                            *c = false;
                        }
                    }
                    let from = match &e {
                        TraceEvent::Frame(f) => f.from,
                        TraceEvent::Lost { from, .. } | TraceEvent::Head { from, .. } => *from,
                    };
                    by_side[from as usize].push(e);
                }
                by_side
            };
            prop_assert_eq!(run(piece), run(usize::MAX));
        }
    }
}
