//! The worker API under `/api/*`, as the `distcompute-client` 1.0.0 library speaks it.
//!
//! GET endpoints take query parameters, POST endpoints a JSON body; successes are JSON or the
//! plain texts `True`/`False`/`200 OK`/a decimal count. Differences from the original tracker
//! are deliberate (PROTOCOL.md §15): the output of a stage really becomes the next stage's
//! input, the flag threshold sends a job back with its input intact, every authenticated call
//! is a heartbeat, and `updateProgress` with an unknown token answers 404 so a swept worker
//! learns it.

use actix_web::http::header::ContentType;
use actix_web::http::StatusCode;
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse};
use cascade_tracker::protocol::{
    named_lease, CompleteBody, FlagBody, NewJobAnswer, NewWorkerQuery, ProgressBody, Registration, StageQuery,
    TokenBody,
};
use cascade_tracker::{JobStore, TrackerError, MAX_NICKNAME_CHARS, MAX_PROGRESS_CHARS};

use super::{blocking, parse_stage, run_blocking};
use crate::error::{ApiError, NOT_WORKING};
use crate::limits::{retry_after_seconds, ClientLimiter};
use crate::server::PresentedWorkerKey;

/// The key workers must present to register in a private project; `None` for an open one.
#[derive(Clone, Default)]
pub struct WorkerKey(pub Option<String>);

impl std::fmt::Debug for WorkerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "WorkerKey(set)" } else { "WorkerKey(none)" })
    }
}

/// The header a client may present the worker key in instead of the URL path.
pub const WORKER_KEY_HEADER: &str = "x-worker-key";

/// Refuses a registration without the project's worker key, when it has one.
fn check_worker_key(request: &HttpRequest, key: &WorkerKey) -> Result<(), ApiError> {
    let Some(expected) = &key.0 else { return Ok(()) };
    let in_path = request.extensions().get::<PresentedWorkerKey>().map(|key| key.0.clone());
    let presented = in_path.or_else(|| {
        request.headers().get(WORKER_KEY_HEADER).and_then(|value| value.to_str().ok()).map(str::to_owned)
    });
    match presented {
        Some(presented) if constant_time_eq::constant_time_eq(presented.as_bytes(), expected.as_bytes()) => Ok(()),
        _ => Err(ApiError::refused(
            StatusCode::UNAUTHORIZED,
            "This project is private: register with the tracker URL that includes its worker key \
             (http://HOST:PORT/key/KEY).",
        )),
    }
}

fn text(body: impl Into<String>) -> HttpResponse {
    HttpResponse::Ok().content_type(ContentType::plaintext()).body(body.into())
}

fn ok_text() -> HttpResponse {
    text("200 OK")
}

/// Registers all `/api/*` routes.
pub fn routes(config: &mut web::ServiceConfig) {
    crate::server::get(config, "/api/new", web::to(new_worker));
    crate::server::post(config, "/api/validateWorker", web::to(validate_worker));
    crate::server::post(config, "/api/newJob", web::to(new_job));
    crate::server::get(config, "/api/jobCount", web::to(job_count));
    crate::server::post(config, "/api/updateProgress", web::to(update_progress));
    crate::server::post(config, "/api/completeJob", web::to(complete_job));
    crate::server::post(config, "/api/flagInvalidData", web::to(flag_invalid_data));
    crate::server::post(config, "/api/bye", web::to(bye));
}

/// Refuses `text` (the `what` of a request at `location`) when it is longer than `max`
/// characters.
fn check_length(text: &str, max: usize, what: &str, location: &'static str) -> Result<(), ApiError> {
    if text.chars().nth(max).is_some() {
        return Err(ApiError::Unprocessable { location, message: format!("{what} is longer than {max} characters") });
    }
    Ok(())
}

/// `GET /api/new?nickname&stage`: registers a worker (at most the configured number per
/// minute from one address; with the worker key in a private project).
#[utoipa::path(get, path = "/api/new", tag = "worker", params(NewWorkerQuery),
    responses(
        (status = 200, description = "Registered: the worker's token and names.", body = Registration),
        (status = 400, description = "Unknown or disabled stage.", body = String, content_type = "text/plain"),
        (status = 401, description = "A private project's worker key is missing or wrong.", body = String, content_type = "text/plain"),
    ))]
async fn new_worker(
    request: HttpRequest,
    key: web::Data<WorkerKey>,
    limiter: web::Data<ClientLimiter>,
    store: web::Data<JobStore>,
    query: web::Query<NewWorkerQuery>,
) -> Result<HttpResponse, ApiError> {
    check_worker_key(&request, &key)?;
    let NewWorkerQuery { nickname, stage } = query.into_inner();
    check_length(&nickname, MAX_NICKNAME_CHARS, "nickname", "query")?;
    let stage = parse_stage(&stage)?;
    if let Some(address) = request.peer_addr() {
        limiter
            .register(address.ip())
            .map_err(|wait| ApiError::TooManyRequests { retry_after: retry_after_seconds(wait) })?;
    }
    let registration = blocking(&store, move |s| s.register_worker(&nickname, stage, None)).await?;
    Ok(HttpResponse::Ok().json(registration))
}

/// `POST /api/validateWorker {token}`: `True` or `False`.
#[utoipa::path(post, path = "/api/validateWorker", tag = "worker", request_body = TokenBody,
    responses((status = 200, description = "`True` when the token belongs to a current worker, else `False`.", body = String, content_type = "text/plain")))]
async fn validate_worker(store: web::Data<JobStore>, body: web::Json<TokenBody>) -> Result<HttpResponse, ApiError> {
    let alive = blocking(&store, move |s| s.validate_worker(&body.token)).await?;
    Ok(text(if alive { "True" } else { "False" }))
}

/// `POST /api/newJob {token}`: claims a job; `{"data", "number"}`.
#[utoipa::path(post, path = "/api/newJob", tag = "worker", request_body = TokenBody,
    responses(
        (status = 200, description = "A job leased to the worker (its previous job, if any, is given back).", body = NewJobAnswer),
        (status = 403, description = "No job is available at the worker's stage now.", body = String, content_type = "text/plain"),
        (status = 404, description = "Unknown worker (it left or was swept): register again.", body = String, content_type = "text/plain"),
    ))]
async fn new_job(store: web::Data<JobStore>, body: web::Json<TokenBody>) -> Result<HttpResponse, ApiError> {
    let job = store.claim_async(&body.token, None).await?;
    Ok(HttpResponse::Ok().json(NewJobAnswer { data: job.data, number: job.number }))
}

/// `GET /api/jobCount?stage`: jobs waiting at a stage, as a decimal text.
#[utoipa::path(get, path = "/api/jobCount", tag = "worker", params(StageQuery),
    responses(
        (status = 200, description = "Jobs waiting at the stage, as a decimal number (0 while it is paused).", body = String, content_type = "text/plain"),
        (status = 400, description = "Unknown or disabled stage.", body = String, content_type = "text/plain"),
    ))]
async fn job_count(store: web::Data<JobStore>, query: web::Query<StageQuery>) -> Result<HttpResponse, ApiError> {
    let stage = parse_stage(&query.stage)?;
    let count = blocking(&store, move |s| s.job_count(stage)).await?;
    Ok(text(count.to_string()))
}

/// `POST /api/updateProgress {token, progress}`.
#[utoipa::path(post, path = "/api/updateProgress", tag = "worker", request_body = ProgressBody,
    responses(
        (status = 200, description = "`200 OK`; also a heartbeat.", body = String, content_type = "text/plain"),
        (status = 404, description = "Unknown worker: register again.", body = String, content_type = "text/plain"),
    ))]
async fn update_progress(store: web::Data<JobStore>, body: web::Json<ProgressBody>) -> Result<HttpResponse, ApiError> {
    check_length(&body.progress, MAX_PROGRESS_CHARS, "progress", "body")?;
    store.update_progress_async(&body.token, &body.progress).await?;
    Ok(ok_text())
}

/// `POST /api/completeJob {token, data}`.
#[utoipa::path(post, path = "/api/completeJob", tag = "worker", request_body = CompleteBody,
    responses(
        (status = 200, description = "`200 OK`: the output became the next stage's input, or the job is done.", body = String, content_type = "text/plain"),
        (status = 403, description = "The worker holds no job, or its lease expired.", body = String, content_type = "text/plain"),
        (status = 404, description = "Unknown worker: register again.", body = String, content_type = "text/plain"),
    ))]
async fn complete_job(store: web::Data<JobStore>, body: web::Json<CompleteBody>) -> Result<HttpResponse, ApiError> {
    store.complete_async(&body.token, None, &body.data).await?;
    Ok(ok_text())
}

/// `POST /api/flagInvalidData {token, reason?, number?, lease?}`.
#[utoipa::path(post, path = "/api/flagInvalidData", tag = "worker", request_body = FlagBody,
    responses(
        (status = 200, description = "`200 OK`: the report is recorded and the job given back.", body = String, content_type = "text/plain"),
        (status = 403, description = "The worker holds no job (or not the one named).", body = String, content_type = "text/plain"),
        (status = 404, description = "Unknown worker: register again.", body = String, content_type = "text/plain"),
    ))]
async fn flag_invalid_data(store: web::Data<JobStore>, body: web::Json<FlagBody>) -> Result<HttpResponse, ApiError> {
    let held = named_lease(body.number, body.lease);
    match run_blocking(&store, move |s| s.flag_invalid(&body.token, held, body.reason.as_deref())).await? {
        Ok(_) => Ok(ok_text()),
        Err(TrackerError::NoJobHeld) => Err(ApiError::refused(StatusCode::FORBIDDEN, NOT_WORKING)),
        Err(other) => Err(other.into()),
    }
}

/// `POST /api/bye {token}`: leaves; the held job is re-opened.
#[utoipa::path(post, path = "/api/bye", tag = "worker", request_body = TokenBody,
    responses(
        (status = 200, description = "`200 OK`: the worker is gone; its job is re-opened.", body = String, content_type = "text/plain"),
        (status = 404, description = "Unknown worker.", body = String, content_type = "text/plain"),
    ))]
async fn bye(store: web::Data<JobStore>, body: web::Json<TokenBody>) -> Result<HttpResponse, ApiError> {
    blocking(&store, move |s| s.bye(&body.token)).await?;
    Ok(ok_text())
}
