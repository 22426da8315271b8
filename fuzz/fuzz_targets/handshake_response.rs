//! The client side of the opening handshake on arbitrary bytes: `Request::parse_response`
//! for a request that offers subprotocols and permessage-deflate as the first bytes say, with
//! every `{ACCEPT}` in the input replaced by the right `Sec-WebSocket-Accept` for the
//! request's random key. The bytes after the head go to a client `Connection` with what was
//! agreed.
//!
//! Input: flags (bit 0: offer deflate, bit 1: offer "chat" and "superchat"; bits 2-7 shape
//! the valid response below), the policy (`wsduplex_fuzz::deflate_policy`), then the
//! response.
//!
//! Checks: a response, "need more" within the size limit, or a `ResponseError`; the head is
//! within the limit and parses the same without what follows it; only what was offered is
//! accepted, and the agreement respects the policy.
//!
//! Arbitrary bytes may be refused, so that alone would not notice a valid `101` refused. So
//! each input also builds a response that is valid for the request, and it must be accepted
//! with what it says: the core's own server side answers the request (subprotocol by a
//! server preference from bits 2-3, permessage-deflate under a server policy read from the
//! first bytes of the response, without consuming them), spelled as RFC 6455 and RFC 9110
//! allow (bit 4: lowercase header names; bit 5: `Upgrade: WebSocket` and `Connection:
//! keep-alive, Upgrade`; bit 6: other headers too; bit 7: a frame after the head).
#![no_main]

use arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;
use proto::handshake::accept_key;
use proto::handshake::client::{Request, MAX_RESPONSE_HEAD};
use proto::handshake::server::{self, Limits};
use proto::{Config, DeflateConfig, Role};
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
    let rest = u.take_rest();
    let server_policy = deflate_policy(&mut Unstructured::new(rest));
    valid_response_is_accepted(&req, flags, &server_policy, &policy);
    let accept = accept_key(req.key().as_bytes());
    let input = substitute(rest, b"{ACCEPT}", accept.as_bytes());
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

/// Builds the `101` the core's server side gives `req` (shaped by `flags`, see the module
/// docs) and checks that the client accepts it, with the subprotocol and the
/// permessage-deflate agreement the server chose.
fn valid_response_is_accepted(
    req: &Request,
    flags: u8,
    server_policy: &DeflateConfig,
    policy: &DeflateConfig,
) {
    let request = req.to_bytes();
    let (theirs, _) = server::Request::parse(&request, &Limits::default())
        .expect("our request parses")
        .expect("our request is complete");
    let preference: &[&str] = match (flags >> 2) & 3 {
        0 => &[],
        1 => &["chat"],
        2 => &["superchat"],
        _ => &["superchat", "chat"],
    };
    let subprotocol = theirs.select_subprotocol(preference);
    let deflate = theirs.negotiate_deflate(server_policy);
    let extra: &[(&str, &str)] = if flags & 0x40 != 0 {
        &[
            ("Server", "fuzz/1.0"),
            ("Date", "Mon, 07 Dec 2026 04:00:00 GMT"),
            ("Set-Cookie", "a=b; Path=/"),
        ]
    } else {
        &[]
    };
    let built = theirs
        .accept_response_with(subprotocol, deflate.as_ref(), extra)
        .expect("the server accepts our request");
    let mut head = String::from_utf8(built).expect("ASCII");
    if flags & 0x20 != 0 {
        head = head
            .replace("Upgrade: websocket", "Upgrade: WebSocket")
            .replace("Connection: Upgrade", "Connection: keep-alive, Upgrade");
    }
    if flags & 0x10 != 0 {
        // Header names are case-insensitive (RFC 9110 §5.1); values stay as they are.
        head = head
            .split("\r\n")
            .enumerate()
            .map(|(i, line)| match line.split_once(':') {
                Some((name, value)) if i > 0 => format!("{}:{value}", name.to_lowercase()),
                _ => line.to_string(),
            })
            .collect::<Vec<_>>()
            .join("\r\n");
    }
    let mut bytes = head.into_bytes();
    let n = bytes.len();
    if flags & 0x80 != 0 {
        bytes.extend_from_slice(&[0x81, 0x02, b'h', b'i']);
    }
    let shown = || String::from_utf8_lossy(&bytes).into_owned();
    let (resp, m) = match req.parse_response(&bytes) {
        Ok(Some(x)) => x,
        Ok(None) => panic!("a complete valid 101 taken as partial: {:?}", shown()),
        Err(e) => panic!("a valid 101 refused ({e}): {:?}", shown()),
    };
    assert_eq!(m, n, "the head ends where it ends: {:?}", shown());
    assert_eq!(resp.status, 101);
    assert_eq!(resp.subprotocol.as_deref(), subprotocol, "{:?}", shown());
    assert_eq!(resp.deflate, deflate, "{:?}", shown());
    if let Some(p) = &resp.deflate {
        check_agreement(p, policy);
    }
    assert!(
        matches!(req.parse_response(&bytes[..n - 1]), Ok(None)),
        "one byte short of a valid head: {:?}",
        shown()
    );
}
