//! Workers: registration, heartbeats, progress, leaving, and the idle sweep.

use std::time::Duration;

use rand::RngExt;
use serde::Serialize;

use super::cycles::CycleStep;
use super::{event, JobStore};
use crate::db::statements::{self, UnixMs, WorkerLease};
use crate::db::{DbConnection, WriteTx};
use crate::error::TrackerError;
use crate::protocol::{Registration, WorkerToken};
use crate::stage::StageId;

/// Longest nickname, in characters: the HTTP API refuses longer ones (422); the store cuts
/// longer ones from other callers.
pub const MAX_NICKNAME_CHARS: usize = 128;
/// Longest progress text, in characters: the HTTP API refuses longer ones (422); the store cuts
/// longer ones from other callers (a local stage's own text).
pub const MAX_PROGRESS_CHARS: usize = 1024;
/// Key of the PostgreSQL advisory lock that makes one tracker process sweep at a time.
const SWEEP_LOCK_KEY: i64 = 0x0063_6173_6361_6465; // "cascade"

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
/// A heartbeat is also due once a twentieth of the worker's lease has passed, so a short lease
/// is extended well before it runs out.
const HEARTBEAT_LEASE_DIVISOR: i64 = 20;

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
pub(crate) fn load_worker(conn: &mut DbConnection, token: &WorkerToken) -> Result<WorkerLease, TrackerError> {
    statements::load_worker(conn, token)?.pop().ok_or(TrackerError::UnknownWorker)
}

/// Whether the worker's heartbeat should be written now: the last recorded one is at least a
/// twentieth of its lease old ([`HEARTBEAT_LEASE_DIVISOR`]), at most
/// [`HEARTBEAT_GRANULARITY_MS`].
pub(crate) fn heartbeat_due(worker: &WorkerLease, now: UnixMs) -> bool {
    let granularity = HEARTBEAT_GRANULARITY_MS.min(worker.lease_ttl_ms / HEARTBEAT_LEASE_DIVISOR);
    now.0 - worker.last_seen >= granularity
}

/// Loads the lease columns of the worker with `token`, refreshing its `last_seen` and
/// extending the lease of the job it holds when its heartbeat is due: every authenticated call
/// is a heartbeat. Refuses (unknown worker) before writing.
pub(crate) fn touch(conn: &mut DbConnection, token: &WorkerToken, now: UnixMs) -> Result<WorkerLease, TrackerError> {
    let worker = load_worker(conn, token)?;
    if !heartbeat_due(&worker, now) {
        return Ok(worker);
    }
    // The job before the worker, as in every lease operation: on PostgreSQL two transactions
    // that lock the same rows in opposite orders deadlock.
    if let (Some(job), Some(lease)) = (worker.job_id, worker.lease_token) {
        let expires = UnixMs(now.0 + worker.lease_ttl_ms);
        statements::extend_lease(conn, expires, crate::protocol::JobId(job), crate::protocol::LeaseEpoch(lease))?;
    }
    statements::see_worker(conn, now, token)?;
    Ok(worker)
}

/// A progress text as it is kept: cut to [`MAX_PROGRESS_CHARS`].
fn progress_text(progress: &str) -> String {
    truncate(progress, MAX_PROGRESS_CHARS).to_owned()
}

/// A progress report, alone in its transaction or not (see [`JobStore::update_progress`]).
/// Refuses (unknown worker) before writing: needs no savepoint.
pub(super) fn progress_alone(tx: &mut WriteTx<'_>, token: &WorkerToken, progress: &str, now: UnixMs) -> Result<(), TrackerError> {
    // Most calls fall between two heartbeats: then one statement sets the text.
    let between_heartbeats = statements::set_progress_between_heartbeats(
        tx,
        progress,
        token,
        now,
        HEARTBEAT_GRANULARITY_MS,
        now,
        HEARTBEAT_LEASE_DIVISOR,
    )?;
    if between_heartbeats == 1 {
        return Ok(());
    }
    touch(tx, token, now)?;
    statements::set_progress(tx, progress, token)?;
    Ok(())
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
        let token = WorkerToken::new(uuid::Uuid::new_v4().to_string());
        let nickname = truncate(nickname, MAX_NICKNAME_CHARS).to_owned();
        let now = UnixMs(self.now_ms());
        let (insert_token, insert_nickname) = (token.clone(), nickname.clone());
        let display_name = self.pools.write(move |tx| {
            tx.protect()?;
            let conn: &mut DbConnection = tx;
            let mut name = random_display_name();
            for _ in 0..8 {
                let taken = statements::count_display_name(conn, &name)?.pop().map_or(0, |row| row.count);
                if taken == 0 {
                    break;
                }
                name = random_display_name();
            }
            statements::insert_worker(conn, &insert_token, &name, stage, &insert_nickname, now, now, ttl_ms)?;
            Ok(name)
        })?;
        tracing::debug!(stage = %stage, display_name, nickname, "Worker registered.");
        Ok(Registration { token, display_name, project: self.config.project.clone(), stage_name })
    }

    /// Whether `token` names a current worker; a known worker's call counts as a heartbeat.
    ///
    /// # Errors
    /// Database errors only.
    pub fn validate_worker(&self, token: &WorkerToken) -> Result<bool, TrackerError> {
        let now = UnixMs(self.now_ms());
        let token = token.clone();
        match self.pools.write_as(&token.clone(), move |tx| touch(tx, &token, now)) {
            Ok(_) => Ok(true),
            Err(TrackerError::UnknownWorker) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Refreshes the worker's `last_seen` and extends its lease.
    ///
    /// # Errors
    /// [`TrackerError::UnknownWorker`]; database errors.
    pub fn heartbeat(&self, token: &WorkerToken) -> Result<(), TrackerError> {
        let now = UnixMs(self.now_ms());
        let token = token.clone();
        self.pools.write_as(&token.clone(), move |tx| touch(tx, &token, now).map(drop))
    }

    /// Records the worker's progress text (a heartbeat too).
    ///
    /// # Errors
    /// [`TrackerError::UnknownWorker`]; database errors.
    pub fn update_progress(&self, token: &WorkerToken, progress: &str) -> Result<(), TrackerError> {
        self.pools.write_cycle(self.cycle(token, CycleStep::Progress(progress_text(progress))))?.progressed()
    }

    /// [`update_progress`](Self::update_progress) for async callers: awaits the database
    /// without holding a thread. Must be awaited inside a tokio runtime (the HTTP server's).
    ///
    /// # Errors
    /// As [`update_progress`](Self::update_progress).
    pub async fn update_progress_async(&self, token: &WorkerToken, progress: &str) -> Result<(), TrackerError> {
        self.pools.write_cycle_async(self.cycle(token, CycleStep::Progress(progress_text(progress)))).await?.progressed()
    }

    /// Removes the worker; the job it holds is re-opened at its stage at once.
    ///
    /// # Errors
    /// [`TrackerError::UnknownWorker`]; database errors.
    pub fn bye(&self, token: &WorkerToken) -> Result<(), TrackerError> {
        let now = UnixMs(self.now_ms());
        let token = token.clone();
        self.pools.write_as(&token.clone(), move |tx| {
            tx.protect()?;
            let worker = touch(tx, &token, now)?;
            super::leases::reopen_held(tx, &token, &worker, now, super::leases::GiveBack::Abandoned)?;
            statements::delete_worker(tx, &token)?;
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
        let now = UnixMs(self.now_ms());
        let cutoff = UnixMs(now.0 - self.config.idle_timeout_ms());
        let report = self.pools.write(move |tx| {
            tx.protect()?;
            if let DbConnection::Pg(_) = **tx {
                let locked = statements::try_sweep_lock(tx, SWEEP_LOCK_KEY)?.pop().is_some_and(|row| row.locked);
                if !locked {
                    return Ok(SweepReport::default());
                }
            }
            let mut reopened = statements::reopen_expired(tx, now, now)?;
            // A worker removed below can no longer extend or finish its lease: its job re-opens
            // now rather than when the lease runs out.
            reopened.extend(statements::reopen_of_silent(tx, now, cutoff)?);
            for lease in &reopened {
                tx.record(lease.id, &lease.stage, event::EXPIRE, None, now.0, None);
            }
            let workers_removed = statements::delete_silent(tx, cutoff)?;
            Ok(SweepReport { ran: true, workers_removed, leases_expired: reopened.len() })
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
