//! Workers: registration, heartbeats, progress, leaving, and the idle sweep.

use std::time::Duration;

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable, Text};
use rand::RngExt;
use serde::Serialize;

use super::{event, JobStore};
use crate::db::schema::workers;
use crate::db::{cached_sql, DbConnection, WriteTx};
use crate::error::TrackerError;
use crate::stage::StageId;

/// Longest nickname kept (longer ones are cut).
const MAX_NICKNAME_CHARS: usize = 128;
/// Longest progress text kept (longer ones are cut).
const MAX_PROGRESS_CHARS: usize = 1024;
/// Key of the PostgreSQL advisory lock that makes one tracker process sweep at a time.
const SWEEP_LOCK_KEY: i64 = 0x0063_6173_6361_6465; // "cascade"

/// What a new worker is told.
#[derive(Debug, Clone, Serialize)]
pub struct Registration {
    /// The worker's credential; sent with every later request.
    pub token: String,
    /// Human-readable name, unique among current workers.
    pub display_name: String,
    /// The project name.
    pub project: String,
    /// The display name of the worker's stage.
    pub stage_name: String,
}

/// What one idle sweep did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SweepReport {
    /// Whether this process ran the sweep (false when another tracker process held the lock).
    pub ran: bool,
    /// Workers removed for silence.
    pub workers_removed: usize,
    /// Expired leases whose jobs were re-opened.
    pub leases_expired: usize,
}

/// Longest a heartbeat may go unrecorded: a worker calling more often than this only has its
/// `last_seen` (and lease) written once per interval, which keeps busy workers' polling cheap.
const HEARTBEAT_GRANULARITY_MS: i64 = 1000;

/// The columns of a worker that lease operations need.
#[derive(Debug, Clone, QueryableByName)]
pub(crate) struct WorkerLease {
    #[diesel(sql_type = BigInt)]
    pub(crate) last_seen: i64,
    #[diesel(sql_type = Text)]
    pub(crate) stage: String,
    #[diesel(sql_type = Text)]
    pub(crate) nickname: String,
    #[diesel(sql_type = Text)]
    pub(crate) display_name: String,
    #[diesel(sql_type = BigInt)]
    pub(crate) lease_ttl_ms: i64,
    #[diesel(sql_type = Nullable<BigInt>)]
    pub(crate) job_id: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    pub(crate) lease_token: Option<i64>,
}

#[derive(QueryableByName)]
struct ExpiredLease {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Text)]
    stage: String,
}

/// Cuts `text` to at most `max` characters.
pub(crate) fn truncate(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((end, _)) => &text[..end],
        None => text,
    }
}

/// A random `word-word-N` name.
fn random_display_name() -> String {
    let words = petname::petname(2, "-").unwrap_or_else(|| "worker".to_owned());
    format!("{words}-{}", rand::rng().random_range(0..1000))
}

/// Loads the lease columns of the worker with `token`, without writing anything.
pub(crate) fn load_worker(conn: &mut DbConnection, token: &str) -> Result<WorkerLease, TrackerError> {
    cached_sql!(
        "SELECT last_seen, stage, nickname, display_name, lease_ttl_ms, job_id, lease_token \
         FROM workers WHERE token = ?",
    )
    .text(token)
    .load(conn)?
    .pop()
    .ok_or(TrackerError::UnknownWorker)
}

/// Whether the worker's heartbeat should be written now: the last recorded one is at least a
/// twentieth of its lease old (at most [`HEARTBEAT_GRANULARITY_MS`]).
pub(crate) fn heartbeat_due(worker: &WorkerLease, now: i64) -> bool {
    let granularity = HEARTBEAT_GRANULARITY_MS.min(worker.lease_ttl_ms / 20);
    now - worker.last_seen >= granularity
}

/// Loads the lease columns of the worker with `token`, refreshing its `last_seen` and
/// extending the lease of the job it holds when its heartbeat is due: every authenticated call
/// is a heartbeat. Refuses (unknown worker) before writing.
pub(crate) fn touch(conn: &mut DbConnection, token: &str, now: i64) -> Result<WorkerLease, TrackerError> {
    let worker = load_worker(conn, token)?;
    if !heartbeat_due(&worker, now) {
        return Ok(worker);
    }
    // The job before the worker, as in every lease operation: on PostgreSQL two transactions
    // that lock the same rows in opposite orders deadlock.
    if let (Some(job), Some(token_held)) = (worker.job_id, worker.lease_token) {
        cached_sql!("UPDATE jobs SET lease_expires_at = ? WHERE id = ? AND lease_token = ? AND state = 'leased'")
            .big_int(now + worker.lease_ttl_ms)
            .big_int(job)
            .big_int(token_held)
            .execute(conn)?;
    }
    cached_sql!("UPDATE workers SET last_seen = ? WHERE token = ?")
        .big_int(now)
        .text(token)
        .execute(conn)?;
    Ok(worker)
}

impl JobStore {
    /// Registers a worker for `stage` and returns its token and names.
    ///
    /// `lease_ttl` is how long a lease of this worker lasts without a heartbeat; `None` (remote
    /// workers) means the idle timeout. It is capped at the idle timeout.
    ///
    /// # Errors
    /// [`TrackerError::DisabledStage`] when the stage is not enabled; database errors.
    pub fn register_worker(
        &self,
        nickname: &str,
        stage: StageId,
        lease_ttl: Option<Duration>,
    ) -> Result<Registration, TrackerError> {
        let stage_name = self
            .config
            .stage_name(stage)
            .ok_or(TrackerError::DisabledStage(stage))?
            .to_owned();
        let idle_ms = self.config.idle_timeout_ms();
        let ttl_ms = lease_ttl
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX).min(idle_ms))
            .unwrap_or(idle_ms)
            .max(1);
        let token = uuid::Uuid::new_v4().to_string();
        let nickname = truncate(nickname, MAX_NICKNAME_CHARS).to_owned();
        let now = self.now_ms();
        let stage_letter = stage.letter();
        let (insert_token, insert_nickname) = (token.clone(), nickname.clone());
        let display_name = self.pools.write(move |tx| {
            tx.protect()?;
            let conn: &mut DbConnection = tx;
            let mut name = random_display_name();
            for _ in 0..8 {
                let taken: i64 = workers::table
                    .filter(workers::display_name.eq(&name))
                    .count()
                    .get_result(conn)?;
                if taken == 0 {
                    break;
                }
                name = random_display_name();
            }
            diesel::insert_into(workers::table)
                .values((
                    workers::token.eq(&insert_token),
                    workers::display_name.eq(&name),
                    workers::stage.eq(stage_letter),
                    workers::nickname.eq(&insert_nickname),
                    workers::progress.eq("Initialised"),
                    workers::jobs_completed.eq(0),
                    workers::first_seen.eq(now),
                    workers::last_seen.eq(now),
                    workers::lease_ttl_ms.eq(ttl_ms),
                ))
                .execute(conn)?;
            Ok(name)
        })?;
        tracing::debug!(stage = %stage, display_name, nickname, "Worker registered.");
        Ok(Registration { token, display_name, project: self.config.project.clone(), stage_name })
    }

    /// Whether `token` names a current worker; a known worker's call counts as a heartbeat.
    ///
    /// # Errors
    /// Database errors only.
    pub fn validate_worker(&self, token: &str) -> Result<bool, TrackerError> {
        let now = self.now_ms();
        let token = token.to_owned();
        match self.pools.write(move |tx| touch(tx, &token, now)) {
            Ok(_) => Ok(true),
            Err(TrackerError::UnknownWorker) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Refreshes the worker's `last_seen` and extends its lease.
    ///
    /// # Errors
    /// [`TrackerError::UnknownWorker`]; database errors.
    pub fn heartbeat(&self, token: &str) -> Result<(), TrackerError> {
        let now = self.now_ms();
        let token = token.to_owned();
        self.pools.write(move |tx| touch(tx, &token, now).map(drop))
    }

    /// Records the worker's progress text (a heartbeat too).
    ///
    /// # Errors
    /// [`TrackerError::UnknownWorker`]; database errors.
    pub fn update_progress(&self, token: &str, progress: &str) -> Result<(), TrackerError> {
        self.pools.write(self.progress_op(token, progress))
    }

    /// [`update_progress`](Self::update_progress) for async callers: awaits the database
    /// without holding a thread. Must be awaited inside a tokio runtime (the HTTP server's).
    ///
    /// # Errors
    /// As [`update_progress`](Self::update_progress).
    pub async fn update_progress_async(&self, token: &str, progress: &str) -> Result<(), TrackerError> {
        self.pools.write_async(self.progress_op(token, progress)).await
    }

    /// The transaction of a progress report.
    fn progress_op(
        &self,
        token: &str,
        progress: &str,
    ) -> impl FnOnce(&mut WriteTx<'_>) -> Result<(), TrackerError> + Send + 'static {
        let now = self.now_ms();
        let progress = truncate(progress, MAX_PROGRESS_CHARS).to_owned();
        let token = token.to_owned();
        // Refuses (unknown worker) before writing: needs no savepoint.
        move |tx| {
            touch(tx, &token, now)?;
            cached_sql!("UPDATE workers SET progress = ? WHERE token = ?")
                .text(&progress)
                .text(&token)
                .execute(tx)?;
            Ok(())
        }
    }

    /// Removes the worker; the job it holds is re-opened at its stage at once.
    ///
    /// # Errors
    /// [`TrackerError::UnknownWorker`]; database errors.
    pub fn bye(&self, token: &str) -> Result<(), TrackerError> {
        let now = self.now_ms();
        let token = token.to_owned();
        self.pools.write(move |tx| {
            tx.protect()?;
            let worker = touch(tx, &token, now)?;
            super::leases::reopen_held(tx, &token, &worker, now)?;
            diesel::delete(workers::table.find(&token)).execute(&mut **tx)?;
            Ok(())
        })?;
        tracing::debug!("Worker left.");
        Ok(())
    }

    /// Re-opens every job whose lease has expired and removes every worker silent for longer
    /// than the idle timeout, re-opening the job it held.
    ///
    /// Safe with several tracker processes on one PostgreSQL database: a transaction-scoped
    /// advisory lock lets one of them sweep at a time and the others skip; on SQLite the
    /// immediate transaction serialises it.
    ///
    /// # Errors
    /// Database errors.
    pub fn sweep(&self) -> Result<SweepReport, TrackerError> {
        let now = self.now_ms();
        let cutoff = now - self.config.idle_timeout_ms();
        let report = self.pools.write(move |tx| {
            tx.protect()?;
            if let DbConnection::Pg(_) = **tx {
                #[derive(QueryableByName)]
                struct Locked {
                    #[diesel(sql_type = diesel::sql_types::Bool)]
                    locked: bool,
                }
                let lock: Locked = diesel::sql_query("SELECT pg_try_advisory_xact_lock($1) AS locked")
                    .bind::<BigInt, _>(SWEEP_LOCK_KEY)
                    .get_result(&mut **tx)?;
                if !lock.locked {
                    return Ok(SweepReport::default());
                }
            }
            let mut expired: Vec<ExpiredLease> = diesel::sql_query(
                "UPDATE jobs SET state = 'open', lease_owner = NULL, lease_expires_at = NULL, \
                 updated_at = $1 WHERE state = 'leased' AND lease_expires_at <= $2 \
                 RETURNING id, stage",
            )
            .bind::<BigInt, _>(now)
            .bind::<BigInt, _>(now)
            .load(&mut **tx)?;
            // A worker removed below can no longer extend or finish its lease: its job re-opens
            // now rather than when the lease runs out.
            expired.extend(
                diesel::sql_query(
                    "UPDATE jobs SET state = 'open', lease_owner = NULL, lease_expires_at = NULL, \
                     updated_at = $1 FROM workers WHERE workers.last_seen <= $2 \
                     AND workers.job_id = jobs.id AND workers.lease_token = jobs.lease_token \
                     AND jobs.state = 'leased' RETURNING jobs.id AS id, jobs.stage AS stage",
                )
                .bind::<BigInt, _>(now)
                .bind::<BigInt, _>(cutoff)
                .load::<ExpiredLease>(&mut **tx)?,
            );
            for lease in &expired {
                tx.record(lease.id, &lease.stage, event::EXPIRE, None, now, None);
            }
            let workers_removed =
                diesel::delete(workers::table.filter(workers::last_seen.le(cutoff))).execute(&mut **tx)?;
            Ok(SweepReport { ran: true, workers_removed, leases_expired: expired.len() })
        })?;
        if report.workers_removed > 0 || report.leases_expired > 0 {
            tracing::info!(
                workers_removed = report.workers_removed,
                leases_expired = report.leases_expired,
                "Swept idle workers and expired leases."
            );
        }
        Ok(report)
    }
}
