//! Micro-benchmarks of the hot paths, each next to `memcpy` of the same bytes (the machine's
//! ceiling for anything that touches every byte once): masking, UTF-8 validation, frame
//! header encode/decode, a server decoding masked messages, and permessage-deflate.
//!
//! `cargo bench -p wsduplex-proto` (criterion reports bytes per second for each).

use bytes::Buf;
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use wsduplex_proto::frame::{FrameHeader, OpCode};
use wsduplex_proto::mask::{apply_mask, apply_mask_naive};
use wsduplex_proto::utf8::Utf8Validator;
use wsduplex_proto::{Config, Connection, DeflateConfig, DeflateParams, Message, Role};

const SIZES: [usize; 4] = [32, 1024, 64 * 1024, 1 << 20];

fn memcpy(c: &mut Criterion) {
    let mut g = c.benchmark_group("memcpy");
    for size in SIZES {
        let src = vec![7u8; size];
        let mut dst = vec![0u8; size];
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::from_parameter(size), &size, |b, _| {
            b.iter(|| dst.copy_from_slice(black_box(&src)))
        });
    }
}

fn masking(c: &mut Criterion) {
    let mut g = c.benchmark_group("mask");
    let key = [0x12, 0x34, 0x56, 0x78];
    for size in SIZES {
        let mut buf = vec![7u8; size];
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::new("fast", size), &size, |b, _| {
            b.iter(|| apply_mask(black_box(&mut buf), key, 0))
        });
        g.bench_with_input(BenchmarkId::new("naive", size), &size, |b, _| {
            b.iter(|| apply_mask_naive(black_box(&mut buf), key, 0))
        });
    }
}

fn utf8(c: &mut Criterion) {
    let mut g = c.benchmark_group("utf8");
    for size in SIZES {
        let ascii = "a".repeat(size);
        let mixed: String = "κόσμε-é-😀-".chars().cycle().take(size / 2).collect();
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::new("validator-ascii", size), &size, |b, _| {
            b.iter(|| {
                Utf8Validator::new()
                    .feed(black_box(ascii.as_bytes()))
                    .unwrap()
            })
        });
        g.bench_with_input(BenchmarkId::new("std-ascii", size), &size, |b, _| {
            b.iter(|| {
                std::str::from_utf8(black_box(ascii.as_bytes()))
                    .unwrap()
                    .len()
            })
        });
        g.throughput(Throughput::Bytes(mixed.len() as u64));
        g.bench_with_input(BenchmarkId::new("validator-mixed", size), &size, |b, _| {
            b.iter(|| {
                Utf8Validator::new()
                    .feed(black_box(mixed.as_bytes()))
                    .unwrap()
            })
        });
    }
}

fn header(c: &mut Criterion) {
    let mut g = c.benchmark_group("header");
    let h = FrameHeader {
        fin: true,
        rsv1: false,
        rsv2: false,
        rsv3: false,
        opcode: OpCode::Binary,
        mask: Some([1, 2, 3, 4]),
        payload_len: 70_000,
    };
    let (bytes, n) = h.encode();
    g.throughput(Throughput::Bytes(n as u64));
    g.bench_function("encode", |b| b.iter(|| black_box(&h).encode()));
    g.bench_function("decode", |b| {
        b.iter(|| FrameHeader::decode(black_box(&bytes[..n])).unwrap())
    });
}

/// A server decoding a read's worth of masked frames and handing out each message.
fn receive(c: &mut Criterion) {
    let mut g = c.benchmark_group("receive");
    for (size, count) in [(32usize, 1000usize), (64 * 1024, 16)] {
        let mut client = Connection::new(Role::Client, Config::default());
        let payload = vec![b'x'; size];
        for _ in 0..count {
            client.send_binary(&payload).unwrap();
        }
        let tx = client.poll_transmit().unwrap();
        let wire = tx.copy_to_bytes(tx.remaining());
        g.throughput(Throughput::Bytes((size * count) as u64));
        g.bench_with_input(
            BenchmarkId::new("messages", format!("{count}x{size}")),
            &size,
            |b, _| {
                let mut server = Connection::new(Role::Server, Config::default());
                b.iter(|| {
                    server.receive(black_box(&wire)).unwrap();
                    let mut n = 0;
                    while let Some(Message::Binary(m)) = server.poll_event() {
                        n += m.len();
                    }
                    assert_eq!(n, size * count);
                })
            },
        );
    }
}

/// permessage-deflate: compress on one end, inflate on the other, JSON-like text.
fn deflate(c: &mut Criterion) {
    let mut g = c.benchmark_group("deflate");
    let text: String = (0..)
        .map(|i| {
            format!(
                "{{\"id\":{i},\"room\":\"lobby\",\"name\":\"user{}\",\"text\":\"hello\"}}\n",
                i % 7
            )
        })
        .take(1500)
        .collect();
    let policy = DeflateConfig::default();
    let agreed = Some(DeflateParams::default());
    let config = Config::default().deflate(agreed, &policy);
    g.throughput(Throughput::Bytes(text.len() as u64));
    g.bench_function(BenchmarkId::new("roundtrip", text.len()), |b| {
        let mut client = Connection::new(Role::Client, config.clone());
        let mut server = Connection::new(Role::Server, config.clone());
        b.iter(|| {
            client.send_text(black_box(&text)).unwrap();
            let tx = client.poll_transmit().unwrap();
            let wire = tx.copy_to_bytes(tx.remaining());
            server.receive(&wire).unwrap();
            match server.poll_event() {
                Some(Message::Text(t)) => assert_eq!(t.len(), text.len()),
                other => panic!("{other:?}"),
            }
        })
    });
}

criterion_group!(benches, memcpy, masking, utf8, header, receive, deflate);
criterion_main!(benches);
