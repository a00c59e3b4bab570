//! How failures become HTTP responses.
//!
//! The distcompute client maps statuses to exceptions (400 → `ValueError`, 403 →
//! `ZeroJobError`, 404 → `WorkerTimedOutError`, anything else → `ServerError`) and shows the body
//! text, so every error here is a plain-text body with a fixed status. Request-validation
//! failures are 422 with a FastAPI-style JSON body, as the original tracker answered.

use actix_web::http::header::ContentType;
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use cascade_tracker::{StageId, TrackerError};
use serde::Serialize;
use utoipa::ToSchema;

/// The standard answer for an unknown token.
pub const UNKNOWN_WORKER: &str = "The server could not find this worker. Did the worker time out?";
/// The answer when a stage has nothing to hand out.
pub const NO_JOBS: &str = "Either there are no new jobs available, or there was an error whilst finding a job. Keep retrying, as jobs are dynamically created.";
/// The answer to `completeJob` from a worker without a job.
pub const NO_OPEN_JOB: &str = "You do not have an open job.";
/// The answer to `flagInvalidData` from a worker without a job.
pub const NOT_WORKING: &str = "This worker is not currently working on a job.";
/// The answer when the worker's lease expired and the job went back to the pool.
pub const LEASE_LOST: &str = "Your lease on this job has expired and the job was re-opened for other workers.";

/// The body of a 422 answer, shaped as FastAPI's (the original tracker's) validation errors.
#[derive(Debug, Serialize, ToSchema)]
pub struct ValidationError {
    /// What is wrong; one entry.
    pub detail: Vec<ValidationDetail>,
}

/// One validation problem.
#[derive(Debug, Serialize, ToSchema)]
pub struct ValidationDetail {
    /// Always `value_error`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Where: `["body"]` or `["query"]`.
    pub loc: Vec<&'static str>,
    /// What is wrong.
    pub msg: String,
    /// Always `null`.
    #[schema(value_type = Option<String>)]
    pub input: Option<()>,
}

/// An HTTP error: a status and the text or JSON the client sees.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A protocol-defined refusal with its exact text.
    #[error("{message}")]
    Refused {
        /// The status the client maps to an exception.
        status: StatusCode,
        /// The exact body text.
        message: String,
    },
    /// The request did not validate (missing field, wrong type, `null`, broken JSON).
    #[error("invalid request: {message}")]
    Unprocessable {
        /// Where the problem is: `body` or `query`.
        location: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The body is larger than the configured limit.
    #[error("request body larger than {limit} bytes")]
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The admin API's bearer token is missing or wrong.
    #[error("unauthorized")]
    Unauthorized,
    /// The client's address is over one of its abuse limits ([`crate::limits`]).
    #[error("too many requests; retry after {retry_after} s")]
    TooManyRequests {
        /// Seconds until it may try again.
        retry_after: u64,
    },
    /// The database failed; the request may be retried.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// The database file cannot be written (disk full, file-size limit, failing disk): writes
    /// are refused until there is room; reads still work.
    #[error("database cannot be written: {0}")]
    CannotWrite(String),
}

/// The answer to a request that writes while the database file cannot be written.
pub const CANNOT_WRITE: &str = "The tracker cannot write its database: its disk is full, a file-size limit was reached, \
                                or the disk failed. Reads still work; keep retrying writes.";

/// The `Retry-After` of a 503 while the database is unavailable, in seconds.
pub const UNAVAILABLE_RETRY_AFTER: u64 = 2;

impl ApiError {
    /// A refusal with `status` and `message`.
    pub fn refused(status: StatusCode, message: impl Into<String>) -> Self {
        Self::Refused { status, message: message.into() }
    }

    /// The 400 for a stage letter outside `a`..`e`.
    pub fn invalid_stage(stage: &str) -> Self {
        Self::refused(
            StatusCode::BAD_REQUEST,
            format!("Invalid worker stage: '{stage}'. Choose from 'a'/'b'/'c'/'d'/'e'."),
        )
    }

    /// The 400 for a stage that exists but is not enabled.
    pub fn disabled_stage(stage: StageId) -> Self {
        Self::refused(StatusCode::BAD_REQUEST, format!("The worker stage '{stage}' is disabled."))
    }
}

impl From<TrackerError> for ApiError {
    /// The generic mapping; endpoints whose protocol text differs map those cases themselves.
    fn from(error: TrackerError) -> Self {
        match error {
            TrackerError::UnknownWorker => Self::refused(StatusCode::NOT_FOUND, UNKNOWN_WORKER),
            TrackerError::InvalidStage(stage) => Self::invalid_stage(&stage),
            TrackerError::DisabledStage(stage) => Self::disabled_stage(stage),
            TrackerError::NoJobAvailable => Self::refused(StatusCode::FORBIDDEN, NO_JOBS),
            TrackerError::NoJobHeld => Self::refused(StatusCode::FORBIDDEN, NO_OPEN_JOB),
            TrackerError::LeaseLost { .. } => Self::refused(StatusCode::FORBIDDEN, LEASE_LOST),
            TrackerError::NoSuchJob(n) => Self::refused(StatusCode::NOT_FOUND, format!("Job {n} does not exist.")),
            other @ (TrackerError::NotEmpty { .. } | TrackerError::InvalidJobs(_)) => {
                Self::refused(StatusCode::BAD_REQUEST, other.to_string())
            }
            other @ (TrackerError::Db(_)
            | TrackerError::Pool(_)
            | TrackerError::Connect(_)
            | TrackerError::Migration(_)
            | TrackerError::Commit(_)) => {
                tracing::error!(error = %other, "Database call failed.");
                Self::Unavailable(other.to_string())
            }
            // The store has logged it (once per failed write batch).
            other @ TrackerError::Storage(_) => Self::CannotWrite(other.to_string()),
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::Refused { status, .. } => *status,
            Self::Unprocessable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable(_) | Self::CannotWrite(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        match self {
            Self::Refused { message, .. } => response.content_type(ContentType::plaintext()).body(message.clone()),
            Self::Unprocessable { location, message } => response.json(ValidationError {
                detail: vec![ValidationDetail {
                    kind: "value_error",
                    loc: vec![location],
                    msg: message.clone(),
                    input: None,
                }],
            }),
            Self::TooLarge { limit } => response
                .content_type(ContentType::plaintext())
                .body(format!("Request body larger than {limit} bytes.")),
            Self::Unauthorized => response
                .insert_header((actix_web::http::header::WWW_AUTHENTICATE, "Bearer"))
                .content_type(ContentType::plaintext())
                .body("A valid admin token is required: Authorization: Bearer TOKEN."),
            Self::TooManyRequests { retry_after } => response
                .insert_header((actix_web::http::header::RETRY_AFTER, retry_after.to_string()))
                .content_type(ContentType::plaintext())
                .body(format!("Too many requests from this address. Retry after {retry_after} seconds.")),
            Self::Unavailable(_) => response
                .insert_header((actix_web::http::header::RETRY_AFTER, UNAVAILABLE_RETRY_AFTER.to_string()))
                .content_type(ContentType::plaintext())
                .body("The tracker's database is unavailable. Keep retrying."),
            Self::CannotWrite(_) => response
                .insert_header((actix_web::http::header::RETRY_AFTER, UNAVAILABLE_RETRY_AFTER.to_string()))
                .content_type(ContentType::plaintext())
                .body(CANNOT_WRITE),
        }
    }
}
