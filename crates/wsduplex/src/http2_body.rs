//! The DATA of one HTTP/2 stream as bytes, for both roles: the server's
//! [`Http2Stream`](crate::server::http2::Http2Stream) and the client's
//! [`Http2ClientStream`](crate::client::http2::Http2ClientStream) read and write through
//! these, so the two share one flow-control policy.
//!
//! Reading releases the stream's window as the bytes are taken (RFC 9113 §6.9): a reader
//! that stops reading stops its own stream only. Writing waits for send capacity before each
//! DATA frame, so nothing is buffered beyond what the peer's windows allow.

use bytes::{Buf, Bytes};
use h2::{Reason, RecvStream, SendStream};
use std::io;
use std::task::{ready, Context, Poll};
use tokio::io::ReadBuf;

/// The receiving half: DATA frames, and what is left of the one being read.
pub(crate) struct Body {
    pub(crate) recv: RecvStream,
    /// DATA received and not yet read.
    pub(crate) chunk: Bytes,
}

impl Body {
    pub(crate) fn new(recv: RecvStream) -> Self {
        Self {
            recv,
            chunk: Bytes::new(),
        }
    }

    pub(crate) fn poll_read(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        while self.chunk.is_empty() {
            match ready!(self.recv.poll_data(cx)) {
                None => return Poll::Ready(Ok(())),
                Some(Ok(data)) => self.chunk = data,
                Some(Err(e)) => {
                    return Poll::Ready(match e.reason() {
                        // The peer ended the stream without an error: end of input.
                        Some(Reason::NO_ERROR) => Ok(()),
                        _ => Err(h2_to_io(e)),
                    });
                }
            }
        }
        let n = self.chunk.len().min(buf.remaining());
        buf.put_slice(&self.chunk[..n]);
        self.chunk.advance(n);
        // RFC 9113 §6.9: the window reopens as the reader takes the bytes, not when they
        // arrive, so a stream nobody reads stalls itself only.
        let _ = self.recv.flow_control().release_capacity(n);
        Poll::Ready(Ok(()))
    }
}

/// Writes what the peer's windows allow of `buf` as one DATA frame.
pub(crate) fn poll_send(
    send: &mut SendStream<Bytes>,
    cx: &mut Context<'_>,
    buf: &[u8],
) -> Poll<io::Result<usize>> {
    if buf.is_empty() {
        return Poll::Ready(Ok(0));
    }
    if send.capacity() == 0 {
        send.reserve_capacity(buf.len());
        while send.capacity() == 0 {
            match ready!(send.poll_capacity(cx)) {
                Some(Ok(_)) => {}
                Some(Err(e)) => return Poll::Ready(Err(h2_to_io(e))),
                None => return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
            }
        }
    }
    let n = buf.len().min(send.capacity());
    send.send_data(Bytes::copy_from_slice(&buf[..n]), false)
        .map_err(h2_to_io)?;
    Poll::Ready(Ok(n))
}

/// Ends the sending half (an empty DATA frame with END_STREAM), once.
pub(crate) fn end(send: &mut SendStream<Bytes>, ended: &mut bool) {
    if !*ended {
        *ended = true;
        // The peer may have reset the stream already: then it is closed anyway.
        let _ = send.send_data(Bytes::new(), true);
    }
}

pub(crate) fn h2_to_io(e: h2::Error) -> io::Error {
    if e.is_io() {
        e.into_io().unwrap_or_else(|| io::ErrorKind::Other.into())
    } else {
        match e.reason() {
            Some(Reason::NO_ERROR | Reason::CANCEL | Reason::STREAM_CLOSED) => {
                io::Error::new(io::ErrorKind::BrokenPipe, e)
            }
            _ => io::Error::other(e),
        }
    }
}
