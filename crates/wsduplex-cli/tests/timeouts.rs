//! The CLI's keepalive, idle timeout and reconnect options, against the real binary.

mod common;

use common::*;

#[test]
fn serve_closes_idle_connections_with_1001() {
    let server = Server::start_with(&["--listen", "127.0.0.1:0", "--idle-timeout", "300ms"]);
    let mut ws = Ws::connect(server.addr, "/echo");
    // Activity keeps it open...
    ws.send(TEXT, b"hello");
    assert_eq!(ws.read_message(), (TEXT, b"hello".to_vec()));
    // ...silence does not.
    assert_eq!(ws.expect_close(), (Some(1001), "idle timeout".to_string()));
    ws.send_close(1001, "");
    ws.expect_eof();
}

#[test]
fn serve_drops_a_client_that_never_answers_pings() {
    let server = Server::start_with(&[
        "--listen",
        "127.0.0.1:0",
        "--ping-interval",
        "100ms",
        "--ping-timeout",
        "200ms",
    ]);
    let mut ws = Ws::connect(server.addr, "/echo");
    // The client reads but never answers: pings arrive, then the server gives up and
    // closes the connection (the read sees EOF).
    let mut pings = 0;
    while let Some(frame) = ws.try_read_frame() {
        assert_eq!(frame.opcode, 0x9, "only pings are expected: {frame:?}");
        pings += 1;
        assert!(pings < 50, "the server never gave up");
    }
    assert!(pings >= 1);
}

#[test]
fn client_reconnects_and_keeps_sending_stdin() {
    let first = Server::start();
    let addr = first.addr;
    let url = first.url("/echo");
    let mut client = Running::spawn(&["client", "--reconnect", &url]);
    client.send_line("one");
    assert_eq!(client.next_line(), "one");
    // The server goes away (closing with 1001) and comes back on the same port.
    first.stop();
    let listen = addr.to_string();
    let _second = Server::start_with(&["--listen", &listen]);
    // Lines typed after the restart reach the new server, at the latest after the backoff.
    let mut echoed = String::new();
    for i in 0..200 {
        client.send_line(&format!("two {i}"));
        echoed = client.next_line();
        if echoed.starts_with("two") {
            break;
        }
    }
    assert!(echoed.starts_with("two"), "got {echoed:?}");
    client.close_stdin();
    let (status, _, stderr) = client.wait();
    assert!(status.success(), "{stderr}");
    assert!(stderr.contains("reconnecting in"), "{stderr}");
}
