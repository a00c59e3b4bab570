//! The loop of one local worker thread: claim a lease only when free, run the stage, record
//! the outcome, hand the job to the next local stage (blocking while that stage is full).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use cascade_stages::stage::context::JobInfo;
use cascade_stages::stage::{StageContext, WireStage};
use cascade_tracker::{ClaimedJob, TrackerError};
use crossbeam_channel::{RecvTimeoutError, SendTimeoutError};

use super::guarded;
use super::outcome::{Failure, Outcome};
use super::pool::PoolShared;
use super::slot::{PoolCounters, WorkerSlot};

/// How long a blocked hand-off waits between checks for shutdown.
const HANDOFF_RECHECK: Duration = Duration::from_millis(100);
/// Pause after a failed database call before trying again.
const STORE_RETRY_PAUSE: Duration = Duration::from_millis(500);

/// Runs one worker until the pool stops.
pub(crate) fn run(shared: &PoolShared, slot: &Arc<WorkerSlot>, index: usize) {
    let mut ctx = StageContext::new(shared.stage.letter(), shared.artifacts.clone(), Arc::clone(&shared.rayon))
        .with_progress(Arc::clone(slot) as _)
        .with_cancellation(slot.cancellation.clone());
    let mut stage = match open_stage(shared, &ctx, index) {
        Opened::Stage(stage) => stage,
        Opened::Stopping => return,
        Opened::Unavailable(reason) => {
            shared.mark_unavailable(reason);
            drain_inbound(shared);
            return;
        }
    };
    let Some(mut token) = register(shared, slot) else {
        stage.close(&ctx);
        return;
    };
    // A job claimed together with the last completion, to run before asking for another.
    let mut claimed_next: Option<ClaimedJob> = None;
    loop {
        let job = match claimed_next.take() {
            // Leaving: `bye` below gives the job back.
            Some(_) if shared.stopping.load(Ordering::Relaxed) => break,
            Some(job) => job,
            None => match next_job(shared, slot, &mut token) {
                Some(job) => job,
                None => break,
            },
        };
        slot.set_busy(true);
        if !shared.stopping.load(Ordering::Relaxed) {
            slot.cancellation.reset();
        }
        ctx.set_job(Some(JobInfo { number: job.number, attempt: attempt(&job) }));
        let result = guarded::process(&mut *stage, &job.data, &ctx);
        let panicked = matches!(result, Err(Failure::Panic(_)));
        let skipped = ctx.skipped();
        if !skipped.is_empty() {
            tracing::info!(stage = %shared.stage, job = job.number, ?skipped, "Bad records skipped.");
        }
        ctx.set_job(None);
        let outcome = shared.policy.decide(attempt(&job), shared.stage.previous().is_none(), result);
        claimed_next = record(shared, &token, &job, outcome);
        slot.set_busy(claimed_next.is_some());
        if panicked {
            PoolCounters::bump(&shared.counters.panics);
            tracing::warn!(stage = %shared.stage, worker = index, "Restarting the worker after a panic.");
            stage.close(&ctx);
            match open_stage(shared, &ctx, index) {
                Opened::Stage(fresh) => stage = fresh,
                Opened::Stopping => break,
                Opened::Unavailable(reason) => {
                    shared.mark_unavailable(reason);
                    break;
                }
            }
        }
    }
    stage.close(&ctx);
    if let Err(e) = shared.store.bye(&token) {
        tracing::debug!(error = %e, "Worker could not say bye; its lease will expire.");
    }
    slot.set_token(None);
}

fn attempt(job: &ClaimedJob) -> u32 {
    u32::try_from(job.attempts).unwrap_or(u32::MAX)
}

/// What became of opening a worker's stage.
enum Opened {
    Stage(Box<dyn WireStage>),
    /// The pool is stopping.
    Stopping,
    /// Opening cannot succeed (see [`guarded::OpenError::permanent`]): why.
    Unavailable(String),
}

/// Builds and opens the stage, retrying with the pool's backoff while `open` fails with an
/// error that may pass.
fn open_stage(shared: &PoolShared, ctx: &StageContext, index: usize) -> Opened {
    let mut attempt = 0u32;
    while !shared.stopping.load(Ordering::Relaxed) {
        attempt += 1;
        match guarded::open_stage(&shared.registry, &shared.kind, &shared.settings, ctx) {
            Ok(stage) => return Opened::Stage(stage),
            Err(error) if error.permanent => return Opened::Unavailable(error.message),
            Err(error) => {
                let pause = shared.policy.delay(attempt, None);
                tracing::error!(stage = %shared.stage, worker = index, %error, ?pause, "Stage could not be opened; retrying.");
                sleep_unless_stopping(shared, pause);
            }
        }
    }
    Opened::Stopping
}

/// Takes the hand-offs of a stage that cannot run and drops them, until the pool stops, so the
/// stage before it never blocks on a queue nobody reads (the jobs wait, open, in the database).
fn drain_inbound(shared: &PoolShared) {
    let Some(inbound) = &shared.inbound else { return };
    while !shared.stopping.load(Ordering::Relaxed) {
        match inbound.recv_timeout(HANDOFF_RECHECK) {
            Ok(_) | Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

/// Registers the worker with the tracker, retrying while the database is unavailable.
fn register(shared: &PoolShared, slot: &WorkerSlot) -> Option<String> {
    while !shared.stopping.load(Ordering::Relaxed) {
        match shared.store.register_worker(&shared.nickname, shared.stage, Some(shared.lease_ttl)) {
            Ok(registration) => {
                slot.set_token(Some(registration.token.clone()));
                return Some(registration.token);
            }
            Err(e) => {
                tracing::warn!(stage = %shared.stage, error = %e, "Worker registration failed; retrying.");
                sleep_unless_stopping(shared, STORE_RETRY_PAUSE);
            }
        }
    }
    None
}

/// The next job: the one the previous local stage just handed over, else any claimable job of
/// the stage, else waits for a hand-off (or the poll interval). `None` when the pool stops.
fn next_job(shared: &PoolShared, slot: &WorkerSlot, token: &mut String) -> Option<ClaimedJob> {
    loop {
        if shared.stopping.load(Ordering::Relaxed) {
            return None;
        }
        let handed_over = shared.inbound.as_ref().and_then(|rx| rx.try_recv().ok());
        if let Some(number) = handed_over {
            if let Some(job) = attempt_claim(shared, slot, token, Some(number)) {
                return Some(job);
            }
        }
        if let Some(job) = attempt_claim(shared, slot, token, None) {
            return Some(job);
        }
        match &shared.inbound {
            Some(rx) => match rx.recv_timeout(shared.poll_interval) {
                Ok(number) => {
                    if let Some(job) = attempt_claim(shared, slot, token, Some(number)) {
                        return Some(job);
                    }
                }
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {}
            },
            None => sleep_unless_stopping(shared, shared.poll_interval),
        }
    }
}

/// One claim (of job `number`, or of any job); `None` when there is nothing to claim or the
/// database failed (logged; the caller tries again later).
fn attempt_claim(shared: &PoolShared, slot: &WorkerSlot, token: &mut String, number: Option<i64>) -> Option<ClaimedJob> {
    let claimed = match number {
        Some(number) => shared.store.claim_job(token, number),
        None => shared.store.claim(token),
    };
    match claimed {
        Ok(job) => Some(job),
        Err(TrackerError::NoJobAvailable) => None,
        Err(TrackerError::UnknownWorker) => {
            // Swept (the daemon was stalled longer than the idle timeout): join again.
            tracing::warn!(stage = %shared.stage, "The tracker forgot this worker; registering again.");
            *token = register(shared, slot)?;
            None
        }
        Err(e) => {
            tracing::warn!(stage = %shared.stage, error = %e, "Claim failed; retrying.");
            sleep_unless_stopping(shared, STORE_RETRY_PAUSE);
            None
        }
    }
}

/// Records the outcome in the tracker and, after a completion, hands the job to the next
/// local stage. Where [`may_claim_with_completion`] allows, a completion also claims the
/// worker's next job in the same transaction and returns it.
fn record(shared: &PoolShared, token: &str, job: &ClaimedJob, outcome: Outcome) -> Option<ClaimedJob> {
    let store = &shared.store;
    let counters = &shared.counters;
    let mut claimed_next = None;
    let recorded = match &outcome {
        Outcome::Complete(output) => {
            let completed = if may_claim_with_completion(shared) {
                store.complete_and_claim(token, output).map(|(completion, next)| {
                    claimed_next = next;
                    completion
                })
            } else {
                store.complete(token, output)
            };
            completed.map(|completion| {
                PoolCounters::bump(&counters.completed);
                if completion.next_stage.is_some() && completion.next_stage == shared.next_local_stage {
                    hand_over(shared, completion.number);
                }
            })
        }
        Outcome::Flag(reason) => {
            PoolCounters::bump(&counters.flagged);
            store.flag_invalid(token, Some(reason)).map(drop)
        }
        Outcome::Retry { after, reason } => {
            PoolCounters::bump(&counters.retried);
            let due = store.now_ms().saturating_add(i64::try_from(after.as_millis()).unwrap_or(i64::MAX));
            store.retry_later(token, due, reason)
        }
        Outcome::Fail(error) => {
            PoolCounters::bump(&counters.failed);
            tracing::warn!(stage = %shared.stage, job = job.number, %error, "Job failed.");
            store.fail(token, error)
        }
        Outcome::Release => {
            PoolCounters::bump(&counters.released);
            store.release(token)
        }
    };
    match recorded {
        Ok(()) => return claimed_next,
        Err(TrackerError::LeaseLost { .. } | TrackerError::NoJobHeld | TrackerError::UnknownWorker) => {
            tracing::warn!(stage = %shared.stage, job = job.number, "Lease lost before the outcome was recorded; another worker has the job.");
        }
        Err(e) => {
            // The lease stays ours until it expires or our next claim re-opens it: not lost.
            tracing::error!(stage = %shared.stage, job = job.number, error = %e, "Could not record the outcome; the job will be redone.");
        }
    }
    None
}

/// Whether a completion may claim the worker's next job in the same transaction: only at a
/// stage fed by the database alone (no local stage before it, whose hand-offs must be taken
/// in order and counted), while the pool is not stopping, and when the job's hand-off to the
/// next local stage will not block (a worker about to wait on backpressure claims nothing
/// until it is free again).
fn may_claim_with_completion(shared: &PoolShared) -> bool {
    shared.inbound.is_none()
        && !shared.stopping.load(Ordering::Relaxed)
        && shared.outbound.as_ref().is_none_or(|tx| !tx.is_full())
}

/// Sends job `number` to the next local stage, blocking while its queue is full (this is the
/// backpressure), unless the pool is stopping (the job is open at the next stage in the
/// database either way).
fn hand_over(shared: &PoolShared, number: i64) {
    let Some(tx) = &shared.outbound else { return };
    let mut item = number;
    loop {
        match tx.send_timeout(item, HANDOFF_RECHECK) {
            Ok(()) | Err(SendTimeoutError::Disconnected(_)) => return,
            Err(SendTimeoutError::Timeout(back)) => {
                if shared.stopping.load(Ordering::Relaxed) {
                    return;
                }
                item = back;
            }
        }
    }
}

fn sleep_unless_stopping(shared: &PoolShared, pause: Duration) {
    guarded::nap(&shared.stopping, pause);
}
