//! The [`JobStore`]: every operation on jobs, workers and leases, as database transactions.
//!
//! Each mutating operation is one write transaction, so a crash at any point leaves either the
//! old state or the new one. Leases are fenced: a worker row remembers the `lease_token` it was
//! given, and complete/flag/release only act when the job still carries that token and is still
//! leased — a late, duplicate or stale call changes nothing and gets
//! [`TrackerError::LeaseLost`] or [`TrackerError::NoJobHeld`].

mod admin;
mod counters;
mod cycles;
mod jobs;
mod lease_protocol;
mod leases;
mod problems;
mod reused_reads;
mod stats;
mod views;
mod workers;

use std::sync::Arc;

use crate::clock::Clock;
use crate::config::StoreConfig;
use crate::db::{DatabaseUrl, PoolSettings, Pools};
use crate::error::TrackerError;
use reused_reads::Reused;

pub use admin::{AdminAction, JobSelection, PausedStage};
pub(crate) use cycles::LeaseCycle;
pub use counters::{EventCount, StateCount};
pub use jobs::Appended;
pub use problems::ProblemJob;
pub use stats::{Eta, StageCounts, ThroughputPoint};
pub use views::{JobDetail, JobEvent, JobState, JobSummary, LeaderboardEntry, Page, WorkerView};
pub use workers::{SweepReport, MAX_NICKNAME_CHARS, MAX_PROGRESS_CHARS};

/// The tracker's store: a handle to the database plus the pipeline settings. Cheap to clone;
/// clones share the connection pools.
///
/// Methods block on the database: call them from a blocking context (`spawn_blocking`,
/// `web::block`, a worker thread), never directly on an async executor thread. The hot calls
/// of the worker API also come as `_async` methods ([`claim_async`](Self::claim_async),
/// [`update_progress_async`](Self::update_progress_async),
/// [`complete_async`](Self::complete_async)) that await the database without holding a thread.
#[derive(Clone)]
pub struct JobStore {
    pools: Pools,
    config: Arc<StoreConfig>,
    clock: Arc<dyn Clock>,
    /// Whole-table counts (`jobCount`'s, the per-stage counts, the ETA's), reused while they
    /// are costly to make.
    reused: Arc<ReusedReads>,
}

impl std::fmt::Debug for JobStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobStore")
            .field("sqlite", &self.pools.is_sqlite())
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl JobStore {
    /// Connects to `url` (creating a SQLite file if needed), applies pending migrations and
    /// returns the store. `max_connections` bounds the pool (readers, for SQLite).
    ///
    /// # Errors
    /// Connection, pool or migration failures.
    pub fn open(
        url: &DatabaseUrl,
        config: StoreConfig,
        clock: Arc<dyn Clock>,
        max_connections: u32,
    ) -> Result<Self, TrackerError> {
        Self::open_with(url, config, clock, PoolSettings::connections(max_connections))
    }

    /// [`JobStore::open`] with every pool setting, the PostgreSQL writer lanes included.
    ///
    /// # Errors
    /// Connection, pool or migration failures.
    pub fn open_with(
        url: &DatabaseUrl,
        config: StoreConfig,
        clock: Arc<dyn Clock>,
        pool: PoolSettings,
    ) -> Result<Self, TrackerError> {
        let pools = Pools::open(url, pool)?;
        Ok(Self { pools, config: Arc::new(config), clock, reused: Arc::default() })
    }

    /// The pipeline settings this store enforces.
    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// The current time according to the store's clock (Unix milliseconds).
    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }
}

/// The store's reads that are reused while costly (see `reused_reads`).
#[derive(Debug, Default)]
struct ReusedReads {
    /// Jobs waiting at each stage, by stage index.
    waiting: [Reused<i64>; 5],
    /// [`JobStore::stage_counts`].
    stage_counts: Reused<Vec<StageCounts>>,
    /// All jobs by state, for [`JobStore::eta`].
    jobs_by_state: Reused<Vec<(String, i64)>>,
}

/// The kinds of events in a job's history ([`JobEvent::kind`], [`EventCount::kind`]).
pub mod event {
    /// A worker took a lease on the job.
    pub const CLAIM: &str = "claim";
    /// A worker finished the job's stage.
    pub const COMPLETE: &str = "complete";
    /// A worker reported the job's input as invalid.
    pub const FLAG: &str = "flag";
    /// Enough reports sent the job back one stage (the detail names that stage).
    pub const SENT_BACK: &str = "sent_back";
    /// A worker gave the job back (asked for another, left, or was removed).
    pub const RELEASE: &str = "release";
    /// A lease ran out and the job was re-opened.
    pub const EXPIRE: &str = "expire";
    /// A worker gave the job back after a transient failure; it is due again later.
    pub const RETRY: &str = "retry";
    /// The job failed (fatal error, attempts or send-backs exhausted); the detail says why.
    pub const FAIL: &str = "fail";
    /// An operator re-opened the failed job (the detail names who).
    pub const REQUEUE: &str = "requeue";
    /// An operator cancelled the job (the detail names who).
    pub const CANCEL: &str = "cancel";
}
