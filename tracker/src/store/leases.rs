//! Leases: claiming a job, completing it, flagging its input, giving it back.

use std::sync::Arc;

use super::workers::{heartbeat_due, load_worker, touch, truncate};
use super::cycles::{CycleStep, LeaseCycle};
use super::{event, JobStore};
use crate::config::StoreConfig;
use crate::db::statements::{self, CandidateRow, UnixMs, WorkerLease};
use crate::db::{DbConnection, WriteTx};
use crate::error::TrackerError;
use crate::protocol::{ClaimedJob, Completion, FlagOutcome, HeldLease, JobId, LeaseEpoch, WorkerToken};
use crate::stage::StageId;
use crate::JobState;

/// Which jobs one search of a claim looks at.
#[derive(Debug, Clone, Copy)]
enum Search {
    /// Open and due (found and leased in one statement: [`lease_open`]).
    Open,
    /// Leased, with an expired lease.
    Expired,
    /// This job, if it is either.
    Only(JobId),
}

/// A search of a claim that finds a row before the claim updates it.
#[derive(Debug, Clone, Copy)]
enum Find {
    /// Leased, with an expired lease.
    Expired,
    /// This job, if it is open and due or leased with an expired lease.
    Only(JobId),
}

/// The lowest numbered job `find` finds at `stage` at time `now`, none while the stage is
/// paused; nothing is written.
fn find_candidate(
    conn: &mut DbConnection,
    find: Find,
    stage: StageId,
    now: UnixMs,
) -> Result<Option<CandidateRow>, TrackerError> {
    let rows = match find {
        Find::Expired => statements::find_expired(conn, stage, now, stage),
        Find::Only(job) => statements::find_job(conn, job, stage, now, now, stage),
    }?;
    Ok(rows.into_iter().next())
}

/// Why a job's last attempt ended, for the error of a job that used up its attempts: the
/// expired lease it was found with, else the last entry of its history.
fn last_attempt_end(tx: &mut WriteTx<'_>, job: &CandidateRow) -> Result<String, TrackerError> {
    if job.state == JobState::Leased.as_str() {
        return Ok("lease expired".to_owned());
    }
    tx.flush()?;
    let last = statements::last_event(tx, JobId(job.id))?.pop();
    Ok(match last {
        Some(last) if last.kind == event::EXPIRE => "lease expired".to_owned(),
        Some(last) if last.kind == event::RELEASE => "given back by its worker".to_owned(),
        Some(last) if last.kind == event::RETRY => format!("retried: {}", last.detail.unwrap_or_default()),
        Some(last) => match last.detail {
            Some(detail) => format!("{}: {detail}", last.kind),
            None => last.kind,
        },
        None => "unknown".to_owned(),
    })
}

/// Moves the leased job to `next` with `output` as its input there, or closes it with `output`
/// as its result; fenced by the lease. Returns the number of jobs changed (0: the lease was
/// lost).
fn write_completion(
    conn: &mut DbConnection,
    next: Option<StageId>,
    output: &str,
    now: UnixMs,
    job: JobId,
    lease: LeaseEpoch,
) -> Result<usize, TrackerError> {
    let updated = match next {
        None => statements::complete_done(conn, output, now, now, job, lease),
        Some(StageId::A) => statements::complete_to_a(conn, output, now, job, lease),
        Some(StageId::B) => statements::complete_to_b(conn, output, now, job, lease),
        Some(StageId::C) => statements::complete_to_c(conn, output, now, job, lease),
        Some(StageId::D) => statements::complete_to_d(conn, output, now, job, lease),
        Some(StageId::E) => statements::complete_to_e(conn, output, now, job, lease),
    }?;
    Ok(updated)
}

/// How a job given back by its worker counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GiveBack {
    /// The attempt counts (the worker abandoned the job or left while holding it).
    Abandoned,
    /// The attempt does not count (the job was cancelled or never started).
    Untouched,
}

/// Re-opens the job `worker` holds, if its lease is still the worker's, and clears the
/// worker's reference to it. Writes: the caller must have protected the operation.
pub(crate) fn reopen_held(
    tx: &mut WriteTx<'_>,
    token: &WorkerToken,
    worker: &WorkerLease,
    now: UnixMs,
    give_back: GiveBack,
) -> Result<(), TrackerError> {
    let (Some(job), Some(lease)) = (worker.job_id, worker.lease_token) else {
        return Ok(());
    };
    let (job, lease) = (JobId(job), LeaseEpoch(lease));
    let reopened = match give_back {
        GiveBack::Abandoned => statements::reopen_abandoned(tx, now, job, lease),
        GiveBack::Untouched => statements::reopen_untouched(tx, now, job, lease),
    }?;
    if reopened == 1 {
        tx.record(job.0, &worker.stage, event::RELEASE, Some(&worker.display_name), now.0, None);
    }
    statements::clear_held(tx, token)?;
    Ok(())
}

/// Points the worker at the lease it holds now (`held`, or none) with a progress text;
/// `completed` credits it one job, `seen` records a heartbeat.
fn set_held(
    conn: &mut DbConnection,
    token: &WorkerToken,
    held: Option<&ClaimedJob>,
    progress: &str,
    completed: bool,
    seen: Option<UnixMs>,
) -> Result<(), TrackerError> {
    let (job, lease, completed) = (held.map(|job| job.number), held.map(|job| job.lease), i64::from(completed));
    match seen {
        Some(at) => statements::hold_and_see(conn, job, lease, progress, completed, at, token),
        None => statements::hold(conn, job, lease, progress, completed, token),
    }?;
    Ok(())
}

/// The progress text of a worker that has just been handed a job.
pub(super) const PROGRESS_CLAIMED: &str = "Received new job";
/// The progress text of a worker that has just completed its job.
pub(super) const PROGRESS_COMPLETED: &str = "Completed Job";

/// The worker's held lease, or the error the protocol expects when it has none. With
/// `expected` (the lease the caller believes it holds), any other lease is a lost one: an
/// outcome sent again after its answer was lost cannot act on the worker's next lease.
pub(super) fn held_lease(worker: &WorkerLease, expected: Option<HeldLease>) -> Result<(JobId, LeaseEpoch), TrackerError> {
    let (job, lease) = match (worker.job_id, worker.lease_token) {
        (Some(job), Some(lease)) => (JobId(job), LeaseEpoch(lease)),
        _ => return Err(TrackerError::NoJobHeld),
    };
    match expected {
        Some(expected) if expected.number != job || expected.lease != lease => {
            Err(TrackerError::LeaseLost { job: expected.number })
        }
        _ => Ok((job, lease)),
    }
}

pub(super) fn worker_stage(worker: &WorkerLease) -> Result<StageId, TrackerError> {
    worker.stage.parse()
}

/// What one claim's search did.
pub(super) struct ClaimResult {
    /// The job leased, if any.
    pub(super) claimed: Option<ClaimedJob>,
    /// Jobs failed on the way because they had used up their attempts (written even when
    /// nothing was claimed).
    exhausted: usize,
}

/// Leases a claimable job of the worker's stage to it (job `only_job`, or the lowest numbered
/// one): an open job that is due, else one whose lease expired. A job found with its attempts
/// at the stage's limit is failed instead, and the search goes on. `None` when there is none;
/// then nothing was written unless jobs were failed. The worker must hold nothing
/// (`reopen_held` or a completion came first); the caller points the worker at the job
/// ([`set_held`]).
pub(super) fn claim_in(
    tx: &mut WriteTx<'_>,
    token: &WorkerToken,
    worker: &WorkerLease,
    config: &StoreConfig,
    now: UnixMs,
    only_job: Option<JobId>,
) -> Result<ClaimResult, TrackerError> {
    let stage = worker_stage(worker)?;
    let max_attempts = i32::try_from(config.max_attempts(stage)).unwrap_or(i32::MAX);
    let searches: &[Search] = match only_job {
        Some(job) => &[Search::Only(job)],
        None => &[Search::Open, Search::Expired],
    };
    let mut exhausted = 0;
    'search: loop {
        for &search in searches {
            let row = match search {
                Search::Open => match lease_open(tx, token, worker, stage, max_attempts, now)? {
                    OpenLease::Leased(claimed) => {
                        tx.record(claimed.number.0, stage.letter(), event::CLAIM, Some(&worker.display_name), now.0, None);
                        return Ok(ClaimResult { claimed: Some(claimed), exhausted });
                    }
                    OpenLease::Exhausted(row) => {
                        give_up(tx, &row, stage, now, GivenUp::Already)?;
                        exhausted += 1;
                        continue 'search;
                    }
                    OpenLease::None => continue,
                },
                Search::Expired => match find_candidate(tx, Find::Expired, stage, now)? {
                    Some(row) => row,
                    None => continue,
                },
                Search::Only(job) => match find_candidate(tx, Find::Only(job), stage, now)? {
                    Some(row) => row,
                    None => continue,
                },
            };
            if row.state == JobState::Leased.as_str() {
                tx.record(row.id, stage.letter(), event::EXPIRE, None, now.0, None);
            }
            if row.attempts >= max_attempts {
                give_up(tx, &row, stage, now, GivenUp::NotYet)?;
                exhausted += 1;
                continue 'search;
            }
            let attempts = row.attempts + 1;
            let claimed = claimed_job(row.id, row.data, stage, LeaseEpoch(row.lease_token + 1), attempts);
            let expires = UnixMs(now.0.saturating_add(worker.lease_ttl_ms));
            statements::lease_job(tx, token, claimed.lease, expires, i64::from(attempts), now, claimed.number)?;
            tx.record(row.id, stage.letter(), event::CLAIM, Some(&worker.display_name), now.0, None);
            return Ok(ClaimResult { claimed: Some(claimed), exhausted });
        }
        return Ok(ClaimResult { claimed: None, exhausted });
    }
}

/// What [`lease_open`] did.
enum OpenLease {
    /// Leased this job to the worker.
    Leased(ClaimedJob),
    /// Failed this job, found with its attempts used up (its error is still to be written);
    /// the row as it was found.
    Exhausted(CandidateRow),
    /// Found no open job that is due (or the stage is paused); wrote nothing.
    None,
}

/// Leases the lowest numbered open job of `stage` that is due to the worker in one statement
/// (found, locked and updated together), or fails it instead when its attempts are used up.
fn lease_open(
    tx: &mut WriteTx<'_>,
    token: &WorkerToken,
    worker: &WorkerLease,
    stage: StageId,
    max_attempts: i32,
    now: UnixMs,
) -> Result<OpenLease, TrackerError> {
    let limit = i64::from(max_attempts);
    let expires = UnixMs(now.0.saturating_add(worker.lease_ttl_ms));
    let found = statements::lease_open(tx, limit, limit, token, limit, limit, expires, limit, now, stage, stage, now, stage)?;
    let Some(row) = found.into_iter().next() else { return Ok(OpenLease::None) };
    if row.state == JobState::Failed.as_str() {
        // Failing left the row's attempts and lease as they were: the row as it was found.
        return Ok(OpenLease::Exhausted(CandidateRow { state: JobState::Open.as_str().to_owned(), ..row }));
    }
    Ok(OpenLease::Leased(claimed_job(row.id, row.data, stage, LeaseEpoch(row.lease_token), row.attempts)))
}

/// Job `id` at `stage` as handed to the worker that now holds `lease` on it, in its `attempt`.
pub(super) fn claimed_job(id: i64, data: Option<String>, stage: StageId, lease: LeaseEpoch, attempt: i32) -> ClaimedJob {
    ClaimedJob {
        number: JobId(id),
        stage,
        // A job reaches a stage only together with its input, so this is never empty in
        // practice; an empty string is still better than `null` for the client.
        data: data.unwrap_or_default(),
        lease,
        attempt: u32::try_from(attempt).unwrap_or(0),
    }
}

/// Whether the claim's statement has already marked a job given up on as failed.
#[derive(Debug, Clone, Copy)]
pub(super) enum GivenUp {
    /// [`lease_open`] failed it; only its error is missing.
    Already,
    /// It was found and is still as it was.
    NotYet,
}

/// Fails a job the claim found with its attempts used up, with an error that says why its last
/// attempt ended, and records the failure.
pub(super) fn give_up(tx: &mut WriteTx<'_>, row: &CandidateRow, stage: StageId, now: UnixMs, given_up: GivenUp) -> Result<(), TrackerError> {
    let error = format!("gave up after {} attempts; last: {}", row.attempts, last_attempt_end(tx, row)?);
    match given_up {
        GivenUp::Already => statements::set_error(tx, &error, JobId(row.id))?,
        GivenUp::NotYet => statements::fail_exhausted(tx, &error, now, JobId(row.id))?,
    };
    tx.record(row.id, stage.letter(), event::FAIL, None, now.0, Some(&error));
    tracing::warn!(job = row.id, %stage, %error, "Job failed: no attempts left.");
    Ok(())
}

/// Completes the job `worker` holds (fenced by its lease, and by `expected` when given) with
/// `output` and credits its nickname. Refuses before writing anything when the worker holds no
/// job or lost its lease; the caller updates the worker row ([`set_held`]).
fn complete_in(
    tx: &mut WriteTx<'_>,
    worker: &WorkerLease,
    expected: Option<HeldLease>,
    output: &str,
    config: &StoreConfig,
    now: UnixMs,
) -> Result<Completion, TrackerError> {
    let (job, lease) = held_lease(worker, expected)?;
    let stage = worker_stage(worker)?;
    let next_stage = config.next_enabled(stage);
    if write_completion(tx, next_stage, output, now, job, lease)? != 1 {
        return Err(TrackerError::LeaseLost { job });
    }
    tx.credit(&worker.nickname);
    tx.record(job.0, stage.letter(), event::COMPLETE, Some(&worker.display_name), now.0, None);
    Ok(Completion { number: job, next_stage })
}

/// When the worker's heartbeat is due, the time to record as its `last_seen`.
fn seen(worker: &WorkerLease, now: UnixMs) -> Option<UnixMs> {
    heartbeat_due(worker, now).then_some(now)
}

/// A claim, alone in its transaction or not (see [`JobStore::claim`]): the job, or `None`
/// when nothing was claimable but something must commit (jobs that used up their attempts
/// were failed, or the idle worker's heartbeat was due). Otherwise writes nothing and refuses
/// when there is nothing to claim, unless the worker held a job (then it is protected, and a
/// refusal keeps that job held).
pub(super) fn claim_alone(
    tx: &mut WriteTx<'_>,
    token: &WorkerToken,
    config: &StoreConfig,
    now: UnixMs,
    only_job: Option<JobId>,
) -> Result<Option<ClaimedJob>, TrackerError> {
    let worker = load_worker(tx, token)?;
    if worker.job_id.is_some() {
        tx.protect()?;
        reopen_held(tx, token, &worker, now, GiveBack::Abandoned)?;
    }
    let search = claim_in(tx, token, &worker, config, now, only_job)?;
    let Some(job) = search.claimed else {
        if search.exhausted > 0 {
            return Ok(None);
        }
        // A worker polling for work is not silent: when its heartbeat is due, the refusal
        // records it (and commits; callers answer "no job" all the same).
        if worker.job_id.is_none() && heartbeat_due(&worker, now) {
            statements::see_worker(tx, now, token)?;
            return Ok(None);
        }
        return Err(TrackerError::NoJobAvailable);
    };
    set_held(tx, token, Some(&job), PROGRESS_CLAIMED, false, seen(&worker, now))?;
    Ok(Some(job))
}

/// A completion, then, with `then_claim`, a claim for the now free worker, alone in its
/// transaction or not (see [`JobStore::complete_and_claim`]). Refuses before writing anything.
pub(super) fn complete_alone(
    tx: &mut WriteTx<'_>,
    token: &WorkerToken,
    held: Option<HeldLease>,
    output: &str,
    then_claim: bool,
    config: &StoreConfig,
    now: UnixMs,
) -> Result<(Completion, Option<ClaimedJob>), TrackerError> {
    let worker = load_worker(tx, token)?;
    let completion = complete_in(tx, &worker, held, output, config, now)?;
    let next = if then_claim { claim_in(tx, token, &worker, config, now, None)?.claimed } else { None };
    let progress = if next.is_some() { PROGRESS_CLAIMED } else { PROGRESS_COMPLETED };
    set_held(tx, token, next.as_ref(), progress, true, seen(&worker, now))?;
    Ok((completion, next))
}

impl JobStore {
    /// A step of the worker's lease cycle, taken now.
    pub(super) fn cycle(&self, token: &WorkerToken, step: CycleStep) -> LeaseCycle {
        LeaseCycle::new(token.clone(), UnixMs(self.now_ms()), Arc::clone(&self.config), step)
    }

    /// Claims one job of the worker's stage. A job the worker still holds is given back first
    /// (asking for a new job abandons the old one, as distcompute workers expect; that attempt
    /// counts). A job that used up its attempts at the stage is failed instead of handed out.
    ///
    /// # Errors
    /// [`TrackerError::UnknownWorker`], [`TrackerError::NoJobAvailable`]; database errors.
    pub fn claim(&self, token: &WorkerToken) -> Result<ClaimedJob, TrackerError> {
        self.pools.write_cycle(self.cycle(token, CycleStep::Claim))?.claimed()
    }

    /// Claims job `number` for the worker, if it is claimable at the worker's stage (open and
    /// due, or with an expired lease). Local pools use it to take the very job the stage before
    /// them just handed over.
    ///
    /// # Errors
    /// [`TrackerError::UnknownWorker`]; [`TrackerError::NoJobAvailable`] when that job is not
    /// claimable (another worker took it, or it is elsewhere); database errors.
    pub fn claim_job(&self, token: &WorkerToken, number: JobId) -> Result<ClaimedJob, TrackerError> {
        self.pools.write_as(token, self.claim_op(token, Some(number)))?.ok_or(TrackerError::NoJobAvailable)
    }

    /// [`claim`](Self::claim) (or, with `only`, [`claim_job`](Self::claim_job)) for async
    /// callers: awaits the database without holding a thread. Must be awaited inside a tokio
    /// runtime (the HTTP server's).
    ///
    /// # Errors
    /// As [`claim`](Self::claim).
    pub async fn claim_async(&self, token: &WorkerToken, only: Option<JobId>) -> Result<ClaimedJob, TrackerError> {
        match only {
            None => self.pools.write_cycle_async(self.cycle(token, CycleStep::Claim)).await?.claimed(),
            Some(_) => self.pools.write_as_async(token, self.claim_op(token, only)).await?.ok_or(TrackerError::NoJobAvailable),
        }
    }

    /// The transaction of a claim: the job, or `None` when nothing was claimable but something
    /// must commit: jobs that used up their attempts were failed, or the idle worker's heartbeat
    /// was due. Otherwise writes nothing and refuses when there is nothing to claim, unless the
    /// worker held a job (then it is protected, and a refusal keeps that job held).
    fn claim_op(
        &self,
        token: &WorkerToken,
        only_job: Option<JobId>,
    ) -> impl FnOnce(&mut WriteTx<'_>) -> Result<Option<ClaimedJob>, TrackerError> + Send + 'static {
        let now = UnixMs(self.now_ms());
        let (token, config) = (token.clone(), Arc::clone(&self.config));
        move |tx| claim_alone(tx, &token, &config, now, only_job)
    }

    /// Completes the worker's job with `output`: the output becomes the input of the next
    /// enabled stage, or the job is done with `output` as its final result. The worker and its
    /// nickname get credit, all in one transaction. With `held`, only that lease is completed.
    ///
    /// # Errors
    /// [`TrackerError::UnknownWorker`], [`TrackerError::NoJobHeld`],
    /// [`TrackerError::LeaseLost`] (nothing changed); database errors.
    pub fn complete(&self, token: &WorkerToken, held: Option<HeldLease>, output: &str) -> Result<Completion, TrackerError> {
        let step = CycleStep::Complete { held, output: output.to_owned(), then_claim: false };
        Ok(self.pools.write_cycle(self.cycle(token, step))?.completed()?.0)
    }

    /// [`complete`](Self::complete) for async callers: awaits the database without holding a
    /// thread. Must be awaited inside a tokio runtime (the HTTP server's).
    ///
    /// # Errors
    /// As [`complete`](Self::complete).
    pub async fn complete_async(
        &self,
        token: &WorkerToken,
        held: Option<HeldLease>,
        output: &str,
    ) -> Result<Completion, TrackerError> {
        let step = CycleStep::Complete { held, output: output.to_owned(), then_claim: false };
        Ok(self.pools.write_cycle_async(self.cycle(token, step)).await?.completed()?.0)
    }

    /// [`complete`](Self::complete), then, in the same transaction, [`claim`](Self::claim) for
    /// the now free worker: a worker that goes straight on to its next job costs one write
    /// instead of two. `None` in place of the next job when nothing is claimable (the
    /// completion stands).
    ///
    /// # Errors
    /// As [`complete`](Self::complete); when it fails, nothing is claimed either.
    pub fn complete_and_claim(
        &self,
        token: &WorkerToken,
        held: Option<HeldLease>,
        output: &str,
    ) -> Result<(Completion, Option<ClaimedJob>), TrackerError> {
        let step = CycleStep::Complete { held, output: output.to_owned(), then_claim: true };
        self.pools.write_cycle(self.cycle(token, step))?.completed()
    }

    /// [`complete_and_claim`](Self::complete_and_claim) for async callers (the HTTP server's
    /// runtime).
    ///
    /// # Errors
    /// As [`complete_and_claim`](Self::complete_and_claim).
    pub async fn complete_and_claim_async(
        &self,
        token: &WorkerToken,
        held: Option<HeldLease>,
        output: &str,
    ) -> Result<(Completion, Option<ClaimedJob>), TrackerError> {
        let step = CycleStep::Complete { held, output: output.to_owned(), then_claim: true };
        self.pools.write_cycle_async(self.cycle(token, step)).await?.completed()
    }

    /// Reports the worker's input as invalid and gives the job up. Below the flag threshold the
    /// job is re-opened at its stage; at the threshold it goes back to the previous stage, whose
    /// input is intact, and the count starts again. At stage `a` the job is always re-opened.
    /// A job already sent back `flag_threshold` times fails instead of going back again, so a
    /// stage that keeps rejecting what the previous one makes cannot loop forever. With
    /// `held`, only that lease is given up.
    ///
    /// # Errors
    /// [`TrackerError::UnknownWorker`], [`TrackerError::NoJobHeld`],
    /// [`TrackerError::LeaseLost`] (nothing changed); database errors.
    pub fn flag_invalid(
        &self,
        token: &WorkerToken,
        held: Option<HeldLease>,
        reason: Option<&str>,
    ) -> Result<FlagOutcome, TrackerError> {
        let now = UnixMs(self.now_ms());
        let threshold = i32::try_from(self.config.flag_threshold).unwrap_or(i32::MAX).max(1);
        let (token, reason) = (token.clone(), reason.map(str::to_owned));
        self.pools.write_as(&token.clone(), move |tx| {
            tx.protect()?;
            let reason = reason.as_deref();
            let worker = touch(tx, &token, now)?;
            let (job, lease) = held_lease(&worker, held)?;
            let stage = worker_stage(&worker)?;
            let reports = statements::flag_job(tx, now, job, lease)?.pop().ok_or(TrackerError::LeaseLost { job })?.flags;
            statements::clear_held(tx, &token)?;
            tx.record(job.0, stage.letter(), event::FLAG, Some(&worker.display_name), now.0, reason);
            let mut sent_back_to = stage.previous().filter(|_| reports >= threshold);
            let mut failed = false;
            if let Some(previous) = sent_back_to {
                tx.flush()?;
                let sent_back_before = statements::count_events(tx, job, event::SENT_BACK)?.pop().map_or(0, |row| row.count);
                if sent_back_before >= i64::from(threshold) {
                    // Redoing the previous stage keeps producing input this stage rejects:
                    // stop the loop and leave the job visible as failed.
                    let error = format!(
                        "input flagged invalid at stage {stage} after {sent_back_before} send-backs: {}",
                        reason.unwrap_or("no reason given")
                    );
                    statements::fail_unleased(tx, &error, now, job)?;
                    tx.record(job.0, stage.letter(), event::FAIL, None, now.0, Some(&error));
                    sent_back_to = None;
                    failed = true;
                } else {
                    statements::send_back(tx, previous, now, job)?;
                    tx.record(job.0, stage.letter(), event::SENT_BACK, None, now.0, Some(previous.letter()));
                }
            }
            Ok(FlagOutcome { number: job, reports, sent_back_to, failed })
        })
    }

    /// Gives the worker's job back to its stage without leaving (the worker stays registered).
    /// The attempt does not count: the job was cancelled or never started. With `held`, only
    /// that lease is given back.
    ///
    /// # Errors
    /// [`TrackerError::UnknownWorker`], [`TrackerError::NoJobHeld`],
    /// [`TrackerError::LeaseLost`]; database errors.
    pub fn release(&self, token: &WorkerToken, held: Option<HeldLease>) -> Result<(), TrackerError> {
        let now = UnixMs(self.now_ms());
        let token = token.clone();
        self.pools.write_as(&token.clone(), move |tx| {
            tx.protect()?;
            let worker = touch(tx, &token, now)?;
            held_lease(&worker, held)?;
            reopen_held(tx, &token, &worker, now, GiveBack::Untouched)
        })
    }

    /// Gives the worker's job back after a transient failure: it is re-opened at its stage but
    /// not handed out again before `retry_at` (Unix ms). Its attempts stay counted. With
    /// `held`, only that lease is given back.
    ///
    /// # Errors
    /// [`TrackerError::UnknownWorker`], [`TrackerError::NoJobHeld`],
    /// [`TrackerError::LeaseLost`] (nothing changed); database errors.
    pub fn retry_later(
        &self,
        token: &WorkerToken,
        held: Option<HeldLease>,
        retry_at: i64,
        reason: &str,
    ) -> Result<(), TrackerError> {
        self.finish_held(token, held, Finish::Retry { at: UnixMs(retry_at) }, reason)
    }

    /// Marks the worker's job failed with `error`: it leaves the pipeline, visible with its
    /// reason in listings and on the dashboard. With `held`, only that lease is failed.
    ///
    /// # Errors
    /// [`TrackerError::UnknownWorker`], [`TrackerError::NoJobHeld`],
    /// [`TrackerError::LeaseLost`] (nothing changed); database errors.
    pub fn fail(&self, token: &WorkerToken, held: Option<HeldLease>, error: &str) -> Result<(), TrackerError> {
        self.finish_held(token, held, Finish::Fail, error)
    }

    fn finish_held(&self, token: &WorkerToken, held: Option<HeldLease>, finish: Finish, detail: &str) -> Result<(), TrackerError> {
        let now = UnixMs(self.now_ms());
        let (token, detail) = (token.clone(), truncate(detail, MAX_DETAIL_CHARS).to_owned());
        self.pools.write_as(&token.clone(), move |tx| {
            tx.protect()?;
            let worker = touch(tx, &token, now)?;
            let (job, lease) = held_lease(&worker, held)?;
            let (updated, kind) = match finish {
                Finish::Retry { at } => (statements::retry_leased(tx, at, now, job, lease)?, event::RETRY),
                Finish::Fail => (statements::fail_leased(tx, &detail, now, job, lease)?, event::FAIL),
            };
            if updated != 1 {
                return Err(TrackerError::LeaseLost { job });
            }
            statements::clear_held(tx, &token)?;
            tx.record(job.0, &worker.stage, kind, Some(&worker.display_name), now.0, Some(&detail));
            Ok(())
        })
    }
}

/// How [`JobStore::finish_held`] ends a lease without completing the job.
#[derive(Debug, Clone, Copy)]
enum Finish {
    /// Re-open, due again at `at`.
    Retry { at: UnixMs },
    /// Mark failed.
    Fail,
}

/// Longest error or retry reason kept (longer ones are cut).
const MAX_DETAIL_CHARS: usize = 2048;
