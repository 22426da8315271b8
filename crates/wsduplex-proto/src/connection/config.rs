//! Which end a connection is, and its limits and switches.

use crate::deflate::{DeflateConfig, DeflateParams};

/// Which end of the connection this is; decides masking in both directions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Masks every frame it sends, rejects masked frames.
    Client,
    /// Sends unmasked frames, rejects unmasked frames.
    Server,
}

/// Limits and switches. The defaults accept what Autobahn|Testsuite sends (16 MiB messages).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Config {
    /// Largest accepted frame payload; larger fails with 1009 before anything is buffered.
    pub max_frame_size: u64,
    /// Largest accepted message (sum of its fragments); larger fails with 1009.
    pub max_message_size: u64,
    /// Most frames one message may arrive in; more fails with 1009 "too many fragments".
    /// Bounds the work a flood of tiny fragments costs (the message size bounds only its
    /// memory). The default, 131,072, is twice what a 4 MiB message sent in 64-byte fragments
    /// takes (Autobahn cases 9.3.1 and 9.4.1 send 65,537 frames); `u32::MAX`: no limit.
    pub max_fragments: u32,
    /// Split outgoing messages into frames of at most this many bytes (`None`: never split).
    pub fragment_size: Option<usize>,
    /// Accept unmasked frames from a client. RFC 6455 §5.1 says a server MUST NOT: only for
    /// testing against broken peers.
    pub dangerous_accept_unmasked_frames: bool,
    /// permessage-deflate as agreed in the opening handshake (`None`: not negotiated; RSV1
    /// then fails the connection). [`Config::max_message_size`] applies to the inflated size.
    pub deflate: Option<DeflateParams>,
    /// zlib level for outgoing compressed messages, 0 to 9.
    pub compression_level: u32,
    /// With deflate agreed, messages shorter than this are sent uncompressed.
    pub compression_threshold: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_frame_size: 16 << 20,
            max_message_size: 16 << 20,
            max_fragments: 1 << 17,
            fragment_size: None,
            dangerous_accept_unmasked_frames: false,
            deflate: None,
            compression_level: DeflateConfig::default().level,
            compression_threshold: DeflateConfig::default().threshold,
        }
    }
}

impl Config {
    /// Sets [`Config::max_frame_size`].
    pub fn max_frame_size(mut self, n: u64) -> Self {
        self.max_frame_size = n;
        self
    }

    /// Sets [`Config::max_message_size`].
    pub fn max_message_size(mut self, n: u64) -> Self {
        self.max_message_size = n;
        self
    }

    /// Sets [`Config::max_fragments`].
    pub fn max_fragments(mut self, n: u32) -> Self {
        self.max_fragments = n;
        self
    }

    /// Sets [`Config::deflate`] to what the handshake agreed, and the compression level and
    /// threshold from this end's policy.
    pub fn deflate(mut self, agreed: Option<DeflateParams>, policy: &DeflateConfig) -> Self {
        self.deflate = agreed;
        self.compression_level = policy.level;
        self.compression_threshold = policy.threshold;
        self
    }

    /// Sets [`Config::fragment_size`].
    pub fn fragment_size(mut self, n: Option<usize>) -> Self {
        self.fragment_size = n.filter(|&n| n > 0);
        self
    }
}
