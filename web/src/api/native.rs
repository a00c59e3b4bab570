//! The native JSON API under `/v1/*`: what dashboards and scripts read.
//!
//! | path | answer |
//! |---|---|
//! | `GET /v1/stats` | project, per-stage counts (open, leased, done, failed, workers), ETA |
//! | `GET /v1/workers?stage&offset&limit` | a page of workers, in registration order |
//! | `GET /v1/workers/{stage}/{display_name}` | one worker |
//! | `GET /v1/jobs?stage&state&offset&limit` | a page of jobs |
//! | `GET /v1/jobs/{number}` | one job: data at each stage, lease, history |
//! | `GET /v1/leaderboard?offset&limit` | nicknames by jobs completed |
//! | `GET /v1/throughput?minutes` | completions per stage and minute |
//!
//! The dashboard's own endpoints, `/v1/dashboard` and `/v1/problems`, are in
//! [`super::dashboard`].
//!
//! Worker tokens are credentials and never appear here. Errors are a 4xx status with a
//! plain-text reason.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use cascade_tracker::{
    JobDetail, JobState, JobStore, JobSummary, LeaderboardEntry, Page, StageId, ThroughputPoint, WorkerView,
};
use utoipa::ToSchema;
use serde::{Deserialize, Serialize};

use super::{blocking, parse_stage};
use crate::error::ApiError;

/// Default page size.
const DEFAULT_LIMIT: i64 = 50;
/// Largest page size.
const MAX_LIMIT: i64 = 500;
/// Largest throughput window, in minutes (one week).
const MAX_MINUTES: i64 = 7 * 24 * 60;

/// Paging and filters shared by the listings.
#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    /// Only this stage.
    pub stage: Option<String>,
    /// Only jobs in this state (`open`, `leased`, `done`, `failed`).
    pub state: Option<String>,
    /// First item, default 0.
    pub offset: Option<i64>,
    /// Page size, default 50, at most 500.
    pub limit: Option<i64>,
}

impl ListQuery {
    fn stage(&self) -> Result<Option<StageId>, ApiError> {
        self.stage.as_deref().map(parse_stage).transpose()
    }

    fn state(&self) -> Result<Option<JobState>, ApiError> {
        self.state
            .as_deref()
            .map(|raw| {
                JobState::parse(raw).ok_or_else(|| {
                    ApiError::refused(
                        StatusCode::BAD_REQUEST,
                        format!("Invalid job state: '{raw}'. Choose from 'open'/'leased'/'done'/'failed'."),
                    )
                })
            })
            .transpose()
    }

    fn page(&self) -> (i64, i64) {
        (self.offset.unwrap_or(0).max(0), self.limit.unwrap_or(DEFAULT_LIMIT).clamp(0, MAX_LIMIT))
    }
}

/// Query of `/v1/throughput`.
#[derive(Debug, Deserialize)]
pub struct ThroughputQuery {
    /// How many minutes back, default 60.
    pub minutes: Option<i64>,
}

/// Answer of `/v1/stats`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Stats {
    /// Project name.
    pub project: String,
    /// Per-stage counts, `a`..`e`.
    pub stages: Vec<cascade_tracker::StageCounts>,
    /// Overall progress and ETA.
    pub eta: cascade_tracker::Eta,
    /// Done jobs as a percentage of all jobs (100 when there are none).
    pub completion_percent: f64,
}

/// Registers all `/v1/*` routes.
pub fn routes(config: &mut web::ServiceConfig) {
    crate::server::get(config, "/v1/stats", web::to(stats));
    crate::server::get(config, "/v1/workers", web::to(workers));
    crate::server::get(config, "/v1/workers/{stage}/{name}", web::to(worker));
    crate::server::get(config, "/v1/jobs", web::to(jobs));
    crate::server::get(config, "/v1/jobs/{number}", web::to(job));
    crate::server::get(config, "/v1/leaderboard", web::to(leaderboard));
    crate::server::get(config, "/v1/throughput", web::to(throughput));
}

/// Job counts per stage, overall progress and the ETA.
#[utoipa::path(get, path = "/v1/stats", tag = "read", responses((status = 200, description = "The project's figures.", body = Stats)))]
async fn stats(store: web::Data<JobStore>) -> Result<HttpResponse, ApiError> {
    let (stages, eta) = blocking(&store, |s| Ok((s.stage_counts()?, s.eta()?))).await?;
    Ok(HttpResponse::Ok().json(Stats {
        project: store.config().project.clone(),
        stages,
        completion_percent: super::dashboard::completion_percent(&eta),
        eta,
    }))
}

/// A page of workers, in registration order.
#[utoipa::path(get, path = "/v1/workers", tag = "read",
    params(("stage" = Option<StageId>, Query, description = "Only workers of this stage."),
        ("offset" = Option<i64>, Query, description = "First item, default 0."),
        ("limit" = Option<i64>, Query, description = "Page size, default 50, at most 500."),),
    responses(
        (status = 200, description = "One page of workers.", body = Page<WorkerView>),
        (status = 400, description = "Unknown stage.", body = String, content_type = "text/plain"),
    ))]
async fn workers(store: web::Data<JobStore>, query: web::Query<ListQuery>) -> Result<HttpResponse, ApiError> {
    let stage = query.stage()?;
    let (offset, limit) = query.page();
    let page = blocking(&store, move |s| s.workers(stage, offset, limit)).await?;
    Ok(HttpResponse::Ok().json(page))
}

/// One worker, by its stage and display name.
#[utoipa::path(get, path = "/v1/workers/{stage}/{name}", tag = "read",
    params(("stage" = StageId, Path, description = "The worker's stage."),
        ("name" = String, Path, description = "The worker's display name.")),
    responses(
        (status = 200, description = "The worker.", body = WorkerView),
        (status = 400, description = "Unknown stage.", body = String, content_type = "text/plain"),
        (status = 404, description = "No such worker.", body = String, content_type = "text/plain"),
    ))]
async fn worker(store: web::Data<JobStore>, path: web::Path<(String, String)>) -> Result<HttpResponse, ApiError> {
    let (stage, name) = path.into_inner();
    let stage = parse_stage(&stage)?;
    match blocking(&store, move |s| s.worker_by_name(stage, &name)).await? {
        Some(view) => Ok(HttpResponse::Ok().json(view)),
        None => Err(ApiError::refused(StatusCode::NOT_FOUND, "Worker not found.")),
    }
}

/// A page of jobs, in number order.
#[utoipa::path(get, path = "/v1/jobs", tag = "read",
    params(("stage" = Option<StageId>, Query, description = "Only jobs at this stage."),
        ("state" = Option<JobState>, Query, description = "Only jobs in this state."),
        ("offset" = Option<i64>, Query, description = "First item, default 0."),
        ("limit" = Option<i64>, Query, description = "Page size, default 50, at most 500."),),
    responses(
        (status = 200, description = "One page of jobs.", body = Page<JobSummary>),
        (status = 400, description = "Unknown stage or state.", body = String, content_type = "text/plain"),
    ))]
async fn jobs(store: web::Data<JobStore>, query: web::Query<ListQuery>) -> Result<HttpResponse, ApiError> {
    let (stage, state) = (query.stage()?, query.state()?);
    let (offset, limit) = query.page();
    let page = blocking(&store, move |s| s.jobs(stage, state, offset, limit)).await?;
    Ok(HttpResponse::Ok().json(page))
}

/// Everything about one job: its data at each stage, its lease and its history.
#[utoipa::path(get, path = "/v1/jobs/{number}", tag = "read",
    params(("number" = i64, Path, description = "The job number.")),
    responses(
        (status = 200, description = "The job.", body = JobDetail),
        (status = 400, description = "Not a job number.", body = String, content_type = "text/plain"),
        (status = 404, description = "No such job.", body = String, content_type = "text/plain"),
    ))]
async fn job(store: web::Data<JobStore>, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let raw = path.into_inner();
    let number: i64 = raw
        .parse()
        .map_err(|_| ApiError::refused(StatusCode::BAD_REQUEST, format!("Invalid job number: '{raw}'.")))?;
    let detail = blocking(&store, move |s| s.job(number)).await?;
    Ok(HttpResponse::Ok().json(detail))
}

/// Nicknames by jobs completed.
#[utoipa::path(get, path = "/v1/leaderboard", tag = "read",
    params(("offset" = Option<i64>, Query, description = "First item, default 0."),
        ("limit" = Option<i64>, Query, description = "Page size, default 50, at most 500."),),
    responses((status = 200, description = "One page of the leaderboard.", body = Page<LeaderboardEntry>)))]
async fn leaderboard(store: web::Data<JobStore>, query: web::Query<ListQuery>) -> Result<HttpResponse, ApiError> {
    let (offset, limit) = query.page();
    let page = blocking(&store, move |s| s.leaderboard(offset, limit)).await?;
    Ok(HttpResponse::Ok().json(page))
}

/// Completions per stage and minute.
#[utoipa::path(get, path = "/v1/throughput", tag = "read",
    params(("minutes" = Option<i64>, Query, description = "How many minutes back, default 60, at most a week.")),
    responses((status = 200, description = "Minutes without completions are left out.", body = Vec<ThroughputPoint>)))]
async fn throughput(store: web::Data<JobStore>, query: web::Query<ThroughputQuery>) -> Result<HttpResponse, ApiError> {
    let minutes = query.minutes.unwrap_or(60).clamp(1, MAX_MINUTES);
    let points = blocking(&store, move |s| s.throughput(s.now_ms() - minutes * 60_000)).await?;
    Ok(HttpResponse::Ok().json(points))
}
