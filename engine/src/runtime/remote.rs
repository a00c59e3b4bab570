//! Remote workers: a stage run against a tracker over HTTP, the way Python workers do it.
//!
//! Each worker thread registers, claims with `newJob`, runs the stage, and records the outcome
//! (`completeJob`, `flagInvalidData` with a reason, or the `/v1/lease/*` calls for retries,
//! failures and releases).
//! Connection loss is retried with capped backoff (a finished job's output is kept and sent
//! again until the tracker takes it or says the lease is gone); a forgotten worker registers
//! again; stopping finishes or cancels the running job, then says `bye`.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cascade_stages::stage::context::JobInfo;
use cascade_stages::stage::{StageContext, StageRegistry, WireStage};
use cascade_tracker::StageId;
use cascade_web::{ClientError, Job, TrackerClient, WorkerSession};
use rayon::ThreadPool;

use super::guarded;
use super::outcome::{Failure, Outcome, RetryPolicy};
use super::slot::WorkerSlot;
use super::EngineError;

/// Longest pause between attempts to reach the tracker.
const MAX_RECONNECT_PAUSE: Duration = Duration::from_secs(30);
/// How often a busy worker sends its progress (a heartbeat too).
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
    /// Pause between `newJob` calls while the stage has nothing open.
    pub poll_interval: Duration,
    /// Artifact root.
    pub artifacts: PathBuf,
    /// The stage's rayon pool.
    pub rayon: Arc<ThreadPool>,
    /// Stage kinds.
    pub registry: StageRegistry,
}

/// Shared between a remote worker's threads and whoever stops them.
#[derive(Debug, Default)]
pub struct RemoteControl {
    stopping: AtomicBool,
    slots: std::sync::Mutex<Vec<Arc<WorkerSlot>>>,
}

impl RemoteControl {
    /// Stop claiming; running jobs continue until [`cancel`](Self::cancel).
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::Relaxed);
    }

    /// Cancel running jobs (they are released).
    pub fn cancel(&self) {
        for slot in self.slots.lock().unwrap_or_else(std::sync::PoisonError::into_inner).iter() {
            slot.cancellation.cancel();
        }
    }

    fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
    }
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

    /// Runs one worker on the calling thread until `control` stops it; returns the jobs it
    /// completed.
    pub fn run(&self, control: &RemoteControl) -> u64 {
        let slot = Arc::new(WorkerSlot::default());
        control.slots.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(Arc::clone(&slot));
        let client = TrackerClient::new(&self.tracker);
        let mut ctx = StageContext::new(self.stage.letter(), self.artifacts.clone(), Arc::clone(&self.rayon))
            .with_progress(Arc::clone(&slot) as _)
            .with_cancellation(slot.cancellation.clone());
        let Some(mut stage) = self.open_stage(&ctx, control) else { return 0 };
        let mut completed = 0;
        while let Some(session) = self.register(&client, control) {
            let reporter = ProgressReporter::start(session.clone(), Arc::clone(&slot));
            let forgotten = self.work(&session, &slot, &mut stage, &mut ctx, control, &mut completed);
            reporter.stop();
            if !forgotten {
                session.bye();
                break;
            }
            tracing::warn!("The tracker forgot this worker; registering again.");
        }
        stage.close(&ctx);
        completed
    }

    /// Claims and processes jobs until stopped; `true` when the tracker forgot the worker.
    fn work(
        &self,
        session: &WorkerSession,
        slot: &WorkerSlot,
        stage: &mut Box<dyn WireStage>,
        ctx: &mut StageContext,
        control: &RemoteControl,
        completed: &mut u64,
    ) -> bool {
        let mut failures = 0u32;
        while !control.is_stopping() {
            let job = match session.new_job() {
                Ok(job) => job,
                Err(ClientError::NoJob(_)) => {
                    pause(control, self.poll_interval);
                    continue;
                }
                Err(ClientError::UnknownWorker(_)) => return true,
                Err(e) => {
                    failures += 1;
                    self.backoff(control, failures, &e);
                    continue;
                }
            };
            failures = 0;
            slot.set_busy(true);
            slot.cancellation.reset();
            let (outcome, panicked) = self.process(&mut **stage, ctx, &job);
            if self.record(session, &job, &outcome, control) && matches!(outcome, Outcome::Complete(_)) {
                *completed += 1;
            }
            slot.set_busy(false);
            if panicked {
                stage.close(ctx);
                match self.open_stage(ctx, control) {
                    Some(fresh) => *stage = fresh,
                    None => return false,
                }
            }
        }
        false
    }

    fn process(&self, stage: &mut dyn WireStage, ctx: &mut StageContext, job: &Job) -> (Outcome, bool) {
        // The tracker does not tell remote workers the attempt number; count this one as the first.
        ctx.set_job(Some(JobInfo { number: job.number, attempt: 1 }));
        let result = guarded::process(stage, &job.data, ctx);
        ctx.set_job(None);
        let panicked = matches!(result, Err(Failure::Panic(_)));
        (self.policy.decide(1, self.stage.previous().is_none(), result), panicked)
    }

    /// Sends the outcome, retrying while the tracker is unreachable. Returns whether it was
    /// recorded.
    fn record(&self, session: &WorkerSession, job: &Job, outcome: &Outcome, control: &RemoteControl) -> bool {
        let mut failures = 0u32;
        loop {
            let sent = match outcome {
                Outcome::Complete(output) => session.complete_job(output),
                Outcome::Flag(reason) => session.flag_invalid_data_because(reason),
                Outcome::Retry { after, reason } => session.retry_later(*after, reason),
                Outcome::Fail(error) => session.fail(error),
                Outcome::Release => session.release(),
            };
            match sent {
                Ok(()) => return true,
                Err(e @ (ClientError::Transport(_) | ClientError::Server { .. })) => {
                    failures += 1;
                    if control.is_stopping() && failures > 3 {
                        tracing::warn!(job = job.number, error = %e, "Giving up on recording the outcome; the lease will expire.");
                        return false;
                    }
                    self.backoff(control, failures, &e);
                }
                Err(e) => {
                    tracing::warn!(job = job.number, error = %e, "Outcome refused: the lease was lost; another worker has the job.");
                    return false;
                }
            }
        }
    }

    fn register(&self, client: &TrackerClient, control: &RemoteControl) -> Option<WorkerSession> {
        let mut failures = 0u32;
        while !control.is_stopping() {
            match client.register(&self.nickname, self.stage.letter()) {
                Ok(session) => {
                    tracing::info!(
                        worker = %session.display_name,
                        page = %format!("{}/worker/{}/{}", self.tracker, self.stage, session.display_name),
                        "Registered with the tracker."
                    );
                    return Some(session);
                }
                Err(e @ ClientError::BadRequest(_)) => {
                    tracing::error!(error = %e, "The tracker refused this worker.");
                    return None;
                }
                Err(e) => {
                    failures += 1;
                    self.backoff(control, failures, &e);
                }
            }
        }
        None
    }

    fn open_stage(&self, ctx: &StageContext, control: &RemoteControl) -> Option<Box<dyn WireStage>> {
        let mut attempt = 0;
        while !control.is_stopping() {
            attempt += 1;
            match guarded::open_stage(&self.registry, &self.kind, &self.settings, ctx) {
                Ok(stage) => return Some(stage),
                Err(error) if error.permanent => {
                    tracing::error!(%error, "The stage cannot start; this worker stops.");
                    control.stop();
                    return None;
                }
                Err(error) => {
                    tracing::error!(%error, "Stage could not be opened; retrying.");
                    pause(control, self.policy.delay(attempt, None));
                }
            }
        }
        None
    }

    fn backoff(&self, control: &RemoteControl, failures: u32, error: &ClientError) {
        let delay = Duration::from_millis(250).saturating_mul(1 << failures.min(7)).min(MAX_RECONNECT_PAUSE);
        tracing::warn!(%error, retry_in = ?delay, "Tracker call failed; retrying.");
        pause(control, delay);
    }
}

/// Sleeps `duration`, waking early when the worker stops.
fn pause(control: &RemoteControl, duration: Duration) {
    guarded::nap(&control.stopping, duration);
}

/// Sends a busy worker's progress (or a bare heartbeat) every few seconds; cancels the running
/// job when the tracker no longer knows the worker.
struct ProgressReporter {
    done: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ProgressReporter {
    fn start(session: WorkerSession, slot: Arc<WorkerSlot>) -> Self {
        let done = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&done);
        let thread = std::thread::Builder::new()
            .name("cascade-progress".into())
            .spawn(move || {
                let mut waited = Duration::ZERO;
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(100));
                    waited += Duration::from_millis(100);
                    if waited < PROGRESS_EVERY {
                        continue;
                    }
                    waited = Duration::ZERO;
                    if !slot.is_busy() {
                        continue;
                    }
                    // New progress if there is some, else a bare heartbeat: the lease must not
                    // lapse during a long job that reports nothing.
                    let known = match slot.take_progress() {
                        Some(text) => !matches!(session.log(&text), Err(ClientError::UnknownWorker(_))),
                        None => session.is_alive().unwrap_or(true),
                    };
                    if !known {
                        slot.cancellation.cancel();
                    }
                }
            })
            .ok();
        Self { done, thread }
    }

    fn stop(mut self) {
        self.done.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
