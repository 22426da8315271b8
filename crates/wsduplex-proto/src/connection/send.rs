//! Commands: messages and the close frame queued for the transport, and [`Sender`].

use super::{Connection, State};
use crate::close::CloseCode;
use crate::error::{Error, UsageError};
use crate::frame::{FrameHeader, OpCode};
use crate::message::{Message, MessageRef};
use crate::transmit::{Payload, Transmit};
use crate::Role;
use bytes::BytesMut;

impl Connection {
    /// The sending half of the connection, as [`Connection::receive_with`] hands it out.
    pub fn sender(&mut self) -> Sender<'_> {
        Sender { conn: self }
    }

    /// Bytes to write to the transport, if any: write them (vectored writes welcome) and
    /// [`Buf::advance`](bytes::Buf::advance) by what the transport accepted.
    pub fn poll_transmit(&mut self) -> Option<&mut Transmit> {
        if self.tx.is_empty() {
            None
        } else {
            Some(&mut self.tx)
        }
    }

    /// Bytes queued but not yet written (the browser's `bufferedAmount`).
    pub fn buffered_amount(&self) -> usize {
        self.tx.len()
    }

    /// The receive buffer, taken out when it is empty and no frame is in progress (one in
    /// progress keeps the room it was given for the rest of it): a driver can keep it for
    /// this or another connection instead of freeing it with [`Connection::shrink_buffers`],
    /// and put it back through [`Connection::receive_buffer`].
    pub fn take_receive_buffer(&mut self) -> Option<BytesMut> {
        (self.rx.is_empty() && self.rx.capacity() > 0 && self.frame.is_none())
            .then(|| std::mem::take(&mut self.rx))
    }

    /// The transmit queue's buffer, taken out while nothing is queued: a driver can keep it
    /// for this or another connection ([`Connection::give_transmit_buffer`]) instead of
    /// freeing it with [`Connection::shrink_buffers`].
    pub fn take_transmit_buffer(&mut self) -> Option<BytesMut> {
        self.tx.take_buffer()
    }

    /// Gives the transmit queue the empty buffer `make` returns, if it has none.
    pub fn give_transmit_buffer(&mut self, make: impl FnOnce() -> BytesMut) {
        self.tx.give_buffer(make)
    }

    /// Frees the receive and transmit buffers if they are empty (for idle connections).
    pub fn shrink_buffers(&mut self) {
        drop(self.take_receive_buffer());
        self.tx.shrink();
        if let Some(d) = self.deflate.as_mut() {
            d.deflater.shrink();
            if self.message.is_none() {
                d.inflater.shrink();
            }
        }
    }

    /// Queues a text message.
    #[inline]
    pub fn send_text(&mut self, text: &str) -> Result<(), Error> {
        self.send_data(OpCode::Text, Payload::Borrowed(text.as_bytes()))
    }

    /// Queues a binary message.
    #[inline]
    pub fn send_binary(&mut self, data: &[u8]) -> Result<(), Error> {
        self.send_data(OpCode::Binary, Payload::Borrowed(data))
    }

    /// Queues a message; large unmasked payloads are queued without a copy.
    ///
    /// `Ping`/`Pong` queue control frames; `Close` starts the closing handshake.
    pub fn send(&mut self, message: Message) -> Result<(), Error> {
        match message {
            Message::Text(t) => self.send_data(OpCode::Text, Payload::Shared(t.into_bytes())),
            Message::Binary(b) => self.send_data(OpCode::Binary, Payload::Shared(b)),
            Message::Ping(b) => self.send_ping(&b),
            Message::Pong(b) => self.send_pong(&b),
            Message::Close(Some(f)) => self.close(f.code, f.reason.as_str()),
            Message::Close(None) => self.close_frame(None),
        }
    }

    /// Queues a ping (at most 125 bytes).
    pub fn send_ping(&mut self, payload: &[u8]) -> Result<(), Error> {
        self.send_control(OpCode::Ping, payload)
    }

    /// Queues an unsolicited pong (at most 125 bytes), e.g. as a unidirectional heartbeat.
    pub fn send_pong(&mut self, payload: &[u8]) -> Result<(), Error> {
        self.send_control(OpCode::Pong, payload)
    }

    /// Starts the closing handshake with `code` and a reason of at most 123 bytes.
    ///
    /// Nothing else can be sent afterwards; messages keep arriving until the peer's close.
    /// Calling it again while closing does nothing. Next: write [`Connection::poll_transmit`];
    /// the close timeout ([`Timeouts::close`](super::Timeouts::close)) runs from the next
    /// [`Connection::poll_timeout`].
    pub fn close(&mut self, code: CloseCode, reason: &str) -> Result<(), Error> {
        if !code.is_sendable() {
            return Err(UsageError::InvalidCloseCode(code.as_u16()).into());
        }
        if reason.len() > 123 {
            return Err(UsageError::ControlPayloadTooLong {
                len: reason.len() + 2,
            }
            .into());
        }
        self.close_frame(Some((code, reason)))
    }

    fn close_frame(&mut self, body: Option<(CloseCode, &str)>) -> Result<(), Error> {
        match &self.state {
            State::Open => {}
            State::Closing | State::Closed => return Ok(()),
            State::Failed(e) => return Err(e.clone().into()),
        }
        self.queue_close(body);
        // With a deferred answer (`Config::defer_close_reply`) this close is the answer.
        self.state = if self.close_received != 0 {
            State::Closed
        } else {
            State::Closing
        };
        Ok(())
    }

    pub(super) fn queue_close(&mut self, body: Option<(CloseCode, &str)>) {
        self.close_sent = body.map_or(1005, |(code, _)| code.as_u16());
        let mut buf = [0u8; 125];
        let len = match body {
            None => 0,
            Some((code, reason)) => {
                buf[..2].copy_from_slice(&code.as_u16().to_be_bytes());
                buf[2..2 + reason.len()].copy_from_slice(reason.as_bytes());
                2 + reason.len()
            }
        };
        self.push_frame(OpCode::Close, true, Payload::Borrowed(&buf[..len]));
    }

    fn send_control(&mut self, opcode: OpCode, payload: &[u8]) -> Result<(), Error> {
        if payload.len() > 125 {
            return Err(UsageError::ControlPayloadTooLong { len: payload.len() }.into());
        }
        self.check_open()?;
        self.push_frame(opcode, true, Payload::Borrowed(payload));
        Ok(())
    }

    fn check_open(&self) -> Result<(), Error> {
        match &self.state {
            State::Open => Ok(()),
            // RFC 6455 §5.5.1: after sending a close, an endpoint MUST NOT send data.
            State::Closing | State::Closed => Err(UsageError::Closed.into()),
            State::Failed(e) => Err(e.clone().into()),
        }
    }

    /// Queues a data message. The common case of a server, one unmasked, uncompressed frame,
    /// is inlined where it is sent; the rest is out of line.
    #[inline]
    fn send_data(&mut self, opcode: OpCode, payload: Payload<'_>) -> Result<(), Error> {
        if matches!(self.state, State::Open)
            && self.role == Role::Server
            && self.deflate.is_none()
            && self
                .config
                .fragment_size
                .is_none_or(|size| payload.as_slice().len() <= size)
        {
            self.tx.push_unmasked(opcode, payload);
            return Ok(());
        }
        self.send_data_framed(opcode, payload)
    }

    /// [`Connection::send_data`] for a client (masked), with compression or fragmentation,
    /// and when the state does not allow sending.
    fn send_data_framed(&mut self, opcode: OpCode, payload: Payload<'_>) -> Result<(), Error> {
        self.check_open()?;
        let compress = self
            .deflate
            .as_ref()
            .is_some_and(|d| payload.as_slice().len() >= d.threshold);
        if compress {
            // Taken out for the duration, so the compressed bytes can be borrowed while frames
            // are queued (moving the box allocates nothing).
            let mut d = self.deflate.take().expect("checked above");
            let compressed = d.deflater.compress(payload.as_slice());
            // RFC 7692 §6.1: RSV1 on the first frame of a compressed message only.
            self.queue_message(opcode, true, Payload::Borrowed(compressed));
            self.deflate = Some(d);
        } else {
            self.queue_message(opcode, false, payload);
        }
        Ok(())
    }

    /// Queues a data message, split into frames of [`Config::fragment_size`].
    fn queue_message(&mut self, opcode: OpCode, rsv1: bool, payload: Payload<'_>) {
        let len = payload.as_slice().len();
        match self.config.fragment_size {
            Some(size) if len > size => {
                let whole = payload.as_slice();
                let mut first = true;
                let mut off = 0;
                while off < len {
                    let end = (off + size).min(len);
                    let op = if first { opcode } else { OpCode::Continuation };
                    let piece = match &payload {
                        Payload::Shared(b) => Payload::Shared(b.slice(off..end)),
                        Payload::Borrowed(_) => Payload::Borrowed(&whole[off..end]),
                    };
                    self.push_frame_rsv1(op, end == len, rsv1 && first, piece);
                    first = false;
                    off = end;
                }
            }
            _ => self.push_frame_rsv1(opcode, true, rsv1, payload),
        }
    }

    pub(super) fn push_frame(&mut self, opcode: OpCode, fin: bool, payload: Payload<'_>) {
        self.push_frame_rsv1(opcode, fin, false, payload)
    }

    fn push_frame_rsv1(&mut self, opcode: OpCode, fin: bool, rsv1: bool, payload: Payload<'_>) {
        let mask = match self.role {
            // RFC 6455 §5.3: a fresh, unpredictable key for every frame.
            Role::Client => {
                let mut key = [0; 4];
                (self.config.random)(&mut key);
                Some(key)
            }
            Role::Server => None,
        };
        let header = FrameHeader {
            fin,
            rsv1,
            rsv2: false,
            rsv3: false,
            opcode,
            mask,
            payload_len: payload.as_slice().len() as u64,
        };
        self.tx.push_frame(&header, payload);
    }
}

/// What can be done with a connection while a received message borrows its receive
/// buffer: send, close, and look at the state. Handed out by [`Connection::receive_with`]
/// and [`Connection::sender`].
pub struct Sender<'a> {
    pub(super) conn: &'a mut Connection,
}

impl Sender<'_> {
    /// Queues a text message; see [`Connection::send_text`].
    pub fn send_text(&mut self, text: &str) -> Result<(), Error> {
        self.conn.send_text(text)
    }

    /// Queues a binary message; see [`Connection::send_binary`].
    pub fn send_binary(&mut self, data: &[u8]) -> Result<(), Error> {
        self.conn.send_binary(data)
    }

    /// Queues a borrowed message (copied into the queue), of the same type.
    #[inline]
    pub fn send_ref(&mut self, msg: MessageRef<'_>) -> Result<(), Error> {
        match msg {
            MessageRef::Text(t) => self.conn.send_text(t),
            MessageRef::Binary(b) => self.conn.send_binary(b),
        }
    }

    /// Queues a message; see [`Connection::send`].
    pub fn send(&mut self, msg: Message) -> Result<(), Error> {
        self.conn.send(msg)
    }

    /// Starts the closing handshake; see [`Connection::close`].
    pub fn close(&mut self, code: CloseCode, reason: &str) -> Result<(), Error> {
        self.conn.close(code, reason)
    }

    /// Bytes queued but not yet written.
    pub fn buffered_amount(&self) -> usize {
        self.conn.buffered_amount()
    }

    /// Where the closing handshake stands.
    pub fn state(&self) -> &State {
        &self.conn.state
    }
}
