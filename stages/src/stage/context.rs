//! [`StageContext`]: what a stage may use while it works.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use rayon::ThreadPool;

use super::{ArtifactStore, StageError};

/// Where progress text goes: the tracker (worker page, dashboard) when a stage runs in the
/// engine. Reports may be rate-limited by the receiver; the latest one wins.
pub trait ProgressSink: Send + Sync {
    /// Records `text` as the worker's current progress.
    fn report(&self, text: &str);
}

/// A cancellation flag shared between the engine and a running stage. Clones share the flag.
#[derive(Debug, Clone, Default)]
pub struct Cancellation(Arc<AtomicBool>);

impl Cancellation {
    /// A flag not yet raised.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Raises the flag: the lease was lost or the worker is stopping.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// Lowers the flag again (the engine does so before the next job).
    pub fn reset(&self) {
        self.0.store(false, Ordering::Relaxed);
    }

    /// Whether the flag is raised.
    #[must_use]
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// The job a worker is processing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobInfo {
    /// Job number in the tracker.
    pub number: i64,
    /// How many times this job was handed out at this stage, this time included.
    pub attempt: u32,
}

/// The worker's surroundings, given to every [`Stage`](super::Stage) call: progress reporting,
/// counters of skipped bad records, cancellation, the artifact store and the stage's rayon
/// pool. Shared (`&`) so a stage can use it from its rayon tasks.
pub struct StageContext {
    stage: String,
    job: Option<JobInfo>,
    progress: Option<Arc<dyn ProgressSink>>,
    cancellation: Cancellation,
    skipped: Mutex<BTreeMap<String, u64>>,
    artifacts: ArtifactStore,
    pool: Arc<ThreadPool>,
}

impl std::fmt::Debug for StageContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StageContext")
            .field("stage", &self.stage)
            .field("job", &self.job)
            .field("artifacts", &self.artifacts.location())
            .field("threads", &self.pool.current_num_threads())
            .finish_non_exhaustive()
    }
}

impl StageContext {
    /// A context for stage `stage` (a letter, or any label outside a pipeline) reading and
    /// writing artifacts through `artifacts` (a store, or the path of a local directory) and
    /// running parallel work on `pool`.
    #[must_use]
    pub fn new(stage: impl Into<String>, artifacts: impl Into<ArtifactStore>, pool: Arc<ThreadPool>) -> Self {
        Self {
            stage: stage.into(),
            job: None,
            progress: None,
            cancellation: Cancellation::new(),
            skipped: Mutex::new(BTreeMap::new()),
            artifacts: artifacts.into(),
            pool,
        }
    }

    /// Sends progress reports to `sink`.
    #[must_use]
    pub fn with_progress(mut self, sink: Arc<dyn ProgressSink>) -> Self {
        self.progress = Some(sink);
        self
    }

    /// Uses `cancellation` as this context's flag.
    #[must_use]
    pub fn with_cancellation(mut self, cancellation: Cancellation) -> Self {
        self.cancellation = cancellation;
        self
    }

    /// The stage this context belongs to.
    pub fn stage(&self) -> &str {
        &self.stage
    }

    /// The job being processed (`None` in `open` and `close`).
    pub fn job(&self) -> Option<JobInfo> {
        self.job
    }

    /// Starts (`Some`) or ends (`None`) a job: sets the job and clears the skip counters.
    pub fn set_job(&mut self, job: Option<JobInfo>) {
        self.job = job;
        self.skipped.get_mut().unwrap_or_else(PoisonError::into_inner).clear();
    }

    /// Reports progress (shown on the worker's page and the dashboard).
    pub fn progress(&self, text: &str) {
        if let Some(sink) = &self.progress {
            sink.report(text);
        }
    }

    /// Counts `count` bad records skipped for `reason` in the current job.
    pub fn skip(&self, reason: &str, count: u64) {
        let mut skipped = self.skipped.lock().unwrap_or_else(PoisonError::into_inner);
        *skipped.entry(reason.to_owned()).or_default() += count;
    }

    /// The skip counters of the current job, by reason.
    pub fn skipped(&self) -> BTreeMap<String, u64> {
        self.skipped.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Whether the stage should stop: the lease was lost or the worker is stopping.
    pub fn is_cancelled(&self) -> bool {
        self.cancellation.is_cancelled()
    }

    /// `Err(StageError::Cancelled)` when [`is_cancelled`](Self::is_cancelled); for `?` in loops.
    ///
    /// # Errors
    /// [`StageError::Cancelled`].
    pub fn check_cancelled(&self) -> Result<(), StageError> {
        if self.is_cancelled() { Err(StageError::Cancelled) } else { Ok(()) }
    }

    /// The cancellation flag (to hand to code that polls it).
    pub fn cancellation(&self) -> &Cancellation {
        &self.cancellation
    }

    /// The artifact store: where inputs are fetched from and outputs published to.
    pub fn artifacts(&self) -> &ArtifactStore {
        &self.artifacts
    }

    /// The stage's rayon pool, shared by its workers.
    pub fn pool(&self) -> &ThreadPool {
        &self.pool
    }
}
