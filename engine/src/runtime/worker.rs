//! The one worker runtime, for local pools and remote workers alike: the loop of one worker
//! thread over any [`Leases`] (the store in the daemon, the HTTP client in `cascade worker`).
//!
//! A worker claims a lease only when free, runs the stage, records the outcome (keeping a
//! finished job's outcome and sending it again while the tracker is unavailable), and hands the
//! job to the next local stage, blocking while that stage is full. A worker the tracker forgot
//! registers again; a stage that panics is reopened; a stage that cannot open for good makes
//! the whole crew unavailable.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use cascade_stages::stage::context::JobInfo;
use cascade_stages::stage::{ArtifactStore, StageContext, StageRegistry, WireStage};
use cascade_tracker::{ClaimedJob, JobId, LeaseError, Leases, StageId, WorkerToken};
use crossbeam_channel::{Receiver, RecvTimeoutError, SendTimeoutError, Sender};
use rayon::ThreadPool;

use super::guarded;
use super::outcome::{Failure, Outcome, RetryPolicy};
use super::slot::{PoolCounters, WorkerSlot};

/// How long a blocked hand-off waits between checks for shutdown.
const HANDOFF_RECHECK: Duration = Duration::from_millis(100);
/// First pause after a failed tracker call; doubles with each failure in a row.
const FIRST_RETRY_PAUSE: Duration = Duration::from_millis(250);
/// Longest pause between attempts to reach the tracker.
const MAX_RETRY_PAUSE: Duration = Duration::from_secs(10);
/// Failed attempts to record an outcome after which a stopping worker gives up (the lease then
/// expires and the job is redone).
const OUTCOME_TRIES_WHEN_STOPPING: u32 = 3;

/// Everything the workers of one stage share: what they run, the tracker they lease from, and
/// the hand-off queues between local stages.
pub(crate) struct Crew {
    pub(crate) stage: StageId,
    pub(crate) kind: String,
    pub(crate) settings: serde_json::Value,
    pub(crate) registry: StageRegistry,
    pub(crate) leases: Arc<dyn Leases>,
    pub(crate) nickname: String,
    pub(crate) policy: RetryPolicy,
    /// The lease length asked for at registration (`None`: the tracker's idle timeout).
    pub(crate) lease_ttl: Option<Duration>,
    /// Pause between claims while the stage has nothing claimable.
    pub(crate) poll_interval: Duration,
    pub(crate) artifacts: ArtifactStore,
    pub(crate) rayon: Arc<ThreadPool>,
    /// Jobs handed over by the previous local stage.
    pub(crate) inbound: Option<Receiver<JobId>>,
    /// Jobs handed to the next local stage.
    pub(crate) outbound: Option<Sender<JobId>>,
    /// The stage the outbound queue feeds.
    pub(crate) next_local_stage: Option<StageId>,
    pub(crate) stopping: AtomicBool,
    pub(crate) counters: PoolCounters,
    /// Why the stage cannot run here, once a worker found that opening it cannot succeed.
    pub(crate) unavailable: Mutex<Option<String>>,
}

impl Crew {
    /// Whether the workers are to stop claiming.
    pub(crate) fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
    }

    /// Records that the stage cannot run here (the first reason is kept) and says so.
    pub(crate) fn mark_unavailable(&self, reason: String) {
        let mut unavailable = self.unavailable.lock().unwrap_or_else(PoisonError::into_inner);
        if unavailable.is_none() {
            tracing::error!(stage = %self.stage, kind = %self.kind, %reason, "The stage cannot start; its jobs wait in the tracker.");
            *unavailable = Some(reason);
        }
    }

    /// Why the stage cannot run here, if so.
    pub(crate) fn unavailable(&self) -> Option<String> {
        self.unavailable.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Sleeps `duration`, waking early when the crew stops.
    fn pause(&self, duration: Duration) {
        guarded::nap(&self.stopping, duration);
    }

    /// Sleeps after the `failures`-th failed tracker call in a row.
    fn back_off(&self, failures: u32, error: &LeaseError) {
        let pause = FIRST_RETRY_PAUSE.saturating_mul(1 << failures.min(7)).min(MAX_RETRY_PAUSE);
        tracing::warn!(stage = %self.stage, %error, retry_in = ?pause, "Tracker call failed; retrying.");
        self.pause(pause);
    }
}

/// Runs one worker until the crew stops.
pub(crate) fn run(crew: &Crew, slot: &Arc<WorkerSlot>, index: usize) {
    let mut ctx = StageContext::new(crew.stage.letter(), crew.artifacts.clone(), Arc::clone(&crew.rayon))
        .with_progress(Arc::clone(slot) as _)
        .with_cancellation(slot.cancellation.clone());
    let mut stage = match open_stage(crew, &ctx, index) {
        Opened::Stage(stage) => stage,
        Opened::Stopping => return,
        Opened::Unavailable(reason) => {
            crew.mark_unavailable(reason);
            drain_inbound(crew);
            return;
        }
    };
    let Some(mut token) = register(crew, slot) else {
        stage.close(&ctx);
        return;
    };
    // A job claimed together with the last completion, to run before asking for another.
    let mut claimed_next: Option<ClaimedJob> = None;
    loop {
        let job = match claimed_next.take() {
            Some(job) if crew.is_stopping() => {
                // Never started: give it back without using up an attempt.
                if let Err(e) = crew.leases.release(&token, job.held()) {
                    tracing::debug!(error = %e, "Could not give back an unstarted job; its lease will expire.");
                }
                break;
            }
            Some(job) => job,
            None => match next_job(crew, slot, &mut token) {
                Some(job) => job,
                None => break,
            },
        };
        slot.set_busy(true);
        if !crew.is_stopping() {
            slot.cancellation.reset();
        }
        ctx.set_job(Some(JobInfo { number: job.number.0, attempt: job.attempt }));
        let result = guarded::process(&mut *stage, &job.data, &ctx);
        let panicked = matches!(result, Err(Failure::Panic(_)));
        let skipped = ctx.skipped();
        if !skipped.is_empty() {
            tracing::info!(stage = %crew.stage, job = %job.number, ?skipped, "Bad records skipped.");
        }
        ctx.set_job(None);
        let outcome = crew.policy.decide(job.attempt, crew.stage.previous().is_none(), result);
        claimed_next = record(crew, &token, &job, outcome);
        slot.set_busy(claimed_next.is_some());
        if panicked {
            PoolCounters::bump(&crew.counters.panics);
            tracing::warn!(stage = %crew.stage, worker = index, "Restarting the worker after a panic.");
            stage.close(&ctx);
            match open_stage(crew, &ctx, index) {
                Opened::Stage(fresh) => stage = fresh,
                Opened::Stopping => break,
                Opened::Unavailable(reason) => {
                    crew.mark_unavailable(reason);
                    break;
                }
            }
        }
    }
    stage.close(&ctx);
    if let Err(e) = crew.leases.bye(&token) {
        tracing::debug!(error = %e, "Worker could not say bye; its lease will expire.");
    }
    slot.set_token(None);
}

/// Heartbeats the lease of every busy worker of `slots`, sending its latest progress if any;
/// a worker the tracker no longer knows has its job cancelled.
pub(crate) fn heartbeat(crew: &Crew, slots: &[Arc<WorkerSlot>]) {
    for slot in slots.iter().filter(|slot| slot.is_busy()) {
        let Some(token) = slot.token() else { continue };
        let progress = slot.take_progress();
        match crew.leases.heartbeat(&token, progress.as_deref()) {
            Ok(()) => {}
            Err(LeaseError::UnknownWorker) => slot.cancellation.cancel(),
            Err(e) => tracing::warn!(stage = %crew.stage, error = %e, "Heartbeat failed."),
        }
    }
}

/// What became of opening a worker's stage.
enum Opened {
    Stage(Box<dyn WireStage>),
    /// The crew is stopping.
    Stopping,
    /// Opening cannot succeed (see [`guarded::OpenError::permanent`]): why.
    Unavailable(String),
}

/// Builds and opens the stage, retrying with the policy's backoff while `open` fails with an
/// error that may pass.
fn open_stage(crew: &Crew, ctx: &StageContext, index: usize) -> Opened {
    let mut attempt = 0u32;
    while !crew.is_stopping() {
        attempt += 1;
        match guarded::open_stage(&crew.registry, &crew.kind, &crew.settings, ctx) {
            Ok(stage) => return Opened::Stage(stage),
            Err(error) if error.permanent => return Opened::Unavailable(error.message),
            Err(error) => {
                let pause = crew.policy.delay(attempt, None);
                tracing::error!(stage = %crew.stage, worker = index, %error, ?pause, "Stage could not be opened; retrying.");
                crew.pause(pause);
            }
        }
    }
    Opened::Stopping
}

/// Takes the hand-offs of a stage that cannot run and drops them, until the crew stops, so the
/// stage before it never blocks on a queue nobody reads (the jobs wait, open, in the tracker).
fn drain_inbound(crew: &Crew) {
    let Some(inbound) = &crew.inbound else { return };
    while !crew.is_stopping() {
        match inbound.recv_timeout(HANDOFF_RECHECK) {
            Ok(_) | Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

/// Registers the worker with the tracker, retrying while it is unavailable. `None` when the
/// crew stops, or when the tracker refuses the worker for good (the crew is then unavailable).
fn register(crew: &Crew, slot: &WorkerSlot) -> Option<WorkerToken> {
    let mut failures = 0;
    while !crew.is_stopping() {
        match crew.leases.register(&crew.nickname, crew.stage, crew.lease_ttl) {
            Ok(registration) => {
                tracing::debug!(stage = %crew.stage, worker = %registration.display_name, "Registered with the tracker.");
                slot.set_token(Some(registration.token.clone()));
                return Some(registration.token);
            }
            Err(LeaseError::Refused(reason)) => {
                crew.mark_unavailable(format!("the tracker refused this worker: {reason}"));
                return None;
            }
            Err(e) => {
                failures += 1;
                crew.back_off(failures, &e);
            }
        }
    }
    None
}

/// The next job: the one the previous local stage just handed over, else any claimable job of
/// the stage, else waits for a hand-off (or the poll interval). `None` when the crew stops.
fn next_job(crew: &Crew, slot: &WorkerSlot, token: &mut WorkerToken) -> Option<ClaimedJob> {
    loop {
        if crew.is_stopping() {
            return None;
        }
        let handed_over = crew.inbound.as_ref().and_then(|rx| rx.try_recv().ok());
        if let Some(number) = handed_over {
            if let Some(job) = try_claim(crew, slot, token, Some(number))? {
                return Some(job);
            }
        }
        if let Some(job) = try_claim(crew, slot, token, None)? {
            return Some(job);
        }
        match &crew.inbound {
            Some(rx) => match rx.recv_timeout(crew.poll_interval) {
                Ok(number) => {
                    if let Some(job) = try_claim(crew, slot, token, Some(number))? {
                        return Some(job);
                    }
                }
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {}
            },
            None => crew.pause(crew.poll_interval),
        }
    }
}

/// One claim (of job `number`, or of any job): `Some(None)` when there is nothing to claim or
/// the tracker failed (logged, after a pause); `None` when the worker cannot register again.
fn try_claim(crew: &Crew, slot: &WorkerSlot, token: &mut WorkerToken, number: Option<JobId>) -> Option<Option<ClaimedJob>> {
    match crew.leases.claim(token, number) {
        Ok(job) => Some(job),
        Err(LeaseError::UnknownWorker) => {
            // Swept (the worker was silent longer than the idle timeout): join again.
            tracing::warn!(stage = %crew.stage, "The tracker forgot this worker; registering again.");
            *token = register(crew, slot)?;
            Some(None)
        }
        Err(e) => {
            crew.back_off(1, &e);
            Some(None)
        }
    }
}

/// Records the outcome in the tracker, sending it again while the tracker is unavailable, and,
/// after a completion, hands the job to the next local stage. Where [`may_claim_next`] allows,
/// a completion also claims the worker's next job in the same step and returns it.
fn record(crew: &Crew, token: &WorkerToken, job: &ClaimedJob, outcome: Outcome) -> Option<ClaimedJob> {
    let counters = &crew.counters;
    match &outcome {
        Outcome::Complete(_) => {}
        Outcome::Flag(_) => PoolCounters::bump(&counters.flagged),
        Outcome::Retry { .. } => PoolCounters::bump(&counters.retried),
        Outcome::Fail(error) => {
            PoolCounters::bump(&counters.failed);
            tracing::warn!(stage = %crew.stage, job = %job.number, %error, "Job failed.");
        }
        Outcome::Release => PoolCounters::bump(&counters.released),
    }
    let held = job.held();
    let mut failures = 0;
    loop {
        let leases = &crew.leases;
        let sent = match &outcome {
            Outcome::Complete(output) => leases.complete(token, held, output, may_claim_next(crew)).map(|(completion, next)| {
                PoolCounters::bump(&counters.completed);
                if completion.next_stage.is_some() && completion.next_stage == crew.next_local_stage {
                    hand_over(crew, completion.number);
                }
                next
            }),
            Outcome::Flag(reason) => leases.flag(token, held, reason).map(|()| None),
            Outcome::Retry { after, reason } => leases.retry_later(token, held, *after, reason).map(|()| None),
            Outcome::Fail(error) => leases.fail(token, held, error).map(|()| None),
            Outcome::Release => leases.release(token, held).map(|()| None),
        };
        match sent {
            Ok(next) => return next,
            Err(e @ LeaseError::Unavailable(_)) => {
                failures += 1;
                if crew.is_stopping() && failures > OUTCOME_TRIES_WHEN_STOPPING {
                    tracing::warn!(stage = %crew.stage, job = %job.number, error = %e, "Giving up on recording the outcome; the lease will expire.");
                    return None;
                }
                crew.back_off(failures, &e);
            }
            Err(e) => {
                tracing::warn!(stage = %crew.stage, job = %job.number, error = %e, "Outcome refused: the lease was lost; another worker has the job.");
                return None;
            }
        }
    }
}

/// Whether a completion may claim the worker's next job in the same step: only at a stage fed
/// by the tracker alone (no local stage before it, whose hand-offs must be taken in order and
/// counted), while the crew is not stopping, and when the job's hand-off to the next local
/// stage will not block (a worker about to wait on backpressure claims nothing until it is
/// free again).
fn may_claim_next(crew: &Crew) -> bool {
    crew.inbound.is_none() && !crew.is_stopping() && crew.outbound.as_ref().is_none_or(|tx| !tx.is_full())
}

/// Sends job `number` to the next local stage, blocking while its queue is full (this is the
/// backpressure), unless the crew is stopping (the job is open at the next stage in the
/// tracker either way).
fn hand_over(crew: &Crew, number: JobId) {
    let Some(tx) = &crew.outbound else { return };
    let mut item = number;
    loop {
        match tx.send_timeout(item, HANDOFF_RECHECK) {
            Ok(()) | Err(SendTimeoutError::Disconnected(_)) => return,
            Err(SendTimeoutError::Timeout(back)) => {
                if crew.is_stopping() {
                    return;
                }
                item = back;
            }
        }
    }
}
