//! The Cascade daemon.
//!
//! # Layout
//! - [`config`]: `cascade.toml` + `CASCADE__…` environment overrides, validated into the
//!   settings the tracker and the server need.
//!
//! The `cascade` command itself lives in `src/main.rs` and `src/cli/`.

pub mod config;
