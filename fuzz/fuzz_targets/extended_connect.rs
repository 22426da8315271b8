//! RFC 8441's extended CONNECT as an HTTP/2 server hands it over: a request head the `h2`
//! crate (or hyper) built from HPACK — a method, a target, the `:protocol` pseudo-header
//! and any fields `http` accepts — through `ServerConfig::upgrade_extended_connect`, under a
//! permessage-deflate policy and a subprotocol list from the first bytes.
//!
//! The input after the policy byte is text, a line each: the `:protocol` (`-` for none),
//! the method, the target (`/path?query`), then `name: value` fields (lines `http` refuses
//! are dropped, as h2 would reset their stream).
//!
//! Checks: an answer is `200` with no connection-specific field, no
//! `Sec-WebSocket-Accept` unless the request carried one valid key, and an extension or
//! subprotocol only if offered, and the same agreement as the HTTP/1.1 upgrade it stands
//! for; a refusal is `405` without `:protocol`, `501` for another protocol, otherwise a
//! client error with a reason, never `101` or `200`.
#![no_main]

use arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;
use wsduplex::ServerConfig;
use wsduplex_fuzz::{byte, deflate_policy};

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let mut config = ServerConfig::default();
    config.deflate = Some(deflate_policy(&mut u));
    if byte(&mut u) & 1 == 1 {
        config.subprotocols = vec!["chat".into(), "superchat".into()];
    }
    let text = String::from_utf8_lossy(u.take_rest()).into_owned();
    let mut lines = text.split('\n');
    let protocol = match lines.next() {
        None | Some("-") => None,
        Some(p) => Some(p),
    };
    let Ok(method) = http::Method::from_bytes(lines.next().unwrap_or("CONNECT").as_bytes()) else {
        return;
    };
    let Ok(uri) =
        format!("https://example.com{}", lines.next().unwrap_or("/")).parse::<http::Uri>()
    else {
        return;
    };
    let mut request = http::Request::new(());
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.version_mut() = http::Version::HTTP_2;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(name.trim().as_bytes()),
            http::HeaderValue::from_bytes(value.trim().as_bytes()),
        ) else {
            continue;
        };
        request.headers_mut().append(name, value);
    }
    let keys: Vec<_> = request
        .headers()
        .get_all("sec-websocket-key")
        .iter()
        .collect();
    let one_valid_key = keys.len() == 1 && {
        use base64::Engine as _;
        let mut out = [0u8; 18];
        let decoded = base64::engine::general_purpose::STANDARD
            .decode_slice(keys[0].as_bytes().trim_ascii(), &mut out);
        matches!(decoded, Ok(16))
    };

    match now(config.upgrade_extended_connect(&request, protocol, None, None)) {
        Ok(upgrade) => {
            let response = &upgrade.response;
            assert_eq!(response.status(), 200);
            let headers = response.headers();
            for name in ["connection", "upgrade", "keep-alive", "transfer-encoding"] {
                assert!(!headers.contains_key(name), "{name} in an HTTP/2 answer");
            }
            assert_eq!(
                headers.contains_key("sec-websocket-accept"),
                one_valid_key,
                "an accept only for a key the client sent"
            );
            let offered = |name: &str| request.headers().contains_key(name);
            if headers.contains_key("sec-websocket-extensions") {
                assert!(offered("sec-websocket-extensions"));
            }
            if let Some(p) = headers.get("sec-websocket-protocol") {
                assert!(offered("sec-websocket-protocol"));
                assert!(config
                    .subprotocols
                    .iter()
                    .any(|s| s.as_bytes() == p.as_bytes()));
            }
            // The HTTP/1.1 upgrade it stands for agrees to the same.
            let mut h1 = http::Request::new(());
            *h1.uri_mut() = request.uri().clone();
            *h1.headers_mut() = request.headers().clone();
            let h1_headers = h1.headers_mut();
            h1_headers.insert("upgrade", http::HeaderValue::from_static("websocket"));
            h1_headers.insert("connection", http::HeaderValue::from_static("Upgrade"));
            if !one_valid_key {
                let key = http::HeaderValue::from_static("dGhlIHNhbXBsZSBub25jZQ==");
                h1_headers.insert("sec-websocket-key", key);
            }
            let over_h1 = now(config.upgrade_http(&h1, None, None)).expect("the HTTP/1.1 upgrade it stands for is accepted too");
            for name in ["sec-websocket-extensions", "sec-websocket-protocol"] {
                assert_eq!(
                    over_h1.response.headers().get(name),
                    headers.get(name),
                    "{name}"
                );
            }
        }
        Err(refusal) => {
            let status = refusal.response.status().as_u16();
            match protocol {
                None => assert_eq!(status, 405),
                Some(p) if !p.eq_ignore_ascii_case("websocket") => assert_eq!(status, 501),
                Some(_) => assert!((400..500).contains(&status), "status {status}"),
            }
            assert!(refusal.body.ends_with('\n') && refusal.body.len() > 1);
        }
    }
});

/// No authentication hook is configured here, so the front door's future is ready at once.
fn now<T>(f: impl std::future::Future<Output = T>) -> T {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match std::pin::pin!(f).poll(&mut cx) {
        std::task::Poll::Ready(v) => v,
        std::task::Poll::Pending => unreachable!("no hook, nothing to wait for"),
    }
}
