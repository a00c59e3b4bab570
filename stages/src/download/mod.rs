//! Image download (stage b of the LAION workflow): the images of a pair shard fetched from the
//! web, or replayed from WARC files, checked, resized and written as img2dataset 1.47's
//! webdataset shards (`NNNNN.tar`, `NNNNN.parquet`, `NNNNN_stats.json`), field for field.
//!
//! # Layout
//!
//! - `stage`: [`DownloadStage`], the downloader as the pipeline stage kind `download`;
//! - `run`: [`Downloader`], a pair shard's images fetched concurrently and processed on rayon;
//! - `options`: [`DownloadOptions`] (img2dataset's defaults);
//! - `input`: the pair shard's rows ([`PairShardInput`]);
//! - `fetch`, `dns`: one image over HTTP (timeouts, redirects, `X-Robots-Tag`, body cap,
//!   per-host politeness, a DNS cache);
//! - `replay`: [`ReplayServer`], a loopback HTTP proxy answering from WARC `response` records;
//! - `image`, `exif`: decoding with limits, img2dataset's resize modes, JPEG encoding
//!   ([`ImageOptions`]), the `exif` field;
//! - `writer`, `pyjson`: the shard files; `summary`: [`DownloadSummary`] and its counts;
//! - `error`: [`DownloadError`].

mod dns;
mod error;
mod exif;
mod fetch;
mod image;
mod input;
mod options;
mod pyjson;
mod replay;
mod run;
mod stage;
mod summary;
mod writer;

pub use error::DownloadError;
pub use image::{process_image, ImageFailure, ImageOptions, InputFormat, ProcessedImage, ResizeMode};
pub use input::PairShardInput;
pub use options::{DownloadOptions, Source};
pub use replay::{ReplayError, ReplayServer};
pub use run::{DownloadProgress, Downloader};
pub use stage::DownloadStage;
pub use summary::{Counts, DownloadSummary, ShardSummary, Status};
