//! Inflating one whole gzip member in a single libdeflate call.
//!
//! Common Crawl writes one gzip member per WARC record, a few KiB each, so a member nearly always
//! lies whole in the input buffer. libdeflate decompresses such a member with about a third
//! fewer instructions than the streaming zlib-rs path, but it needs the member's end and its
//! output size up front, and its bindings do not report how many input bytes a call consumed.
//! So the caller guesses the end (the next member header, or the end of input) and the output
//! size is read from the ISIZE field of the trailer just before that end.
//!
//! A member is taken only when the guess is provably the member's real extent, so that what is
//! decoded and counted is exactly what the streaming decoder would decode and count:
//!
//! - libdeflate's gzip call succeeds: the deflate stream is valid, ends at some `p` no later than
//!   8 bytes before the guessed end, and the 8 bytes at `p` hold the CRC-32 and the size of the
//!   output (ISIZE);
//! - the output size equals the ISIZE of the last 8 bytes;
//! - those 4 size bytes occur nowhere earlier in the member, so no earlier `p` can hold them:
//!   the trailer is the last 8 bytes and nothing is left over between the member and the guessed
//!   end.
//!
//! Anything else (damage, a wrong guess, garbage after the member, a size over the cap) leaves
//! the output untouched and the caller streams the member instead, which then decides exactly as
//! before.

use std::sync::LazyLock;

use libdeflater::Decompressor;
use memchr::memmem::Finder;

/// Largest output inflated in one call; larger members are streamed in batch-sized pieces.
pub(crate) const MAX_OUTPUT: usize = 4 << 20;

/// Largest member (compressed) looked at whole; it must stay under half the input buffer,
/// which is what the buffer keeps when it refills.
pub(crate) const MAX_INPUT: usize = 256 << 10;

/// Deflate's largest expansion is 1032:1; a claimed size beyond that is damage.
const MAX_RATIO: usize = 1032;

/// The gzip magic and compression method.
pub(crate) const MAGIC: [u8; 3] = [0x1f, 0x8b, 0x08];

/// A searcher for [`MAGIC`], built once rather than on every search.
static MAGIC_FINDER: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(&MAGIC));

/// A libdeflate decompressor, reused across members.
pub(crate) struct WholeMember {
    decompressor: Decompressor,
}

impl WholeMember {
    /// A decompressor for whole members.
    pub(crate) fn new() -> Self {
        Self { decompressor: Decompressor::new() }
    }

    /// Inflates `member` (a gzip member with a `header_len`-byte header, ending exactly where
    /// the caller guessed) and appends its output to `out`. Returns `false`, with `out`
    /// unchanged, unless the member verifiably spans all of `member` (see the module doc).
    pub(crate) fn inflate(&mut self, member: &[u8], header_len: usize, out: &mut Vec<u8>) -> bool {
        let start = out.len();
        // Writing at the end grows `out` to exactly the member's end.
        let whole = self.inflate_at(member, header_len, out, start).is_some();
        if !whole {
            out.truncate(start);
        }
        whole
    }

    /// Like [`WholeMember::inflate`], but writes the output over `out[at..]`, growing `out`
    /// only where it is shorter (bytes already there are written over, not zeroed first), and
    /// returns where the output ends. On `None` the bytes from `at` on are unspecified.
    pub(crate) fn inflate_at(&mut self, member: &[u8], header_len: usize, out: &mut Vec<u8>, at: usize) -> Option<usize> {
        let body_len = member.len().checked_sub(header_len + 8)?;
        let size = member_size(member);
        if size > MAX_OUTPUT || size > body_len.saturating_mul(MAX_RATIO) {
            return None;
        }
        let end = at + size;
        if out.len() < end {
            out.resize(end, 0);
        }
        let whole = matches!(self.decompressor.gzip_decompress(member, &mut out[at..end]), Ok(n) if n == size)
            && !holds_earlier(&member[header_len..member.len() - 1], &member[member.len() - 4..]);
        whole.then_some(end)
    }
}

/// The ISIZE field of the trailer in the last 4 bytes of `member` (at least 4 long).
fn member_size(member: &[u8]) -> usize {
    let b = &member[member.len() - 4..];
    u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize
}

/// Whether the 4 bytes `size` occur in `b`: found by their first byte, without building a
/// searcher for a needle used once.
fn holds_earlier(b: &[u8], size: &[u8]) -> bool {
    memchr::memchr_iter(size[0], b).any(|i| b.get(i..i + size.len()) == Some(size))
}

/// Offset of the first [`MAGIC`] in `b`, whatever follows it.
pub(crate) fn find_magic(b: &[u8]) -> Option<usize> {
    MAGIC_FINDER.find(b)
}

/// Offset of the first plausible gzip member header (magic, method and valid flags) in `b` at or
/// after `from`.
pub(crate) fn next_header_at(b: &[u8], from: usize) -> Option<usize> {
    let mut at = from;
    while let Some(i) = find_magic(b.get(at..)?) {
        let i = at + i;
        match b.get(i + 3) {
            Some(flags) if flags & 0xe0 == 0 => return Some(i),
            Some(_) => at = i + 1,
            None => return None,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::super::gzip::tests::gz;
    use super::*;

    #[test]
    fn a_whole_member_is_inflated() {
        let member = gz(b"hello whole member");
        let mut out = b"kept ".to_vec();
        assert!(WholeMember::new().inflate(&member, 10, &mut out));
        assert_eq!(out, b"kept hello whole member");
    }

    #[test]
    fn a_member_is_written_over_old_bytes() {
        let member = gz(b"written in place");
        // Longer than needed, and full of old bytes: those before `at` stay, the rest are
        // written over or left for the caller to cut off.
        let mut out = vec![0xee; 64];
        assert_eq!(WholeMember::new().inflate_at(&member, 10, &mut out, 3), Some(19));
        assert_eq!(&out[..3], [0xee; 3]);
        assert_eq!(&out[3..19], b"written in place");
        // Shorter than needed: grown to the member's end.
        let mut short = vec![0xee; 5];
        assert_eq!(WholeMember::new().inflate_at(&member, 10, &mut short, 4), Some(20));
        assert_eq!(&short[4..], b"written in place");
    }

    #[test]
    fn bytes_after_the_trailer_are_refused() {
        let mut member = gz(b"payload");
        member.extend_from_slice(b"junk");
        let mut out = Vec::new();
        assert!(!WholeMember::new().inflate(&member, 10, &mut out));
        assert!(out.is_empty());
    }

    #[test]
    fn a_repeated_trailer_after_the_member_is_refused() {
        // The last 8 bytes are a valid trailer, but the real one came earlier: the streaming
        // decoder would count the repeat as garbage, so the whole-member path must not take it.
        let mut member = gz(b"payload");
        let trailer = member[member.len() - 8..].to_vec();
        member.extend_from_slice(&trailer);
        let mut out = Vec::new();
        assert!(!WholeMember::new().inflate(&member, 10, &mut out));
        assert!(out.is_empty());
    }

    #[test]
    fn a_cut_member_is_refused() {
        let member = gz(&[7u8; 10_000].repeat(3));
        let mut out = Vec::new();
        assert!(!WholeMember::new().inflate(&member[..member.len() / 2], 10, &mut out));
        assert!(!WholeMember::new().inflate(&member[..12], 10, &mut out));
        assert!(out.is_empty());
    }

    #[test]
    fn a_bad_crc_or_size_is_refused() {
        let good = gz(b"checked");
        for at in [good.len() - 8, good.len() - 1] {
            let mut bad = good.clone();
            bad[at] ^= 1;
            let mut out = Vec::new();
            assert!(!WholeMember::new().inflate(&bad, 10, &mut out), "byte {at}");
        }
    }

    #[test]
    fn a_size_over_the_cap_is_refused() {
        let member = gz(&vec![0u8; MAX_OUTPUT + 1]);
        let mut out = Vec::new();
        assert!(!WholeMember::new().inflate(&member, 10, &mut out));
        assert!(out.is_empty());
    }

    #[test]
    fn header_search_checks_the_flags() {
        let b = [0u8, 0x1f, 0x8b, 0x08, 0xff, 0x1f, 0x8b, 0x08, 0x00, 0x1f, 0x8b, 0x08];
        assert_eq!(next_header_at(&b, 0), Some(5));
        assert_eq!(next_header_at(&b, 6), None);
        assert_eq!(next_header_at(&b, 40), None);
    }
}
