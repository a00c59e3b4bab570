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
use cascade_tracker::{JobState, JobStore, StageId};
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
#[derive(Debug, Serialize)]
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
    crate::server::endpoint(config, "/v1/stats", web::get().to(stats));
    crate::server::endpoint(config, "/v1/workers", web::get().to(workers));
    crate::server::endpoint(config, "/v1/workers/{stage}/{name}", web::get().to(worker));
    crate::server::endpoint(config, "/v1/jobs", web::get().to(jobs));
    crate::server::endpoint(config, "/v1/jobs/{number}", web::get().to(job));
    crate::server::endpoint(config, "/v1/leaderboard", web::get().to(leaderboard));
    crate::server::endpoint(config, "/v1/throughput", web::get().to(throughput));
}

async fn stats(store: web::Data<JobStore>) -> Result<HttpResponse, ApiError> {
    let (stages, eta) = blocking(&store, |s| Ok((s.stage_counts()?, s.eta()?))).await?;
    Ok(HttpResponse::Ok().json(Stats {
        project: store.config().project.clone(),
        stages,
        completion_percent: super::dashboard::completion_percent(&eta),
        eta,
    }))
}

async fn workers(store: web::Data<JobStore>, query: web::Query<ListQuery>) -> Result<HttpResponse, ApiError> {
    let stage = query.stage()?;
    let (offset, limit) = query.page();
    let page = blocking(&store, move |s| s.workers(stage, offset, limit)).await?;
    Ok(HttpResponse::Ok().json(page))
}

async fn worker(store: web::Data<JobStore>, path: web::Path<(String, String)>) -> Result<HttpResponse, ApiError> {
    let (stage, name) = path.into_inner();
    let stage = parse_stage(&stage)?;
    match blocking(&store, move |s| s.worker_by_name(stage, &name)).await? {
        Some(view) => Ok(HttpResponse::Ok().json(view)),
        None => Err(ApiError::refused(StatusCode::NOT_FOUND, "Worker not found.")),
    }
}

async fn jobs(store: web::Data<JobStore>, query: web::Query<ListQuery>) -> Result<HttpResponse, ApiError> {
    let (stage, state) = (query.stage()?, query.state()?);
    let (offset, limit) = query.page();
    let page = blocking(&store, move |s| s.jobs(stage, state, offset, limit)).await?;
    Ok(HttpResponse::Ok().json(page))
}

async fn job(store: web::Data<JobStore>, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let raw = path.into_inner();
    let number: i64 = raw
        .parse()
        .map_err(|_| ApiError::refused(StatusCode::BAD_REQUEST, format!("Invalid job number: '{raw}'.")))?;
    let detail = blocking(&store, move |s| s.job(number)).await?;
    Ok(HttpResponse::Ok().json(detail))
}

async fn leaderboard(store: web::Data<JobStore>, query: web::Query<ListQuery>) -> Result<HttpResponse, ApiError> {
    let (offset, limit) = query.page();
    let page = blocking(&store, move |s| s.leaderboard(offset, limit)).await?;
    Ok(HttpResponse::Ok().json(page))
}

async fn throughput(store: web::Data<JobStore>, query: web::Query<ThroughputQuery>) -> Result<HttpResponse, ApiError> {
    let minutes = query.minutes.unwrap_or(60).clamp(1, MAX_MINUTES);
    let points = blocking(&store, move |s| s.throughput(s.now_ms() - minutes * 60_000)).await?;
    Ok(HttpResponse::Ok().json(points))
}
