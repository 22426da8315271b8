//! Connection limits, the Origin allow-list, `/healthz` and `/metrics`, against the real
//! `wsduplex serve`.

mod common;

use common::{connect, eventually, get, http, metric, read_head, upgrade_request, Server};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Opens a WebSocket to `/echo` with `extra` header lines; returns the status and the
/// stream (kept open by the caller to hold the connection).
fn upgrade(addr: SocketAddr, extra: &str) -> (u16, TcpStream) {
    let mut s = connect(addr);
    s.write_all(upgrade_request(addr, "/echo", extra).as_bytes())
        .unwrap();
    let (head, _) = read_head(&mut s);
    (head[9..12].parse().unwrap(), s)
}

#[test]
fn per_client_limit_answers_429_and_frees_the_slot_on_close() {
    let server = Server::start_on_loopback(&["--max-connections-per-client", "2"]);
    let addr = server.addr;
    let (s1, a) = upgrade(addr, "");
    let (s2, b) = upgrade(addr, "");
    assert_eq!((s1, s2), (101, 101));
    let r = http(addr, upgrade_request(addr, "/echo", "").as_bytes());
    assert_eq!(r.status, 429, "{r:?}");
    assert!(r.body_str().contains("too many connections"), "{r:?}");
    assert_eq!(r.header("retry-after"), Some("5"));
    // Plain HTTP counts too (it is a connection): also refused.
    assert_eq!(get(addr, "/healthz").status, 429);
    drop(a);
    eventually(
        "a slot freed by a closed connection",
        Duration::from_secs(10),
        || upgrade(addr, "").0 == 101,
    );
    // Holders closed first: an unanswered 1001 would make stop wait for the close timeout.
    drop(b);
    server.stop();
}

#[test]
fn per_client_limit_uses_the_address_a_trusted_proxy_reports() {
    let server = Server::start_on_loopback(&[
        "--max-connections-per-client",
        "1",
        "--trust-proxy",
        "127.0.0.1/32",
    ]);
    let addr = server.addr;
    let (s, a) = upgrade(addr, "X-Forwarded-For: 198.51.100.1\r\n");
    assert_eq!(s, 101);
    // Another client behind the same proxy: its own count.
    let (s, b) = upgrade(addr, "X-Forwarded-For: 198.51.100.2\r\n");
    assert_eq!(s, 101);
    let r = http(
        addr,
        upgrade_request(addr, "/echo", "X-Forwarded-For: 198.51.100.1\r\n").as_bytes(),
    );
    assert_eq!(r.status, 429);
    drop((a, b));
    server.stop();

    // Not trusted: the headers are ignored, the peer (127.0.0.1) is the client.
    let server = Server::start_on_loopback(&["--max-connections-per-client", "1"]);
    let addr = server.addr;
    let (s, a) = upgrade(addr, "X-Forwarded-For: 198.51.100.1\r\n");
    assert_eq!(s, 101);
    let r = http(
        addr,
        upgrade_request(addr, "/echo", "X-Forwarded-For: 198.51.100.2\r\n").as_bytes(),
    );
    assert_eq!(r.status, 429);
    drop(a);
    server.stop();
}

#[test]
fn total_limit_answers_503_at_once() {
    // A handshake timeout far past any wait here: a refusal that waited for the request (or
    // for that timeout) cannot pass for one made at accept.
    let server =
        Server::start_on_loopback(&["--max-connections", "2", "--handshake-timeout", "60s"]);
    let addr = server.addr;
    // Every refusal, counted here to compare with the server's count.
    let mut refused = 0;
    // Two held connections (retried: a connection that just ended may still hold a slot).
    let mut held = Vec::new();
    while held.len() < 2 {
        match upgrade(addr, "") {
            (101, s) => held.push(s),
            (503, _) => refused += 1,
            (status, _) => panic!("{status}"),
        }
    }
    // At once: a client that sends nothing gets the refusal and the end of the connection
    // (its request is never waited for, never read).
    let mut s = connect(addr);
    let mut answer = Vec::new();
    s.read_to_end(&mut answer)
        .expect("the refusal without a request, then the end");
    refused += 1;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 503 "), "{answer}");
    assert!(answer.contains("connection limit of 2"), "{answer}");
    // With a request: the same answer, whatever was asked.
    let r = get(addr, "/");
    refused += 1;
    assert_eq!(r.status, 503, "{r:?}");
    assert!(r.body_str().contains("connection limit of 2"), "{r:?}");
    assert_eq!(r.header("retry-after"), Some("5"));
    drop(held);
    let mut metrics = String::new();
    eventually("slots freed", Duration::from_secs(10), || {
        let r = get(addr, "/metrics");
        if r.status == 503 {
            refused += 1;
        }
        metrics = r.body_str();
        r.status == 200
    });
    let name = r#"wsduplex_connections_refused_total{reason="max_connections"}"#;
    assert_eq!(metric(&metrics, name), refused, "{metrics}");
    server.stop();
}

#[test]
fn origin_allow_list() {
    let server = Server::start_on_loopback(&["--allow-origin", "https://good.example"]);
    let addr = server.addr;
    let (s, a) = upgrade(addr, "Origin: https://good.example\r\n");
    assert_eq!(s, 101);
    // Non-browser clients send no Origin: not affected.
    let (s, b) = upgrade(addr, "");
    assert_eq!(s, 101);
    let r = http(
        addr,
        upgrade_request(addr, "/chat/x?name=a", "Origin: https://evil.example\r\n").as_bytes(),
    );
    assert_eq!(r.status, 403, "{r:?}");
    // A cross-site POST into the long-polling fallback too.
    let r = http(
        addr,
        format!(
            "POST /poll/x?name=a HTTP/1.1\r\nHost: {addr}\r\nOrigin: https://evil.example\r\n\r\n"
        )
        .as_bytes(),
    );
    assert_eq!(r.status, 403, "{r:?}");
    // Reading the page is fine from anywhere.
    let r = http(
        addr,
        format!("GET / HTTP/1.1\r\nHost: {addr}\r\nOrigin: https://evil.example\r\n\r\n")
            .as_bytes(),
    );
    assert_eq!(r.status, 200);
    let metrics = get(addr, "/metrics").body_str();
    assert!(
        metrics.contains("wsduplex_connections_refused_total{reason=\"origin\"} 2"),
        "{metrics}"
    );
    drop((a, b));
    server.stop();
}

#[test]
fn healthz_and_metrics() {
    let server = Server::start();
    let addr = server.addr;
    let r = get(addr, "/healthz");
    assert_eq!((r.status, r.body_str().as_str()), (200, "ok\n"));
    let (_, ws) = upgrade(addr, "");
    let r = get(addr, "/metrics");
    assert_eq!(r.status, 200);
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    // The WebSocket and the request asking; earlier requests end, and the upgrade is
    // counted, just after their answers.
    let accepted = r#"wsduplex_handshakes_total{outcome="accepted"}"#;
    eventually(
        "the upgrade counted, two connections open",
        Duration::from_secs(10),
        || {
            let body = get(addr, "/metrics").body_str();
            metric(&body, "wsduplex_connections_open") == 2 && metric(&body, accepted) == 1
        },
    );
    let body = get(addr, "/metrics").body_str();
    assert!(
        body.contains("# TYPE wsduplex_hub_sessions gauge"),
        "{body}"
    );
    drop(ws);
    server.stop();
}

/// Messages and their bytes both ways, handshakes by outcome, and close codes sent and
/// received, counted on the worker threads (two here) and added up by `/metrics`.
#[test]
fn metrics_count_messages_bytes_handshakes_and_close_codes() {
    let server = Server::start_on_loopback(&["--workers", "2"]);
    let addr = server.addr;
    let mut ws = common::Ws::connect(addr, "/echo");
    ws.send(common::TEXT, b"hello");
    assert_eq!(ws.read_message(), (common::TEXT, b"hello".to_vec()));
    ws.send(common::BINARY, &[7; 100]);
    assert_eq!(ws.read_message(), (common::BINARY, vec![7; 100]));
    ws.send_close(4000, "");
    assert_eq!(ws.expect_close().0, Some(4000));
    ws.expect_eof();
    // A protocol error: the server sends 1002 and receives no close.
    let mut bad = common::Ws::connect(addr, "/echo");
    bad.send_raw(&common::frame(true, 0, common::TEXT, b"unmasked", None));
    assert_eq!(bad.expect_close().0, Some(1002));
    bad.expect_eof();
    // A refused handshake.
    let r = http(
        addr,
        upgrade_request(addr, "/echo", "")
            .replace("Version: 13", "Version: 8")
            .as_bytes(),
    );
    assert_eq!(r.status, 426);
    let want = [
        (r#"wsduplex_messages_total{direction="in"}"#, 2),
        (r#"wsduplex_messages_total{direction="out"}"#, 2),
        (r#"wsduplex_message_bytes_total{direction="in"}"#, 105),
        (r#"wsduplex_message_bytes_total{direction="out"}"#, 105),
        (r#"wsduplex_handshakes_total{outcome="accepted"}"#, 2),
        (r#"wsduplex_handshakes_total{outcome="refused"}"#, 1),
        (
            r#"wsduplex_close_codes_total{direction="sent",code="other"}"#,
            1,
        ),
        (
            r#"wsduplex_close_codes_total{direction="received",code="other"}"#,
            1,
        ),
        (
            r#"wsduplex_close_codes_total{direction="sent",code="1002"}"#,
            1,
        ),
        (
            r#"wsduplex_close_codes_total{direction="received",code="1006"}"#,
            1,
        ),
        (r#"wsduplex_queue_overflows_total{action="dropped"}"#, 0),
    ];
    // A connection's close codes are counted once its task has closed TCP.
    eventually("the counts", Duration::from_secs(10), || {
        let body = get(addr, "/metrics").body_str();
        want.iter().all(|&(name, n)| metric(&body, name) == n)
    });
    server.stop();
}

#[test]
fn a_second_server_on_a_busy_port_fails_instead_of_sharing_it() {
    let server = Server::start();
    let addr = server.addr.to_string();
    let out = common::run(&["serve", "--listen", &addr], b"");
    let err = out.assert_one_line_error();
    assert!(err.contains("Address already in use"), "{err}");
    server.stop();
}

#[test]
fn auth_token_in_a_header_a_query_parameter_or_a_cookie() {
    let server = Server::start_on_loopback(&["--auth-token", "s3cret"]);
    let addr = server.addr;
    // Without, or with a wrong one: 401 and a challenge.
    for extra in ["", "Authorization: Bearer nope\r\n"] {
        let r = http(addr, upgrade_request(addr, "/echo", extra).as_bytes());
        assert_eq!(r.status, 401, "{r:?}");
        assert!(r.header("www-authenticate").unwrap().starts_with("Bearer"));
    }
    let mut held = Vec::new();
    for (path, extra) in [
        ("/echo", "Authorization: Bearer s3cret\r\n"),
        ("/echo?access_token=s3cret", ""),
        ("/echo", "Cookie: theme=dark; wsduplex_token=s3cret\r\n"),
        ("/chat/r?name=a&access_token=s3cret", ""),
    ] {
        let mut s = connect(addr);
        s.write_all(upgrade_request(addr, path, extra).as_bytes())
            .unwrap();
        let (head, _) = read_head(&mut s);
        assert!(head.starts_with("HTTP/1.1 101"), "{path} {extra}: {head}");
        held.push(s);
    }
    let r = http(addr, upgrade_request(addr, "/chat/r?name=b", "").as_bytes());
    assert_eq!(r.status, 401);
    // Long polling: opening a session needs it; the page and health checks do not.
    let open = |q: &str| {
        http(
            addr,
            format!("POST /poll/r?name=c{q} HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes(),
        )
    };
    assert_eq!(open("").status, 401);
    assert_eq!(open("&access_token=s3cret").status, 200);
    assert_eq!(get(addr, "/").status, 200);
    assert_eq!(get(addr, "/healthz").status, 200);
    drop(held);
    server.stop();
}

#[test]
fn every_log_line_of_a_connection_carries_its_id() {
    use std::collections::BTreeMap;
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let mut child = Command::new(common::BIN)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("WSDUPLEX_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut ready = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut ready)
        .unwrap();
    let addr: SocketAddr = ready.trim().rsplit('/').next().unwrap().parse().unwrap();
    // Connections of each kind, each known by its port, with what its log must say: plain
    // requests, a refused one, and a WebSocket whose end is logged by the task it was
    // handed to (the span must follow it there).
    let mut want: BTreeMap<u16, Vec<&str>> = BTreeMap::new();
    let request = |raw: &[u8]| {
        let mut s = connect(addr);
        s.write_all(raw).unwrap();
        let mut answer = Vec::new();
        s.read_to_end(&mut answer).unwrap();
        let status = String::from_utf8_lossy(&answer[..12]).into_owned();
        (s.local_addr().unwrap().port(), status)
    };
    let get =
        |path: &str| request(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes());
    let (port, status) = get("/nowhere");
    assert_eq!(status, "HTTP/1.1 404");
    want.insert(port, vec!["GET /nowhere"]);
    let (port, status) = get("/healthz");
    assert_eq!(status, "HTTP/1.1 200");
    want.insert(port, vec!["GET /healthz"]);
    let (port, status) = request(b"NOT HTTP\r\n\r\n");
    assert_eq!(status, "HTTP/1.1 400");
    want.insert(port, vec!["request refused"]);
    let mut ws = common::Ws::connect(addr, "/echo");
    ws.send(common::TEXT, b"hello");
    assert_eq!(ws.read_message(), (common::TEXT, b"hello".to_vec()));
    ws.send_raw(&common::frame(true, 0, common::TEXT, b"unmasked", None));
    assert_eq!(ws.expect_close().0, Some(1002));
    ws.expect_eof();
    let port = ws.stream.local_addr().unwrap().port();
    want.insert(port, vec!["GET /echo", "connection ended"]);
    common::send_signal(child.id(), "TERM");
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(common::wait_child(child).success());
    assert!(
        !stderr.contains('\u{1b}'),
        "no colour codes in a pipe: {stderr}"
    );
    // Each line: the connection's span, `conn{id=N peer=127.0.0.1:PORT}`, if it has one.
    let span = |l: &str| -> Option<(u16, String)> {
        let inside = l.split("conn{").nth(1)?.split('}').next()?;
        let id = inside.strip_prefix("id=")?.split(' ').next()?.to_string();
        let port = inside
            .split(" peer=")
            .nth(1)?
            .rsplit(':')
            .next()?
            .parse()
            .ok()?;
        Some((port, id))
    };
    let mut ids: BTreeMap<u16, Vec<String>> = BTreeMap::new();
    let mut lines: BTreeMap<u16, Vec<&str>> = BTreeMap::new();
    for line in stderr.lines() {
        match span(line) {
            Some((port, id)) => {
                assert!(
                    want.contains_key(&port),
                    "not one of ours: {line}\n{stderr}"
                );
                ids.entry(port).or_default().push(id);
                lines.entry(port).or_default().push(line);
            }
            // A line without a span must not be about a connection.
            None => assert!(
                !["GET /", "request", "connection"]
                    .iter()
                    .any(|w| line.contains(w)),
                "a connection's line without its id: {line}\n{stderr}"
            ),
        }
    }
    for (port, said) in &want {
        let got = lines.get(port).map(Vec::as_slice).unwrap_or_default();
        for what in said {
            assert!(
                got.iter().any(|l| l.contains(what)),
                "no {what:?} with the id of :{port}\n{stderr}"
            );
        }
        // One id for every line of a connection...
        let own = &ids[port];
        assert!(own.iter().all(|id| id == &own[0]), "{own:?}\n{stderr}");
    }
    // ... and each connection its own.
    let mut firsts: Vec<&String> = ids.values().map(|v| &v[0]).collect();
    firsts.sort();
    firsts.dedup();
    assert_eq!(firsts.len(), want.len(), "{ids:?}\n{stderr}");
}

#[test]
fn message_and_frame_size_flags() {
    let server =
        Server::start_on_loopback(&["--max-message-size", "1KiB", "--max-frame-size", "600"]);
    let mut ws = common::Ws::connect(server.addr, "/echo");
    ws.send(common::TEXT, &[b'a'; 600]);
    assert_eq!(ws.read_message(), (common::TEXT, vec![b'a'; 600]));
    // One byte over the frame limit: 1009 from the header.
    ws.send(common::TEXT, &[b'a'; 601]);
    assert_eq!(ws.expect_close().0, Some(1009));
    // Frames within the limit that add up past the message limit: 1009 too.
    let mut ws = common::Ws::connect(server.addr, "/echo");
    let mask = Some([1, 2, 3, 4]);
    ws.send_raw(&common::frame(false, 0, common::TEXT, &[b'a'; 600], mask));
    ws.send_raw(&common::frame(false, 0, common::CONT, &[b'a'; 600], mask));
    assert_eq!(ws.expect_close().0, Some(1009));
    server.stop();
    // Three fragments pass, the fourth gets 1009.
    let server = Server::start_on_loopback(&["--max-fragments", "3"]);
    let mut ws = common::Ws::connect(server.addr, "/echo");
    let mask = Some([1, 2, 3, 4]);
    ws.send_raw(&common::frame(false, 0, common::TEXT, b"a", mask));
    ws.send_raw(&common::frame(false, 0, common::CONT, b"b", mask));
    ws.send_raw(&common::frame(true, 0, common::CONT, b"c", mask));
    assert_eq!(ws.read_message(), (common::TEXT, b"abc".to_vec()));
    for op in [common::TEXT, common::CONT, common::CONT, common::CONT] {
        ws.send_raw(&common::frame(false, 0, op, b"x", mask));
    }
    assert_eq!(
        ws.expect_close(),
        (Some(1009), "too many fragments".to_string())
    );
    server.stop();
    // A bad size is refused by the command line.
    let out = common::run(&["serve", "--max-message-size", "lots"], b"");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

/// The next chat event of `kind` (a JSON text message), skipping presence and the like.
fn next_event(ws: &mut common::Ws, kind: &str) -> String {
    loop {
        let (opcode, payload) = ws.read_message();
        assert_eq!(opcode, common::TEXT);
        let text = String::from_utf8(payload).unwrap();
        if text.contains(&format!(r#""type":"{kind}""#)) {
            return text;
        }
    }
}

/// With `--auth-token`, the cookie a browser sends by itself only works from the server's
/// own origin: a page elsewhere is refused with 403 (and counted as an origin refusal and a
/// refused handshake), while the same-origin page chats through /chat/ROOM.
#[test]
fn a_cookie_from_another_origin_is_refused_and_the_same_origin_chats() {
    let server = Server::start_on_loopback(&["--auth-token", "s3cret"]);
    let addr = server.addr;
    let cookie = "Cookie: theme=dark; wsduplex_token=s3cret\r\n";
    for path in ["/chat/home?name=eve", "/echo"] {
        let evil = format!("{cookie}Origin: http://evil.example\r\n");
        let r = http(addr, upgrade_request(addr, path, &evil).as_bytes());
        assert_eq!(r.status, 403, "{path}: {r:?}");
        assert_eq!(r.body_str(), "origin not allowed\n");
    }
    let own = format!("{cookie}Origin: http://{addr}\r\n");
    let (mut alice, _) =
        common::Ws::connect_with(addr, &upgrade_request(addr, "/chat/home?name=alice", &own));
    let welcome = next_event(&mut alice, "welcome");
    assert!(welcome.contains(r#""members":["alice"]"#), "{welcome}");
    let (mut bob, _) =
        common::Ws::connect_with(addr, &upgrade_request(addr, "/chat/home?name=bob", &own));
    next_event(&mut bob, "welcome");
    bob.send(common::TEXT, br#"{"type":"message","text":"same origin"}"#);
    let m = next_event(&mut alice, "message");
    assert!(
        m.contains(r#""name":"bob""#) && m.contains(r#""text":"same origin""#),
        "{m}"
    );
    let want = [
        (r#"wsduplex_connections_refused_total{reason="origin"}"#, 2),
        (r#"wsduplex_handshakes_total{outcome="refused"}"#, 2),
        (r#"wsduplex_handshakes_total{outcome="accepted"}"#, 2),
    ];
    // An accepted handshake is counted just after its 101 is written.
    eventually(
        "the refusals and handshakes counted",
        Duration::from_secs(10),
        || {
            let body = get(addr, "/metrics").body_str();
            want.iter().all(|&(name, n)| metric(&body, name) == n)
        },
    );
    drop((alice, bob));
    server.stop();
}

/// `--dangerous-allow-any-origin` opts out of the same-origin rule for cookies.
#[test]
fn the_same_origin_rule_for_cookies_can_be_switched_off() {
    let server =
        Server::start_on_loopback(&["--auth-token", "s3cret", "--dangerous-allow-any-origin"]);
    let addr = server.addr;
    let evil = "Cookie: wsduplex_token=s3cret\r\nOrigin: http://evil.example\r\n";
    let ws = common::Ws::connect_with(addr, &upgrade_request(addr, "/chat/home?name=eve", evil));
    drop(ws);
    server.stop();
}

/// Every upgrade request counts once in `wsduplex_handshakes_total`, whichever path and
/// whichever check refuses it: a chat join without its token (refused by the hub's route)
/// as much as an echo one.
#[test]
fn upgrades_refused_by_auth_count_as_refused_handshakes_on_every_path() {
    let server = Server::start_on_loopback(&["--auth-token", "s3cret"]);
    let addr = server.addr;
    for path in [
        "/chat/r?name=a",
        "/echo",
        "/chat/r?name=b&access_token=nope",
    ] {
        let r = http(addr, upgrade_request(addr, path, "").as_bytes());
        assert_eq!(r.status, 401, "{path}: {r:?}");
    }
    let ws = common::Ws::connect(addr, "/chat/r?name=c&access_token=s3cret");
    let refused = r#"wsduplex_handshakes_total{outcome="refused"}"#;
    let accepted = r#"wsduplex_handshakes_total{outcome="accepted"}"#;
    eventually("the handshakes counted", Duration::from_secs(10), || {
        let body = get(addr, "/metrics").body_str();
        metric(&body, refused) == 3 && metric(&body, accepted) == 1
    });
    drop(ws);
    server.stop();
}
