//! The control socket as a channel of [`Message`]s, each with the file descriptors it
//! carries (`SCM_RIGHTS`). Blocking, with timeouts: it runs on the control thread.
//!
//! A frame goes out in one `sendmsg` with its descriptors, which the kernel attaches to its
//! first byte; every read is a `recvmsg` of at most what the current frame still lacks, so
//! a frame's descriptors never arrive with another frame's bytes.

use super::wire::{Message, WireError, HEADER, MAX_LISTENERS};
use rustix::fd::{BorrowedFd, OwnedFd};
use rustix::net::{
    recvmsg, sendmsg, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags,
    SendAncillaryBuffer, SendAncillaryMessage, SendFlags,
};
use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::unix::net::UnixStream;
use std::time::Duration;

/// Most descriptors one frame may carry: the listeners.
const MAX_FDS: usize = MAX_LISTENERS;

/// What can go wrong on the control socket.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ChannelError {
    #[error("control socket: {0}")]
    Io(#[from] io::Error),
    #[error("control socket: {0}")]
    Wire(#[from] WireError),
    #[error("control socket: the other process closed it")]
    Closed,
    #[error(
        "control socket: the kernel dropped file descriptors (more than {MAX_FDS} in a frame)"
    )]
    Truncated,
    #[error(
        "control socket: {got} file descriptors with a {message} message, expected {expected}"
    )]
    Descriptors {
        message: &'static str,
        got: usize,
        expected: usize,
    },
    #[error("control socket: expected {expected}, got {got}")]
    Unexpected {
        expected: &'static str,
        got: &'static str,
    },
    #[error("the other process refused: {0}")]
    Refused(String),
}

pub(crate) struct Channel {
    sock: UnixStream,
}

impl Channel {
    /// Every read and write gives up after `timeout`: a process that stops answering is
    /// treated as gone.
    pub(crate) fn new(sock: UnixStream, timeout: Duration) -> io::Result<Self> {
        sock.set_read_timeout(Some(timeout))?;
        sock.set_write_timeout(Some(timeout))?;
        Ok(Self { sock })
    }

    pub(crate) fn send(
        &mut self,
        msg: &Message,
        fds: &[BorrowedFd<'_>],
    ) -> Result<(), ChannelError> {
        let frame = msg.encode()?;
        let mut space =
            vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(fds.len().max(1)))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(fds)) {
            return Err(ChannelError::Truncated);
        }
        let mut sent = loop {
            match sendmsg(
                &self.sock,
                &[IoSlice::new(&frame)],
                &mut control,
                SendFlags::NOSIGNAL,
            ) {
                Ok(n) => break n,
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(io::Error::from(e).into()),
            }
        };
        // The descriptors went with the first byte; the rest is plain bytes.
        while sent < frame.len() {
            let mut none = SendAncillaryBuffer::default();
            match sendmsg(
                &self.sock,
                &[IoSlice::new(&frame[sent..])],
                &mut none,
                SendFlags::NOSIGNAL,
            ) {
                Ok(n) => sent += n,
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(io::Error::from(e).into()),
            }
        }
        Ok(())
    }

    /// The next message and the descriptors that came with it.
    pub(crate) fn recv(&mut self) -> Result<(Message, Vec<OwnedFd>), ChannelError> {
        let mut fds = Vec::new();
        let mut header = [0u8; HEADER];
        self.read_exact(&mut header[..4], &mut fds)?;
        let len = Message::frame_len(header[..4].try_into().expect("4 bytes"))?;
        let mut frame = vec![0u8; len];
        self.read_exact(&mut frame, &mut fds)?;
        let msg = Message::decode(&frame)?;
        Ok((msg, fds))
    }

    /// The next message, which must carry exactly `fds` descriptors.
    pub(crate) fn recv_with(
        &mut self,
        fds: usize,
    ) -> Result<(Message, Vec<OwnedFd>), ChannelError> {
        let (msg, got) = self.recv()?;
        if let Message::Refuse(reason) = msg {
            return Err(ChannelError::Refused(reason));
        }
        if got.len() != fds {
            return Err(ChannelError::Descriptors {
                message: msg.name(),
                got: got.len(),
                expected: fds,
            });
        }
        Ok((msg, got))
    }

    fn read_exact(
        &mut self,
        mut buf: &mut [u8],
        fds: &mut Vec<OwnedFd>,
    ) -> Result<(), ChannelError> {
        let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
        while !buf.is_empty() {
            let mut control = RecvAncillaryBuffer::new(&mut space);
            let got = match recvmsg(
                &self.sock,
                &mut [IoSliceMut::new(buf)],
                &mut control,
                RecvFlags::CMSG_CLOEXEC,
            ) {
                Ok(got) => got,
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(io::Error::from(e).into()),
            };
            for msg in control.drain() {
                if let RecvAncillaryMessage::ScmRights(received) = msg {
                    fds.extend(received);
                }
            }
            if got.flags.contains(ReturnFlags::CTRUNC) {
                return Err(ChannelError::Truncated);
            }
            if got.bytes == 0 {
                return Err(ChannelError::Closed);
            }
            buf = &mut buf[got.bytes..];
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::handover::wire::Endpoint;
    use rustix::fd::AsFd as _;
    use std::io::{Read as _, Write as _};

    fn pair() -> (Channel, Channel) {
        let (a, b) = UnixStream::pair().unwrap();
        let t = Duration::from_secs(10);
        (Channel::new(a, t).unwrap(), Channel::new(b, t).unwrap())
    }

    /// Descriptors arrive with their own frame, whatever the frames around them carry.
    #[test]
    fn descriptors_travel_with_their_frame() {
        let (mut a, mut b) = pair();
        let (mut x, y) = UnixStream::pair().unwrap();
        // Read while a frame larger than the socket's buffer is written.
        let reader = std::thread::spawn(move || {
            let first = b.recv_with(0).unwrap();
            let second = b.recv_with(1).unwrap();
            let third = b.recv_with(0).unwrap();
            (first.0, second, third.0)
        });
        let big = Message::Connection {
            id: 1,
            endpoint: Ok(Endpoint::Echo),
            state: vec![7; 1 << 20],
        };
        a.send(&Message::Ready, &[]).unwrap();
        a.send(&big, &[y.as_fd()]).unwrap();
        a.send(&Message::Done { count: 1 }, &[]).unwrap();
        let (first, (second, mut fds), third) = reader.join().unwrap();
        assert_eq!(first, Message::Ready);
        assert_eq!(second, big);
        assert_eq!(third, Message::Done { count: 1 });
        // The descriptor is the same socket: what goes in one end comes out of the other.
        let mut passed = UnixStream::from(fds.pop().unwrap());
        passed.write_all(b"hi").unwrap();
        let mut got = [0; 2];
        x.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"hi");
    }

    #[test]
    fn garbage_and_a_closed_peer_are_errors() {
        let (a, mut b) = pair();
        let mut raw = a.sock;
        raw.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        assert!(matches!(
            b.recv(),
            Err(ChannelError::Wire(WireError::TooLarge(_)))
        ));
        drop(raw);
        let (a, mut b) = pair();
        drop(a);
        assert!(matches!(b.recv(), Err(ChannelError::Closed)));
        let (mut a, mut b) = pair();
        a.send(&Message::Refuse("no".into()), &[]).unwrap();
        assert!(matches!(b.recv_with(0), Err(ChannelError::Refused(r)) if r == "no"));
    }
}
