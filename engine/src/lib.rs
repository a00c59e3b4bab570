//! The Cascade daemon and the `cascade` command.
//!
//! # Layout
//! - [`config`]: `cascade.toml` + `CASCADE__…` environment overrides, validated into the
//!   settings the tracker, the server and the engine need.
//! - [`runtime`]: the engine — a supervisor actor, one pool actor per locally run stage, worker
//!   threads joined by bounded hand-off queues, and remote workers over HTTP.
//! - [`cli`]: the `cascade` command; [`cli::main`] lets a pipeline author's binary run it with
//!   extra stage kinds.

pub mod cli;
pub mod config;
pub mod runtime;
