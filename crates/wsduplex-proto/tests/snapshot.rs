//! `Connection::snapshot` and `Connection::restore` (feature `snapshot`): a connection cut
//! anywhere in its input, written down, encoded, decoded and restored, goes on exactly as
//! the uninterrupted one: the same events, the same bytes written (or, with
//! permessage-deflate, bytes that the uninterrupted peer decodes to the same messages).
#![cfg(feature = "snapshot")]

use bytes::Buf;
use proptest::prelude::*;
use std::cell::Cell;
use std::time::{Duration, Instant};
use wsduplex_proto::frame::FrameHeader;
use wsduplex_proto::snapshot::ConnectionState;
use wsduplex_proto::{
    CloseCode, Config, Connection, DeflateConfig, DeflateParams, Message, Role, State, Timeouts,
};

thread_local! {
    static NEXT: Cell<u8> = const { Cell::new(0) };
}

/// Masking keys 0, 1, 2, ... (per thread): a client's bytes are the same on every run.
fn counting(buf: &mut [u8]) {
    for b in buf {
        *b = NEXT.get();
        NEXT.set(NEXT.get().wrapping_add(1));
    }
}

/// One side of a scenario: the agreement both ends share, and this end's fragment size.
#[derive(Clone, Debug)]
struct Setup {
    /// The role of the connection under test (the peer has the other).
    role: Role,
    deflate: Option<DeflateParams>,
    threshold: usize,
    peer_fragment: Option<usize>,
    own_fragment: Option<usize>,
}

impl Setup {
    fn config(&self, fragment: Option<usize>) -> Config {
        let mut policy = DeflateConfig::default();
        policy.threshold = self.threshold;
        Config::default()
            .deflate(self.deflate, &policy)
            .fragment_size(fragment)
            .random(counting)
    }

    fn own(&self) -> Config {
        self.config(self.own_fragment)
    }

    fn peer_role(&self) -> Role {
        match self.role {
            Role::Client => Role::Server,
            Role::Server => Role::Client,
        }
    }

    fn peer(&self) -> Connection {
        Connection::new(self.peer_role(), self.config(self.peer_fragment))
    }
}

/// What the peer sends.
#[derive(Clone, Debug)]
enum Op {
    /// A data message; with `ping_inside`, a ping goes between its first two fragments.
    Data {
        text: bool,
        payload: String,
        ping_inside: Option<Vec<u8>>,
    },
    Ping(Vec<u8>),
}

fn take_all(c: &mut Connection) -> Vec<u8> {
    match c.poll_transmit() {
        Some(tx) => tx.copy_to_bytes(tx.remaining()).to_vec(),
        None => Vec::new(),
    }
}

/// The frames in `bytes`, each as its own bytes.
fn frames(mut bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let (h, n) = FrameHeader::decode(bytes).unwrap().unwrap();
        let len = n + h.payload_len as usize;
        out.push(bytes[..len].to_vec());
        bytes = &bytes[len..];
    }
    out
}

/// The peer's wire bytes for `ops`, then its close if `close`.
fn wire(setup: &Setup, ops: &[Op], close: bool) -> Vec<u8> {
    NEXT.set(100);
    let mut peer = setup.peer();
    let mut out = Vec::new();
    for op in ops {
        match op {
            Op::Data {
                text,
                payload,
                ping_inside,
            } => {
                if *text {
                    peer.send_text(payload).unwrap();
                } else {
                    peer.send_binary(payload.as_bytes()).unwrap();
                }
                let mut fs = frames(&take_all(&mut peer));
                if let Some(ping) = ping_inside.as_ref().filter(|_| fs.len() > 1) {
                    // RFC 6455 §5.4: control frames may come between fragments.
                    peer.send_ping(ping).unwrap();
                    fs.insert(1, take_all(&mut peer));
                }
                out.extend(fs.concat());
            }
            Op::Ping(p) => {
                peer.send_ping(p).unwrap();
                out.extend(take_all(&mut peer));
            }
        }
    }
    if close {
        peer.close(CloseCode::NORMAL, "done").unwrap();
        out.extend(take_all(&mut peer));
    }
    out
}

/// What a connection did: the events it gave, and the bytes it wrote.
#[derive(Debug, PartialEq)]
struct Run {
    events: Vec<Message>,
    written: Vec<u8>,
    state: State,
}

/// Writes at most `n` of the queued bytes (the rest stays queued across the snapshot).
fn write_some(c: &mut Connection, n: usize, out: &mut Vec<u8>) {
    if let Some(tx) = c.poll_transmit() {
        let n = n.min(tx.remaining());
        out.extend_from_slice(&tx.copy_to_bytes(n));
    }
}

/// Moves a connection through its state as the hand-over does: snapshot, encode, decode,
/// restore.
fn hand_over(c: Connection, config: Config, now: Instant) -> Connection {
    let bytes = postcard::to_allocvec(&c.snapshot(now)).unwrap();
    drop(c);
    let state: ConnectionState = postcard::from_bytes(&bytes).unwrap();
    Connection::restore(state, config, now).unwrap()
}

/// When, in the handling of a chunk of input, the connection is handed over.
#[derive(Clone, Copy, Debug)]
enum Moment {
    /// Right after the chunk arrived: decoding stopped at the first event, which is
    /// pending, and the rest of the chunk is not decoded yet.
    Received,
    /// Once every event is taken and answered: all of it decoded, the answers queued.
    Drained,
}

/// Feeds `wire` cut at `cuts`, echoing every data message; with `snap`, hands the
/// connection over at that moment of the chunk of that index.
fn run(setup: &Setup, wire: &[u8], cuts: &[usize], snap: Option<(usize, Moment)>) -> Run {
    NEXT.set(0);
    let now = Instant::now();
    let mut c = Connection::new(setup.role, setup.own());
    let (mut events, mut written) = (Vec::new(), Vec::new());
    let mut from = 0;
    let ends = cuts.iter().copied().chain([wire.len()]);
    for (i, end) in ends.enumerate() {
        let end = end.clamp(from, wire.len());
        // An error is in the state, which the runs compare.
        let _ = c.receive(&wire[from..end]);
        from = end;
        if let Some((_, Moment::Received)) = snap.filter(|s| s.0 == i) {
            c = hand_over(c, setup.own(), now);
        }
        while let Some(ev) = c.poll_event() {
            if ev.is_data() {
                c.send(ev.clone()).unwrap();
            }
            events.push(ev);
        }
        if let Some((_, Moment::Drained)) = snap.filter(|s| s.0 == i) {
            c = hand_over(c, setup.own(), now);
        }
        write_some(&mut c, 3 + (i * 37) % 61, &mut written);
    }
    write_some(&mut c, usize::MAX, &mut written);
    Run {
        events,
        written,
        state: c.state().clone(),
    }
}

/// The messages the peer decodes from `written`.
fn peer_reads(setup: &Setup, written: &[u8]) -> Vec<Message> {
    let mut peer = setup.peer();
    peer.receive(written).unwrap();
    std::iter::from_fn(|| peer.poll_event()).collect()
}

/// The run handed over at `snap` equals the uninterrupted one.
fn check(setup: &Setup, wire: &[u8], cuts: &[usize], snap: (usize, Moment)) {
    let whole = run(setup, wire, cuts, None);
    let moved = run(setup, wire, cuts, Some(snap));
    assert_eq!(
        moved.events, whole.events,
        "events, cuts {cuts:?} at {snap:?}"
    );
    assert_eq!(moved.state, whole.state, "state, cuts {cuts:?} at {snap:?}");
    if setup.deflate.is_none() {
        assert_eq!(
            moved.written, whole.written,
            "bytes, cuts {cuts:?} at {snap:?}"
        );
    } else {
        // A restored compressor primed with the window may pick other matches than the one
        // that saw the whole history: what counts is that the peer, which never moved,
        // decodes the same messages from it.
        assert_eq!(
            peer_reads(setup, &moved.written),
            peer_reads(setup, &whole.written),
            "echoes, cuts {cuts:?} at {snap:?}"
        );
    }
}

const WORDS: [&str; 8] = [
    "hello ", "wörld ", "✓ ", "🦀", "{\"id\":", "room", "lobby ", "\n",
];

fn sentence(words: &[usize]) -> String {
    words.iter().map(|&i| WORDS[i % WORDS.len()]).collect()
}

/// Messages that refer back to each other (the same words again), fragmented by both ends,
/// with a ping inside a fragmented message, then the peer's close.
fn scripted_ops() -> Vec<Op> {
    let long: Vec<usize> = (0..40).map(|i| i * 7 % 11).collect();
    vec![
        Op::Data {
            text: true,
            payload: sentence(&long),
            ping_inside: Some(b"mid".to_vec()),
        },
        Op::Ping(b"between".to_vec()),
        Op::Data {
            text: false,
            payload: sentence(&long[5..]),
            ping_inside: None,
        },
        Op::Data {
            text: true,
            payload: sentence(&long),
            ping_inside: Some(Vec::new()),
        },
    ]
}

fn every_offset(setup: Setup) {
    let wire = wire(&setup, &scripted_ops(), true);
    for k in 0..=wire.len() {
        // Two cuts, so the hand-over happens with input both consumed and still to come.
        let cuts = [k, (k + 11).min(wire.len())];
        check(&setup, &wire, &cuts, (0, Moment::Received));
        check(&setup, &wire, &cuts, (0, Moment::Drained));
    }
}

#[test]
fn a_server_handed_over_at_every_offset_goes_on_byte_for_byte() {
    every_offset(Setup {
        role: Role::Server,
        deflate: None,
        threshold: 0,
        peer_fragment: Some(13),
        own_fragment: Some(29),
    });
}

#[test]
fn a_client_handed_over_at_every_offset_goes_on_byte_for_byte() {
    every_offset(Setup {
        role: Role::Client,
        deflate: None,
        threshold: 0,
        peer_fragment: Some(17),
        own_fragment: Some(5),
    });
}

#[test]
fn a_deflate_server_with_context_takeover_handed_over_at_every_offset_goes_on() {
    every_offset(Setup {
        role: Role::Server,
        deflate: Some(DeflateParams::default()),
        threshold: 0,
        peer_fragment: Some(7),
        own_fragment: Some(23),
    });
}

#[test]
fn a_deflate_client_with_small_windows_handed_over_at_every_offset_goes_on() {
    let mut params = DeflateParams::default();
    params.client_max_window_bits = 9;
    params.server_max_window_bits = 8;
    params.server_no_context_takeover = true;
    every_offset(Setup {
        role: Role::Client,
        deflate: Some(params),
        threshold: 0,
        peer_fragment: Some(11),
        own_fragment: None,
    });
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (
            any::<bool>(),
            prop::collection::vec(0..WORDS.len(), 0..60),
            prop::option::of(prop::collection::vec(any::<u8>(), 0..10)),
        )
            .prop_map(|(text, words, ping_inside)| Op::Data {
                text,
                payload: sentence(&words),
                ping_inside,
            }),
        1 => prop::collection::vec(any::<u8>(), 0..20).prop_map(Op::Ping),
    ]
}

fn setup() -> impl Strategy<Value = Setup> {
    let params = (any::<[bool; 2]>(), 8..=15u8, 8..=15u8).prop_map(|(nct, s, c)| {
        let mut p = DeflateParams::default();
        p.server_no_context_takeover = nct[0];
        p.client_no_context_takeover = nct[1];
        p.server_max_window_bits = s;
        p.client_max_window_bits = c;
        p
    });
    (
        any::<bool>(),
        prop::option::of(params),
        prop::sample::select(vec![0usize, 20, 64]),
        prop::option::of(1..40usize),
        prop::option::of(1..40usize),
    )
        .prop_map(
            |(client, deflate, threshold, peer_fragment, own_fragment)| Setup {
                role: if client { Role::Client } else { Role::Server },
                deflate,
                threshold,
                peer_fragment,
                own_fragment,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn a_connection_handed_over_anywhere_goes_on_as_if_it_had_not_moved(
        setup in setup(),
        ops in prop::collection::vec(op(), 1..8),
        close in any::<bool>(),
        cuts in prop::collection::vec(0.0..1.0f64, 1..6),
        snap in any::<prop::sample::Index>(),
        drained in any::<bool>(),
    ) {
        let wire = wire(&setup, &ops, close);
        let mut cuts: Vec<usize> = cuts.iter().map(|f| (f * wire.len() as f64) as usize).collect();
        cuts.sort_unstable();
        let moment = if drained { Moment::Drained } else { Moment::Received };
        check(&setup, &wire, &cuts, (snap.index(cuts.len() + 1), moment));
    }
}

/// A client and a server with context takeover; `incompressible` is sent once before the
/// hand-over, so sending it again after can only be small by referring back to it.
#[test]
#[cfg(feature = "deflate")]
fn messages_compressed_by_the_old_context_inflate_in_the_new_one_and_back() {
    let setup = Setup {
        role: Role::Server,
        deflate: Some(DeflateParams::default()),
        threshold: 0,
        peer_fragment: None,
        own_fragment: None,
    };
    let now = Instant::now();
    let incompressible: Vec<u8> = (0..4000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let mut server = Connection::new(Role::Server, setup.own());
    let mut client = setup.peer();
    // Before: each direction compresses the payload once, so both contexts hold it.
    client.send_binary(&incompressible).unwrap();
    server.receive(&take_all(&mut client)).unwrap();
    assert_eq!(
        server.poll_event(),
        Some(Message::binary(incompressible.clone()))
    );
    server.send_binary(&incompressible).unwrap();
    client.receive(&take_all(&mut server)).unwrap();
    assert_eq!(
        client.poll_event(),
        Some(Message::binary(incompressible.clone()))
    );

    let mut server = hand_over(server, setup.own(), now);

    // The old client's context, after the server moved: a back reference into the window.
    client.send_binary(&incompressible).unwrap();
    let wire = take_all(&mut client);
    assert!(wire.len() < 100, "{} bytes: no back reference", wire.len());
    server.receive(&wire).unwrap();
    assert_eq!(
        server.poll_event(),
        Some(Message::binary(incompressible.clone()))
    );
    // And the moved server's own context, primed with its window.
    server.send_binary(&incompressible).unwrap();
    let wire = take_all(&mut server);
    assert!(wire.len() < 100, "{} bytes: no back reference", wire.len());
    client.receive(&wire).unwrap();
    assert_eq!(
        client.poll_event(),
        Some(Message::binary(incompressible.clone()))
    );

    // The client moves too; both keep going.
    let mut client = hand_over(client, setup.config(None), now);
    client.send_binary(&incompressible).unwrap();
    server.receive(&take_all(&mut client)).unwrap();
    assert_eq!(
        server.poll_event(),
        Some(Message::binary(incompressible.clone()))
    );
}

#[test]
fn a_connection_moved_while_closing_finishes_the_closing_handshake() {
    let setup = Setup {
        role: Role::Client,
        deflate: None,
        threshold: 0,
        peer_fragment: None,
        own_fragment: None,
    };
    let now = Instant::now();
    let mut client = Connection::new(Role::Client, setup.own().timeouts(Timeouts::default()));
    let mut server = setup.peer();
    client.close(CloseCode::GOING_AWAY, "moving").unwrap();
    // Half the close frame is written before the move.
    let mut written = Vec::new();
    write_some(&mut client, 4, &mut written);
    // The close deadline runs from the first clock reading: 5 s from `now`.
    assert_eq!(
        client.poll_timeout(|| now),
        Some(now + Duration::from_secs(5))
    );
    let later = now + Duration::from_secs(2);
    let mut client = hand_over(client, setup.own(), later);
    assert_eq!(*client.state(), State::Closing);
    assert_eq!(client.sent_close_code(), Some(CloseCode::GOING_AWAY));
    assert_eq!(
        client.poll_timeout(|| later),
        Some(now + Duration::from_secs(5))
    );
    write_some(&mut client, usize::MAX, &mut written);
    server.receive(&written).unwrap();
    let close = server.poll_event();
    assert!(
        matches!(&close, Some(Message::Close(Some(f))) if f.code == CloseCode::GOING_AWAY && f.reason.as_str() == "moving"),
        "{close:?}"
    );
    client.receive(&take_all(&mut server)).unwrap();
    assert!(matches!(client.poll_event(), Some(Message::Close(Some(_)))));
    assert_eq!(*client.state(), State::Closed);
}

#[test]
fn deadlines_are_re_anchored_to_the_new_clock() {
    let mut timeouts = Timeouts::default();
    timeouts.set_ping_interval(Some(Duration::from_secs(5)));
    timeouts.set_idle(Some(Duration::from_secs(60)));
    let config = || Config::default().timeouts(timeouts);
    let t0 = Instant::now();
    let mut c = Connection::new(Role::Server, config());
    assert_eq!(c.poll_timeout(|| t0), Some(t0 + Duration::from_secs(5)));
    // 2 s later the keepalive is due in 3 s. The new process's clock is unrelated: an
    // instant an hour on stands for it.
    let state = c.snapshot(t0 + Duration::from_secs(2));
    let t1 = t0 + Duration::from_secs(3600);
    let mut c = Connection::restore(state, config(), t1).unwrap();
    assert_eq!(c.poll_timeout(|| t1), Some(t1 + Duration::from_secs(3)));
    c.handle_timeout(t1 + Duration::from_secs(3));
    let ping = take_all(&mut c);
    assert_eq!(ping[0], 0x89, "a keepalive ping is sent when due");
    // Then the pong deadline (20 s), and the idle timeout 58 s after the move.
    assert_eq!(
        c.poll_timeout(|| unreachable!()),
        Some(t1 + Duration::from_secs(8))
    );

    // A new configuration without keepalive stops it; one with it, on a connection that had
    // none, starts it at the next clock reading.
    let c = Connection::new(Role::Server, Config::default());
    let mut c = Connection::restore(c.snapshot(t0), config(), t1).unwrap();
    assert_eq!(c.poll_timeout(|| t1), Some(t1 + Duration::from_secs(5)));
    let mut c = Connection::restore(c.snapshot(t1), Config::default(), t1).unwrap();
    assert_eq!(c.poll_timeout(|| t1), None);
}

#[test]
fn a_failed_connection_stays_failed_with_its_close_frame_owed() {
    let mut c = Connection::new(Role::Server, Config::default());
    // Unmasked from a client: 1002.
    assert!(c.receive(&[0x81, 0x01, b'x']).is_err());
    let owed = c.buffered_amount();
    assert!(owed > 0);
    let mut c = hand_over(c, Config::default(), Instant::now());
    assert!(matches!(c.state(), State::Failed(_)));
    assert!(c.receive(b"more").is_err());
    assert_eq!(take_all(&mut c).len(), owed);
}

/// Restored with shared settings, a connection holds them if their agreement is the state's
/// (none, here) and a copy with the state's agreement otherwise; either way it goes on.
#[test]
fn restored_with_shared_settings_only_an_equal_agreement_shares() {
    let now = Instant::now();
    let shared = std::sync::Arc::new(Config::default().max_message_size(8));
    let plain = Connection::new(Role::Server, Config::default());
    let mut c = Connection::restore_shared(plain.snapshot(now), shared.clone(), now).unwrap();
    assert!(std::ptr::eq(c.config(), &*shared));
    let mut client = Connection::new(Role::Client, Config::default());
    client.send_binary(b"123456789").unwrap();
    assert!(
        c.receive(&take_all(&mut client)).is_err(),
        "the shared limit holds"
    );

    let mut agreed = shared.as_ref().clone();
    agreed.deflate = Some(DeflateParams::default());
    let agreed = std::sync::Arc::new(agreed);
    let c = Connection::restore_shared(plain.snapshot(now), agreed.clone(), now).unwrap();
    assert!(!std::ptr::eq(c.config(), &*agreed));
    assert_eq!(c.config().deflate, None);
    assert_eq!(c.config().max_message_size, 8);
}

/// The state of a server with permessage-deflate at 9-bit windows and context takeover,
/// after one text message each way ("hello hello"): pinned, so a change of the layout that
/// is not a new format version fails here. Restored without the feature `deflate`, it is
/// refused with a clear error.
const DEFLATE_STATE: &str = "\
    00000000000000\
    0100000909\
    0b68656c6c6f2068656c6c6f0b68656c6c6f2068656c6c6f\
    00000000";

#[cfg(feature = "deflate")]
fn deflate_state() -> Connection {
    let mut params = DeflateParams::default();
    params.server_max_window_bits = 9;
    params.client_max_window_bits = 9;
    let setup = Setup {
        role: Role::Server,
        deflate: Some(params),
        threshold: 0,
        peer_fragment: None,
        own_fragment: None,
    };
    NEXT.set(0);
    let mut server = Connection::new(Role::Server, setup.own());
    let mut client = setup.peer();
    client.send_text("hello hello").unwrap();
    server.receive(&take_all(&mut client)).unwrap();
    server.poll_event().unwrap();
    server.send_text("hello hello").unwrap();
    take_all(&mut server);
    server
}

#[cfg(feature = "deflate")]
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(not(feature = "deflate"))]
fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
#[cfg(feature = "deflate")]
fn the_encoding_of_a_deflate_state_is_pinned() {
    let now = Instant::now();
    let bytes = postcard::to_allocvec(&deflate_state().snapshot(now)).unwrap();
    assert_eq!(hex(&bytes), DEFLATE_STATE);
}

#[cfg(not(feature = "deflate"))]
use wsduplex_proto::snapshot::SnapshotError;

#[test]
#[cfg(not(feature = "deflate"))]
fn a_deflate_state_restored_without_the_feature_is_refused() {
    let state: ConnectionState = postcard::from_bytes(&unhex(DEFLATE_STATE)).unwrap();
    let err = Connection::restore(state, Config::default(), Instant::now()).unwrap_err();
    assert_eq!(err, SnapshotError::DeflateUnavailable);
    assert!(err.to_string().contains("permessage-deflate"), "{err}");
}

#[test]
fn an_inconsistent_state_is_refused_never_a_panic() {
    let now = Instant::now();
    let mut c = Connection::new(Role::Client, Config::default());
    // A frame half received, in the middle of a fragmented text message.
    c.receive(&[0x01, 0x02, b'a', b'b', 0x80, 0x05, b'c'])
        .unwrap();
    let good = postcard::to_allocvec(&c.snapshot(now)).unwrap();
    // Every single-byte change of a valid state either restores or is refused.
    for i in 0..good.len() {
        for b in [0u8, 1, 2, 0x7f, 0x80, 0xff] {
            let mut bad = good.clone();
            bad[i] = b;
            let Ok(state) = postcard::from_bytes::<ConnectionState>(&bad) else {
                continue;
            };
            // Restored or refused; if restored, it runs.
            if let Ok(mut c) = Connection::restore(state, Config::default(), now) {
                let _ = c.receive(&[0x80, 0x01, b'd', 0x89, 0x00]);
                while c.poll_event().is_some() {}
                let _ = c.send_text("reply");
                let _ = take_all(&mut c);
                c.handle_timeout(now + Duration::from_secs(60));
                let _ = c.poll_timeout(|| now);
            }
        }
    }
}
