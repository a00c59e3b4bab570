//! Every fixed statement of the store (the write path: leases, workers, the sweep; and fixed
//! reads), by name, with typed binds.
//!
//! Each statement is a function: `statements::lease_job(conn, owner, lease, expires, attempts,
//! now, job)`. Its parameters are the values its `?` markers bind, in their order, each of a type
//! that says what it is ([`JobId`], [`LeaseEpoch`], [`WorkerToken`], [`UnixMs`], [`StageId`]),
//! so binding a lease where a job goes does not compile. A test checks that every text has as
//! many markers as its function has parameters, and that every job state a text names is a
//! [`JobState`](crate::JobState). Statements run through [`cached_sql!`], so each is prepared
//! once per connection and found again by its type. Where the SQL differs between backends
//! the statement gives both texts and picks by the connection.
//!
//! The read models' fixed queries are here too (the throughput chart); those whose filters and
//! paging are optional (listings, counts, the dashboard) build their queries with diesel's
//! query builder, which fixed texts cannot express.

use diesel::sql_types::{BigInt, Bool, Integer, Nullable, Text};
use diesel::{QueryResult, QueryableByName};

use super::statement::{Bind, SqlValue};
use super::{cached_sql, DbConnection};
use crate::protocol::{JobId, LeaseEpoch, WorkerToken};
use crate::stage::StageId;

/// A time, in Unix milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct UnixMs(pub(crate) i64);

impl<'a> SqlValue<'a> for JobId {
    fn into_bind(self) -> Bind<'a> {
        Bind::BigInt(self.0)
    }
}

impl<'a> SqlValue<'a> for Option<JobId> {
    fn into_bind(self) -> Bind<'a> {
        Bind::OptionalBigInt(self.map(|job| job.0))
    }
}

impl<'a> SqlValue<'a> for LeaseEpoch {
    fn into_bind(self) -> Bind<'a> {
        Bind::BigInt(self.0)
    }
}

impl<'a> SqlValue<'a> for Option<LeaseEpoch> {
    fn into_bind(self) -> Bind<'a> {
        Bind::OptionalBigInt(self.map(|lease| lease.0))
    }
}

/// A worker token binds as the digest the database keeps ([`WorkerToken::stored_key`]).
impl<'a> SqlValue<'a> for &'a WorkerToken {
    fn into_bind(self) -> Bind<'a> {
        Bind::Text(self.stored_key())
    }
}

impl<'a> SqlValue<'a> for UnixMs {
    fn into_bind(self) -> Bind<'a> {
        Bind::BigInt(self.0)
    }
}

impl<'a> SqlValue<'a> for Option<UnixMs> {
    fn into_bind(self) -> Bind<'a> {
        Bind::OptionalBigInt(self.map(|at| at.0))
    }
}

impl<'a> SqlValue<'a> for StageId {
    fn into_bind(self) -> Bind<'a> {
        Bind::Text(self.letter())
    }
}

/// Defines the statements: `execute name(params) = "SQL";` runs one and returns the rows it
/// changed, `query name(params) -> Row = "SQL";` reads rows; either may add
/// `postgres "SQL"` for PostgreSQL's own text.
macro_rules! statements {
    ($(
        $(#[doc = $doc:literal])+
        $kind:ident $name:ident($($param:ident: $ty:ty),* $(,)?) $(-> $row:ty)? = $sql:literal $(postgres $pg:literal)?;
    )+) => {
        $(
            statements!(@one [$(#[doc = $doc])+] $kind $name ($($param: $ty),*) ($($row)?) ($sql) ($($pg)?));
        )+

        /// Every statement's texts, each with the statement's name and number of parameters.
        #[cfg(test)]
        pub(crate) const ALL: &[&[(&str, &str, usize)]] = &[
            $(statements!(@texts $name ($sql $($pg)?) (statements!(@count $($param)*)))),+
        ];
    };
    (@texts $name:ident ($($text:literal)+) ($count:expr)) => {
        &[$((stringify!($name), $text, $count)),+]
    };
    (@count) => { 0usize };
    (@count $head:ident $($tail:ident)*) => { 1usize + statements!(@count $($tail)*) };
    (@run $conn:ident ($($param:ident)*) ($sql:literal) execute) => {
        cached_sql!($sql)$(.bind($param))*.execute($conn)
    };
    (@run $conn:ident ($($param:ident)*) ($sql:literal) load) => {
        cached_sql!($sql)$(.bind($param))*.load($conn)
    };
    (@body $conn:ident ($($param:ident)*) ($sql:literal) () $how:ident) => {
        statements!(@run $conn ($($param)*) ($sql) $how)
    };
    (@body $conn:ident ($($param:ident)*) ($sql:literal) ($pg:literal) $how:ident) => {
        if let DbConnection::Pg(_) = $conn {
            statements!(@run $conn ($($param)*) ($pg) $how)
        } else {
            statements!(@run $conn ($($param)*) ($sql) $how)
        }
    };
    (@one [$($doc:tt)+] execute $name:ident ($($param:ident: $ty:ty),*) () ($sql:literal) ($($pg:literal)?)) => {
        $($doc)+
        #[allow(clippy::too_many_arguments)] // one per bound value, in the statement's order
        pub(crate) fn $name(conn: &mut DbConnection, $($param: $ty),*) -> QueryResult<usize> {
            statements!(@body conn ($($param)*) ($sql) ($($pg)?) execute)
        }
    };
    (@one [$($doc:tt)+] query $name:ident ($($param:ident: $ty:ty),*) ($row:ty) ($sql:literal) ($($pg:literal)?)) => {
        $($doc)+
        #[allow(clippy::too_many_arguments)] // one per bound value, in the statement's order
        pub(crate) fn $name(conn: &mut DbConnection, $($param: $ty),*) -> QueryResult<Vec<$row>> {
            statements!(@body conn ($($param)*) ($sql) ($($pg)?) load)
        }
    };
}

/// A job a claim could take, as its search found it.
#[derive(Debug, QueryableByName)]
pub(crate) struct CandidateRow {
    #[diesel(sql_type = BigInt)]
    pub(crate) id: i64,
    /// `open`, or `leased` for a job whose lease expired.
    #[diesel(sql_type = Text)]
    pub(crate) state: String,
    #[diesel(sql_type = BigInt)]
    pub(crate) lease_token: i64,
    #[diesel(sql_type = Integer)]
    pub(crate) attempts: i32,
    /// The job's input at its stage.
    #[diesel(sql_type = Nullable<Text>)]
    pub(crate) data: Option<String>,
}

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

/// A job whose invalid-input reports were counted.
#[derive(Debug, QueryableByName)]
pub(crate) struct FlagsRow {
    #[diesel(sql_type = Integer)]
    pub(crate) flags: i32,
}

/// A count.
#[derive(Debug, QueryableByName)]
pub(crate) struct CountRow {
    #[diesel(sql_type = BigInt)]
    pub(crate) count: i64,
}

/// One entry of a job's history, without its worker and time.
#[derive(Debug, QueryableByName)]
pub(crate) struct EventRow {
    #[diesel(sql_type = Text)]
    pub(crate) kind: String,
    #[diesel(sql_type = Nullable<Text>)]
    pub(crate) detail: Option<String>,
}

/// A lease the sweep re-opened.
#[derive(Debug, QueryableByName)]
pub(crate) struct ReopenedRow {
    #[diesel(sql_type = BigInt)]
    pub(crate) id: i64,
    #[diesel(sql_type = Text)]
    pub(crate) stage: String,
}

/// Whether a lock was taken.
#[derive(Debug, QueryableByName)]
pub(crate) struct LockedRow {
    #[diesel(sql_type = Bool)]
    pub(crate) locked: bool,
}

statements! {
    /// Leases the lowest numbered open job of a stage that is due (unless the stage is paused)
    /// to a worker, or fails it instead when its attempts reached the limit (the four `?` that
    /// compare `attempts`): one statement finds, locks and updates the row. Returns the row as
    /// it is now (for a failed job: its attempts and lease unchanged). On PostgreSQL the
    /// search skips rows other transactions are claiming (SQLite's writer holds the database's
    /// write lock for the whole transaction).
    ///
    /// PostgreSQL's search names its stage as a range of one (`stage >= ? AND stage <= ?`,
    /// ordered by stage, then number), which only the `(stage, state, id)` index serves in that
    /// order. With `stage = ?` the planner, seeing in the statistics that most jobs are open at
    /// the first stage, walks the primary key from job 1 instead and steps over every job done
    /// so far on each claim: a claim then costs time in proportion to the work already done.
    /// (SQLite's text binds the stage twice as an equality, to take the same values.)
    query lease_open(failed_at: i64, no_owner_at: i64, owner: &WorkerToken, same_lease_at: i64, no_expiry_at: i64, expires: UnixMs, same_attempts_at: i64, now: UnixMs, stage: StageId, stage_again: StageId, due: UnixMs, unpaused: StageId) -> CandidateRow =
        "UPDATE jobs SET state = CASE WHEN attempts >= ? THEN 'failed' ELSE 'leased' END, \
         lease_owner = CASE WHEN attempts >= ? THEN NULL ELSE ? END, \
         lease_token = CASE WHEN attempts >= ? THEN lease_token ELSE lease_token + 1 END, \
         lease_expires_at = CASE WHEN attempts >= ? THEN NULL ELSE ? END, \
         attempts = CASE WHEN attempts >= ? THEN attempts ELSE attempts + 1 END, retry_at = NULL, updated_at = ? \
         WHERE id = (SELECT id FROM jobs WHERE stage = ? AND stage = ? AND state = 'open' AND (retry_at IS NULL OR retry_at <= ?) \
         AND NOT EXISTS (SELECT 1 FROM paused_stages WHERE stage = ?) ORDER BY id LIMIT 1) \
         RETURNING id, state, lease_token, attempts, CASE stage WHEN 'a' THEN data_a WHEN 'b' THEN data_b \
         WHEN 'c' THEN data_c WHEN 'd' THEN data_d ELSE data_e END AS data"
        postgres
        "UPDATE jobs SET state = CASE WHEN attempts >= ? THEN 'failed' ELSE 'leased' END, \
         lease_owner = CASE WHEN attempts >= ? THEN NULL ELSE ? END, \
         lease_token = CASE WHEN attempts >= ? THEN lease_token ELSE lease_token + 1 END, \
         lease_expires_at = CASE WHEN attempts >= ? THEN NULL ELSE ? END, \
         attempts = CASE WHEN attempts >= ? THEN attempts ELSE attempts + 1 END, retry_at = NULL, updated_at = ? \
         WHERE id = (SELECT id FROM jobs WHERE stage >= ? AND stage <= ? AND state = 'open' AND (retry_at IS NULL OR retry_at <= ?) \
         AND NOT EXISTS (SELECT 1 FROM paused_stages WHERE stage = ?) ORDER BY stage, id LIMIT 1 FOR UPDATE SKIP LOCKED) \
         RETURNING id, state, lease_token, attempts, CASE stage WHEN 'a' THEN data_a WHEN 'b' THEN data_b \
         WHEN 'c' THEN data_c WHEN 'd' THEN data_d ELSE data_e END AS data";

    /// Sets the error of a job (one failed just now by [`lease_open`]).
    execute set_error(error: &str, job: JobId) =
        "UPDATE jobs SET error = ? WHERE id = ?";

    /// The lowest numbered job of a stage whose lease expired, unless the stage is paused. On
    /// PostgreSQL the row is locked until the claim commits and rows other transactions are
    /// claiming are skipped.
    query find_expired(stage: StageId, now: UnixMs, unpaused: StageId) -> CandidateRow =
        "SELECT id, state, lease_token, attempts, CASE stage WHEN 'a' THEN data_a WHEN 'b' THEN data_b \
         WHEN 'c' THEN data_c WHEN 'd' THEN data_d ELSE data_e END AS data FROM jobs \
         WHERE stage = ? AND state = 'leased' AND lease_expires_at <= ? \
         AND NOT EXISTS (SELECT 1 FROM paused_stages WHERE stage = ?) ORDER BY id LIMIT 1"
        postgres
        "SELECT id, state, lease_token, attempts, CASE stage WHEN 'a' THEN data_a WHEN 'b' THEN data_b \
         WHEN 'c' THEN data_c WHEN 'd' THEN data_d ELSE data_e END AS data FROM jobs \
         WHERE stage = ? AND state = 'leased' AND lease_expires_at <= ? \
         AND NOT EXISTS (SELECT 1 FROM paused_stages WHERE stage = ?) ORDER BY id LIMIT 1 \
         FOR UPDATE SKIP LOCKED";

    /// One given job, when it is at the stage and open and due or leased with an expired
    /// lease, and the stage is not paused; locked as in [`find_expired`].
    query find_job(job: JobId, stage: StageId, due: UnixMs, expired_by: UnixMs, unpaused: StageId) -> CandidateRow =
        "SELECT id, state, lease_token, attempts, CASE stage WHEN 'a' THEN data_a WHEN 'b' THEN data_b \
         WHEN 'c' THEN data_c WHEN 'd' THEN data_d ELSE data_e END AS data FROM jobs \
         WHERE id = ? AND stage = ? AND ((state = 'open' AND (retry_at IS NULL OR retry_at <= ?)) \
         OR (state = 'leased' AND lease_expires_at <= ?)) \
         AND NOT EXISTS (SELECT 1 FROM paused_stages WHERE stage = ?)"
        postgres
        "SELECT id, state, lease_token, attempts, CASE stage WHEN 'a' THEN data_a WHEN 'b' THEN data_b \
         WHEN 'c' THEN data_c WHEN 'd' THEN data_d ELSE data_e END AS data FROM jobs \
         WHERE id = ? AND stage = ? AND ((state = 'open' AND (retry_at IS NULL OR retry_at <= ?)) \
         OR (state = 'leased' AND lease_expires_at <= ?)) \
         AND NOT EXISTS (SELECT 1 FROM paused_stages WHERE stage = ?) FOR UPDATE SKIP LOCKED";

    /// Leases a job found by a search to a worker.
    execute lease_job(owner: &WorkerToken, lease: LeaseEpoch, expires: UnixMs, attempts: i64, now: UnixMs, job: JobId) =
        "UPDATE jobs SET state = 'leased', lease_owner = ?, lease_token = ?, lease_expires_at = ?, \
         attempts = ?, retry_at = NULL, updated_at = ? WHERE id = ?";

    /// Fails a job found by a search that used up its attempts.
    execute fail_exhausted(error: &str, now: UnixMs, job: JobId) =
        "UPDATE jobs SET state = 'failed', error = ?, lease_owner = NULL, lease_expires_at = NULL, \
         updated_at = ? WHERE id = ?";

    /// The last entry of a job's history.
    query last_event(job: JobId) -> EventRow =
        "SELECT kind, detail FROM job_events WHERE job_id = ? ORDER BY id DESC LIMIT 1";

    /// How many entries of a kind a job's history has.
    query count_events(job: JobId, kind: &str) -> CountRow =
        "SELECT COUNT(*) AS count FROM job_events WHERE job_id = ? AND kind = ?";

    /// Closes a leased job with its final output, fenced by the lease.
    execute complete_done(output: &str, now: UnixMs, completed: UnixMs, job: JobId, lease: LeaseEpoch) =
        "UPDATE jobs SET result = ?, state = 'done', updated_at = ?, completed_at = ?, lease_owner = NULL, \
         lease_expires_at = NULL WHERE id = ? AND lease_token = ? AND state = 'leased'";

    /// Moves a leased job to stage a with its output as the input there, fenced by the lease.
    execute complete_to_a(output: &str, now: UnixMs, job: JobId, lease: LeaseEpoch) =
        "UPDATE jobs SET data_a = ?, stage = 'a', state = 'open', attempts = 0, flags = 0, updated_at = ?, \
         lease_owner = NULL, lease_expires_at = NULL WHERE id = ? AND lease_token = ? AND state = 'leased'";

    /// As [`complete_to_a`], to stage b.
    execute complete_to_b(output: &str, now: UnixMs, job: JobId, lease: LeaseEpoch) =
        "UPDATE jobs SET data_b = ?, stage = 'b', state = 'open', attempts = 0, flags = 0, updated_at = ?, \
         lease_owner = NULL, lease_expires_at = NULL WHERE id = ? AND lease_token = ? AND state = 'leased'";

    /// As [`complete_to_a`], to stage c.
    execute complete_to_c(output: &str, now: UnixMs, job: JobId, lease: LeaseEpoch) =
        "UPDATE jobs SET data_c = ?, stage = 'c', state = 'open', attempts = 0, flags = 0, updated_at = ?, \
         lease_owner = NULL, lease_expires_at = NULL WHERE id = ? AND lease_token = ? AND state = 'leased'";

    /// As [`complete_to_a`], to stage d.
    execute complete_to_d(output: &str, now: UnixMs, job: JobId, lease: LeaseEpoch) =
        "UPDATE jobs SET data_d = ?, stage = 'd', state = 'open', attempts = 0, flags = 0, updated_at = ?, \
         lease_owner = NULL, lease_expires_at = NULL WHERE id = ? AND lease_token = ? AND state = 'leased'";

    /// As [`complete_to_a`], to stage e.
    execute complete_to_e(output: &str, now: UnixMs, job: JobId, lease: LeaseEpoch) =
        "UPDATE jobs SET data_e = ?, stage = 'e', state = 'open', attempts = 0, flags = 0, updated_at = ?, \
         lease_owner = NULL, lease_expires_at = NULL WHERE id = ? AND lease_token = ? AND state = 'leased'";

    /// Re-opens a leased job its worker gave up on, fenced by the lease; the attempt counts.
    execute reopen_abandoned(now: UnixMs, job: JobId, lease: LeaseEpoch) =
        "UPDATE jobs SET state = 'open', lease_owner = NULL, lease_expires_at = NULL, updated_at = ? \
         WHERE id = ? AND lease_token = ? AND state = 'leased'";

    /// Re-opens a leased job its worker gave back untouched, fenced by the lease; the attempt
    /// does not count.
    execute reopen_untouched(now: UnixMs, job: JobId, lease: LeaseEpoch) =
        "UPDATE jobs SET state = 'open', lease_owner = NULL, lease_expires_at = NULL, updated_at = ?, \
         attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END \
         WHERE id = ? AND lease_token = ? AND state = 'leased'";

    /// Re-opens a leased job whose input a worker reported invalid, fenced by the lease, and
    /// counts the report.
    query flag_job(now: UnixMs, job: JobId, lease: LeaseEpoch) -> FlagsRow =
        "UPDATE jobs SET flags = flags + 1, state = 'open', lease_owner = NULL, lease_expires_at = NULL, \
         updated_at = ? WHERE id = ? AND lease_token = ? AND state = 'leased' RETURNING flags";

    /// Sends an open job back to an earlier stage, whose input is intact.
    execute send_back(stage: StageId, now: UnixMs, job: JobId) =
        "UPDATE jobs SET stage = ?, flags = 0, attempts = 0, updated_at = ? WHERE id = ?";

    /// Fails a job that is not leased.
    execute fail_unleased(error: &str, now: UnixMs, job: JobId) =
        "UPDATE jobs SET state = 'failed', error = ?, updated_at = ? WHERE id = ?";

    /// Re-opens a leased job after a transient failure, due again at a time, fenced by the
    /// lease.
    execute retry_leased(due: UnixMs, now: UnixMs, job: JobId, lease: LeaseEpoch) =
        "UPDATE jobs SET state = 'open', retry_at = ?, lease_owner = NULL, lease_expires_at = NULL, \
         updated_at = ? WHERE id = ? AND lease_token = ? AND state = 'leased'";

    /// Fails a leased job, fenced by the lease.
    execute fail_leased(error: &str, now: UnixMs, job: JobId, lease: LeaseEpoch) =
        "UPDATE jobs SET state = 'failed', error = ?, lease_owner = NULL, lease_expires_at = NULL, \
         updated_at = ? WHERE id = ? AND lease_token = ? AND state = 'leased'";

    /// Extends a lease, fenced by it.
    execute extend_lease(expires: UnixMs, job: JobId, lease: LeaseEpoch) =
        "UPDATE jobs SET lease_expires_at = ? WHERE id = ? AND lease_token = ? AND state = 'leased'";

    /// The lease columns of a worker.
    query load_worker(token: &WorkerToken) -> WorkerLease =
        "SELECT last_seen, stage, nickname, display_name, lease_ttl_ms, job_id, lease_token \
         FROM workers WHERE token = ?";

    /// Records a worker's heartbeat.
    execute see_worker(now: UnixMs, token: &WorkerToken) =
        "UPDATE workers SET last_seen = ? WHERE token = ?";

    /// Points a worker at the lease it holds (or none), with a progress text, and credits it
    /// `completed` jobs. (`last_seen` is left out: most calls are not due a heartbeat, and
    /// recording one only when due keeps it from changing the row on every call.)
    execute hold(job: Option<JobId>, lease: Option<LeaseEpoch>, progress: &str, completed: i64, token: &WorkerToken) =
        "UPDATE workers SET job_id = ?, lease_token = ?, progress = ?, jobs_completed = jobs_completed + ? \
         WHERE token = ?";

    /// As [`hold`], recording a heartbeat too.
    execute hold_and_see(job: Option<JobId>, lease: Option<LeaseEpoch>, progress: &str, completed: i64, seen: UnixMs, token: &WorkerToken) =
        "UPDATE workers SET job_id = ?, lease_token = ?, progress = ?, jobs_completed = jobs_completed + ?, \
         last_seen = ? WHERE token = ?";

    /// Clears a worker's reference to the job it held.
    execute clear_held(token: &WorkerToken) =
        "UPDATE workers SET job_id = NULL, lease_token = NULL WHERE token = ?";

    /// Records a worker's progress text.
    execute set_progress(progress: &str, token: &WorkerToken) =
        "UPDATE workers SET progress = ? WHERE token = ?";

    /// Records a worker's progress text when its heartbeat is not due (its `last_seen` is
    /// younger than both the granularity and its lease over the divisor, as
    /// `workers::heartbeat_due` computes), changing nothing otherwise.
    execute set_progress_between_heartbeats(progress: &str, token: &WorkerToken, now: UnixMs, granularity_ms: i64, now_again: UnixMs, lease_divisor: i64) =
        "UPDATE workers SET progress = ? WHERE token = ? AND ? - last_seen < ? AND ? - last_seen < lease_ttl_ms / ?";

    /// How many current workers have a display name.
    query count_display_name(name: &str) -> CountRow =
        "SELECT COUNT(*) AS count FROM workers WHERE display_name = ?";

    /// Adds a worker.
    execute insert_worker(token: &WorkerToken, display_name: &str, stage: StageId, nickname: &str, first_seen: UnixMs, last_seen: UnixMs, lease_ttl_ms: i64) =
        "INSERT INTO workers (token, display_name, stage, nickname, progress, jobs_completed, first_seen, \
         last_seen, lease_ttl_ms) VALUES (?, ?, ?, ?, 'Initialised', 0, ?, ?, ?)";

    /// Removes a worker.
    execute delete_worker(token: &WorkerToken) =
        "DELETE FROM workers WHERE token = ?";

    /// Takes the sweep's turn for this transaction, if no other tracker process has it
    /// (PostgreSQL).
    query try_sweep_lock(key: i64) -> LockedRow =
        "SELECT pg_try_advisory_xact_lock(?) AS locked";

    /// The Cascade processes with a session on this database now: the distinct names their
    /// connections give themselves (PostgreSQL; see `db::daemons`).
    query count_daemons() -> CountRow =
        "SELECT count(DISTINCT application_name) AS count FROM pg_stat_activity \
         WHERE datname = current_database() AND application_name LIKE 'cascade-daemon-%'";

    /// Waits for the turn to append jobs, held until the transaction ends (PostgreSQL).
    query lock_appends(key: i64) -> LockedRow =
        "SELECT true AS locked FROM (SELECT pg_advisory_xact_lock(?)) AS turn";

    /// Re-opens every job whose lease expired.
    query reopen_expired(now: UnixMs, expired_by: UnixMs) -> ReopenedRow =
        "UPDATE jobs SET state = 'open', lease_owner = NULL, lease_expires_at = NULL, updated_at = ? \
         WHERE state = 'leased' AND lease_expires_at <= ? RETURNING id, stage";

    /// Re-opens the jobs of workers silent since a time (whose leases have not expired yet).
    query reopen_of_silent(now: UnixMs, silent_since: UnixMs) -> ReopenedRow =
        "UPDATE jobs SET state = 'open', lease_owner = NULL, lease_expires_at = NULL, updated_at = ? \
         FROM workers WHERE workers.last_seen <= ? AND workers.job_id = jobs.id \
         AND workers.lease_token = jobs.lease_token AND jobs.state = 'leased' \
         RETURNING jobs.id AS id, jobs.stage AS stage";

    /// Completions per stage and minute since a time, oldest first. `kind = 'complete'` is
    /// spelled out, as in the partial index `job_events_completed_at`: a bound value would keep
    /// the planner from using it.
    query completions_per_minute(since: UnixMs) -> crate::ThroughputPoint =
        "SELECT stage, (at / 60000) * 60000 AS minute, COUNT(*) AS completed FROM job_events \
         WHERE kind = 'complete' AND at >= ? GROUP BY stage, (at / 60000) * 60000 ORDER BY minute, stage";

    /// Removes the workers silent since a time.
    execute delete_silent(silent_since: UnixMs) =
        "DELETE FROM workers WHERE last_seen <= ?";
}

#[cfg(test)]
pub(crate) mod tests {
    use diesel::connection::SimpleConnection;
    use diesel::sql_types::Text;
    use diesel::{Connection, PgConnection, QueryableByName, RunQueryDsl};

    use crate::db::DatabaseUrl;
    use crate::testing::TestDatabase;
    use crate::JobState;

    /// One line of PostgreSQL's `EXPLAIN`.
    #[derive(QueryableByName)]
    struct PlanLine {
        #[diesel(sql_type = Text, column_name = "QUERY PLAN")]
        line: String,
    }

    /// The plans PostgreSQL makes for `execute` (an `EXECUTE` of a prepared statement), with the
    /// mode of each: both the plan made for the values at hand and the generic plan PostgreSQL
    /// switches to after a few runs of a prepared statement.
    pub(crate) fn plans(conn: &mut PgConnection, execute: &str) -> Vec<(&'static str, Vec<String>)> {
        ["force_custom_plan", "force_generic_plan"]
            .into_iter()
            .map(|mode| {
                conn.batch_execute(&format!("SET plan_cache_mode = {mode}")).unwrap();
                let plan: Vec<PlanLine> = diesel::sql_query(format!("EXPLAIN {execute}")).load(conn).unwrap();
                (mode, plan.into_iter().map(|line| line.line).collect())
            })
            .collect()
    }

    /// A statement's PostgreSQL text with `$1`, `$2`, … in place of its `?` markers.
    fn numbered(text: &str) -> String {
        let mut pieces = text.split('?');
        let mut out = pieces.next().unwrap_or_default().to_owned();
        for (n, piece) in pieces.enumerate() {
            out.push_str(&format!("${}{piece}", n + 1));
        }
        out
    }

    #[test]
    fn on_postgres_a_claim_walks_the_stage_index_whatever_the_statistics_say() {
        // A quarter of the jobs done, at the lowest numbers, as a run leaves them, and the
        // statistics up to date: most jobs are open at stage a. Searching by `stage = ?` and
        // number, the planner then walked the primary key from job 1 on every claim.
        let db = TestDatabase::postgres();
        let DatabaseUrl::Postgres(url) = db.url() else { unreachable!("a PostgreSQL database") };
        let mut conn = super::DbConnection::Pg(PgConnection::establish(url).unwrap());
        super::super::migrate(&mut conn).unwrap();
        conn.batch_execute(
            "INSERT INTO jobs (id, stage, state, data_a, created_at, updated_at) \
             SELECT g, 'a', CASE WHEN g <= 5000 THEN 'done' ELSE 'open' END, 'in-' || g, 0, 0 \
             FROM generate_series(1, 20000) AS g; ANALYZE jobs",
        )
        .unwrap();
        let (_, claim, _) = super::ALL
            .iter()
            .copied()
            .flatten()
            .find(|(name, text, _)| *name == "lease_open" && text.contains("SKIP LOCKED"))
            .expect("the PostgreSQL text of the claim");
        conn.batch_execute(&format!(
            "PREPARE claim (bigint, bigint, text, bigint, bigint, bigint, bigint, bigint, text, text, bigint, text) AS {}",
            numbered(claim)
        ))
        .unwrap();
        let super::DbConnection::Pg(pg) = &mut conn else { unreachable!("a PostgreSQL connection") };
        for (mode, plan) in plans(pg, "EXECUTE claim (5, 5, 'worker', 5, 5, 100, 5, 1, 'a', 'a', 1, 'a')") {
            assert!(
                plan.iter().any(|line| line.contains("Index Scan using jobs_by_stage_state on jobs")),
                "{mode}: the search walks the (stage, state, id) index:\n{}",
                plan.join("\n")
            );
        }
    }

    #[test]
    fn every_statement_binds_as_many_values_as_it_has_markers() {
        for (name, text, params) in super::ALL.iter().copied().flatten() {
            assert_eq!(text.matches('?').count(), *params, "{name}: {text}");
        }
    }

    #[test]
    fn every_job_state_a_statement_names_is_a_job_state() {
        let mut named = 0;
        for (name, text, _) in super::ALL.iter().copied().flatten() {
            for (at, _) in text.match_indices("state = '") {
                let rest = &text[at + "state = '".len()..];
                let state = &rest[..rest.find('\'').expect("a closing quote")];
                assert!(JobState::parse(state).is_some(), "{name} names the state '{state}'");
                named += 1;
            }
        }
        assert!(named > 20, "the check found the states");
    }
}
