//! Cutting the decompressed stream into batches of whole records.
//!
//! The [`Splitter`] decompresses straight into a batch buffer, finds complete WARC records in
//! it (jumping over bodies by `Content-Length`), notes the body range of every metadata record
//! and hands the buffer over once it holds `batch_bytes`; the unfinished record at its end
//! moves to the next buffer. Parsing a batch therefore needs no further copy.

use std::io::Read;
use std::ops::Range;

use rayon::ThreadPool;

use super::ahead::Ahead;
use super::error::WatError;
use super::gzip::{Fill, GzipDecoder, GzipStats};
use super::input::InputBuf;
use super::warc::{find_resync, parse_record, separator_len, Parsed, RecordKind};

/// A run of complete records and the metadata bodies among them.
pub(crate) struct Batch {
    /// Decompressed bytes.
    pub(crate) data: Vec<u8>,
    /// Body ranges of the metadata records, in file order.
    pub(crate) metadata: Vec<Range<usize>>,
    /// Input bytes consumed when the batch was cut (for progress).
    pub(crate) bytes_read: u64,
}

enum Source<'p, R> {
    Gzip(Box<GzipDecoder<'p, R>>),
    Plain(InputBuf<Ahead<'p, R>>),
}

/// Stream-level counters of the splitter.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct SplitStats {
    pub(crate) records: u64,
    pub(crate) metadata_records: u64,
    pub(crate) non_wat_records: u64,
    pub(crate) oversized_records: u64,
    pub(crate) partial_records: u64,
    pub(crate) resync_bytes: u64,
    pub(crate) decompressed: u64,
}

/// Turns a WAT input into batches.
pub(crate) struct Splitter<'p, R> {
    source: Source<'p, R>,
    cur: Vec<u8>,
    scan: usize,
    metadata: Vec<Range<usize>>,
    /// Bytes of an oversized record still to be dropped.
    skip: u64,
    ended: bool,
    seen_metadata: bool,
    batch_bytes: usize,
    max_record: u64,
    stats: SplitStats,
}

impl<'p, R: Read> Splitter<'p, R> {
    /// Sniffs the input (gzip or plain WARC) and prepares to split it. With a `pool` of two
    /// threads or more, gzip members are inflated ahead on it ([`Ahead`]), in chunks of a
    /// quarter of `batch_bytes` compressed, at most `2 × threads + 2` chunks at a time.
    ///
    /// # Errors
    ///
    /// [`WatError::Read`] on I/O errors, [`WatError::NotWarc`] when the input starts with
    /// neither a gzip header nor `WARC/`.
    pub(crate) fn new(
        input: R,
        pool: Option<&'p ThreadPool>,
        batch_bytes: usize,
        max_record: u64,
    ) -> Result<Self, WatError> {
        // With one pool thread, inflating on the calling thread while the pool parses is the
        // better split of the work (docs/wat.md).
        let threads = pool.map_or(0, ThreadPool::current_num_threads);
        let ahead_pool = pool.filter(|_| threads >= 2);
        let mut input = InputBuf::new(Ahead::new(input, ahead_pool, batch_bytes / 4, 2 * threads + 2));
        input.want(5, None).map_err(WatError::Read)?;
        let head = input.available();
        let source = if head.starts_with(&[0x1f, 0x8b]) {
            Source::Gzip(Box::new(GzipDecoder::new(input)))
        } else if head.is_empty() || head.starts_with(b"WARC/") {
            Source::Plain(input)
        } else {
            return Err(WatError::NotWarc("it starts with neither a gzip header nor `WARC/`"));
        };
        Ok(Self {
            source,
            cur: Vec::new(),
            scan: 0,
            metadata: Vec::new(),
            skip: 0,
            ended: false,
            seen_metadata: false,
            batch_bytes: batch_bytes.max(4096),
            max_record: max_record.max(1),
            stats: SplitStats::default(),
        })
    }

    /// Whether the input is gzip.
    pub(crate) fn compressed(&self) -> bool {
        matches!(self.source, Source::Gzip(_))
    }

    /// Input bytes consumed so far.
    pub(crate) fn bytes_read(&self) -> u64 {
        match &self.source {
            Source::Gzip(g) => g.offset(),
            Source::Plain(p) => p.offset(),
        }
    }

    /// Gzip-level counters (zero for plain input).
    pub(crate) fn gzip_stats(&self) -> GzipStats {
        match &self.source {
            Source::Gzip(g) => g.stats(),
            Source::Plain(_) => GzipStats::default(),
        }
    }

    /// Splitter counters.
    pub(crate) fn stats(&self) -> SplitStats {
        self.stats
    }

    /// The next batch, or `None` at the end of input. `spare` is a buffer to reuse, whose
    /// contents are no longer needed.
    ///
    /// # Errors
    ///
    /// [`WatError::Read`] on I/O errors; [`WatError::NotWat`] when a request/response record
    /// comes before any metadata record.
    pub(crate) fn next_batch(&mut self, spare: Option<Vec<u8>>) -> Result<Option<Batch>, WatError> {
        loop {
            if self.ended || self.scan >= self.batch_bytes {
                if self.scan == 0 && self.ended {
                    return Ok(None);
                }
                return Ok(Some(self.cut(spare)));
            }
            let want = self.batch_bytes.saturating_sub(self.cur.len()).max(64 * 1024);
            let before = self.cur.len();
            let fill = self.fill(want)?;
            self.stats.decompressed += (self.cur.len() - before) as u64;
            self.scan_records()?;
            match fill {
                Fill::Data => {}
                // Cutting here lets the next chunk's output become the next batch as it is.
                Fill::Boundary if self.scan > 0 && self.scan == self.cur.len() && self.skip == 0 => {
                    return Ok(Some(self.cut(spare)));
                }
                Fill::Boundary => {}
                Fill::Break => self.drop_partial(),
                Fill::End => {
                    self.drop_partial();
                    self.ended = true;
                }
            }
        }
    }

    fn fill(&mut self, want: usize) -> Result<Fill, WatError> {
        match &mut self.source {
            Source::Gzip(g) => g.fill(&mut self.cur, want).map_err(WatError::Read),
            Source::Plain(p) => {
                if p.available().is_empty() && p.refill(None).map_err(WatError::Read)? == 0 {
                    return Ok(Fill::End);
                }
                let n = p.available().len().min(want);
                self.cur.extend_from_slice(&p.available()[..n]);
                p.consume(n);
                Ok(Fill::Data)
            }
        }
    }

    /// Hands over the complete records and keeps the unfinished tail.
    fn cut(&mut self, spare: Option<Vec<u8>>) -> Batch {
        let next = match (spare, &mut self.source) {
            // With nothing left over, the next chunk inflated ahead usually becomes the next
            // buffer as it is: the spare one then serves as the output buffer of a later chunk.
            (Some(buf), Source::Gzip(g)) if self.scan == self.cur.len() => g.recycle(buf),
            (spare, _) => Some(spare.unwrap_or_default()),
        };
        let next = next.map_or_else(Vec::new, |mut next| {
            next.clear();
            next.reserve(self.batch_bytes + self.batch_bytes / 4);
            next.extend_from_slice(&self.cur[self.scan..]);
            next
        });
        let mut data = std::mem::replace(&mut self.cur, next);
        data.truncate(self.scan);
        self.scan = 0;
        Batch { data, metadata: std::mem::take(&mut self.metadata), bytes_read: self.bytes_read() }
    }

    /// Drops an unfinished record after damage or at the end of input.
    fn drop_partial(&mut self) {
        if self.cur.len() > self.scan {
            if self.skip == 0 && separator_len(&self.cur[self.scan..]) < self.cur.len() - self.scan {
                self.stats.partial_records += 1;
            }
            self.cur.truncate(self.scan);
        }
        self.skip = 0;
    }

    /// Finds the complete records after `scan`.
    fn scan_records(&mut self) -> Result<(), WatError> {
        loop {
            if self.skip > 0 {
                let n = usize::try_from(self.skip).unwrap_or(usize::MAX).min(self.cur.len() - self.scan);
                self.cur.drain(self.scan..self.scan + n);
                self.skip -= n as u64;
                if self.skip > 0 {
                    return Ok(());
                }
            }
            let sep = separator_len(&self.cur[self.scan..]);
            self.scan += sep;
            let rest = &self.cur[self.scan..];
            if rest.is_empty() {
                return Ok(());
            }
            match parse_record(rest) {
                Parsed::Complete(rec) => {
                    self.stats.records += 1;
                    if rec.body.len() as u64 > self.max_record {
                        self.stats.oversized_records += 1;
                        self.scan += rec.body.end;
                        continue;
                    }
                    match rec.kind {
                        RecordKind::Metadata => {
                            self.stats.metadata_records += 1;
                            self.seen_metadata = true;
                            self.metadata.push(self.scan + rec.body.start..self.scan + rec.body.end);
                        }
                        RecordKind::Content if !self.seen_metadata => {
                            let record_type = String::from_utf8_lossy(&rest[rec.warc_type]).into_owned();
                            return Err(WatError::NotWat { record_type });
                        }
                        RecordKind::Content => self.stats.non_wat_records += 1,
                        RecordKind::Warcinfo | RecordKind::Other => {}
                    }
                    self.scan += rec.body.end;
                }
                Parsed::Incomplete { content_length: Some(len), body_start: Some(body) } if len > self.max_record => {
                    self.stats.oversized_records += 1;
                    tracing::warn!(content_length = len, "Skipping an oversized WARC record.");
                    let have = (rest.len() - body) as u64;
                    self.skip = len - have;
                    self.cur.truncate(self.scan);
                    return Ok(());
                }
                Parsed::Incomplete { .. } => return Ok(()),
                Parsed::Invalid => match find_resync(rest) {
                    Some(i) => {
                        self.stats.resync_bytes += i as u64;
                        self.cur.drain(self.scan..self.scan + i);
                    }
                    None => {
                        let drop = rest.len().saturating_sub(4);
                        self.stats.resync_bytes += drop as u64;
                        self.cur.drain(self.scan..self.scan + drop);
                        return Ok(());
                    }
                },
            }
        }
    }
}
