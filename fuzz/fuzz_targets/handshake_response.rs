//! The client side of the opening handshake on arbitrary bytes: `Request::parse_response`
//! for a request that offers subprotocols and permessage-deflate as the first bytes say, with
//! every `{ACCEPT}` in the input replaced by the right `Sec-WebSocket-Accept` for the
//! request's random key. The bytes after the head go to a client `Connection` with what was
//! agreed.
//!
//! Input: flags (bit 0: offer deflate, bit 1: offer "chat" and "superchat"), the
//! policy (`wsduplex_fuzz::deflate_policy`), then the response.
//!
//! Checks: a response, "need more" within the size limit, or a `ResponseError`; the head is
//! within the limit and parses the same without what follows it; only what was offered is
//! accepted, and the agreement respects the policy.
#![no_main]

use arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;
use proto::handshake::accept_key;
use proto::handshake::client::{Request, MAX_RESPONSE_HEAD};
use proto::{Config, Role};
use wsduplex_fuzz::{byte, check_agreement, deflate_policy, substitute, Harness};

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let flags = byte(&mut u);
    let policy = deflate_policy(&mut u);
    let mut req = Request::new("example.com", "/chat");
    if flags & 1 != 0 {
        req = req.deflate(policy.clone());
    }
    let offered: &[&str] = if flags & 2 != 0 {
        &["chat", "superchat"]
    } else {
        &[]
    };
    for p in offered {
        req = req.subprotocol(*p).expect("tokens");
    }
    let accept = accept_key(req.key().as_bytes());
    let input = substitute(u.take_rest(), b"{ACCEPT}", accept.as_bytes());
    let (resp, n) = match req.parse_response(&input) {
        Ok(Some(x)) => x,
        Ok(None) => {
            assert!(
                input.len() <= MAX_RESPONSE_HEAD,
                "{} bytes and still partial",
                input.len()
            );
            return;
        }
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    assert!(
        n <= input.len() && n <= MAX_RESPONSE_HEAD,
        "head of {n} bytes"
    );
    let again = req
        .parse_response(&input[..n])
        .expect("the head alone parses");
    assert_eq!(again.map(|(_, m)| m), Some(n));
    assert_eq!(resp.status, 101);
    if let Some(p) = &resp.subprotocol {
        assert!(offered.contains(&p.as_str()), "{p:?} was not offered");
    }
    match (&resp.deflate, flags & 1 != 0) {
        (None, _) => {}
        (Some(_), false) => panic!("deflate agreed without an offer"),
        (Some(p), true) => check_agreement(p, &policy),
    }
    let mut config = Config::default();
    config.deflate = resp.deflate;
    let mut h = Harness::new(Role::Client, config);
    let _ = h.receive(&input[n..]);
    while let Some(ev) = h.poll_event() {
        if let proto::Message::Binary(b) = ev {
            let _ = h.command(wsduplex_fuzz::Command::Binary(&b));
        }
    }
    let _ = h.receive_eof();
    h.finish();
});
