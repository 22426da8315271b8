//! Inputs the fuzz targets (`fuzz/`) found to break the contract, kept as tests. Each names
//! the target and the invariant it broke.

use wsduplex_proto::frame::{FrameHeader, OpCode};
use wsduplex_proto::mask::apply_mask;
use wsduplex_proto::{Config, Connection, Error, Message, ProtocolError, Role};

const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// A masked frame, as a client sends it.
fn frame(opcode: OpCode, rsv1: bool, payload: &[u8]) -> Vec<u8> {
    let h = FrameHeader {
        fin: true,
        rsv1,
        rsv2: false,
        rsv3: false,
        opcode,
        mask: Some(KEY),
        payload_len: payload.len() as u64,
    };
    let (head, n) = h.encode();
    let mut out = head[..n].to_vec();
    out.extend_from_slice(payload);
    apply_mask(&mut out[n..], KEY, 0);
    out
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
