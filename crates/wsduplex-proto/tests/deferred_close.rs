//! `Config::defer_close_reply`: the peer's close is reported, the connection keeps sending,
//! and the application's own `close` is the answer (RFC 6455 §5.5.1 lets an endpoint finish
//! sending first). Off by default: the close is answered at once, echoing its code.

use bytes::Buf;
use wsduplex_proto::{CloseCode, CloseFrame, Config, Connection, Message, Role, State};

fn wire(c: &mut Connection) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(tx) = c.poll_transmit() {
        out.extend_from_slice(&tx.copy_to_bytes(tx.remaining()));
    }
    out
}

fn pair(defer: bool) -> (Connection, Connection) {
    let server = Connection::new(Role::Server, Config::default().defer_close_reply(defer));
    (Connection::new(Role::Client, Config::default()), server)
}

#[test]
fn a_deferred_close_keeps_the_connection_open_for_sending_until_the_answer() {
    let (mut client, mut server) = pair(true);
    client.close(CloseCode::new(4000), "bye").unwrap();
    server.receive(&wire(&mut client)).unwrap();
    let close = server.poll_event();
    assert!(
        matches!(&close, Some(Message::Close(Some(CloseFrame { code, .. }))) if *code == CloseCode::new(4000))
    );
    assert_eq!(*server.state(), State::Open);
    assert!(
        wire(&mut server).is_empty(),
        "no answer before the application's"
    );
    // What the server still had to say reaches the client, which is closing.
    server.send_text("in flight").unwrap();
    server.close(CloseCode::new(4001), "relayed").unwrap();
    assert_eq!(*server.state(), State::Closed);
    client.receive(&wire(&mut server)).unwrap();
    assert_eq!(client.poll_event(), Some(Message::text("in flight")));
    match client.poll_event() {
        Some(Message::Close(Some(f))) => {
            assert_eq!(
                (f.code, f.reason.as_str()),
                (CloseCode::new(4001), "relayed")
            )
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(*client.state(), State::Closed);
}

#[test]
fn after_a_deferred_close_nothing_the_peer_sends_is_data_and_its_eof_ends_it() {
    let (mut client, mut server) = pair(true);
    client.close(CloseCode::NORMAL, "").unwrap();
    let mut bytes = wire(&mut client);
    // A client that breaks the rule and sends after its close: ignored, not delivered.
    bytes.extend_from_slice(&[0x81, 0x81, 1, 2, 3, 4, b'x' ^ 1]);
    server.receive(&bytes).unwrap();
    assert!(matches!(server.poll_event(), Some(Message::Close(_))));
    server.receive(&[0x81, 0x81, 1, 2, 3, 4, b'y' ^ 1]).unwrap();
    assert_eq!(server.poll_event(), None);
    assert_eq!(
        server.receive_with(1 << 20, |_, _| panic!("data after close")),
        Ok(0)
    );
    // The peer gave up waiting: the handshake is over, not failed.
    server.receive_eof().unwrap();
    assert_eq!(*server.state(), State::Closed);
}

#[test]
fn by_default_a_close_is_answered_at_once() {
    let (mut client, mut server) = pair(false);
    client.close(CloseCode::new(4000), "bye").unwrap();
    server.receive(&wire(&mut client)).unwrap();
    assert!(matches!(server.poll_event(), Some(Message::Close(_))));
    assert_eq!(*server.state(), State::Closed);
    assert!(server.send_text("late").is_err());
    client.receive(&wire(&mut server)).unwrap();
    match client.poll_event() {
        Some(Message::Close(Some(f))) => assert_eq!(f.code, CloseCode::new(4000)),
        other => panic!("{other:?}"),
    }
}
