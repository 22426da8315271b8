//! The control socket's messages as bytes, with no I/O: each is a frame, a big-endian `u32`
//! length (of what follows it), a type byte, then the body. Sizes are bounded, and anything
//! malformed is an error that says what, never a panic.
//!
//! The conversation (old → new unless marked):
//!
//! ```text
//! Hello                 format version, state version, pid
//!       ← Hello | Refuse
//! Listeners + fds       one per worker, with the address
//!       ← Ready | Refuse
//! Hub                   the hub's rooms and sessions (HubState::encode()), when they move
//! Connection + fd       one per connection: id, endpoint kind, SocketState::encode()
//!                       (a hub member: its length, then MemberState::encode())
//!       ← Ack | Declined | Refuse      (Ack: the new process owns it from now on)
//! Done                  how many were sent
//! ```

use std::net::SocketAddr;

/// The version of this conversation. A process reads only its own.
pub(crate) const FORMAT: u16 = 1;

/// The first bytes of a Hello: a stray client of the control socket is told apart.
const MAGIC: [u8; 4] = *b"WSDH";

/// Largest frame: a connection's state holds at most a message half received and what
/// waits to be written, which the limits (--max-message-size, --send-buffer) keep far
/// below this. A connection whose state is larger stays with the old process.
pub(crate) const MAX_FRAME: usize = 256 << 20;

/// Most listening sockets in one hand-over (one per worker).
pub(crate) const MAX_LISTENERS: usize = 1024;

/// Longest reason text in a Refuse or Declined.
const MAX_REASON: usize = 1024;

/// Length and type.
pub(crate) const HEADER: usize = 5;

/// What a connection is, for the new process to resume it as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Endpoint {
    /// `/echo` over plain TCP.
    Echo,
    /// A hub member (`/chat/ROOM`) over plain TCP.
    Hub,
}

impl Endpoint {
    fn to_byte(self) -> u8 {
        match self {
            Self::Echo => 1,
            Self::Hub => 2,
        }
    }
}

/// One message of the conversation.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Message {
    Hello {
        format: u16,
        /// [`wsduplex::SocketState::VERSION`] of the sender.
        state: u16,
        pid: u32,
    },
    /// The sender cannot go on (a version it cannot read, a flag that does not fit, an
    /// error); nothing not yet acknowledged has moved.
    Refuse(String),
    /// The listening sockets, in the order of their file descriptors.
    Listeners(Vec<SocketAddr>),
    /// The new process holds the listeners and is ready for connections.
    Ready,
    Connection {
        id: u64,
        /// `Err(byte)`: a kind this build does not know (declined, not an error).
        endpoint: Result<Endpoint, u8>,
        state: Vec<u8>,
    },
    /// The new process serves connection `id` from now on.
    Ack(u64),
    /// The new process will not take connection `id`; the old one keeps it.
    Declined {
        id: u64,
        reason: String,
    },
    Done {
        count: u64,
    },
    /// The hub's rooms and long-polling sessions, before any of its members.
    Hub(Vec<u8>),
}

/// Why bytes are not a message.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum WireError {
    #[error("frame of {0} bytes is larger than the limit of {MAX_FRAME}")]
    TooLarge(usize),
    #[error("empty frame")]
    Empty,
    #[error("unknown message type {0}")]
    UnknownType(u8),
    #[error("malformed {0} message")]
    Malformed(&'static str),
    #[error("not a wsduplex control socket (bad hello)")]
    NotWsduplex,
}

impl Message {
    /// Which message, for errors ("expected Ack, got Done").
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Self::Hello { .. } => "Hello",
            Self::Refuse(_) => "Refuse",
            Self::Listeners(_) => "Listeners",
            Self::Ready => "Ready",
            Self::Connection { .. } => "Connection",
            Self::Ack(_) => "Ack",
            Self::Declined { .. } => "Declined",
            Self::Done { .. } => "Done",
            Self::Hub(_) => "Hub",
        }
    }

    /// The whole frame: length, type, body.
    pub(crate) fn encode(&self) -> Result<Vec<u8>, WireError> {
        let mut out = vec![0; HEADER];
        let kind = match self {
            Self::Hello { format, state, pid } => {
                out.extend_from_slice(&MAGIC);
                out.extend_from_slice(&format.to_be_bytes());
                out.extend_from_slice(&state.to_be_bytes());
                out.extend_from_slice(&pid.to_be_bytes());
                1
            }
            Self::Refuse(reason) => {
                out.extend_from_slice(truncated(reason).as_bytes());
                2
            }
            Self::Listeners(addrs) => {
                out.extend_from_slice(&(addrs.len() as u16).to_be_bytes());
                for a in addrs {
                    let text = a.to_string();
                    out.push(text.len() as u8);
                    out.extend_from_slice(text.as_bytes());
                }
                3
            }
            Self::Ready => 4,
            Self::Connection {
                id,
                endpoint,
                state,
            } => {
                out.extend_from_slice(&id.to_be_bytes());
                out.push(match endpoint {
                    Ok(e) => e.to_byte(),
                    Err(b) => *b,
                });
                out.extend_from_slice(state);
                5
            }
            Self::Ack(id) => {
                out.extend_from_slice(&id.to_be_bytes());
                6
            }
            Self::Declined { id, reason } => {
                out.extend_from_slice(&id.to_be_bytes());
                out.extend_from_slice(truncated(reason).as_bytes());
                7
            }
            Self::Done { count } => {
                out.extend_from_slice(&count.to_be_bytes());
                8
            }
            Self::Hub(state) => {
                out.extend_from_slice(state);
                9
            }
        };
        let len = out.len() - 4;
        if len > MAX_FRAME {
            return Err(WireError::TooLarge(len));
        }
        out[..4].copy_from_slice(&(len as u32).to_be_bytes());
        out[4] = kind;
        Ok(out)
    }

    /// The length of the frame whose header this is (what follows the length field,
    /// the type byte included), checked against the limit.
    pub(crate) fn frame_len(header: [u8; 4]) -> Result<usize, WireError> {
        let len = u32::from_be_bytes(header) as usize;
        match len {
            0 => Err(WireError::Empty),
            n if n > MAX_FRAME => Err(WireError::TooLarge(n)),
            n => Ok(n),
        }
    }

    /// Reads a frame's type byte and body (what [`Message::frame_len`] counted).
    pub(crate) fn decode(frame: &[u8]) -> Result<Message, WireError> {
        let (&kind, body) = frame.split_first().ok_or(WireError::Empty)?;
        let mut r = Reader(body);
        let msg = match kind {
            1 => {
                if r.take(4).ok() != Some(&MAGIC[..]) {
                    return Err(WireError::NotWsduplex);
                }
                let (format, state, pid) = (r.u16("Hello")?, r.u16("Hello")?, r.u32("Hello")?);
                r.end("Hello")?;
                Message::Hello { format, state, pid }
            }
            2 => Message::Refuse(r.reason("Refuse")?),
            3 => {
                let n = r.u16("Listeners")? as usize;
                if n == 0 || n > MAX_LISTENERS {
                    return Err(WireError::Malformed("Listeners"));
                }
                let mut addrs = Vec::with_capacity(n);
                for _ in 0..n {
                    let len = r.take(1).map_err(|_| WireError::Malformed("Listeners"))?[0];
                    let text = r
                        .take(len as usize)
                        .map_err(|_| WireError::Malformed("Listeners"))?;
                    let addr = std::str::from_utf8(text)
                        .ok()
                        .and_then(|t| t.parse().ok())
                        .ok_or(WireError::Malformed("Listeners"))?;
                    addrs.push(addr);
                }
                r.end("Listeners")?;
                Message::Listeners(addrs)
            }
            4 => {
                r.end("Ready")?;
                Message::Ready
            }
            5 => {
                let id = r.u64("Connection")?;
                let endpoint = match r.take(1).map_err(|_| WireError::Malformed("Connection"))?[0] {
                    1 => Ok(Endpoint::Echo),
                    2 => Ok(Endpoint::Hub),
                    other => Err(other),
                };
                Message::Connection {
                    id,
                    endpoint,
                    state: r.0.to_vec(),
                }
            }
            6 => {
                let id = r.u64("Ack")?;
                r.end("Ack")?;
                Message::Ack(id)
            }
            7 => Message::Declined {
                id: r.u64("Declined")?,
                reason: r.reason("Declined")?,
            },
            8 => {
                let count = r.u64("Done")?;
                r.end("Done")?;
                Message::Done { count }
            }
            9 => Message::Hub(r.0.to_vec()),
            other => return Err(WireError::UnknownType(other)),
        };
        Ok(msg)
    }
}

fn truncated(reason: &str) -> &str {
    let mut end = reason.len().min(MAX_REASON);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    &reason[..end]
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ()> {
        if self.0.len() < n {
            return Err(());
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], WireError> {
        let bytes = self.take(N).map_err(|_| WireError::Malformed(what))?;
        Ok(bytes.try_into().expect("N bytes"))
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, WireError> {
        self.array(what).map(u16::from_be_bytes)
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, WireError> {
        self.array(what).map(u32::from_be_bytes)
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, WireError> {
        self.array(what).map(u64::from_be_bytes)
    }

    /// The rest, as a short UTF-8 text.
    fn reason(&mut self, what: &'static str) -> Result<String, WireError> {
        if self.0.len() > MAX_REASON {
            return Err(WireError::Malformed(what));
        }
        let text = std::str::from_utf8(self.0).map_err(|_| WireError::Malformed(what))?;
        self.0 = &[];
        Ok(text.to_owned())
    }

    fn end(&self, what: &'static str) -> Result<(), WireError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(WireError::Malformed(what))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(msg: Message) {
        let frame = msg.encode().unwrap();
        let len = Message::frame_len(frame[..4].try_into().unwrap()).unwrap();
        assert_eq!(len, frame.len() - 4);
        assert_eq!(Message::decode(&frame[4..]).unwrap(), msg);
    }

    #[test]
    fn every_message_round_trips() {
        round_trip(Message::Hello {
            format: FORMAT,
            state: 1,
            pid: 42,
        });
        round_trip(Message::Refuse("cannot read version 2".into()));
        round_trip(Message::Listeners(vec![
            "127.0.0.1:8080".parse().unwrap(),
            "[::1]:80".parse().unwrap(),
        ]));
        round_trip(Message::Ready);
        round_trip(Message::Connection {
            id: 7,
            endpoint: Ok(Endpoint::Echo),
            state: b"WSDX\0\x01...".to_vec(),
        });
        round_trip(Message::Connection {
            id: 8,
            endpoint: Err(9),
            state: vec![],
        });
        round_trip(Message::Ack(u64::MAX));
        round_trip(Message::Declined {
            id: 3,
            reason: "over --max-connections".into(),
        });
        round_trip(Message::Done { count: 10_000 });
        round_trip(Message::Hub(vec![1, 2, 3]));
        round_trip(Message::Connection {
            id: 3,
            endpoint: Ok(Endpoint::Hub),
            state: vec![0, 0, 0, 1, 9, 8],
        });
    }

    #[test]
    fn malformed_frames_are_errors() {
        assert_eq!(Message::frame_len([0; 4]), Err(WireError::Empty));
        assert_eq!(
            Message::frame_len(u32::MAX.to_be_bytes()),
            Err(WireError::TooLarge(u32::MAX as usize))
        );
        assert_eq!(Message::decode(&[]), Err(WireError::Empty));
        assert_eq!(Message::decode(&[99]), Err(WireError::UnknownType(99)));
        assert_eq!(
            Message::decode(b"\x01HTTP/1.1 200"),
            Err(WireError::NotWsduplex)
        );
        assert_eq!(
            Message::decode(&[6, 0, 1]),
            Err(WireError::Malformed("Ack"))
        );
        assert_eq!(Message::decode(&[4, 0]), Err(WireError::Malformed("Ready")));
        // No listener, a count beyond what follows, an address that is not one.
        assert!(Message::decode(&[3, 0, 0]).is_err());
        assert!(Message::decode(&[3, 0, 2, 3, b'a', b'b', b'c']).is_err());
        assert!(Message::decode(&[2, 0xff, 0xfe]).is_err());
        // Every prefix of a good Hello is refused, none panics.
        let hello = Message::Hello {
            format: 1,
            state: 1,
            pid: 1,
        }
        .encode()
        .unwrap();
        for end in 5..hello.len() {
            assert!(Message::decode(&hello[4..end]).is_err(), "prefix {end}");
        }
    }

    #[test]
    fn a_long_reason_is_cut_at_a_character() {
        let long = "é".repeat(MAX_REASON);
        let frame = Message::Refuse(long).encode().unwrap();
        match Message::decode(&frame[4..]).unwrap() {
            Message::Refuse(r) => assert!(r.len() <= MAX_REASON && r.chars().all(|c| c == 'é')),
            other => panic!("{other:?}"),
        }
    }
}
