//! [`StageError`]: how a stage says a job did not go through, and what happens next.

use std::fmt::Display;
use std::time::Duration;

/// Why a stage did not produce an output for a job. Each kind leads to a documented job state:
///
/// | kind | the job |
/// |---|---|
/// | `InvalidInput` | is flagged; after the flag threshold it goes back to the previous stage, whose input is intact |
/// | `Transient` | is given back and retried after a capped exponential backoff (or `retry_after`); after the attempt limit it fails |
/// | `Fatal` | is marked failed with the message, visible on the dashboard and in `/v1/jobs?state=failed` |
/// | `Cancelled` | is given back at once, attempts unchanged (the lease was lost or the worker is stopping) |
///
/// A stage that panics is treated like a transient failure, and its worker is restarted.
#[derive(Debug, thiserror::Error)]
#[must_use]
pub enum StageError {
    /// The input cannot be processed by this stage: the stage before made something wrong.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// A failure that may pass (network, a busy service): retry later.
    #[error("transient failure: {message}")]
    Transient {
        /// What went wrong.
        message: String,
        /// Wait at least this long before the next attempt (the engine's backoff otherwise).
        retry_after: Option<Duration>,
    },
    /// The job can never succeed at this stage.
    #[error("fatal: {0}")]
    Fatal(String),
    /// The stage stopped because [`StageContext::is_cancelled`](super::StageContext::is_cancelled).
    #[error("cancelled")]
    Cancelled,
}

impl StageError {
    /// An [`InvalidInput`](Self::InvalidInput) error.
    pub fn invalid(message: impl Display) -> Self {
        Self::InvalidInput(message.to_string())
    }

    /// A [`Transient`](Self::Transient) error with the engine's backoff.
    pub fn transient(message: impl Display) -> Self {
        Self::Transient { message: message.to_string(), retry_after: None }
    }

    /// A [`Transient`](Self::Transient) error to retry no sooner than `after`.
    pub fn transient_after(message: impl Display, after: Duration) -> Self {
        Self::Transient { message: message.to_string(), retry_after: Some(after) }
    }

    /// A [`Fatal`](Self::Fatal) error.
    pub fn fatal(message: impl Display) -> Self {
        Self::Fatal(message.to_string())
    }
}

/// `error` and each cause under it, as `outer: inner: innermost`, leaving out a cause whose text
/// already ends the message. HTTP clients' own messages ("error sending request") say nothing
/// of why; their causes do (a refused connection, an untrusted certificate).
#[cfg(any(feature = "download", feature = "s3"))]
pub(crate) fn with_causes(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut cause = error.source();
    while let Some(current) = cause {
        let text = current.to_string();
        if !message.ends_with(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        cause = current.source();
    }
    message
}
