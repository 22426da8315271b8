//! Input: bytes in, decoded into at most one pending event ([`Connection::poll_event`]).

use super::{Connection, DeflateState, RxFrame, RxMessage, State};
use crate::close::{CloseCode, CloseFrame};
use crate::deflate::InflateError;
use crate::error::{Error, ProtocolError};
use crate::frame::{FrameHeader, OpCode};
use crate::mask::apply_mask;
use crate::message::Message;
use crate::transmit::Payload;
use crate::utf8::{Utf8Bytes, Utf8Validator};
use crate::Role;
use bytes::{Buf, Bytes, BytesMut};

impl Connection {
    /// Feeds bytes read from the transport, then processes them.
    ///
    /// Next: drain [`Connection::poll_event`], then write [`Connection::poll_transmit`]
    /// (a ping's pong or a close reply may be queued). On `Err`, events decoded before the
    /// error are still queued, a close frame may be owed, and every later call fails the same
    /// way: write out what is queued, then close the transport.
    pub fn receive(&mut self, data: &[u8]) -> Result<(), Error> {
        if matches!(self.state, State::Open | State::Closing) {
            self.rx.extend_from_slice(data);
        }
        if !data.is_empty() {
            self.receive_appended();
        }
        self.decode()
    }

    /// The receive buffer, for reading from the transport without a copy: append to it, then
    /// call [`Connection::receive_buffered`] (or [`Connection::receive_appended`], and let
    /// [`Connection::receive_with`] or [`Connection::poll_event`] decode it).
    /// [`Connection::receive_hint`] says how much room is worth reserving.
    pub fn receive_buffer(&mut self) -> &mut BytesMut {
        &mut self.rx
    }

    /// Bytes still needed to finish the frame in progress (at least a header's worth).
    pub fn receive_hint(&self) -> usize {
        match &self.frame {
            Some(f) => f.len().saturating_sub(self.rx.len()),
            None => 14,
        }
    }

    /// Processes bytes appended to [`Connection::receive_buffer`]; see
    /// [`Connection::receive`] for what to do next.
    ///
    /// Decoding stops at the first event and resumes in [`Connection::poll_event`]: what the
    /// application sends in answer to a message is queued before anything the rest of the
    /// input makes this end send (a pong, or the close frame of an error that follows).
    pub fn receive_buffered(&mut self) -> Result<(), Error> {
        self.receive_appended();
        self.decode()
    }

    /// Decodes buffered input up to the next event.
    fn decode(&mut self) -> Result<(), Error> {
        loop {
            // The state first: `receive_eof` can fail the connection while an event waits,
            // and failure is sticky.
            match &self.state {
                State::Failed(e) => return Err(e.clone().into()),
                // RFC 6455 §5.5.1: after the peer's close, nothing it sends is data.
                State::Closed => {
                    self.rx.clear();
                    return Ok(());
                }
                State::Open if self.close_received != 0 => {
                    self.rx.clear();
                    return Ok(());
                }
                State::Open | State::Closing => {}
            }
            if self.event.is_some() {
                return Ok(());
            }
            match self.step() {
                Ok(true) => {}
                Ok(false) => return Ok(()),
                Err(e) => return Err(self.fail(e)),
            }
        }
    }

    /// The transport reached end of file. Fails with [`ProtocolError::UnexpectedEof`] unless
    /// the closing handshake was complete.
    ///
    /// Next: drain [`Connection::poll_event`] (events decoded before the end are still
    /// there), then close the transport; the close timeout, started at the next
    /// [`Connection::poll_timeout`], bounds that.
    pub fn receive_eof(&mut self) -> Result<(), Error> {
        match &self.state {
            State::Closed => Ok(()),
            State::Failed(e) => Err(e.clone().into()),
            // A deferred close the peer did not wait to hear: the handshake is over.
            State::Open if self.close_received != 0 => {
                self.state = State::Closed;
                Ok(())
            }
            State::Open | State::Closing => {
                // The peer is gone: no close frame can reach it (and 1006 is never sent).
                self.state = State::Failed(ProtocolError::UnexpectedEof);
                Err(ProtocolError::UnexpectedEof.into())
            }
        }
    }

    /// The next received message, ping, pong or close, decoding buffered input as needed.
    ///
    /// `None`: nothing more until more input arrives, or the connection is finished; check
    /// [`Connection::state`] (an error found while decoding shows there).
    pub fn poll_event(&mut self) -> Option<Message> {
        if self.event.is_none() && !self.rx.is_empty() {
            // The error, if any, is recorded in the state.
            let _ = self.decode();
        }
        let event = self.event.take();
        if self.timers.is_some() && matches!(event, Some(Message::Text(_) | Message::Binary(_))) {
            self.data_arrived();
        }
        event
    }

    /// Decodes as far as the buffer allows. `Ok(true)`: a frame completed, go on.
    fn step(&mut self) -> Result<bool, ProtocolError> {
        if self.frame.is_none() {
            let Some((header, n)) = FrameHeader::decode(&self.rx)? else {
                return Ok(false);
            };
            self.check_frame(&header)?;
            let whole = self.message.is_none()
                && header.fin
                && !header.rsv1
                && matches!(header.opcode, OpCode::Text | OpCode::Binary)
                && header.payload_len <= self.config.max_message_size
                && (self.rx.len() - n) as u64 >= header.payload_len;
            if whole {
                self.whole_message(&header, n)?;
                return Ok(true);
            }
            self.begin_frame(&header)?;
            self.rx.advance(n);
            self.frame = Some(RxFrame { header, done: 0 });
        }
        let frame = self.frame.as_mut().expect("frame set above");
        let avail = self.rx.len().min(frame.len());
        if avail > frame.done {
            let fresh = &mut self.rx[frame.done..avail];
            if let Some(key) = frame.header.mask {
                apply_mask(fresh, key, frame.done);
            }
            // Validate text as it arrives, so invalid UTF-8 fails at once (Autobahn 6.4.*).
            if !frame.header.opcode.is_control() {
                if let Some(msg) = self.message.as_mut() {
                    if msg.compressed {
                        let d = self.deflate.as_mut().expect("RSV1 checked in check_frame");
                        inflate(d, msg, fresh, self.config.max_message_size)?;
                    } else if msg.text {
                        msg.utf8
                            .feed(fresh)
                            .map_err(|_| ProtocolError::InvalidUtf8)?;
                    }
                }
            }
            frame.done = avail;
        }
        if frame.done < frame.len() {
            return Ok(false);
        }
        let frame = self.frame.take().expect("frame set above");
        let payload = self.rx.split_to(frame.len());
        self.on_frame(frame.header, payload)?;
        Ok(true)
    }

    /// The common case of small messages: a whole unfragmented, uncompressed text or binary
    /// message is buffered. It is unmasked, checked and handed out at once, without the
    /// bookkeeping of a message that arrives in pieces (the same checks, in the same order).
    fn whole_message(&mut self, h: &FrameHeader, n: usize) -> Result<(), ProtocolError> {
        self.rx.advance(n);
        let mut payload = self.rx.split_to(h.payload_len as usize);
        if let Some(key) = h.mask {
            apply_mask(&mut payload, key, 0);
        }
        if h.opcode == OpCode::Text {
            crate::utf8::validate(&payload).map_err(|_| ProtocolError::InvalidUtf8)?;
            self.emit(Message::Text(Utf8Bytes::from_validated(payload.freeze())));
        } else {
            self.emit(Message::Binary(payload.freeze()));
        }
        Ok(())
    }

    /// The checks of a frame header that need no message state: reserved bits, masking,
    /// control frame rules, the frame size.
    fn check_frame(&self, h: &FrameHeader) -> Result<(), ProtocolError> {
        // RFC 6455 §5.2: RSV bits MUST be 0 unless an extension defines them. RFC 7692 §6:
        // permessage-deflate defines RSV1, on the first frame of a data message only.
        if h.rsv2 || h.rsv3 {
            return Err(ProtocolError::ReservedBits);
        }
        if h.rsv1 && (self.deflate.is_none() || !matches!(h.opcode, OpCode::Text | OpCode::Binary))
        {
            return Err(ProtocolError::ReservedBits);
        }
        match (self.role, h.mask.is_some()) {
            // RFC 6455 §5.1: a server MUST close on an unmasked frame...
            (Role::Server, false) if !self.config.dangerous_accept_unmasked_frames => {
                return Err(ProtocolError::UnmaskedFrame)
            }
            // ...and a client MUST close on a masked one.
            (Role::Client, true) => return Err(ProtocolError::MaskedFrame),
            _ => {}
        }
        if h.opcode.is_control() {
            // RFC 6455 §5.5: control frames are at most 125 bytes and never fragmented.
            if h.payload_len > 125 {
                return Err(ProtocolError::ControlFrameTooLong { len: h.payload_len });
            }
            if !h.fin {
                return Err(ProtocolError::FragmentedControlFrame);
            }
            return Ok(());
        }
        if h.payload_len > self.config.max_frame_size {
            return Err(ProtocolError::FrameTooBig {
                size: h.payload_len,
                max: self.config.max_frame_size,
            });
        }
        Ok(())
    }

    /// Checks a data frame against the message in progress (size, fragments, continuation
    /// rules) and starts or extends it. Control frames pass through.
    fn begin_frame(&mut self, h: &FrameHeader) -> Result<(), ProtocolError> {
        if h.opcode.is_control() {
            return Ok(());
        }
        let so_far = self.message.as_ref().map_or(0, |m| m.len);
        let size = so_far + h.payload_len;
        if size > self.config.max_message_size {
            return Err(ProtocolError::MessageTooBig {
                size,
                max: self.config.max_message_size,
            });
        }
        match (h.opcode, &mut self.message) {
            (OpCode::Continuation, Some(m)) => {
                if m.fragments >= self.config.max_fragments {
                    return Err(ProtocolError::TooManyFragments {
                        max: self.config.max_fragments,
                    });
                }
                m.fragments += 1;
                m.len = size;
            }
            (OpCode::Continuation, None) => return Err(ProtocolError::UnexpectedContinuation),
            (_, Some(_)) => return Err(ProtocolError::ExpectedContinuation),
            (op, None) => {
                self.message = Some(RxMessage {
                    text: op == OpCode::Text,
                    buf: BytesMut::new(),
                    len: size,
                    fragments: 1,
                    utf8: Utf8Validator::new(),
                    compressed: h.rsv1,
                })
            }
        }
        Ok(())
    }

    fn on_frame(&mut self, h: FrameHeader, payload: BytesMut) -> Result<(), ProtocolError> {
        match h.opcode {
            OpCode::Ping => {
                // RFC 6455 §5.5.2: answer with a pong carrying the same payload (not after
                // our close: nothing follows a close frame).
                if self.state == State::Open {
                    self.push_frame(OpCode::Pong, true, Payload::Borrowed(&payload));
                }
                self.emit(Message::Ping(payload.freeze()));
            }
            // RFC 6455 §5.5.3: an unsolicited pong needs no answer.
            OpCode::Pong => self.emit(Message::Pong(payload.freeze())),
            OpCode::Close => self.on_close(payload.freeze())?,
            OpCode::Text | OpCode::Binary | OpCode::Continuation => {
                if self.message.as_ref().is_some_and(|m| m.compressed) {
                    // The payload was inflated as it arrived.
                    if !h.fin {
                        #[cfg(feature = "snapshot")]
                        if let Some(d) = self.deflate.as_mut() {
                            d.partial.extend_from_slice(&payload);
                        }
                        return Ok(());
                    }
                    let mut msg = self.message.take().expect("checked above");
                    let d = self.deflate.as_mut().expect("RSV1 checked in check_frame");
                    #[cfg(feature = "snapshot")]
                    {
                        d.partial = Vec::new();
                    }
                    let max = self.config.max_message_size;
                    let start = d.inflated.len();
                    d.inflater
                        .finish(&mut d.inflated, max)
                        .map_err(|e| inflate_error(e, max))?;
                    let data = Bytes::from(std::mem::take(&mut d.inflated));
                    if msg.text {
                        msg.utf8
                            .feed(&data[start..])
                            .and_then(|()| msg.utf8.finish())
                            .map_err(|_| ProtocolError::InvalidUtf8)?;
                        self.emit(Message::Text(Utf8Bytes::from_validated(data)));
                    } else {
                        self.emit(Message::Binary(data));
                    }
                    return Ok(());
                }
                if !h.fin {
                    let msg = self.message.as_mut().expect("checked in begin_frame");
                    msg.buf.extend_from_slice(&payload);
                    return Ok(());
                }
                let mut msg = self.message.take().expect("checked in begin_frame");
                let data = if msg.buf.is_empty() {
                    payload.freeze()
                } else {
                    msg.buf.extend_from_slice(&payload);
                    msg.buf.freeze()
                };
                if msg.text {
                    msg.utf8.finish().map_err(|_| ProtocolError::InvalidUtf8)?;
                    self.emit(Message::Text(Utf8Bytes::from_validated(data)));
                } else {
                    self.emit(Message::Binary(data));
                }
            }
        }
        Ok(())
    }

    /// Drops the data message in progress, if any.
    pub(super) fn drop_message(&mut self) {
        self.message = None;
        if let Some(d) = self.deflate.as_mut() {
            d.inflated = Vec::new();
            #[cfg(feature = "snapshot")]
            {
                d.partial = Vec::new();
            }
        }
    }

    fn emit(&mut self, event: Message) {
        debug_assert!(self.event.is_none(), "decoding stops at each event");
        self.event = Some(event);
    }

    fn on_close(&mut self, payload: Bytes) -> Result<(), ProtocolError> {
        let frame = match payload.len() {
            0 => None,
            // RFC 6455 §5.5.1: a body starts with a 2-byte code.
            1 => return Err(ProtocolError::InvalidClosePayload),
            _ => {
                let code = CloseCode::new(u16::from_be_bytes([payload[0], payload[1]]));
                if !code.is_sendable() {
                    return Err(ProtocolError::InvalidCloseCode(code.as_u16()));
                }
                let reason = Utf8Bytes::try_from_bytes(payload.slice(2..))
                    .map_err(|_| ProtocolError::InvalidUtf8)?;
                Some(CloseFrame { code, reason })
            }
        };
        self.close_received = frame.as_ref().map_or(1005, |f| f.code.as_u16());
        if self.state == State::Open && self.config.defer_close_reply {
            // RFC 6455 §5.5.1 lets an endpoint finish sending before it answers: the
            // application answers with `close`, and may send until then.
        } else {
            if self.state == State::Open {
                // RFC 6455 §5.5.1: answer a close with a close, echoing the status code.
                self.queue_close(frame.as_ref().map(|f| (f.code, "")));
            }
            self.state = State::Closed;
        }
        self.drop_message();
        self.frame = None;
        self.rx.clear();
        self.emit(Message::Close(frame));
        Ok(())
    }
}

/// Inflates a piece of a compressed message, checking the inflated size and, for text, the
/// UTF-8 of what came out (so invalid text fails before the rest is inflated).
fn inflate(
    d: &mut DeflateState,
    msg: &mut RxMessage,
    input: &[u8],
    max: u64,
) -> Result<(), ProtocolError> {
    let start = d.inflated.len();
    let inflated = d.inflater.inflate(input, &mut d.inflated, max);
    // What came out before an error is checked first: zlib inflates past bad text to the
    // corrupt block or the limit when they arrive in the same read, and which close code the
    // peer gets must not depend on how its bytes were split.
    if msg.text {
        msg.utf8
            .feed(&d.inflated[start..])
            .map_err(|_| ProtocolError::InvalidUtf8)?;
    }
    inflated.map_err(|e| inflate_error(e, max))
}

fn inflate_error(e: InflateError, max: u64) -> ProtocolError {
    match e {
        InflateError::TooBig { size } => ProtocolError::MessageTooBig { size, max },
        InflateError::Corrupt => ProtocolError::InvalidCompressedData,
    }
}
