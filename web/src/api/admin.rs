//! Operator actions under `/v1/admin/*`, behind a bearer token (`admin-token` setting or
//! `CASCADE__ADMIN_TOKEN`). Without a token set, the admin API is disabled and answers 404.
//!
//! | path | body | effect |
//! |---|---|---|
//! | `POST /v1/admin/jobs` | `{"jobs": ["…", …]}` | adds jobs to the running project after its last job, skipping inputs already there: `{added, skipped}` |
//!
//! Requests carry `Authorization: Bearer TOKEN`; a missing or wrong token is a 401 (compared in
//! constant time). Each action is logged with the caller's address and what it did.

use actix_web::http::header::{self, ContentType};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use cascade_tracker::JobStore;
use serde::{Deserialize, Serialize};

use super::blocking;
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
#[derive(Debug, Deserialize)]
pub struct AddJobsBody {
    /// The jobs' stage-`a` inputs.
    pub jobs: Vec<String>,
}

/// Answer of `POST /v1/admin/jobs`.
#[derive(Debug, Serialize)]
pub struct AddedJobs {
    /// New jobs.
    pub added: usize,
    /// Inputs skipped: already a job's input, or repeated in the list.
    pub skipped: usize,
}

/// Registers the `/v1/admin/*` routes.
pub fn routes(config: &mut web::ServiceConfig) {
    crate::server::endpoint(config, "/v1/admin/jobs", web::post().to(add_jobs));
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

/// Who made the request, for the log.
fn caller(request: &HttpRequest) -> String {
    request.peer_addr().map_or_else(|| "unknown".to_owned(), |addr| addr.ip().to_string())
}

/// `POST /v1/admin/jobs {jobs}`.
async fn add_jobs(
    request: HttpRequest,
    token: web::Data<AdminToken>,
    store: web::Data<JobStore>,
    body: web::Json<AddJobsBody>,
) -> Result<HttpResponse, ApiError> {
    authorize(&request, &token)?;
    let jobs = body.into_inner().jobs;
    if jobs.is_empty() {
        return Err(ApiError::refused(StatusCode::BAD_REQUEST, "The job list is empty; nothing was changed."));
    }
    let appended = blocking(&store, move |s| s.append_jobs(&jobs)).await?;
    tracing::info!(by = %caller(&request), added = appended.added, skipped = appended.skipped, "Admin: jobs added.");
    Ok(HttpResponse::Ok()
        .content_type(ContentType::json())
        .json(AddedJobs { added: appended.added, skipped: appended.skipped }))
}
