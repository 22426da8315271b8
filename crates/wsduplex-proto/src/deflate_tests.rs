use super::codec::TAIL;
use super::*;
use flate2::{Compress, Compression, FlushCompress};

fn policy() -> DeflateConfig {
    DeflateConfig::default()
}

fn negotiate(p: &DeflateConfig, header: &str) -> Option<String> {
    p.negotiate([header.as_bytes()]).map(|a| a.to_header())
}

#[test]
fn server_negotiation_table() {
    let default = policy();
    let small = DeflateConfig {
        server_max_window_bits: 10,
        client_max_window_bits: 11,
        server_no_context_takeover: true,
        client_no_context_takeover: true,
        ..policy()
    };
    let pmd = "permessage-deflate";
    let cases: &[(&DeflateConfig, &str, Option<&str>)] = &[
        (&default, pmd, Some(pmd)),
        (
            &default,
            "permessage-deflate; client_max_window_bits",
            Some(pmd),
        ),
        (&default, "x-webkit-deflate-frame, foo", None),
        (&default, "foo, permessage-deflate", Some(pmd)),
        (
            &default,
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
            Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover"),
        ),
        (
            &default,
            "permessage-deflate; server_max_window_bits=9",
            Some("permessage-deflate; server_max_window_bits=9"),
        ),
        (
            &default,
            "permessage-deflate; server_max_window_bits=8",
            Some("permessage-deflate; server_max_window_bits=8"),
        ),
        (
            &default,
            "permessage-deflate; client_max_window_bits=10",
            Some("permessage-deflate; client_max_window_bits=10"),
        ),
        (
            &default,
            "permessage-deflate; client_max_window_bits=\"12\"",
            Some("permessage-deflate; client_max_window_bits=12"),
        ),
        // Malformed offers are declined (RFC 7692 §5): the next one is taken.
        (&default, "permessage-deflate; server_max_window_bits", None),
        (
            &default,
            "permessage-deflate; server_max_window_bits=16",
            None,
        ),
        (
            &default,
            "permessage-deflate; server_max_window_bits=7",
            None,
        ),
        (
            &default,
            "permessage-deflate; server_max_window_bits=010",
            None,
        ),
        (
            &default,
            "permessage-deflate; client_max_window_bits=abc",
            None,
        ),
        (
            &default,
            "permessage-deflate; server_no_context_takeover=1",
            None,
        ),
        (&default, "permessage-deflate; foo", None),
        (
            &default,
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            None,
        ),
        (
            &default,
            "permessage-deflate; server_max_window_bits=10; server_max_window_bits=10",
            None,
        ),
        (
            &default,
            "permessage-deflate; foo, permessage-deflate; server_max_window_bits=12",
            Some("permessage-deflate; server_max_window_bits=12"),
        ),
        // A syntax error anywhere declines everything.
        (&default, "permessage-deflate; =", None),
        (&default, "permessage-deflate; a=\"b", None),
        // The server's own limits.
        (
            &small,
            "permessage-deflate; client_max_window_bits",
            Some(
                "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
                 server_max_window_bits=10; client_max_window_bits=11",
            ),
        ),
        (
            &small,
            "permessage-deflate; server_max_window_bits=12; client_max_window_bits=9",
            Some(
                "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
                 server_max_window_bits=10; client_max_window_bits=9",
            ),
        ),
        // It cannot limit a client that did not say it can be limited: decline...
        (&small, pmd, None),
        // ...unless a later offer allows it (Autobahn 13.7: several offers).
        (
            &small,
            "permessage-deflate, permessage-deflate; client_max_window_bits",
            Some(
                "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
                 server_max_window_bits=10; client_max_window_bits=11",
            ),
        ),
    ];
    for (p, offer, want) in cases {
        assert_eq!(negotiate(p, offer).as_deref(), *want, "offer {offer:?}");
    }
    // Several header lines are one list.
    let lines: [&[u8]; 2] = [b"foo", b"permessage-deflate; server_max_window_bits=11"];
    assert_eq!(default.negotiate(lines).unwrap().server_max_window_bits, 11);
}

#[test]
fn client_offer_and_response_table() {
    let default = policy();
    assert_eq!(
        default.offer(),
        "permessage-deflate; client_max_window_bits"
    );
    let small = DeflateConfig {
        server_max_window_bits: 10,
        client_max_window_bits: 12,
        server_no_context_takeover: true,
        client_no_context_takeover: true,
        ..policy()
    };
    assert_eq!(
        small.offer(),
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
         server_max_window_bits=10; client_max_window_bits=12"
    );
    let agreed = |s, c, sb, cb| DeflateParams {
        server_no_context_takeover: s,
        client_no_context_takeover: c,
        server_max_window_bits: sb,
        client_max_window_bits: cb,
    };
    let ok: &[(&DeflateConfig, &str, DeflateParams)] = &[
        (&default, "permessage-deflate", agreed(false, false, 15, 15)),
        (
            &default,
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
            agreed(true, true, 15, 15),
        ),
        (
            &default,
            "permessage-deflate; client_max_window_bits=9",
            agreed(false, false, 15, 9),
        ),
        (
            &default,
            "Permessage-Deflate; server_max_window_bits=8",
            agreed(false, false, 8, 15),
        ),
        (
            &small,
            "permessage-deflate; server_no_context_takeover; server_max_window_bits=10",
            agreed(true, true, 10, 12),
        ),
        (
            &small,
            "permessage-deflate; server_no_context_takeover; server_max_window_bits=9; \
             client_max_window_bits=14",
            agreed(true, true, 9, 12),
        ),
    ];
    for (p, resp, want) in ok {
        assert_eq!(
            p.accept_response([resp.as_bytes()]),
            Ok(Some(*want)),
            "{resp}"
        );
    }
    assert_eq!(default.accept_response([]), Ok(None));
    let bad: &[(&DeflateConfig, &str)] = &[
        (&default, "permessage-deflate; client_max_window_bits"),
        (&default, "permessage-deflate; foo"),
        (&default, "permessage-deflate; server_max_window_bits"),
        (&default, "permessage-deflate; server_max_window_bits=16"),
        (&default, "permessage-deflate; server_no_context_takeover=x"),
        (
            &default,
            "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
        ),
        (&default, "permessage-deflate, permessage-deflate"),
        (&default, "x-other"),
        (&default, "permessage-deflate; ="),
        // More than the client allowed, or less than it asked for.
        (&small, "permessage-deflate; server_max_window_bits=11"),
        (&small, "permessage-deflate; server_no_context_takeover"),
        (&small, "permessage-deflate; server_max_window_bits=10"),
    ];
    for (p, resp) in bad {
        assert!(p.accept_response([resp.as_bytes()]).is_err(), "{resp}");
    }
}

#[test]
fn extension_lists_parse_with_quotes_and_empty_elements() {
    let exts = parse_extensions(b" , a ;b= \"1\\0\" ;c, d").unwrap();
    assert_eq!(
        exts,
        vec![
            Extension {
                name: "a".into(),
                params: vec![("b".into(), Some("10".into())), ("c".into(), None)],
            },
            Extension {
                name: "d".into(),
                params: vec![],
            },
        ]
    );
    for bad in ["", " , ", "a;", "a b", "a; b=", "a; b=\"\"", "a; b=\"x y\""] {
        assert!(parse_extensions(bad.as_bytes()).is_err(), "{bad:?}");
    }
}

fn sample(n: usize) -> Vec<u8> {
    // Compressible but not trivial: words with a counter.
    let mut v = Vec::with_capacity(n);
    let mut i = 0u32;
    while v.len() < n {
        v.extend_from_slice(format!("message {i} of the test, ").as_bytes());
        i = i.wrapping_mul(31).wrapping_add(7) % 1000;
    }
    v.truncate(n);
    v
}

fn roundtrip(bits: u8, reset: bool, messages: &[Vec<u8>], split: usize) -> Vec<usize> {
    let mut d = Deflater::new(6, bits, reset);
    let mut i = Inflater::new(bits, reset);
    let mut sizes = Vec::new();
    for m in messages {
        let c = d.compress(m).to_vec();
        assert!(!c.ends_with(&TAIL) || c.is_empty());
        sizes.push(c.len());
        let mut out = Vec::new();
        for piece in c.chunks(split.max(1)) {
            i.inflate(piece, &mut out, u64::MAX).unwrap();
        }
        i.finish(&mut out, u64::MAX).unwrap();
        assert_eq!(&out, m, "bits {bits} reset {reset}");
    }
    sizes
}

#[test]
#[cfg_attr(
    miri,
    ignore = "zlib is too slow under Miri, and reaches no unsafe code of ours"
)]
fn compress_inflate_roundtrip_every_window_with_and_without_context_takeover() {
    // The first two fit in the smallest window, so the second refers back to the first.
    let msgs = vec![
        sample(200),
        sample(200),
        Vec::new(),
        sample(70_000),
        b"x".to_vec(),
    ];
    for bits in 8..=15 {
        for split in [1, 7, 1 << 20] {
            let kept = roundtrip(bits, false, &msgs, split);
            let reset = roundtrip(bits, true, &msgs, split);
            // With context takeover the repeated message costs almost nothing.
            assert!(kept[1] < reset[1] / 2, "bits {bits}: {kept:?} vs {reset:?}");
            assert_eq!(kept[0], reset[0]);
        }
    }
}

#[test]
#[cfg_attr(
    miri,
    ignore = "zlib is too slow under Miri, and reaches no unsafe code of ours"
)]
fn rfc_7692_examples_inflate() {
    // §7.2.3.1: "Hello" compressed, a single frame.
    let mut i = Inflater::new(15, false);
    let mut out = Vec::new();
    i.inflate(&[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00], &mut out, 100)
        .unwrap();
    i.finish(&mut out, 100).unwrap();
    assert_eq!(out, b"Hello");
    // §7.2.3.2: the second "Hello" with context takeover refers back to the first.
    out.clear();
    i.inflate(&[0xf2, 0x00, 0x11, 0x00, 0x00], &mut out, 100)
        .unwrap();
    i.finish(&mut out, 100).unwrap();
    assert_eq!(out, b"Hello");
    // §7.2.3.3: stored block; §7.2.3.4: a final block, after which a new stream starts.
    let mut i = Inflater::new(15, false);
    for payload in [
        &[
            0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00,
        ][..],
        &[0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00],
        &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00],
    ] {
        let mut out = Vec::new();
        i.inflate(payload, &mut out, 100).unwrap();
        i.finish(&mut out, 100).unwrap();
        assert_eq!(out, b"Hello");
    }
    // §7.2.3.6: an empty message is one 0x00.
    let mut d = Deflater::new(6, 15, false);
    assert_eq!(d.compress(b""), &[0x00]);
}

#[test]
#[cfg_attr(
    miri,
    ignore = "zlib is too slow under Miri, and reaches no unsafe code of ours"
)]
fn garbage_is_corrupt() {
    let mut i = Inflater::new(15, false);
    let mut out = Vec::new();
    assert_eq!(
        i.inflate(&[0xff; 16], &mut out, 1000),
        Err(InflateError::Corrupt)
    );
}

/// A compressed payload of `n` zero bytes, built without holding them.
pub(crate) fn zero_bomb(n: usize) -> Vec<u8> {
    let mut z = Compress::new_with_window_bits(Compression::new(9), false, 15);
    let zeros = vec![0u8; 1 << 16];
    let mut out = Vec::with_capacity(n / 512 + 1024);
    let mut left = n;
    while left > 0 {
        let take = left.min(zeros.len());
        let before = z.total_in();
        z.compress_vec(&zeros[..take], &mut out, FlushCompress::None)
            .unwrap();
        left -= (z.total_in() - before) as usize;
        if out.capacity() - out.len() < 1024 {
            out.reserve(1 << 16);
        }
    }
    loop {
        out.reserve(1024);
        z.compress_vec(&[], &mut out, FlushCompress::Sync).unwrap();
        if out.len() < out.capacity() {
            break;
        }
    }
    out.truncate(out.len() - TAIL.len());
    out
}

#[test]
#[cfg_attr(
    miri,
    ignore = "zlib is too slow under Miri, and reaches no unsafe code of ours"
)]
fn a_compression_bomb_stops_at_the_limit_without_inflating_the_rest() {
    let bomb = zero_bomb(16 << 20);
    assert!(bomb.len() < 32 * 1024, "{} bytes", bomb.len());
    let max = 256 << 10;
    let mut i = Inflater::new(15, false);
    let mut out = Vec::new();
    let err = i.inflate(&bomb, &mut out, max).unwrap_err();
    assert!(matches!(err, InflateError::TooBig { size } if size > max));
    assert!(out.capacity() as u64 <= max + 1, "{}", out.capacity());
    let consumed = i.zlib.as_ref().unwrap().total_in();
    assert!(
        consumed < bomb.len() as u64 / 8,
        "inflated {consumed} of {} bytes",
        bomb.len()
    );
}
