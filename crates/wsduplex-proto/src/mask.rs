//! Payload masking (RFC 6455 §5.3).

/// XORs `buf` with `key`, as if `buf` started `offset` bytes into a masked payload.
///
/// Works a machine word at a time (the compiler widens the loop to SIMD registers, AVX2 when
/// the CPU has it), so masking runs near memory bandwidth; checked against
/// [`apply_mask_naive`] for every length and offset.
#[inline]
pub fn apply_mask(buf: &mut [u8], key: [u8; 4], offset: usize) {
    let r = offset & 3;
    let key = [key[r], key[(r + 1) & 3], key[(r + 2) & 3], key[(r + 3) & 3]];
    if buf.len() < 64 {
        return mask_short(buf, key);
    }
    let k64 = key_word(key);
    let rest = match buf.len() {
        #[cfg(target_arch = "x86_64")]
        256.. if std::arch::is_x86_feature_detected!("avx2") => {
            // SAFETY: the CPU has AVX2, checked just above.
            #[allow(unsafe_code)]
            unsafe {
                mask_words_avx2(buf, k64)
            }
        }
        _ => mask_words::<32>(buf, k64),
    };
    mask_bytes(rest, key);
}

/// [`apply_mask`] from the start of a payload, inlined where it is called: a short payload
/// (the common case, under 64 bytes) is unmasked a word at a time without a call; a longer
/// one goes to [`apply_mask`].
#[inline(always)]
pub(crate) fn apply_mask_small(buf: &mut [u8], key: [u8; 4]) {
    if buf.len() >= 64 {
        return apply_mask(buf, key, 0);
    }
    mask_short(buf, key);
}

/// Short payloads, the common case: a word at a time, no setup for the wide loops.
#[inline(always)]
fn mask_short(buf: &mut [u8], key: [u8; 4]) {
    let rest = mask_words::<8>(buf, key_word(key));
    mask_bytes(rest, key);
}

/// The key repeated over a 64-bit word.
#[inline(always)]
fn key_word(key: [u8; 4]) -> u64 {
    let k32 = u32::from_ne_bytes(key) as u64;
    k32 | (k32 << 32)
}

/// XORs whole chunks of `CHUNK` bytes (a multiple of 8) with the key (as a repeated word);
/// returns the rest. For 32-byte chunks the compiler turns the loop into SIMD instructions
/// of the target's baseline (SSE2 on x86-64: 16 bytes at a time).
#[inline(always)]
fn mask_words<const CHUNK: usize>(buf: &mut [u8], k64: u64) -> &mut [u8] {
    let mut chunks = buf.chunks_exact_mut(CHUNK);
    for chunk in &mut chunks {
        for word in chunk.chunks_exact_mut(8) {
            let w = u64::from_ne_bytes((&*word).try_into().expect("8-byte chunk")) ^ k64;
            word.copy_from_slice(&w.to_ne_bytes());
        }
    }
    chunks.into_remainder()
}

/// [`mask_words`] over 32-byte chunks compiled for AVX2: 32 bytes at a time, half the
/// instructions of SSE2 for large payloads (only called once the CPU is known to have it).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn mask_words_avx2(buf: &mut [u8], k64: u64) -> &mut [u8] {
    mask_words::<32>(buf, k64)
}

/// Byte by byte, from key phase 0: a short payload, or the rest after whole chunks (their
/// sizes are multiples of 4, so the rest starts at phase 0).
#[inline(always)]
fn mask_bytes(rest: &mut [u8], key: [u8; 4]) {
    for (i, b) in rest.iter_mut().enumerate() {
        *b ^= key[i & 3];
    }
}

/// The byte-at-a-time reference that [`apply_mask`] is tested against.
pub fn apply_mask_naive(buf: &mut [u8], key: [u8; 4], offset: usize) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b ^= key[(offset + i) & 3];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_inlined_short_mask_equals_naive() {
        let key = [0x12, 0x34, 0x56, 0x78];
        for len in 0..200 {
            let data: Vec<u8> = (0..len as u32).map(|i| (i * 7 + 3) as u8).collect();
            let (mut a, mut b) = (data.clone(), data);
            apply_mask_small(&mut a, key);
            apply_mask_naive(&mut b, key, 0);
            assert_eq!(a, b, "{len}");
        }
    }

    #[test]
    fn fast_mask_equals_naive_for_every_length_and_alignment() {
        let key = [0x12, 0x34, 0x56, 0x78];
        // Past 256 bytes the AVX2 loop takes over (on CPUs that have it).
        let data: Vec<u8> = (0..600u32).map(|i| (i * 7 + 3) as u8).collect();
        for align in 0..8 {
            let every = 0..(data.len() - align);
            // Miri is slow: there, the lengths around each loop's edges (the short loop
            // under 64, the wide ones, the AVX2 one from 256) and the longest.
            let edges = (0..=20)
                .chain(60..=70)
                .chain(250..=262)
                .chain([data.len() - align - 1]);
            let lengths: Vec<usize> = if cfg!(miri) {
                edges.collect()
            } else {
                every.collect()
            };
            for len in lengths {
                for offset in 0..4 {
                    let mut a = data[align..align + len].to_vec();
                    let mut b = a.clone();
                    apply_mask(&mut a, key, offset);
                    apply_mask_naive(&mut b, key, offset);
                    assert_eq!(a, b, "len {len} align {align} offset {offset}");
                }
            }
        }
    }

    #[test]
    fn masking_in_pieces_equals_masking_at_once() {
        let key = [1, 2, 3, 4];
        let orig: Vec<u8> = (0..100u8).collect();
        let mut whole = orig.clone();
        apply_mask(&mut whole, key, 0);
        for split in 0..orig.len() {
            let mut pieces = orig.clone();
            let (a, b) = pieces.split_at_mut(split);
            apply_mask(a, key, 0);
            apply_mask(b, key, split);
            assert_eq!(pieces, whole, "split {split}");
        }
    }
}
