//! The parallel extraction pipeline over any [`Read`].
//!
//! The calling thread decompresses and splits the input into batches ([`Splitter`]); a rayon
//! pool parses the batches' metadata records; the calling thread receives the results, puts
//! them back in file order, applies the uid dedup and hands the pairs to the sink. At most
//! `2 × threads + 1` batches are in flight, so memory stays bounded by about that many
//! `batch_bytes` whatever the file size.

use std::collections::{BTreeMap, HashSet};
use std::io::Read;
use std::sync::mpsc;

use rayon::ThreadPool;

use super::error::WatError;
use super::options::{WatFilters, WatOptions};
use super::batch::PairBatch;
use super::record::{parse_into, Pair, RecordError};
use super::split::{Batch, Splitter};
use super::summary::WatSummary;

/// Parsed output of one batch.
struct Parsed {
    pairs: PairBatch,
    stats: WatSummary,
    /// The batch's buffer, returned for reuse (its contents are no longer needed).
    buf: Vec<u8>,
    bytes_read: u64,
}

fn parse_batch(batch: Batch, filters: &WatFilters) -> Parsed {
    let mut pairs = PairBatch::default();
    let mut stats = WatSummary::default();
    for body in &batch.metadata {
        if let Err(e) = parse_into(&batch.data[body.clone()], filters, &mut pairs, &mut stats) {
            let s = &mut stats.skipped;
            match e {
                RecordError::InvalidUtf8 => s.invalid_utf8 += 1,
                RecordError::InvalidJson => s.invalid_json += 1,
                RecordError::UnexpectedSchema => s.unexpected_schema += 1,
                RecordError::MissingField(_) => s.missing_field += 1,
            }
        }
    }
    // The buffer goes back as it is: the next inflate writes over its bytes.
    Parsed { pairs, stats, buf: batch.data, bytes_read: batch.bytes_read }
}

/// Ordered consumer state: dedup, counters, buffer recycling.
struct Collector<'a, S, P> {
    summary: WatSummary,
    seen: Option<HashSet<u128>>,
    free: Vec<Vec<u8>>,
    total: u64,
    sink: &'a mut S,
    progress: &'a mut P,
}

impl<S, P> Collector<'_, S, P>
where
    S: FnMut(PairBatch) -> Result<(), WatError>,
    P: FnMut(u64, u64),
{
    fn accept(&mut self, mut parsed: Parsed) -> Result<(), WatError> {
        self.summary.add_batch(&parsed.stats);
        if let Some(seen) = &mut self.seen {
            let dropped = parsed.pairs.retain_uids(|uid| seen.insert(u128::from_str_radix(uid, 16).unwrap_or_default())) as u64;
            self.summary.skipped.duplicate_uid += dropped;
            self.summary.pairs -= dropped;
        }
        if self.free.len() < 4 {
            self.free.push(parsed.buf);
        }
        if !parsed.pairs.is_empty() {
            (self.sink)(parsed.pairs)?;
        }
        (self.progress)(parsed.bytes_read, self.total);
        Ok(())
    }
}

/// Extracts the pairs of a WAT stream (gzip or plain WARC) and passes them to `sink` in file
/// order, batch by batch.
///
/// Parsing runs on `pool` when given (decompression stays on the calling thread), otherwise
/// everything runs on the calling thread. `total` is only passed through to `progress`, which
/// is called after each batch with the input bytes consumed so far.
///
/// # Errors
///
/// [`WatError::Read`] for I/O errors, [`WatError::NotWarc`] / [`WatError::NotWat`] for inputs of
/// the wrong kind, and whatever `sink` returns. Damaged content is never an error.
pub fn extract_pairs<R, S, P>(
    input: R,
    options: &WatOptions,
    pool: Option<&ThreadPool>,
    total: u64,
    mut sink: S,
    progress: P,
) -> Result<WatSummary, WatError>
where
    R: Read,
    S: FnMut(Vec<Pair>) -> Result<(), WatError>,
    P: FnMut(u64, u64),
{
    extract_batches(input, options, pool, total, |batch| sink(batch.into_pairs()), progress)
}

/// [`extract_pairs`], passing each batch's pairs to `sink` as one [`PairBatch`].
pub(crate) fn extract_batches<R, S, P>(
    input: R,
    options: &WatOptions,
    pool: Option<&ThreadPool>,
    total: u64,
    mut sink: S,
    mut progress: P,
) -> Result<WatSummary, WatError>
where
    R: Read,
    S: FnMut(PairBatch) -> Result<(), WatError>,
    P: FnMut(u64, u64),
{
    let mut splitter = Splitter::new(input, pool, options.batch_bytes, options.max_record_bytes)?;
    let mut c = Collector {
        summary: WatSummary::default(),
        seen: options.filters.dedup_uid.then(HashSet::new),
        free: Vec::new(),
        total,
        sink: &mut sink,
        progress: &mut progress,
    };
    let filters = &options.filters;
    match pool {
        None => {
            while let Some(batch) = splitter.next_batch(c.free.pop())? {
                c.accept(parse_batch(batch, filters))?;
            }
        }
        Some(pool) => {
            let max_in_flight = 2 * pool.current_num_threads() as u64 + 1;
            pool.in_place_scope(|scope| -> Result<(), WatError> {
                let (tx, rx) = mpsc::channel::<(u64, Parsed)>();
                let mut pending = BTreeMap::new();
                let (mut sent, mut done) = (0u64, 0u64);
                let mut more = true;
                while more || done < sent {
                    // Block for a result when the window is full or the input is exhausted;
                    // otherwise only take what is ready.
                    let block = !more || sent - done >= max_in_flight;
                    let received = if block { rx.recv().ok() } else { rx.try_recv().ok() };
                    if let Some((seq, parsed)) = received {
                        pending.insert(seq, parsed);
                        while let Some(parsed) = pending.remove(&done) {
                            c.accept(parsed)?;
                            done += 1;
                        }
                        continue;
                    }
                    if !more || sent - done >= max_in_flight {
                        continue;
                    }
                    match splitter.next_batch(c.free.pop())? {
                        Some(batch) => {
                            let tx = tx.clone();
                            let seq = sent;
                            scope.spawn(move |_| {
                                // A send error means the receiver gave up on an error: drop it.
                                let _ = tx.send((seq, parse_batch(batch, filters)));
                            });
                            sent += 1;
                        }
                        None => more = false,
                    }
                }
                Ok(())
            })?;
        }
    }
    let mut summary = c.summary;
    let split = splitter.stats();
    let gzip = splitter.gzip_stats();
    summary.compressed = splitter.compressed();
    summary.bytes_read = splitter.bytes_read();
    summary.bytes_decompressed = split.decompressed;
    summary.gzip_members = gzip.members;
    summary.bad_gzip_members = gzip.bad_members;
    summary.garbage_bytes = gzip.garbage_bytes;
    summary.truncated_at = gzip.truncated_at;
    summary.resync_bytes = split.resync_bytes;
    summary.records = split.records;
    summary.metadata_records = split.metadata_records;
    summary.skipped.oversized_record = split.oversized_records;
    summary.skipped.partial_record = split.partial_records;
    summary.skipped.non_wat_record = split.non_wat_records;
    if summary.records == 0 && summary.bytes_decompressed > 0 && summary.truncated_at.is_none() {
        return Err(WatError::NotWarc("no WARC record found in the decompressed data"));
    }
    Ok(summary)
}
