//! Deadlines with a simulated clock: keepalive pings and their timeout, the idle timeout, the
//! close timeout. No sleeps: the time is whatever the test passes in.

use bytes::Buf;
use std::time::{Duration, Instant};
use wsduplex_proto::{CloseCode, Config, Connection, Message, Role, State, Timeout, Timeouts};

const S: Duration = Duration::from_secs(1);
const MS: Duration = Duration::from_millis(1);

fn conn(role: Role, f: impl FnOnce(&mut Timeouts)) -> Connection {
    let mut t = Timeouts::default();
    f(&mut t);
    Connection::new(role, Config::default().timeouts(t))
}

fn take_tx(c: &mut Connection) -> Vec<u8> {
    match c.poll_transmit() {
        Some(t) => t.copy_to_bytes(t.remaining()).to_vec(),
        None => Vec::new(),
    }
}

/// Moves what `from` queued to `to`, and returns the events it decoded.
fn pump(from: &mut Connection, to: &mut Connection) -> Vec<Message> {
    let bytes = take_tx(from);
    let _ = to.receive(&bytes);
    std::iter::from_fn(|| to.poll_event()).collect()
}

/// A clock that must not be read.
fn no_clock() -> Instant {
    panic!("the clock was read")
}

mod keepalive {
    use super::*;

    #[test]
    fn pings_go_out_at_the_interval_and_any_answer_keeps_the_peer_alive() {
        let t0 = Instant::now();
        let mut server = conn(Role::Server, |t| {
            t.set_ping_interval(Some(S));
            t.set_ping_timeout(S / 2);
        });
        let mut client = conn(Role::Client, |_| {});
        // The interval starts at the first clock reading.
        assert_eq!(server.poll_timeout(|| t0), Some(t0 + S));
        server.handle_timeout(t0 + S / 2);
        assert!(server.poll_transmit().is_none(), "nothing is due yet");
        for n in 1..=3u32 {
            let at = t0 + S * n;
            server.handle_timeout(at);
            // The exact ping: FIN, opcode 9, unmasked from a server.
            let ping = take_tx(&mut server);
            assert_eq!(ping[..2], [0x89, 18]);
            assert_eq!(&ping[2..], b"wsduplex keepalive");
            // Now the pong deadline comes first.
            assert_eq!(server.poll_timeout(no_clock), Some(at + S / 2));
            client.receive(&ping).unwrap();
            assert!(matches!(client.poll_event(), Some(Message::Ping(_))));
            let events = pump(&mut client, &mut server);
            assert!(matches!(&events[..], [Message::Pong(p)] if &p[..] == b"wsduplex keepalive"));
            assert_eq!(server.poll_timeout(no_clock), Some(at + S));
            assert_eq!(server.timed_out(), None);
        }
    }

    #[test]
    fn a_silent_peer_times_out_after_the_ping_timeout_without_a_close_frame() {
        let t0 = Instant::now();
        let mut server = conn(Role::Server, |t| {
            t.set_ping_interval(Some(S));
            t.set_ping_timeout(S);
        });
        assert_eq!(server.poll_timeout(|| t0), Some(t0 + S));
        server.handle_timeout(t0 + S);
        take_tx(&mut server);
        // The second ping is due at the same time as the first one's answer: the answer wins.
        server.handle_timeout(t0 + 2 * S - MS);
        assert_eq!(server.timed_out(), None);
        server.handle_timeout(t0 + 2 * S);
        assert_eq!(server.timed_out(), Some(Timeout::Keepalive(S)));
        assert!(
            server.poll_transmit().is_none(),
            "no close frame can reach a gone peer"
        );
        assert_eq!(*server.state(), State::Open);
        // Only closing the transport is left, bounded by the close timeout.
        let t1 = t0 + 3 * S;
        assert_eq!(server.poll_timeout(|| t1), Some(t1 + 5 * S));
        server.handle_timeout(t1 + 5 * S);
        assert_eq!(server.timed_out(), Some(Timeout::Close));
        assert_eq!(server.poll_timeout(no_clock), None);
    }

    #[test]
    fn bytes_appended_by_a_driver_count_as_an_answer() {
        let t0 = Instant::now();
        let mut server = conn(Role::Server, |t| {
            t.set_ping_interval(Some(10 * S));
            t.set_ping_timeout(S);
        });
        server.poll_timeout(|| t0);
        server.handle_timeout(t0 + 10 * S);
        take_tx(&mut server);
        assert_eq!(server.poll_timeout(no_clock), Some(t0 + 11 * S));
        // Half a frame: not decodable yet, but proof enough that the peer is there.
        server.receive_buffer().extend_from_slice(&[0x81]);
        server.receive_appended();
        assert_eq!(server.poll_timeout(no_clock), Some(t0 + 20 * S));
        server.handle_timeout(t0 + 11 * S);
        assert_eq!(server.timed_out(), None);
        // Decoding the same bytes again proves nothing new.
        server.handle_timeout(t0 + 20 * S);
        take_tx(&mut server);
        assert!(server.poll_event().is_none());
        server.handle_timeout(t0 + 21 * S);
        assert_eq!(server.timed_out(), Some(Timeout::Keepalive(S)));
    }

    #[test]
    fn no_ping_follows_our_close() {
        let t0 = Instant::now();
        let mut server = conn(Role::Server, |t| t.set_ping_interval(Some(S)));
        server.poll_timeout(|| t0);
        server.close(CloseCode::NORMAL, "").unwrap();
        take_tx(&mut server);
        server.handle_timeout(t0 + S);
        assert!(server.poll_transmit().is_none());
    }
}

mod idle {
    use super::*;

    #[test]
    fn an_idle_connection_closes_with_1001_and_data_pushes_the_deadline_back() {
        let t0 = Instant::now();
        let mut server = conn(Role::Server, |t| t.set_idle(Some(30 * S)));
        let mut client = conn(Role::Client, |_| {});
        assert_eq!(server.poll_timeout(|| t0), Some(t0 + 30 * S));
        // Pings and pongs are not activity.
        client.send_ping(b"").unwrap();
        pump(&mut client, &mut server);
        take_tx(&mut server);
        assert_eq!(server.poll_timeout(no_clock), Some(t0 + 30 * S));
        // A message at 20 s restarts the timeout at the next clock reading.
        client.send_text("still here").unwrap();
        assert_eq!(pump(&mut client, &mut server).len(), 1);
        let t1 = t0 + 20 * S;
        assert_eq!(server.poll_timeout(|| t1), Some(t1 + 30 * S));
        server.handle_timeout(t0 + 30 * S);
        assert!(server.poll_transmit().is_none());
        server.handle_timeout(t1 + 30 * S);
        assert_eq!(*server.state(), State::Closing);
        let events = pump(&mut server, &mut client);
        match &events[..] {
            [Message::Close(Some(f))] => {
                assert_eq!(f.code, CloseCode::GOING_AWAY);
                assert_eq!(f.reason.as_str(), "idle timeout");
            }
            other => panic!("expected the idle close, got {other:?}"),
        }
        // Our close started the close timeout at the same reading.
        assert_eq!(server.poll_timeout(no_clock), Some(t1 + 35 * S));
    }

    #[test]
    fn messages_taken_borrowed_count_as_activity() {
        let t0 = Instant::now();
        let mut server = conn(Role::Server, |t| t.set_idle(Some(S)));
        let mut client = conn(Role::Client, |_| {});
        server.poll_timeout(|| t0);
        client.send_binary(b"x").unwrap();
        let bytes = take_tx(&mut client);
        server.receive_buffer().extend_from_slice(&bytes);
        server.receive_appended();
        assert_eq!(server.receive_with(usize::MAX, |_, _| {}).unwrap(), 1);
        let t1 = t0 + S / 2;
        assert_eq!(server.poll_timeout(|| t1), Some(t1 + S));
    }
}

mod close {
    use super::*;

    #[test]
    fn an_unanswered_close_times_out() {
        let t0 = Instant::now();
        let mut client = conn(Role::Client, |t| t.set_close(2 * S));
        client.close(CloseCode::NORMAL, "bye").unwrap();
        assert_eq!(client.poll_timeout(|| t0), Some(t0 + 2 * S));
        client.handle_timeout(t0 + 2 * S - MS);
        assert_eq!(client.timed_out(), None);
        client.handle_timeout(t0 + 2 * S);
        assert_eq!(client.timed_out(), Some(Timeout::Close));
        assert_eq!(client.poll_timeout(no_clock), None);
    }

    #[test]
    fn the_deadline_also_bounds_closing_the_transport_after_the_handshake() {
        let t0 = Instant::now();
        let mut client = conn(Role::Client, |_| {});
        let mut server = conn(Role::Server, |_| {});
        client.close(CloseCode::NORMAL, "").unwrap();
        assert_eq!(client.poll_timeout(|| t0), Some(t0 + 5 * S));
        pump(&mut client, &mut server);
        pump(&mut server, &mut client);
        assert_eq!(*client.state(), State::Closed);
        // The client waits for the server to close TCP, within what is left.
        assert_eq!(client.poll_timeout(no_clock), Some(t0 + 5 * S));
        // The server answered: its deadline starts when it first waits.
        let t1 = t0 + S;
        assert_eq!(server.poll_timeout(|| t1), Some(t1 + 5 * S));
    }

    #[test]
    fn a_close_that_completes_without_waiting_reads_no_clock() {
        let mut client = conn(Role::Client, |_| {});
        let mut server = conn(Role::Server, |_| {});
        assert_eq!(server.poll_timeout(no_clock), None);
        client.close(CloseCode::NORMAL, "").unwrap();
        pump(&mut client, &mut server);
        pump(&mut server, &mut client);
        assert_eq!(*server.state(), State::Closed);
        assert_eq!(server.timed_out(), None);
    }

    #[test]
    fn a_transport_error_stops_keepalive_and_bounds_the_close() {
        let t0 = Instant::now();
        let mut server = conn(Role::Server, |t| {
            t.set_ping_interval(Some(S));
            t.set_idle(Some(S));
        });
        assert_eq!(server.poll_timeout(|| t0), Some(t0 + S));
        server.transport_error();
        let t1 = t0 + S / 2;
        assert_eq!(server.poll_timeout(|| t1), Some(t1 + 5 * S));
        server.handle_timeout(t1 + S);
        assert!(server.poll_transmit().is_none(), "no ping, no idle close");
        server.handle_timeout(t1 + 5 * S);
        assert_eq!(server.timed_out(), Some(Timeout::Close));
    }

    #[test]
    fn a_protocol_error_starts_the_close_deadline() {
        let t0 = Instant::now();
        let mut server = conn(Role::Server, |_| {});
        // An unmasked frame from a client: 1002.
        assert!(server.receive(&[0x81, 0x01, b'x']).is_err());
        assert_eq!(server.poll_timeout(|| t0), Some(t0 + 5 * S));
    }
}

#[test]
fn timeouts_keep_whole_milliseconds() {
    let mut t = Timeouts::default();
    assert_eq!(t.close(), 5 * S);
    assert_eq!(t.ping_timeout(), 20 * S);
    assert_eq!((t.ping_interval(), t.idle()), (None, None));
    t.set_ping_interval(Some(Duration::from_micros(1500)));
    assert_eq!(t.ping_interval(), Some(2 * MS));
    t.set_idle(Some(Duration::ZERO));
    assert_eq!(t.idle(), Some(MS), "zero is not off");
    t.set_close(Duration::from_secs(u64::MAX));
    assert_eq!(t.close(), Duration::from_millis(u32::MAX.into()));
}
