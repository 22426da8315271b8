//! Compression bombs.

use super::*;

// ---------------------------------------------------------------------------------------
// Compression bomb
// ---------------------------------------------------------------------------------------

/// Raw DEFLATE (RFC 1951), fixed Huffman codes: `prefix` as literals, then `repeat` copies of
/// the previous byte in back-references of 258 bytes at distance 1 (13 bits each: a ratio of
/// about 160:1), then `suffix`, then an empty stored block with its `00 00 ff ff` removed, as
/// permessage-deflate sends a message (RFC 7692 §7.2.1). Inflates to `prefix + 258 * repeat
/// + suffix` bytes.
fn deflate_bomb(prefix: &[u8], repeat: usize, suffix: &[u8]) -> Vec<u8> {
    struct Bits {
        out: Vec<u8>,
        acc: u64,
        n: u32,
    }
    impl Bits {
        /// `len` bits of `value`, least significant first (header fields).
        fn put(&mut self, value: u32, len: u32) {
            self.acc |= u64::from(value) << self.n;
            self.n += len;
            while self.n >= 8 {
                self.out.push(self.acc as u8);
                self.acc >>= 8;
                self.n -= 8;
            }
        }
        /// A Huffman code: most significant bit first.
        fn code(&mut self, code: u32, len: u32) {
            self.put(code.reverse_bits() >> (32 - len), len);
        }
        fn literal(&mut self, b: u8) {
            assert!(b < 144, "only literals 0-143 are encoded here");
            self.code(0x30 + u32::from(b), 8);
        }
    }
    let mut bits = Bits {
        out: Vec::with_capacity(repeat * 13 / 8 + 64),
        acc: 0,
        n: 0,
    };
    bits.put(0, 1); // BFINAL = 0
    bits.put(1, 2); // BTYPE = 01, fixed Huffman codes
    prefix.iter().for_each(|&b| bits.literal(b));
    for _ in 0..repeat {
        bits.code(0xC5, 8); // length code 285: 258 bytes
        bits.code(0, 5); // distance code 0: distance 1
    }
    suffix.iter().for_each(|&b| bits.literal(b));
    bits.code(0, 7); // end of block (256)
    bits.put(0, 3); // an empty stored block: its header, then padding to a byte
    bits.put(0, 7);
    bits.out
}

/// Opens `path` offering permessage-deflate; checks that the server agreed.
fn deflate_attacker(addr: SocketAddr, path: &str) -> Ws {
    let request = upgrade_request(
        addr,
        path,
        "Sec-WebSocket-Extensions: permessage-deflate\r\n",
    );
    let (mut ws, head) = Ws::connect_with(addr, &request);
    assert!(
        header(&head, "sec-websocket-extensions").is_some_and(|e| e.contains("permessage-deflate")),
        "deflate not agreed: {head}"
    );
    if path.starts_with("/chat") {
        let (op, _welcome) = ws.read_message();
        assert_eq!(op, TEXT);
    }
    ws
}

/// With `--deflate`: a 6.5 MB message that inflates to 1 GiB gets 1009 once the inflated
/// bytes pass the 16 MiB message limit, long before the bomb has even been sent, and a 52 KB
/// one that inflates to 8 MiB gets 1009 in a chat room (64 KiB messages); the server's memory
/// grows by the limit at most. The same encoder's small message is echoed intact (the bombs
/// are well-formed DEFLATE).
#[test]
fn a_compression_bomb_gets_1009_at_the_limit_before_inflating_the_rest() {
    let _serial = serial();
    // Echoes go out uncompressed, so that this raw client can compare them.
    let server = Server::start_on_loopback(&["--deflate", "--deflate-threshold", "1000000000"]);
    let addr = server.addr;
    let chatter = Chatter::start(addr, true);
    let memory = Memory::before(&server);
    // Well-formed: 1 + 258 * 400 bytes from 656 bytes.
    let small = deflate_bomb(b"x", 400, b"y");
    let mut ws = deflate_attacker(addr, "/echo");
    ws.send_raw(&frame(true, RSV1, TEXT, &small, MASK));
    let (op, echoed) = ws.read_message();
    assert_eq!(op, TEXT);
    assert_eq!(echoed, [&b"x"[..], &[b'x'; 258 * 400], b"y"].concat());
    eprintln!(
        "[compression bomb] sanity: {} B inflate to {} B, echoed intact",
        small.len(),
        echoed.len()
    );
    ws.send_close(1000, "");
    assert_eq!(ws.expect_close().0, Some(1000));
    ws.expect_eof();

    for (path, op, inflated) in [
        ("/echo", BINARY, 1u64 << 30),
        // Under the room's 64 KiB frame limit once compressed (52 KB): the inflated size
        // is what fails.
        ("/chat/bomb?name=mallory", TEXT, 8 << 20),
    ] {
        let bomb = deflate_bomb(b"a", (inflated / 258) as usize, b"");
        let mut ws = deflate_attacker(addr, path);
        let start = Instant::now();
        let mut bytes = frame_header(true, RSV1, op, bomb.len() as u64, MASK);
        let mask = MASK.expect("a mask");
        bytes.extend(bomb.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        let writer = send_in_background(&ws.stream, bytes);
        assert_eq!(close_code(&mut ws), Some(1009), "{path}");
        let took = start.elapsed();
        ws.expect_eof();
        let written = writer.join().expect("writer");
        eprintln!(
            "[compression bomb] {path}: {} KiB inflating to {} MiB: 1009 after {took:?}, \
             {} KiB of it written (kernel buffers included)",
            bomb.len() >> 10,
            inflated >> 20,
            written >> 10
        );
        assert!(took < Duration::from_secs(5), "{path}: {took:?}");
    }
    chatter.wait_rounds(3);
    memory.check("compression bomb", 64);
    chatter.finish();
    server.stop();
}
