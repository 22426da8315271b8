//! `receive_with`: whole small messages handed out borrowed, everything else left to
//! `poll_event`.

use super::*;

/// Runs `receive_with` with replies that echo, collecting what it handed out.
fn echo_with(c: &mut Connection, max_buffered: usize) -> (Result<usize, Error>, Vec<Message>) {
    let mut got = Vec::new();
    let r = c.receive_with(max_buffered, |m, mut tx| {
        got.push(m.to_message());
        tx.send_ref(m).unwrap();
    });
    (r, got)
}

#[test]
fn whole_small_messages_come_out_borrowed_and_their_replies_queue_in_order() {
    let mut s = server();
    let mut wire = raw(0x81, K, b"hello");
    wire.extend(raw(0x82, K, &[7; 300]));
    wire.extend(raw(0x81, K, "wörld ✓".as_bytes()));
    s.receive_buffer().extend_from_slice(&wire);
    let (r, got) = echo_with(&mut s, usize::MAX);
    assert_eq!(r.unwrap(), 3);
    assert_eq!(
        got,
        [
            Message::text("hello"),
            Message::binary(vec![7; 300]),
            Message::text("wörld ✓")
        ]
    );
    assert!(s.receive_buffer().is_empty());
    assert!(s.poll_event().is_none());
    let mut expected = raw(0x81, None, b"hello");
    expected.extend(raw(0x82, None, &[7; 300]));
    expected.extend(raw(0x81, None, "wörld ✓".as_bytes()));
    assert_eq!(take_tx(&mut s), expected);
}

#[test]
fn it_stops_at_what_needs_more_and_poll_event_takes_it_from_there() {
    let mut s = server();
    let mut wire = raw(0x81, K, b"a");
    wire.extend(raw(0x89, K, b"ping"));
    wire.extend(raw(0x01, K, b"frag")); // a first fragment
    wire.extend(raw(0x80, K, b"ment"));
    wire.extend(raw(0x82, K, &[1; 16 * 1024])); // 16 KiB: handed out as a Message
    wire.extend(raw(0x81, K, b"b"));
    let whole = wire.len();
    wire.extend_from_slice(&raw(0x81, K, b"cut")[..4]); // a frame not yet complete
    s.receive_buffer().extend_from_slice(&wire);
    let mut seen = Vec::new();
    loop {
        let (r, got) = echo_with(&mut s, usize::MAX);
        r.unwrap();
        seen.extend(got.into_iter().map(|m| ("borrowed", m)));
        match s.poll_event() {
            Some(ev) => seen.push(("event", ev)),
            None => break,
        }
    }
    let expected = [
        ("borrowed", Message::text("a")),
        ("event", Message::Ping(Bytes::from_static(b"ping"))),
        ("event", Message::text("fragment")),
        ("event", Message::binary(vec![1; 16 * 1024])),
        ("borrowed", Message::text("b")),
    ];
    assert_eq!(seen, expected);
    // The partial frame waits for its rest; the header was already taken by poll_event.
    assert!(s.receive_buffer().len() < whole);
    s.receive(&raw(0x81, K, b"cut")[4..]).unwrap();
    assert_eq!(events(&mut s), [Message::text("cut")]);
}

#[test]
fn it_stops_once_max_buffered_is_reached_and_goes_on_after_a_write() {
    let mut s = server();
    for _ in 0..10 {
        s.receive_buffer()
            .extend_from_slice(&raw(0x82, K, &[0; 98]));
    }
    // Each echo is 100 bytes: the fourth reaches 400.
    let (r, got) = echo_with(&mut s, 400);
    assert_eq!((r.unwrap(), got.len()), (4, 4));
    assert_eq!(s.buffered_amount(), 400);
    assert_eq!(echo_with(&mut s, 400).0.unwrap(), 0);
    take_tx(&mut s);
    assert_eq!(echo_with(&mut s, 400).0.unwrap(), 4);
    take_tx(&mut s);
    assert_eq!(echo_with(&mut s, 400).0.unwrap(), 2);
}

#[test]
fn invalid_utf8_fails_with_1007_as_poll_event_would() {
    let mut s = server();
    let mut wire = raw(0x81, K, b"ok");
    wire.extend(raw(0x81, K, &[0xce, 0xba, 0xe1, 0xbd]));
    wire.extend(raw(0x81, K, b"never"));
    s.receive_buffer().extend_from_slice(&wire);
    let (r, got) = echo_with(&mut s, usize::MAX);
    assert_eq!(got, [Message::text("ok")]);
    let Err(Error::Protocol(e)) = r else {
        panic!("expected a protocol error, got {r:?}");
    };
    assert_eq!(e, ProtocolError::InvalidUtf8);
    // The echo of "ok" goes out first, then the close frame with 1007.
    let out = take_tx(&mut s);
    let echo = raw(0x81, None, b"ok");
    assert_eq!(out[..echo.len()], echo[..]);
    let (h, n) = FrameHeader::decode(&out[echo.len()..]).unwrap().unwrap();
    assert_eq!(h.opcode, OpCode::Close);
    let body = &out[echo.len() + n..];
    assert_eq!(u16::from_be_bytes([body[0], body[1]]), 1007);
    assert!(matches!(s.state(), State::Failed(_)));
    assert!(s.receive_buffer().is_empty() && s.poll_event().is_none());
    // Failure is sticky: a later call gives the same error, and hands nothing out.
    s.receive_buffer()
        .extend_from_slice(&raw(0x81, K, b"after"));
    let (again, got) = echo_with(&mut s, usize::MAX);
    assert!(got.is_empty());
    assert!(
        matches!(again, Err(Error::Protocol(ProtocolError::InvalidUtf8))),
        "{again:?}"
    );
}

#[test]
fn a_frame_that_breaks_a_rule_is_left_to_poll_event() {
    let mut s = server();
    s.receive_buffer()
        .extend_from_slice(&raw(0x81, None, b"unmasked"));
    assert_eq!(echo_with(&mut s, usize::MAX).0.unwrap(), 0);
    let r = s.receive_buffered();
    assert_failed_with(&mut s, r, CloseCode::PROTOCOL_ERROR);
}

#[test]
fn closing_from_the_callback_stops_and_later_messages_still_arrive() {
    let mut s = server();
    for text in ["one", "two", "three"] {
        s.receive_buffer()
            .extend_from_slice(&raw(0x81, K, text.as_bytes()));
    }
    let n = s
        .receive_with(usize::MAX, |_, mut tx| {
            tx.close(CloseCode::NORMAL, "bye").unwrap();
            assert_eq!(*tx.state(), State::Closing);
            assert!(tx.send_text("x").is_err());
        })
        .unwrap();
    assert_eq!(n, 1);
    // Closing: nothing is handed out borrowed, data still arrives as events.
    assert_eq!(echo_with(&mut s, usize::MAX).0.unwrap(), 0);
    assert_eq!(
        events(&mut s),
        [Message::text("two"), Message::text("three")]
    );
}

#[test]
fn a_frame_begun_before_it_was_whole_comes_out_borrowed_once_it_is() {
    let mut s = server();
    let wire = raw(0x81, K, "héllo wörld".as_bytes());
    s.receive_buffer().extend_from_slice(&wire[..9]);
    assert_eq!(echo_with(&mut s, usize::MAX).0.unwrap(), 0);
    // poll_event begins the frame: its header is taken, what arrived is unmasked and
    // checked (so bad UTF-8 fails at once).
    assert!(s.poll_event().is_none());
    s.receive_buffer().extend_from_slice(&wire[9..]);
    s.receive_buffer().extend_from_slice(&raw(0x82, K, b"next"));
    let (r, got) = echo_with(&mut s, usize::MAX);
    assert_eq!(r.unwrap(), 2);
    assert_eq!(
        got,
        [Message::text("héllo wörld"), Message::binary(&b"next"[..])]
    );
    assert!(s.receive_buffer().is_empty() && s.poll_event().is_none());
}

#[test]
fn nothing_is_handed_out_in_the_middle_of_a_message() {
    let mut s = server();
    s.receive(&raw(0x01, K, b"first")).unwrap();
    s.receive_buffer()
        .extend_from_slice(&raw(0x80, K, b" last"));
    assert_eq!(echo_with(&mut s, usize::MAX).0.unwrap(), 0);
    assert_eq!(events(&mut s), [Message::text("first last")]);
}
