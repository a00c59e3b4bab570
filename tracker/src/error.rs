//! The tracker's error type.

use crate::protocol::JobId;
use crate::stage::StageId;

/// Everything a [`JobStore`](crate::JobStore) operation can fail with.
///
/// The domain variants map one-to-one onto the distcompute protocol's answers, so the HTTP
/// layer can translate them without inspecting messages.
#[derive(Debug, thiserror::Error)]
#[must_use]
pub enum TrackerError {
    /// The database reported an error.
    #[error("database error: {0}")]
    Db(#[from] diesel::result::Error),
    /// No connection could be taken from the pool (database down, or pool exhausted too long).
    #[error("database connection pool error: {0}")]
    Pool(#[from] diesel::r2d2::PoolError),
    /// A connection could not be opened.
    #[error("could not connect to the database: {0}")]
    Connect(#[from] diesel::ConnectionError),
    /// A write could not be committed (the whole batch it was in failed); it may be retried.
    #[error("write not committed: {0}")]
    Commit(String),
    /// The schema could not be migrated.
    #[error("database migration failed: {0}")]
    Migration(String),
    /// The token names no worker (never registered, said bye, or swept after going silent).
    #[error("unknown worker token")]
    UnknownWorker,
    /// The stage letter is not one of `a`..`e`.
    #[error("invalid worker stage: '{0}'")]
    InvalidStage(String),
    /// The stage exists but is not enabled in this pipeline.
    #[error("the worker stage '{0}' is disabled")]
    DisabledStage(StageId),
    /// The worker's stage has no job that can be claimed now.
    #[error("no open job at this stage")]
    NoJobAvailable,
    /// The worker holds no job.
    #[error("the worker holds no job")]
    NoJobHeld,
    /// The worker's lease was lost: the job was completed, flagged, or re-claimed by another
    /// worker after the lease expired. Nothing was changed.
    #[error("the worker's lease on job {job} is no longer valid")]
    LeaseLost {
        /// The job the worker believed it held.
        job: JobId,
    },
    /// `init` was asked to load jobs into a database that already has some.
    #[error("the database already holds {existing} jobs; pass --reset to replace them")]
    NotEmpty {
        /// How many jobs are there.
        existing: i64,
    },
    /// The job list to load is malformed.
    #[error("invalid job list: {0}")]
    InvalidJobs(String),
    /// No job has that number.
    #[error("job {0} does not exist")]
    NoSuchJob(i64),
}

impl TrackerError {
    /// Whether this is the store refusing the request (unknown worker, no job, lost lease, …)
    /// rather than the database or the connection failing.
    pub(crate) fn is_refusal(&self) -> bool {
        !matches!(
            self,
            Self::Db(_) | Self::Pool(_) | Self::Connect(_) | Self::Commit(_) | Self::Migration(_)
        )
    }
}
