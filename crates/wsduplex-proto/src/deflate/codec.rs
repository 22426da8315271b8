//! The per-message compressor and decompressor (feature `deflate`): zlib-rs through
//! `flate2`. Window bits are explained in the parent module's docs.

#[cfg(feature = "snapshot")]
use super::window::Window;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// RFC 7692 §7.2.1: the sync-flush marker a sender removes and a receiver appends.
pub(super) const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// zlib's smallest raw-deflate window (8 is treated as 9, see the module docs).
fn zlib_bits(bits: u8) -> u8 {
    bits.clamp(9, 15)
}

/// Output grows by at most this much per inflate call, so a limit is checked often.
const INFLATE_CHUNK: usize = 32 * 1024;

/// Compresses outgoing messages (RFC 7692 §7.2.1). The zlib state is created on first use.
pub(crate) struct Deflater {
    zlib: Option<Box<Compress>>,
    level: u32,
    bits: u8,
    no_context_takeover: bool,
    out: Vec<u8>,
    /// With takeover, what the context depends on (see `crate::snapshot`).
    #[cfg(feature = "snapshot")]
    window: Option<Window>,
}

impl Deflater {
    pub(crate) fn new(level: u32, bits: u8, no_context_takeover: bool) -> Self {
        Self {
            zlib: None,
            level: level.min(9),
            bits: zlib_bits(bits),
            no_context_takeover,
            out: Vec::new(),
            #[cfg(feature = "snapshot")]
            window: (!no_context_takeover).then(|| Window::new(1 << zlib_bits(bits))),
        }
    }

    /// A compressor whose context is `window` (the last bytes a previous one compressed,
    /// empty for a fresh context): what it compresses next may refer back into it.
    #[cfg(feature = "snapshot")]
    pub(crate) fn restore(
        level: u32,
        bits: u8,
        no_context_takeover: bool,
        window: &[u8],
    ) -> Result<Self, ()> {
        let mut d = Self::new(level, bits, no_context_takeover);
        if let (false, Some(w)) = (window.is_empty(), d.window.as_mut()) {
            let mut z = Compress::new_with_window_bits(Compression::new(d.level), false, d.bits);
            // Right after init, as raw deflate allows (deflateSetDictionary).
            z.set_dictionary(window).map_err(|_| ())?;
            w.push(window);
            d.zlib = Some(Box::new(z));
        }
        Ok(d)
    }

    /// The context: the last window compressed (empty without takeover).
    #[cfg(feature = "snapshot")]
    pub(crate) fn window(&self) -> Vec<u8> {
        self.window.as_ref().map_or_else(Vec::new, Window::to_vec)
    }

    /// Compresses one whole message; returns the payload with the trailing `00 00 ff ff`
    /// removed. The buffer is reused from message to message.
    pub(crate) fn compress(&mut self, data: &[u8]) -> &[u8] {
        let (level, bits) = (self.level, self.bits);
        let z = self.zlib.get_or_insert_with(|| {
            Box::new(Compress::new_with_window_bits(
                Compression::new(level),
                false,
                bits,
            ))
        });
        self.out.clear();
        let start_in = z.total_in();
        loop {
            let consumed = (z.total_in() - start_in) as usize;
            if self.out.capacity() - self.out.len() < 64 {
                self.out.reserve((data.len() - consumed) / 2 + 64);
            }
            z.compress_vec(&data[consumed..], &mut self.out, FlushCompress::Sync)
                .expect("deflate with a valid state and sync flush cannot fail");
            let done = (z.total_in() - start_in) as usize == data.len();
            // A sync flush is complete when zlib stopped with output space to spare.
            if done && self.out.len() < self.out.capacity() {
                break;
            }
        }
        if self.out.is_empty() {
            // zlib emits nothing for a sync flush right after another one (an empty message
            // with context takeover): an empty stored block is what RFC 7692 §7.2.3.6 sends.
            self.out.push(0x00);
        } else {
            debug_assert!(self.out.ends_with(&TAIL));
            if self.out.ends_with(&TAIL) {
                self.out.truncate(self.out.len() - TAIL.len());
            }
        }
        if self.no_context_takeover {
            z.reset();
        }
        #[cfg(feature = "snapshot")]
        if let Some(w) = self.window.as_mut() {
            w.push(data);
        }
        &self.out
    }

    /// Frees what need not survive an idle period.
    pub(crate) fn shrink(&mut self) {
        self.out = Vec::new();
        if self.no_context_takeover {
            self.zlib = None;
        }
    }
}

/// Why inflating failed.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum InflateError {
    /// The inflated message passed the limit; `size` is what was inflated so far.
    TooBig { size: u64 },
    /// Not valid DEFLATE data.
    Corrupt,
}

/// Decompresses incoming messages (RFC 7692 §7.2.2), a piece at a time.
pub(crate) struct Inflater {
    pub(super) zlib: Option<Box<Decompress>>,
    bits: u8,
    no_context_takeover: bool,
    /// With takeover, what the context depends on (see `crate::snapshot`).
    #[cfg(feature = "snapshot")]
    window: Option<Window>,
}

impl Inflater {
    pub(crate) fn new(bits: u8, no_context_takeover: bool) -> Self {
        Self {
            zlib: None,
            bits: zlib_bits(bits),
            no_context_takeover,
            #[cfg(feature = "snapshot")]
            window: (!no_context_takeover).then(|| Window::new(1 << zlib_bits(bits))),
        }
    }

    /// A decompressor whose context is `window` (the last bytes a previous one inflated,
    /// empty for a fresh context): the peer's next message may refer back into it.
    #[cfg(feature = "snapshot")]
    pub(crate) fn restore(bits: u8, no_context_takeover: bool, window: &[u8]) -> Result<Self, ()> {
        let mut d = Self::new(bits, no_context_takeover);
        if let (false, Some(w)) = (window.is_empty(), d.window.as_mut()) {
            let mut z = Decompress::new_with_window_bits(false, d.bits);
            // Raw inflate takes a dictionary at any time (inflateSetDictionary).
            z.set_dictionary(window).map_err(|_| ())?;
            w.push(window);
            d.zlib = Some(Box::new(z));
        }
        Ok(d)
    }

    /// The context as of the end of the last whole message (empty without takeover).
    #[cfg(feature = "snapshot")]
    pub(crate) fn window(&self) -> Vec<u8> {
        self.window.as_ref().map_or_else(Vec::new, Window::to_vec)
    }

    /// Inflates `input` (a piece of a compressed message) onto `out`. Output grows in bounded
    /// steps and stops as soon as it passes `max` bytes: a compression bomb costs at most
    /// `max` plus one step, not what it would inflate to.
    pub(crate) fn inflate(
        &mut self,
        mut input: &[u8],
        out: &mut Vec<u8>,
        max: u64,
    ) -> Result<(), InflateError> {
        let bits = self.bits;
        let z = self
            .zlib
            .get_or_insert_with(|| Box::new(Decompress::new_with_window_bits(false, bits)));
        let limit = usize::try_from(max.saturating_add(1)).unwrap_or(usize::MAX);
        loop {
            if out.capacity() - out.len() < 256 {
                // Geometric growth, never to more than `max + 1` bytes.
                let room = out
                    .len()
                    .max(INFLATE_CHUNK)
                    .min(limit.saturating_sub(out.len()));
                out.reserve_exact(room.max(1));
            }
            let before_in = z.total_in();
            let before_out = out.len();
            let status = z.decompress_vec(input, out, FlushDecompress::None);
            // The limit before any error: with the output full, zlib still decodes the next
            // symbol and may find it corrupt, which it cannot when the input arrives in
            // pieces; the limit comes first in the stream either way.
            if out.len() as u64 > max {
                return Err(InflateError::TooBig {
                    size: out.len() as u64,
                });
            }
            let status = status.map_err(|_| InflateError::Corrupt)?;
            let consumed = (z.total_in() - before_in) as usize;
            input = &input[consumed..];
            if status == Status::StreamEnd {
                // A sender may end a message with a final block (RFC 7692 §7.2.3.4): what
                // follows starts a new stream.
                z.reset(false);
                continue;
            }
            let spare = out.len() < out.capacity();
            if input.is_empty() && spare {
                return Ok(());
            }
            if consumed == 0 && out.len() == before_out && spare {
                // zlib consumes all input while it has room for output: this is not DEFLATE.
                return Err(InflateError::Corrupt);
            }
        }
    }

    /// Ends a message: feeds the `00 00 ff ff` the sender removed, then resets the context
    /// if the peer does not keep it.
    pub(crate) fn finish(&mut self, out: &mut Vec<u8>, max: u64) -> Result<(), InflateError> {
        self.inflate(&TAIL, out, max)?;
        #[cfg(feature = "snapshot")]
        if let Some(w) = self.window.as_mut() {
            // `out` holds the whole message (the caller's buffer for it).
            w.push(out);
        }
        if self.no_context_takeover {
            if let Some(z) = self.zlib.as_mut() {
                z.reset(false);
            }
        }
        Ok(())
    }

    /// Frees what need not survive an idle period.
    pub(crate) fn shrink(&mut self) {
        if self.no_context_takeover {
            self.zlib = None;
        }
    }
}
