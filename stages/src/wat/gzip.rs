//! A damage-tolerant multi-member gzip decoder.
//!
//! Common Crawl writes one gzip member per WARC record. `flate2::MultiGzDecoder` gives up at
//! the first bad byte; this decoder parses member headers and trailers itself and on damage
//! resynchronises at the next `1f 8b 08` member header, counting what it skipped. A member cut
//! short by the end of input is reported as a truncation.
//!
//! A member that lies whole in the input buffer is inflated by libdeflate in one call
//! ([`WholeMember`], which takes it only when that is provably the same decision as streaming);
//! every other member (large, damaged, or followed by garbage) is streamed through
//! `flate2::Decompress` (zlib-rs backend), which checks CRC-32 and size itself.

use std::io::{self, Read};

use flate2::{Crc, Decompress, FlushDecompress, Status};

use super::ahead::Ahead;
use super::input::InputBuf;
use super::member::{self, WholeMember, MAGIC};

/// Largest gzip header accepted (FEXTRA, FNAME and FCOMMENT included).
const MAX_HEADER: usize = 64 * 1024;

/// What a call to [`GzipDecoder::fill`] ended with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fill {
    /// Decompressed bytes were appended; the stream goes on.
    Data,
    /// Like `Data`, and the input now sits at the start of a chunk that was inflated ahead
    /// (`ahead`): the next call with an empty output takes that chunk's output as it is.
    Boundary,
    /// Bytes were lost after the appended data (a bad member or garbage): whatever record is
    /// unfinished at the end of the output must be dropped.
    Break,
    /// End of input (after any truncation, which is in the stats).
    End,
}

/// Counters of the gzip layer.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct GzipStats {
    /// Members decoded and verified.
    pub(crate) members: u64,
    /// Members dropped for a deflate error or a CRC/size mismatch.
    pub(crate) bad_members: u64,
    /// Compressed bytes skipped while looking for the next member header (bad members included).
    pub(crate) garbage_bytes: u64,
    /// Offset of the member that the end of input cut short.
    pub(crate) truncated_at: Option<u64>,
}

/// The member being inflated.
struct Member {
    /// Absolute offset of its first header byte.
    start: u64,
    crc: Crc,
    /// Where its output starts in the output vector, while that is within the current call.
    out_start: Option<usize>,
}

enum Header {
    /// A member header of this length starts at the read position, after `skipped` garbage bytes.
    Found { len: usize, skipped: u64 },
    /// End of input.
    Eof,
}

/// Streams the decompressed content of a (possibly damaged) multi-member gzip file.
pub(crate) struct GzipDecoder<'p, R> {
    input: InputBuf<Ahead<'p, R>>,
    inflate: Decompress,
    whole: WholeMember,
    member: Option<Member>,
    stats: GzipStats,
    done: bool,
}

impl<'p, R: Read> GzipDecoder<'p, R> {
    /// Decodes from `input`, whose read position is at the first member header.
    pub(crate) fn new(input: InputBuf<Ahead<'p, R>>) -> Self {
        Self {
            input,
            inflate: Decompress::new(false),
            whole: WholeMember::new(),
            member: None,
            stats: GzipStats::default(),
            done: false,
        }
    }

    /// Hands a buffer whose contents are no longer needed to the members inflated ahead, or
    /// gives it back (see [`Ahead::recycle`]).
    pub(crate) fn recycle(&mut self, buf: Vec<u8>) -> Option<Vec<u8>> {
        self.input.reader_mut().recycle(buf)
    }

    /// Counters so far.
    pub(crate) fn stats(&self) -> GzipStats {
        self.stats
    }

    /// Compressed bytes consumed so far.
    pub(crate) fn offset(&self) -> u64 {
        self.input.offset()
    }

    /// Appends decompressed bytes to `out` until it has grown by at least `want` bytes at a
    /// member boundary (a single large member returns early with partial output), until damage,
    /// or until the end of input. Output of a member that turns out bad is removed again when
    /// the member started within this call.
    ///
    /// # Errors
    ///
    /// I/O errors of the underlying reader only; damage is reported through [`Fill`] and stats.
    pub(crate) fn fill(&mut self, out: &mut Vec<u8>, want: usize) -> io::Result<Fill> {
        let start_len = out.len();
        if self.done {
            return Ok(Fill::End);
        }
        loop {
            let Some(member) = self.member.as_mut() else {
                if out.len() - start_len >= want {
                    return Ok(Fill::Data);
                }
                match self.next_header()? {
                    Header::Eof => {
                        self.done = true;
                        return Ok(Fill::End);
                    }
                    Header::Found { skipped, .. } if skipped > 0 => {
                        tracing::debug!(skipped, offset = self.input.offset(), "Skipped garbage before a gzip member.");
                        return Ok(Fill::Break);
                    }
                    Header::Found { len, .. } => {
                        if out.is_empty() && self.take_chunk(out)? {
                            return Ok(Fill::Boundary);
                        }
                        match self.take_inflated(out)? {
                            Some(true) => return Ok(Fill::Boundary),
                            Some(false) => continue,
                            None => {}
                        }
                        if self.inflate_whole(out, len)? {
                            continue;
                        }
                        let start = self.input.offset();
                        self.input.consume(len);
                        self.inflate.reset(false);
                        self.member = Some(Member { start, crc: Crc::new(), out_start: Some(out.len()) });
                        continue;
                    }
                }
            };
            if self.input.available().is_empty() && self.input.refill(Some(member.start))? == 0 {
                return Ok(self.truncated(out, start_len));
            }
            if out.capacity() - out.len() < 32 * 1024 {
                out.reserve(want.clamp(64 * 1024, 4 << 20));
            }
            let before_in = self.inflate.total_in();
            let before_out = out.len();
            let status = self.inflate.decompress_vec(self.input.available(), out, FlushDecompress::None);
            let consumed = usize::try_from(self.inflate.total_in() - before_in).unwrap_or(usize::MAX);
            self.input.consume(consumed);
            member.crc.update(&out[before_out..]);
            match status {
                Ok(Status::StreamEnd) => {
                    if !self.finish_member(out, start_len)? {
                        return Ok(Fill::Break);
                    }
                }
                Ok(Status::Ok | Status::BufError) => {
                    if member.out_start.is_none_or(|s| out.len() - s >= want) && out.len() - start_len >= want {
                        // A member larger than a batch: hand over what we have.
                        member.out_start = None;
                        return Ok(Fill::Data);
                    }
                    if consumed == 0 && before_out == out.len() && !self.input.available().is_empty() {
                        // No progress although input and output space exist: treat as corrupt.
                        self.bad_member(out, start_len);
                        return Ok(Fill::Break);
                    }
                }
                Err(_) => {
                    self.bad_member(out, start_len);
                    return Ok(Fill::Break);
                }
            }
        }
    }

    /// Swaps the empty `out` with the output of the read-ahead chunk that starts at the read
    /// position, when its task inflated all of it. Returns whether it did; the chunk is then
    /// consumed and its members counted.
    fn take_chunk(&mut self, out: &mut Vec<u8>) -> io::Result<bool> {
        let start = self.input.offset();
        let Some((end, members)) = self.input.reader_mut().take_chunk(start, out)? else { return Ok(false) };
        self.input.skip_to(end);
        self.stats.members += members;
        Ok(true)
    }

    /// Takes the member whose header is at the read position from the inflate-ahead reader
    /// when one of its tasks inflated it. Returns `None` when it did not, otherwise whether
    /// the member ended its chunk; the member is then consumed and counted.
    fn take_inflated(&mut self, out: &mut Vec<u8>) -> io::Result<Option<bool>> {
        let start = self.input.offset();
        let before = out.len();
        let Some((end, chunk_end)) = self.input.reader_mut().take_member(start, out)? else { return Ok(None) };
        let len = usize::try_from(end - start).unwrap_or(usize::MAX);
        if !self.input.want(len, None)? {
            // unreachable: the task saw these bytes
            out.truncate(before);
            return Ok(None);
        }
        self.input.consume(len);
        self.stats.members += 1;
        Ok(Some(chunk_end))
    }

    /// Inflates the member whose `header_len`-byte header is at the read position in one call
    /// when it lies whole in the input buffer (reading more input to find its end). Returns
    /// whether it did; the member is then consumed and counted.
    fn inflate_whole(&mut self, out: &mut Vec<u8>, header_len: usize) -> io::Result<bool> {
        let mut from = header_len;
        let end = loop {
            let avail = self.input.available();
            if let Some(end) = member::next_header_at(avail, from) {
                break end;
            }
            if self.input.at_eof() {
                break avail.len();
            }
            if avail.len() >= member::MAX_INPUT {
                return Ok(false);
            }
            // A header cut by the end of the buffer is found again after the refill.
            from = avail.len().saturating_sub(3).max(header_len);
            let have = avail.len();
            self.input.want(have + 1, None)?;
        };
        if !self.whole.inflate(&self.input.available()[..end], header_len, out) {
            return Ok(false);
        }
        self.input.consume(end);
        self.stats.members += 1;
        Ok(true)
    }

    /// Reads and checks the trailer of the member whose deflate stream just ended. Returns
    /// `false` when the member was bad (already handled).
    fn finish_member(&mut self, out: &mut Vec<u8>, start_len: usize) -> io::Result<bool> {
        let keep = self.member.as_ref().map(|m| m.start);
        if !self.input.want(8, keep)? {
            self.truncated(out, start_len);
            return Ok(false);
        }
        let trailer = self.input.available();
        let crc = u32::from_le_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]);
        let size = u32::from_le_bytes([trailer[4], trailer[5], trailer[6], trailer[7]]);
        let Some(member) = self.member.as_ref() else { return Ok(true) };
        if member.crc.sum() != crc || member.crc.amount() != size {
            self.bad_member(out, start_len);
            return Ok(false);
        }
        self.input.consume(8);
        self.member = None;
        self.stats.members += 1;
        Ok(true)
    }

    /// End of input inside a member.
    fn truncated(&mut self, out: &mut Vec<u8>, start_len: usize) -> Fill {
        if let Some(member) = self.member.take() {
            if let Some(s) = member.out_start {
                out.truncate(s.max(start_len));
            }
            tracing::warn!(offset = member.start, "WAT input ends inside a gzip member (truncated file).");
            self.stats.truncated_at = Some(member.start);
        }
        self.done = true;
        Fill::End
    }

    /// Drops the current member and positions the input just after its first byte so that the
    /// next header search rescans its bytes.
    fn bad_member(&mut self, out: &mut Vec<u8>, start_len: usize) {
        let Some(member) = self.member.take() else { return };
        if let Some(s) = member.out_start {
            out.truncate(s.max(start_len));
        }
        self.stats.bad_members += 1;
        tracing::warn!(offset = member.start, "Dropped a corrupt gzip member.");
        match self.input.index_of(member.start + 1) {
            Some(index) if index <= self.input.end => {
                self.stats.garbage_bytes += 1;
                self.input.pos = index;
            }
            _ => self.stats.garbage_bytes += self.input.offset() - member.start,
        }
    }

    /// Finds the next member header at or after the read position, skipping garbage.
    fn next_header(&mut self) -> io::Result<Header> {
        let mut skipped = 0u64;
        loop {
            self.input.want(10, None)?;
            let avail = self.input.available();
            if avail.is_empty() {
                return Ok(Header::Eof);
            }
            match parse_header(avail) {
                HeaderParse::Complete(len) => return Ok(Header::Found { len, skipped }),
                HeaderParse::NeedMore if !self.input.at_eof() && avail.len() < MAX_HEADER => {
                    let have = avail.len();
                    self.input.want(have + 1, None)?;
                }
                HeaderParse::NeedMore if self.input.at_eof() && avail.starts_with(&MAGIC[..avail.len().min(3)]) => {
                    // A header cut short by the end of input.
                    self.stats.truncated_at = Some(self.input.offset());
                    let n = avail.len();
                    self.input.consume(n);
                    tracing::warn!(offset = self.input.offset(), "WAT input ends inside a gzip header.");
                    return Ok(Header::Eof);
                }
                HeaderParse::NeedMore | HeaderParse::Invalid => {
                    let avail = self.input.available();
                    let skip = match member::find_magic(&avail[1..]) {
                        Some(i) => i + 1,
                        // Keep a possible magic prefix at the end for the next read.
                        None if !self.input.at_eof() => avail.len().saturating_sub(2).max(1),
                        None => avail.len(),
                    };
                    self.input.consume(skip);
                    skipped += skip as u64;
                    self.stats.garbage_bytes += skip as u64;
                    if self.input.available().is_empty() && self.input.at_eof() {
                        tracing::warn!(skipped, "Garbage at the end of the WAT input.");
                        return Ok(Header::Eof);
                    }
                }
            }
        }
    }
}

/// What [`parse_header`] found.
pub(crate) enum HeaderParse {
    /// A whole header of this length.
    Complete(usize),
    /// The bytes end inside what may be a header.
    NeedMore,
    /// No header here.
    Invalid,
}

/// Parses a gzip member header (RFC 1952) at the start of `b`.
pub(crate) fn parse_header(b: &[u8]) -> HeaderParse {
    if b.len() < 10 {
        return if MAGIC.starts_with(&b[..b.len().min(3)]) { HeaderParse::NeedMore } else { HeaderParse::Invalid };
    }
    let flags = b[3];
    if b[..3] != MAGIC || flags & 0xe0 != 0 {
        return HeaderParse::Invalid;
    }
    let mut i = 10;
    if flags & 0x04 != 0 {
        let Some(xlen) = b.get(i..i + 2) else { return HeaderParse::NeedMore };
        i += 2 + usize::from(u16::from_le_bytes([xlen[0], xlen[1]]));
    }
    for bit in [0x08, 0x10] {
        if flags & bit != 0 {
            let Some(rest) = b.get(i..) else { return HeaderParse::NeedMore };
            match memchr::memchr(0, rest) {
                Some(z) => i += z + 1,
                None => return HeaderParse::NeedMore,
            }
        }
    }
    if flags & 0x02 != 0 {
        i += 2;
    }
    if i > b.len() {
        HeaderParse::NeedMore
    } else {
        HeaderParse::Complete(i)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::io::Write;

    use flate2::{write::GzEncoder, Compression};

    use super::*;

    /// `data` as one gzip member.
    pub(crate) fn gz(data: &[u8]) -> Vec<u8> {
        let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    fn decode_all(input: &[u8]) -> (Vec<u8>, GzipStats, usize) {
        let mut dec = GzipDecoder::new(InputBuf::new(Ahead::new(input, None, 0, 0)));
        let mut out = Vec::new();
        let mut breaks = 0;
        loop {
            match dec.fill(&mut out, 1).unwrap() {
                Fill::Data | Fill::Boundary => {}
                Fill::Break => breaks += 1,
                Fill::End => break,
            }
        }
        (out, dec.stats(), breaks)
    }

    #[test]
    fn members_concatenate() {
        let mut input = gz(b"hello ");
        input.extend(gz(b"world"));
        let (out, stats, breaks) = decode_all(&input);
        assert_eq!(out, b"hello world");
        assert_eq!((stats.members, stats.bad_members, stats.garbage_bytes, breaks), (2, 0, 0, 0));
    }

    #[test]
    fn garbage_between_members_is_skipped() {
        let mut input = gz(b"one ");
        input.extend_from_slice(b"\x1f\x8bjunk\x1f");
        input.extend(gz(b"two"));
        let (out, stats, breaks) = decode_all(&input);
        assert_eq!(out, b"one two");
        assert_eq!((stats.garbage_bytes, breaks), (7, 1));
    }

    #[test]
    fn corrupt_crc_drops_member() {
        let mut bad = gz(b"bad!");
        let n = bad.len();
        bad[n - 8] ^= 0xff;
        let mut input = gz(b"a");
        input.extend(bad);
        input.extend(gz(b"c"));
        let (out, stats, _) = decode_all(&input);
        assert_eq!(out, b"ac");
        assert_eq!(stats.bad_members, 1);
        assert_eq!(stats.members, 2);
    }

    #[test]
    fn truncation_reports_member_offset() {
        let first = gz(b"kept");
        let second = gz(b"lost lost lost");
        let mut input = first.clone();
        input.extend_from_slice(&second[..second.len() - 3]);
        let (out, stats, _) = decode_all(&input);
        assert_eq!(out, b"kept");
        assert_eq!(stats.truncated_at, Some(first.len() as u64));
    }

    #[test]
    fn header_with_optional_fields() {
        let mut enc = flate2::GzBuilder::new()
            .filename("x.warc")
            .comment("c")
            .extra(vec![1, 2, 3])
            .write(Vec::new(), Compression::fast());
        enc.write_all(b"payload").unwrap();
        let (out, stats, _) = decode_all(&enc.finish().unwrap());
        assert_eq!(out, b"payload");
        assert_eq!(stats.members, 1);
    }
}
