//! [`DownloadError`]: why a pair shard could not be downloaded (a failed image is no error: it
//! is a counted sample with its status).

use std::path::PathBuf;

/// Why a shard's download stopped.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    /// The input parquet cannot be read or lacks a column.
    #[error("cannot read pair shard {path}: {message}")]
    Input {
        /// The input file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// An output file cannot be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The metadata parquet cannot be encoded.
    #[error("cannot write the metadata parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    /// The settings cannot be used.
    #[error("invalid download settings: {0}")]
    Settings(String),
    /// The HTTP client or the replay server cannot start.
    #[error("cannot start the downloader: {0}")]
    Start(String),
    /// The job was cancelled (lease lost or shutting down); nothing final was written.
    #[error("cancelled")]
    Cancelled,
}
