//! What becomes of a job after its stage ran: the one decision shared by local pools and
//! remote workers, so both treat every kind of failure the same way.

use std::time::Duration;

use cascade_stages::stage::StageError;

use crate::config::EngineSettings;

/// How a job's lease ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Completed with this output.
    Complete(String),
    /// The input is invalid: flag it (enough flags send the job back a stage).
    Flag(String),
    /// Give it back, to be handed out again after the delay.
    Retry {
        /// Delay before the next attempt.
        after: Duration,
        /// What went wrong.
        reason: String,
    },
    /// Mark it failed.
    Fail(String),
    /// Give it back at once, attempts unchanged in effect (the work was interrupted).
    Release,
}

/// Retry delays and the attempt limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts at one stage before a transient failure fails the job.
    pub max_attempts: u32,
    /// First delay; doubles per attempt.
    pub backoff: Duration,
    /// Longest delay.
    pub max_backoff: Duration,
}

impl From<&EngineSettings> for RetryPolicy {
    fn from(settings: &EngineSettings) -> Self {
        Self {
            max_attempts: settings.max_attempts,
            backoff: settings.retry_backoff,
            max_backoff: settings.max_retry_backoff,
        }
    }
}

impl RetryPolicy {
    /// The delay before attempt `attempt + 1`: `backoff × 2^(attempt − 1)`, or the stage's own
    /// `hint`, capped at `max_backoff` either way.
    #[must_use]
    pub fn delay(&self, attempt: u32, hint: Option<Duration>) -> Duration {
        let doubling = self.backoff.saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
        hint.unwrap_or(doubling).min(self.max_backoff)
    }

    /// What to do with a job on its `attempt`-th attempt after the stage returned `result`.
    /// Invalid input at the first stage fails the job: there is no stage to send it back to,
    /// the job list itself is wrong.
    #[must_use]
    pub fn decide(&self, attempt: u32, first_stage: bool, result: Result<String, Failure>) -> Outcome {
        let transient = |message: String, hint: Option<Duration>| {
            if attempt >= self.max_attempts {
                Outcome::Fail(format!("gave up after {attempt} attempts: {message}"))
            } else {
                Outcome::Retry { after: self.delay(attempt, hint), reason: message }
            }
        };
        match result {
            Ok(output) => Outcome::Complete(output),
            Err(Failure::Stage(StageError::InvalidInput(reason))) if first_stage => {
                Outcome::Fail(format!("invalid input: {reason}"))
            }
            Err(Failure::Stage(StageError::InvalidInput(reason))) => Outcome::Flag(reason),
            Err(Failure::Stage(StageError::Transient { message, retry_after })) => transient(message, retry_after),
            Err(Failure::Stage(StageError::Fatal(message))) => Outcome::Fail(message),
            Err(Failure::Stage(StageError::Cancelled)) => Outcome::Release,
            Err(Failure::Panic(message)) => transient(format!("stage panicked: {message}"), None),
        }
    }
}

/// Why a stage produced no output.
#[derive(Debug)]
pub enum Failure {
    /// It returned an error.
    Stage(StageError),
    /// It panicked, with this message.
    Panic(String),
}

/// The message of a caught panic.
#[must_use]
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "non-text panic payload".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: RetryPolicy =
        RetryPolicy { max_attempts: 3, backoff: Duration::from_secs(1), max_backoff: Duration::from_secs(5) };

    #[test]
    fn backoff_doubles_and_is_capped() {
        let delays: Vec<u64> = (1..=5).map(|a| POLICY.delay(a, None).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 5, 5]);
        assert_eq!(POLICY.delay(1, Some(Duration::from_secs(60))), Duration::from_secs(5));
        assert_eq!(POLICY.delay(40, None), Duration::from_secs(5));
    }

    #[test]
    fn each_error_kind_has_its_outcome() {
        let stage = |e| Err(Failure::Stage(e));
        assert_eq!(POLICY.decide(1, false, Ok("x".into())), Outcome::Complete("x".into()));
        assert_eq!(POLICY.decide(1, false, stage(StageError::invalid("bad"))), Outcome::Flag("bad".into()));
        assert_eq!(POLICY.decide(1, true, stage(StageError::invalid("bad"))), Outcome::Fail("invalid input: bad".into()));
        assert_eq!(POLICY.decide(1, false, stage(StageError::fatal("never"))), Outcome::Fail("never".into()));
        assert_eq!(POLICY.decide(1, false, stage(StageError::Cancelled)), Outcome::Release);
        assert_eq!(
            POLICY.decide(2, false, stage(StageError::transient("busy"))),
            Outcome::Retry { after: Duration::from_secs(2), reason: "busy".into() }
        );
        assert_eq!(
            POLICY.decide(3, false, stage(StageError::transient("busy"))),
            Outcome::Fail("gave up after 3 attempts: busy".into())
        );
        assert!(matches!(POLICY.decide(1, false, Err(Failure::Panic("boom".into()))), Outcome::Retry { .. }));
    }
}
