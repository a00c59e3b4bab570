//! Common Crawl WAT parsing: image URL / alt-text pairs, the cc2dataset 1.5.0 way.
//!
//! A WAT file (`.warc.wat.gz`, one gzip member per record, or plain `.warc.wat`) is streamed
//! with bounded memory, its `metadata` records are parsed in parallel on a rayon pool, and the
//! `IMG@/src` links with a non-empty `alt` become [`Pair`]s, in file order, written to a
//! parquet shard. Damage is the normal case at Common Crawl scale, so a bad record, link or gzip
//! member, garbage between members or a truncated file is skipped and counted in the
//! [`WatSummary`], never fatal.
//!
//! # Layout
//!
//! - `extract`: [`extract_file`] / [`extract_file_in`], the file-to-shard entry points;
//! - `pipeline`: [`extract_pairs`], the ordered parallel pipeline over any `Read`;
//! - `split`, `warc`: batching the decompressed stream into whole WARC records;
//! - `source`: a local path or an `http(s)://` URL, streamed;
//! - `gzip`, `member`, `input`: the damage-tolerant multi-member gzip decoder;
//! - `ahead`: whole members inflated ahead of that decoder on the rayon pool;
//! - `record`: [`parse_metadata_record`], one record's JSON to pairs (the fuzz target);
//! - `urljoin`: Python's `urljoin`, ported for byte-identical URLs;
//! - `options`, `summary`, `error`, `parquet_out`: settings, counters, errors, output;
//! - `stage`: [`WatStage`], the file-to-shard step as a pipeline [`Stage`](crate::stage::Stage).
//!
//! # Example
//!
//! ```no_run
//! use cascade_stages::wat::{extract_file, WatOptions};
//!
//! let opts = WatOptions { threads: 2, ..WatOptions::default() };
//! let out = extract_file("CC-MAIN-x.warc.wat.gz".as_ref(), &opts, "out".as_ref(), |done, total| {
//!     eprintln!("{done}/{total}");
//! })?;
//! println!("{}", serde_json::to_string(&out)?);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod ahead;
mod batch;
mod error;
mod extract;
mod gzip;
mod input;
mod member;
mod options;
mod parquet_out;
mod pipeline;
mod record;
mod source;
mod split;
mod stage;
mod summary;
mod urljoin;
mod warc;

pub use error::WatError;
pub use extract::{build_pool, extract_file, extract_file_in, extract_opened_in, extract_reader_in, output_path, FileOutput};
pub use options::{WatFilters, WatOptions};
pub use parquet_out::{PairWriter, PAIR_SCHEMA};
pub use pipeline::extract_pairs;
pub use record::{parse_metadata_record, Pair, RecordError};
pub use stage::WatStage;
pub use summary::{SkipCounts, WatSummary};

/// Python-compatible `urljoin`, exposed for tests and fuzzing.
///
/// Returns `None` where Python raises `ValueError`.
#[must_use]
pub fn python_urljoin(base: &str, url: &str) -> Option<String> {
    urljoin::urljoin(base, url).ok()
}
