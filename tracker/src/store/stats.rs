//! Aggregates for the API and dashboard: counts per stage, workers, leaderboard, ETA,
//! throughput.

use diesel::dsl::{count_star, min};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use serde::Serialize;
use utoipa::ToSchema;

use super::views::{JobState, LeaderboardEntry, Page, WorkerView};
use super::JobStore;
use crate::db::schema::{jobs, leaderboard, workers};
use crate::db::statements::{self, UnixMs};
use crate::error::TrackerError;
use crate::stage::StageId;

/// How far back completions are averaged for the ETA.
const ETA_WINDOW_MS: i64 = 60 * 60 * 1000;

/// Job counts of one stage.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StageCounts {
    /// The stage.
    pub stage: StageId,
    /// Its display name; `None` when disabled.
    pub name: Option<String>,
    /// Jobs waiting at this stage.
    pub open: i64,
    /// Jobs held by a worker of this stage.
    pub leased: i64,
    /// Jobs that have passed this stage (now at a later stage, or done here).
    pub done: i64,
    /// Jobs that failed at this stage.
    pub failed: i64,
    /// Workers registered for this stage.
    pub workers: i64,
}

/// Progress of the whole pipeline and its expected end.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Eta {
    /// All jobs.
    pub total: i64,
    /// Jobs done.
    pub done: i64,
    /// Jobs neither done nor failed.
    pub remaining: i64,
    /// Jobs finished per hour, averaged over the last hour (or since the first completion in it).
    pub rate_per_hour: f64,
    /// Seconds until every remaining job is done at that rate; `None` while nothing finished
    /// recently.
    pub seconds_left: Option<i64>,
}

/// Completions at one stage during one minute.
#[derive(Debug, Clone, Serialize, QueryableByName, ToSchema)]
pub struct ThroughputPoint {
    /// The stage's letter.
    #[diesel(sql_type = Text)]
    pub stage: String,
    /// Start of the minute, Unix ms.
    #[diesel(sql_type = BigInt)]
    pub minute: i64,
    /// Jobs completed at that stage in that minute.
    #[diesel(sql_type = BigInt)]
    pub completed: i64,
}

/// The columns of a worker the read models show.
#[derive(Queryable, Selectable)]
#[diesel(table_name = workers)]
struct WorkerRow {
    display_name: String,
    stage: String,
    nickname: String,
    progress: String,
    jobs_completed: i64,
    first_seen: i64,
    last_seen: i64,
    job_id: Option<i64>,
}

impl WorkerRow {
    fn into_view(self) -> Result<WorkerView, TrackerError> {
        Ok(WorkerView {
            display_name: self.display_name,
            stage: self.stage.parse()?,
            nickname: self.nickname,
            progress: self.progress,
            jobs_completed: self.jobs_completed,
            first_seen: self.first_seen,
            last_seen: self.last_seen,
            job: self.job_id,
        })
    }
}

impl JobStore {
    /// Job and worker counts for each of the five stages (disabled ones included, with zeros).
    /// Where counting takes 10 ms or more (hundreds of thousands of jobs), the counts are
    /// reused for twenty times as long as they took, so they may be that much older than the
    /// call (see `reused_reads`).
    ///
    /// # Errors
    /// Database errors.
    pub fn stage_counts(&self) -> Result<Vec<StageCounts>, TrackerError> {
        self.reused.stage_counts.get(|| self.count_stages())
    }

    /// [`stage_counts`](Self::stage_counts), counted in the database.
    fn count_stages(&self) -> Result<Vec<StageCounts>, TrackerError> {
        let (job_rows, worker_rows) = self.pools.read_snapshot(|conn| {
            let job_rows: Vec<(String, String, i64)> = jobs::table
                .group_by((jobs::stage, jobs::state))
                .select((jobs::stage, jobs::state, count_star()))
                .load(conn)?;
            let worker_rows: Vec<(String, i64)> = workers::table
                .group_by(workers::stage)
                .select((workers::stage, count_star()))
                .load(conn)?;
            Ok((job_rows, worker_rows))
        })?;
        let mut counts: Vec<StageCounts> = StageId::ALL
            .into_iter()
            .map(|stage| StageCounts {
                stage,
                name: self.config.stage_name(stage).map(str::to_owned),
                open: 0,
                leased: 0,
                done: 0,
                failed: 0,
                workers: 0,
            })
            .collect();
        for (stage, state_name, n) in job_rows {
            let stage: StageId = stage.parse()?;
            let here = &mut counts[stage.index()];
            match JobState::parse(&state_name) {
                Some(JobState::Open) => here.open += n,
                Some(JobState::Leased) => here.leased += n,
                Some(JobState::Failed) => here.failed += n,
                Some(JobState::Done) => here.done += n,
                None => {}
            }
            // A job at a stage, whatever its state, has passed every earlier stage.
            for earlier in &mut counts[..stage.index()] {
                earlier.done += n;
            }
        }
        for (stage, n) in worker_rows {
            counts[stage.parse::<StageId>()?.index()].workers = n;
        }
        Ok(counts)
    }

    /// Nicknames by jobs completed, best first.
    ///
    /// # Errors
    /// Database errors.
    pub fn leaderboard(&self, offset: i64, limit: i64) -> Result<Page<LeaderboardEntry>, TrackerError> {
        self.pools.read_snapshot(|conn| {
            let total: i64 = leaderboard::table.count().get_result(conn)?;
            let rows: Vec<(String, i64)> = leaderboard::table
                .order((leaderboard::jobs_completed.desc(), leaderboard::nickname))
                .offset(offset.max(0))
                .limit(limit.clamp(0, 1000))
                .load(conn)?;
            let items = rows
                .into_iter()
                .map(|(nickname, jobs_completed)| LeaderboardEntry { nickname, jobs_completed })
                .collect();
            Ok(Page { total, offset: offset.max(0), items })
        })
    }

    /// Workers, optionally of one stage, in registration order.
    ///
    /// # Errors
    /// Database errors.
    pub fn workers(&self, stage: Option<StageId>, offset: i64, limit: i64) -> Result<Page<WorkerView>, TrackerError> {
        self.pools.read_snapshot(|conn| {
            let filtered = || {
                let mut query = workers::table.into_boxed();
                if let Some(stage) = stage {
                    query = query.filter(workers::stage.eq(stage.letter()));
                }
                query
            };
            let total: i64 = filtered().count().get_result(conn)?;
            let rows: Vec<WorkerRow> = filtered()
                .select(WorkerRow::as_select())
                .order((workers::first_seen, workers::display_name))
                .offset(offset.max(0))
                .limit(limit.clamp(0, 1000))
                .load(conn)?;
            let items = rows.into_iter().map(WorkerRow::into_view).collect::<Result<_, _>>()?;
            Ok(Page { total, offset: offset.max(0), items })
        })
    }

    /// The worker of `stage` called `display_name`, if there is one.
    ///
    /// # Errors
    /// Database errors.
    pub fn worker_by_name(&self, stage: StageId, display_name: &str) -> Result<Option<WorkerView>, TrackerError> {
        self.pools.read(|conn| {
            let row: Option<WorkerRow> = workers::table
                .filter(workers::stage.eq(stage.letter()))
                .filter(workers::display_name.eq(display_name))
                .select(WorkerRow::as_select())
                .first(conn)
                .optional()?;
            row.map(WorkerRow::into_view).transpose()
        })
    }

    /// Overall progress and the expected time to finish, from recent completions. The counts of
    /// jobs by state are reused while costly, as in [`stage_counts`](Self::stage_counts).
    ///
    /// # Errors
    /// Database errors.
    pub fn eta(&self) -> Result<Eta, TrackerError> {
        let now = self.now_ms();
        let since = now - ETA_WINDOW_MS;
        // Counting every job by state is the costly part: reused as the stage counts are.
        let by_state = self.reused.jobs_by_state.get(|| {
            self.pools.read(|conn| {
                Ok(jobs::table.group_by(jobs::state).select((jobs::state, count_star())).load::<(String, i64)>(conn)?)
            })
        })?;
        let (recent, first_recent) = self.pools.read_snapshot(|conn| {
            let recent_jobs = jobs::table.filter(jobs::completed_at.ge(since));
            let recent: i64 = recent_jobs.count().get_result(conn)?;
            let first_recent: Option<i64> = recent_jobs.select(min(jobs::completed_at)).first(conn)?;
            Ok((recent, first_recent))
        })?;
        let count = |wanted: &str| by_state.iter().filter(|(s, _)| s == wanted).map(|(_, n)| n).sum::<i64>();
        let total: i64 = by_state.iter().map(|(_, n)| n).sum();
        let done = count(JobState::Done.as_str());
        let remaining = total - done - count(JobState::Failed.as_str());
        let elapsed_ms = first_recent.map_or(ETA_WINDOW_MS, |first| (now - first).max(1000));
        let rate_per_ms = recent as f64 / elapsed_ms as f64;
        let seconds_left = (rate_per_ms > 0.0).then(|| (remaining as f64 / rate_per_ms / 1000.0).ceil() as i64);
        Ok(Eta { total, done, remaining, rate_per_hour: rate_per_ms * 3_600_000.0, seconds_left })
    }

    /// Completions per stage and minute since `since_ms`, oldest first.
    ///
    /// # Errors
    /// Database errors.
    pub fn throughput(&self, since_ms: i64) -> Result<Vec<ThroughputPoint>, TrackerError> {
        self.pools.read(|conn| Ok(statements::completions_per_minute(conn, UnixMs(since_ms))?))
    }
}
