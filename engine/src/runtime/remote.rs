//! Remote workers: a stage run against a tracker over HTTP (`cascade worker`), by the same
//! worker runtime as the daemon's local pools, with the HTTP client as its [`Leases`].
//!
//! Claims and completions go through `/v1/lease/*`, so a remote worker knows each job's attempt
//! number and its retry policy ends a job that keeps failing. Connection loss is retried with
//! capped backoff (a finished job's outcome is kept and sent again until the tracker takes it
//! or says the lease is gone); a forgotten worker registers again; stopping finishes or cancels
//! the running job, then says `bye`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cascade_stages::stage::{ArtifactStore, StageRegistry};
use cascade_tracker::{Leases, StageId};
use cascade_web::TrackerClient;
use rayon::ThreadPool;

use super::outcome::RetryPolicy;
use super::slot::WorkerSlot;
use super::worker::{self, Crew};
use super::EngineError;

/// How often busy workers send their progress (a heartbeat too).
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// What a remote worker runs, and where.
#[derive(Clone)]
pub struct RemoteWorker {
    /// The tracker's base URL.
    pub tracker: String,
    /// The stage worked on.
    pub stage: StageId,
    /// Stage kind (in the registry).
    pub kind: String,
    /// The kind's settings.
    pub settings: serde_json::Value,
    /// Nickname on the leaderboard.
    pub nickname: String,
    /// Retry policy for transient failures and panics.
    pub policy: RetryPolicy,
    /// Pause between claims while the stage has nothing open.
    pub poll_interval: Duration,
    /// The artifact store.
    pub artifacts: ArtifactStore,
    /// The stage's rayon pool.
    pub rayon: Arc<ThreadPool>,
    /// Stage kinds.
    pub registry: StageRegistry,
}

impl RemoteWorker {
    /// Checks that the kind exists and accepts the settings.
    ///
    /// # Errors
    /// [`EngineError::Stage`].
    pub fn validate(&self) -> Result<(), EngineError> {
        self.registry
            .create(&self.kind, &self.settings)
            .map(drop)
            .map_err(|source| EngineError::Stage { stage: self.stage, source })
    }

    /// `workers` workers of this stage, ready to [`run`](RemoteCrew::run).
    #[must_use]
    pub fn crew(&self, workers: usize) -> RemoteCrew {
        let leases: Arc<dyn Leases> = Arc::new(TrackerClient::new(&self.tracker));
        let crew = Crew {
            stage: self.stage,
            kind: self.kind.clone(),
            settings: self.settings.clone(),
            registry: self.registry.clone(),
            leases,
            nickname: self.nickname.clone(),
            policy: self.policy,
            lease_ttl: None,
            poll_interval: self.poll_interval,
            artifacts: self.artifacts.clone(),
            rayon: Arc::clone(&self.rayon),
            inbound: None,
            outbound: None,
            next_local_stage: None,
            stopping: AtomicBool::new(false),
            counters: Default::default(),
            unavailable: Mutex::new(None),
        };
        RemoteCrew {
            crew: Arc::new(crew),
            slots: (0..workers.max(1)).map(|_| Arc::new(WorkerSlot::default())).collect(),
        }
    }
}

/// The workers of one `cascade worker` process, and the handle that stops them.
pub struct RemoteCrew {
    crew: Arc<Crew>,
    slots: Vec<Arc<WorkerSlot>>,
}

/// How a crew's run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteRun {
    /// Jobs completed.
    pub completed: u64,
    /// Why the stage could not run here, when it could not.
    pub unavailable: Option<String>,
}

impl RemoteCrew {
    /// Runs every worker on a thread of its own, plus their heartbeat, until
    /// [`stop`](Self::stop) (or until the stage turns out unable to run here).
    ///
    /// # Errors
    /// A worker thread could not be started.
    pub fn run(&self) -> std::io::Result<RemoteRun> {
        let workers: Vec<_> = self
            .slots
            .iter()
            .enumerate()
            .map(|(index, slot)| {
                let (crew, slot) = (Arc::clone(&self.crew), Arc::clone(slot));
                std::thread::Builder::new()
                    .name(format!("cascade-worker-{index}"))
                    .spawn(move || worker::run(&crew, &slot, index))
            })
            .collect::<Result<_, _>>()?;
        let finished = Arc::new(AtomicBool::new(false));
        let heartbeat = {
            let (crew, slots, finished) = (Arc::clone(&self.crew), self.slots.clone(), Arc::clone(&finished));
            std::thread::Builder::new().name("cascade-heartbeat".into()).spawn(move || {
                while !finished.load(Ordering::Relaxed) {
                    super::guarded::nap(&finished, PROGRESS_EVERY);
                    worker::heartbeat(&crew, &slots);
                }
            })?
        };
        for handle in workers {
            let _ = handle.join();
        }
        finished.store(true, Ordering::Relaxed);
        let _ = heartbeat.join();
        Ok(RemoteRun {
            completed: self.crew.counters.completed.load(Ordering::Relaxed),
            unavailable: self.crew.unavailable(),
        })
    }

    /// Stop claiming; running jobs continue until [`cancel`](Self::cancel).
    pub fn stop(&self) {
        self.crew.stopping.store(true, Ordering::Relaxed);
    }

    /// Cancel running jobs (they are released, their attempts uncounted).
    pub fn cancel(&self) {
        for slot in &self.slots {
            slot.cancellation.cancel();
        }
    }
}
