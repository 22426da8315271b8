//! Which end a connection is, and its limits and switches.

use crate::deflate::{DeflateConfig, DeflateParams};
use crate::random::Random;
use std::time::Duration;

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
    /// Leave the answer to the peer's close to the application: the close is reported, the
    /// connection stays open for sending, and [`Connection::close`](super::Connection::close)
    /// sends the answer with the application's own code and reason. RFC 6455 §5.5.1 lets an
    /// endpoint finish sending before it answers; a relay uses this to pass the close on
    /// and answer with the other side's reply, delivering what was still in flight. Off by
    /// default: the close is answered at once, echoing its code. Until the application
    /// answers, nothing the peer sends is read and no close timeout runs.
    pub defer_close_reply: bool,
    /// permessage-deflate as agreed in the opening handshake (`None`: not negotiated; RSV1
    /// then fails the connection). [`Config::max_message_size`] applies to the inflated size.
    /// Ignored when built without the feature `deflate`.
    pub deflate: Option<DeflateParams>,
    /// zlib level for outgoing compressed messages, 0 to 9.
    pub compression_level: u32,
    /// With deflate agreed, messages shorter than this are sent uncompressed.
    pub compression_threshold: usize,
    /// The close timeout, keepalive pings and the idle timeout: see
    /// [`Connection::poll_timeout`](super::Connection::poll_timeout).
    pub timeouts: Timeouts,
    /// The source of a client's masking keys (default: [`crate::random::os`]).
    pub random: Random,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_frame_size: 16 << 20,
            max_message_size: 16 << 20,
            max_fragments: 1 << 17,
            fragment_size: None,
            dangerous_accept_unmasked_frames: false,
            defer_close_reply: false,
            deflate: None,
            compression_level: DeflateConfig::default().level,
            compression_threshold: DeflateConfig::default().threshold,
            timeouts: Timeouts::default(),
            random: crate::random::os,
        }
    }
}

/// Every setting equal; [`Config::random`] by address (one function may have two, so two
/// equal configs can compare unequal, never the reverse). A server compares a connection's
/// settings with the ones its other connections share before sharing them.
impl PartialEq for Config {
    fn eq(&self, other: &Self) -> bool {
        self.max_frame_size == other.max_frame_size
            && self.max_message_size == other.max_message_size
            && self.max_fragments == other.max_fragments
            && self.fragment_size == other.fragment_size
            && self.dangerous_accept_unmasked_frames == other.dangerous_accept_unmasked_frames
            && self.defer_close_reply == other.defer_close_reply
            && self.deflate == other.deflate
            && self.compression_level == other.compression_level
            && self.compression_threshold == other.compression_threshold
            && self.timeouts == other.timeouts
            && std::ptr::fn_addr_eq(self.random, other.random)
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

    /// Sets [`Config::defer_close_reply`].
    pub fn defer_close_reply(mut self, on: bool) -> Self {
        self.defer_close_reply = on;
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

    /// Sets [`Config::timeouts`].
    pub fn timeouts(mut self, timeouts: Timeouts) -> Self {
        self.timeouts = timeouts;
        self
    }

    /// Sets [`Config::random`].
    pub fn random(mut self, random: Random) -> Self {
        self.random = random;
        self
    }

    /// Sets [`Config::fragment_size`].
    pub fn fragment_size(mut self, n: Option<usize>) -> Self {
        self.fragment_size = n.filter(|&n| n > 0);
        self
    }
}

/// How long a connection waits, kept to the millisecond: every connection holds a copy (16
/// bytes), so they are stored small. Durations round up to whole milliseconds (at most about
/// 49 days).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    close: u32,
    /// 0: no keepalive pings.
    ping_interval: u32,
    ping_timeout: u32,
    /// 0: no idle timeout.
    idle: u32,
}

impl Default for Timeouts {
    /// A close timeout of 5 s and a ping timeout of 20 s; no keepalive pings, no idle timeout.
    fn default() -> Self {
        Self {
            close: 5_000,
            ping_interval: 0,
            ping_timeout: 20_000,
            idle: 0,
        }
    }
}

impl std::fmt::Debug for Timeouts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Timeouts")
            .field("close", &self.close())
            .field("ping_interval", &self.ping_interval())
            .field("ping_timeout", &self.ping_timeout())
            .field("idle", &self.idle())
            .finish()
    }
}

/// Whole milliseconds, rounded up, saturating.
fn millis(d: Duration) -> u32 {
    u32::try_from(d.as_nanos().div_ceil(1_000_000)).unwrap_or(u32::MAX)
}

/// Whole milliseconds, at least 1 (0 stands for `None`).
fn millis_some(d: Option<Duration>) -> u32 {
    d.map_or(0, |d| millis(d).max(1))
}

fn duration_some(ms: u32) -> Option<Duration> {
    (ms != 0).then(|| Duration::from_millis(ms.into()))
}

impl Timeouts {
    /// How long to wait for the peer's close frame after this end's, and then for the
    /// transport to close; counted from the start of the closing handshake (or from the error
    /// or timeout that ended the connection).
    pub fn close(&self) -> Duration {
        Duration::from_millis(self.close.into())
    }

    /// Sets [`Timeouts::close`].
    pub fn set_close(&mut self, d: Duration) {
        self.close = millis(d);
    }

    /// How often a keepalive ping is sent (`None`: never).
    pub fn ping_interval(&self) -> Option<Duration> {
        duration_some(self.ping_interval)
    }

    /// Sets [`Timeouts::ping_interval`].
    pub fn set_ping_interval(&mut self, d: Option<Duration>) {
        self.ping_interval = millis_some(d);
    }

    /// With keepalive pings: if nothing at all arrives within this time after a ping, the
    /// peer counts as gone ([`Timeout::Keepalive`](super::Timeout::Keepalive)).
    pub fn ping_timeout(&self) -> Duration {
        Duration::from_millis(self.ping_timeout.into())
    }

    /// Sets [`Timeouts::ping_timeout`].
    pub fn set_ping_timeout(&mut self, d: Duration) {
        self.ping_timeout = millis(d);
    }

    /// Close with 1001 `idle timeout` when no text or binary message arrives for this long
    /// (`None`: never; pings and pongs do not count as activity).
    pub fn idle(&self) -> Option<Duration> {
        duration_some(self.idle)
    }

    /// Sets [`Timeouts::idle`].
    pub fn set_idle(&mut self, d: Option<Duration>) {
        self.idle = millis_some(d);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    // Miri gives each use of a function its own address (Rust does not promise one), so two
    // `Config::default()`s differ there by `random`; a server's settings are compared with
    // copies of its own, which hold the same pointer.
    #[cfg_attr(miri, ignore = "function addresses are not unique under Miri")]
    fn configs_are_equal_only_when_every_setting_is() {
        assert_eq!(Config::default(), Config::default());
        let differ = [
            Config::default().max_message_size(1),
            Config::default().fragment_size(Some(4)),
            Config::default().deflate(Some(DeflateParams::default()), &DeflateConfig::default()),
            Config::default().random(|buf| buf.fill(7)),
            Config::default().timeouts({
                let mut t = Timeouts::default();
                t.set_idle(Some(Duration::from_secs(1)));
                t
            }),
        ];
        for c in differ {
            assert_ne!(c, Config::default(), "{c:?}");
        }
    }
}
