//! Lease outcomes beyond the distcompute protocol, for workers that can say more than
//! "done" or "invalid" (`cascade worker` uses them; Python workers never need them).
//!
//! | path | body | effect |
//! |---|---|---|
//! | `POST /v1/lease/retry` | `{token, retry_after_ms, reason}` | re-opens the job, not handed out again before the delay |
//! | `POST /v1/lease/fail` | `{token, error}` | marks the job failed with the error |
//! | `POST /v1/lease/release` | `{token}` | gives the job back at once; the worker stays |
//!
//! Each answers `200 OK` (plain text) or the same 403/404 texts as `/api/*`; all are fenced by
//! the worker's current lease, so a stale or duplicate call changes nothing.

use actix_web::{web, HttpResponse};
use cascade_tracker::JobStore;
use serde::Deserialize;

use super::blocking;
use crate::error::ApiError;

/// Longest retry delay a worker may ask for (one day).
const MAX_RETRY_AFTER_MS: u64 = 24 * 3600 * 1000;

/// Body of `POST /v1/lease/retry`.
#[derive(Debug, Deserialize)]
pub struct RetryBody {
    /// The worker's token.
    pub token: String,
    /// Delay before the job may be handed out again, in milliseconds (at most one day).
    pub retry_after_ms: u64,
    /// What went wrong.
    pub reason: String,
}

/// Body of `POST /v1/lease/fail`.
#[derive(Debug, Deserialize)]
pub struct FailBody {
    /// The worker's token.
    pub token: String,
    /// Why the job can never succeed.
    pub error: String,
}

/// Body of `POST /v1/lease/release`.
#[derive(Debug, Deserialize)]
pub struct ReleaseBody {
    /// The worker's token.
    pub token: String,
}

/// Registers the `/v1/lease/*` routes.
pub fn routes(config: &mut web::ServiceConfig) {
    crate::server::endpoint(config, "/v1/lease/retry", web::post().to(retry));
    crate::server::endpoint(config, "/v1/lease/fail", web::post().to(fail));
    crate::server::endpoint(config, "/v1/lease/release", web::post().to(release));
}

fn ok() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain; charset=utf-8").body("200 OK")
}

async fn retry(store: web::Data<JobStore>, body: web::Json<RetryBody>) -> Result<HttpResponse, ApiError> {
    let delay = i64::try_from(body.retry_after_ms.min(MAX_RETRY_AFTER_MS)).unwrap_or(i64::MAX);
    blocking(&store, move |s| s.retry_later(&body.token, s.now_ms().saturating_add(delay), &body.reason)).await?;
    Ok(ok())
}

async fn fail(store: web::Data<JobStore>, body: web::Json<FailBody>) -> Result<HttpResponse, ApiError> {
    blocking(&store, move |s| s.fail(&body.token, &body.error)).await?;
    Ok(ok())
}

async fn release(store: web::Data<JobStore>, body: web::Json<ReleaseBody>) -> Result<HttpResponse, ApiError> {
    blocking(&store, move |s| s.release(&body.token)).await?;
    Ok(ok())
}
