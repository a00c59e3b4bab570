//! Cascade's pipeline stages.
//!
//! This crate is deliberately light: pipeline authors depend on it to implement their own
//! stages, and the heavy built-in stages sit behind cargo features.
//!
//! # Layout
//!
//! - [`stage`]: the [`Stage`](stage::Stage) trait, its context, errors, wire encoding and the
//!   registry of stage kinds — all a pipeline author needs;
//! - [`clip`] (feature `clip`, GPU support with `cuda`): the CLIP ViT-B/32 image/caption
//!   similarity filter over webdataset shards.
//! - [`download`] (feature `download`): fetches the images of pair shards (from the web or
//!   replayed from WARC files) and writes img2dataset's webdataset shards.
//! - [`wat`] (feature `wat`): streams Common Crawl WAT files and extracts image URL / alt-text
//!   pairs to parquet, following the cc2dataset rules.

pub mod stage;
#[cfg(feature = "clip")]
pub mod clip;
#[cfg(feature = "download")]
pub mod download;
#[cfg(feature = "wat")]
pub mod wat;
