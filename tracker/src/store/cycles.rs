//! The worker's lease cycle (claim, progress, completion) as data, so that a PostgreSQL batch
//! runs the cycles of all its workers in a handful of statements.
//!
//! Alone, a claim is three statements (read the worker, lease a job, point the worker at it),
//! a completion three and a progress report one, each a round trip the server parses, plans
//! and starts. Under load PostgreSQL spent more on those per-statement costs, and on the
//! claim's index walk repeated for every worker, than on the rows themselves. Together, a
//! batch reads all its workers in one statement, completes all its jobs in one, finds the jobs
//! for all its claims of a stage in one index walk (`… LIMIT n FOR UPDATE SKIP LOCKED`),
//! leases them in one, and updates all its workers in one; the values travel as one JSON
//! array per statement. Every rule of the single-operation path holds: a completion is fenced
//! by its lease, a refusal writes nothing, jobs are handed out lowest number first, a job that
//! used up its attempts is failed instead of handed out. What the combined path does not cover
//! runs alone, after it, through the single-operation code: a claim by a worker that still
//! holds a job (it gives that job back first), a claim that found no open job (it goes on to
//! expired leases, or records the idle worker's heartbeat), a progress report due a heartbeat
//! (it extends the worker's lease), and a second operation of one worker in the same batch.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use diesel::sql_types::{BigInt, Text};
use diesel::QueryableByName;
use serde::Serialize;

use super::leases::{
    claim_alone, claim_in, claimed_job, complete_alone, give_up, held_lease, worker_stage, GivenUp, PROGRESS_CLAIMED,
    PROGRESS_COMPLETED,
};
use super::workers::{heartbeat_due, progress_alone};
use super::event;
use crate::config::StoreConfig;
use crate::db::statements::{CandidateRow, UnixMs, WorkerLease};
use crate::db::{cached_sql, Combine, Together, WriteTx};
use crate::error::TrackerError;
use crate::protocol::{ClaimedJob, Completion, HeldLease, LeaseEpoch, WorkerToken};
use crate::stage::StageId;

/// One step of a worker's lease cycle.
#[derive(Debug, Clone)]
pub(crate) enum CycleStep {
    /// Claim the lowest numbered claimable job of the worker's stage.
    Claim,
    /// Record the worker's progress text.
    Progress(String),
    /// Complete the worker's job with an output (fenced by `held` when given), then, with
    /// `then_claim`, claim the next one.
    Complete { held: Option<HeldLease>, output: String, then_claim: bool },
}

/// A step of a worker's lease cycle, as the group commit runs it.
#[derive(Debug)]
pub(crate) struct LeaseCycle {
    token: WorkerToken,
    now: UnixMs,
    config: Arc<StoreConfig>,
    step: CycleStep,
}

/// What a step of the lease cycle answered.
#[derive(Debug)]
pub(crate) enum CycleAnswer {
    /// The job claimed, or `None` when nothing was claimable but the claim committed something.
    Claimed(Option<ClaimedJob>),
    /// The progress text is recorded.
    Progressed,
    /// The job completed, and the next one claimed if asked for and any was claimable.
    Completed(Completion, Option<ClaimedJob>),
}

impl CycleAnswer {
    /// The claimed job; `NoJobAvailable` when there was none.
    pub(crate) fn claimed(self) -> Result<ClaimedJob, TrackerError> {
        match self {
            Self::Claimed(job) => job.ok_or(TrackerError::NoJobAvailable),
            other => Err(other.mismatch()),
        }
    }

    /// The completion and the next job.
    pub(crate) fn completed(self) -> Result<(Completion, Option<ClaimedJob>), TrackerError> {
        match self {
            Self::Completed(completion, next) => Ok((completion, next)),
            other => Err(other.mismatch()),
        }
    }

    /// Nothing: the progress is recorded.
    pub(crate) fn progressed(self) -> Result<(), TrackerError> {
        match self {
            Self::Progressed => Ok(()),
            other => Err(other.mismatch()),
        }
    }

    fn mismatch(&self) -> TrackerError {
        TrackerError::Commit(format!("a lease cycle step was answered with {self:?}"))
    }
}

impl LeaseCycle {
    /// `step` of the worker with `token`, taken at `now`.
    pub(crate) fn new(token: WorkerToken, now: UnixMs, config: Arc<StoreConfig>, step: CycleStep) -> Self {
        Self { token, now, config, step }
    }
}

impl Combine for LeaseCycle {
    type Answer = CycleAnswer;

    fn worker_key(&self) -> &str {
        self.token.stored_key()
    }

    fn run_alone(self, tx: &mut WriteTx<'_>) -> Result<CycleAnswer, TrackerError> {
        let Self { token, now, config, step } = self;
        match step {
            CycleStep::Claim => claim_alone(tx, &token, &config, now, None).map(CycleAnswer::Claimed),
            CycleStep::Progress(text) => progress_alone(tx, &token, &text, now).map(|()| CycleAnswer::Progressed),
            CycleStep::Complete { held, output, then_claim } => {
                let (completion, next) = complete_alone(tx, &token, held, &output, then_claim, &config, now)?;
                Ok(CycleAnswer::Completed(completion, next))
            }
        }
    }

    fn run_together(tx: &mut WriteTx<'_>, ops: Vec<Self>) -> Result<Vec<Together<Self>>, TrackerError> {
        Batch::new(ops).run(tx)
    }
}

/// Completes a batch's jobs, fenced by their leases, from a JSON array of
/// [`CompletionValues`]: a job moves on to its next stage with the output as its input there,
/// or is done with it as its result. Returns the jobs completed, each with the lease that
/// completed it: two workers may name the same job in one batch (one whose lease expired, and
/// the one the job was handed to since), and only the current lease's completion counts.
///
/// The jobs are also named as an array of numbers, and the state as a range of one, so that
/// looking each job up by number is the only plan that fits whatever the table's size and
/// statistics: the planner expects a hundred rows from any JSON, so given only the join it
/// reads a small table whole, and with `state = 'leased'` it reads every leased job through the
/// partial index of lease expiries (under load, mostly dead row versions) and hash-joins them.
const COMPLETE: &str =
        "UPDATE jobs SET stage = COALESCE(v.next, jobs.stage), \
         state = CASE WHEN v.next IS NULL THEN 'done' ELSE 'open' END, \
         result = CASE WHEN v.next IS NULL THEN v.output ELSE jobs.result END, \
         completed_at = CASE WHEN v.next IS NULL THEN v.now ELSE jobs.completed_at END, \
         data_a = CASE WHEN v.next = 'a' THEN v.output ELSE jobs.data_a END, \
         data_b = CASE WHEN v.next = 'b' THEN v.output ELSE jobs.data_b END, \
         data_c = CASE WHEN v.next = 'c' THEN v.output ELSE jobs.data_c END, \
         data_d = CASE WHEN v.next = 'd' THEN v.output ELSE jobs.data_d END, \
         data_e = CASE WHEN v.next = 'e' THEN v.output ELSE jobs.data_e END, \
         attempts = CASE WHEN v.next IS NULL THEN jobs.attempts ELSE 0 END, \
         flags = CASE WHEN v.next IS NULL THEN jobs.flags ELSE 0 END, \
         updated_at = v.now, lease_owner = NULL, lease_expires_at = NULL \
         FROM json_to_recordset(CAST(? AS json)) AS v(id bigint, lease bigint, output text, next text, now bigint) \
         WHERE jobs.id = ANY(CAST(? AS bigint[])) AND jobs.id = v.id AND jobs.lease_token = v.lease \
         AND jobs.state >= 'leased' AND jobs.state <= 'leased' \
         RETURNING jobs.id AS id, jobs.lease_token AS lease";

/// Updates a batch's workers from a JSON array of [`WorkerValues`]. The workers are also named
/// as an array of tokens, so that each is looked up by its token: given only the join, the
/// planner, expecting a hundred rows from any JSON, reads all workers (thousands, with many
/// idle ones polling) on every batch.
const UPDATE_WORKERS: &str = "UPDATE workers SET job_id = CASE WHEN v.hold THEN v.job ELSE workers.job_id END, \
     lease_token = CASE WHEN v.hold THEN v.lease ELSE workers.lease_token END, progress = v.progress, \
     jobs_completed = workers.jobs_completed + v.completed, last_seen = COALESCE(v.seen, workers.last_seen) \
     FROM json_to_recordset(CAST(? AS json)) \
     AS v(token text, hold boolean, job bigint, lease bigint, progress text, completed bigint, seen bigint) \
     WHERE workers.token = ANY(string_to_array(?, ',')) AND workers.token = v.token";

/// A worker's row, with its key.
#[derive(QueryableByName)]
struct KeyedWorker {
    #[diesel(sql_type = Text)]
    token: String,
    #[diesel(embed)]
    worker: WorkerLease,
}

/// A job a completion moved on, and the lease it was completed under, as the combined
/// completion returns it.
#[derive(QueryableByName)]
struct CompletedRow {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = BigInt)]
    lease: i64,
}

/// A completion's values in the combined statement.
#[derive(Serialize)]
struct CompletionValues<'a> {
    id: i64,
    lease: i64,
    output: &'a str,
    next: Option<&'static str>,
    now: i64,
}

/// A new lease's values in the combined statement.
#[derive(Serialize)]
struct LeaseValues<'a> {
    id: i64,
    owner: &'a str,
    expires: i64,
    now: i64,
}

/// A worker's new values in the combined statement.
#[derive(Serialize)]
struct WorkerValues<'a> {
    token: &'a str,
    /// Whether `job` and `lease` replace what the worker holds.
    hold: bool,
    job: Option<i64>,
    lease: Option<i64>,
    progress: &'a str,
    completed: i64,
    seen: Option<i64>,
}

/// How far one operation of the batch has got.
enum Progress {
    /// Not looked at yet, or to be run alone.
    Waiting,
    /// Settled: its answer (an error wrote nothing).
    Settled(Result<CycleAnswer, TrackerError>),
    /// A claim (or the claim after a completion) waiting for a job.
    Claiming { completion: Option<Completion> },
    /// Done, waiting for the worker's row to be updated.
    Done { completion: Option<Completion>, next: Option<ClaimedJob> },
    /// A progress report, waiting for the worker's row to be updated.
    Progressing,
}

/// The batch's lease cycle steps and how far each has got.
struct Batch {
    ops: Vec<LeaseCycle>,
    /// Each operation's worker (loaded by [`Batch::load_workers`]).
    workers: Vec<Option<WorkerLease>>,
    progress: Vec<Progress>,
    /// Whether the operation runs alone, after the batch.
    alone: Vec<bool>,
}

impl Batch {
    fn new(ops: Vec<LeaseCycle>) -> Self {
        let n = ops.len();
        let mut seen = std::collections::HashSet::with_capacity(n);
        // A worker's second step in the same batch runs alone, after its first.
        let alone = ops.iter().map(|op| !seen.insert(op.token.stored_key().to_owned())).collect();
        Self { ops, workers: (0..n).map(|_| None).collect(), progress: (0..n).map(|_| Progress::Waiting).collect(), alone }
    }

    fn run(mut self, tx: &mut WriteTx<'_>) -> Result<Vec<Together<LeaseCycle>>, TrackerError> {
        self.load_workers(tx)?;
        self.sort_out();
        self.complete(tx)?;
        self.claim(tx)?;
        self.update_workers(tx)?;
        Ok(self.answers())
    }

    /// Reads the workers of every operation in one statement; an unknown worker is refused.
    fn load_workers(&mut self, tx: &mut WriteTx<'_>) -> Result<(), TrackerError> {
        let keys: Vec<&str> = self.ops.iter().map(|op| op.token.stored_key()).collect();
        let rows: Vec<KeyedWorker> = cached_sql!(
            "SELECT token, last_seen, stage, nickname, display_name, lease_ttl_ms, job_id, lease_token \
             FROM workers WHERE token = ANY(string_to_array(?, ','))"
        )
        .bind(keys.join(",").as_str())
        .load(tx)?;
        let mut by_key: HashMap<String, WorkerLease> = rows.into_iter().map(|row| (row.token, row.worker)).collect();
        for (at, op) in self.ops.iter().enumerate() {
            if self.alone[at] {
                continue;
            }
            match by_key.remove(op.token.stored_key()) {
                Some(worker) => self.workers[at] = Some(worker),
                None => self.progress[at] = Progress::Settled(Err(TrackerError::UnknownWorker)),
            }
        }
        Ok(())
    }

    /// Decides, from each worker's row, what runs together and what alone; refuses completions
    /// of a lease the worker does not hold.
    fn sort_out(&mut self) {
        for at in 0..self.ops.len() {
            let (Some(worker), Progress::Waiting, false) = (&self.workers[at], &self.progress[at], self.alone[at]) else {
                continue;
            };
            let op = &self.ops[at];
            match &op.step {
                // Giving back the job it holds, and what to do when nothing is open, are the
                // single claim's.
                CycleStep::Claim if worker.job_id.is_some() => self.alone[at] = true,
                CycleStep::Claim => self.progress[at] = Progress::Claiming { completion: None },
                // A heartbeat extends the lease of the job the worker holds.
                CycleStep::Progress(_) if heartbeat_due(worker, op.now) => self.alone[at] = true,
                CycleStep::Progress(_) => self.progress[at] = Progress::Progressing,
                CycleStep::Complete { held, .. } => {
                    if let Err(refusal) = held_lease(worker, *held).and_then(|_| worker_stage(worker)) {
                        self.progress[at] = Progress::Settled(Err(refusal));
                    }
                }
            }
        }
    }

    /// Completes every job of the batch's completions in one statement, fenced by each lease;
    /// a completion whose lease is gone is refused.
    fn complete(&mut self, tx: &mut WriteTx<'_>) -> Result<(), TrackerError> {
        let mut values = Vec::new();
        let mut completing = Vec::new();
        for (at, op) in self.ops.iter().enumerate() {
            let (CycleStep::Complete { held, output, .. }, Some(worker), Progress::Waiting, false) =
                (&op.step, &self.workers[at], &self.progress[at], self.alone[at])
            else {
                continue;
            };
            // Refusals were settled by `sort_out`.
            let (Ok((job, lease)), Ok(stage)) = (held_lease(worker, *held), worker_stage(worker)) else { continue };
            let next = op.config.next_enabled(stage);
            values.push(CompletionValues { id: job.0, lease: lease.0, output, next: next.map(StageId::letter), now: op.now.0 });
            completing.push((at, lease, Completion { number: job, next_stage: next }));
        }
        if values.is_empty() {
            return Ok(());
        }
        // Rows are locked in job order, as concurrent batches lock them.
        values.sort_by_key(|v| v.id);
        let done: Vec<CompletedRow> = cached_sql!(COMPLETE)
        .bind(to_json(&values)?.as_str())
        .bind(id_array(values.iter().map(|v| v.id)).as_str())
        .load(tx)?;
        let done: std::collections::HashSet<(i64, i64)> = done.into_iter().map(|row| (row.id, row.lease)).collect();
        for (at, lease, completion) in completing {
            let job = completion.number;
            if !done.contains(&(job.0, lease.0)) {
                self.progress[at] = Progress::Settled(Err(TrackerError::LeaseLost { job }));
                continue;
            }
            let (op, worker) = (&self.ops[at], self.workers[at].as_ref().expect("loaded"));
            tx.credit(&worker.nickname);
            tx.record(job.0, &worker.stage, event::COMPLETE, Some(&worker.display_name), op.now.0, None);
            let then_claim = matches!(op.step, CycleStep::Complete { then_claim: true, .. });
            self.progress[at] = if then_claim {
                Progress::Claiming { completion: Some(completion) }
            } else {
                Progress::Done { completion: Some(completion), next: None }
            };
        }
        Ok(())
    }

    /// Finds the jobs for every claim of a stage in one locked index walk and leases them all
    /// in one statement. Claims left without a job: a plain claim runs alone (expired leases,
    /// the idle worker's heartbeat); the claim after a completion searches on its own now.
    fn claim(&mut self, tx: &mut WriteTx<'_>) -> Result<(), TrackerError> {
        let mut by_stage: BTreeMap<StageId, Vec<usize>> = BTreeMap::new();
        for (at, progress) in self.progress.iter().enumerate() {
            if let (Progress::Claiming { .. }, Some(worker)) = (progress, &self.workers[at]) {
                by_stage.entry(worker_stage(worker)?).or_default().push(at);
            }
        }
        let (mut leases, mut unserved) = (Vec::new(), Vec::new());
        for (stage, claimers) in by_stage {
            let found = self.find_open(tx, stage, &claimers)?;
            let first = &self.ops[claimers[0]];
            let (max_attempts, first_now) = (i32::try_from(first.config.max_attempts(stage)).unwrap_or(i32::MAX), first.now);
            let mut claimers = claimers.into_iter();
            for row in found {
                if row.attempts >= max_attempts {
                    give_up(tx, &row, stage, first_now, GivenUp::NotYet)?;
                    continue;
                }
                let Some(at) = claimers.next() else { break };
                let (op, worker) = (&self.ops[at], self.workers[at].as_ref().expect("loaded"));
                let job = claimed_job(row.id, row.data, stage, LeaseEpoch(row.lease_token + 1), row.attempts + 1);
                let expires = op.now.0.saturating_add(worker.lease_ttl_ms);
                leases.push(LeaseValues { id: job.number.0, owner: op.token.stored_key(), expires, now: op.now.0 });
                tx.record(job.number.0, stage.letter(), event::CLAIM, Some(&worker.display_name), op.now.0, None);
                let Progress::Claiming { completion } = self.progress[at] else { unreachable!("a claim") };
                self.progress[at] = Progress::Done { completion, next: Some(job) };
            }
            unserved.extend(claimers);
        }
        // Leased before any claim searches again: this transaction's own row locks do not make
        // its searches skip the rows it found, so a search before the update would find them open.
        Self::lease(tx, &mut leases)?;
        for at in unserved {
            let Progress::Claiming { completion } = self.progress[at] else { unreachable!("a claim") };
            let Some(completion) = completion else {
                self.progress[at] = Progress::Waiting;
                self.alone[at] = true;
                continue;
            };
            let (op, worker) = (&self.ops[at], self.workers[at].as_ref().expect("loaded"));
            let next = claim_in(tx, &op.token, worker, &op.config, op.now, None)?.claimed;
            self.progress[at] = Progress::Done { completion: Some(completion), next };
        }
        Ok(())
    }

    /// Leases the jobs the claims found, in one statement; fails the batch if any of them is no
    /// longer open (the search locked them, so none can be).
    fn lease(tx: &mut WriteTx<'_>, leases: &mut [LeaseValues<'_>]) -> Result<(), TrackerError> {
        if leases.is_empty() {
            return Ok(());
        }
        leases.sort_by_key(|lease| lease.id);
        let leased = cached_sql!(
            "UPDATE jobs SET state = 'leased', lease_owner = v.owner, lease_token = jobs.lease_token + 1, \
             lease_expires_at = v.expires, attempts = jobs.attempts + 1, retry_at = NULL, updated_at = v.now \
             FROM json_to_recordset(CAST(? AS json)) AS v(id bigint, owner text, expires bigint, now bigint) \
             WHERE jobs.id = ANY(CAST(? AS bigint[])) AND jobs.id = v.id AND jobs.state = 'open'"
        )
        .bind(to_json(leases)?.as_str())
        .bind(id_array(leases.iter().map(|lease| lease.id)).as_str())
        .execute(tx)?;
        if leased != leases.len() {
            return Err(TrackerError::Commit(format!("{leased} of the {} jobs claimed together were still open", leases.len())));
        }
        Ok(())
    }

    /// The lowest numbered open jobs of `stage` that are due, one per claimer, locked (rows
    /// other transactions are claiming are skipped); none while the stage is paused. Walks the
    /// `(stage, state, id)` index as the single claim does (see `statements::lease_open`).
    fn find_open(&self, tx: &mut WriteTx<'_>, stage: StageId, claimers: &[usize]) -> Result<Vec<CandidateRow>, TrackerError> {
        let due = claimers.iter().map(|&at| self.ops[at].now).min().unwrap_or(UnixMs(0));
        let limit = i64::try_from(claimers.len()).unwrap_or(i64::MAX);
        let rows = cached_sql!(
            "SELECT id, state, lease_token, attempts, CASE stage WHEN 'a' THEN data_a WHEN 'b' THEN data_b \
             WHEN 'c' THEN data_c WHEN 'd' THEN data_d ELSE data_e END AS data FROM jobs \
             WHERE stage >= ? AND stage <= ? AND state = 'open' AND (retry_at IS NULL OR retry_at <= ?) \
             AND NOT EXISTS (SELECT 1 FROM paused_stages WHERE stage = ?) ORDER BY stage, id LIMIT ? \
             FOR UPDATE SKIP LOCKED"
        )
        .bind(stage.letter())
        .bind(stage.letter())
        .bind(due.0)
        .bind(stage.letter())
        .bind(limit)
        .load(tx)?;
        Ok(rows)
    }

    /// Points every worker at what it holds now, with its progress text, credit and heartbeat,
    /// in one statement.
    fn update_workers(&mut self, tx: &mut WriteTx<'_>) -> Result<(), TrackerError> {
        let mut values = Vec::new();
        for (at, op) in self.ops.iter().enumerate() {
            let Some(worker) = &self.workers[at] else { continue };
            let seen = heartbeat_due(worker, op.now).then_some(op.now.0);
            let token = op.token.stored_key();
            match (&self.progress[at], &op.step) {
                (Progress::Done { completion, next }, _) => {
                    let progress = if next.is_some() { PROGRESS_CLAIMED } else { PROGRESS_COMPLETED };
                    values.push(WorkerValues {
                        token,
                        hold: true,
                        job: next.as_ref().map(|job| job.number.0),
                        lease: next.as_ref().map(|job| job.lease.0),
                        progress,
                        completed: i64::from(completion.is_some()),
                        seen,
                    });
                }
                (Progress::Progressing, CycleStep::Progress(text)) => values.push(WorkerValues {
                    token,
                    hold: false,
                    job: None,
                    lease: None,
                    progress: text,
                    completed: 0,
                    seen: None,
                }),
                _ => {}
            }
        }
        if values.is_empty() {
            return Ok(());
        }
        values.sort_by(|a, b| a.token.cmp(b.token));
        cached_sql!(UPDATE_WORKERS)
        .bind(to_json(&values)?.as_str())
        .bind(values.iter().map(|v| v.token).collect::<Vec<_>>().join(",").as_str())
        .execute(tx)?;
        Ok(())
    }

    /// Each operation's answer, or the operation back to run alone.
    fn answers(self) -> Vec<Together<LeaseCycle>> {
        self.ops
            .into_iter()
            .zip(self.progress)
            .zip(self.alone)
            .map(|((op, progress), alone)| match (progress, alone) {
                (Progress::Settled(outcome), _) => Together::Settled(outcome),
                (_, true) | (Progress::Waiting | Progress::Claiming { .. }, _) => Together::Alone(op),
                (Progress::Progressing, false) => Together::Settled(Ok(CycleAnswer::Progressed)),
                (Progress::Done { completion: Some(completion), next }, false) => {
                    Together::Settled(Ok(CycleAnswer::Completed(completion, next)))
                }
                (Progress::Done { completion: None, next }, false) => Together::Settled(Ok(CycleAnswer::Claimed(next))),
            })
            .collect()
    }
}

/// Job numbers as a PostgreSQL array literal (`{1,2,3}`).
fn id_array(ids: impl Iterator<Item = i64>) -> String {
    use std::fmt::Write;
    let mut array = String::from("{");
    for (n, id) in ids.enumerate() {
        let comma = if n == 0 { "" } else { "," };
        let _ = write!(array, "{comma}{id}");
    }
    array.push('}');
    array
}

/// `values` as the JSON array a combined statement reads.
fn to_json<T: Serialize>(values: &[T]) -> Result<String, TrackerError> {
    serde_json::to_string(values).map_err(|e| TrackerError::Commit(format!("cannot encode a batch's values: {e}")))
}


#[cfg(test)]
mod tests {
    use std::time::Duration;

    use diesel::{Connection, PgConnection, RunQueryDsl};

    use super::*;
    use crate::clock::ManualClock;
    use crate::db::statements::tests::plans;
    use crate::db::{commit_together, DatabaseUrl, DbConnection};
    use crate::protocol::JobId;
    use crate::store::JobStore;
    use crate::testing::TestDatabase;
    use crate::JobState;

    const START_MS: i64 = 1_700_000_000_000;

    fn config() -> StoreConfig {
        StoreConfig {
            project: "Cycles".to_owned(),
            stage_names: [Some("A".to_owned()), Some("B".to_owned()), None, None, None],
            idle_timeout: Duration::from_secs(600),
            flag_threshold: 3,
            max_attempts: [5; 5],
        }
    }

    /// A store on a new PostgreSQL database with jobs `in-1` … `in-{jobs}` loaded.
    struct Fixture {
        db: TestDatabase,
        clock: ManualClock,
        config: Arc<StoreConfig>,
        store: JobStore,
    }

    impl Fixture {
        fn new(jobs: usize) -> Self {
            let (db, clock, config) = (TestDatabase::postgres(), ManualClock::new(START_MS), Arc::new(config()));
            let store = JobStore::open(db.url(), (*config).clone(), Arc::new(clock.clone()), 4).unwrap();
            let inputs: Vec<String> = (1..=jobs).map(|i| format!("in-{i}")).collect();
            store.load_jobs(&inputs, false).unwrap();
            Self { db, clock, config, store }
        }

        /// `step` of the worker with `token`, taken now.
        fn step(&self, token: &WorkerToken, step: CycleStep) -> LeaseCycle {
            LeaseCycle::new(token.clone(), UnixMs(self.store.now_ms()), Arc::clone(&self.config), step)
        }

        /// Commits `ops` as one batch, run together, on a connection of its own.
        fn commit_together(&self, ops: Vec<LeaseCycle>) -> Vec<Result<CycleAnswer, TrackerError>> {
            let DatabaseUrl::Postgres(url) = self.db.url() else { unreachable!("a PostgreSQL database") };
            commit_together(&mut DbConnection::Pg(PgConnection::establish(url).unwrap()), ops)
        }
    }

    #[test]
    fn on_postgres_one_batch_runs_the_cycles_of_many_workers_together_with_every_rule_of_the_single_path() {
        let f = Fixture::new(6);
        let (store, clock) = (&f.store, &f.clock);
        let [w1, w2, w3, w4, w5] =
            ["one", "two", "three", "four", "five"].map(|name| store.register_worker(name, StageId::A, None).unwrap());
        // Workers three and four hold jobs 1 and 2.
        let held = store.claim(&w3.token).unwrap();
        assert_eq!(store.claim(&w4.token).unwrap().number, JobId(2));
        clock.advance(Duration::from_millis(10));

        let step = |token: &WorkerToken, step| f.step(token, step);
        let ghost = WorkerToken::new("nobody registered this");
        let stale = HeldLease { number: JobId(2), lease: LeaseEpoch(99) };
        let ops = vec![
            step(&w1.token, CycleStep::Claim),
            step(&w2.token, CycleStep::Claim),
            step(&w3.token, CycleStep::Complete { held: None, output: "to b".to_owned(), then_claim: true }),
            step(&w4.token, CycleStep::Complete { held: Some(stale), output: "lost".to_owned(), then_claim: false }),
            step(&w5.token, CycleStep::Progress("halfway".to_owned())),
            step(&ghost, CycleStep::Claim),
            // The same worker twice: the second runs alone, after, and gives back the first's job.
            step(&w1.token, CycleStep::Claim),
        ];
        let answers = f.commit_together(ops);

        let claimed = |answer: &Result<CycleAnswer, TrackerError>| match answer {
            Ok(CycleAnswer::Claimed(Some(job))) => (job.number.0, job.lease.0, job.attempt, job.data.clone()),
            other => panic!("not a claim: {other:?}"),
        };
        // Lowest numbers first, in the order the claims came.
        assert_eq!(claimed(&answers[0]), (3, 1, 1, "in-3".to_owned()));
        assert_eq!(claimed(&answers[1]), (4, 1, 1, "in-4".to_owned()));
        match &answers[2] {
            Ok(CycleAnswer::Completed(completion, Some(next))) => {
                assert_eq!((completion.number, completion.next_stage), (held.number, Some(StageId::B)));
                assert_eq!((next.number.0, next.data.as_str()), (5, "in-5"));
            }
            other => panic!("not a completion with a next job: {other:?}"),
        }
        assert!(matches!(answers[3], Err(TrackerError::LeaseLost { job: JobId(2) })), "{:?}", answers[3]);
        assert!(matches!(answers[4], Ok(CycleAnswer::Progressed)), "{:?}", answers[4]);
        assert!(matches!(answers[5], Err(TrackerError::UnknownWorker)), "{:?}", answers[5]);
        // Job 3 went back to its stage, an attempt used, and was the lowest open job again.
        assert_eq!(claimed(&answers[6]), (3, 2, 2, "in-3".to_owned()));

        let one = store.job(1).unwrap();
        assert_eq!((one.summary.stage, one.summary.state, one.summary.attempts), (StageId::B, JobState::Open, 0));
        assert_eq!(one.data[1].as_deref(), Some("to b"));
        let kinds: Vec<&str> = one.events.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(kinds, ["claim", "complete"]);
        let two = store.job(2).unwrap();
        assert_eq!((two.summary.state, two.data[1].as_deref()), (JobState::Leased, None), "a refused completion wrote nothing");
        let three: Vec<String> = store.job(3).unwrap().events.into_iter().map(|e| e.kind).collect();
        assert_eq!(three, ["claim", "release", "claim"]);
        let workers = store.workers(None, 0, 10).unwrap().items;
        let worker = |name: &str| workers.iter().find(|w| w.display_name == name).unwrap();
        assert_eq!((worker(&w1.display_name).job, worker(&w2.display_name).job), (Some(3), Some(4)));
        assert_eq!((worker(&w3.display_name).job, worker(&w3.display_name).jobs_completed), (Some(5), 1));
        assert_eq!(worker(&w3.display_name).progress, PROGRESS_CLAIMED);
        assert_eq!((worker(&w4.display_name).job, worker(&w4.display_name).jobs_completed), (Some(2), 0));
        assert_eq!(worker(&w5.display_name).progress, "halfway");
        let board = store.leaderboard(0, 10).unwrap().items;
        assert_eq!(board.iter().map(|e| (e.nickname.as_str(), e.jobs_completed)).collect::<Vec<_>>(), [("three", 1)]);
    }

    #[test]
    fn on_postgres_a_claim_beyond_the_open_jobs_gets_none_of_those_its_batch_took() {
        let f = Fixture::new(2);
        let store = &f.store;
        let [w1, w2] = ["one", "two"].map(|name| store.register_worker(name, StageId::A, None).unwrap());
        assert_eq!(store.claim(&w1.token).unwrap().number, JobId(1));
        let step = |token: &WorkerToken, step| f.step(token, step);
        // Two claims at stage a, one open job: the plain claim takes it; the claim after the
        // completion, searching on its own, must not find it again.
        let ops = vec![
            step(&w2.token, CycleStep::Claim),
            step(&w1.token, CycleStep::Complete { held: None, output: "to b".to_owned(), then_claim: true }),
        ];
        let answers = f.commit_together(ops);
        assert!(matches!(&answers[0], Ok(CycleAnswer::Claimed(Some(job))) if job.number == JobId(2)), "{:?}", answers[0]);
        assert!(matches!(&answers[1], Ok(CycleAnswer::Completed(_, None))), "{:?}", answers[1]);
        let two = store.job(2).unwrap();
        assert_eq!(two.events.iter().filter(|e| e.kind == event::CLAIM).count(), 1, "{:?}", two.events);
        let workers = store.workers(None, 0, 10).unwrap().items;
        let holding: Vec<Option<i64>> = [&w1, &w2]
            .map(|w| workers.iter().find(|v| v.display_name == w.display_name).unwrap().job)
            .into();
        assert_eq!(holding, [None, Some(2)]);
    }

    #[test]
    fn on_postgres_of_two_completions_of_one_job_in_a_batch_only_the_current_lease_counts() {
        let f = Fixture::new(1);
        let (store, clock) = (&f.store, &f.clock);
        let late = store.register_worker("late", StageId::A, Some(Duration::from_secs(1))).unwrap();
        let current = store.register_worker("current", StageId::A, None).unwrap();
        assert_eq!(store.claim(&late.token).unwrap().lease, LeaseEpoch(1));
        // The first lease expires and the job is handed to the other worker; both complete it.
        clock.advance(Duration::from_secs(2));
        assert_eq!(store.claim(&current.token).unwrap().lease, LeaseEpoch(2));
        let complete = |output: &str| CycleStep::Complete { held: None, output: output.to_owned(), then_claim: false };
        let answers = f.commit_together(vec![f.step(&late.token, complete("late")), f.step(&current.token, complete("current"))]);
        assert!(matches!(answers[0], Err(TrackerError::LeaseLost { job: JobId(1) })), "{:?}", answers[0]);
        assert!(matches!(answers[1], Ok(CycleAnswer::Completed(..))), "{:?}", answers[1]);
        let job = store.job(1).unwrap();
        assert_eq!(job.data[1].as_deref(), Some("current"));
        let kinds: Vec<&str> = job.events.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(kinds, ["claim", "expire", "claim", "complete"]);
        let board = store.leaderboard(0, 10).unwrap().items;
        assert_eq!(board.iter().map(|e| (e.nickname.as_str(), e.jobs_completed)).collect::<Vec<_>>(), [("current", 1)]);
    }

    #[test]
    fn on_postgres_the_combined_statements_look_each_job_and_worker_up_by_key() {
        let db = TestDatabase::postgres();
        let store = JobStore::open(db.url(), config(), Arc::new(ManualClock::new(START_MS)), 2).unwrap();
        drop(store);
        let DatabaseUrl::Postgres(url) = db.url() else { unreachable!("a PostgreSQL database") };
        let mut conn = PgConnection::establish(url).unwrap();
        let text = COMPLETE.replacen('?', "$1", 1).replacen('?', "$2", 1);
        diesel::sql_query(format!("PREPARE complete (text, text) AS {text}")).execute(&mut conn).unwrap();
        let execute = r#"EXECUTE complete ('[{"id": 7, "lease": 1, "output": "x", "next": null, "now": 1}]', '{7}')"#;
        // A project under load, a few leased jobs among many, with and without statistics; and a
        // small one, which the planner would otherwise read whole.
        for (jobs, analyze) in [(200_000, true), (200_000, false), (10_000, true), (10_000, false)] {
            db.execute(&format!(
                "TRUNCATE jobs; INSERT INTO jobs (id, stage, state, data_a, lease_token, created_at, updated_at) \
                 SELECT g, 'a', CASE WHEN g <= 64 THEN 'leased' ELSE 'open' END, 'in-' || g, 1, 0, 0 \
                 FROM generate_series(1, {jobs}) AS g; {}",
                if analyze { "ANALYZE jobs" } else { "SELECT 1" }
            ));
            for (mode, plan) in plans(&mut conn, execute) {
                assert!(
                    plan.iter().any(|line| line.contains("jobs_pkey")),
                    "{jobs} jobs, statistics {analyze}, {mode}: each job is looked up by number:\n{}",
                    plan.join("\n")
                );
            }
        }
        // Thousands of workers, most of them idle.
        db.execute(
            "INSERT INTO workers (token, display_name, stage, nickname, progress, first_seen, last_seen, lease_ttl_ms) \
             SELECT md5(g::text) || md5((-g)::text), 'w' || g, 'a', 'n', '', 0, 0, 1000 FROM generate_series(1, 10000) AS g; \
             ANALYZE workers",
        );
        let text = UPDATE_WORKERS.replacen('?', "$1", 1).replacen('?', "$2", 1);
        diesel::sql_query(format!("PREPARE update_workers (text, text) AS {text}")).execute(&mut conn).unwrap();
        let token = "c4ca4238a0b923820dcc509a6f75849b6bb61e4cd4b8a1d9e1b2f1d1f1f1f1f1";
        let execute = format!(
            r#"EXECUTE update_workers ('[{{"token": "{token}", "hold": false, "job": null, "lease": null, "progress": "p", "completed": 0, "seen": null}}]', '{token}')"#
        );
        for (mode, plan) in plans(&mut conn, &execute) {
            assert!(
                plan.iter().any(|line| line.contains("workers_pkey")),
                "{mode}: each worker is looked up by token:\n{}",
                plan.join("\n")
            );
        }
    }
}
