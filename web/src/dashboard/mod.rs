//! The `/web` dashboard: HTML pages whose script reads `/v1/*` and refreshes them in place.
//!
//! | path | page |
//! |---|---|
//! | `GET /web` | overview: completion, stages, jobs-per-minute chart, workers, failed and flagged jobs, leaderboard |
//! | `GET /worker/{stage name}/{display name}` | one worker (the path the Python client prints; the stage's letter works too) |
//! | `GET /web/job/{number}` | one job: its data at each stage, lease, history |
//! | `GET /web/assets/{app.js,app.css}` | the script and style sheet, cached for good (their URLs carry a content hash) |
//! | `GET /` | redirects to `/web` |
//!
//! Every asset is compiled into the binary (no CDN; works offline). The pages themselves carry
//! no data, so their size is the same with ten workers or ten thousand; the script fetches one
//! bounded page of each listing. A page never answers 500: when the database is unavailable
//! the page is served anyway and its script says so and keeps retrying.

mod assets;
mod page;

use actix_web::http::header;
use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use cascade_tracker::{JobStore, StageId, TrackerError};

use self::page::{Page, PageKind};
use crate::api::run_blocking;

/// Registers the dashboard's routes.
pub(crate) fn routes(config: &mut web::ServiceConfig) {
    use crate::server::get;
    get(config, "/", web::to(|| async { redirect("/web") }));
    get(config, "/web", web::to(overview));
    get(config, "/web/", web::to(overview));
    get(config, "/worker/{stage}/{name}", web::to(worker));
    get(config, "/web/job/{number}", web::to(job));
    get(config, "/web/assets/{file}", web::to(assets::serve));
}

fn redirect(to: &str) -> HttpResponse {
    HttpResponse::Found().insert_header((header::LOCATION, to)).finish()
}

/// The dashboard's overview page.
#[utoipa::path(get, path = "/web", tag = "dashboard", operation_id = "overview_page", responses((status = 200, description = "The page; its script reads `/v1/dashboard`.", body = String, content_type = "text/html")))]
async fn overview(store: web::Data<JobStore>) -> HttpResponse {
    Page::new(store.config(), PageKind::Overview).render(StatusCode::OK)
}

/// The stage a worker-page URL names: the stage's display name in lowercase (as the Python
/// client prints it) or its letter.
fn stage_from_url(store: &JobStore, raw: &str) -> Option<StageId> {
    let config = store.config();
    config
        .enabled_stages()
        .find(|&s| config.stage_name(s).is_some_and(|name| name.to_lowercase() == raw))
        .or_else(|| raw.parse().ok().filter(|&s| config.is_enabled(s)))
}

/// One worker's page (the address the Python client prints).
#[utoipa::path(get, path = "/worker/{stage}/{name}", tag = "dashboard", operation_id = "worker_page",
    params(("stage" = String, Path, description = "The stage's display name in lowercase, or its letter."),
        ("name" = String, Path, description = "The worker's display name.")),
    responses(
        (status = 200, description = "The page.", body = String, content_type = "text/html"),
        (status = 404, description = "No such stage or worker.", body = String, content_type = "text/html"),
    ))]
async fn worker(store: web::Data<JobStore>, path: web::Path<(String, String)>) -> HttpResponse {
    let (raw_stage, name) = path.into_inner();
    let config = store.config();
    let Some(stage) = stage_from_url(&store, &raw_stage) else {
        return Page::new(config, PageKind::Missing("No such stage.".to_owned())).render(StatusCode::NOT_FOUND);
    };
    let lookup = name.clone();
    let found = run_blocking(&store, move |s| s.worker_by_name(stage, &lookup)).await;
    match found {
        Ok(Ok(None)) => Page::new(config, PageKind::Missing("Worker not found.".to_owned())).render(StatusCode::NOT_FOUND),
        // Found, or the database cannot say now: the page's script shows what it finds.
        _ => Page::new(config, PageKind::Worker { stage, name }).render(StatusCode::OK),
    }
}

/// One job's page.
#[utoipa::path(get, path = "/web/job/{number}", tag = "dashboard", operation_id = "job_page",
    params(("number" = i64, Path, description = "The job number.")),
    responses(
        (status = 200, description = "The page.", body = String, content_type = "text/html"),
        (status = 400, description = "Not a job number.", body = String, content_type = "text/html"),
        (status = 404, description = "No such job.", body = String, content_type = "text/html"),
    ))]
async fn job(store: web::Data<JobStore>, path: web::Path<String>) -> HttpResponse {
    let raw = path.into_inner();
    let config = store.config();
    let Ok(number) = raw.parse::<i64>() else {
        return Page::new(config, PageKind::Missing(format!("Invalid job number: '{raw}'."))).render(StatusCode::BAD_REQUEST);
    };
    match run_blocking(&store, move |s| s.job(number)).await {
        Ok(Err(TrackerError::NoSuchJob(_))) => {
            Page::new(config, PageKind::Missing(format!("Job {number} does not exist."))).render(StatusCode::NOT_FOUND)
        }
        _ => Page::new(config, PageKind::Job(number)).render(StatusCode::OK),
    }
}
