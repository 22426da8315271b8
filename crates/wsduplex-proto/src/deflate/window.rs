//! The last window of uncompressed data a context with takeover depends on (features
//! `deflate` and `snapshot`): zlib keeps its own but never hands it out, so a copy is kept
//! here, to prime a restored context with (`crate::snapshot`).

/// The last `capacity` bytes pushed, in a ring: updated once per message, a copy of at most
/// the message (capped at the window). Allocated at its first push.
pub(crate) struct Window {
    buf: Vec<u8>,
    /// Where the next byte goes once the ring is full (while filling, `buf.len()`).
    at: usize,
    capacity: usize,
}

impl Window {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            buf: Vec::new(),
            at: 0,
            capacity,
        }
    }

    /// Appends `data`, forgetting what falls out of the window.
    pub(crate) fn push(&mut self, data: &[u8]) {
        let cap = self.capacity;
        if data.len() >= cap {
            self.buf.clear();
            self.buf.extend_from_slice(&data[data.len() - cap..]);
            self.at = 0;
            return;
        }
        if self.buf.len() < cap {
            if self.buf.capacity() == 0 {
                self.buf.reserve_exact(cap);
            }
            let fill = (cap - self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data[..fill]);
            self.at = self.buf.len() % cap;
            self.overwrite(&data[fill..]);
        } else {
            self.overwrite(data);
        }
    }

    /// Writes `data` (shorter than the window) over the oldest bytes of a full ring.
    fn overwrite(&mut self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        let first = (self.capacity - self.at).min(data.len());
        self.buf[self.at..self.at + first].copy_from_slice(&data[..first]);
        let rest = &data[first..];
        self.buf[..rest.len()].copy_from_slice(rest);
        self.at = (self.at + data.len()) % self.capacity;
    }

    /// The window, oldest byte first.
    pub(crate) fn to_vec(&self) -> Vec<u8> {
        if self.buf.len() < self.capacity {
            return self.buf.clone();
        }
        let mut out = Vec::with_capacity(self.capacity);
        out.extend_from_slice(&self.buf[self.at..]);
        out.extend_from_slice(&self.buf[..self.at]);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::Window;

    #[test]
    fn the_window_is_the_last_bytes_pushed_in_order_whatever_the_pieces() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
        for cap in [1, 7, 64, 512] {
            for piece in [1, 3, 63, 64, 65, 511, 513] {
                let mut w = Window::new(cap);
                let mut pushed = 0;
                for chunk in data.chunks(piece) {
                    w.push(chunk);
                    pushed += chunk.len();
                    let want = &data[pushed.saturating_sub(cap)..pushed];
                    assert_eq!(w.to_vec(), want, "cap {cap} piece {piece} at {pushed}");
                }
            }
        }
    }
}
