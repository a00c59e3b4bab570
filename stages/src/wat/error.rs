//! Errors that stop the extraction of a whole file.
//!
//! Damage inside a file (a bad record, link or gzip member, garbage, truncation) is not an
//! error: it is skipped and counted in [`WatSummary`](super::WatSummary).

use std::io;
use std::path::PathBuf;

/// Why a WAT file could not be processed.
#[derive(Debug, thiserror::Error)]
#[must_use]
#[non_exhaustive]
pub enum WatError {
    /// The input file could not be opened or its size read.
    #[error("cannot open {path}: {source}")]
    Open {
        /// The input path.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// Fetching a WAT file by URL failed: no answer, or an answer other than 200.
    #[error("cannot fetch {url}: {message}")]
    Fetch {
        /// The URL.
        url: String,
        /// The HTTP status, when the server answered.
        status: Option<u16>,
        /// What went wrong.
        message: String,
    },
    /// Reading the input failed (an I/O error, not damaged content).
    #[error("cannot read WAT input: {0}")]
    Read(#[source] io::Error),
    /// The input is neither gzip nor a WARC file, or holds no WARC record at all.
    #[error("input is not a WARC file: {0}")]
    NotWarc(&'static str),
    /// The input is a WARC file but not a WAT file.
    #[error("input is a WARC file but not a WAT file: its first content record is of type `{record_type}` (a WAT holds only warcinfo and metadata records)")]
    NotWat {
        /// The `WARC-Type` found.
        record_type: String,
    },
    /// Writing the output file failed.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The output path.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The parquet writer failed.
    #[error("parquet writer: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    /// The rayon pool could not be built.
    #[error("cannot start parser threads: {0}")]
    ThreadPool(#[from] rayon::ThreadPoolBuildError),
}
