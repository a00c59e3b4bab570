//! `GET /metrics`: the Prometheus text exposition.
//!
//! | family | type | from |
//! |---|---|---|
//! | `cascade_info{project}` | gauge | configuration (always 1) |
//! | `cascade_store_up` | gauge | 1 when the database answered this scrape, else 0 |
//! | `cascade_jobs{stage,state}` | gauge | jobs at each stage in each state |
//! | `cascade_workers{stage}` | gauge | registered workers per stage |
//! | `cascade_claims_total`, `cascade_completions_total`, `cascade_flags_total`, `cascade_sent_back_total`, `cascade_releases_total`, `cascade_lease_expiries_total` (`{stage}`) | counter | the job history in the database |
//! | `cascade_pool_workers`, `_busy_workers`, `_utilisation`, `_queued_jobs`, `_queue_capacity` (`{stage,kind}`) | gauge | the engine's local pools ([`crate::pools`]) |
//! | `cascade_pool_completed_total{stage,kind}` | counter | the engine's local pools |
//! | `cascade_http_request_duration_seconds{route,method,code}` | histogram | this process |
//!
//! The job and event figures come from the database, so they agree across several tracker
//! processes sharing one and survive restarts; the pool and HTTP figures are this process's.
//! A database failure never fails the scrape: the other families are still served and
//! `cascade_store_up` says 0.

mod exposition;
mod http;

use actix_web::{web, HttpResponse};
use cascade_tracker::{event, EventCount, JobState, JobStore, StageId, StateCount, TrackerError};

use self::exposition::{Exposition, Kind, CONTENT_TYPE};
pub use self::http::HttpMetrics;
pub(crate) use self::http::UNMATCHED;
use crate::pools::{PoolRegistry, PoolSnapshot};

/// Each history event kind's counter family and help text.
const EVENT_FAMILIES: [(&str, &str, &str); 6] = [
    (event::CLAIM, "cascade_claims_total", "Leases taken on jobs, by stage."),
    (event::COMPLETE, "cascade_completions_total", "Stage completions, by stage."),
    (event::FLAG, "cascade_flags_total", "Invalid-input reports, by stage."),
    (event::SENT_BACK, "cascade_sent_back_total", "Jobs sent back a stage after enough reports, by the stage they left."),
    (event::RELEASE, "cascade_releases_total", "Jobs given back by their worker, by stage."),
    (event::EXPIRE, "cascade_lease_expiries_total", "Leases that ran out, by stage."),
];

/// What the database says, read in one blocking call.
struct TrackerFigures {
    states: Vec<StateCount>,
    events: Vec<EventCount>,
    workers: Vec<(StageId, i64)>,
}

/// Registers `/metrics`.
pub(crate) fn routes(config: &mut web::ServiceConfig) {
    crate::server::get(config, "/metrics", web::to(metrics));
}

/// The tracker's, the pools' and the HTTP server's figures for Prometheus.
#[utoipa::path(get, path = "/metrics", tag = "metrics",
    responses((status = 200, description = "The Prometheus text format 0.0.4.", body = String, content_type = "text/plain; version=0.0.4")))]
async fn metrics(store: web::Data<JobStore>, pools: web::Data<PoolRegistry>, http: web::Data<HttpMetrics>) -> HttpResponse {
    let reader = store.clone();
    let figures = web::block(move || -> Result<TrackerFigures, TrackerError> {
        Ok(TrackerFigures { states: reader.state_counts()?, events: reader.event_counts()?, workers: reader.worker_counts()? })
    })
    .await;
    let mut out = Exposition::default();
    out.family("cascade_info", Kind::Gauge, "The tracker's project; always 1.");
    out.sample("cascade_info", &[("project", &store.config().project)], 1);
    let figures = match figures {
        Ok(Ok(figures)) => Some(figures),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "Metrics could not read the database.");
            None
        }
        Err(e) => {
            tracing::warn!(error = %e, "Metrics could not run their database query.");
            None
        }
    };
    out.family("cascade_store_up", Kind::Gauge, "1 when the database answered this scrape, else 0.");
    out.sample("cascade_store_up", &[], u8::from(figures.is_some()));
    if let Some(figures) = figures {
        write_tracker(&mut out, &store.config().enabled_stages().collect::<Vec<_>>(), &figures);
    }
    write_pools(&mut out, &pools.snapshots());
    http.write(&mut out);
    HttpResponse::Ok().content_type(CONTENT_TYPE).body(out.finish())
}

/// Stages to report: the enabled ones (with zeros where nothing happened yet) and any other
/// stage that has figures.
fn stages_with(enabled: &[StageId], present: impl Iterator<Item = StageId>) -> Vec<StageId> {
    let mut stages = enabled.to_vec();
    stages.extend(present);
    stages.sort();
    stages.dedup();
    stages
}

fn write_tracker(out: &mut Exposition, enabled: &[StageId], figures: &TrackerFigures) {
    out.family("cascade_jobs", Kind::Gauge, "Jobs at each stage in each state (a done job counts at the stage it finished).");
    for stage in stages_with(enabled, figures.states.iter().map(|c| c.stage)) {
        for state in JobState::ALL {
            let jobs = figures.states.iter().find(|c| c.stage == stage && c.state == state).map_or(0, |c| c.jobs);
            out.sample("cascade_jobs", &[("stage", stage.letter()), ("state", state.as_str())], jobs);
        }
    }
    out.family("cascade_workers", Kind::Gauge, "Registered workers, by stage.");
    for stage in stages_with(enabled, figures.workers.iter().map(|(s, _)| *s)) {
        let n = figures.workers.iter().find(|(s, _)| *s == stage).map_or(0, |(_, n)| *n);
        out.sample("cascade_workers", &[("stage", stage.letter())], n);
    }
    let stages = stages_with(enabled, figures.events.iter().map(|c| c.stage));
    for (kind, family, help) in EVENT_FAMILIES {
        out.family(family, Kind::Counter, help);
        for &stage in &stages {
            let n = figures.events.iter().find(|c| c.stage == stage && c.kind == kind).map_or(0, |c| c.events);
            out.sample(family, &[("stage", stage.letter())], n);
        }
    }
}

/// A pool gauge: its family name, help text, and how to read it from a snapshot.
type PoolGauge = (&'static str, &'static str, fn(&PoolSnapshot) -> f64);

fn write_pools(out: &mut Exposition, pools: &[PoolSnapshot]) {
    let gauges: [PoolGauge; 5] = [
        ("cascade_pool_workers", "Worker threads of the local stage pool.", |p| p.workers as f64),
        ("cascade_pool_busy_workers", "Worker threads of the local pool working on a job.", |p| p.busy as f64),
        ("cascade_pool_utilisation", "Busy share of the local pool's workers, 0 to 1.", |p| {
            if p.workers == 0 { 0.0 } else { p.busy as f64 / p.workers as f64 }
        }),
        ("cascade_pool_queued_jobs", "Jobs waiting in the local pool's input channel.", |p| p.queued as f64),
        ("cascade_pool_queue_capacity", "Capacity of the local pool's input channel.", |p| p.queue_capacity as f64),
    ];
    for (family, help, value) in gauges {
        out.family(family, Kind::Gauge, help);
        for pool in pools {
            out.sample(family, &[("stage", pool.stage.letter()), ("kind", &pool.kind)], value(pool));
        }
    }
    out.family("cascade_pool_completed_total", Kind::Counter, "Jobs the local pool completed since this process started.");
    for pool in pools {
        out.sample("cascade_pool_completed_total", &[("stage", pool.stage.letter()), ("kind", &pool.kind)], pool.completed);
    }
}
