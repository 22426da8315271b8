//! The core's error paths and the corners around them, through the public API only: the
//! borrowed fast path (`receive_with`) failing and stopping, commands refused or failing
//! after an error, the handshake's limits and malformed input, a permessage-deflate answer
//! that breaks the offer. Each test names the rule it checks; the coverage run that found
//! these paths is in `docs/testing.md`.

mod common;

use bytes::{Buf, BytesMut};
use wsduplex_proto::frame::OpCode;
use wsduplex_proto::handshake::client::{self, RequestError, ResponseError};
use wsduplex_proto::handshake::server::{reason_phrase, HandshakeError, Limits, Request};
use wsduplex_proto::{
    CloseCode, CloseFrame, Config, Connection, DeflateConfig, Error, Message, MessageRef,
    ProtocolError, Role, State, UsageError, Utf8Bytes,
};

/// A frame as a client sends it (masked).
fn frame(fin: bool, opcode: OpCode, payload: &[u8]) -> Vec<u8> {
    common::masked_frame(fin, false, opcode, payload)
}

fn text(payload: &[u8]) -> Vec<u8> {
    frame(true, OpCode::Text, payload)
}

/// Everything `c` has queued for the wire.
fn drain(c: &mut Connection) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(tx) = c.poll_transmit() {
        let n = tx.remaining();
        out.extend_from_slice(&tx.copy_to_bytes(n));
    }
    out
}

/// What a server sent, as its client peer decodes it.
fn events_at_client(wire: &[u8]) -> Vec<Message> {
    let mut client = Connection::new(Role::Client, Config::default());
    let _ = client.receive(wire);
    std::iter::from_fn(|| client.poll_event()).collect()
}

fn server() -> Connection {
    Connection::new(Role::Server, Config::default())
}

/// Calls `receive_with` on what is buffered, collecting the messages handed to `f`.
fn fast(c: &mut Connection, max_buffered: usize) -> (Result<usize, Error>, Vec<String>) {
    let mut seen = Vec::new();
    let r = c.receive_with(max_buffered, |m, _| {
        seen.push(match m {
            MessageRef::Text(t) => format!("text {t}"),
            MessageRef::Binary(b) => format!("binary {}", b.len()),
        })
    });
    (r, seen)
}

// ---------------------------------------------------------------------------------------
// The borrowed fast path
// ---------------------------------------------------------------------------------------

/// RFC 6455 §8.1: invalid UTF-8 in a text message fails the connection with 1007. On the
/// fast path too: the messages before it are handed over, then the error, the close frame
/// owed, and every later call fails the same way.
#[test]
fn fast_path_invalid_utf8_fails_with_1007_after_the_good_messages() {
    let mut s = server();
    s.receive_buffer().extend_from_slice(&text(b"fine"));
    s.receive_buffer().extend_from_slice(&text(b"bad \xff"));
    s.receive_buffer().extend_from_slice(&text(b"never"));
    let (r, seen) = fast(&mut s, usize::MAX);
    assert_eq!(r, Err(Error::Protocol(ProtocolError::InvalidUtf8)));
    assert_eq!(seen, ["text fine"]);
    assert_eq!(s.state(), &State::Failed(ProtocolError::InvalidUtf8));
    match &events_at_client(&drain(&mut s))[..] {
        [Message::Close(Some(f))] => {
            assert_eq!(f.code, CloseCode::INVALID_PAYLOAD);
            assert_eq!(f.reason.as_str(), "invalid utf-8");
        }
        other => panic!("expected one 1007 close, got {other:?}"),
    }
    let sticky = Err(Error::Protocol(ProtocolError::InvalidUtf8));
    assert_eq!(s.receive(&text(b"more")), sticky);
    assert_eq!(s.receive_buffered(), sticky);
    assert_eq!(s.receive_eof(), sticky);
    assert_eq!(s.send_text("reply"), sticky);
    assert_eq!(s.close(CloseCode::NORMAL, ""), sticky);
    assert_eq!(s.send(Message::Close(None)), sticky);
    assert_eq!(s.poll_event(), None);
    assert!(drain(&mut s).is_empty(), "nothing more goes out");
}

/// The fast path takes nothing while an event waits for `poll_event`, between the fragments
/// of a message, or for a frame with a 64-bit length: those are `poll_event`'s.
#[test]
fn fast_path_leaves_what_it_cannot_take_to_poll_event() {
    // An event waiting.
    let mut s = server();
    s.receive(&frame(true, OpCode::Ping, b"p")).unwrap();
    s.receive_buffer().extend_from_slice(&text(b"after"));
    assert_eq!(fast(&mut s, usize::MAX), (Ok(0), vec![]));
    assert_eq!(s.poll_event(), Some(Message::Ping(b"p"[..].into())));
    assert_eq!(fast(&mut s, usize::MAX), (Ok(1), vec!["text after".into()]));

    // Between fragments.
    let mut s = server();
    s.receive(&frame(false, OpCode::Text, b"frag")).unwrap();
    assert_eq!(s.poll_event(), None);
    s.receive_buffer()
        .extend_from_slice(&frame(true, OpCode::Continuation, b"ment"));
    assert_eq!(fast(&mut s, usize::MAX), (Ok(0), vec![]));
    assert_eq!(s.poll_event(), Some(Message::text("fragment")));

    // A 64-bit length.
    let mut s = server();
    let big = vec![7u8; 70_000];
    s.receive_buffer()
        .extend_from_slice(&frame(true, OpCode::Binary, &big));
    assert_eq!(fast(&mut s, usize::MAX), (Ok(0), vec![]));
    match s.poll_event() {
        Some(Message::Binary(b)) => assert_eq!(&b[..], &big[..]),
        other => panic!("{other:?}"),
    }
}

/// The fast path stops once the queue reaches `max_buffered` (backpressure), and when `f`
/// closes; what is left arrives through `poll_event` (messages keep arriving while closing).
#[test]
fn fast_path_stops_at_max_buffered_and_when_closed() {
    let mut s = server();
    for i in 0..4 {
        s.receive_buffer()
            .extend_from_slice(&text(format!("m{i}").as_bytes()));
    }
    // Each reply queues 4 bytes (2 of header, 2 of payload): the third call sees 8 >= 8.
    let r = s.receive_with(8, |m, mut tx| tx.send_ref(m).unwrap());
    assert_eq!(r, Ok(2));
    assert_eq!(s.buffered_amount(), 8);
    drain(&mut s);
    let r = s.receive_with(usize::MAX, |_, mut tx| {
        tx.close(CloseCode::GOING_AWAY, "bye").unwrap();
        assert_eq!(tx.state(), &State::Closing);
    });
    assert_eq!(r, Ok(1), "stops after the close");
    assert_eq!(s.poll_event(), Some(Message::text("m3")));
    // Closing: the fast path takes nothing more.
    s.receive_buffer().extend_from_slice(&text(b"late"));
    assert_eq!(fast(&mut s, usize::MAX), (Ok(0), vec![]));
    assert_eq!(s.poll_event(), Some(Message::text("late")));
}

/// A small frame that `poll_event` began before all of it had arrived is finished by the
/// fast path; invalid UTF-8 in its second half fails there as it would in `poll_event`.
#[test]
fn fast_path_finishes_a_begun_frame_and_checks_its_text() {
    for (payload, ok) in [
        (&b"hello, world"[..], true),
        (&b"hello, \xc3\x28"[..], false),
    ] {
        let mut s = server();
        let whole = text(payload);
        s.receive(&whole[..whole.len() - 3]).unwrap();
        assert_eq!(s.poll_event(), None, "the frame is not whole yet");
        s.receive_buffer()
            .extend_from_slice(&whole[whole.len() - 3..]);
        let (r, seen) = fast(&mut s, usize::MAX);
        if ok {
            assert_eq!(r, Ok(1));
            assert_eq!(seen, ["text hello, world"]);
        } else {
            assert_eq!(r, Err(Error::Protocol(ProtocolError::InvalidUtf8)));
            assert!(seen.is_empty());
        }
    }
}

// ---------------------------------------------------------------------------------------
// Commands
// ---------------------------------------------------------------------------------------

/// `send(Message)` queues control frames and closes like the dedicated calls; the caller's
/// mistakes are usage errors that change nothing.
#[test]
fn send_message_kinds_and_usage_errors() {
    let mut s = server();
    s.send(Message::Ping(b"pi"[..].into())).unwrap();
    s.send(Message::Pong(b"po"[..].into())).unwrap();
    s.send(Message::Binary(vec![1, 2, 3].into())).unwrap();
    assert_eq!(
        s.send_ping(&[0; 126]),
        Err(Error::Usage(UsageError::ControlPayloadTooLong { len: 126 }))
    );
    assert_eq!(
        s.close(CloseCode::ABNORMAL_CLOSURE, ""),
        Err(Error::Usage(UsageError::InvalidCloseCode(1006)))
    );
    assert_eq!(
        s.close(CloseCode::NORMAL, &"r".repeat(124)),
        Err(Error::Usage(UsageError::ControlPayloadTooLong { len: 126 }))
    );
    assert_eq!(s.state(), &State::Open, "refused commands change nothing");
    let frame = CloseFrame {
        code: CloseCode::NORMAL,
        reason: Utf8Bytes::from_static("done"),
    };
    s.send(Message::Close(Some(frame.clone()))).unwrap();
    assert_eq!(s.sent_close_code(), Some(CloseCode::NORMAL));
    // Closing again does nothing; data is refused.
    s.send(Message::Close(None)).unwrap();
    assert_eq!(s.send_text("x"), Err(Error::Usage(UsageError::Closed)));
    assert_eq!(s.send_pong(b""), Err(Error::Usage(UsageError::Closed)));
    let events = events_at_client(&drain(&mut s));
    assert_eq!(
        events,
        [
            Message::Ping(b"pi"[..].into()),
            Message::Pong(b"po"[..].into()),
            Message::Binary(vec![1, 2, 3].into()),
            Message::Close(Some(frame)),
        ]
    );
}

/// A close without a status code (`Close(None)`) goes out with an empty body.
#[test]
fn close_without_a_code_has_an_empty_body() {
    let mut c = Connection::new(Role::Client, Config::default());
    c.send(Message::Close(None)).unwrap();
    let wire = drain(&mut c);
    let mut s = server();
    s.receive(&wire).unwrap();
    assert_eq!(s.poll_event(), Some(Message::Close(None)));
    // RFC 6455 §5.5.1: the reply echoes no code either.
    let events = events_at_client(&drain(&mut s));
    assert_eq!(events, [Message::Close(None)]);
}

/// EOF before the closing handshake is the peer's fault (1006, never sent), and sticky.
#[test]
fn eof_before_the_close_is_1006_and_nothing_goes_out() {
    let mut s = server();
    let eof = Err(Error::Protocol(ProtocolError::UnexpectedEof));
    assert_eq!(s.receive_eof(), eof);
    assert_eq!(
        ProtocolError::UnexpectedEof.close_code(),
        CloseCode::ABNORMAL_CLOSURE
    );
    assert!(drain(&mut s).is_empty());
    assert_eq!(s.receive(&text(b"x")), eof);
    assert_eq!(s.send_binary(b"x"), eof);
}

/// The transmit buffer can be taken while nothing is queued and given back.
#[test]
fn transmit_buffer_is_lent_only_while_empty() {
    let mut s = server();
    s.send_text("queued").unwrap();
    assert!(s.take_transmit_buffer().is_none(), "something is queued");
    drain(&mut s);
    let buf = s.take_transmit_buffer();
    s.give_transmit_buffer(|| buf.unwrap_or_else(|| BytesMut::with_capacity(64)));
    s.give_transmit_buffer(|| panic!("it has one already"));
    s.send_text("again").unwrap();
    assert_eq!(events_at_client(&drain(&mut s)), [Message::text("again")]);
}

// ---------------------------------------------------------------------------------------
// Handshake
// ---------------------------------------------------------------------------------------

const UPGRADE: &str = "GET /chat HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\n\
    Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n";

/// RFC 6455 §4.2.1: a request head over the limit is refused whether or not it is complete;
/// a missing, repeated or wrong-length key is refused.
#[test]
fn server_handshake_limits_and_keys() {
    let mut limits = Limits::default();
    limits.max_head_size = 64;
    let complete = format!("{UPGRADE}Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n");
    assert_eq!(
        Request::parse(complete.as_bytes(), &limits).err(),
        Some(HandshakeError::HeadTooLarge { max: 64 })
    );
    assert_eq!(
        Request::parse(&complete.as_bytes()[..70], &limits).err(),
        Some(HandshakeError::HeadTooLarge { max: 64 })
    );
    let keys = [
        ("", HandshakeError::InvalidKey),
        (
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
            HandshakeError::InvalidKey,
        ),
        ("Sec-WebSocket-Key: c2hvcnQ=\r\n", HandshakeError::InvalidKey),
    ];
    for (key, err) in keys {
        let head = format!("{UPGRADE}{key}\r\n");
        let (req, _) = Request::parse(head.as_bytes(), &Limits::default())
            .unwrap()
            .unwrap();
        assert_eq!(req.validate_upgrade().err(), Some(err.clone()), "{key:?}");
        assert_eq!(req.accept_response(None, &[]).err(), Some(err));
    }
}

/// Extra response headers with CR or LF are skipped, never sent.
#[test]
fn server_response_skips_unsafe_extra_headers() {
    let head = format!("{UPGRADE}Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n");
    let (req, n) = Request::parse(head.as_bytes(), &Limits::default())
        .unwrap()
        .unwrap();
    assert_eq!(n, head.len());
    assert_eq!(req.minor_version(), 1);
    assert_eq!(req.head(), head.as_bytes());
    assert!(req
        .headers()
        .any(|(n, v)| n == "Host" && v == b"example.com"));
    let resp = req
        .accept_response(None, &[("X-Ok", "1"), ("X-Bad", "a\r\nSet-Cookie: x")])
        .unwrap();
    let resp = String::from_utf8(resp).unwrap();
    assert!(resp.contains("X-Ok: 1\r\n"), "{resp}");
    assert!(
        !resp.contains("X-Bad") && !resp.contains("Set-Cookie"),
        "{resp}"
    );
}

/// Every status the crate answers with has its reason phrase; others have none.
#[test]
fn reason_phrases() {
    for (status, phrase) in [
        (101, "Switching Protocols"),
        (200, "OK"),
        (201, "Created"),
        (202, "Accepted"),
        (204, "No Content"),
        (400, "Bad Request"),
        (401, "Unauthorized"),
        (403, "Forbidden"),
        (404, "Not Found"),
        (405, "Method Not Allowed"),
        (408, "Request Timeout"),
        (410, "Gone"),
        (411, "Length Required"),
        (413, "Content Too Large"),
        (415, "Unsupported Media Type"),
        (429, "Too Many Requests"),
        (431, "Request Header Fields Too Large"),
        (500, "Internal Server Error"),
        (503, "Service Unavailable"),
        (299, ""),
    ] {
        assert_eq!(reason_phrase(status), phrase, "{status}");
    }
}

/// Client: headers that could split the request are refused when set; a response that is
/// not HTTP is malformed; a good response's headers can be read back.
#[test]
fn client_request_options_and_malformed_responses() {
    let req = client::Request::new("example.com", "/chat");
    assert!(matches!(
        req.clone().origin("https://a\r\nX: y"),
        Err(RequestError::InvalidHeader(_))
    ));
    assert!(matches!(
        req.clone().header("X-Ok", "a\nb"),
        Err(RequestError::InvalidHeader(_))
    ));
    assert!(matches!(
        req.clone().header("Bad Name", "v"),
        Err(RequestError::InvalidHeader(_))
    ));
    let req = req
        .origin("https://example.com")
        .unwrap()
        .header("X-Trace", "42")
        .unwrap();
    let bytes = String::from_utf8(req.to_bytes()).unwrap();
    assert!(bytes.contains("Origin: https://example.com\r\n"), "{bytes}");
    assert!(bytes.contains("X-Trace: 42\r\n"), "{bytes}");

    assert_eq!(
        req.parse_response(b"NOT HTTP AT ALL\r\n\r\n").err(),
        Some(ResponseError::Malformed)
    );
    let accept = wsduplex_proto::handshake::accept_key(req.key().as_bytes());
    let ok = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept}\r\nX-Served-By: test\r\n\r\n"
    );
    let (resp, n) = req.parse_response(ok.as_bytes()).unwrap().unwrap();
    assert_eq!(n, ok.len());
    assert_eq!(resp.header("x-served-by"), Some("test"));
    assert_eq!(resp.header("x-missing"), None);
}

/// A redirect is refused (never followed) with its `Location`, so the user can see where
/// to go; other statuses carry none.
#[test]
fn client_refuses_a_redirect_and_reports_its_location() {
    let req = client::Request::new("example.com", "/chat");
    let moved = b"HTTP/1.1 301 Moved Permanently\r\nLocation: wss://example.com/chat\r\n\r\n";
    let err = req.parse_response(moved).unwrap_err();
    assert_eq!(
        err,
        ResponseError::Status {
            status: 301,
            reason: "Moved Permanently".into(),
            location: Some("wss://example.com/chat".into()),
        }
    );
    assert!(err.to_string().contains("wss://example.com/chat"), "{err}");
    let not_found = b"HTTP/1.1 404 Not Found\r\nLocation: /x\r\n\r\n";
    let err = req.parse_response(not_found).unwrap_err();
    assert_eq!(
        err.to_string(),
        "server answered 404 Not Found instead of 101"
    );
}

/// RFC 7692 §7.1.2.1: a server that answers with a larger `server_max_window_bits` than
/// the client offered fails the handshake.
#[test]
fn deflate_answer_with_a_larger_server_window_than_offered_is_refused() {
    let mut policy = DeflateConfig::default();
    policy.server_max_window_bits = 10;
    let answer = b"permessage-deflate; server_max_window_bits=12";
    let err = policy.accept_response([&answer[..]]).unwrap_err();
    assert_eq!(
        err,
        wsduplex_proto::deflate::NegotiationError::InvalidParam("server_max_window_bits=12".into())
    );
    let ok = b"permessage-deflate; server_max_window_bits=9";
    let agreed = policy.accept_response([&ok[..]]).unwrap().unwrap();
    assert_eq!(agreed.server_max_window_bits, 9);
}

// ---------------------------------------------------------------------------------------
// Values
// ---------------------------------------------------------------------------------------

/// Close codes and frames print as documented; payload `Debug` prints lengths, not bytes.
#[test]
fn close_codes_frames_and_payloads_print_without_their_bytes() {
    let code = CloseCode::from(4008u16);
    assert_eq!(u16::from(code), 4008);
    assert_eq!(code.to_string(), "4008");
    assert_eq!(format!("{code:?}"), "CloseCode(4008)");
    let with = CloseFrame {
        code: CloseCode::GOING_AWAY,
        reason: Utf8Bytes::from("server shutting down".to_string()),
    };
    assert_eq!(with.to_string(), "1001 server shutting down");
    let without = CloseFrame {
        code: CloseCode::NORMAL,
        reason: Utf8Bytes::new(),
    };
    assert_eq!(without.to_string(), "1000");
    assert!(format!("{with:?}").contains("server shutting down"));

    let secret = "s3cret-token";
    for m in [
        Message::text(secret),
        Message::from(secret.as_bytes().to_vec()),
        Message::Ping(secret.as_bytes().to_vec().into()),
        Message::Pong(secret.as_bytes().to_vec().into()),
    ] {
        let shown = format!("{m:?}");
        assert!(
            shown.contains("12 bytes") && !shown.contains(secret),
            "{shown}"
        );
        assert_eq!(m.as_payload(), secret.as_bytes());
    }
    assert_eq!(Message::Close(None).as_payload(), b"");
    assert_eq!(
        format!("{:?}", Utf8Bytes::from_static(secret)),
        "Utf8Bytes(12 bytes)"
    );

    let m = Message::text("hé");
    let r = m.as_data().unwrap();
    assert_eq!((r.len(), r.is_empty(), r.as_text()), (3, false, Some("hé")));
    assert!(format!("{r:?}").contains("3 bytes"));
    let b = Message::Binary(vec![1, 2].into());
    let r = b.as_data().unwrap();
    assert_eq!((r.as_bytes(), r.as_text()), (&[1u8, 2][..], None));
    assert!(Message::Ping(Default::default()).as_data().is_none());
}

/// An empty `Sec-WebSocket-Extensions` value is no answer, not a malformed one.
#[test]
fn deflate_answer_skips_empty_values() {
    let policy = DeflateConfig::default();
    let agreed = policy
        .accept_response([&b"  "[..], &b"permessage-deflate"[..]])
        .unwrap();
    assert!(agreed.is_some());
    assert_eq!(policy.accept_response([&b""[..]]), Ok(None));
}

/// A frame whose masking key has not all arrived is not taken by the fast path, and the
/// [`wsduplex_proto::Sender`] of [`Connection::sender`] queues like the connection.
#[test]
fn fast_path_waits_for_the_whole_mask_and_sender_queues() {
    let mut s = server();
    let whole = text(b"hi");
    s.receive_buffer().extend_from_slice(&whole[..4]);
    assert_eq!(fast(&mut s, usize::MAX), (Ok(0), vec![]));
    s.receive_buffer().extend_from_slice(&whole[4..]);
    assert_eq!(fast(&mut s, usize::MAX), (Ok(1), vec!["text hi".into()]));

    let mut tx = s.sender();
    tx.send_binary(&[9]).unwrap();
    tx.send(Message::text("t")).unwrap();
    tx.send_text("u").unwrap();
    assert_eq!(tx.buffered_amount(), 9);
    assert_eq!(
        events_at_client(&drain(&mut s)),
        [
            Message::Binary(vec![9].into()),
            Message::text("t"),
            Message::text("u")
        ]
    );
}
