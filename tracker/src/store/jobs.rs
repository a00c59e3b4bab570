//! Loading jobs and reading them back.

use diesel::prelude::*;

use super::views::{JobDetail, JobEvent, JobState, JobSummary, Page};
use super::JobStore;
use crate::db::schema::{admin_actions, job_events, jobs, leaderboard, paused_stages, workers};
use crate::db::statements;
use crate::db::{cached_sql, per_backend, DbConnection};
use crate::error::TrackerError;
use crate::stage::StageId;

/// Rows inserted per statement when loading jobs (well under SQLite's bind-variable limit).
const INSERT_CHUNK: usize = 1000;

/// The columns of a job its summary shows.
#[derive(Queryable, Selectable)]
#[diesel(table_name = jobs)]
pub(super) struct SummaryRow {
    id: i64,
    stage: String,
    state: String,
    attempts: i32,
    flags: i32,
    updated_at: i64,
    error: Option<String>,
}

impl SummaryRow {
    pub(super) fn into_summary(self) -> Result<JobSummary, TrackerError> {
        let state = JobState::parse(&self.state).ok_or_else(|| {
            TrackerError::InvalidJobs(format!("job {} has unknown state {}", self.id, self.state))
        })?;
        Ok(JobSummary {
            id: self.id,
            stage: self.stage.parse()?,
            state,
            attempts: self.attempts,
            flags: self.flags,
            updated_at: self.updated_at,
            error: self.error,
        })
    }
}

/// Key of the PostgreSQL advisory lock that makes appends to one project take turns.
const APPEND_LOCK_KEY: i64 = 0x0061_7070_656e_6473; // "appends"

/// What [`JobStore::append_jobs`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// New jobs.
    pub added: usize,
    /// Items skipped: already a job's input, or repeated in the list.
    pub skipped: usize,
}

/// Inserts `items` as jobs `first..` open at stage `a`.
fn insert_jobs(conn: &mut DbConnection, first: i64, items: &[String], now: i64) -> Result<(), TrackerError> {
    for (chunk_index, chunk) in items.chunks(INSERT_CHUNK).enumerate() {
        let chunk_first = first + i64::try_from(chunk_index * INSERT_CHUNK).unwrap_or(i64::MAX);
        let rows: Vec<_> = chunk
            .iter()
            .zip(chunk_first..)
            .map(|(data, number)| {
                (
                    jobs::id.eq(number),
                    jobs::stage.eq(StageId::A.letter()),
                    jobs::state.eq(JobState::Open.as_str()),
                    jobs::data_a.eq(data.as_str()),
                    jobs::created_at.eq(now),
                    jobs::updated_at.eq(now),
                )
            })
            .collect();
        let insert = diesel::insert_into(jobs::table).values(rows);
        per_backend!(conn, |c| insert.execute(c))?;
    }
    Ok(())
}

/// Appends `items` after the last job, skipping inputs already present (see
/// [`JobStore::append_jobs`]), inside the caller's write transaction.
pub(super) fn append_in(conn: &mut DbConnection, items: &[String], now: i64) -> Result<Appended, TrackerError> {
    if let DbConnection::Pg(_) = conn {
        statements::lock_appends(conn, APPEND_LOCK_KEY)?;
    }
    let mut present = std::collections::HashSet::new();
    for chunk in items.chunks(INSERT_CHUNK) {
        let found: Vec<Option<String>> =
            jobs::table.filter(jobs::data_a.eq_any(chunk)).select(jobs::data_a).load(conn)?;
        present.extend(found.into_iter().flatten());
    }
    let mut fresh = Vec::new();
    for item in items {
        if present.insert(item.clone()) {
            fresh.push(item.clone());
        }
    }
    let last: Option<i64> = jobs::table.select(diesel::dsl::max(jobs::id)).first(conn)?;
    insert_jobs(conn, last.unwrap_or(0) + 1, &fresh, now)?;
    Ok(Appended { added: fresh.len(), skipped: items.len() - fresh.len() })
}

/// A `job_events` row as a job's history reads it: kind, stage, worker, time, detail.
type EventRow = (String, String, Option<String>, i64, Option<String>);

impl JobStore {
    /// Loads `items` as jobs `1..=N` open at stage `a`. Refuses when jobs exist already, unless
    /// `reset` is set, in which case every job, worker, leaderboard row, event, paused stage and
    /// operator action is deleted first — in the same transaction, so a failed load leaves the
    /// old data in place.
    ///
    /// # Errors
    /// [`TrackerError::NotEmpty`] without `reset`; database errors.
    pub fn load_jobs(&self, items: &[String], reset: bool) -> Result<usize, TrackerError> {
        let now = self.now_ms();
        let items = items.to_vec();
        let loaded = items.len();
        self.pools.write(move |tx| {
            tx.protect()?;
            let conn: &mut DbConnection = tx;
            let existing: i64 = jobs::table.count().get_result(conn)?;
            if existing > 0 && !reset {
                return Err(TrackerError::NotEmpty { existing });
            }
            if reset && matches!(conn, DbConnection::Pg(_)) {
                // Deleting would leave a dead row version per job (and index entries that claims
                // step over) until the next vacuum; truncating leaves none, in the same
                // transaction all the same.
                cached_sql!("TRUNCATE job_events, workers, leaderboard, jobs, paused_stages, admin_actions")
                    .execute(conn)?;
            } else if reset {
                diesel::delete(job_events::table).execute(conn)?;
                diesel::delete(workers::table).execute(conn)?;
                diesel::delete(leaderboard::table).execute(conn)?;
                diesel::delete(jobs::table).execute(conn)?;
                diesel::delete(paused_stages::table).execute(conn)?;
                diesel::delete(admin_actions::table).execute(conn)?;
            }
            insert_jobs(conn, 1, &items, now)?;
            Ok(loaded)
        })
    }

    /// Adds `items` to a project that may be running, as new jobs open at stage `a`, numbered
    /// after the last job. An item that is already a job's input (or repeats an earlier item) is
    /// skipped, so appending the same list again adds nothing. One transaction: workers claiming
    /// meanwhile see all of the new jobs or none, and several processes appending at once (on
    /// PostgreSQL) take turns.
    ///
    /// # Errors
    /// Database errors.
    pub fn append_jobs(&self, items: &[String]) -> Result<Appended, TrackerError> {
        let now = self.now_ms();
        let items = items.to_vec();
        self.pools.write(move |tx| {
            tx.protect()?;
            append_in(tx, &items, now)
        })
    }

    /// Jobs waiting at `stage` (open, or leased with an expired lease): what a worker of that
    /// stage could claim now; 0 while the stage is paused. Where counting takes 10 ms or more
    /// (hundreds of thousands of waiting jobs), the count is reused for twenty times as long as
    /// it took, so it may be that much older than the call (see `reused_reads`).
    ///
    /// # Errors
    /// Database errors.
    pub fn job_count(&self, stage: StageId) -> Result<i64, TrackerError> {
        let now = self.now_ms();
        let paused: i64 = self.pools.read(|conn| {
            Ok(paused_stages::table.filter(paused_stages::stage.eq(stage.letter())).count().get_result(conn)?)
        })?;
        if paused > 0 {
            return Ok(0);
        }
        self.reused.waiting[stage.index()].get(|| self.count_waiting(stage, now))
    }

    /// Jobs waiting at `stage` at time `now`, counted in the database.
    fn count_waiting(&self, stage: StageId, now: i64) -> Result<i64, TrackerError> {
        self.pools.read(|conn| {
            Ok(jobs::table
                .filter(jobs::stage.eq(stage.letter()))
                .filter(
                    jobs::state
                        .eq(JobState::Open.as_str())
                        .or(jobs::state.eq(JobState::Leased.as_str()).and(jobs::lease_expires_at.le(now))),
                )
                .count()
                .get_result(conn)?)
        })
    }

    /// Jobs filtered by stage and/or state, lowest number first.
    ///
    /// # Errors
    /// Database errors.
    pub fn jobs(
        &self,
        stage: Option<StageId>,
        state_filter: Option<JobState>,
        offset: i64,
        limit: i64,
    ) -> Result<Page<JobSummary>, TrackerError> {
        self.pools.read_snapshot(|conn| {
            let filtered = || {
                let mut query = jobs::table.into_boxed();
                if let Some(stage) = stage {
                    query = query.filter(jobs::stage.eq(stage.letter()));
                }
                if let Some(wanted) = state_filter {
                    query = query.filter(jobs::state.eq(wanted.as_str()));
                }
                query
            };
            let total: i64 = filtered().count().get_result(conn)?;
            let rows: Vec<SummaryRow> = filtered()
                .select(SummaryRow::as_select())
                .order(jobs::id)
                .offset(offset.max(0))
                .limit(limit.clamp(0, 1000))
                .load(conn)?;
            let items = rows.into_iter().map(SummaryRow::into_summary).collect::<Result<_, _>>()?;
            Ok(Page { total, offset: offset.max(0), items })
        })
    }

    /// Everything about job `number`, with its history.
    ///
    /// # Errors
    /// [`TrackerError::NoSuchJob`]; database errors.
    pub fn job(&self, number: i64) -> Result<JobDetail, TrackerError> {
        self.pools.read_snapshot(|conn| {
            type DetailRow = (
                SummaryRow,
                (Option<String>, Option<String>, Option<String>, Option<String>, Option<String>),
                Option<String>,
                Option<String>,
                Option<i64>,
                Option<i64>,
            );
            let row: DetailRow = jobs::table
                .find(number)
                .select((
                    SummaryRow::as_select(),
                    (jobs::data_a, jobs::data_b, jobs::data_c, jobs::data_d, jobs::data_e),
                    jobs::result,
                    jobs::lease_owner,
                    jobs::lease_expires_at,
                    jobs::completed_at,
                ))
                .first(conn)
                .optional()?
                .ok_or(TrackerError::NoSuchJob(number))?;
            let (summary_row, (a, b, c, d, e), result, lease_owner, lease_expires_at, completed_at) = row;
            let summary = summary_row.into_summary()?;
            let leased_to = match (summary.state, lease_owner) {
                (JobState::Leased, Some(token)) => workers::table
                    .find(token)
                    .select(workers::display_name)
                    .first(conn)
                    .optional()?,
                _ => None,
            };
            let events: Vec<EventRow> = job_events::table
                .filter(job_events::job_id.eq(number))
                .order(job_events::id)
                .select((job_events::kind, job_events::stage, job_events::worker, job_events::at, job_events::detail))
                .load(conn)?;
            let events = events
                .into_iter()
                .map(|(kind, stage, worker, at, detail)| {
                    Ok(JobEvent { kind, stage: stage.parse()?, worker, at, detail })
                })
                .collect::<Result<_, TrackerError>>()?;
            let leased = summary.state == JobState::Leased;
            Ok(JobDetail {
                summary,
                data: [a, b, c, d, e],
                result,
                leased_to,
                lease_expires_at: lease_expires_at.filter(|_| leased),
                completed_at,
                events,
            })
        })
    }
}
