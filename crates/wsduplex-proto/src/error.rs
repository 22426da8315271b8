//! Errors, in two kinds that never mix: the peer broke the protocol ([`ProtocolError`], which
//! maps to a close code), or the caller misused the API ([`UsageError`]). I/O errors exist
//! only outside this crate.

use crate::close::CloseCode;

/// The peer broke RFC 6455. Each variant maps to the close code sent to it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[cfg_attr(feature = "snapshot", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub enum ProtocolError {
    /// A reserved opcode (3-7, 0xB-0xF).
    #[error("reserved opcode {0:#x}")]
    ReservedOpCode(u8),
    /// An RSV bit set that no negotiated extension defines there (RSV1 is permessage-deflate's,
    /// on the first frame of a data message only).
    #[error("reserved bits set that no negotiated extension defines")]
    ReservedBits,
    /// A compressed message that is not valid DEFLATE data (RFC 7692 §7.2.2).
    #[error("invalid compressed data")]
    InvalidCompressedData,
    /// A client sent an unmasked frame.
    #[error("client frame is not masked")]
    UnmaskedFrame,
    /// A server sent a masked frame.
    #[error("server frame is masked")]
    MaskedFrame,
    /// A 64-bit payload length with its most significant bit set.
    #[error("invalid payload length")]
    InvalidLength,
    /// A control frame with more than 125 bytes of payload.
    #[error("control frame payload of {len} bytes exceeds 125")]
    ControlFrameTooLong {
        /// The announced length.
        len: u64,
    },
    /// A control frame without the FIN bit.
    #[error("fragmented control frame")]
    FragmentedControlFrame,
    /// A continuation frame with no message in progress.
    #[error("continuation frame without a message to continue")]
    UnexpectedContinuation,
    /// A new text or binary frame while a fragmented message is unfinished.
    #[error("new data frame while a fragmented message is unfinished")]
    ExpectedContinuation,
    /// Text (or a close reason) that is not UTF-8.
    #[error("invalid utf-8 in text")]
    InvalidUtf8,
    /// A close frame with a one-byte payload.
    #[error("close frame payload of 1 byte")]
    InvalidClosePayload,
    /// A close code that must not appear on the wire.
    #[error("close code {0} is not allowed on the wire")]
    InvalidCloseCode(u16),
    /// A frame longer than the configured maximum.
    #[error("frame of {size} bytes exceeds the limit of {max}")]
    FrameTooBig {
        /// The announced payload length.
        size: u64,
        /// The configured limit.
        max: u64,
    },
    /// A message longer than the configured maximum.
    #[error("message of {size} bytes exceeds the limit of {max}")]
    MessageTooBig {
        /// The message length so far, with the frame that broke the limit.
        size: u64,
        /// The configured limit.
        max: u64,
    },
    /// A message in more fragments than the configured maximum.
    #[error("message in more than {max} fragments")]
    TooManyFragments {
        /// The configured limit.
        max: u32,
    },
    /// The peer closed the transport without a close frame.
    #[error("connection closed without a close frame")]
    UnexpectedEof,
}

impl ProtocolError {
    /// The close code sent to the peer (RFC 6455 §7.4.1), the one place errors map to codes.
    pub fn close_code(&self) -> CloseCode {
        match self {
            Self::InvalidUtf8 => CloseCode::INVALID_PAYLOAD,
            Self::FrameTooBig { .. }
            | Self::MessageTooBig { .. }
            | Self::TooManyFragments { .. } => CloseCode::MESSAGE_TOO_BIG,
            Self::UnexpectedEof => CloseCode::ABNORMAL_CLOSURE,
            _ => CloseCode::PROTOCOL_ERROR,
        }
    }

    /// The reason sent with the close frame: short, fixed, never internals.
    pub fn close_reason(&self) -> &'static str {
        match self.close_code() {
            _ if matches!(self, Self::TooManyFragments { .. }) => "too many fragments",
            CloseCode::INVALID_PAYLOAD => "invalid utf-8",
            CloseCode::MESSAGE_TOO_BIG => "message too big",
            _ => "protocol error",
        }
    }
}

/// The caller misused the API; reading the docs fixes it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UsageError {
    /// A send after this endpoint sent a close frame, or after the connection failed.
    #[error("connection is closing or closed")]
    Closed,
    /// A ping, pong or close payload over 125 bytes.
    #[error("control frame payload of {len} bytes exceeds 125")]
    ControlPayloadTooLong {
        /// The payload length.
        len: usize,
    },
    /// A close code that may not be sent (1005, 1006, 1015, unassigned ranges).
    #[error("close code {0} may not be sent")]
    InvalidCloseCode(u16),
}

/// Any error from a [`Connection`](crate::Connection).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The peer broke the protocol; a close frame with [`ProtocolError::close_code`] is queued.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// The caller misused the API.
    #[error(transparent)]
    Usage(#[from] UsageError),
}
