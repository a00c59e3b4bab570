//! `GET /v1/dashboard`: everything one refresh of the `/web` page shows, in one answer, and
//! `GET /v1/problems`: failed and flagged jobs with their reasons.
//!
//! The answer's size does not grow with the number of workers or jobs: every listing in it is
//! one bounded page (its `total` says how many there are in all), and the chart covers a fixed
//! number of minutes.

use actix_web::{web, HttpResponse};
use cascade_tracker::{
    AdminAction, Eta, JobStore, LeaderboardEntry, Page, PausedStage, ProblemJob, StageCounts, StageId, ThroughputPoint,
    WorkerView,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{blocking, parse_stage};
use crate::error::ApiError;
use crate::pools::{PoolRegistry, PoolSnapshot};

/// Workers per page.
pub const WORKERS_PAGE: i64 = 50;
/// Failed and flagged jobs per page.
pub const PROBLEMS_PAGE: i64 = 20;
/// Leaderboard rows per page.
pub const LEADERBOARD_PAGE: i64 = 20;
/// Minutes the jobs-per-minute chart covers.
pub const CHART_MINUTES: i64 = 60;
/// Operator actions shown, newest first.
pub const ACTIONS_SHOWN: i64 = 10;
/// Minutes the current jobs-per-minute rate and the stage ETAs average over (at most).
const RATE_MINUTES: i64 = 10;

/// Query of `/v1/dashboard`: which page of each listing to show.
#[derive(Debug, Default, Deserialize)]
pub struct DashboardQuery {
    /// Only workers of this stage.
    pub stage: Option<String>,
    /// First worker shown, default 0.
    pub workers_offset: Option<i64>,
    /// First failed or flagged job shown, default 0.
    pub problems_offset: Option<i64>,
    /// First leaderboard row shown, default 0.
    pub leaderboard_offset: Option<i64>,
}

/// Query of `/v1/problems`.
#[derive(Debug, Default, Deserialize)]
pub struct ProblemsQuery {
    /// First job, default 0.
    pub offset: Option<i64>,
    /// Page size, default 20, at most 500.
    pub limit: Option<i64>,
}

/// One stage as the dashboard shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct StageRow {
    /// Job and worker counts.
    #[serde(flatten)]
    pub counts: StageCounts,
    /// Completions per minute at this stage, averaged over the last minutes.
    pub jobs_per_minute: f64,
    /// Seconds until every job that still has to pass this stage has, at that rate; `None`
    /// when nothing was completed here recently (or nothing is left).
    pub eta_seconds: Option<i64>,
    /// The local pool of this stage in this process, if one runs.
    pub pool: Option<PoolSnapshot>,
    /// When and by whom the stage was paused, while it is (no leases are handed out).
    pub paused: Option<PausedStage>,
}

/// Answer of `/v1/dashboard`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Dashboard {
    /// Project name.
    pub project: String,
    /// The tracker's clock, Unix ms (for "seconds ago" without trusting the browser's clock).
    pub now: i64,
    /// Done jobs as a percentage of all jobs (100 when there are none).
    pub completion_percent: f64,
    /// Overall progress and ETA.
    pub eta: Eta,
    /// Enabled stages, and disabled ones that still hold jobs.
    pub stages: Vec<StageRow>,
    /// Start of the chart, Unix ms (a whole minute).
    pub chart_since: i64,
    /// Completions per stage and minute since `chart_since` (minutes without any are left out).
    pub throughput: Vec<ThroughputPoint>,
    /// One page of workers.
    pub workers: Page<WorkerView>,
    /// One page of failed and flagged jobs.
    pub problems: Page<ProblemJob>,
    /// One page of the leaderboard.
    pub leaderboard: Page<LeaderboardEntry>,
    /// The latest operator actions, newest first.
    pub actions: Vec<AdminAction>,
}

/// Registers `/v1/dashboard` and `/v1/problems`.
pub fn routes(config: &mut web::ServiceConfig) {
    crate::server::get(config, "/v1/dashboard", web::to(dashboard));
    crate::server::get(config, "/v1/problems", web::to(problems));
}

/// Done jobs as a percentage of all (100 when there are none).
pub(crate) fn completion_percent(eta: &Eta) -> f64 {
    if eta.total == 0 {
        100.0
    } else {
        eta.done as f64 * 100.0 / eta.total as f64
    }
}

/// Everything one refresh of the `/web` page shows, in one answer of bounded size.
#[utoipa::path(get, path = "/v1/dashboard", tag = "read",
    params(("stage" = Option<StageId>, Query, description = "Only workers of this stage."),
        ("workers_offset" = Option<i64>, Query, description = "First worker shown, default 0."),
        ("problems_offset" = Option<i64>, Query, description = "First failed or flagged job shown, default 0."),
        ("leaderboard_offset" = Option<i64>, Query, description = "First leaderboard row shown, default 0.")),
    responses(
        (status = 200, description = "The snapshot.", body = Dashboard),
        (status = 400, description = "Unknown stage.", body = String, content_type = "text/plain"),
    ))]
async fn dashboard(
    store: web::Data<JobStore>,
    pools: web::Data<PoolRegistry>,
    query: web::Query<DashboardQuery>,
) -> Result<HttpResponse, ApiError> {
    let stage = query.stage.as_deref().map(parse_stage).transpose()?;
    let offsets = [query.workers_offset, query.problems_offset, query.leaderboard_offset].map(|o| o.unwrap_or(0).max(0));
    let now = store.now_ms();
    let chart_since = (now / 60_000 - (CHART_MINUTES - 1)) * 60_000;
    let (counts, eta, throughput, workers, problems, leaderboard, paused, actions) = blocking(&store, move |s| {
        Ok((
            s.stage_counts()?,
            s.eta()?,
            s.throughput(chart_since)?,
            s.workers(stage, offsets[0], WORKERS_PAGE)?,
            s.problem_jobs(offsets[1], PROBLEMS_PAGE)?,
            s.leaderboard(offsets[2], LEADERBOARD_PAGE)?,
            s.paused_stages()?,
            s.admin_actions(ACTIONS_SHOWN)?,
        ))
    })
    .await?;
    let stages = stage_rows(counts, &throughput, &pools.snapshots(), &paused, now);
    Ok(HttpResponse::Ok().json(Dashboard {
        project: store.config().project.clone(),
        now,
        completion_percent: completion_percent(&eta),
        eta,
        stages,
        chart_since,
        throughput,
        workers,
        problems,
        leaderboard,
        actions,
    }))
}

/// Failed and flagged jobs with their reasons, most recently changed first.
#[utoipa::path(get, path = "/v1/problems", tag = "read",
    params(("offset" = Option<i64>, Query, description = "First job, default 0."),
        ("limit" = Option<i64>, Query, description = "Page size, default 20, at most 500.")),
    responses((status = 200, description = "One page of failed and flagged jobs.", body = Page<ProblemJob>)))]
async fn problems(store: web::Data<JobStore>, query: web::Query<ProblemsQuery>) -> Result<HttpResponse, ApiError> {
    let offset = query.offset.unwrap_or(0).max(0);
    let limit = query.limit.unwrap_or(PROBLEMS_PAGE).clamp(0, 500);
    let page = blocking(&store, move |s| s.problem_jobs(offset, limit)).await?;
    Ok(HttpResponse::Ok().json(page))
}

/// The stages worth showing, each with its rate, ETA, local pool and pause.
///
/// A stage's rate is its completions over the last [`RATE_MINUTES`] (or since its first
/// completion in them, at least one minute); what it still has to do is every job open or
/// leased at it or at an earlier stage.
fn stage_rows(
    counts: Vec<StageCounts>,
    throughput: &[ThroughputPoint],
    pools: &[PoolSnapshot],
    paused: &[PausedStage],
    now: i64,
) -> Vec<StageRow> {
    let rate_since = now - RATE_MINUTES * 60_000;
    let mut waiting_upstream = 0;
    let mut rows = Vec::new();
    for counts in counts {
        let stage: StageId = counts.stage;
        waiting_upstream += counts.open + counts.leased;
        let recent = throughput.iter().filter(|p| p.stage == stage.letter() && p.minute + 60_000 > rate_since);
        let (completed, first_minute) =
            recent.fold((0, None::<i64>), |(n, first), p| (n + p.completed, Some(first.map_or(p.minute, |f| f.min(p.minute)))));
        let minutes = first_minute.map_or(RATE_MINUTES as f64, |first| {
            ((now - first.max(rate_since)) as f64 / 60_000.0).clamp(1.0, RATE_MINUTES as f64)
        });
        let jobs_per_minute = completed as f64 / minutes;
        let eta_seconds = (jobs_per_minute > 0.0 && waiting_upstream > 0)
            .then(|| (waiting_upstream as f64 / jobs_per_minute * 60.0).ceil() as i64);
        let holds_jobs = counts.open + counts.leased + counts.done + counts.failed > 0;
        if counts.name.is_some() || holds_jobs {
            let pool = pools.iter().find(|p| p.stage == stage).cloned();
            let paused = paused.iter().find(|p| p.stage == stage).cloned();
            rows.push(StageRow { counts, jobs_per_minute, eta_seconds, pool, paused });
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000_000 / 60_000 * 60_000 + 30_000;

    fn counts(stage: StageId, name: Option<&str>, open: i64, leased: i64, done: i64) -> StageCounts {
        StageCounts { stage, name: name.map(str::to_owned), open, leased, done, failed: 0, workers: 0 }
    }

    fn point(stage: &str, minutes_ago: i64, completed: i64) -> ThroughputPoint {
        ThroughputPoint { stage: stage.to_owned(), minute: (NOW / 60_000 - minutes_ago) * 60_000, completed }
    }

    #[test]
    fn rates_etas_and_which_stages_show() {
        let counts = vec![
            counts(StageId::A, Some("CPU"), 10, 2, 30),
            counts(StageId::B, Some("GPU"), 4, 0, 0),
            counts(StageId::C, None, 0, 0, 0),
            counts(StageId::D, None, 1, 0, 0),
            counts(StageId::E, None, 0, 0, 0),
        ];
        // Stage a: 30 completions in minutes 0..=9 ago, spread evenly from 9.5 minutes ago.
        let mut points: Vec<_> = (0..10).map(|m| point("a", m, 3)).collect();
        points.push(point("a", 30, 100)); // outside the rate window
        let pools = [PoolSnapshot { busy: 1, ..PoolSnapshot::idle(StageId::B, "download", 2, 4) }];
        let rows = stage_rows(counts, &points, &pools, &[], NOW);
        let shown: Vec<_> = rows.iter().map(|r| r.counts.stage).collect();
        assert_eq!(shown, [StageId::A, StageId::B, StageId::D], "disabled and empty stages are left out");
        let a = &rows[0];
        assert!((a.jobs_per_minute - 30.0 / 9.5).abs() < 1e-9, "{}", a.jobs_per_minute);
        assert_eq!(a.eta_seconds, Some((12.0 / (30.0 / 9.5) * 60.0_f64).ceil() as i64));
        assert!(a.pool.is_none());
        let b = &rows[1];
        assert_eq!((b.jobs_per_minute, b.eta_seconds), (0.0, None), "no completions, no ETA");
        assert_eq!(b.pool.as_ref().map(|p| p.busy), Some(1));
    }
}
