//! Queuing text and binary messages under the slow-reader policy, and [`Reply`].

use super::{Inner, SlowReader};
use crate::error::{Error, Result};
use crate::metrics;
use proto::{CloseCode, Message, MessageRef, State};

/// The payload length of a text or binary message; `None` for control messages.
#[inline]
pub(super) fn data_len(msg: &Message) -> Option<usize> {
    match msg {
        Message::Text(t) => Some(t.len()),
        Message::Binary(b) => Some(b.len()),
        _ => None,
    }
}

/// Queues a text or binary message of `len` bytes with `queue`, under the slow-reader policy.
pub(super) fn queue_data(
    tx: &mut proto::Sender<'_>,
    slow_reader: SlowReader,
    max_write_buffer: usize,
    len: usize,
    queue: impl FnOnce(&mut proto::Sender<'_>) -> std::result::Result<(), proto::Error>,
) -> Result<()> {
    let full = tx.buffered_amount() >= max_write_buffer;
    match slow_reader {
        SlowReader::Drop if full && *tx.state() == State::Open => {
            metrics::queue_overflow(metrics::Overflow::Dropped);
            Ok(())
        }
        SlowReader::Close if full && *tx.state() == State::Open => {
            metrics::queue_overflow(metrics::Overflow::Closed);
            tx.close(CloseCode::POLICY_VIOLATION, "too slow")?;
            Err(Error::SlowReader)
        }
        _ => {
            queue(tx)?;
            metrics::sent(len);
            Ok(())
        }
    }
}

/// The sending side of a socket, handed to [`WebSocket::recv_with`](super::WebSocket::recv_with)'s callback beside each
/// message: replies queue as [`WebSocket::feed`](super::WebSocket::feed) would queue them (under the same
/// [`SlowReader`] policy) and go out with the next write.
pub struct Reply<'a> {
    pub(super) tx: proto::Sender<'a>,
    pub(super) slow_reader: SlowReader,
    pub(super) max_write_buffer: usize,
    /// The message handed out, when it is owned (16 KiB or more, or one that came in
    /// fragments): a reply with the same payload shares it instead of copying it.
    pub(super) received: Option<&'a Message>,
}

impl<'a> Reply<'a> {
    pub(super) fn new<S>(inner: &'a mut Inner<S>, received: Option<&'a Message>) -> Self {
        Self {
            slow_reader: inner.slow_reader,
            max_write_buffer: inner.max_write_buffer,
            tx: inner.conn.sender(),
            received,
        }
    }

    /// Queues a text or binary message: the one just received (an echo) or any other. Its
    /// bytes are copied into the queue, unless it is the received message's own payload and
    /// that is large: then it is shared.
    pub fn send(&mut self, msg: MessageRef<'_>) -> Result<()> {
        let len = msg.len();
        let owned = self
            .received
            .filter(|m| m.as_data().is_some_and(|d| same(d, msg)));
        let (slow_reader, max) = (self.slow_reader, self.max_write_buffer);
        match owned {
            Some(m) => queue_data(&mut self.tx, slow_reader, max, len, |tx| tx.send(m.clone())),
            None => queue_data(&mut self.tx, slow_reader, max, len, |tx| tx.send_ref(msg)),
        }
    }

    /// Queues a message; as [`WebSocket::feed`](super::WebSocket::feed) does, without waiting.
    pub fn send_message(&mut self, msg: impl Into<Message>) -> Result<()> {
        let msg = msg.into();
        let Some(len) = data_len(&msg) else {
            return self.tx.send(msg).map_err(Error::from);
        };
        let (slow_reader, max) = (self.slow_reader, self.max_write_buffer);
        queue_data(&mut self.tx, slow_reader, max, len, |tx| tx.send(msg))
    }

    /// Starts the closing handshake; the close frame goes out with the next write.
    pub fn close(&mut self, code: CloseCode, reason: &str) -> Result<()> {
        self.tx.close(code, reason).map_err(Error::from)
    }

    /// Outgoing bytes not yet written (the browser's `bufferedAmount`).
    pub fn buffered_amount(&self) -> usize {
        self.tx.buffered_amount()
    }
}

/// The same message, at the same address: a reply that is the received message itself.
fn same(a: MessageRef<'_>, b: MessageRef<'_>) -> bool {
    let (x, y) = (a.as_bytes(), b.as_bytes());
    matches!(
        (a, b),
        (MessageRef::Text(_), MessageRef::Text(_)) | (MessageRef::Binary(_), MessageRef::Binary(_))
    ) && std::ptr::eq(x, y)
}
