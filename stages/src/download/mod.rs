//! Image download (stage b of the LAION workflow): the images of a pair shard fetched from the
//! web, or replayed from WARC files, checked, resized and written as img2dataset's webdataset
//! shards (`NNNNN.tar`, `NNNNN.parquet`, `NNNNN_stats.json`).
//!
//! # Layout
//!
//! - `replay`: [`ReplayServer`], a loopback HTTP proxy answering from WARC `response` records;
//! - `image`: decoding with limits, img2dataset's resize modes, JPEG encoding ([`ImageOptions`]);
//! - `exif`: the `exif` metadata field.

mod exif;
mod image;
mod replay;

pub use image::{process_image, ImageFailure, ImageOptions, ProcessedImage, ResizeMode};
pub use replay::{ReplayError, ReplayServer};
