//! Cascade's HTTP face.
//!
//! # Layout
//! - [`api::distcompute`]: the worker API under `/api/*`, wire-compatible with the
//!   `distcompute-client` 1.0.0 Python library (paths, query vs JSON body, status codes and
//!   exact texts), with Cascade's fixes to the original tracker's bugs.
//! - [`api::native`]: the JSON API under `/v1/*` (stats per stage, workers, jobs, leaderboard,
//!   throughput) that dashboards and scripts read; [`api::dashboard`] adds the one-request
//!   snapshot the dashboard refreshes from, and failed and flagged jobs.
//! - `dashboard`: the `/web` pages (HTML, script and style compiled in) and the worker page at
//!   `/worker/{stage}/{name}` the Python client prints.
//! - [`metrics`]: `/metrics` in the Prometheus text format, and the request latency histograms.
//! - [`pools`]: the registry through which the engine shows its local stage pools.
//! - [`ApiError`]: how store errors and malformed requests become statuses and texts.
//! - [`server`]: building the actix-web server with body limits and the routes above; its
//!   threads run without wakeup preemption ([`cascade_tracker::scheduling`]) so they never stall
//!   the SQLite writer.
//! - [`client`]: a typed, blocking client for the worker API, used by `cascade worker`, the
//!   benchmarks and the tests.
//!
//! No store call runs on the async threads that serve connections: the worker API's writes
//! (`newJob`, `updateProgress`, `completeJob`) are handed to the SQLite writer thread, or to
//! tokio's blocking pool on PostgreSQL, and awaited; every other call runs on actix's blocking
//! thread pool (`web::block`).

pub mod admin_client;
pub mod api;
pub mod client;
mod dashboard;
mod error;
pub mod limits;
pub mod metrics;
pub mod pools;
pub mod server;

pub use admin_client::AdminClient;
pub use client::{ClientError, TrackerClient, WorkerSession};
pub use error::{
    ApiError, ValidationDetail, ValidationError, CANNOT_WRITE, LEASE_LOST, NOT_WORKING, NO_JOBS, NO_OPEN_JOB,
    UNAVAILABLE_RETRY_AFTER, UNKNOWN_WORKER,
};
pub use pools::{PoolRegistry, PoolSnapshot};
pub use server::{build_server, configure, ServerConfig};
