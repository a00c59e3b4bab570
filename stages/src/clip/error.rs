//! Errors of the CLIP filter. Damage inside a shard (an undecodable image, a sample without a
//! caption) is not an error: it is skipped and counted in the [`FilterSummary`](super::FilterSummary).

use std::io;
use std::path::PathBuf;

/// Why a model could not be loaded or a shard could not be filtered.
#[derive(Debug, thiserror::Error)]
#[must_use]
#[non_exhaustive]
pub enum ClipError {
    /// A file could not be opened or read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// An output file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The model configuration is inconsistent or unreadable.
    #[error("invalid CLIP configuration: {0}")]
    Config(String),
    /// The weight file is not a readable safetensors file.
    #[error("cannot load weights from {path}: {message}")]
    WeightFile {
        /// The file.
        path: PathBuf,
        /// What the safetensors reader said.
        message: String,
    },
    /// The weight file does not fit the model: tensors are missing or of the wrong shape.
    #[error(
        "weights in {path} do not fit the CLIP configuration: {} missing [{}], {} mismatched [{}]",
        missing.len(), missing.join(", "), mismatched.len(), mismatched.join("; ")
    )]
    WeightMismatch {
        /// The file.
        path: PathBuf,
        /// Parameters of the model that the file lacks (burn paths).
        missing: Vec<String>,
        /// Tensors whose shape or type does not fit, with the reason.
        mismatched: Vec<String>,
    },
    /// The requested device is not available in this build.
    #[error("device {0:?} is not available (build with the `cuda` feature for GPUs)")]
    Device(String),
    /// The device exists in this build but could not be started.
    #[error("cannot start {device}: {reason}")]
    DeviceStart {
        /// The device asked for.
        device: String,
        /// Why it could not be used.
        reason: String,
    },
    /// The parquet writer failed.
    #[error("parquet writer: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    /// The caller stopped the shard before its end (nothing was published).
    #[error("cancelled")]
    Cancelled,
    /// The rayon pool could not be built.
    #[error("cannot start preprocessing threads: {0}")]
    ThreadPool(#[from] rayon::ThreadPoolBuildError),
    /// Hub weights (`hf:OWNER/REPO`) could not be had.
    #[error(transparent)]
    Hub(Box<HubError>),
}

impl From<HubError> for ClipError {
    fn from(error: HubError) -> Self {
        Self::Hub(Box::new(error))
    }
}

/// Why `hf:` weights could not be parsed or fetched.
#[derive(Debug, thiserror::Error)]
#[must_use]
#[non_exhaustive]
pub enum HubError {
    /// An `hf:` source that is not `hf:OWNER/REPO[@REVISION]`.
    #[error("invalid weights {spec:?}: {reason} (write hf:OWNER/REPO or hf:OWNER/REPO@REVISION)")]
    Spec {
        /// The text given.
        spec: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A file is not in the cache and could not be downloaded.
    #[error(
        "cannot download {repo}{} {file} from {endpoint}: {cause}; download it yourself and set {}",
        if revision == "main" { String::new() } else { format!("@{revision}") },
        if file == "config.json" { "config = \"path/to/config.json\"".to_owned() } else { format!("weights = \"path/to/{file}\"") }
    )]
    Download {
        /// `OWNER/REPO`.
        repo: String,
        /// The revision asked for.
        revision: String,
        /// The file (`model.safetensors`, `config.json`).
        file: String,
        /// The hub's base URL.
        endpoint: String,
        /// The HTTP status of the answer, when one came and was not a success.
        status: Option<u16>,
        /// What went wrong.
        cause: String,
    },
    /// The cache could not be written.
    #[error("cannot write {path} in the Hugging Face cache: {source}")]
    Cache {
        /// The file or folder.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
}
