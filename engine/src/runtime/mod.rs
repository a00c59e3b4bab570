//! The engine: local worker pools per stage, supervised by actors, joined by bounded queues.
//!
//! - [`Supervisor`] (actor) starts one [`StagePool`](pool) actor per locally run stage and
//!   fans status requests and the shutdown [`Drain`] out to them.
//! - Each pool runs `workers` threads of the one worker runtime (`worker`), which also runs
//!   remote workers ([`RemoteWorker`]) over HTTP. A thread claims a lease only when it is free, runs the
//!   [`Stage`](cascade_stages::stage::Stage), records the outcome in the tracker, and hands the
//!   job's number to the next local stage over a bounded `crossbeam-channel`; when that stage is
//!   full the thread blocks, so a slow stage holds back the one before it. The tracker stays the
//!   system of record: a job in a queue is already open at the next stage in the database.
//! - Failures follow [`outcome::RetryPolicy::decide`]; a panicking stage is caught, its job
//!   retried like a transient failure, and the worker restarted with a fresh stage value.

mod guarded;
pub mod outcome;
mod pool;
mod remote;
mod slot;
mod supervisor;
mod worker;

use cascade_stages::stage::{ArtifactError, RegistryError};
use cascade_tracker::StageId;

use crate::config::Config;

pub use pool::{Drain, GetStatus};
pub use remote::{RemoteCrew, RemoteRun, RemoteWorker};
pub use supervisor::Supervisor;

/// A stage run by local workers.
#[derive(Debug, Clone, PartialEq)]
pub struct StagePlan {
    /// The stage.
    pub stage: StageId,
    /// The registered stage kind.
    pub kind: String,
    /// Worker threads.
    pub workers: usize,
    /// Capacity of the hand-off queue to the next stage.
    pub queue: usize,
    /// Rayon threads (default: one per core).
    pub threads: Option<usize>,
    /// Attempts of one job at this stage before a transient failure or a panic fails it.
    pub max_attempts: u32,
    /// The kind's settings.
    pub settings: serde_json::Value,
}

impl StagePlan {
    /// The locally run stages of `config` (those with a `kind`), in stage order.
    #[must_use]
    pub fn from_config(config: &Config) -> Vec<Self> {
        StageId::ALL
            .into_iter()
            .filter_map(|stage| {
                let settings = config.stages.get(stage.letter())?;
                Some(Self {
                    stage,
                    kind: settings.kind.clone()?,
                    workers: settings.workers,
                    queue: settings.queue,
                    threads: settings.threads,
                    max_attempts: config.max_attempts(stage),
                    settings: settings.settings.clone(),
                })
            })
            .collect()
    }
}

/// Why the engine could not start.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A stage's kind is unknown or rejected its settings.
    #[error("stage '{stage}': {source}")]
    Stage {
        /// The stage.
        stage: StageId,
        /// Why.
        source: RegistryError,
    },
    /// A stage's rayon pool could not be started.
    #[error("cannot start a stage's thread pool: {0}")]
    ThreadPool(String),
    /// The artifact store could not be opened.
    #[error("artifacts: {0}")]
    Artifacts(#[from] ArtifactError),
}
