//! The borrowed fast path: whole small messages handed out from the receive buffer.

use super::{Connection, Sender, State, SMALL_MESSAGE};
use crate::error::{Error, ProtocolError};
use crate::frame::OpCode;
use crate::mask::apply_mask;
use crate::message::MessageRef;
use crate::Role;
use bytes::{Buf, BytesMut};

impl Connection {
    /// Hands the whole small data messages at the front of the receive buffer to `f`,
    /// borrowed from it, each with a [`Sender`] for replies: no allocation, no reference
    /// count, no copy but the unmasking in place. Returns how many `f` got.
    ///
    /// It stops before anything that needs more: a fragment, a control frame, a compressed
    /// message, one of 16 KiB or more (a [`Message`](crate::Message) shares its payload, so a large reply can
    /// be queued without a copy), a frame not yet complete, a frame that breaks a rule; and
    /// once [`Connection::buffered_amount`] reaches `max_buffered`, or `f` closes. Call
    /// [`Connection::poll_event`] next: it decodes whatever stopped it as usual (and an
    /// error there is the same error either way). Invalid UTF-8 fails here, as it would there.
    /// Once the connection has failed, it returns that failure, as every input does.
    pub fn receive_with<F>(&mut self, max_buffered: usize, mut f: F) -> Result<usize, Error>
    where
        F: FnMut(MessageRef<'_>, Sender<'_>),
    {
        // Failure is sticky: the same error as every other input gives.
        if let State::Failed(e) = &self.state {
            return Err(e.clone().into());
        }
        // Between the fragments of a message, nothing can be whole; after the peer's close
        // (its answer deferred), nothing it sends is data.
        if self.state != State::Open
            || self.close_received != 0
            || self.event.is_some()
            || (self.message.is_some() && self.frame.is_none())
        {
            return Ok(0);
        }
        // Taken out for the batch, so that a message can borrow it while `f` queues replies.
        let mut rx = std::mem::take(&mut self.rx);
        let (mut at, mut count) = (0, 0);
        let result = loop {
            if self.tx.len() >= max_buffered {
                break Ok(());
            }
            let (text, start, len) = if self.frame.is_some() {
                // Only first: a frame that `poll_event` began before all of it had arrived.
                match self.begun_small_frame(&mut rx) {
                    Some(begun) => begun,
                    None => break Ok(()),
                }
            } else {
                let Some((text, start, len, mask)) = self.small_frame(&rx[at..]) else {
                    break Ok(());
                };
                let start = at + start;
                if let Some(key) = mask {
                    crate::mask::apply_mask_small(&mut rx[start..start + len], key);
                }
                (text, start, len)
            };
            at = start + len;
            let payload = &rx[start..at];
            let msg = if text {
                match crate::utf8::validate_str(payload) {
                    Ok(text) => MessageRef::Text(text),
                    Err(_) => break Err(ProtocolError::InvalidUtf8),
                }
            } else {
                MessageRef::Binary(payload)
            };
            count += 1;
            f(msg, Sender { conn: self });
            if self.state != State::Open {
                break Ok(());
            }
        };
        rx.advance(at);
        self.rx = rx;
        if count > 0 {
            self.data_arrived();
        }
        match result {
            Ok(()) => Ok(count),
            Err(e) => Err(self.fail(e)),
        }
    }

    /// The header of a whole, final, uncompressed text or binary frame under
    /// [`SMALL_MESSAGE`] at the front of `buf`, whose payload is in `buf` too, and that
    /// breaks no rule: (text, payload offset, payload length, mask). `None` for anything
    /// else, which [`Connection::step`] decodes. The same checks as `FrameHeader::decode`,
    /// `check_frame` and `begin_frame` make, reduced to what such a frame can fail.
    #[inline]
    fn small_frame(&self, buf: &[u8]) -> Option<(bool, usize, usize, Option<[u8; 4]>)> {
        let (&b0, &b1) = (buf.first()?, buf.get(1)?);
        // FIN, no RSV bits, text or binary: anything else is a fragment, compressed, a
        // control frame or an error.
        let text = match b0 {
            0x81 => true,
            0x82 => false,
            _ => return None,
        };
        // RFC 6455 §5.1: masked from a client, unmasked from a server.
        let masked = b1 & 0x80 != 0;
        if masked != (self.role == Role::Server) {
            return None;
        }
        let (len, mut start) = match b1 & 0x7F {
            126 => (u16::from_be_bytes([*buf.get(2)?, *buf.get(3)?]) as usize, 4),
            127 => return None, // 64 KiB or more (or an invalid length)
            n => (n as usize, 2),
        };
        let mask = if masked {
            let key = buf.get(start..start + 4)?;
            start += 4;
            Some([key[0], key[1], key[2], key[3]])
        } else {
            None
        };
        let fits = len < SMALL_MESSAGE
            && len as u64 <= self.config.max_frame_size
            && len as u64 <= self.config.max_message_size
            && buf.len() - start >= len;
        fits.then_some((text, start, len, mask))
    }

    /// The frame in progress, if it is a small whole message (as [`Connection::small_frame`]
    /// takes) that has now arrived: it began before all of it had, so its header is
    /// consumed and its first `done` bytes are unmasked and checked (UTF-8 errors fail as
    /// they arrive). Unmasks the rest and ends the frame and its message: (text, 0, length).
    fn begun_small_frame(&mut self, rx: &mut BytesMut) -> Option<(bool, usize, usize)> {
        let frame = self.frame.as_ref()?;
        let h = &frame.header;
        let small = h.fin
            && !h.rsv1
            && matches!(h.opcode, OpCode::Text | OpCode::Binary)
            && frame.len() < SMALL_MESSAGE
            && rx.len() >= frame.len();
        if !small {
            return None;
        }
        let (len, done) = (frame.len(), frame.done);
        if let Some(key) = h.mask {
            apply_mask(&mut rx[done..len], key, done);
        }
        let text = h.opcode == OpCode::Text;
        self.frame = None;
        self.message = None;
        Some((text, 0, len))
    }
}
