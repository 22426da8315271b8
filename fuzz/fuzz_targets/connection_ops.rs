//! The whole `Connection` state machine, either role, driven by an arbitrary sequence of API
//! calls interleaved with arbitrary bytes, next to a peer that sends real traffic.
//!
//! Input: a role byte (bit 0: client), the config (`wsduplex_fuzz::config`; deflate on in
//! some runs), the peer's fragment size byte, then operations until the input ends: a byte
//! `op % 18` and its arguments (`len8`: a length byte and that many bytes; `len16`: two
//! length bytes, low first, and that many bytes):
//!
//! | op | call | arguments |
//! |---|---|---|
//! | 0 | `receive` arbitrary bytes | len16 |
//! | 1 | `receive` one frame, masked as the role expects (first byte as given) | b0, len16 |
//! | 2 | `receive` one frame masked the wrong way | b0, len8 |
//! | 3 | peer `send_text` (lossy UTF-8) | len16 |
//! | 4 | peer `send_binary` | len16 |
//! | 5 | peer `send_ping` | len8 |
//! | 6 | peer `close` | code (2 bytes), len8 |
//! | 7 | deliver up to n of the peer's bytes with `receive` (0: all) | n (2 bytes) |
//! | 8 | the same through `receive_buffer` + `receive_buffered` | n (2 bytes) |
//! | 9 | `receive_eof` | |
//! | 10 | `send_text` (lossy UTF-8) | len16 |
//! | 11 | `send_binary`, or `send(Message::Binary)` if the first byte is odd | len16 |
//! | 12 | `send_ping` (may be over 125) | len8 |
//! | 13 | `send_pong` | len8 |
//! | 14 | `close(code, reason)`; code 0: `send(Message::Close(None))` | code (2 bytes), len8 |
//! | 15 | `poll_transmit`: write up to n bytes to the peer (0: all) | n (2 bytes) |
//! | 16 | `poll_event` | |
//! | 17 | `shrink_buffers` on both | |
//!
//! Besides the `Harness` checks: while only the peer's real traffic came in (ops 0-2 never
//! ran), the connection receives exactly the data messages the peer sent, and fails only on
//! its size limits or an early end of stream.
#![no_main]

use arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;
use proto::{CloseCode, Message, ProtocolError, Role, State};
use std::collections::VecDeque;
use wsduplex_fuzz::{blob, blob16, blob8, byte, config, raw_frame, u16le, Command, Harness};

struct Run {
    h: Harness,
    role: Role,
    /// Data messages the peer sent that the connection has not delivered yet.
    peer_sent: VecDeque<Message>,
    /// Bytes the peer wrote that were not delivered yet.
    peer_out: Vec<u8>,
    /// Anything but the peer's own bytes came in: the two ends need not agree any more.
    injected: bool,
}

impl Run {
    fn key(&self, right: bool) -> Option<[u8; 4]> {
        (matches!(self.role, Role::Server) == right).then_some([0x37, 0xfa, 0x21, 0x3d])
    }

    fn peer_send(&mut self, m: Message) {
        let data = m.is_data();
        let r = self.h.checker.peer.send(m.clone());
        wsduplex_fuzz::trace!("peer sends {m:?}: {r:?}");
        match r {
            Ok(()) if data => self.peer_sent.push_back(m),
            Ok(()) => {}
            Err(proto::Error::Usage(_)) => {}
            Err(e) => panic!("the peer failed: {e:?}"),
        }
        self.collect_peer();
    }

    fn collect_peer(&mut self) {
        if let Some(tx) = self.h.checker.peer.poll_transmit() {
            use bytes::Buf;
            let b = tx.copy_to_bytes(tx.remaining());
            self.peer_out.extend_from_slice(&b);
        }
    }

    fn deliver(&mut self, n: usize, buffered: bool) {
        self.collect_peer();
        let n = if n == 0 {
            self.peer_out.len()
        } else {
            n.min(self.peer_out.len())
        };
        let piece: Vec<u8> = self.peer_out.drain(..n).collect();
        wsduplex_fuzz::trace!("deliver {n} of the peer's bytes");
        let _ = if buffered {
            self.h.receive_buffered(&piece)
        } else {
            self.h.receive(&piece)
        };
        self.check_failure();
    }

    fn check_failure(&self) {
        if let State::Failed(e) = self.h.conn.state() {
            if !self.injected {
                assert!(
                    matches!(
                        e,
                        ProtocolError::FrameTooBig { .. }
                            | ProtocolError::MessageTooBig { .. }
                            | ProtocolError::UnexpectedEof
                    ),
                    "failed on the peer's valid traffic: {e:?}"
                );
            }
        }
    }

    fn poll_event(&mut self) -> Option<Message> {
        let ev = self.h.poll_event()?;
        if ev.is_data() && !self.injected {
            let want = self
                .peer_sent
                .pop_front()
                .expect("a message the peer never sent");
            assert!(ev == want, "received {ev:?}, the peer sent {want:?}");
        }
        self.check_failure();
        Some(ev)
    }
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let role = if byte(&mut u) & 1 == 1 {
        Role::Client
    } else {
        Role::Server
    };
    let config = config(&mut u);
    let mut run = Run {
        h: Harness::new(role, config),
        role,
        peer_sent: VecDeque::new(),
        peer_out: Vec::new(),
        injected: false,
    };
    let peer_fragment = [None, Some(1), Some(3), Some(100)][usize::from(byte(&mut u) & 3)];
    {
        let mut c = run
            .h
            .checker
            .peer
            .config()
            .clone()
            .fragment_size(peer_fragment);
        c.compression_threshold = 0;
        let deflate = c.deflate;
        run.h.checker.peer = proto::Connection::new(wsduplex_fuzz::other(role), c);
        debug_assert_eq!(deflate, run.h.conn.config().deflate);
    }
    let mut eof = false;
    while !u.is_empty() {
        let op = byte(&mut u) % 18;
        match op {
            0 => {
                run.injected = true;
                let b = blob16(&mut u);
                let _ = run.h.receive(b);
            }
            1 | 2 => {
                run.injected = true;
                let right = op == 1;
                let b0 = byte(&mut u);
                let payload = if right { blob16(&mut u) } else { blob8(&mut u) };
                let frame = raw_frame(b0, run.key(right), payload);
                let _ = run.h.receive(&frame);
            }
            3 => {
                let t = String::from_utf8_lossy(blob16(&mut u)).into_owned();
                run.peer_send(Message::text(t));
            }
            4 => {
                let b = blob16(&mut u).to_vec();
                run.peer_send(Message::binary(b));
            }
            5 => {
                let n = usize::from(byte(&mut u) % 126);
                let b = blob(&mut u, n).to_vec();
                run.peer_send(Message::Ping(b.into()));
            }
            6 => {
                let code = u16le(&mut u);
                let reason = String::from_utf8_lossy(blob8(&mut u)).into_owned();
                let r = run.h.checker.peer.close(CloseCode::new(code), &reason);
                wsduplex_fuzz::trace!("peer closes with {code}: {r:?}");
                assert!(!matches!(r, Err(proto::Error::Protocol(_))), "{r:?}");
                run.collect_peer();
            }
            7 | 8 => {
                let buffered = op == 8;
                let n = usize::from(u16le(&mut u));
                run.deliver(n, buffered);
            }
            9 => {
                eof = true;
                let _ = run.h.receive_eof();
            }
            10 => {
                let t = String::from_utf8_lossy(blob16(&mut u)).into_owned();
                let _ = run.h.command(Command::Text(&t));
            }
            11 => {
                let b = blob16(&mut u);
                let cmd = if b.first().is_some_and(|x| x & 1 == 1) {
                    Command::Message(Message::binary(b.to_vec()))
                } else {
                    Command::Binary(b)
                };
                let _ = run.h.command(cmd);
            }
            12 => {
                let b = blob8(&mut u);
                let _ = run.h.command(Command::Ping(b));
            }
            13 => {
                let b = blob8(&mut u);
                let _ = run.h.command(Command::Pong(b));
            }
            14 => {
                let code = u16le(&mut u);
                let reason = String::from_utf8_lossy(blob8(&mut u)).into_owned();
                let cmd = if code == 0 {
                    Command::CloseEmpty
                } else {
                    Command::Close(code, &reason)
                };
                let _ = run.h.command(cmd);
            }
            15 => {
                let n = usize::from(u16le(&mut u));
                run.h.transmit(if n == 0 { usize::MAX } else { n });
                run.collect_peer();
            }
            16 => {
                run.poll_event();
            }
            _ => {
                run.h.conn.shrink_buffers();
                run.h.checker.peer.shrink_buffers();
            }
        }
    }
    // The end: everything written both ways, every event taken.
    run.h.transmit(usize::MAX);
    run.collect_peer();
    run.deliver(0, false);
    while run.poll_event().is_some() {}
    run.h.finish();
    if !run.injected && !eof && !matches!(run.h.conn.state(), State::Failed(_)) {
        assert!(
            run.peer_sent.is_empty(),
            "{} messages the peer sent never arrived",
            run.peer_sent.len()
        );
    }
});
