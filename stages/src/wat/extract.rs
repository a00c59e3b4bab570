//! The file-level entry points: one WAT file in, one parquet shard and a summary out.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use rayon::{ThreadPool, ThreadPoolBuilder};
use serde::{Deserialize, Serialize};

use super::error::WatError;
use super::options::WatOptions;
use super::parquet_out::PairWriter;
use super::pipeline::extract_batches;
use super::source::{self, Source};
use super::summary::WatSummary;
use crate::stage::{ArtifactError, Input, OutputDir};

/// The result of [`extract_file`]: where the shard went and what happened (job output JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileOutput {
    /// The WAT file read.
    pub input: PathBuf,
    /// The parquet shard written.
    pub output: PathBuf,
    /// Counters.
    pub summary: WatSummary,
}

impl FileOutput {
    /// Publishes the shard through `out` and names it as the next stage reads it: its path, or
    /// its `s3://` URL once uploaded (see [`OutputDir::publish`]).
    ///
    /// # Errors
    /// As [`OutputDir::publish`].
    pub fn publish(&mut self, out: &OutputDir) -> Result<(), ArtifactError> {
        self.output = out.publish(&self.output)?;
        Ok(())
    }
}

/// The shard path for `input` in `out_dir`: the file name without `.gz`, `.wat` and `.warc`
/// suffixes, plus `.parquet` (`CC-MAIN-…-00000.warc.wat.gz` → `CC-MAIN-…-00000.parquet`).
#[must_use]
pub fn output_path(input: &Path, out_dir: &Path) -> PathBuf {
    let mut name = input.file_name().map_or_else(|| "wat".to_owned(), |n| n.to_string_lossy().into_owned());
    for suffix in [".gz", ".wat", ".warc"] {
        if let Some(stem) = name.strip_suffix(suffix) {
            if !stem.is_empty() {
                name = stem.to_owned();
            }
        }
    }
    out_dir.join(format!("{name}.parquet"))
}

/// Builds the parser pool for `options.threads` (`None` when it is 0: parse inline).
///
/// # Errors
///
/// [`WatError::ThreadPool`] when the threads cannot be started.
pub fn build_pool(options: &WatOptions) -> Result<Option<ThreadPool>, WatError> {
    if options.threads == 0 {
        return Ok(None);
    }
    let pool = ThreadPoolBuilder::new()
        .num_threads(options.threads)
        .thread_name(|i| format!("wat-parse-{i}"))
        .build()?;
    Ok(Some(pool))
}

/// Extracts the image/alt pairs of the WAT file `input` (a path, or an `http://`/`https://`
/// URL streamed as it downloads) into `out_dir/<name>.parquet`, on a pool of
/// `options.threads` parser threads built for this call.
///
/// `progress(bytes_done, bytes_total)` is called after each batch (about every MiB of
/// decompressed data) with compressed bytes. The shard is written under a `.partial` name
/// and renamed when complete, so a crash never leaves a truncated shard behind.
///
/// # Errors
///
/// See [`extract_file_in`].
pub fn extract_file(
    input: &Path,
    options: &WatOptions,
    out_dir: &Path,
    progress: impl FnMut(u64, u64),
) -> Result<FileOutput, WatError> {
    let pool = build_pool(options)?;
    extract_file_in(pool.as_ref(), input, options, out_dir, progress)
}

/// Extracts `input` as [`ArtifactStore::open_input`](crate::stage::ArtifactStore::open_input)
/// opened it: a path or `http(s)://` URL through [`extract_file_in`], an object as it
/// downloads through [`extract_reader_in`].
///
/// # Errors
/// As [`extract_file_in`].
pub fn extract_opened_in(
    pool: Option<&ThreadPool>,
    input: &Path,
    opened: Input,
    options: &WatOptions,
    out_dir: &Path,
    progress: impl FnMut(u64, u64),
) -> Result<FileOutput, WatError> {
    match opened {
        Input::Path(path) => extract_file_in(pool, &path, options, out_dir, progress),
        Input::Stream { reader, size } => extract_reader_in(pool, input, reader, size, options, out_dir, progress),
    }
}

/// [`extract_file`] on a caller-provided pool (the engine's per-stage pool), or on the calling
/// thread alone when `pool` is `None`; `options.threads` is ignored.
///
/// # Errors
///
/// [`WatError::Open`] when `input` cannot be opened, [`WatError::Fetch`] when its URL cannot be
/// fetched, [`WatError::Write`] /
/// [`WatError::Parquet`] when the shard cannot be written, [`WatError::NotWarc`] /
/// [`WatError::NotWat`] for inputs of the wrong kind, [`WatError::Read`] on I/O errors.
/// Damaged content (bad records, garbage, truncation) is not an error: see the summary.
pub fn extract_file_in(
    pool: Option<&ThreadPool>,
    input: &Path,
    options: &WatOptions,
    out_dir: &Path,
    progress: impl FnMut(u64, u64),
) -> Result<FileOutput, WatError> {
    let Source { reader, total } = source::open(input)?;
    extract_reader_in(pool, input, reader, total, options, out_dir, progress)
}

/// [`extract_file_in`] on an input already opened: `reader` gives the WAT file named `input`
/// (which names the shard, as in [`output_path`]), of `total` compressed bytes (0 when not
/// known), e.g. an object streamed from a store.
///
/// # Errors
/// As [`extract_file_in`]; a failing `reader` is [`WatError::Read`].
pub fn extract_reader_in(
    pool: Option<&ThreadPool>,
    input: &Path,
    reader: Box<dyn Read>,
    total: u64,
    options: &WatOptions,
    out_dir: &Path,
    progress: impl FnMut(u64, u64),
) -> Result<FileOutput, WatError> {
    let output = output_path(input, out_dir);
    let partial = output.with_extension("parquet.partial");
    let result = (|| {
        let mut writer = PairWriter::create(&partial, options.row_group_rows)?;
        let summary = extract_batches(reader, options, pool, total, |pairs| writer.write_batch(pairs), progress)?;
        writer.finish()?;
        fs::rename(&partial, &output).map_err(|source| WatError::Write { path: output.clone(), source })?;
        Ok(summary)
    })();
    match result {
        Ok(summary) => {
            tracing::info!(
                input = %input.display(),
                pairs = summary.pairs,
                records = summary.records,
                bad_records = summary.skipped.bad_records(),
                truncated_at = ?summary.truncated_at,
                "Extracted WAT pairs."
            );
            Ok(FileOutput { input: input.to_owned(), output, summary })
        }
        Err(e) => {
            // Best effort: the partial file is useless and may not exist.
            let _ = fs::remove_file(&partial);
            Err(e)
        }
    }
}
