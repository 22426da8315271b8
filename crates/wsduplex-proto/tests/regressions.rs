//! Inputs the fuzz targets (`fuzz/`) found to break the contract, kept as tests. Each names
//! the target and the invariant it broke.

mod common;

#[cfg(feature = "deflate")]
use flate2::{Compress, Compression, FlushCompress};
use wsduplex_proto::frame::OpCode;
use wsduplex_proto::handshake::accept_key;
use wsduplex_proto::handshake::client::{self, ResponseError, MAX_RESPONSE_HEAD};
#[cfg(feature = "deflate")]
use wsduplex_proto::DeflateParams;
use wsduplex_proto::{Config, Connection, Error, Message, ProtocolError, Role};

/// A masked final frame, as a client sends it.
fn frame(opcode: OpCode, rsv1: bool, payload: &[u8]) -> Vec<u8> {
    common::masked_frame(true, rsv1, opcode, payload)
}

/// Raw DEFLATE with a sync flush, the `00 00 ff ff` tail removed (RFC 7692 §7.2.1).
#[cfg(feature = "deflate")]
fn deflate(data: &[u8]) -> Vec<u8> {
    let mut z = Compress::new(Compression::default(), false);
    let mut out = Vec::with_capacity(data.len() + 64);
    z.compress_vec(data, &mut out, FlushCompress::Sync).unwrap();
    assert!(
        out.ends_with(&[0, 0, 0xff, 0xff]),
        "room enough for one call"
    );
    out.truncate(out.len() - 4);
    out
}

#[cfg(feature = "deflate")]
fn deflate_server(max_message_size: u64) -> Connection {
    let mut config = Config::default().max_message_size(max_message_size);
    config.deflate = Some(DeflateParams::default());
    Connection::new(Role::Server, config)
}

/// Feeds `input` in pieces of `piece` bytes; returns the first error.
#[cfg(feature = "deflate")]
fn feed(c: &mut Connection, input: &[u8], piece: usize) -> Result<(), Error> {
    for p in input.chunks(piece) {
        c.receive(p)?;
        while c.poll_event().is_some() {}
    }
    Ok(())
}

/// connection_ops: `receive_eof` while a decoded message waited for `poll_event` left the
/// connection failed, yet `receive` and `receive_buffered` went on returning `Ok` (the
/// pending event short-circuited the state check). Failure is sticky.
#[test]
fn every_call_fails_after_eof_even_with_an_event_waiting() {
    let mut server = Connection::new(Role::Server, Config::default());
    server.receive(&frame(OpCode::Text, false, b"hi")).unwrap();
    let eof = Err(Error::Protocol(ProtocolError::UnexpectedEof));
    assert_eq!(server.receive_eof(), eof);
    assert_eq!(server.receive(&frame(OpCode::Ping, false, b"")), eof);
    assert_eq!(server.receive_buffered(), eof);
    // The message decoded before the end is still delivered, and nothing after it.
    assert!(matches!(server.poll_event(), Some(Message::Text(t)) if t.as_str() == "hi"));
    assert_eq!(server.poll_event(), None);
    assert!(
        server.poll_transmit().is_none(),
        "no close frame can reach a peer that is gone"
    );
}

/// connection_server_bytes: compressed text with invalid UTF-8 followed by corrupt DEFLATE
/// data (or by more than the size limit) failed with 1002 (or 1009) when it arrived in one
/// read and with 1007 when it arrived in pieces: zlib inflated past the bad text to the
/// corrupt block before the text was checked. The close code must not depend on how TCP
/// split the stream.
#[test]
#[cfg(feature = "deflate")]
fn invalid_text_before_corrupt_deflate_data_is_1007_however_it_is_split() {
    // The fuzzer's input: a fixed-Huffman block that inflates to 0xb1 (never valid UTF-8),
    // then a distance reaching back before the start of the stream.
    let input = frame(
        OpCode::Text,
        true,
        &[0xdb, 0x48, 0xe4, 0xc9, 0xb6, 0x07, 0x00],
    );
    for piece in [input.len(), 1, 3] {
        let mut server = deflate_server(1 << 20);
        let r = feed(&mut server, &input, piece);
        assert_eq!(
            r,
            Err(Error::Protocol(ProtocolError::InvalidUtf8)),
            "pieces of {piece}"
        );
    }
}

#[test]
#[cfg(feature = "deflate")]
fn invalid_text_before_the_inflated_limit_is_1007_however_it_is_split() {
    let mut text = b"a\xff".to_vec();
    text.resize(10_000, b'b');
    let input = frame(OpCode::Text, true, &deflate(&text));
    for piece in [input.len(), 1, 7] {
        let mut server = deflate_server(100);
        let r = feed(&mut server, &input, piece);
        assert_eq!(
            r,
            Err(Error::Protocol(ProtocolError::InvalidUtf8)),
            "pieces of {piece}"
        );
    }
    // Valid text over the limit is still 1009, at the limit.
    let input = frame(OpCode::Text, true, &deflate(&[b'b'; 10_000]));
    let r = feed(&mut deflate_server(100), &input, input.len());
    assert_eq!(
        r,
        Err(Error::Protocol(ProtocolError::MessageTooBig {
            size: 101,
            max: 100
        }))
    );
}

/// connection_server_bytes: a compressed message that passes the size limit and has an
/// invalid distance code right after failed with 1002 when it arrived in one read and with
/// 1009 in pieces: with the output full, zlib still decodes the next symbol and reports it
/// corrupt. The limit comes first in the stream, so it wins either way.
#[test]
#[cfg(feature = "deflate")]
fn passing_the_inflated_limit_before_corrupt_data_is_1009_however_it_is_split() {
    // The fuzzer's input (unmasked): 257+ bytes of output, then distance code 30.
    let payload = [
        0x0a, 0xeb, 0x1a, 0xc6, 0x00, 0x01, 0x3b, 0xfa, 0xaf, 0x55, 0x62, 0xf3, 0x67, 0x6a, 0x3b,
        0xfa, 0x37, 0xfb, 0x3b, 0x00, 0x16, 0xc6, 0x0c, 0x00,
    ];
    let input = frame(OpCode::Binary, true, &payload);
    for piece in [input.len(), 1, 2, 3] {
        let mut server = deflate_server(256);
        let r = feed(&mut server, &input, piece);
        assert_eq!(
            r,
            Err(Error::Protocol(ProtocolError::MessageTooBig {
                size: 257,
                max: 256
            })),
            "pieces of {piece}"
        );
    }
}

/// handshake_response: a complete response head over `MAX_RESPONSE_HEAD` was accepted when it
/// came in one read, though the same head is `TooLarge` when a read ends inside it past the
/// limit: whether the handshake succeeded depended on how TCP split the response.
#[test]
fn a_response_head_over_the_limit_is_refused_however_it_arrives() {
    let req = client::Request::new("example.com", "/");
    let head = |filler: usize| {
        format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {}\r\nX-Filler: {}\r\n\r\n",
            accept_key(req.key().as_bytes()),
            "a".repeat(filler)
        )
        .into_bytes()
    };
    let fits = head(0);
    let fits = head(MAX_RESPONSE_HEAD - fits.len());
    assert_eq!(fits.len(), MAX_RESPONSE_HEAD);
    let (_, n) = req.parse_response(&fits).unwrap().unwrap();
    assert_eq!(n, MAX_RESPONSE_HEAD);
    let too_large = Err(ResponseError::TooLarge {
        max: MAX_RESPONSE_HEAD,
    });
    let over = head(MAX_RESPONSE_HEAD);
    assert_eq!(
        req.parse_response(&over[..MAX_RESPONSE_HEAD + 1])
            .map(|_| ()),
        too_large
    );
    assert_eq!(req.parse_response(&over).map(|_| ()), too_large);
}
