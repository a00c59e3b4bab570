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
    named_lease, ClaimBody, CompleteAnswer, FailBody, HeldLease, LeaseCompleteBody, ReleaseBody, RetryBody,
};
use cascade_tracker::JobStore;

use super::blocking;
use crate::error::ApiError;

/// Longest retry delay a worker may ask for (one day).
const MAX_RETRY_AFTER_MS: u64 = 24 * 3600 * 1000;

/// Registers the `/v1/lease/*` routes.
pub fn routes(config: &mut web::ServiceConfig) {
    crate::server::endpoint(config, "/v1/lease/claim", web::post().to(claim));
    crate::server::endpoint(config, "/v1/lease/complete", web::post().to(complete));
    crate::server::endpoint(config, "/v1/lease/retry", web::post().to(retry));
    crate::server::endpoint(config, "/v1/lease/fail", web::post().to(fail));
    crate::server::endpoint(config, "/v1/lease/release", web::post().to(release));
}

fn ok() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain; charset=utf-8").body("200 OK")
}

async fn claim(store: web::Data<JobStore>, body: web::Json<ClaimBody>) -> Result<HttpResponse, ApiError> {
    let job = store.claim_async(&body.token, body.number).await?;
    Ok(HttpResponse::Ok().json(job))
}

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

async fn retry(store: web::Data<JobStore>, body: web::Json<RetryBody>) -> Result<HttpResponse, ApiError> {
    let delay = i64::try_from(body.retry_after_ms.min(MAX_RETRY_AFTER_MS)).unwrap_or(i64::MAX);
    let held = named_lease(body.number, body.lease);
    blocking(&store, move |s| s.retry_later(&body.token, held, s.now_ms().saturating_add(delay), &body.reason)).await?;
    Ok(ok())
}

async fn fail(store: web::Data<JobStore>, body: web::Json<FailBody>) -> Result<HttpResponse, ApiError> {
    let held = named_lease(body.number, body.lease);
    blocking(&store, move |s| s.fail(&body.token, held, &body.error)).await?;
    Ok(ok())
}

async fn release(store: web::Data<JobStore>, body: web::Json<ReleaseBody>) -> Result<HttpResponse, ApiError> {
    let held = named_lease(body.number, body.lease);
    blocking(&store, move |s| s.release(&body.token, held)).await?;
    Ok(ok())
}
