//! The permessage-deflate decoder, inside a server `Connection` (where the size limit is
//! applied), on arbitrary compressed messages.
//!
//! Input: a config byte (bits 0-2: the client's window bits 8 + n; bit 3:
//! client_no_context_takeover; bit 4: text; bit 5: a ping between fragments; bit 6: deliver
//! a byte at a time), the max message size (two bytes, low first; 0: 1 MiB), then fragments
//! until the input ends: a flags byte (bit 0: fin), a length (two bytes) and the compressed
//! bytes. Every message is compressed (RSV1 on its first frame).
//!
//! Checks, besides the `Harness` ones: inflated messages never exceed the limit, and each
//! message's fate matches a one-shot inflate of the whole message with the same zlib (the
//! connection inflates piece by piece with growing buffers); what the connection accepts,
//! miniz_oxide (an independent inflater) inflates to the same bytes.
#![no_main]

use arbitrary::Unstructured;
use flate2::{Decompress, FlushDecompress, Status};
use libfuzzer_sys::fuzz_target;
use miniz_oxide::inflate::stream::{inflate, InflateState};
use miniz_oxide::{DataFormat, MZError, MZFlush, MZStatus};
use proto::{Config, Message, ProtocolError, Role, State};
use wsduplex_fuzz::{blob16, byte, deflate_params, raw_frame, u16le, Harness};

const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];
const KEY: Option<[u8; 4]> = Some([1, 2, 3, 4]);

#[derive(Debug, PartialEq)]
enum Fate {
    Ok(Vec<u8>),
    TooBig,
    Corrupt,
    Utf8,
}

/// One-shot reference with the same zlib: the whole piece at once, room for `max + 1`.
fn zlib_piece(
    z: &mut Decompress,
    mut input: &[u8],
    out: &mut Vec<u8>,
    max: usize,
) -> Result<(), Fate> {
    if out.capacity() < max + 1 {
        out.reserve_exact(max + 1 - out.len());
    }
    loop {
        let (before_in, before_out) = (z.total_in(), out.len());
        let status = z.decompress_vec(input, out, FlushDecompress::None);
        // Past the limit is too big even if the symbol after it is corrupt.
        if out.len() > max {
            return Err(Fate::TooBig);
        }
        let status = status.map_err(|_| Fate::Corrupt)?;
        let consumed = (z.total_in() - before_in) as usize;
        input = &input[consumed..];
        if status == Status::StreamEnd {
            z.reset(false);
            continue;
        }
        if input.is_empty() {
            return Ok(());
        }
        if consumed == 0 && out.len() == before_out {
            return Err(Fate::Corrupt);
        }
    }
}

/// miniz_oxide, streaming, unlimited output; a final block starts a new stream, as in the
/// core. It reads "too far back" distances as zeros where zlib fails, so only its
/// successes are compared. Called until it neither reads nor writes: it may hold output
/// back even with room to spare.
fn miniz_piece(
    s: &mut InflateState,
    mut input: &[u8],
    out: &mut Vec<u8>,
    limit: usize,
) -> Result<(), ()> {
    let mut buf = [0u8; 4096];
    loop {
        let r = inflate(s, input, &mut buf, MZFlush::None);
        input = &input[r.bytes_consumed..];
        out.extend_from_slice(&buf[..r.bytes_written]);
        if out.len() > limit {
            return Err(());
        }
        match r.status {
            Ok(MZStatus::StreamEnd) => s.reset(DataFormat::Raw),
            Ok(_) | Err(MZError::Buf) => {
                if r.bytes_consumed == 0 && r.bytes_written == 0 {
                    return if input.is_empty() { Ok(()) } else { Err(()) };
                }
            }
            Err(_) => return Err(()),
        }
    }
}

/// Whether `b` can be the start of UTF-8 text (an incomplete last code point allowed).
fn utf8_prefix(b: &[u8]) -> bool {
    match std::str::from_utf8(b) {
        Ok(_) => true,
        Err(e) => e.error_len().is_none(),
    }
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let flags = byte(&mut u);
    let max = match u16le(&mut u) {
        0 => 1 << 20,
        n => usize::from(n),
    };
    let bits = 8 + (flags & 7);
    let reset = flags & 8 != 0;
    let text = flags & 16 != 0;
    let pings = flags & 32 != 0;
    let trickle = flags & 64 != 0;
    // The server inflates with the client's parameters.
    let mut params = deflate_params(0);
    params.client_max_window_bits = bits;
    params.client_no_context_takeover = reset;
    let mut config = Config::default();
    config.deflate = Some(params);
    config.max_message_size = max as u64;
    config.max_frame_size = max as u64;
    let mut h = Harness::new(Role::Server, config);

    let mut zlib = Decompress::new_with_window_bits(false, bits.max(9));
    let mut miniz = Some(InflateState::new_boxed(DataFormat::Raw));
    let mut fragments: Vec<&[u8]> = Vec::new();
    while !u.is_empty() {
        let fin = byte(&mut u) & 1 == 1;
        fragments.push(blob16(&mut u));
        if !fin && !u.is_empty() {
            continue;
        }
        // One message: the reference's verdict first.
        let mut want = Vec::new();
        let mut compressed = 0;
        let mut fate = None;
        for f in &fragments {
            compressed += f.len();
            if compressed > max {
                fate = Some(Fate::TooBig);
                break;
            }
            if let Err(e) = zlib_piece(&mut zlib, f, &mut want, max) {
                fate = Some(e);
                break;
            }
            if text && !utf8_prefix(&want) {
                fate = Some(Fate::Utf8);
                break;
            }
        }
        let fate = fate.unwrap_or_else(|| match zlib_piece(&mut zlib, &TAIL, &mut want, max) {
            Err(e) => e,
            Ok(()) if text && std::str::from_utf8(&want).is_err() => Fate::Utf8,
            Ok(()) => Fate::Ok(want),
        });
        if reset {
            zlib.reset(false);
        }
        // The connection's.
        let last = fragments.len() - 1;
        for (i, f) in fragments.iter().enumerate() {
            let b0 = match (i, text) {
                (0, true) => 0x41,
                (0, false) => 0x42,
                _ => 0x00,
            } | if i == last { 0x80 } else { 0 };
            let mut frame = raw_frame(b0, KEY, f);
            if pings && i != last {
                frame.extend(raw_frame(0x89, KEY, b"p"));
            }
            if trickle {
                for b in &frame {
                    let _ = h.receive(std::slice::from_ref(b));
                }
            } else {
                let _ = h.receive(&frame);
            }
        }
        let mut got = None;
        while let Some(ev) = h.poll_event() {
            match ev {
                Message::Text(t) => got = Some(Fate::Ok(t.as_bytes().to_vec())),
                Message::Binary(b) => got = Some(Fate::Ok(b.to_vec())),
                Message::Ping(_) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        h.transmit(usize::MAX);
        let got = got.unwrap_or_else(|| match h.conn.state() {
            State::Failed(ProtocolError::MessageTooBig { size, max: m }) => {
                assert!(*size > *m && *m == max as u64, "{size} {m}");
                Fate::TooBig
            }
            State::Failed(ProtocolError::FrameTooBig { .. }) => Fate::TooBig,
            State::Failed(ProtocolError::InvalidCompressedData) => Fate::Corrupt,
            State::Failed(ProtocolError::InvalidUtf8) => Fate::Utf8,
            s => panic!("no message and state {s:?}"),
        });
        if let (Fate::Ok(bytes), Some(state)) = (&got, miniz.as_mut()) {
            assert!(bytes.len() <= max);
            let mut inflated = Vec::new();
            let ok = fragments
                .iter()
                .copied()
                .chain([&TAIL[..]])
                .all(|f| miniz_piece(state, f, &mut inflated, max).is_ok());
            wsduplex_fuzz::trace!(
                "message of {} fragments: zlib {} bytes, miniz {} bytes ({ok}), first difference at {:?}",
                fragments.len(),
                bytes.len(),
                inflated.len(),
                bytes.iter().zip(&inflated).position(|(a, b)| a != b)
            );
            // zlib only fails on a bad block header once it decodes a symbol with it, so a
            // message may end in a block miniz_oxide already refused: then its output so far
            // must agree, and it is out of step from here on.
            if ok {
                assert!(inflated == *bytes, "miniz_oxide inflates to something else");
                if reset {
                    state.reset(DataFormat::Raw);
                }
            } else {
                assert!(
                    bytes.starts_with(&inflated),
                    "miniz_oxide inflates to something else"
                );
                miniz = None;
            }
        }
        let agree = got == fate
            || (text
                && (got == Fate::Utf8 || fate == Fate::Utf8)
                && !matches!(got, Fate::Ok(_))
                && !matches!(fate, Fate::Ok(_)));
        assert!(agree, "connection: {got:?}, one-shot zlib: {fate:?}");
        if !matches!(got, Fate::Ok(_)) {
            break;
        }
        fragments.clear();
    }
    h.finish();
});
