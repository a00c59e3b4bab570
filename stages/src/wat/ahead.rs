//! Inflating whole gzip members ahead of the decoder, on the rayon pool.
//!
//! [`Ahead`] sits between the input and the decoder's [`InputBuf`](super::input::InputBuf). It
//! reads the compressed input in chunks of about `chunk_bytes`, cut just before a plausible
//! member header, and hands each chunk to a pool task that inflates, one libdeflate call each
//! ([`WholeMember`]), every member it can prove whole. The decoder, still reading the input
//! through this reader in file order, asks before inflating anything itself: for the whole
//! output of the chunk that starts at its read position, when every member of that chunk was
//! inflated ([`Ahead::take_chunk`]; the buffer changes hands, nothing is copied), otherwise for
//! the member at its read position ([`Ahead::take_member`]). Every member the tasks could not
//! take (damaged, cut by a chunk boundary, too big) it decodes exactly as without this reader.
//!
//! A task computes for a member at offset `s` what the decoder's own one-call path would: the
//! member's end is the first plausible header after its header, or the end of input; the task
//! sees 4 bytes past its chunk (so a header straddling the cut is seen too) and gives no answer
//! when that end lies beyond them. So a member answered here is one the decoder would have
//! inflated whole with the same output, and the decoded stream, the counters and the damage
//! handling do not change. At most `max_chunks` chunks are held, which bounds the memory.
//!
//! Without a pool, and for input that does not start with the gzip magic, the reader only
//! passes bytes through.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::{self, Read};
use std::ops::Range;
use std::sync::{mpsc, Arc};

use rayon::ThreadPool;

use super::gzip::{parse_header, HeaderParse};
use super::member::{self, WholeMember};

/// Bytes past a chunk that its task sees: enough for a header's magic and flags at the cut.
const LOOKAHEAD: usize = 4;

/// A chunk is cut without a header when none is found within this many chunk sizes.
const MAX_CHUNK_FACTOR: usize = 4;

/// Bytes read at a time past a chunk's nominal size while looking for the member header to cut
/// it at: what is read beyond the cut is copied to the next chunk's buffer, so this stays small
/// against the chunk (members are ~1.2 KB).
const CUT_READ: usize = 16 << 10;

/// Output bytes reserved per compressed byte of a chunk (Common Crawl WATs inflate about 5×),
/// so that a chunk's output seldom outgrows its buffer (which would copy it).
const OUTPUT_RATIO: usize = 8;

/// Bytes `read` returns at most from the start of a chunk: enough for the member header that
/// the decoder looks at before taking the whole chunk, whose bytes it then skips uncopied.
const HEAD_READ: usize = 4096;

/// One member inflated by a task.
struct Entry {
    /// Absolute offset of its header.
    start: u64,
    /// Absolute offset just past its trailer.
    end: u64,
    /// Its output in the chunk's output buffer.
    out: Range<usize>,
}

/// What a task found in its chunk.
#[derive(Default)]
struct Inflated {
    entries: Vec<Entry>,
    out: Vec<u8>,
    /// Whether the entries chain from the chunk's first byte to its end: its output is then
    /// the whole decoded stream of the chunk.
    whole: bool,
}

/// The answer of a chunk's task.
enum Answer {
    Waiting(mpsc::Receiver<Inflated>),
    Ready(Inflated),
}

/// A chunk of compressed input.
struct Chunk {
    /// Absolute offset of its first byte.
    base: u64,
    /// Its bytes; the last `LOOKAHEAD` (fewer at the end of input) belong to the next chunk.
    data: Arc<Vec<u8>>,
    /// Length of the chunk proper.
    len: usize,
    answer: Answer,
    /// First entry not yet looked at.
    cursor: usize,
}

impl Chunk {
    fn end(&self) -> u64 {
        self.base + self.len as u64
    }

    /// The task's answer, waiting for it if needed.
    fn inflated(&mut self) -> &mut Inflated {
        if let Answer::Waiting(rx) = &self.answer {
            // A task that panicked answers nothing: the decoder then inflates every member itself.
            self.answer = Answer::Ready(rx.recv().unwrap_or_default());
        }
        match &mut self.answer {
            Answer::Ready(inflated) => inflated,
            Answer::Waiting(_) => unreachable!("the answer was just received"),
        }
    }
}

/// Read-ahead settings.
struct Speculation<'p> {
    pool: &'p ThreadPool,
    chunk_bytes: usize,
    max_chunks: usize,
}

/// A reader that inflates gzip members ahead of the decoder (see the module doc).
pub(crate) struct Ahead<'p, R> {
    inner: R,
    /// `None`: pass-through.
    spec: Option<Speculation<'p>>,
    /// Whether the first bytes were looked at.
    sniffed: bool,
    /// Bytes read from `inner` that are in no chunk yet.
    pending: Vec<u8>,
    /// Absolute offset of `pending[0]`.
    pending_base: u64,
    inner_eof: bool,
    chunks: VecDeque<Chunk>,
    /// Absolute offset of the next byte `read` returns.
    served: u64,
    /// Emptied output buffers, for the next tasks.
    spare: Vec<Vec<u8>>,
    /// Input buffers of finished chunks, for reading the next ones.
    spare_input: Vec<Vec<u8>>,
}

impl<'p, R: Read> Ahead<'p, R> {
    /// Reads `inner` in chunks of about `chunk_bytes` compressed bytes and inflates them on
    /// `pool`, holding at most `max_chunks` chunks; `pool` `None` passes bytes through.
    pub(crate) fn new(inner: R, pool: Option<&'p ThreadPool>, chunk_bytes: usize, max_chunks: usize) -> Self {
        let spec = pool.map(|pool| Speculation { pool, chunk_bytes: chunk_bytes.max(1024), max_chunks: max_chunks.max(1) });
        Self {
            inner,
            spec,
            sniffed: false,
            pending: Vec::new(),
            pending_base: 0,
            inner_eof: false,
            chunks: VecDeque::new(),
            served: 0,
            spare: Vec::new(),
            spare_input: Vec::new(),
        }
    }

    /// When the chunk that starts at absolute offset `start` was inflated whole, swaps its
    /// output with the empty `out` (whose buffer is kept for later tasks) and returns the
    /// chunk's end offset and its number of members. The caller then skips the chunk's
    /// compressed bytes ([`Ahead::skip_to`]).
    ///
    /// # Errors
    ///
    /// I/O errors of the input, met while reading further chunks ahead.
    pub(crate) fn take_chunk(&mut self, start: u64, out: &mut Vec<u8>) -> io::Result<Option<(u64, u64)>> {
        debug_assert!(out.is_empty());
        if self.spec.is_none() {
            return Ok(None);
        }
        self.drop_chunks_before(start)?;
        let Some(chunk) = self.chunks.front_mut().filter(|c| c.base == start) else { return Ok(None) };
        let end = chunk.end();
        let inflated = chunk.inflated();
        if !inflated.whole {
            return Ok(None);
        }
        std::mem::swap(out, &mut inflated.out);
        let members = inflated.entries.len() as u64;
        let spare = std::mem::take(&mut inflated.out);
        self.pop_chunk();
        // The caller's buffer was empty: it is kept only for its capacity.
        let _ = self.recycle(spare);
        Ok(Some((end, members)))
    }

    /// Takes `buf`, whose contents are no longer needed, as the output buffer of a later
    /// chunk, or gives it back when no more are wanted (or nothing is inflated ahead). A task
    /// writes its output over the bytes `buf` holds rather than zeroing them first, so a
    /// buffer handed back full (a parsed batch) saves zeroing that much of the next output.
    pub(crate) fn recycle(&mut self, buf: Vec<u8>) -> Option<Vec<u8>> {
        let Some(spec) = &self.spec else { return Some(buf) };
        if buf.capacity() == 0 || self.spare.len() >= spec.max_chunks {
            return Some(buf);
        }
        self.spare.push(buf);
        None
    }

    /// Moves the read position forward to absolute offset `offset`, which lies within the
    /// chunks read so far, skipping the bytes in between.
    pub(crate) fn skip_to(&mut self, offset: u64) {
        debug_assert!(offset <= self.pending_base);
        self.served = self.served.max(offset);
    }

    /// Lets go of the chunks that end at or before `offset` and reads ahead again.
    fn drop_chunks_before(&mut self, offset: u64) -> io::Result<()> {
        while self.chunks.front().is_some_and(|c| c.end() <= offset) {
            self.pop_chunk();
        }
        self.top_up()
    }

    /// Lets go of the first chunk, keeping its input buffer when its task is done with it.
    fn pop_chunk(&mut self) {
        let Some(chunk) = self.chunks.pop_front() else { return };
        if let Ok(data) = Arc::try_unwrap(chunk.data) {
            if self.spare_input.len() <= self.chunks.len() {
                self.spare_input.push(data);
            }
        }
    }

    /// Appends the output of the member whose header is at absolute offset `start`, when a
    /// task inflated it, and returns the offset just past it and whether that is the end of
    /// a chunk (where [`Ahead::take_chunk`] may take the next one whole).
    ///
    /// # Errors
    ///
    /// I/O errors of the input, met while reading further chunks ahead.
    pub(crate) fn take_member(&mut self, start: u64, out: &mut Vec<u8>) -> io::Result<Option<(u64, bool)>> {
        if self.spec.is_none() {
            return Ok(None);
        }
        self.drop_chunks_before(start)?;
        let Some(chunk) = self.chunks.front_mut().filter(|c| c.base <= start) else { return Ok(None) };
        let chunk_end = chunk.end();
        let mut cursor = chunk.cursor;
        let inflated = chunk.inflated();
        while inflated.entries.get(cursor).is_some_and(|e| e.start < start) {
            cursor += 1;
        }
        let found = inflated.entries.get(cursor).filter(|e| e.start == start).map(|e| {
            out.extend_from_slice(&inflated.out[e.out.clone()]);
            (e.end, e.end == chunk_end)
        });
        chunk.cursor = cursor;
        Ok(found)
    }

    /// Reads chunks ahead until `max_chunks` are held or the input ends.
    fn top_up(&mut self) -> io::Result<()> {
        let max = self.spec.as_ref().map_or(0, |s| s.max_chunks);
        while self.chunks.len() < max && self.next_chunk()? {}
        Ok(())
    }

    /// Looks at the first bytes: only gzip input is inflated ahead.
    fn sniff(&mut self) -> io::Result<()> {
        self.sniffed = true;
        if self.spec.is_none() {
            return Ok(());
        }
        while self.pending.len() < 2 && self.read_more(2)? > 0 {}
        if !self.pending.starts_with(&[0x1f, 0x8b]) {
            self.spec = None;
        }
        Ok(())
    }

    /// Reads up to `n` more bytes of input into `pending`; returns how many (0 at the end).
    fn read_more(&mut self, n: usize) -> io::Result<usize> {
        if self.inner_eof {
            return Ok(0);
        }
        // `read_to_end` on a `take` appends into the spare capacity without zeroing it first
        // (a file reads straight into it), unlike a `resize` then `read`.
        let old = self.pending.len();
        // Room for the lookahead bytes a chunk is given, so that adding them never reallocates.
        self.pending.reserve(n + LOOKAHEAD);
        let result = (&mut self.inner).take(n as u64).read_to_end(&mut self.pending);
        let got = match result {
            Ok(got) => got,
            Err(e) => {
                self.pending.truncate(old);
                return Err(e);
            }
        };
        self.inner_eof = got == 0;
        Ok(got)
    }

    /// Cuts the next chunk off the input and starts its task; `false` at the end of input.
    fn next_chunk(&mut self) -> io::Result<bool> {
        let Some(chunk_bytes) = self.spec.as_ref().map(|s| s.chunk_bytes) else { return Ok(false) };
        let mut from = chunk_bytes;
        let cut = loop {
            let found = member::next_header_at(&self.pending, from).filter(|&i| i > 0);
            if let Some(i) = found {
                break i;
            }
            if self.inner_eof {
                break self.pending.len();
            }
            if self.pending.len() >= MAX_CHUNK_FACTOR * chunk_bytes {
                break self.pending.len() - LOOKAHEAD;
            }
            // A header cut by the end of what was read is found again after reading more.
            from = from.max(self.pending.len().saturating_sub(3));
            self.read_more((chunk_bytes + CUT_READ).saturating_sub(self.pending.len()).max(CUT_READ))?;
        };
        if cut == 0 {
            return Ok(false);
        }
        let mut rest = self.spare_input.pop().unwrap_or_default();
        rest.clear();
        rest.extend_from_slice(&self.pending[cut..]);
        self.pending.truncate(cut);
        let mut data = std::mem::replace(&mut self.pending, rest);
        data.extend_from_slice(&self.pending[..self.pending.len().min(LOOKAHEAD)]);
        let base = self.pending_base;
        self.pending_base += cut as u64;
        let to_end = self.inner_eof && self.pending.is_empty();
        let data = Arc::new(data);
        let (tx, rx) = mpsc::channel();
        let task_data = Arc::clone(&data);
        let out = self.spare.pop().unwrap_or_default();
        if let Some(spec) = &self.spec {
            spec.pool.spawn(move || {
                let inflated = inflate_chunk(&task_data, cut, base, to_end, out, chunk_bytes + CUT_READ);
                // The input goes back to the reader for reuse once the answer is in.
                drop(task_data);
                // A send error means the reader is gone: nobody wants the answer.
                let _ = tx.send(inflated);
            });
        }
        self.chunks.push_back(Chunk { base, data, len: cut, answer: Answer::Waiting(rx), cursor: 0 });
        Ok(true)
    }
}

impl<R: Read> Read for Ahead<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if !self.sniffed {
            self.sniff()?;
        }
        if self.spec.is_none() {
            if self.pending.is_empty() {
                return self.inner.read(buf);
            }
            let n = buf.len().min(self.pending.len());
            buf[..n].copy_from_slice(&self.pending[..n]);
            self.pending.drain(..n);
            return Ok(n);
        }
        let served = self.served;
        // Chunks the decoder never asked about (a long streamed member) are let go here.
        let max = self.spec.as_ref().map_or(0, |s| s.max_chunks);
        while self.chunks.len() > max && self.chunks.front().is_some_and(|c| c.end() <= served) {
            self.pop_chunk();
        }
        if self.chunks.back().is_none_or(|c| c.end() <= served) && !self.next_chunk()? {
            return Ok(0);
        }
        let Some(chunk) = self.chunks.iter().find(|c| c.base <= served && served < c.end()) else {
            return Ok(0);
        };
        let from = usize::try_from(served - chunk.base).unwrap_or(usize::MAX);
        let limit = if from == 0 { HEAD_READ } else { chunk.len - from };
        let n = buf.len().min(limit).min(chunk.len - from);
        buf[..n].copy_from_slice(&chunk.data[from..from + n]);
        self.served += n as u64;
        Ok(n)
    }
}

/// Inflates every member of `data[..len]` that [`WholeMember`] proves whole, following the
/// chain of members from the start (after a failure, from the next plausible header). `base`
/// is the absolute offset of `data[0]`; `to_end` says that `data` ends at the end of input;
/// `out` is a buffer to reuse for the output: the bytes it holds are written over, not zeroed
/// first (see [`Ahead::recycle`]); `usual_len` is the length of a usual chunk, which a fresh
/// output buffer is sized for.
fn inflate_chunk(data: &[u8], len: usize, base: u64, to_end: bool, mut out: Vec<u8>, usual_len: usize) -> Inflated {
    if out.capacity() < len * OUTPUT_RATIO {
        // Growing a used buffer would copy its old bytes: a fresh one, sized for any usual
        // chunk, costs less.
        out = Vec::with_capacity(len.max(usual_len) * OUTPUT_RATIO);
    }
    WHOLE.with_borrow_mut(|whole| inflate_chunk_with(whole, data, len, base, to_end, out))
}

thread_local! {
    /// Each pool thread's decompressor, kept across chunks.
    static WHOLE: RefCell<WholeMember> = RefCell::new(WholeMember::new());
}

/// [`inflate_chunk`] with the decompressor `whole`.
fn inflate_chunk_with(whole: &mut WholeMember, data: &[u8], len: usize, base: u64, to_end: bool, out: Vec<u8>) -> Inflated {
    let mut written = 0;
    let mut inflated = Inflated { entries: Vec::new(), out, whole: true };
    let mut p = 0;
    while p < len {
        if let HeaderParse::Complete(header_len) = parse_header(&data[p..]) {
            let end = member::next_header_at(data, p + header_len).or(to_end.then_some(data.len()));
            if let Some(end) = end.filter(|&e| e - p < member::MAX_INPUT) {
                if let Some(out_end) = whole.inflate_at(&data[p..end], header_len, &mut inflated.out, written) {
                    inflated.entries.push(Entry { start: base + p as u64, end: base + end as u64, out: written..out_end });
                    written = out_end;
                    p = end;
                    continue;
                }
            }
        }
        inflated.whole = false;
        match member::next_header_at(data, p + 1) {
            Some(next) if next < len => p = next,
            _ => break,
        }
    }
    // What lies past the output is left from the buffer's earlier use.
    inflated.out.truncate(written);
    inflated
}

#[cfg(test)]
mod tests {
    use super::super::gzip::tests::gz;
    use super::*;

    fn pool() -> ThreadPool {
        rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap()
    }

    #[test]
    fn bytes_pass_through_unchanged() {
        let mut input = gz(b"one");
        input.extend_from_slice(b"junk\x1f\x8b\x08");
        input.extend(gz(b"two"));
        let pool = pool();
        for spec in [None, Some(&pool)] {
            let mut got = Vec::new();
            Ahead::new(&input[..], spec, 1024, 2).read_to_end(&mut got).unwrap();
            assert_eq!(got, input);
        }
    }

    #[test]
    fn members_are_answered_by_offset() {
        let parts: Vec<Vec<u8>> = (0..400).map(|i| gz(format!("member {i} ").repeat(i % 7 + 1).as_bytes())).collect();
        let input = parts.concat();
        let pool = pool();
        let mut ahead = Ahead::new(&input[..], Some(&pool), 1024, 3);
        let mut start = 0u64;
        for (i, part) in parts.iter().enumerate() {
            let mut out = Vec::new();
            assert_eq!(ahead.take_member(start, &mut out).unwrap().map(|(end, _)| end), Some(start + part.len() as u64), "member {i}");
            assert_eq!(out, format!("member {i} ").repeat(i % 7 + 1).as_bytes());
            start += part.len() as u64;
        }
    }

    #[test]
    fn whole_chunks_are_swapped_in_and_damaged_ones_are_not() {
        let parts: Vec<Vec<u8>> = (0..300).map(|i| gz(format!("part {i} ").repeat(i % 5 + 1).as_bytes())).collect();
        let mut input = parts.concat();
        let bad_at = input.len() * 3 / 4;
        input[bad_at] ^= 0x55;
        let pool = pool();
        let mut ahead = Ahead::new(&input[..], Some(&pool), 1024, 4);
        let (mut start, mut whole, mut refused) = (0u64, 0, 0);
        while start < input.len() as u64 {
            let mut out = Vec::new();
            let Some((end, members)) = ahead.take_chunk(start, &mut out).unwrap() else {
                refused += 1;
                // Move on member by member to the next chunk.
                let (end, _) = ahead.take_member(start, &mut out).unwrap().unwrap_or((start + 1, false));
                start = input[end as usize..].windows(3).position(|w| w == [0x1f, 0x8b, 0x08]).map_or(input.len() as u64, |i| end + i as u64);
                ahead.skip_to(start);
                continue;
            };
            assert!(end > start && members > 0);
            assert!(end <= bad_at as u64 || start > bad_at as u64, "the damaged chunk was taken");
            let mut want = Vec::new();
            flate2::read::MultiGzDecoder::new(&input[start as usize..end as usize]).read_to_end(&mut want).unwrap();
            assert_eq!(out, want);
            ahead.skip_to(end);
            start = end;
            whole += 1;
            // A used buffer comes back full of old bytes, which later chunks write over.
            out.fill(0xee);
            out.extend_from_slice(&[0xee; 5000]);
            // Taken unless as many spare buffers as chunks (4) are held already.
            assert!(ahead.recycle(out).is_none() || ahead.spare.len() >= 4);
        }
        assert!(whole > 5 && refused > 0, "{whole} {refused}");
    }

    #[test]
    fn damaged_members_get_no_answer() {
        let good = gz(b"good");
        let mut bad = gz(b"bad");
        let n = bad.len();
        bad[n - 5] ^= 1;
        let input = [good.clone(), bad.clone(), good.clone()].concat();
        let pool = pool();
        let mut ahead = Ahead::new(&input[..], Some(&pool), 1024, 2);
        let mut out = Vec::new();
        assert_eq!(ahead.take_member(0, &mut out).unwrap().map(|(end, _)| end), Some(good.len() as u64));
        assert_eq!(ahead.take_member(good.len() as u64, &mut out).unwrap().map(|(end, _)| end), None);
        let third = (good.len() + bad.len()) as u64;
        assert_eq!(ahead.take_member(third, &mut out).unwrap().map(|(end, _)| end), Some(input.len() as u64));
        assert_eq!(out, b"goodgood");
    }

    #[test]
    fn a_truncated_last_member_gets_no_answer() {
        let good = gz(b"kept");
        let cut = gz(b"cut short");
        let input = [&good[..], &cut[..cut.len() - 3]].concat();
        let pool = pool();
        let mut ahead = Ahead::new(&input[..], Some(&pool), 1024, 2);
        let mut out = Vec::new();
        assert_eq!(ahead.take_member(0, &mut out).unwrap().map(|(end, _)| end), Some(good.len() as u64));
        assert_eq!(ahead.take_member(good.len() as u64, &mut out).unwrap().map(|(end, _)| end), None);
    }
}
