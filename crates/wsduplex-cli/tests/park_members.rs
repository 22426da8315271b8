//! Idle chat members parked without a task (`serve --park-idle`), against the real
//! `wsduplex serve`: the rooms write their messages to them while parked, presence and
//! bursts wake them, they answer at once when their client speaks, get their keepalive
//! pings, leave their rooms when their client goes, and the stop signal closes them with
//! 1001.

mod common;

use common::{eventually, http, metric_of, Server, Ws, CLOSE, PING, PONG, TEXT};
use std::net::SocketAddr;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(20);

fn wait_parked(addr: SocketAddr, n: u64) {
    eventually(&format!("{n} connections parked"), LIMIT, || {
        metric_of(addr, "wsduplex_parked_connections") == n
    });
}

fn json(payload: &[u8]) -> serde_json::Value {
    serde_json::from_slice(payload).expect("an event is JSON")
}

/// The next event that is not a keepalive or presence.
fn next_event(ws: &mut Ws) -> serde_json::Value {
    loop {
        let f = ws.read_frame();
        assert_eq!(f.opcode, TEXT, "{f:?}");
        let event = json(&f.payload);
        if event["type"] != "joined" && event["type"] != "left" {
            return event;
        }
    }
}

/// The next event, a presence one: its type and name.
fn presence(ws: &mut Ws) -> (String, String) {
    let event = json(&ws.read_frame().payload);
    let field = |k: &str| event[k].as_str().unwrap_or_default().to_string();
    (field("type"), field("name"))
}

fn is(kind: &str, name: &str) -> (String, String) {
    (kind.to_string(), name.to_string())
}

/// A member of `room`, past its welcome.
fn join(addr: SocketAddr, room: &str, name: &str) -> Ws {
    let mut ws = Ws::connect(addr, &format!("/chat/{room}?name={name}"));
    assert_eq!(next_event(&mut ws)["type"], "welcome");
    ws
}

fn say(ws: &mut Ws, text: &str) {
    ws.send(
        TEXT,
        format!(r#"{{"type":"message","text":"{text}"}}"#).as_bytes(),
    );
}

/// `POST /api/rooms/ROOM/messages` with `--api-token t`; the message's id.
fn push(addr: SocketAddr, room: &str, text: &str) -> u64 {
    let body = format!(r#"{{"text":"{text}","name":"api"}}"#);
    let request = format!(
        "POST /api/rooms/{room}/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let response = http(addr, request.as_bytes());
    assert_eq!(response.status, 201, "{}", response.body_str());
    json(response.body_str().as_bytes())["id"].as_u64().unwrap()
}

#[test]
fn parked_members_get_every_event_and_answer_at_once() {
    let server =
        Server::start_on_loopback(&["--park-idle", "50ms", "--workers", "2", "--api-token", "t"]);
    let addr = server.addr;
    let mut members: Vec<Ws> = (0..12).map(|i| join(addr, "r", &format!("m{i}"))).collect();
    wait_parked(addr, 12);

    // Messages spaced out are written to the parked members' sockets by the room itself;
    // a burst is queued and wakes them. Every member gets every one, in order.
    let mut ids = Vec::new();
    for round in 0..3 {
        ids.push(push(addr, "r", &format!("spaced {round}")));
        for ws in &mut members {
            let event = next_event(ws);
            assert_eq!(event["text"], format!("spaced {round}"), "{event}");
        }
        wait_parked(addr, 12);
    }
    for i in 0..50 {
        ids.push(push(addr, "r", &format!("burst {i}")));
    }
    for ws in &mut members {
        for i in 0..50 {
            let event = next_event(ws);
            assert_eq!(event["text"], format!("burst {i}"), "{event}");
            assert_eq!(event["id"].as_u64(), Some(ids[3 + i]));
        }
    }
    wait_parked(addr, 12);

    // A member speaks while parked: its message reaches everyone, itself included.
    say(&mut members[3], "from a parked member");
    for ws in &mut members {
        assert_eq!(next_event(ws)["text"], "from a parked member");
    }
    // Presence wakes them too: everyone hears of a newcomer, then of a member that left.
    let newcomer = join(addr, "r", "late");
    for ws in &mut members {
        assert_eq!(presence(ws), is("joined", "late"));
    }
    drop(newcomer);
    for ws in &mut members {
        assert_eq!(presence(ws), is("left", "late"));
    }
    wait_parked(addr, 12);

    // A parked member whose client vanishes leaves the room.
    drop(members.pop());
    for ws in &mut members {
        assert_eq!(presence(ws), is("left", "m11"));
    }
    wait_parked(addr, 11);
    // One closes properly while parked: the closing handshake, then it is gone.
    let mut ws = members.pop().unwrap();
    ws.send_close(1000, "bye");
    assert_eq!(ws.read_frame().close().0, Some(1000));
    wait_parked(addr, 10);
    server.stop();
}

#[test]
fn a_parked_member_gets_its_keepalive_pings() {
    let server = Server::start_on_loopback(&[
        "--park-idle",
        "50ms",
        "--ping-interval",
        "400ms",
        "--ping-timeout",
        "10s",
    ]);
    let addr = server.addr;
    let mut ws = join(addr, "pings", "a");
    for round in 0..3 {
        wait_parked(addr, 1);
        let ping = ws.read_frame();
        assert_eq!(ping.opcode, PING, "round {round}: {ping:?}");
        ws.send(PONG, &ping.payload);
    }
    say(&mut ws, "after the pings");
    assert_eq!(next_event(&mut ws)["text"], "after the pings");
    server.stop();
}

#[test]
fn the_stop_signal_closes_parked_members_with_1001() {
    let server = Server::start_on_loopback(&["--park-idle", "50ms"]);
    let addr = server.addr;
    let mut members: Vec<Ws> = (0..10).map(|i| join(addr, "s", &format!("m{i}"))).collect();
    wait_parked(addr, 10);
    common::wait_until_caught(server.pid(), 15);
    server.signal("TERM");
    for ws in &mut members {
        let close = loop {
            let f = ws.read_frame();
            if f.opcode != TEXT {
                break f;
            }
        };
        assert_eq!(close.opcode, CLOSE);
        assert_eq!(close.close().0, Some(1001));
        ws.send_close(1001, "");
    }
    let exit = server.wait();
    assert!(exit.status.success(), "{exit:?}");
}
