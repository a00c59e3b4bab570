//! Leases: claiming a job, completing it, flagging its input, giving it back.

use std::sync::Arc;

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Integer, Nullable, Text};
use serde::Serialize;

use super::workers::{heartbeat_due, load_worker, touch, truncate, WorkerLease};
use super::{event, state, JobStore};
use crate::config::StoreConfig;
use crate::db::schema::{job_events, jobs};
use crate::db::{cached_sql, CachedSql, DbConnection, WriteTx};
use crate::error::TrackerError;
use crate::stage::StageId;

/// A job handed to a worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClaimedJob {
    /// Job number.
    pub number: i64,
    /// The stage the job is at (the worker's stage).
    pub stage: StageId,
    /// The job's input at this stage.
    pub data: String,
    /// The fencing token of this lease.
    pub lease_token: i64,
    /// How many times the job was claimed at this stage, this claim included.
    pub attempts: i32,
}

/// Where a completed job went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Completion {
    /// Job number.
    pub number: i64,
    /// The stage whose input the output became, or `None` when the job is now done.
    pub next_stage: Option<StageId>,
}

/// What a report of invalid input did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct FlagOutcome {
    /// Job number.
    pub number: i64,
    /// Reports for this (job, stage) so far, this one included.
    pub reports: i32,
    /// The stage the job was sent back to, when the threshold was reached.
    pub sent_back_to: Option<StageId>,
    /// Whether the job failed instead: it had already been sent back `flag_threshold` times.
    pub failed: bool,
}

#[derive(QueryableByName)]
struct ClaimedRow {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = BigInt)]
    lease_token: i64,
    #[diesel(sql_type = Integer)]
    attempts: i32,
    #[diesel(sql_type = Nullable<Text>)]
    data: Option<String>,
}

#[derive(QueryableByName)]
struct FlaggedRow {
    #[diesel(sql_type = Integer)]
    flags: i32,
}

/// The job's input at the stage it is at.
macro_rules! data_at_stage {
    () => {
        "CASE stage WHEN 'a' THEN data_a WHEN 'b' THEN data_b WHEN 'c' THEN data_c \
         WHEN 'd' THEN data_d ELSE data_e END"
    };
}

/// Which jobs a claim may take: `open` and due, or leased with an `expired` lease. Binds: now.
macro_rules! claimable {
    (open) => {
        "state = 'open' AND (retry_at IS NULL OR retry_at <= ?)"
    };
    (expired) => {
        "state = 'leased' AND lease_expires_at <= ?"
    };
}

/// With `only`, the claim may take one given job only. Binds: the job number with `only`.
macro_rules! only_job {
    () => {
        ""
    };
    (only) => {
        " AND id = ?"
    };
}

/// The claim statement for PostgreSQL: one claimable job of a stage, lowest number first,
/// leased in a single evaluation that skips rows other transactions are claiming. Binds: owner,
/// expiry, now, stage, now, and the job number with `only`.
macro_rules! claim_returning_sql {
    ($which:ident $($only:ident)?) => {
        concat!(
            "UPDATE jobs SET state = 'leased', lease_owner = ?, lease_token = lease_token + 1, \
             lease_expires_at = ?, attempts = attempts + 1, retry_at = NULL, updated_at = ? \
             WHERE id = (SELECT id FROM jobs WHERE stage = ? AND ",
            claimable!($which),
            only_job!($($only)?),
            " ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING id, lease_token, attempts, ",
            data_at_stage!(),
            " AS data"
        )
    };
}

/// The first half of a claim on SQLite: the claimable job, lowest number first. Binds: stage,
/// now, and the job number with `only`.
macro_rules! find_claimable_sql {
    ($which:ident $($only:ident)?) => {
        concat!(
            "SELECT id, lease_token, attempts, ",
            data_at_stage!(),
            " AS data FROM jobs WHERE stage = ? AND ",
            claimable!($which),
            only_job!($($only)?),
            " ORDER BY id LIMIT 1"
        )
    };
}

/// The second half of a claim on SQLite: leases the job found. Binds: owner, lease token,
/// expiry, attempts, now, job.
const LEASE_FOUND_SQL: &str = "UPDATE jobs SET state = 'leased', lease_owner = ?, lease_token = ?, \
                               lease_expires_at = ?, attempts = ?, retry_at = NULL, updated_at = ? WHERE id = ?";

/// One claim's search: which stage, which jobs, and the lease it would write.
struct ClaimSearch<'a> {
    token: &'a str,
    stage: StageId,
    only_job: Option<i64>,
    expires: i64,
    now: i64,
}

impl ClaimSearch<'_> {
    /// Runs a [`claim_returning_sql!`] statement (PostgreSQL).
    fn lease_returning<K: 'static>(&self, statement: CachedSql<'_, K>, conn: &mut DbConnection) -> QueryResult<Vec<ClaimedRow>> {
        let statement = statement
            .text(self.token)
            .big_int(self.expires)
            .big_int(self.now)
            .text(self.stage.letter())
            .big_int(self.now);
        match self.only_job {
            Some(number) => statement.big_int(number).load(conn),
            None => statement.load(conn),
        }
    }

    /// Runs a [`find_claimable_sql!`] statement (SQLite).
    fn find<K: 'static>(&self, statement: CachedSql<'_, K>, conn: &mut DbConnection) -> QueryResult<Vec<ClaimedRow>> {
        let statement = statement.text(self.stage.letter()).big_int(self.now);
        match self.only_job {
            Some(number) => statement.big_int(number).load(conn),
            None => statement.load(conn),
        }
    }
}

/// Leases one claimable job of `stage` to `token` (see [`claimable!`]), or finds none (and
/// writes nothing). SQLite's writer holds the database's write lock for the whole transaction,
/// so there the job is found and then leased by its number: two plain statements cost less than
/// one `UPDATE … RETURNING`, which builds a result table and a statement journal on every call.
fn lease_one(conn: &mut DbConnection, search: &ClaimSearch<'_>, expired: bool) -> Result<Option<ClaimedRow>, TrackerError> {
    let only = search.only_job.is_some();
    if let DbConnection::Pg(_) = conn {
        let leased = match (expired, only) {
            (false, false) => search.lease_returning(cached_sql!(claim_returning_sql!(open)), conn),
            (false, true) => search.lease_returning(cached_sql!(claim_returning_sql!(open only)), conn),
            (true, false) => search.lease_returning(cached_sql!(claim_returning_sql!(expired)), conn),
            (true, true) => search.lease_returning(cached_sql!(claim_returning_sql!(expired only)), conn),
        };
        return Ok(leased?.pop());
    }
    let found = match (expired, only) {
        (false, false) => search.find(cached_sql!(find_claimable_sql!(open)), conn),
        (false, true) => search.find(cached_sql!(find_claimable_sql!(open only)), conn),
        (true, false) => search.find(cached_sql!(find_claimable_sql!(expired)), conn),
        (true, true) => search.find(cached_sql!(find_claimable_sql!(expired only)), conn),
    };
    let Some(mut row) = found?.pop() else { return Ok(None) };
    row.lease_token += 1;
    row.attempts += 1;
    cached_sql!(LEASE_FOUND_SQL)
        .text(search.token)
        .big_int(row.lease_token)
        .big_int(search.expires)
        .big_int(i64::from(row.attempts))
        .big_int(search.now)
        .big_int(row.id)
        .execute(conn)?;
    Ok(Some(row))
}

/// The completion statement, fenced by the lease: the output becomes the input of the `next`
/// stage, or (`done`) the job's result. Binds: output, now (twice when the job is done), job,
/// lease token.
macro_rules! complete_sql {
    (done) => {
        concat!("UPDATE jobs SET result = ?, state = 'done', updated_at = ?, completed_at = ?", complete_sql!(fenced))
    };
    (fenced) => {
        ", lease_owner = NULL, lease_expires_at = NULL WHERE id = ? AND lease_token = ? AND state = 'leased'"
    };
    ($next:literal) => {
        concat!(
            "UPDATE jobs SET data_", $next, " = ?, stage = '", $next,
            "', state = 'open', attempts = 0, flags = 0, updated_at = ?",
            complete_sql!(fenced)
        )
    };
}

/// What a completion writes into the job row.
struct CompletionWrite<'a> {
    output: &'a str,
    now: i64,
    job: i64,
    lease: i64,
}

impl CompletionWrite<'_> {
    /// Runs a [`complete_sql!`] statement; returns the number of jobs it changed.
    fn run<K: 'static>(&self, statement: CachedSql<'_, K>, done: bool, conn: &mut DbConnection) -> QueryResult<usize> {
        let statement = statement.text(self.output).big_int(self.now);
        let statement = if done { statement.big_int(self.now) } else { statement };
        statement.big_int(self.job).big_int(self.lease).execute(conn)
    }

    /// Moves the job to `next` (its input there is the output), or closes it with the output as
    /// its result; returns the number of jobs changed (0: the lease was lost).
    fn write(&self, next: Option<StageId>, conn: &mut DbConnection) -> QueryResult<usize> {
        match next {
            None => self.run(cached_sql!(complete_sql!(done)), true, conn),
            Some(StageId::A) => self.run(cached_sql!(complete_sql!("a")), false, conn),
            Some(StageId::B) => self.run(cached_sql!(complete_sql!("b")), false, conn),
            Some(StageId::C) => self.run(cached_sql!(complete_sql!("c")), false, conn),
            Some(StageId::D) => self.run(cached_sql!(complete_sql!("d")), false, conn),
            Some(StageId::E) => self.run(cached_sql!(complete_sql!("e")), false, conn),
        }
    }
}

/// Re-opens the job `worker` holds, if its lease is still the worker's, and clears the
/// worker's reference to it. Writes: the caller must have protected the operation.
pub(crate) fn reopen_held(
    tx: &mut WriteTx<'_>,
    token: &str,
    worker: &WorkerLease,
    now: i64,
) -> Result<(), TrackerError> {
    let (Some(job), Some(lease)) = (worker.job_id, worker.lease_token) else {
        return Ok(());
    };
    let reopened = diesel::update(
        jobs::table
            .find(job)
            .filter(jobs::lease_token.eq(lease))
            .filter(jobs::state.eq(state::LEASED)),
    )
    .set((
        jobs::state.eq(state::OPEN),
        jobs::lease_owner.eq(None::<String>),
        jobs::lease_expires_at.eq(None::<i64>),
        jobs::updated_at.eq(now),
    ))
    .execute(&mut **tx)?;
    if reopened == 1 {
        tx.record(job, &worker.stage, event::RELEASE, Some(&worker.display_name), now, None);
    }
    clear_held(tx, token)
}

/// Clears the worker's reference to the job it held.
fn clear_held(conn: &mut DbConnection, token: &str) -> Result<(), TrackerError> {
    cached_sql!("UPDATE workers SET job_id = NULL, lease_token = NULL WHERE token = ?")
        .text(token)
        .execute(conn)?;
    Ok(())
}

/// Points the worker at the lease it holds now (`held`: job and lease token, or none) with a
/// progress text; `completed` credits it one job, `seen` records a heartbeat.
fn set_held(
    conn: &mut DbConnection,
    token: &str,
    held: Option<&ClaimedJob>,
    progress: &str,
    completed: bool,
    seen: Option<i64>,
) -> Result<(), TrackerError> {
    /// Binds the values of a `set_held` statement in their order and runs it.
    fn run<K: 'static>(
        statement: CachedSql<'_, K>,
        conn: &mut DbConnection,
        (token, held, progress, seen): (&str, Option<&ClaimedJob>, &str, Option<i64>),
    ) -> QueryResult<usize> {
        let statement = statement
            .optional_big_int(held.map(|job| job.number))
            .optional_big_int(held.map(|job| job.lease_token))
            .text(progress);
        let statement = match seen {
            Some(at) => statement.big_int(at),
            None => statement,
        };
        statement.text(token).execute(conn)
    }
    let values = (token, held, progress, seen);
    match (completed, seen.is_some()) {
        (false, false) => run(
            cached_sql!("UPDATE workers SET job_id = ?, lease_token = ?, progress = ? WHERE token = ?"),
            conn,
            values,
        ),
        (false, true) => run(cached_sql!(
            "UPDATE workers SET job_id = ?, lease_token = ?, progress = ?, last_seen = ? WHERE token = ?"
        ), conn, values),
        (true, false) => run(cached_sql!(
            "UPDATE workers SET job_id = ?, lease_token = ?, progress = ?, \
             jobs_completed = jobs_completed + 1 WHERE token = ?"
        ), conn, values),
        (true, true) => run(cached_sql!(
            "UPDATE workers SET job_id = ?, lease_token = ?, progress = ?, \
             jobs_completed = jobs_completed + 1, last_seen = ? WHERE token = ?"
        ), conn, values),
    }?;
    Ok(())
}

/// The progress text of a worker that has just been handed a job.
const PROGRESS_CLAIMED: &str = "Received new job";
/// The progress text of a worker that has just completed its job.
const PROGRESS_COMPLETED: &str = "Completed Job";

/// The worker's held lease, or the error the protocol expects when it has none.
fn held_lease(worker: &WorkerLease) -> Result<(i64, i64), TrackerError> {
    match (worker.job_id, worker.lease_token) {
        (Some(job), Some(lease)) => Ok((job, lease)),
        _ => Err(TrackerError::NoJobHeld),
    }
}

fn worker_stage(worker: &WorkerLease) -> Result<StageId, TrackerError> {
    worker.stage.parse()
}

/// Leases a claimable job of the worker's stage to it (job `only_job`, or the lowest numbered
/// one): an open job that is due, else one whose lease expired. `None` when there is none, and
/// then nothing was written. The worker must hold nothing (`reopen_held` or a completion came
/// first); the caller points the worker at the job ([`set_held`]).
fn claim_in(
    tx: &mut WriteTx<'_>,
    token: &str,
    worker: &WorkerLease,
    now: i64,
    only_job: Option<i64>,
) -> Result<Option<ClaimedJob>, TrackerError> {
    let stage = worker_stage(worker)?;
    let search = ClaimSearch { token, stage, only_job, expires: now.saturating_add(worker.lease_ttl_ms), now };
    let mut claimed = None;
    for expired in [false, true] {
        if let Some(row) = lease_one(tx, &search, expired)? {
            if expired {
                tx.record(row.id, stage.letter(), event::EXPIRE, None, now, None);
            }
            claimed = Some(row);
            break;
        }
    }
    let Some(row) = claimed else { return Ok(None) };
    tx.record(row.id, stage.letter(), event::CLAIM, Some(&worker.display_name), now, None);
    Ok(Some(ClaimedJob {
        number: row.id,
        stage,
        // A job reaches a stage only together with its input, so this is never empty in
        // practice; an empty string is still better than `null` for the client.
        data: row.data.unwrap_or_default(),
        lease_token: row.lease_token,
        attempts: row.attempts,
    }))
}

/// Completes the job `worker` holds (fenced by its lease) with `output` and credits its
/// nickname. Refuses before writing anything when the worker holds no job or lost its lease;
/// the caller updates the worker row ([`set_held`]).
fn complete_in(
    tx: &mut WriteTx<'_>,
    worker: &WorkerLease,
    output: &str,
    config: &StoreConfig,
    now: i64,
) -> Result<Completion, TrackerError> {
    let (job, lease) = held_lease(worker)?;
    let stage = worker_stage(worker)?;
    let next_stage = config.next_enabled(stage);
    let updated = CompletionWrite { output, now, job, lease }.write(next_stage, tx)?;
    if updated != 1 {
        return Err(TrackerError::LeaseLost { job });
    }
    tx.credit(&worker.nickname);
    tx.record(job, stage.letter(), event::COMPLETE, Some(&worker.display_name), now, None);
    Ok(Completion { number: job, next_stage })
}

/// When the worker's heartbeat is due, the time to record as its `last_seen`.
fn seen(worker: &WorkerLease, now: i64) -> Option<i64> {
    heartbeat_due(worker, now).then_some(now)
}

impl JobStore {
    /// Claims one job of the worker's stage. A job the worker still holds is given back first
    /// (asking for a new job abandons the old one, as distcompute workers expect).
    ///
    /// # Errors
    /// [`TrackerError::UnknownWorker`], [`TrackerError::NoJobAvailable`]; database errors.
    pub fn claim(&self, token: &str) -> Result<ClaimedJob, TrackerError> {
        self.claim_matching(token, None)
    }

    /// Claims job `number` for the worker, if it is claimable at the worker's stage (open and
    /// due, or with an expired lease). Local pools use it to take the very job the stage before
    /// them just handed over.
    ///
    /// # Errors
    /// [`TrackerError::UnknownWorker`]; [`TrackerError::NoJobAvailable`] when that job is not
    /// claimable (another worker took it, or it is elsewhere); database errors.
    pub fn claim_job(&self, token: &str, number: i64) -> Result<ClaimedJob, TrackerError> {
        self.claim_matching(token, Some(number))
    }

    /// [`claim`](Self::claim) for async callers: awaits the database without holding a thread.
    /// Must be awaited inside a tokio runtime (the HTTP server's).
    ///
    /// # Errors
    /// As [`claim`](Self::claim).
    pub async fn claim_async(&self, token: &str) -> Result<ClaimedJob, TrackerError> {
        self.pools.write_async(self.claim_op(token, None)).await
    }

    fn claim_matching(&self, token: &str, only_job: Option<i64>) -> Result<ClaimedJob, TrackerError> {
        self.pools.write(self.claim_op(token, only_job))
    }

    /// The transaction of a claim. Writes nothing when there is nothing to claim, unless the
    /// worker held a job (then it is protected, and a refusal keeps that job held).
    fn claim_op(
        &self,
        token: &str,
        only_job: Option<i64>,
    ) -> impl FnOnce(&mut WriteTx<'_>) -> Result<ClaimedJob, TrackerError> + Send + 'static {
        let now = self.now_ms();
        let token = token.to_owned();
        move |tx| {
            let worker = load_worker(tx, &token)?;
            if worker.job_id.is_some() {
                tx.protect()?;
                reopen_held(tx, &token, &worker, now)?;
            }
            let job = claim_in(tx, &token, &worker, now, only_job)?.ok_or(TrackerError::NoJobAvailable)?;
            set_held(tx, &token, Some(&job), PROGRESS_CLAIMED, false, seen(&worker, now))?;
            Ok(job)
        }
    }

    /// Completes the worker's job with `output`: the output becomes the input of the next
    /// enabled stage, or the job is done with `output` as its final result. The worker and its
    /// nickname get credit, all in one transaction.
    ///
    /// # Errors
    /// [`TrackerError::UnknownWorker`], [`TrackerError::NoJobHeld`],
    /// [`TrackerError::LeaseLost`] (nothing changed); database errors.
    pub fn complete(&self, token: &str, output: &str) -> Result<Completion, TrackerError> {
        self.pools.write(self.complete_op(token, output))
    }

    /// [`complete`](Self::complete) for async callers: awaits the database without holding a
    /// thread. Must be awaited inside a tokio runtime (the HTTP server's).
    ///
    /// # Errors
    /// As [`complete`](Self::complete).
    pub async fn complete_async(&self, token: &str, output: &str) -> Result<Completion, TrackerError> {
        self.pools.write_async(self.complete_op(token, output)).await
    }

    /// The transaction of a completion: refuses before writing anything.
    fn complete_op(
        &self,
        token: &str,
        output: &str,
    ) -> impl FnOnce(&mut WriteTx<'_>) -> Result<Completion, TrackerError> + Send + 'static {
        let now = self.now_ms();
        let (token, output, config) = (token.to_owned(), output.to_owned(), Arc::clone(&self.config));
        move |tx| {
            let worker = load_worker(tx, &token)?;
            let completion = complete_in(tx, &worker, &output, &config, now)?;
            set_held(tx, &token, None, PROGRESS_COMPLETED, true, seen(&worker, now))?;
            Ok(completion)
        }
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
        token: &str,
        output: &str,
    ) -> Result<(Completion, Option<ClaimedJob>), TrackerError> {
        let now = self.now_ms();
        let (token, output, config) = (token.to_owned(), output.to_owned(), Arc::clone(&self.config));
        self.pools.write(move |tx| {
            let worker = load_worker(tx, &token)?;
            let completion = complete_in(tx, &worker, &output, &config, now)?;
            let next = claim_in(tx, &token, &worker, now, None)?;
            let progress = if next.is_some() { PROGRESS_CLAIMED } else { PROGRESS_COMPLETED };
            set_held(tx, &token, next.as_ref(), progress, true, seen(&worker, now))?;
            Ok((completion, next))
        })
    }

    /// Reports the worker's input as invalid and gives the job up. Below the flag threshold the
    /// job is re-opened at its stage; at the threshold it goes back to the previous stage, whose
    /// input is intact, and the count starts again. At stage `a` the job is always re-opened.
    /// A job already sent back `flag_threshold` times fails instead of going back again, so a
    /// stage that keeps rejecting what the previous one makes cannot loop forever.
    ///
    /// # Errors
    /// [`TrackerError::UnknownWorker`], [`TrackerError::NoJobHeld`],
    /// [`TrackerError::LeaseLost`] (nothing changed); database errors.
    pub fn flag_invalid(&self, token: &str, reason: Option<&str>) -> Result<FlagOutcome, TrackerError> {
        let now = self.now_ms();
        let threshold = i32::try_from(self.config.flag_threshold).unwrap_or(i32::MAX).max(1);
        let (token, reason) = (token.to_owned(), reason.map(str::to_owned));
        self.pools.write(move |tx| {
            tx.protect()?;
            let (token, reason) = (token.as_str(), reason.as_deref());
            let worker = touch(tx, token, now)?;
            let (job, lease) = held_lease(&worker)?;
            let stage = worker_stage(&worker)?;
            let flagged: Vec<FlaggedRow> = cached_sql!(
                "UPDATE jobs SET flags = flags + 1, state = 'open', lease_owner = NULL, \
                 lease_expires_at = NULL, updated_at = ? \
                 WHERE id = ? AND lease_token = ? AND state = 'leased' RETURNING flags",
            )
            .big_int(now)
            .big_int(job)
            .big_int(lease)
            .load(tx)?;
            let reports = flagged.first().ok_or(TrackerError::LeaseLost { job })?.flags;
            clear_held(tx, token)?;
            tx.record(job, stage.letter(), event::FLAG, Some(&worker.display_name), now, reason);
            let mut sent_back_to = stage.previous().filter(|_| reports >= threshold);
            let mut failed = false;
            if let Some(previous) = sent_back_to {
                tx.flush()?;
                let sent_back_before: i64 = job_events::table
                    .filter(job_events::job_id.eq(job))
                    .filter(job_events::kind.eq(event::SENT_BACK))
                    .count()
                    .get_result(&mut **tx)?;
                if sent_back_before >= i64::from(threshold) {
                    // Redoing the previous stage keeps producing input this stage rejects:
                    // stop the loop and leave the job visible as failed.
                    let error = format!(
                        "input flagged invalid at stage {stage} after {sent_back_before} send-backs: {}",
                        reason.unwrap_or("no reason given")
                    );
                    diesel::update(jobs::table.find(job))
                        .set((jobs::state.eq(state::FAILED), jobs::error.eq(&error)))
                        .execute(&mut **tx)?;
                    tx.record(job, stage.letter(), event::FAIL, None, now, Some(&error));
                    sent_back_to = None;
                    failed = true;
                } else {
                    diesel::update(jobs::table.find(job))
                        .set((jobs::stage.eq(previous.letter()), jobs::flags.eq(0), jobs::attempts.eq(0)))
                        .execute(&mut **tx)?;
                    tx.record(job, stage.letter(), event::SENT_BACK, None, now, Some(previous.letter()));
                }
            }
            Ok(FlagOutcome { number: job, reports, sent_back_to, failed })
        })
    }

    /// Gives the worker's job back to its stage without leaving (the worker stays registered).
    ///
    /// # Errors
    /// [`TrackerError::UnknownWorker`], [`TrackerError::NoJobHeld`]; database errors.
    pub fn release(&self, token: &str) -> Result<(), TrackerError> {
        let now = self.now_ms();
        let token = token.to_owned();
        self.pools.write(move |tx| {
            tx.protect()?;
            let worker = touch(tx, &token, now)?;
            held_lease(&worker)?;
            reopen_held(tx, &token, &worker, now)
        })
    }

    /// Gives the worker's job back after a transient failure: it is re-opened at its stage but
    /// not handed out again before `retry_at` (Unix ms). Its attempts stay counted.
    ///
    /// # Errors
    /// [`TrackerError::UnknownWorker`], [`TrackerError::NoJobHeld`],
    /// [`TrackerError::LeaseLost`] (nothing changed); database errors.
    pub fn retry_later(&self, token: &str, retry_at: i64, reason: &str) -> Result<(), TrackerError> {
        self.finish_held(token, Finish::Retry { at: retry_at }, reason)
    }

    /// Marks the worker's job failed with `error`: it leaves the pipeline, visible with its
    /// reason in listings and on the dashboard.
    ///
    /// # Errors
    /// [`TrackerError::UnknownWorker`], [`TrackerError::NoJobHeld`],
    /// [`TrackerError::LeaseLost`] (nothing changed); database errors.
    pub fn fail(&self, token: &str, error: &str) -> Result<(), TrackerError> {
        self.finish_held(token, Finish::Fail, error)
    }

    fn finish_held(&self, token: &str, finish: Finish, detail: &str) -> Result<(), TrackerError> {
        let now = self.now_ms();
        let (token, detail) = (token.to_owned(), truncate(detail, MAX_DETAIL_CHARS).to_owned());
        self.pools.write(move |tx| {
            tx.protect()?;
            let worker = touch(tx, &token, now)?;
            let (job, lease) = held_lease(&worker)?;
            let fenced = jobs::table
                .find(job)
                .filter(jobs::lease_token.eq(lease))
                .filter(jobs::state.eq(state::LEASED));
            let cleared = (jobs::lease_owner.eq(None::<String>), jobs::lease_expires_at.eq(None::<i64>), jobs::updated_at.eq(now));
            let (updated, kind) = match finish {
                Finish::Retry { at } => (
                    diesel::update(fenced)
                        .set((cleared, jobs::state.eq(state::OPEN), jobs::retry_at.eq(at)))
                        .execute(&mut **tx)?,
                    event::RETRY,
                ),
                Finish::Fail => (
                    diesel::update(fenced)
                        .set((cleared, jobs::state.eq(state::FAILED), jobs::error.eq(&detail)))
                        .execute(&mut **tx)?,
                    event::FAIL,
                ),
            };
            if updated != 1 {
                return Err(TrackerError::LeaseLost { job });
            }
            clear_held(tx, &token)?;
            tx.record(job, &worker.stage, kind, Some(&worker.display_name), now, Some(&detail));
            Ok(())
        })
    }
}

/// How [`JobStore::finish_held`] ends a lease without completing the job.
#[derive(Debug, Clone, Copy)]
enum Finish {
    /// Re-open, due again at `at`.
    Retry { at: i64 },
    /// Mark failed.
    Fail,
}

/// Longest error or retry reason kept (longer ones are cut).
const MAX_DETAIL_CHARS: usize = 2048;
