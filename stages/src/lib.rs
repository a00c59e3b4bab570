//! Cascade's pipeline stages.
//!
//! This crate is deliberately light: pipeline authors depend on it to implement their own
//! stages, and the heavy built-in stages sit behind cargo features.
