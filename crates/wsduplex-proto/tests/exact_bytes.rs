//! With a fixed source of randomness, a client's bytes are exact: the handshake key and
//! every masking key come from `proto::random`'s replaceable source.

use bytes::Buf;
use std::cell::Cell;
use wsduplex_proto::handshake::client::Request;
use wsduplex_proto::{CloseCode, Config, Connection, Role};

thread_local! {
    static NEXT: Cell<u8> = const { Cell::new(0) };
}

/// 0, 1, 2, ... across calls (per thread, so tests running in parallel do not share it).
fn counting(buf: &mut [u8]) {
    for b in buf {
        *b = NEXT.get();
        NEXT.set(NEXT.get().wrapping_add(1));
    }
}

#[test]
fn a_client_writes_exactly_these_bytes() {
    NEXT.set(0);
    let request = Request::with_random("example.com", "/chat", counting);
    assert_eq!(
        request.to_bytes(),
        b"GET /chat HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\n\
          Connection: Upgrade\r\nSec-WebSocket-Key: AAECAwQFBgcICQoLDA0ODw==\r\n\
          Sec-WebSocket-Version: 13\r\n\r\n"
    );

    let mut client = Connection::new(Role::Client, Config::default().random(counting));
    client.send_text("Hi").unwrap();
    client.close(CloseCode::NORMAL, "bye").unwrap();
    let tx = client.poll_transmit().unwrap();
    let wire = tx.copy_to_bytes(tx.remaining());
    #[rustfmt::skip]
    let expected: &[u8] = &[
        // Text "Hi", masked with 16 17 18 19.
        0x81, 0x82, 16, 17, 18, 19, 0x58, 0x78,
        // Close 1000 "bye", masked with the next key: a fresh one per frame.
        0x88, 0x85, 20, 21, 22, 23, 0x17, 0xfd, 0x74, 0x6e, 0x71,
    ];
    assert_eq!(&wire[..], expected);
}
