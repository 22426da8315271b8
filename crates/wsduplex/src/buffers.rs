//! Released read and write buffers, kept per thread for the next connection that wakes.
//!
//! A socket gives its buffers up whenever it waits for the peer, so an idle connection holds
//! none. Freed and allocated again at every wait, they cost a small echo about a tenth of its
//! instructions (the allocator, and `BytesMut` growing a buffer from nothing); so each
//! thread keeps up to [`MAX_POOLED`] of them, of at most [`MAX_SIZE`] bytes, for whichever of
//! its connections needs one next. On a worker thread, one connection runs at a time and
//! gives its buffers back before the next runs, so the pool holds two or three.

use bytes::BytesMut;
use std::cell::RefCell;

/// The size of a fresh buffer.
pub(crate) const SIZE: usize = 4 * 1024;
/// Larger buffers (grown for a large message) are freed, not kept.
const MAX_SIZE: usize = 16 * 1024;
/// At most this many are kept per thread: 512 KiB at worst.
const MAX_POOLED: usize = 32;

thread_local! {
    static POOL: RefCell<Vec<BytesMut>> = const { RefCell::new(Vec::new()) };
}

/// An empty buffer: a kept one, or a fresh one of [`SIZE`] bytes.
pub(crate) fn take() -> BytesMut {
    POOL.with(|p| p.borrow_mut().pop())
        .unwrap_or_else(|| BytesMut::with_capacity(SIZE))
}

/// Keeps `buf` for reuse if it is not shared (a received message may still hold part of
/// it), not too large, and the pool has room; frees it otherwise.
pub(crate) fn give(mut buf: BytesMut) {
    buf.clear();
    // `try_reclaim(n)` succeeds when the buffer is not shared and its allocation has room
    // for n bytes, and then moves the free space back to the start. Its `capacity()` cannot
    // tell: a buffer split off the end of a large one shows only its own part.
    let large = buf.try_reclaim(MAX_SIZE + 1);
    if !large && buf.try_reclaim(SIZE) {
        POOL.with(|p| {
            let mut pool = p.borrow_mut();
            if pool.len() < MAX_POOLED {
                pool.push(buf);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_reused_unless_shared_large_or_too_many() {
        POOL.with(|p| p.borrow_mut().clear());
        let mut b = take();
        b.extend_from_slice(&[1; 100]);
        let at = b.as_ptr();
        b.advance_for_test(100);
        give(b);
        // The same storage comes back, empty and whole.
        let b = take();
        assert_eq!((b.as_ptr(), b.len(), b.capacity()), (at, 0, SIZE));
        // Shared with a received message: freed, not kept.
        let mut shared = b;
        shared.extend_from_slice(b"hello");
        let held = shared.split_to(5).freeze();
        give(shared);
        assert_eq!(POOL.with(|p| p.borrow().len()), 0);
        drop(held);
        // Grown past MAX_SIZE: freed.
        give(BytesMut::with_capacity(MAX_SIZE * 2));
        assert_eq!(POOL.with(|p| p.borrow().len()), 0);
        // What is left of a large buffer once a large message was split off it and dropped:
        // small to look at, large underneath. Freed.
        let mut big = BytesMut::with_capacity(128 * 1024);
        big.extend_from_slice(&[0; 126 * 1024]);
        drop(big.split_to(126 * 1024).freeze());
        assert!(big.capacity() <= MAX_SIZE);
        give(big);
        assert_eq!(POOL.with(|p| p.borrow().len()), 0);
        // At most MAX_POOLED kept.
        for _ in 0..MAX_POOLED + 5 {
            give(BytesMut::with_capacity(SIZE));
        }
        assert_eq!(POOL.with(|p| p.borrow().len()), MAX_POOLED);
    }

    trait AdvanceForTest {
        fn advance_for_test(&mut self, n: usize);
    }

    impl AdvanceForTest for BytesMut {
        fn advance_for_test(&mut self, n: usize) {
            bytes::Buf::advance(self, n);
        }
    }
}
