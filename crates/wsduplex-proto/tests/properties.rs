//! Properties of the core over generated inputs (proptest): what one end sends, the other
//! receives, in either direction, with or without permessage-deflate, fragmented or not,
//! however the transport splits the bytes; decoding does not depend on the split; the
//! fast mask equals the naive loop; frame headers round-trip.

use bytes::Buf;
use proptest::prelude::*;
use wsduplex_proto::frame::{FrameHeader, OpCode};
use wsduplex_proto::mask::{apply_mask, apply_mask_naive};
use wsduplex_proto::{
    CloseCode, CloseFrame, Config, Connection, DeflateParams, Message, Role, State,
};

/// A message to send; pings and pongs included, closes come at the end.
#[derive(Clone, Debug)]
enum Send {
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
}

impl Send {
    fn expected(&self) -> Message {
        match self {
            Send::Text(t) => Message::text(t.as_str()),
            Send::Binary(b) => Message::binary(b.clone()),
            Send::Ping(b) => Message::Ping(b.clone().into()),
            Send::Pong(b) => Message::Pong(b.clone().into()),
        }
    }
}

/// Text that compresses (repeated words) or does not (any characters), up to ~2 KiB.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        ".{0,300}",
        prop::collection::vec(
            prop::sample::select(vec!["hello ", "wörld ", "✓ ", "🦀", "\n"]),
            0..400
        )
        .prop_map(|w| w.concat()),
    ]
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..max),
        (0..max, any::<u8>()).prop_map(|(n, b)| vec![b; n]),
    ]
}

fn message() -> impl Strategy<Value = Send> {
    prop_oneof![
        4 => text().prop_map(Send::Text),
        4 => bytes(2000).prop_map(Send::Binary),
        1 => bytes(126).prop_map(Send::Ping),
        1 => bytes(126).prop_map(Send::Pong),
    ]
}

fn deflate_params() -> impl Strategy<Value = Option<DeflateParams>> {
    prop::option::of((8u8..=15, 8u8..=15, any::<bool>(), any::<bool>()).prop_map(
        |(s, c, sr, cr)| {
            let mut p = DeflateParams::default();
            p.server_max_window_bits = s;
            p.client_max_window_bits = c;
            p.server_no_context_takeover = sr;
            p.client_no_context_takeover = cr;
            p
        },
    ))
}

/// Both ends' configurations: the same agreement, each its own fragment size and policy.
fn configs() -> impl Strategy<Value = (Config, Config)> {
    (
        deflate_params(),
        prop::option::of(1usize..300),
        prop::option::of(1usize..300),
        0u32..=9,
        0usize..100,
    )
        .prop_map(|(deflate, frag_a, frag_b, level, threshold)| {
            let make = |frag| {
                let mut c = Config::default().fragment_size(frag);
                c.deflate = deflate;
                c.compression_level = level;
                c.compression_threshold = threshold;
                c
            };
            (make(frag_a), make(frag_b))
        })
}

/// Split sizes for the transport, cycled; 1 means a byte at a time.
fn splits() -> impl Strategy<Value = Vec<usize>> {
    prop_oneof![
        Just(vec![usize::MAX]),
        Just(vec![1]),
        prop::collection::vec(1usize..64, 1..8),
    ]
}

fn take_tx(c: &mut Connection) -> Vec<u8> {
    match c.poll_transmit() {
        Some(t) => t.copy_to_bytes(t.remaining()).to_vec(),
        None => Vec::new(),
    }
}

/// Feeds `bytes` in pieces of the given sizes, taking events after each piece; returns the
/// events and whether every receive succeeded.
fn feed(c: &mut Connection, bytes: &[u8], sizes: &[usize]) -> (Vec<Message>, bool) {
    let mut events = Vec::new();
    let mut ok = true;
    let mut rest = bytes;
    let mut sizes = sizes.iter().copied().cycle();
    while !rest.is_empty() {
        let n = sizes.next().unwrap_or(usize::MAX).clamp(1, rest.len());
        let (piece, tail) = rest.split_at(n);
        rest = tail;
        ok &= c.receive(piece).is_ok();
        events.extend(std::iter::from_fn(|| c.poll_event()));
    }
    (events, ok)
}

fn send(c: &mut Connection, m: &Send) {
    match m {
        Send::Text(t) => c.send_text(t),
        Send::Binary(b) => c.send_binary(b),
        Send::Ping(b) => c.send_ping(&b[..b.len().min(125)]),
        Send::Pong(b) => c.send_pong(&b[..b.len().min(125)]),
    }
    .unwrap();
}

fn clamp_control(m: &Send) -> Send {
    match m {
        Send::Ping(b) => Send::Ping(b[..b.len().min(125)].to_vec()),
        Send::Pong(b) => Send::Pong(b[..b.len().min(125)].to_vec()),
        other => other.clone(),
    }
}

/// What a client with `config` writes for `messages`, with one byte changed if `corrupt`.
fn client_wire(
    config: Config,
    messages: &[Send],
    corrupt: Option<(prop::sample::Index, u8)>,
) -> Vec<u8> {
    let mut client = Connection::new(Role::Client, config);
    for m in messages.iter().map(clamp_control) {
        send(&mut client, &m);
    }
    let mut wire = take_tx(&mut client);
    if let Some((i, x)) = corrupt {
        let i = i.index(wire.len());
        wire[i] ^= x;
    }
    wire
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// What one end sends, the other receives intact and in order, then the closing handshake
    /// completes: either direction, deflate or not, fragmented or not, any transport split.
    #[test]
    fn messages_roundtrip(
        client_sends in any::<bool>(),
        (config_a, config_b) in configs(),
        messages in prop::collection::vec(message(), 0..8),
        split in splits(),
        close in prop::option::of((prop::sample::select(vec![1000u16, 1001, 1011, 3000, 4999]), ".{0,30}")),
    ) {
        let (role_a, role_b) = if client_sends {
            (Role::Client, Role::Server)
        } else {
            (Role::Server, Role::Client)
        };
        let mut a = Connection::new(role_a, config_a);
        let mut b = Connection::new(role_b, config_b);
        let messages: Vec<Send> = messages.iter().map(clamp_control).collect();
        for m in &messages {
            send(&mut a, m);
        }
        let reason = close.as_ref().map(|(_, r)| {
            // A close reason is at most 123 bytes, cut at a character boundary.
            let mut end = r.len().min(123);
            while !r.is_char_boundary(end) {
                end -= 1;
            }
            r[..end].to_string()
        });
        if let (Some((code, _)), Some(reason)) = (&close, &reason) {
            a.close(CloseCode::new(*code), reason).unwrap();
        }
        let wire = take_tx(&mut a);
        let (events, ok) = feed(&mut b, &wire, &split);
        prop_assert!(ok, "receiver failed: {:?}", b.state());
        let mut want: Vec<Message> = messages.iter().map(Send::expected).collect();
        if let (Some((code, _)), Some(reason)) = (&close, &reason) {
            want.push(Message::Close(Some(CloseFrame {
                code: CloseCode::new(*code),
                reason: reason.as_str().into(),
            })));
        }
        prop_assert_eq!(&events, &want);
        // The receiver answers pings with pongs, and a close with a close.
        let answer = take_tx(&mut b);
        let (replies, ok) = feed(&mut a, &answer, &split);
        prop_assert!(ok, "sender failed on the answers: {:?}", a.state());
        let pings: Vec<Message> = messages
            .iter()
            .filter_map(|m| match m {
                Send::Ping(p) => Some(Message::Pong(p.clone().into())),
                _ => None,
            })
            .collect();
        prop_assert_eq!(&replies[..pings.len()], &pings[..]);
        if close.is_some() {
            prop_assert_eq!(replies.len(), pings.len() + 1);
            prop_assert_eq!(a.state(), &State::Closed);
            prop_assert_eq!(b.state(), &State::Closed);
        } else {
            prop_assert_eq!(replies.len(), pings.len());
        }
    }

    /// A byte stream (a valid one, maybe with one byte changed) decodes to the same events,
    /// final state and written bytes however it is split.
    #[test]
    fn decoding_does_not_depend_on_the_split(
        (config_a, config_b) in configs(),
        messages in prop::collection::vec(message(), 1..6),
        corrupt in prop::option::of((any::<prop::sample::Index>(), 1u8..=255)),
        split in prop::collection::vec(1usize..40, 1..6),
    ) {
        let wire = client_wire(config_a, &messages, corrupt);
        let run = |sizes: &[usize]| {
            // A server, so what it writes has no random mask and compares byte for byte.
            let mut server = Connection::new(Role::Server, config_b.clone());
            let (events, _) = feed(&mut server, &wire, sizes);
            (events, server.state().clone(), take_tx(&mut server))
        };
        let whole = run(&[usize::MAX]);
        prop_assert_eq!(&run(&[1]), &whole);
        prop_assert_eq!(&run(&split), &whole);
    }

    /// Taking messages borrowed with `receive_with` (and the rest with `poll_event`) gives the
    /// same messages, in the same order, the same final state and the same bytes written as
    /// `poll_event` alone, on valid and corrupted streams, however they are split, when every
    /// data message is echoed and replies are bounded by a queue limit.
    #[test]
    fn borrowed_receive_equals_poll_event(
        (config_a, config_b) in configs(),
        messages in prop::collection::vec(message(), 1..8),
        corrupt in prop::option::of((any::<prop::sample::Index>(), 1u8..=255)),
        split in splits(),
        max_buffered in prop_oneof![Just(usize::MAX), 1usize..3000],
    ) {
        let wire = client_wire(config_a, &messages, corrupt);
        let run = |borrowed: bool| {
            let mut server = Connection::new(Role::Server, config_b.clone());
            let (mut events, mut written) = (Vec::new(), Vec::new());
            let mut rest = &wire[..];
            let mut sizes = split.iter().copied().cycle();
            while !rest.is_empty() {
                let n = sizes.next().unwrap_or(usize::MAX).clamp(1, rest.len());
                let (piece, tail) = rest.split_at(n);
                rest = tail;
                server.receive_buffer().extend_from_slice(piece);
                loop {
                    if borrowed {
                        let _ = server.receive_with(max_buffered, |m, mut tx| {
                            events.push(m.to_message());
                            let _ = tx.send_ref(m);
                        });
                    }
                    let Some(ev) = server.poll_event() else { break };
                    if ev.is_data() {
                        let _ = server.send(ev.clone());
                    }
                    events.push(ev);
                    // The queue limit is met by writing, as a driver would.
                    if server.buffered_amount() >= max_buffered {
                        written.extend(take_tx(&mut server));
                    }
                }
                written.extend(take_tx(&mut server));
            }
            (events, server.state().clone(), written)
        };
        prop_assert_eq!(run(true), run(false));
    }

    /// The word-at-a-time mask equals the byte loop for any length, start alignment, key and
    /// offset into the payload; masking in two pieces equals masking at once.
    #[test]
    fn fast_mask_equals_naive(
        data in prop::collection::vec(any::<u8>(), 0..600),
        align in 0usize..16,
        key in any::<[u8; 4]>(),
        offset in any::<usize>(),
        split in any::<prop::sample::Index>(),
    ) {
        let align = align.min(data.len());
        let mut fast = data.clone();
        let mut naive = data.clone();
        apply_mask(&mut fast[align..], key, offset);
        apply_mask_naive(&mut naive[align..], key, offset);
        prop_assert_eq!(&fast, &naive);
        let mut whole = data.clone();
        apply_mask_naive(&mut whole, key, offset);
        let at = split.index(data.len() + 1);
        let mut pieces = data.clone();
        let (x, y) = pieces.split_at_mut(at);
        apply_mask(x, key, offset);
        apply_mask(y, key, offset.wrapping_add(at));
        prop_assert_eq!(&pieces, &whole);
    }

    /// Any header encodes in the shortest form and decodes to itself; every shorter prefix
    /// asks for more.
    #[test]
    fn frame_headers_roundtrip(
        bits in any::<[bool; 4]>(),
        opcode in prop::sample::select(vec![
            OpCode::Continuation, OpCode::Text, OpCode::Binary,
            OpCode::Close, OpCode::Ping, OpCode::Pong,
        ]),
        mask in any::<Option<[u8; 4]>>(),
        len in prop_oneof![0u64..=125, 126u64..=65535, 65536u64..=(u64::MAX >> 1)],
    ) {
        let h = FrameHeader {
            fin: bits[0],
            rsv1: bits[1],
            rsv2: bits[2],
            rsv3: bits[3],
            opcode,
            mask,
            payload_len: len,
        };
        let (buf, n) = h.encode();
        let want = match len {
            0..=125 => 2,
            126..=65535 => 4,
            _ => 10,
        } + if mask.is_some() { 4 } else { 0 };
        prop_assert_eq!(n, want);
        prop_assert_eq!(FrameHeader::decode(&buf[..n]), Ok(Some((h, n))));
        for k in 0..n {
            prop_assert_eq!(FrameHeader::decode(&buf[..k]), Ok(None));
        }
    }
}
