//! Delivery to an idle member straight from the publishing task, as uWebSockets' `publish`
//! does: a WebSocket member over plain TCP that waits with nothing to send lends its
//! mailbox a second descriptor of its socket, and the room writes each event's frame to it
//! (one non-blocking `send`), without queueing the event, waking the member's task, or
//! framing the event again for each member (`bench/results/fanout.md`: that task poll per
//! delivery was most of the hub's own cost in a room of 10,000).
//!
//! The member's task and the room never write at once: the room writes only while the
//! member is marked idle, under the mailbox's lock, and the task clears the mark under that
//! lock before it writes anything ([`crate::mailbox::Mailbox::wake_up`]). What a `send`
//! leaves unwritten (a full socket buffer) is handed to the task, which writes it before
//! anything else; an event the socket does not take at all is queued as before. So the
//! member gets every event, whole and in order, whichever path it took.
//!
//! Only messages are written so (`room::send_message`): presence (`joined`, `left`) is
//! queued, as is a message that follows a direct write to the same member closely
//! ([`BATCH_WITHIN`]), because the member's task sends what queued up in one `send`.
//!
//! The frame is unmasked and uncompressed (a server's frame, RSV1 clear, which RFC 7692
//! §6.1 allows on a connection with permessage-deflate), so the same bytes serve every
//! member of the room. Over TLS, HTTP/2 or any other transport, members are not lent a
//! descriptor and every event goes through the mailbox.

use bytes::{Bytes, BytesMut};
use std::any::Any;
use std::io::Write as _;
use std::net::TcpStream;
use std::time::{Duration, Instant};
use wsduplex::proto::frame::{FrameHeader, OpCode};
use wsduplex::Utf8Bytes;

/// How long after a direct write the next event to the same member goes through its queue
/// instead. A direct write costs a `send` for each event, where the member's task sends
/// whatever queued up meanwhile in one: when events come this close together (a burst, or
/// everyone's `joined` while a large room fills), batching them is cheaper than saving the
/// task its wake-up; when they come further apart (the task would send each alone anyway),
/// writing directly is.
const BATCH_WITHIN: Duration = Duration::from_millis(5);

/// A member's socket, as lent to its mailbox.
pub(crate) struct Direct {
    /// A second descriptor of the member's socket (`dup`): it stays valid for as long as
    /// the mailbox holds it, whatever the task does with its own.
    socket: TcpStream,
    /// The member waits with nothing to send: the room may write.
    pub(crate) idle: bool,
    /// The unwritten end of the last frame written here: the task writes it first.
    pub(crate) rest: Option<Bytes>,
    /// When the last direct write was (`BATCH_WITHIN`).
    last: Option<Instant>,
}

/// What a direct write did.
pub(crate) enum Wrote {
    /// The whole frame: the member stays idle.
    All,
    /// Part of it: the rest is the task's to write.
    Part,
    /// Nothing (the socket's buffer is full, or the socket failed): queue the event.
    Nothing,
}

impl Direct {
    /// A second descriptor of `transport` if it is a plain TCP stream; `None` for any other
    /// transport, or if the process is out of descriptors (the member then goes without).
    #[cfg(unix)]
    pub(crate) fn lend<S: Any>(transport: &S) -> Option<Self> {
        use std::os::fd::AsFd as _;
        let tcp = (transport as &dyn Any).downcast_ref::<tokio::net::TcpStream>()?;
        let fd = tcp.as_fd().try_clone_to_owned().ok()?;
        Some(Self::with(TcpStream::from(fd)))
    }

    /// `socket` must be in non-blocking mode.
    fn with(socket: TcpStream) -> Self {
        Self {
            socket,
            idle: false,
            rest: None,
            last: None,
        }
    }

    #[cfg(not(unix))]
    pub(crate) fn lend<S: Any>(_: &S) -> Option<Self> {
        None
    }

    #[cfg(test)]
    pub(crate) fn into_socket(self) -> TcpStream {
        self.socket
    }

    /// Whether an idle member is written to `now`: not if it was, directly, within
    /// [`BATCH_WITHIN`].
    pub(crate) fn writes(&self, now: Instant) -> bool {
        self.last
            .is_none_or(|at| now.duration_since(at) >= BATCH_WITHIN)
    }

    /// Writes `frame` (one non-blocking `send`; the descriptor shares the task's
    /// non-blocking mode). Called only for an idle member, while the mailbox is locked.
    pub(crate) fn write(&mut self, frame: &Bytes, payload_len: usize, now: Instant) -> Wrote {
        debug_assert!(self.rest.is_none());
        self.last = Some(now);
        let wrote = match (&self.socket).write(frame) {
            Ok(n) if n == frame.len() => Wrote::All,
            Ok(n) if n > 0 => {
                self.rest = Some(frame.slice(n..));
                Wrote::Part
            }
            // A failed socket: the task finds out for itself on its next read or write.
            Ok(_) | Err(_) => return Wrote::Nothing,
        };
        wsduplex::metrics::sent_around(payload_len);
        wrote
    }
}

/// An event as one unmasked text frame, header and payload in one buffer.
pub(crate) fn frame_text(event: &Utf8Bytes) -> Bytes {
    let payload = event.as_bytes();
    let header = FrameHeader {
        fin: true,
        rsv1: false,
        rsv2: false,
        rsv3: false,
        opcode: OpCode::Text,
        mask: None,
        payload_len: payload.len() as u64,
    };
    let (head, n) = header.encode();
    let mut frame = BytesMut::with_capacity(n + payload.len());
    frame.extend_from_slice(&head[..n]);
    frame.extend_from_slice(payload);
    frame.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mailbox::Mailbox;
    use std::io::Read as _;
    use std::net::TcpListener;
    use std::task::{Context, Poll, Waker};

    /// A connected pair: the server's end (non-blocking, lent to a mailbox) and the client's.
    fn lent_mailbox(capacity: usize) -> (Mailbox, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        server.set_nonblocking(true).unwrap();
        let mailbox = Mailbox::new(capacity);
        mailbox.lend(Some(Direct::with(server)));
        (mailbox, client)
    }

    fn cx() -> Context<'static> {
        Context::from_waker(Waker::noop())
    }

    /// The member's task waits with nothing to send.
    fn wait_idle(m: &Mailbox) {
        assert!(m
            .poll_take(&mut cx(), &mut Vec::new(), 64, true)
            .is_pending());
    }

    #[test]
    fn an_idle_member_is_written_to_and_nothing_is_queued() {
        let (m, mut client) = lent_mailbox(4);
        wait_idle(&m);
        let start = Instant::now();
        for (i, text) in ["hello", "again"].into_iter().enumerate() {
            let now = start + BATCH_WITHIN * i as u32;
            assert!(m.deliver(&Utf8Bytes::from(text), &mut None, now));
            let mut got = [0u8; 7];
            client.read_exact(&mut got).unwrap();
            assert_eq!(&got[..2], [0x81, 5]);
            assert_eq!(&got[2..], text.as_bytes());
        }
        // Nothing waits in the queue, and the socket is still the rooms' to write.
        let mut out = Vec::new();
        assert!(m.poll_take(&mut cx(), &mut out, 64, true).is_pending());
        assert!(out.is_empty());
        assert!(m.wake_up().is_none());
    }

    #[test]
    fn events_close_together_are_queued_for_the_task_to_send_at_once() {
        let (m, mut client) = lent_mailbox(4);
        wait_idle(&m);
        let now = Instant::now();
        assert!(m.deliver(&Utf8Bytes::from("first"), &mut None, now));
        let mut got = [0u8; 7];
        client.read_exact(&mut got).unwrap();
        assert_eq!(&got[2..], b"first");
        // Still idle, but written to a moment ago: the next two wait for the task.
        let soon = now + BATCH_WITHIN / 2;
        assert!(m.deliver(&Utf8Bytes::from("second"), &mut None, soon));
        assert!(m.deliver(&Utf8Bytes::from("third"), &mut None, soon));
        // Later, but the task has not sent those yet: this one must not overtake them.
        let later = now + BATCH_WITHIN * 2;
        assert!(m.deliver(&Utf8Bytes::from("fourth"), &mut None, later));
        let mut out = Vec::new();
        assert_eq!(
            m.poll_take(&mut cx(), &mut out, 64, true),
            Poll::Ready(Ok(()))
        );
        assert_eq!(out, ["second", "third", "fourth"].map(Utf8Bytes::from));
    }

    #[test]
    fn a_message_does_not_overtake_queued_presence() {
        let (m, mut client) = lent_mailbox(4);
        wait_idle(&m);
        // Presence is queued, never written directly; the member's task has not run yet.
        assert!(m.push(Utf8Bytes::from("joined")));
        assert!(m.deliver(&Utf8Bytes::from("message"), &mut None, Instant::now()));
        client.set_nonblocking(true).unwrap();
        let read = client.read(&mut [0u8; 16]);
        assert_eq!(
            read.map_err(|e| e.kind()).unwrap_err(),
            std::io::ErrorKind::WouldBlock,
            "the message went out before the presence queued ahead of it"
        );
        let mut out = Vec::new();
        assert!(m.poll_take(&mut cx(), &mut out, 64, true).is_ready());
        assert_eq!(out, ["joined", "message"].map(Utf8Bytes::from));
        // And a member leaving its task now is not idle: what is queued is not lost.
        assert!(m.push(Utf8Bytes::from("left")));
        assert!(
            !m.park(Waker::noop().clone()),
            "parked with an event queued"
        );
    }

    #[test]
    fn an_ended_mailbox_is_not_written_to() {
        let (m, mut client) = lent_mailbox(4);
        wait_idle(&m);
        // A hand-over froze the room: what it publishes later, the new process sends.
        m.end(crate::mailbox::Ended::HandedOver);
        assert!(!m.deliver(&Utf8Bytes::from("later"), &mut None, Instant::now()));
        client.set_nonblocking(true).unwrap();
        let mut got = [0u8; 16];
        let read = client.read(&mut got);
        assert_eq!(
            read.map_err(|e| e.kind()).unwrap_err(),
            std::io::ErrorKind::WouldBlock,
            "nothing was written"
        );
    }

    #[test]
    fn a_busy_member_gets_its_events_queued() {
        let (m, _client) = lent_mailbox(4);
        wait_idle(&m);
        assert!(
            m.wake_up().is_none(),
            "the task is running: the rooms stop writing"
        );
        assert!(m.deliver(&Utf8Bytes::from("queued"), &mut None, Instant::now()));
        let mut out = Vec::new();
        assert_eq!(
            m.poll_take(&mut cx(), &mut out, 64, true),
            Poll::Ready(Ok(()))
        );
        assert_eq!(out, [Utf8Bytes::from("queued")]);
    }

    #[test]
    fn a_full_socket_leaves_the_rest_to_the_task_then_events_queue_in_order() {
        let (m, mut client) = lent_mailbox(1_000);
        wait_idle(&m);
        let events: Vec<Utf8Bytes> = (0..2_000)
            .map(|i| Utf8Bytes::from(format!("{i:05}{}", "x".repeat(40_000)).as_str()))
            .collect();
        // Deliver until one is queued: the client reads nothing meanwhile, so the socket's
        // buffers fill, and the last direct write is cut short (or takes nothing).
        let (mut direct, start) = (0, Instant::now());
        let mut out = Vec::new();
        while m.poll_take(&mut cx(), &mut out, 1_000, false).is_pending() {
            assert!(direct < events.len(), "the socket never filled");
            let now = start + BATCH_WITHIN * direct as u32;
            assert!(m.deliver(&events[direct], &mut None, now));
            direct += 1;
        }
        // events[..direct - 1] went to the socket, events[direct - 1] to the queue.
        assert!(direct > 1 && out.len() == 1, "{direct} {}", out.len());
        for e in &events[direct..direct + 10] {
            assert!(m.deliver(e, &mut None, start + BATCH_WITHIN * 10_000));
        }
        assert!(m.poll_take(&mut cx(), &mut out, 1_000, false).is_ready());
        // The task: the rest of the cut frame first, then the queued events, each framed.
        let mut wire = m.wake_up().map(|b| b.to_vec()).unwrap_or_default();
        for e in &out {
            wire.extend_from_slice(&frame_text(e));
        }
        let socket = m.reclaim_socket_for_test();
        let writer = std::thread::spawn(move || {
            socket.set_nonblocking(false).unwrap();
            (&socket).write_all(&wire).unwrap();
        });
        // The client reads every event whole, in order, the direct ones first.
        let mut stream = Vec::new();
        let total = direct - 1 + out.len();
        let mut seen = 0;
        let mut buf = vec![0u8; 1 << 16];
        while seen < total {
            let n = client.read(&mut buf).unwrap();
            assert!(n > 0, "the stream ended after {seen} events");
            stream.extend_from_slice(&buf[..n]);
            while let Some((h, at)) = FrameHeader::decode(&stream).unwrap() {
                let end = at + h.payload_len as usize;
                if stream.len() < end {
                    break;
                }
                assert!(h.fin && h.opcode == OpCode::Text);
                assert_eq!(&stream[at..end], events[seen].as_bytes(), "event {seen}");
                stream.drain(..end);
                seen += 1;
            }
        }
        writer.join().unwrap();
        assert!(stream.is_empty());
    }

    #[test]
    fn a_frame_is_what_the_decoder_reads_back() {
        for len in [0usize, 125, 126, 65_535, 65_536] {
            let text = "x".repeat(len);
            let frame = frame_text(&Utf8Bytes::from(text.as_str()));
            let (header, at) = FrameHeader::decode(&frame).unwrap().unwrap();
            assert!(header.fin && !header.rsv1 && header.mask.is_none());
            assert_eq!(header.opcode, OpCode::Text);
            assert_eq!(header.payload_len, len as u64);
            assert_eq!(&frame[at..], text.as_bytes());
        }
    }
}
