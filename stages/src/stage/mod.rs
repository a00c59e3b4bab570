//! The [`Stage`] trait: what a pipeline author implements, and what the engine runs.
//!
//! A stage turns one job's input into its output, synchronously, one job at a time per worker.
//! The engine runs as many workers of a stage as configured, each with its own stage value
//! (made by the stage's factory in a [`StageRegistry`]), so `&mut self` state needs no locks.
//!
//! ```
//! use cascade_stages::stage::{Stage, StageContext, StageError};
//!
//! /// Counts the words of a text.
//! struct WordCount;
//!
//! impl Stage for WordCount {
//!     type Input = String;
//!     type Output = usize;
//!
//!     fn process(&mut self, text: String, _ctx: &StageContext) -> Result<usize, StageError> {
//!         Ok(text.split_whitespace().count())
//!     }
//! }
//! ```
//!
//! # Layout
//! - [`context`]: [`StageContext`], what a stage may use while it works.
//! - [`artifacts`]: [`ArtifactStore`], where inputs are read from and outputs published to (a
//!   local directory, or S3 with feature `s3`).
//! - [`error`]: [`StageError`], and what the engine does with each kind.
//! - [`wire`]: typed input and output to and from the job's wire string.
//! - [`erased`]: [`WireStage`], any stage seen through wire strings (what the engine holds).
//! - [`registry`]: [`StageRegistry`], stage kinds by name, built from their settings.

pub mod artifacts;
pub mod context;
pub mod erased;
pub mod error;
pub mod registry;
pub mod wire;

use serde::de::DeserializeOwned;
use serde::Serialize;

pub use artifacts::{ArtifactError, ArtifactLocation, ArtifactStore, Fetched, Input, OutputDir};
pub use context::{Cancellation, ProgressSink, StageContext};
pub use erased::WireStage;
pub use error::StageError;
pub use registry::{RegistryError, StageRegistry};

/// One step of a pipeline.
///
/// `Input` is decoded from the job's data and `Output` encoded into the next stage's input (see
/// [`wire`]): plain strings travel as they are, anything else as `<!json!>`-prefixed JSON, the
/// convention the Python `distcompute-client` also understands.
pub trait Stage: Send + 'static {
    /// What one job gives this stage.
    type Input: DeserializeOwned;
    /// What this stage makes of it: the next stage's input, or the job's final result.
    type Output: Serialize;

    /// Prepares the worker (load a model, open a connection) once, before its first job.
    ///
    /// # Errors
    /// Any [`StageError`]; the engine reports it and does not start the worker.
    fn open(&mut self, ctx: &StageContext) -> Result<(), StageError> {
        let _ = ctx;
        Ok(())
    }

    /// Processes one job.
    ///
    /// # Errors
    /// [`StageError::InvalidInput`] sends the job back to the stage that made the input,
    /// [`StageError::Transient`] retries it later, [`StageError::Fatal`] fails it, and
    /// [`StageError::Cancelled`] gives it back untouched.
    fn process(&mut self, input: Self::Input, ctx: &StageContext) -> Result<Self::Output, StageError>;

    /// Releases what [`open`](Stage::open) took, when the worker stops.
    fn close(&mut self, ctx: &StageContext) {
        let _ = ctx;
    }
}
