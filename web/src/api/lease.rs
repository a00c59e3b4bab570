//! Lease calls beyond the distcompute protocol, for workers that can say more than "done" or
//! "invalid" (`cascade worker` uses them; Python workers never need them). The bodies and
//! answers are the types of [`cascade_tracker::protocol`].
//!
//! | path | body | effect |
//! |---|---|---|
//! | `POST /v1/lease/claim` | `{token, number?}` | claims a job (that one, if given): `{number, stage, data, lease, attempt}` |
//! | `POST /v1/lease/complete` | `{token, number, lease, data, claim_next?}` | completes that lease and, with `claim_next`, claims the next job: `{completion: {number, next_stage}, next}` |
//! | `POST /v1/lease/retry` | `{token, number?, lease?, retry_after_ms, reason}` | re-opens the job, not handed out again before the delay |
//! | `POST /v1/lease/fail` | `{token, number?, lease?, error}` | marks the job failed with the error |
//! | `POST /v1/lease/release` | `{token, number?, lease?}` | gives the job back at once, the attempt uncounted; the worker stays |
//!
//! Refusals are the same 403/404 texts as `/api/*`. All are fenced by the worker's current
//! lease and, where the body names one (`number` and `lease`, as `/v1/lease/claim` gave them),
//! by exactly that lease: a stale, duplicate or repeated call (one sent again after its answer
//! was lost) changes nothing.

use actix_web::{web, HttpResponse};
use cascade_tracker::protocol::{
    named_lease, ClaimBody, ClaimedJob, CompleteAnswer, FailBody, HeldLease, LeaseCompleteBody, ReleaseBody, RetryBody,
};
use cascade_tracker::JobStore;

use super::blocking;
use crate::error::ApiError;

/// Longest retry delay a worker may ask for (one day).
const MAX_RETRY_AFTER_MS: u64 = 24 * 3600 * 1000;

/// Registers the `/v1/lease/*` routes.
pub fn routes(config: &mut web::ServiceConfig) {
    crate::server::post(config, "/v1/lease/claim", web::to(claim));
    crate::server::post(config, "/v1/lease/complete", web::to(complete));
    crate::server::post(config, "/v1/lease/retry", web::to(retry));
    crate::server::post(config, "/v1/lease/fail", web::to(fail));
    crate::server::post(config, "/v1/lease/release", web::to(release));
}

fn ok() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain; charset=utf-8").body("200 OK")
}

/// Claims a job at the worker's stage (the one named, if any).
#[utoipa::path(post, path = "/v1/lease/claim", tag = "lease", request_body = ClaimBody,
    responses(
        (status = 200, description = "The job and its lease.", body = ClaimedJob),
        (status = 403, description = "No job is available (or not the one named).", body = String, content_type = "text/plain"),
        (status = 404, description = "Unknown worker: register again.", body = String, content_type = "text/plain"),
    ))]
async fn claim(store: web::Data<JobStore>, body: web::Json<ClaimBody>) -> Result<HttpResponse, ApiError> {
    let job = store.claim_async(&body.token, body.number).await?;
    Ok(HttpResponse::Ok().json(job))
}

/// Completes a lease and, with `claim_next`, claims the next job in the same transaction.
#[utoipa::path(post, path = "/v1/lease/complete", tag = "lease", request_body = LeaseCompleteBody,
    responses(
        (status = 200, description = "Where the job went, and the next job.", body = CompleteAnswer),
        (status = 403, description = "The lease named is not the worker's current one (expired, ended, or never held).", body = String, content_type = "text/plain"),
        (status = 404, description = "Unknown worker: register again.", body = String, content_type = "text/plain"),
    ))]
async fn complete(store: web::Data<JobStore>, body: web::Json<LeaseCompleteBody>) -> Result<HttpResponse, ApiError> {
    let held = Some(HeldLease { number: body.number, lease: body.lease });
    let answer = if body.claim_next {
        let (completion, next) = store.complete_and_claim_async(&body.token, held, &body.data).await?;
        CompleteAnswer { completion, next }
    } else {
        CompleteAnswer { completion: store.complete_async(&body.token, held, &body.data).await?, next: None }
    };
    Ok(HttpResponse::Ok().json(answer))
}

/// Gives the job back, not to be handed out again before the delay.
#[utoipa::path(post, path = "/v1/lease/retry", tag = "lease", request_body = RetryBody,
    responses(
        (status = 200, description = "`200 OK`.", body = String, content_type = "text/plain"),
        (status = 403, description = "The lease named is not the worker's current one (expired, ended, or never held).", body = String, content_type = "text/plain"),
        (status = 404, description = "Unknown worker: register again.", body = String, content_type = "text/plain"),
    ))]
async fn retry(store: web::Data<JobStore>, body: web::Json<RetryBody>) -> Result<HttpResponse, ApiError> {
    let delay = i64::try_from(body.retry_after_ms.min(MAX_RETRY_AFTER_MS)).unwrap_or(i64::MAX);
    let held = named_lease(body.number, body.lease);
    blocking(&store, move |s| s.retry_later(&body.token, held, s.now_ms().saturating_add(delay), &body.reason)).await?;
    Ok(ok())
}

/// Marks the job failed with the error.
#[utoipa::path(post, path = "/v1/lease/fail", tag = "lease", request_body = FailBody,
    responses(
        (status = 200, description = "`200 OK`.", body = String, content_type = "text/plain"),
        (status = 403, description = "The lease named is not the worker's current one (expired, ended, or never held).", body = String, content_type = "text/plain"),
        (status = 404, description = "Unknown worker: register again.", body = String, content_type = "text/plain"),
    ))]
async fn fail(store: web::Data<JobStore>, body: web::Json<FailBody>) -> Result<HttpResponse, ApiError> {
    let held = named_lease(body.number, body.lease);
    blocking(&store, move |s| s.fail(&body.token, held, &body.error)).await?;
    Ok(ok())
}

/// Gives the job back at once, the attempt uncounted.
#[utoipa::path(post, path = "/v1/lease/release", tag = "lease", request_body = ReleaseBody,
    responses(
        (status = 200, description = "`200 OK`.", body = String, content_type = "text/plain"),
        (status = 403, description = "The lease named is not the worker's current one (expired, ended, or never held).", body = String, content_type = "text/plain"),
        (status = 404, description = "Unknown worker: register again.", body = String, content_type = "text/plain"),
    ))]
async fn release(store: web::Data<JobStore>, body: web::Json<ReleaseBody>) -> Result<HttpResponse, ApiError> {
    let held = named_lease(body.number, body.lease);
    blocking(&store, move |s| s.release(&body.token, held)).await?;
    Ok(ok())
}
