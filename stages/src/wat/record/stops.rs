//! Where a scan through a JSON string must stop, for a whole record at once.
//!
//! The reader's string scan stops at `"`, `\` and control characters (below `0x20`). Finding
//! them byte by byte, or eight bytes at a time, costs a mispredicted branch at the end of every
//! string, and a record holds thousands of short strings. Instead, one pass over the record
//! classifies 32 bytes at a time into a bit mask (bit `i % 8` of mask byte `i / 8` set when byte
//! `i` is such a stop), and the scan finds a string's next stop by counting the trailing zeros of
//! the 64 mask bits read from the byte that holds its position.
//!
//! The pass runs 32 bytes per instruction with AVX2 when the CPU has it (chosen at run time),
//! and eight bytes at a time in plain integer arithmetic otherwise; both give the same masks.

/// Bytes classified per block (one 32-bit mask).
const BLOCK_BYTES: usize = 32;

/// Zero bytes after the mask, so that eight mask bytes can be read from any byte of it.
pub(super) const PADDING: usize = 8;

/// Fills `bits` with the stop mask of `b` (replacing what it held): four bytes per 32 bytes of
/// `b` (the last block's unused bits zero), then [`PADDING`] zero bytes.
pub(super) fn classify(b: &[u8], bits: &mut Vec<u8>) {
    bits.clear();
    bits.resize(b.len().div_ceil(BLOCK_BYTES) * 4 + PADDING, 0);
    #[cfg(target_arch = "x86_64")]
    if let Some(simd) = pulp::x86::V3::try_new() {
        return simd.vectorize(Avx2Classify { simd, b, bits });
    }
    classify_words(b, bits);
}

/// The stops in `block` (at most 32 bytes), through [`stops_in_word`].
fn block_mask(block: &[u8]) -> u32 {
    let mut mask = 0;
    for (k, word) in block.chunks(8).enumerate() {
        let mut bytes = [b' '; 8];
        bytes[..word.len()].copy_from_slice(word);
        mask |= (stops_in_word(u64::from_le_bytes(bytes)) as u32) << (8 * k);
    }
    mask
}

/// [`classify`] in integer arithmetic, eight bytes at a time, into `bits` (long enough).
fn classify_words(b: &[u8], bits: &mut [u8]) {
    for (block, mask) in b.chunks(BLOCK_BYTES).zip(bits.chunks_exact_mut(4)) {
        mask.copy_from_slice(&block_mask(block).to_le_bytes());
    }
}

/// One byte repeated in every lane of a word.
const fn lanes(byte: u8) -> u64 {
    u64::from_ne_bytes([byte; 8])
}

/// The high bit of each byte of `x` that is zero, and of no other byte (no borrow crosses a
/// byte, unlike the cheaper test that only finds the first zero byte).
fn zero_bytes(x: u64) -> u64 {
    !(((x & lanes(0x7f)) + lanes(0x7f)) | x) & lanes(0x80)
}

/// Bit `k` set when byte `k` (little-endian) of `x` is a stop.
fn stops_in_word(x: u64) -> u64 {
    let high = zero_bytes(x ^ lanes(b'"')) | zero_bytes(x ^ lanes(b'\\')) | zero_bytes(x & lanes(0xe0));
    // Gathers bit 8k into bit 56 + k; the partial products land on distinct bits, so no carry
    // disturbs the top byte.
    (high >> 7).wrapping_mul(0x0102_0408_1020_4080) >> 56
}

/// [`classify`] with AVX2 (see [`pulp::x86::V3::vectorize`]).
#[cfg(target_arch = "x86_64")]
struct Avx2Classify<'a> {
    simd: pulp::x86::V3,
    b: &'a [u8],
    /// The mask, long enough for `b`.
    bits: &'a mut [u8],
}

#[cfg(target_arch = "x86_64")]
impl pulp::NullaryFnOnce for Avx2Classify<'_> {
    type Output = ();

    #[inline(always)]
    fn call(self) {
        use std::arch::x86_64::__m256i;
        let Self { simd, b, bits } = self;
        let quote = simd.avx._mm256_set1_epi8(b'"' as i8);
        let backslash = simd.avx._mm256_set1_epi8(b'\\' as i8);
        let control = simd.avx._mm256_set1_epi8(0x1f);
        let mut blocks = b.chunks_exact(BLOCK_BYTES);
        let mut masks = bits.chunks_exact_mut(4);
        for (block, mask) in (&mut blocks).zip(&mut masks) {
            let lanes: [u8; 32] = block.try_into().expect("32 bytes");
            let v: __m256i = pulp::cast(lanes);
            let is_quote = simd.avx2._mm256_cmpeq_epi8(v, quote);
            let is_backslash = simd.avx2._mm256_cmpeq_epi8(v, backslash);
            // A byte is at most 0x1f exactly when the unsigned minimum with 0x1f is itself.
            let is_control = simd.avx2._mm256_cmpeq_epi8(simd.avx2._mm256_min_epu8(v, control), v);
            let stops = simd.avx2._mm256_or_si256(simd.avx2._mm256_or_si256(is_quote, is_backslash), is_control);
            mask.copy_from_slice(&(simd.avx2._mm256_movemask_epi8(stops) as u32).to_le_bytes());
        }
        let rest = blocks.remainder();
        if let (false, Some(mask)) = (rest.is_empty(), masks.next()) {
            mask.copy_from_slice(&block_mask(rest).to_le_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(b: &[u8]) -> Vec<u8> {
        let mut bits = vec![0u8; b.len().div_ceil(BLOCK_BYTES) * 4 + PADDING];
        for (i, &c) in b.iter().enumerate() {
            if c == b'"' || c == b'\\' || c < 0x20 {
                bits[i / 8] |= 1 << (i % 8);
            }
        }
        bits
    }

    #[test]
    fn every_way_finds_exactly_the_stops() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut rand = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        // Every byte value once, then random texts rich in stops and their neighbours.
        let mut texts = vec![(0..=255u8).collect::<Vec<u8>>()];
        const PICK: &[u8] = b"\"\\\x00\x01\x1f\x20\x21\x5b\x5d\x7f\x80\xa2\xdc\xff a";
        for len in 0..300 {
            texts.push((0..len).map(|_| PICK[(rand() as usize) % PICK.len()]).collect());
            texts.push((0..len).map(|_| rand() as u8).collect());
        }
        let mut bits = Vec::new();
        for text in &texts {
            let want = naive(text);
            classify(text, &mut bits);
            assert_eq!(bits, want, "{text:?}");
            bits.fill(0xff);
            bits[want.len() - PADDING..].fill(0);
            classify_words(text, &mut bits);
            assert_eq!(bits, want, "{text:?}");
        }
    }
}
