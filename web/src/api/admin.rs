//! Operator actions under `/v1/admin/*`, behind a bearer token (`admin-token` setting or
//! `CASCADE__ADMIN_TOKEN`). Without a token set, the admin API is disabled and answers 404.
//!
//! | path | body | effect |
//! |---|---|---|
//! | `POST /v1/admin/jobs` | `{"jobs": ["…", …]}` | adds jobs to the running project after its last job, skipping inputs already there: `{added, skipped}` |
//! | `POST /v1/admin/jobs/requeue` | `{"stage": "b", "numbers": [4, 9]}`, both optional | re-opens failed jobs (all, of a stage, or those numbers) with their attempts cleared: `{jobs}` |
//! | `POST /v1/admin/jobs/cancel` | `{"stage": "b", "numbers": [4, 9]}`, at least one | fails the unfinished jobs selected as `cancelled by …`; their holders' leases are void: `{jobs}` |
//! | `POST /v1/admin/stages/{stage}/pause` | none | hands out no more leases at the stage (workers see `jobCount` 0): `{stage, paused, changed}` |
//! | `POST /v1/admin/stages/{stage}/resume` | none | undoes a pause: `{stage, paused, changed}` |
//! | `GET /v1/admin/actions?limit=N` | none | the action log, newest first |
//!
//! Requests carry `Authorization: Bearer TOKEN`; a missing or wrong token is a 401 (compared in
//! constant time). Each action is logged (the `admin_actions` table, shown on the dashboard, and
//! the process log) with the caller's address and what it did.

use actix_web::http::header::{self, ContentType};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use cascade_tracker::{AdminAction, JobSelection, JobStore, StageId};
use utoipa::ToSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{blocking, parse_stage};
use crate::error::ApiError;

/// The token operators present; `None` disables the admin API.
#[derive(Clone, Default)]
pub struct AdminToken(pub Option<String>);

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "AdminToken(set)" } else { "AdminToken(none)" })
    }
}

/// Body of `POST /v1/admin/jobs`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AddJobsBody {
    /// The jobs' stage-`a` inputs.
    #[schema(min_items = 1)]
    pub jobs: Vec<String>,
}

/// Answer of `POST /v1/admin/jobs`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AddedJobs {
    /// New jobs.
    pub added: usize,
    /// Inputs skipped: already a job's input, or repeated in the list.
    pub skipped: usize,
}

/// Answer of the requeue and cancel actions.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ChangedJobs {
    /// How many jobs the action changed.
    pub jobs: usize,
}

/// Answer of the pause and resume actions.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct StagePause {
    /// The stage.
    pub stage: String,
    /// Whether it is paused now.
    pub paused: bool,
    /// Whether this request changed that (`false`: it already was).
    pub changed: bool,
}

/// Query of `GET /v1/admin/actions`.
#[derive(Debug, Deserialize)]
pub struct ActionsQuery {
    /// How many, newest first (default 100, at most 1,000).
    pub limit: Option<i64>,
}

/// Registers the `/v1/admin/*` routes.
pub fn routes(config: &mut web::ServiceConfig) {
    crate::server::post(config, "/v1/admin/jobs", web::to(add_jobs));
    crate::server::post(config, "/v1/admin/jobs/requeue", web::to(requeue_jobs));
    crate::server::post(config, "/v1/admin/jobs/cancel", web::to(cancel_jobs));
    crate::server::post(config, "/v1/admin/stages/{stage}/pause", web::to(pause_stage));
    crate::server::post(config, "/v1/admin/stages/{stage}/resume", web::to(resume_stage));
    crate::server::get(config, "/v1/admin/actions", web::to(actions));
}

/// Checks the request's bearer token against the configured one.
fn authorize(request: &HttpRequest, token: &AdminToken) -> Result<(), ApiError> {
    let Some(expected) = &token.0 else {
        return Err(ApiError::refused(StatusCode::NOT_FOUND, "The admin API is disabled: set admin-token to enable it."));
    };
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    match presented {
        Some(presented) if constant_time_eq::constant_time_eq(presented.as_bytes(), expected.as_bytes()) => Ok(()),
        _ => Err(ApiError::Unauthorized),
    }
}

/// A JSON object, as every admin body is.
type JsonObject = serde_json::Map<String, serde_json::Value>;

/// Reads an admin body as `T` from a JSON object. Other JSON is refused before this (a list
/// would otherwise read as a selection with no filter, that is every job).
fn from_object<T: DeserializeOwned>(body: JsonObject) -> Result<T, ApiError> {
    serde_json::from_value(serde_json::Value::Object(body))
        .map_err(|error| ApiError::Unprocessable { location: "body", message: error.to_string() })
}

/// Who made the request, for the log: `admin@ADDRESS`.
fn caller(request: &HttpRequest) -> String {
    let address = request.peer_addr().map_or_else(|| "unknown".to_owned(), |addr| addr.ip().to_string());
    format!("admin@{address}")
}

/// `POST /v1/admin/jobs {jobs}`.
#[utoipa::path(post, path = "/v1/admin/jobs", tag = "admin", request_body = AddJobsBody,
    responses(
        (status = 200, description = "How many jobs were added and skipped.", body = AddedJobs),
        (status = 400, description = "The job list is empty.", body = String, content_type = "text/plain"),
    ))]
async fn add_jobs(
    request: HttpRequest,
    token: web::Data<AdminToken>,
    store: web::Data<JobStore>,
    body: web::Json<JsonObject>,
) -> Result<HttpResponse, ApiError> {
    authorize(&request, &token)?;
    let AddJobsBody { jobs } = from_object(body.into_inner())?;
    if jobs.is_empty() {
        return Err(ApiError::refused(StatusCode::BAD_REQUEST, "The job list is empty; nothing was changed."));
    }
    let actor = caller(&request);
    let appended = blocking(&store, move |s| s.add_jobs(&jobs, &actor)).await?;
    Ok(HttpResponse::Ok()
        .content_type(ContentType::json())
        .json(AddedJobs { added: appended.added, skipped: appended.skipped }))
}

/// `POST /v1/admin/jobs/requeue {stage?, numbers?}`.
#[utoipa::path(post, path = "/v1/admin/jobs/requeue", tag = "admin", request_body = JobSelection,
    responses(
        (status = 200, description = "How many jobs were re-opened.", body = ChangedJobs),
        (status = 400, description = "Invalid selection.", body = String, content_type = "text/plain"),
    ))]
async fn requeue_jobs(
    request: HttpRequest,
    token: web::Data<AdminToken>,
    store: web::Data<JobStore>,
    body: web::Json<JsonObject>,
) -> Result<HttpResponse, ApiError> {
    authorize(&request, &token)?;
    let (selection, actor) = (from_object::<JobSelection>(body.into_inner())?, caller(&request));
    let jobs = blocking(&store, move |s| s.requeue_failed(&selection, &actor)).await?;
    Ok(HttpResponse::Ok().json(ChangedJobs { jobs }))
}

/// `POST /v1/admin/jobs/cancel {stage?, numbers?}`.
#[utoipa::path(post, path = "/v1/admin/jobs/cancel", tag = "admin", request_body = JobSelection,
    responses(
        (status = 200, description = "How many jobs were cancelled.", body = ChangedJobs),
        (status = 400, description = "Invalid selection.", body = String, content_type = "text/plain"),
        (status = 403, description = "The selection names neither a stage nor jobs: cancelling every job is refused.", body = String, content_type = "text/plain"),
    ))]
async fn cancel_jobs(
    request: HttpRequest,
    token: web::Data<AdminToken>,
    store: web::Data<JobStore>,
    body: web::Json<JsonObject>,
) -> Result<HttpResponse, ApiError> {
    authorize(&request, &token)?;
    let (selection, actor) = (from_object::<JobSelection>(body.into_inner())?, caller(&request));
    if selection.is_everything() {
        return Err(ApiError::refused(
            StatusCode::FORBIDDEN,
            "Cancelling every job is refused: name a stage or job numbers; nothing was changed.",
        ));
    }
    let jobs = blocking(&store, move |s| s.cancel_jobs(&selection, &actor)).await?;
    Ok(HttpResponse::Ok().json(ChangedJobs { jobs }))
}

/// `POST /v1/admin/stages/{stage}/pause`.
#[utoipa::path(post, path = "/v1/admin/stages/{stage}/pause", tag = "admin",
    params(("stage" = StageId, Path, description = "The stage.")),
    responses(
        (status = 200, description = "The stage is paused.", body = StagePause),
        (status = 400, description = "Unknown stage.", body = String, content_type = "text/plain"),
    ))]
async fn pause_stage(
    request: HttpRequest,
    token: web::Data<AdminToken>,
    store: web::Data<JobStore>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    set_paused(&request, &token, store, &path, true).await
}

/// `POST /v1/admin/stages/{stage}/resume`.
#[utoipa::path(post, path = "/v1/admin/stages/{stage}/resume", tag = "admin",
    params(("stage" = StageId, Path, description = "The stage.")),
    responses(
        (status = 200, description = "The stage is not paused.", body = StagePause),
        (status = 400, description = "Unknown stage.", body = String, content_type = "text/plain"),
    ))]
async fn resume_stage(
    request: HttpRequest,
    token: web::Data<AdminToken>,
    store: web::Data<JobStore>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    set_paused(&request, &token, store, &path, false).await
}

/// Pauses (`paused`) or resumes the stage named `letter`.
async fn set_paused(
    request: &HttpRequest,
    token: &AdminToken,
    store: web::Data<JobStore>,
    letter: &str,
    paused: bool,
) -> Result<HttpResponse, ApiError> {
    authorize(request, token)?;
    let stage = parse_stage(letter)?;
    let actor = caller(request);
    let changed = blocking(&store, move |s| {
        if paused {
            s.pause_stage(stage, &actor)
        } else {
            s.resume_stage(stage, &actor)
        }
    })
    .await?;
    Ok(HttpResponse::Ok().json(StagePause { stage: stage.letter().to_owned(), paused, changed }))
}

/// `GET /v1/admin/actions?limit`.
#[utoipa::path(get, path = "/v1/admin/actions", tag = "admin",
    params(("limit" = Option<i64>, Query, description = "How many, newest first (default 100, at most 1,000).")),
    responses(
        (status = 200, description = "The action log, newest first.", body = Vec<AdminAction>),
    ))]
async fn actions(
    request: HttpRequest,
    token: web::Data<AdminToken>,
    store: web::Data<JobStore>,
    query: web::Query<ActionsQuery>,
) -> Result<HttpResponse, ApiError> {
    authorize(&request, &token)?;
    let limit = query.limit.unwrap_or(100).clamp(1, 1000);
    let actions = blocking(&store, move |s| s.admin_actions(limit)).await?;
    Ok(HttpResponse::Ok().json(actions))
}
