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
    if buf.len() < 16 {
        for (i, b) in buf.iter_mut().enumerate() {
            *b ^= key[i & 3];
        }
        return;
    }
    let k32 = u32::from_ne_bytes(key) as u64;
    let k64 = k32 | (k32 << 32);
    if buf.len() < 64 {
        // Short payloads, the common case: a word at a time, no setup for wide loops.
        let mut words = buf.chunks_exact_mut(8);
        for word in &mut words {
            let w = u64::from_ne_bytes((&*word).try_into().expect("8-byte chunk")) ^ k64;
            word.copy_from_slice(&w.to_ne_bytes());
        }
        // 8 is a multiple of 4: the remainder starts at key phase 0.
        mask_bytes(words.into_remainder(), key);
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if buf.len() >= 256 && std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, checked just above.
        #[allow(unsafe_code)]
        let rest = unsafe { mask_words_avx2(buf, k64) };
        mask_bytes(rest, key);
        return;
    }
    let rest = mask_words(buf, k64);
    mask_bytes(rest, key);
}

/// XORs whole 32-byte chunks with the key (as a repeated word); returns the rest. The
/// compiler turns the loop into SIMD instructions of the target's baseline (SSE2 on x86-64:
/// 16 bytes at a time).
#[inline(always)]
fn mask_words(buf: &mut [u8], k64: u64) -> &mut [u8] {
    let mut chunks = buf.chunks_exact_mut(32);
    for chunk in &mut chunks {
        for word in chunk.chunks_exact_mut(8) {
            let w = u64::from_ne_bytes(word.try_into().expect("8-byte chunk")) ^ k64;
            word.copy_from_slice(&w.to_ne_bytes());
        }
    }
    chunks.into_remainder()
}

/// [`mask_words`] compiled for AVX2: 32 bytes at a time, half the instructions of SSE2 for
/// large payloads (only called once the CPU is known to have it).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn mask_words_avx2(buf: &mut [u8], k64: u64) -> &mut [u8] {
    mask_words(buf, k64)
}

/// The tail after the 32-byte chunks: 32 is a multiple of 4, so it starts at key phase 0.
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
    fn fast_mask_equals_naive_for_every_length_and_alignment() {
        let key = [0x12, 0x34, 0x56, 0x78];
        // Past 256 bytes the AVX2 loop takes over (on CPUs that have it).
        let data: Vec<u8> = (0..600u32).map(|i| (i * 7 + 3) as u8).collect();
        for align in 0..8 {
            for len in 0..(data.len() - align) {
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
