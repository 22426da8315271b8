//! Idle `/echo` connections parked without a task (`serve --park-idle`), against the real
//! `wsduplex serve`: they answer at once when their client speaks, close when it leaves,
//! get their keepalive pings on time, and the stop signal closes them with 1001.

mod common;

use common::{eventually, metric_of, Server, Ws, BINARY, CLOSE, PING, PONG, TEXT};
use std::net::SocketAddr;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(20);

fn wait_parked(addr: SocketAddr, n: u64) {
    eventually(&format!("{n} connections parked"), LIMIT, || {
        metric_of(addr, "wsduplex_parked_connections") == n
    });
}

fn echo(ws: &mut Ws, opcode: u8, payload: &[u8]) {
    ws.send(opcode, payload);
    let f = ws.read_frame();
    assert_eq!((f.opcode, f.payload.len()), (opcode, payload.len()));
    assert!(f.payload == payload, "the echo differs");
}

/// The closing handshake from the client's side (so that stopping the server does not wait
/// out its close timeout for a client that does not read).
fn bye(mut ws: Ws) {
    ws.send_close(1000, "");
    assert_eq!(ws.read_frame().close().0, Some(1000));
}

#[test]
fn parked_connections_answer_at_once_and_park_again() {
    let server = Server::start_on_loopback(&["--park-idle", "50ms", "--workers", "2"]);
    let addr = server.addr;
    let mut clients: Vec<Ws> = (0..20).map(|_| Ws::connect(addr, "/echo")).collect();
    for (i, ws) in clients.iter_mut().enumerate() {
        echo(ws, TEXT, format!("hello {i}").as_bytes());
    }
    wait_parked(addr, 20);
    // Each one speaks while parked: the answer comes from a task given back to it.
    for (i, ws) in clients.iter_mut().enumerate() {
        echo(ws, TEXT, format!("again {i}").as_bytes());
    }
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    echo(&mut clients[0], BINARY, &big);
    // A ping is answered too.
    clients[1].send(PING, b"are you there");
    let pong = clients[1].read_frame();
    assert_eq!(
        (pong.opcode, &pong.payload[..]),
        (PONG, &b"are you there"[..])
    );
    wait_parked(addr, 20);

    // A parked connection closed by its client: the closing handshake, then it is gone.
    let mut ws = clients.pop().unwrap();
    ws.send_close(1000, "bye");
    let close = ws.read_frame();
    assert_eq!(close.close().0, Some(1000));
    assert!(
        ws.try_read_frame().is_none(),
        "the server closes TCP after the handshake"
    );
    wait_parked(addr, 19);
    // A parked connection whose client vanishes without a word.
    drop(clients.pop());
    wait_parked(addr, 18);
    for mut ws in clients {
        echo(&mut ws, TEXT, b"still here");
        bye(ws);
    }
    wait_parked(addr, 0);
    server.stop();
}

#[test]
fn a_parked_connection_gets_its_keepalive_pings_on_time() {
    let server = Server::start_on_loopback(&[
        "--park-idle",
        "50ms",
        "--ping-interval",
        "400ms",
        "--ping-timeout",
        "10s",
    ]);
    let addr = server.addr;
    let mut ws = Ws::connect(addr, "/echo");
    for round in 0..3 {
        // Parked between pings (a sweep or two after the last one), then woken for the next.
        wait_parked(addr, 1);
        let ping = ws.read_frame();
        assert_eq!(ping.opcode, PING, "round {round}: {ping:?}");
        ws.send(PONG, &ping.payload);
    }
    echo(&mut ws, TEXT, b"after the pings");
    bye(ws);
    server.stop();
}

#[test]
fn the_stop_signal_closes_parked_connections_with_1001() {
    let server = Server::start_on_loopback(&["--park-idle", "50ms"]);
    let addr = server.addr;
    let mut clients: Vec<Ws> = (0..10).map(|_| Ws::connect(addr, "/echo")).collect();
    wait_parked(addr, 10);
    common::wait_until_caught(server.pid(), 15);
    server.signal("TERM");
    for ws in &mut clients {
        let close = ws.read_frame();
        assert_eq!(close.opcode, CLOSE);
        assert_eq!(close.close().0, Some(1001));
        ws.send_close(1001, "");
    }
    let exit = server.wait();
    assert!(exit.status.success(), "{exit:?}");
}
