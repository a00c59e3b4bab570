//! Cascade's pipeline stages.
//!
//! This crate is deliberately light: pipeline authors depend on it to implement their own
//! stages, and the heavy built-in stages sit behind cargo features.
//!
//! # Layout
//!
//! - [`wat`] (feature `wat`): streams Common Crawl WAT files and extracts image URL / alt-text
//!   pairs to parquet, following the cc2dataset rules.

#[cfg(feature = "wat")]
pub mod wat;
