//! The outgoing byte queue: small frames are coalesced into one buffer, large unmasked
//! payloads are queued as shared [`Bytes`] without copying. Implements [`Buf`], so a driver
//! writes it with vectored writes and advances by what the transport took.

use crate::frame::{FrameHeader, OpCode, MAX_HEADER_LEN};
use crate::mask::apply_mask;
use bytes::{Buf, Bytes, BytesMut};
use std::collections::VecDeque;
use std::io::IoSlice;

/// Payloads at least this long are queued by reference instead of copied (when unmasked).
pub(crate) const ZERO_COPY_MIN: usize = 16 * 1024;

/// The least a fresh tail buffer is allocated with. The buffer is released whenever the
/// connection goes idle, so each burst of frames starts from nothing: allocated at the size
/// of its first frame, it grew by doubling, a reallocation every other small frame.
const TAIL_MIN: usize = 4 * 1024;

/// Bytes waiting to be written to the transport, in order.
#[derive(Default)]
pub struct Transmit {
    /// Frozen chunks, written before `tail`.
    chunks: VecDeque<Bytes>,
    /// The chunk being appended to.
    tail: BytesMut,
    /// Total bytes queued.
    len: usize,
}

impl std::fmt::Debug for Transmit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Transmit({} bytes)", self.len)
    }
}

/// A payload to frame: borrowed (copied into the queue) or shared (maybe queued as is).
pub(crate) enum Payload<'a> {
    Borrowed(&'a [u8]),
    Shared(Bytes),
}

impl Payload<'_> {
    pub(crate) fn as_slice(&self) -> &[u8] {
        match self {
            Payload::Borrowed(b) => b,
            Payload::Shared(b) => b,
        }
    }
}

impl Transmit {
    /// Queues one frame. `header.payload_len` must equal the payload's length; the payload is
    /// masked with `header.mask` while it is copied.
    pub(crate) fn push_frame(&mut self, header: &FrameHeader, payload: Payload<'_>) {
        let (head, n) = header.encode();
        debug_assert_eq!(header.payload_len, payload.as_slice().len() as u64);
        self.push(&head, n, header.mask, payload);
    }

    /// Queues one final, unmasked frame without RSV bits (a server's usual data frame), its
    /// header encoded here: [`FrameHeader::encode`] also handles masks and RSV bits, and costs
    /// a tenth of a small echo's instructions more.
    #[inline]
    pub(crate) fn push_unmasked(&mut self, opcode: OpCode, payload: Payload<'_>) {
        let len = payload.as_slice().len();
        let mut head = [0; MAX_HEADER_LEN];
        head[0] = 0x80 | opcode.as_u8();
        // RFC 6455 §5.2: the minimal number of bytes MUST be used to encode the length.
        let n = if len < 126 {
            head[1] = len as u8;
            2
        } else if len <= u16::MAX as usize {
            head[1] = 126;
            head[2..4].copy_from_slice(&(len as u16).to_be_bytes());
            4
        } else {
            head[1] = 127;
            head[2..10].copy_from_slice(&(len as u64).to_be_bytes());
            10
        };
        self.push(&head, n, None, payload);
    }

    /// Queues an encoded header (the first `n` bytes of `head`) and its payload, masking the
    /// payload with `mask` while it is copied. Large unmasked shared payloads are queued by
    /// reference.
    #[inline(always)]
    fn push(
        &mut self,
        head: &[u8; MAX_HEADER_LEN],
        n: usize,
        mask: Option<[u8; 4]>,
        payload: Payload<'_>,
    ) {
        let len = payload.as_slice().len();
        self.len += n + len;
        match (mask, payload) {
            (None, Payload::Shared(bytes)) if len >= ZERO_COPY_MIN => {
                self.tail.extend_from_slice(&head[..n]);
                let head = self.tail.split().freeze();
                self.chunks.push_back(head);
                self.chunks.push_back(bytes);
            }
            (mask, payload) => {
                let need = MAX_HEADER_LEN + len;
                if self.tail.capacity() - self.tail.len() < need {
                    self.tail.reserve(need.max(TAIL_MIN));
                }
                // All 14 bytes, cut back to `n`: a copy of a fixed size is a few moves, where
                // one of `n` bytes is a call to memcpy.
                self.tail.extend_from_slice(head);
                self.tail.truncate(self.tail.len() - (MAX_HEADER_LEN - n));
                let start = self.tail.len();
                self.tail.extend_from_slice(payload.as_slice());
                if let Some(key) = mask {
                    apply_mask(&mut self.tail[start..], key, 0);
                }
            }
        }
    }

    /// Bytes queued.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The buffer frames are written into, taken out while nothing is queued (`None` while
    /// something is, or when there is no buffer).
    pub(crate) fn take_buffer(&mut self) -> Option<BytesMut> {
        (self.len == 0 && self.tail.capacity() > 0).then(|| std::mem::take(&mut self.tail))
    }

    /// Installs the empty buffer `make` returns to write frames into, if there is none.
    pub(crate) fn give_buffer(&mut self, make: impl FnOnce() -> BytesMut) {
        if self.len == 0 && self.tail.capacity() == 0 {
            let buf = make();
            debug_assert!(buf.is_empty());
            self.tail = buf;
        }
    }

    /// Every byte queued, in order (`crate::snapshot`).
    #[cfg(feature = "snapshot")]
    pub(crate) fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len);
        for c in &self.chunks {
            out.extend_from_slice(c);
        }
        out.extend_from_slice(&self.tail);
        out
    }

    /// A queue holding `bytes` (`crate::snapshot`).
    #[cfg(feature = "snapshot")]
    pub(crate) fn from_vec(bytes: Vec<u8>) -> Self {
        Self {
            chunks: VecDeque::new(),
            len: bytes.len(),
            tail: BytesMut::from(&bytes[..]),
        }
    }

    /// Releases the queue's memory once it is empty (for idle connections).
    pub fn shrink(&mut self) {
        if self.len == 0 {
            self.tail = BytesMut::new();
            self.chunks = VecDeque::new();
        }
    }
}

impl Buf for Transmit {
    fn remaining(&self) -> usize {
        self.len
    }

    fn chunk(&self) -> &[u8] {
        match self.chunks.front() {
            Some(c) => c,
            None => &self.tail,
        }
    }

    fn advance(&mut self, mut cnt: usize) {
        assert!(
            cnt <= self.len,
            "advance past the end of the transmit queue"
        );
        self.len -= cnt;
        while cnt > 0 {
            match self.chunks.front_mut() {
                Some(c) if c.len() <= cnt => {
                    cnt -= c.len();
                    self.chunks.pop_front();
                }
                Some(c) => {
                    c.advance(cnt);
                    return;
                }
                None => {
                    self.tail.advance(cnt);
                    return;
                }
            }
        }
        if self.len == 0 {
            // Keeps the allocation and lets the next frame start at its beginning.
            self.tail.clear();
        }
    }

    fn chunks_vectored<'a>(&'a self, dst: &mut [IoSlice<'a>]) -> usize {
        let mut n = 0;
        for c in self
            .chunks
            .iter()
            .map(|c| c.as_ref())
            .chain(std::iter::once(self.tail.as_ref()))
        {
            if n == dst.len() {
                break;
            }
            if !c.is_empty() {
                dst[n] = IoSlice::new(c);
                n += 1;
            }
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(len: usize) -> FrameHeader {
        FrameHeader {
            fin: true,
            rsv1: false,
            rsv2: false,
            rsv3: false,
            opcode: OpCode::Binary,
            mask: None,
            payload_len: len as u64,
        }
    }

    fn drain(t: &mut Transmit, step: usize) -> Vec<u8> {
        let mut out = Vec::new();
        while t.has_remaining() {
            let mut slices = [IoSlice::new(&[]); 4];
            let n = t.chunks_vectored(&mut slices);
            let mut take = step;
            let mut took = 0;
            for s in &slices[..n] {
                let k = s.len().min(take);
                out.extend_from_slice(&s[..k]);
                take -= k;
                took += k;
            }
            t.advance(took);
        }
        out
    }

    #[test]
    fn small_and_large_frames_come_out_in_order_in_any_write_size() {
        let big = Bytes::from(vec![7u8; ZERO_COPY_MIN + 3]);
        // Under Miri, a byte at a time is too slow: 5 bytes at a time cuts every frame too.
        let steps: &[usize] = if cfg!(miri) {
            &[5, 100, 1 << 20]
        } else {
            &[1, 5, 100, 1 << 20]
        };
        for &step in steps {
            let mut t = Transmit::default();
            t.push_frame(&header(3), Payload::Borrowed(b"abc"));
            t.push_frame(&header(big.len()), Payload::Shared(big.clone()));
            t.push_frame(&header(2), Payload::Borrowed(b"xy"));
            let out = drain(&mut t, step);
            let mut want = vec![0x82, 3];
            want.extend_from_slice(b"abc");
            want.extend_from_slice(&[0x82, 126]);
            want.extend_from_slice(&(big.len() as u16).to_be_bytes());
            want.extend_from_slice(&big);
            want.extend_from_slice(&[0x82, 2, b'x', b'y']);
            assert_eq!(out, want, "step {step}");
            assert!(t.is_empty());
        }
    }

    #[test]
    fn push_unmasked_writes_what_push_frame_writes() {
        for len in [
            0,
            1,
            125,
            126,
            127,
            65_535,
            65_536,
            ZERO_COPY_MIN - 1,
            ZERO_COPY_MIN,
        ] {
            let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            for shared in [false, true] {
                fn payload(d: &[u8], shared: bool) -> Payload<'_> {
                    match shared {
                        true => Payload::Shared(Bytes::copy_from_slice(d)),
                        false => Payload::Borrowed(d),
                    }
                }
                let (mut a, mut b) = (Transmit::default(), Transmit::default());
                a.push_frame(&header(len), payload(&data, shared));
                a.push_frame(&header(3), payload(b"end", shared));
                b.push_unmasked(OpCode::Binary, payload(&data, shared));
                b.push_unmasked(OpCode::Binary, payload(b"end", shared));
                assert_eq!(a.len(), b.len(), "len {len}");
                assert_eq!(drain(&mut a, 1000), drain(&mut b, 1000), "len {len}");
            }
        }
    }
}
