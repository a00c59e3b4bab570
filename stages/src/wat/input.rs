//! A byte buffer over any [`Read`] that tracks absolute input offsets.
//!
//! The gzip decoder needs to look ahead (member headers, trailers), to rescan bytes it has
//! already looked at (resynchronising after a corrupt member) and to know the file offset of
//! every byte (for the truncation report); `BufReader` offers none of that.

use std::io::{self, Read};

use super::ahead::Ahead;

/// Input buffer size: large enough to hold a typical Common Crawl WAT gzip member whole, so
/// that a corrupt member can be rescanned from its first byte.
const CAPACITY: usize = 1 << 20;

/// Buffered input with absolute offsets.
pub(crate) struct InputBuf<R> {
    input: R,
    buf: Box<[u8]>,
    /// Next unread byte.
    pub(crate) pos: usize,
    /// End of the valid bytes.
    pub(crate) end: usize,
    /// Absolute input offset of `buf[0]`.
    base: u64,
    eof: bool,
}

impl<R: Read> InputBuf<R> {
    /// Wraps `input`.
    pub(crate) fn new(input: R) -> Self {
        Self { input, buf: vec![0; CAPACITY].into_boxed_slice(), pos: 0, end: 0, base: 0, eof: false }
    }

    /// The unread bytes.
    pub(crate) fn available(&self) -> &[u8] {
        &self.buf[self.pos..self.end]
    }

    /// The underlying reader.
    pub(crate) fn reader_mut(&mut self) -> &mut R {
        &mut self.input
    }

    /// Marks `n` unread bytes as consumed.
    pub(crate) fn consume(&mut self, n: usize) {
        debug_assert!(self.pos + n <= self.end);
        self.pos += n;
    }

    /// Whether the underlying reader has reported end of input.
    pub(crate) fn at_eof(&self) -> bool {
        self.eof
    }

    /// Absolute input offset of the next unread byte (= bytes consumed so far).
    pub(crate) fn offset(&self) -> u64 {
        self.base + self.pos as u64
    }

    /// Buffer index of absolute offset `offset`, if that byte is still buffered.
    pub(crate) fn index_of(&self, offset: u64) -> Option<usize> {
        let index = usize::try_from(offset.checked_sub(self.base)?).ok()?;
        (index <= self.end).then_some(index)
    }

    /// Reads more input, keeping every byte from absolute offset `keep_from` on when it is still
    /// buffered and fits (otherwise only the unread bytes are kept). Returns the number of bytes
    /// added; 0 means end of input.
    ///
    /// # Errors
    ///
    /// Any I/O error of the reader other than `Interrupted`.
    pub(crate) fn refill(&mut self, keep_from: Option<u64>) -> io::Result<usize> {
        if self.eof {
            return Ok(0);
        }
        let keep = keep_from
            .and_then(|o| self.index_of(o))
            .filter(|&k| k <= self.pos && self.end - k < CAPACITY / 2)
            .unwrap_or(self.pos);
        if self.end == self.buf.len() || keep > CAPACITY / 2 {
            self.buf.copy_within(keep..self.end, 0);
            self.base += keep as u64;
            self.pos -= keep;
            self.end -= keep;
        }
        if self.end == self.buf.len() {
            // unreachable in practice: callers never ask for more than half the buffer
            return Err(io::Error::other("WAT input buffer full"));
        }
        loop {
            match self.input.read(&mut self.buf[self.end..]) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(0);
                }
                Ok(n) => {
                    self.end += n;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Refills until at least `n` unread bytes are buffered or input ends; returns whether
    /// `n` bytes are available.
    ///
    /// # Errors
    ///
    /// Any I/O error of the reader.
    pub(crate) fn want(&mut self, n: usize, keep_from: Option<u64>) -> io::Result<bool> {
        while self.end - self.pos < n {
            if self.refill(keep_from)? == 0 {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

impl<R: Read> InputBuf<Ahead<'_, R>> {
    /// Moves the read position forward to absolute offset `offset` (within what the reader has
    /// read ahead), dropping the buffered bytes before it and telling the reader to skip the
    /// ones it has not handed over yet.
    pub(crate) fn skip_to(&mut self, offset: u64) {
        let buffered_end = self.base + self.end as u64;
        if offset <= buffered_end {
            self.pos = usize::try_from(offset - self.base).unwrap_or(self.end);
        } else {
            self.input.skip_to(offset);
            self.base = offset;
            self.pos = 0;
            self.end = 0;
        }
    }
}
