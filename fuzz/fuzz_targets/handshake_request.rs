//! The server side of the opening handshake on arbitrary bytes: `Request::parse`, then
//! validation, subprotocol selection and permessage-deflate negotiation under a policy from
//! the first three bytes (`wsduplex_fuzz::deflate_policy`); the bytes after the head go to
//! a server `Connection` with what was agreed, as the first frames of a read would.
//!
//! Checks: a head, "need more" within the size limit, or a `HandshakeError` whose refusal
//! is a complete HTTP response with its status; the head parses the same without what
//! follows it; a 101 answers the key; an agreement respects the policy and survives the
//! round trip through its header to a client that offered everything.
#![no_main]

use arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;
use proto::handshake::accept_key;
use proto::handshake::server::{Limits, Request};
use proto::{Config, DeflateConfig, Role};
use wsduplex_fuzz::{check_agreement, deflate_policy, Harness};

fn parse_response(bytes: &[u8]) -> (u16, Vec<(String, Vec<u8>)>, usize) {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut r = httparse::Response::new(&mut headers);
    let n = match r.parse(bytes) {
        Ok(httparse::Status::Complete(n)) => n,
        other => panic!("our response does not parse: {other:?}"),
    };
    let hs = r
        .headers
        .iter()
        .map(|h| (h.name.to_string(), h.value.to_vec()))
        .collect();
    (r.code.unwrap_or(0), hs, n)
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let policy = deflate_policy(&mut u);
    let input = u.take_rest();
    let limits = Limits::default();
    let (req, n) = match Request::parse(input, &limits) {
        Ok(Some(x)) => x,
        Ok(None) => {
            assert!(
                input.len() <= limits.max_head_size,
                "{} bytes and still partial",
                input.len()
            );
            return;
        }
        Err(e) => {
            let status = e.status();
            assert!(matches!(status, 400 | 431), "{e:?} -> {status}");
            let resp = e.to_response();
            let (code, _, n) = parse_response(&resp);
            assert_eq!((code, n + format!("{e}\n").len()), (status, resp.len()));
            return;
        }
    };
    assert!(
        n <= input.len() && n <= limits.max_head_size,
        "head of {n} bytes"
    );
    let again = Request::parse(&input[..n], &limits).expect("the head alone parses");
    assert_eq!(again.map(|(_, m)| m), Some(n));
    assert!(req.headers().count() <= limits.max_headers);
    let _ = (
        req.method(),
        req.path(),
        req.minor_version(),
        req.is_upgrade(),
    );
    let subprotocol = req.select_subprotocol(&["chat", "superchat"]);
    if let Some(p) = subprotocol {
        assert!(req.subprotocols().any(|o| o == p));
    }
    let agreed = req.negotiate_deflate(&policy);
    if let Some(p) = &agreed {
        check_agreement(p, &policy);
        let header = p.to_header();
        let back = DeflateConfig::default()
            .accept_response([header.as_bytes()])
            .unwrap_or_else(|e| panic!("{header:?} refused: {e}"));
        assert_eq!(back.as_ref(), Some(p), "{header:?}");
    }
    match req.validate_upgrade() {
        Ok(key) => {
            let accept = accept_key(key);
            let resp = req
                .accept_response_with(subprotocol, agreed.as_ref(), &[("X-Fuzz", "1")])
                .expect("validated");
            let (code, headers, m) = parse_response(&resp);
            assert_eq!((code, m), (101, resp.len()));
            let find = |name: &str| {
                headers
                    .iter()
                    .filter(|(n, _)| n.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.clone())
                    .collect::<Vec<_>>()
            };
            assert_eq!(find("sec-websocket-accept"), vec![accept.into_bytes()]);
            assert_eq!(
                find("sec-websocket-extensions").len(),
                agreed.is_some() as usize
            );
            // What followed the head is the client's first frames.
            let mut config = Config::default();
            config.deflate = agreed;
            let mut h = Harness::new(Role::Server, config);
            let _ = h.receive(&input[n..]);
            while let Some(ev) = h.poll_event() {
                if let proto::Message::Text(t) = ev {
                    let _ = h.command(wsduplex_fuzz::Command::Text(t.as_str()));
                }
            }
            let _ = h.receive_eof();
            h.finish();
        }
        Err(e) => {
            assert!(matches!(e.status(), 400 | 426), "{e:?}");
            assert_eq!(
                req.accept_response_with(subprotocol, None, &[]),
                Err(e.clone())
            );
            let (code, _, _) = parse_response(&e.to_response());
            assert_eq!(code, e.status());
        }
    }
});
