//! One HTTP/2 stream as an `AsyncRead + AsyncWrite`, so that the front door, the routes and
//! the WebSocket driver run over it unchanged.
//!
//! Reading yields the stream's DATA and releases its flow-control window as the bytes are
//! taken (RFC 9113 §6.9): a reader that stops reading stops its own stream only. Writing
//! waits for send capacity before each DATA frame, so nothing is buffered beyond what the
//! peer's windows allow. The client's streams share this code (`http2_body`).
//!
//! Until its response head is written, the stream takes the HTTP/1.1 head that every answer
//! of this server starts with (`Incoming::respond`, the `101` of `accept`) and sends it as
//! HEADERS: the status (a `101` to an extended CONNECT becomes the `200` of RFC 8441 §5),
//! the fields but the connection-specific ones (RFC 9113 §8.2.2). So each path answers
//! both versions with the same code, and the HTTP/1.1 path pays nothing for it.

use crate::http2_body::{self, h2_to_io, Body};
use crate::server::http_types::into_http2_answer;
use bytes::Bytes;
use h2::server::SendResponse;
use h2::{Reason, RecvStream, SendStream};
use http::header::{HeaderName, HeaderValue};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The longest response head taken before it is sent as HEADERS.
const MAX_RESPONSE_HEAD: usize = 16 * 1024;

/// An HTTP/2 stream as a byte stream: the request's DATA in, the response out (see the
/// [module docs](self)). Built by [`Http2Request::into_incoming`](super::Http2Request::into_incoming).
pub struct Http2Stream {
    body: Body,
    send: Send,
    /// An extended CONNECT: its `101` is answered `200`.
    connect: bool,
    /// The request's `Sec-WebSocket-Key` was made up for the front door: its accept is not
    /// sent.
    synthetic_key: bool,
}

enum Send {
    /// The response head, as written so far.
    Head {
        respond: SendResponse<Bytes>,
        head: Vec<u8>,
    },
    Body {
        send: SendStream<Bytes>,
        ended: bool,
    },
    /// The head could not be sent: the stream was reset.
    Failed,
}

impl std::fmt::Debug for Http2Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Http2Stream")
            .field("connect", &self.connect)
            .field("buffered", &self.body.chunk.len())
            .finish_non_exhaustive()
    }
}

impl Http2Stream {
    pub(super) fn new(
        recv: RecvStream,
        respond: SendResponse<Bytes>,
        connect: bool,
        synthetic_key: bool,
    ) -> Self {
        Self {
            body: Body::new(recv),
            send: Send::Head {
                respond,
                head: Vec::new(),
            },
            connect,
            synthetic_key,
        }
    }

    /// The HTTP/2 stream id.
    pub fn stream_id(&self) -> h2::StreamId {
        match &self.send {
            Send::Body { send, .. } => send.stream_id(),
            Send::Head { respond, .. } => respond.stream_id(),
            Send::Failed => self.body.recv.stream_id(),
        }
    }

    /// Sends the buffered head as HEADERS.
    fn send_head(&mut self) -> io::Result<()> {
        let Send::Head { respond, head } = &mut self.send else {
            return Ok(());
        };
        let Some(response) = response_head(head, self.connect, self.synthetic_key) else {
            respond.send_reset(Reason::INTERNAL_ERROR);
            self.send = Send::Failed;
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "unparseable response head",
            ));
        };
        let send = respond.send_response(response, false).map_err(h2_to_io)?;
        self.send = Send::Body { send, ended: false };
        Ok(())
    }
}

/// The HTTP/2 response for an HTTP/1.1 response head of this server.
fn response_head(head: &[u8], connect: bool, synthetic_key: bool) -> Option<http::Response<()>> {
    let mut storage = [httparse::EMPTY_HEADER; 32];
    let mut parsed = httparse::Response::new(&mut storage);
    if !matches!(parsed.parse(head), Ok(httparse::Status::Complete(_))) {
        return None;
    }
    let mut response = http::Response::new(());
    *response.status_mut() = http::StatusCode::from_u16(parsed.code?).ok()?;
    for field in parsed.headers.iter() {
        let name = HeaderName::from_bytes(field.name.as_bytes()).ok()?;
        let value = HeaderValue::from_bytes(field.value).ok()?;
        response.headers_mut().append(name, value);
    }
    // Only an extended CONNECT is answered `101` (the upgrade it was turned into).
    if connect || response.status() != http::StatusCode::SWITCHING_PROTOCOLS {
        into_http2_answer(&mut response, synthetic_key);
    }
    Some(response)
}

impl AsyncRead for Http2Stream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.body.poll_read(cx, buf)
    }
}

impl AsyncWrite for Http2Stream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        match &mut this.send {
            Send::Head { head, .. } => {
                let old = head.len();
                head.extend_from_slice(buf);
                let from = old.saturating_sub(3);
                let end = head[from..]
                    .windows(4)
                    .position(|w| w == b"\r\n\r\n")
                    .map(|i| from + i + 4);
                match end {
                    Some(end) => {
                        head.truncate(end);
                        this.send_head()?;
                        // Only the head is taken: the caller writes the rest as the body.
                        Poll::Ready(Ok(end - old))
                    }
                    None if head.len() > MAX_RESPONSE_HEAD => {
                        Poll::Ready(Err(io::Error::other("response head too large")))
                    }
                    None => Poll::Ready(Ok(buf.len())),
                }
            }
            Send::Body { send, ended } => {
                if *ended {
                    return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
                }
                http2_body::poll_send(send, cx, buf)
            }
            Send::Failed => Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // The connection's task writes the frames out.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        match &mut this.send {
            Send::Head { respond, .. } => {
                // Closed before any answer: nothing to say but a reset.
                respond.send_reset(Reason::INTERNAL_ERROR);
                this.send = Send::Failed;
                Poll::Ready(Ok(()))
            }
            Send::Body { send, ended } => {
                http2_body::end(send, ended);
                Poll::Ready(Ok(()))
            }
            Send::Failed => Poll::Ready(Ok(())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::response_head;

    #[test]
    fn a_101_to_an_extended_connect_is_a_200_without_http1_fields() {
        let head = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: x\r\nSec-WebSocket-Protocol: chat\r\n\r\n";
        let r = response_head(head, true, true).unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers().len(), 1, "{:?}", r.headers());
        assert_eq!(r.headers()["sec-websocket-protocol"], "chat");
        // A key the client sent (a proxy translating HTTP/1.1) is answered.
        let r = response_head(head, true, false).unwrap();
        assert_eq!(r.headers()["sec-websocket-accept"], "x");
        let plain = b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 10\r\nConnection: close\r\n\r\n";
        let r = response_head(plain, false, false).unwrap();
        assert_eq!(r.status(), 404);
        assert_eq!(r.headers()["content-length"], "10");
        assert!(!r.headers().contains_key("connection"));
        assert!(response_head(b"nonsense\r\n\r\n", false, false).is_none());
    }
}
