//! The wire tracer against the connection it describes: the same client bytes go to a
//! server `Connection` and to a `Tracer`, in pieces of a size from the input.
//!
//! Input: a config byte (bit 0: permessage-deflate agreed, with the parameters of the next
//! byte, see `wsduplex_fuzz::deflate_params`; bit 1: frames, not raw bytes), a piece size,
//! then either raw bytes, or frames until the input ends: a first byte (FIN, RSV bits,
//! opcode, as sent), a byte whose bit 0 says masked, and a payload (`blob8`).
//!
//! Checks: no panic; each frame's kept payload and inflated preview stay within the
//! preview (a hostile frame costs no more to trace than to receive); the data messages
//! the connection delivers before it fails or closes are the ones the tracer rebuilds
//! from the frames before its first error; if the connection failed with a protocol
//! error, the tracer reported one too; if it did not, the tracer reported none up to the
//! close. (Size limits, which the tracer does not have, are left out.)
#![no_main]

use arbitrary::Unstructured;
use bytes::Buf;
use libfuzzer_sys::fuzz_target;
use proto::frame::OpCode;
use proto::trace::{Direction, TraceEvent, Tracer};
use proto::{Config, Connection, Error, Message, ProtocolError, Role, State};
use wsduplex_fuzz::{blob8, byte, deflate_params, raw_frame};

const PREVIEW: usize = 64;
const MAX: u64 = 64 * 1024;

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let flags = byte(&mut u);
    let agreed = (flags & 1 != 0).then(|| deflate_params(byte(&mut u)));
    let piece = (byte(&mut u) as usize).max(1);
    let wire = if flags & 2 != 0 {
        let mut wire = Vec::new();
        while !u.is_empty() {
            let (b0, masked) = (byte(&mut u), byte(&mut u) & 1 != 0);
            let key = masked.then_some([0x5a, 0x01, 0xc3, 0x7e]);
            wire.extend(raw_frame(b0, key, blob8(&mut u)));
        }
        wire
    } else {
        u.take_rest().to_vec()
    };

    let mut config = Config::default();
    config.max_fragments = u32::MAX;
    // Small enough that the frame a failure stopped in can be completed for the tracer.
    config.max_frame_size = MAX;
    config.max_message_size = MAX;
    let mut config = config.deflate(agreed, &Default::default());
    config.compression_threshold = usize::MAX;
    let mut conn = Connection::new(Role::Server, config);
    let mut tracer = Tracer::upgraded(agreed).with_preview(PREVIEW);
    let mut delivered: Vec<(bool, Vec<u8>)> = Vec::new();
    let mut failure = None;
    let mut closed = false;
    'feed: for p in wire.chunks(piece) {
        tracer.receive(Direction::FromClient, p);
        match conn.receive(p) {
            Err(Error::Protocol(e)) => failure = Some(e),
            Err(e) => panic!("usage error from receive: {e:?}"),
            Ok(()) => {}
        }
        while let Some(m) = conn.poll_event() {
            match m {
                Message::Text(t) => delivered.push((true, t.as_bytes().to_vec())),
                Message::Binary(b) => delivered.push((false, b.to_vec())),
                Message::Close(_) => closed = true,
                _ => {}
            }
        }
        // Decoding goes on in poll_event, which records a failure in the state.
        if let (None, State::Failed(e)) = (&failure, conn.state()) {
            failure = Some(e.clone());
        }
        // Drain what the connection owes (pongs, the close reply): the queue is bounded.
        while let Some(tx) = conn.poll_transmit() {
            tx.advance(tx.remaining());
        }
        if failure.is_some() || closed {
            break 'feed;
        }
    }

    // The connection fails as soon as it knows; the tracer reports a frame once it is
    // whole: complete the frame the failure stopped in. The tracer has no size limits, so
    // a size failure is not its to see.
    let sized = matches!(
        failure,
        Some(ProtocolError::FrameTooBig { .. } | ProtocolError::MessageTooBig { .. })
    );
    // 0xFF: the next header after that frame has a reserved opcode, so the tracer stops
    // there instead of framing the padding (a `Lost` that does not count as its error).
    let unframeable = matches!(
        failure,
        Some(ProtocolError::ReservedOpCode(_) | ProtocolError::InvalidLength)
    );
    if failure.is_some() && !sized {
        tracer.receive(Direction::FromClient, &[0xff; MAX as usize + 14]);
    }

    // Rebuild complete messages from the frames before the tracer's first error (or up
    // to and including the close frame).
    let mut rebuilt: Vec<(bool, Vec<u8>)> = Vec::new();
    // (text, the bytes known, whether every frame so far was kept whole)
    let mut partial: Option<(bool, Vec<u8>, bool)> = None;
    let mut traced_error = false;
    while let Some(event) = tracer.poll_event() {
        let f = match event {
            TraceEvent::Frame(f) => f,
            TraceEvent::Lost { .. } => {
                traced_error = failure.is_none() || unframeable;
                break;
            }
            other => panic!("no heads in an upgraded trace: {other:?}"),
        };
        let control = f.opcode.is_control();
        assert!(f.payload.len() <= if control { PREVIEW.max(125) } else { PREVIEW });
        if let Some(i) = &f.inflated {
            assert!(i.data.len() <= PREVIEW && i.data.len() as u64 <= i.len);
        }
        if f.error.is_some() {
            traced_error = true;
            break;
        }
        if f.opcode == OpCode::Close {
            break;
        }
        if control {
            continue;
        }
        // Only previews are kept: a message is known up to the first frame cut short, so
        // the frames after it add nothing (their bytes do not follow the kept ones).
        let (bytes, whole) = match &f.inflated {
            Some(i) => (i.data.clone(), i.data.len() as u64 == i.len),
            None => (f.payload.clone(), f.payload.len() as u64 == f.payload_len),
        };
        let m = partial.get_or_insert((f.message_opcode == OpCode::Text, Vec::new(), true));
        if m.2 {
            m.1.extend(bytes);
            m.2 = whole;
        }
        if f.fin {
            let (text, bytes, _) = partial.take().expect("a message");
            rebuilt.push((text, bytes));
        }
    }
    // The tracer keeps previews: a message longer than one is only known by its prefix.
    let n = delivered.len().min(rebuilt.len());
    for (d, r) in delivered.iter().zip(&rebuilt) {
        assert_eq!(d.0, r.0, "message type");
        let k = r.1.len().min(d.1.len());
        assert_eq!(d.1[..k], r.1[..k], "message bytes");
    }
    // A frame too long for the padding is still arriving: its header's error shows.
    let arriving_error = tracer
        .frame_in_progress(Direction::FromClient)
        .is_some_and(|f| f.error.is_some());
    match &failure {
        Some(_) if sized => {}
        Some(e) => {
            assert!(
                traced_error || arriving_error,
                "the connection failed ({e:?}); the tracer saw nothing"
            );
            assert_eq!(
                n,
                delivered.len(),
                "delivered {delivered:?}, rebuilt {rebuilt:?}"
            );
        }
        None => {
            assert!(
                !traced_error,
                "the tracer saw an error the connection did not"
            );
            assert_eq!(
                delivered.len(),
                rebuilt.len(),
                "{delivered:?} / {rebuilt:?}"
            );
        }
    }
});
