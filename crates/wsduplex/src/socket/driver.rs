//! The driver: reads into the core, writes what it queued, and closes the transport.

use super::reply::{data_len, queue_data};
use super::{Inner, Phase, Reply, SlowReader, MAX_READ, MIN_READ};
use crate::buffers;
use crate::error::{Error, Result};
use crate::metrics;
use bytes::Buf;
use proto::{CloseCode, Message, MessageRef, Role, State};
use std::io::IoSlice;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite};

impl<S: AsyncRead + AsyncWrite + Unpin> Inner<S> {
    /// Writes everything queued in the core, then flushes the transport.
    pub(super) fn poll_flush_tx(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        while let Some(tx) = self.conn.poll_transmit() {
            let written = if tx.chunk().len() == tx.remaining() {
                // One buffer (small frames all go into one): a plain write, without setting up
                // an array of slices here and importing it in the kernel.
                ready!(Pin::new(&mut self.io).poll_write(cx, tx.chunk()))?
            } else {
                let mut slices = [IoSlice::new(&[]); 32];
                let n = tx.chunks_vectored(&mut slices);
                ready!(Pin::new(&mut self.io).poll_write_vectored(cx, &slices[..n]))?
            };
            if written == 0 {
                return Poll::Ready(Err(
                    std::io::Error::from(std::io::ErrorKind::WriteZero).into()
                ));
            }
            tx.advance(written);
        }
        Pin::new(&mut self.io).poll_flush(cx).map_err(Error::from)
    }

    pub(super) fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Message>>> {
        self.poll_recv(cx, None::<fn(MessageRef<'_>, &mut Reply<'_>)>)
    }

    /// Reads, and yields the next item; with `on_data`, text and binary messages go to it
    /// (borrowed) instead, and the next other item is yielded.
    pub(super) fn poll_recv<F>(
        &mut self,
        cx: &mut Context<'_>,
        mut on_data: Option<F>,
    ) -> Poll<Option<Result<Message>>>
    where
        F: FnMut(MessageRef<'_>, &mut Reply<'_>),
    {
        loop {
            // Checked before every event, so a flood of incoming data cannot starve pings.
            if self.poll_deadlines(cx) {
                continue;
            }
            if let Some(f) = on_data.as_mut() {
                // A message is taken only when its reply can be queued, as a `Sink` waits
                // for `poll_ready`.
                match self.poll_ready(cx) {
                    Poll::Ready(Ok(())) => {}
                    Poll::Ready(Err(e)) => {
                        self.finish_with(e);
                        continue;
                    }
                    Poll::Pending if self.wait(cx) => continue,
                    Poll::Pending => return Poll::Pending,
                }
                if self.take_borrowed(f) {
                    continue;
                }
            }
            if let Some(ev) = self.conn.poll_event() {
                if let Message::Close(_) = ev {
                    if *self.conn.state() == State::Open {
                        // A deferred answer (`defer_close_reply`): the application hears
                        // the close now, sends what it still has, then answers.
                        return Poll::Ready(Some(Ok(ev)));
                    }
                    self.cold().final_close = Some(ev);
                    continue;
                }
                if let Some(len) = data_len(&ev) {
                    metrics::received(len);
                    if let Some(f) = on_data.as_mut() {
                        let msg = ev.as_data().expect("a text or binary message");
                        f(msg, &mut Reply::new(self, Some(&ev)));
                        continue;
                    }
                }
                return Poll::Ready(Some(Ok(ev)));
            }
            match self.phase {
                Phase::Done => return Poll::Ready(None),
                Phase::Finishing => {
                    ready!(self.poll_finish(cx));
                    self.phase = Phase::Done;
                    metrics::closed(
                        self.conn.sent_close_code().map(CloseCode::as_u16),
                        self.conn
                            .received_close_code()
                            .map_or(1006, CloseCode::as_u16),
                    );
                    return Poll::Ready(self.final_item());
                }
                Phase::Open => {}
            }
            match self.conn.state() {
                State::Open | State::Closing => {}
                State::Closed | State::Failed(_) => {
                    self.phase = Phase::Finishing;
                    continue;
                }
                #[allow(unreachable_patterns)]
                _ => {}
            }
            // Flush what is queued; stop reading while the peer does not take our bytes.
            match self.poll_flush_tx(cx) {
                Poll::Ready(Err(e)) => {
                    self.finish_with(e);
                    continue;
                }
                Poll::Pending if self.conn.buffered_amount() >= self.read_pause() => {
                    if self.wait(cx) {
                        continue;
                    }
                    return Poll::Pending;
                }
                _ => {}
            }
            let want = self.conn.receive_hint().clamp(MIN_READ, MAX_READ);
            let buf = self.conn.receive_buffer();
            if self.rx_released {
                self.rx_released = false;
                *buf = buffers::take();
            }
            buf.reserve(want);
            let read = tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, buf);
            let Poll::Ready(read) = read else {
                if self.wait(cx) {
                    continue;
                }
                return Poll::Pending;
            };
            match read {
                Ok(0) => {
                    // The state now says whether that EOF was clean.
                    let _ = self.conn.receive_eof();
                }
                Ok(_) => {
                    // Any bytes from the peer prove it is alive. They are decoded at the top
                    // of the loop: by `receive_with` when it can, otherwise by `poll_event`.
                    self.conn.receive_appended();
                    // Replies and pongs are likely: a kept buffer to write them into.
                    self.conn.give_transmit_buffer(buffers::take);
                }
                Err(e) => self.finish_with(e.into()),
            }
        }
    }

    /// Hands the whole small messages buffered to `f`, borrowed from the receive buffer
    /// ([`Connection::receive_with`]). Whether it handed out any and a full queue (with
    /// [`SlowReader::Wait`]) stopped it: the caller then writes before taking more.
    fn take_borrowed<F>(&mut self, f: &mut F) -> bool
    where
        F: FnMut(MessageRef<'_>, &mut Reply<'_>),
    {
        let limit = match self.slow_reader {
            SlowReader::Wait => self.max_write_buffer,
            // The policy applies per reply; reading pauses at `read_pause`.
            SlowReader::Drop | SlowReader::Close => usize::MAX,
        };
        let (slow_reader, max_write_buffer) = (self.slow_reader, self.max_write_buffer);
        // An error is recorded in the state, and comes out of the next read.
        let n = self
            .conn
            .receive_with(limit, |msg, tx| {
                metrics::received(msg.len());
                let mut reply = Reply {
                    tx,
                    slow_reader,
                    max_write_buffer,
                    received: None,
                };
                f(msg, &mut reply);
            })
            .unwrap_or(0);
        if n == 0 {
            return false;
        }
        self.conn.buffered_amount() >= limit
    }

    /// Gives the empty read and write buffers back to this thread's pool (see
    /// [`buffers`]), and frees the rest that an idle connection does not need.
    pub(super) fn release_buffers(&mut self) {
        if let Some(rx) = self.conn.take_receive_buffer() {
            buffers::give(rx);
            self.rx_released = true;
        }
        if let Some(tx) = self.conn.take_transmit_buffer() {
            buffers::give(tx);
        }
        self.conn.shrink_buffers();
    }

    /// About to wait for the peer. Nothing is buffered now, so the buffers are released: an
    /// idle connection holds no read or write buffer (they come back on the next read). The
    /// timer is set to the core's next deadline, which may have moved since the top of the
    /// loop. `true`: it fired meanwhile, so go round again instead of waiting.
    fn wait(&mut self, cx: &mut Context<'_>) -> bool {
        self.release_buffers();
        self.poll_deadlines(cx)
    }

    /// Flushes what is owed (a close reply, an error's close frame), then closes the
    /// transport: a server closes TCP first (RFC 6455 §7.1.1), a client waits for the
    /// server to do so. Bounded by the close timer.
    fn poll_finish(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        // Each step that would wait checks the timer; once it has expired, steps are skipped.
        if matches!(self.final_error(), None | Some(Error::CloseTimeout))
            && self.poll_flush_tx(cx).is_pending()
            && !self.close_timed_out(cx)
        {
            return Poll::Pending;
        }
        let wait_for_server = self.conn.role() == Role::Client
            && *self.conn.state() == State::Closed
            && self.final_error().is_none();
        if wait_for_server && !self.server_closed {
            // Discard anything until the server closes TCP.
            loop {
                let buf = self.conn.receive_buffer();
                buf.clear();
                buf.reserve(MIN_READ);
                match tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, buf) {
                    Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => break,
                    Poll::Ready(Ok(_)) => continue,
                    Poll::Pending if self.close_timed_out(cx) => break,
                    Poll::Pending => return Poll::Pending,
                }
            }
            self.server_closed = true;
        }
        if !self.write_shutdown {
            match Pin::new(&mut self.io).poll_shutdown(cx) {
                Poll::Pending if !self.close_timed_out(cx) => return Poll::Pending,
                _ => self.write_shutdown = true,
            }
        }
        self.conn.receive_buffer().clear();
        self.release_buffers();
        Poll::Ready(())
    }

    fn final_item(&mut self) -> Option<Result<Message>> {
        if let Some(e) = self.cold.as_mut().and_then(|r| r.final_error.take()) {
            return Some(Err(e));
        }
        match self.conn.state() {
            State::Failed(e) => Some(Err(Error::Protocol(e.clone()))),
            _ => self.cold.as_mut()?.final_close.take().map(Ok),
        }
    }

    /// Queued bytes at which reading pauses until the peer takes some.
    fn read_pause(&self) -> usize {
        match self.slow_reader {
            SlowReader::Wait => self.max_write_buffer,
            // Reading goes on past the limit, so the next message meets the policy.
            SlowReader::Drop | SlowReader::Close => self.max_write_buffer.saturating_mul(2),
        }
    }

    pub(super) fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        if self.slow_reader == SlowReader::Wait
            && self.conn.buffered_amount() >= self.max_write_buffer
        {
            ready!(self.poll_flush_tx(cx))?;
        }
        Poll::Ready(Ok(()))
    }

    pub(super) fn start_send(&mut self, msg: Message) -> Result<()> {
        let Some(len) = data_len(&msg) else {
            return self.conn.send(msg).map_err(Error::from);
        };
        let (slow_reader, max) = (self.slow_reader, self.max_write_buffer);
        queue_data(&mut self.conn.sender(), slow_reader, max, len, |tx| {
            tx.send(msg)
        })
    }

    pub(super) fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        if *self.conn.state() == State::Open {
            self.conn.close(CloseCode::NORMAL, "")?;
        }
        self.poll_flush_tx(cx)
    }
}
