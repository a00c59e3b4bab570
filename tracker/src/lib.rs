//! Cascade's tracker: the system of record for every job of a pipeline.
//!
//! Every job is a database row at every moment — open at a stage, leased to a worker until an
//! expiry, or done with its final output — so any process can die without losing a job.
//!
//! # Layout
//! - [`JobStore`] (`store/`): loading jobs, registering workers, fenced leases (claim,
//!   heartbeat, complete, flag, release), the idle sweep, and the read models the HTTP API and
//!   dashboard show (counts, workers, jobs, failed and flagged jobs, leaderboard, ETA,
//!   throughput) and the raw counts monitoring exports.
//! - [`protocol`]: the lease protocol written once — identities ([`JobId`], [`LeaseEpoch`],
//!   [`WorkerToken`]), answers, the HTTP worker API's bodies, and the [`Leases`] trait that the
//!   store implements here and the HTTP client in `cascade-web`.
//! - [`DatabaseUrl`] and the connection pools (`db/`): SQLite (default, embedded) or PostgreSQL,
//!   with embedded migrations for each.
//! - [`StoreConfig`]: enabled stages, idle timeout, flag threshold.
//! - [`Clock`]: injectable time, so tests move time instead of sleeping.
//! - [`load`]: job lists from JSON, text lines or brace patterns.
//! - [`StageId`]: the stage letters `a`..`e`.
//! - `testing` (feature `test-util`): throw-away SQLite and PostgreSQL databases for tests.

mod clock;
mod config;
mod db;
mod error;
pub mod load;
pub mod protocol;
mod stage;
mod store;
#[cfg(feature = "test-util")]
pub mod testing;

pub use clock::{Clock, ManualClock, SystemClock};
pub use config::StoreConfig;
pub use db::{DatabaseUrl, DbConnection, PoolSettings};
pub use error::TrackerError;
pub use protocol::{
    ClaimedJob, Completion, FlagOutcome, HeldLease, JobId, LeaseEpoch, LeaseError, Leases, Registration, WorkerToken,
};
pub use stage::StageId;
pub use store::{
    event, AdminAction, Appended, Eta, EventCount, JobDetail, JobEvent, JobSelection, JobState, JobSummary, JobStore,
    LeaderboardEntry, Page, PausedStage, ProblemJob, StageCounts, StateCount, SweepReport, ThroughputPoint, WorkerView, MAX_NICKNAME_CHARS, MAX_PROGRESS_CHARS,
};
