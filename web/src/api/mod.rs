//! The HTTP endpoints.

pub mod admin;
pub mod dashboard;
pub mod distcompute;
pub mod lease;
pub mod native;
pub mod openapi;

use actix_web::web;
use cascade_tracker::{JobStore, StageId, TrackerError};

use crate::error::ApiError;

/// Runs a blocking store call on the blocking thread pool, leaving its result to the caller.
pub(crate) async fn run_blocking<T, F>(
    store: &web::Data<JobStore>,
    call: F,
) -> Result<Result<T, TrackerError>, ApiError>
where
    T: Send + 'static,
    F: FnOnce(&JobStore) -> Result<T, TrackerError> + Send + 'static,
{
    let store = web::Data::clone(store);
    web::block(move || call(&store)).await.map_err(|e| ApiError::Unavailable(e.to_string()))
}

/// Runs a blocking store call on the blocking thread pool and maps its errors generically.
pub(crate) async fn blocking<T, F>(store: &web::Data<JobStore>, call: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce(&JobStore) -> Result<T, TrackerError> + Send + 'static,
{
    run_blocking(store, call).await?.map_err(ApiError::from)
}

/// Parses a stage letter from the wire (lowercase `a`..`e` only).
pub(crate) fn parse_stage(raw: &str) -> Result<StageId, ApiError> {
    raw.parse().map_err(|_| ApiError::invalid_stage(raw))
}
