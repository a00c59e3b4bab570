//! Building the HTTP server: routes, body limits, and plain-text 404/405/422 answers.

use std::net::SocketAddr;

use actix_web::dev::Server;
use actix_web::error::{JsonPayloadError, QueryPayloadError};
use actix_web::http::header::ContentType;
use actix_web::{web, App, HttpResponse, HttpServer, Route};
use cascade_tracker::JobStore;

use crate::api;
use crate::error::ApiError;

/// How the HTTP server runs.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address to listen on; port 0 picks a free one.
    pub bind: SocketAddr,
    /// Largest accepted request body in bytes (job outputs travel in bodies). Default 1 MiB.
    pub max_body_bytes: usize,
    /// HTTP worker threads; `None` means one per CPU core.
    pub http_workers: Option<usize>,
    /// Whether the server stops itself on SIGINT/SIGTERM (off when the caller handles signals
    /// and stops the server after its own shutdown steps).
    pub handle_signals: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_body_bytes: 1 << 20,
            http_workers: None,
            handle_signals: true,
        }
    }
}

/// Registers `route` at `path`, answering other methods with `405 Method Not Allowed`.
pub(crate) fn endpoint(config: &mut web::ServiceConfig, path: &str, route: Route) {
    config.service(web::resource(path).route(route).default_service(web::to(method_not_allowed)));
}

async fn method_not_allowed() -> HttpResponse {
    HttpResponse::MethodNotAllowed().content_type(ContentType::plaintext()).body("Method Not Allowed")
}

async fn not_found() -> HttpResponse {
    HttpResponse::NotFound().content_type(ContentType::plaintext()).body("Not Found")
}

fn json_error(error: JsonPayloadError, limit: usize) -> actix_web::Error {
    match error {
        JsonPayloadError::Overflow { .. } | JsonPayloadError::OverflowKnownLength { .. } => {
            ApiError::TooLarge { limit }.into()
        }
        other => ApiError::Unprocessable { location: "body", message: other.to_string() }.into(),
    }
}

fn query_error(error: QueryPayloadError) -> actix_web::Error {
    ApiError::Unprocessable { location: "query", message: error.to_string() }.into()
}

/// Adds the store, the extractor limits and every route to an app.
pub fn configure(store: JobStore, max_body_bytes: usize) -> impl FnOnce(&mut web::ServiceConfig) + Clone {
    move |config: &mut web::ServiceConfig| {
        config
            .app_data(web::Data::new(store))
            .app_data(
                web::JsonConfig::default()
                    .limit(max_body_bytes)
                    .content_type_required(false)
                    .error_handler(move |error, _| json_error(error, max_body_bytes)),
            )
            .app_data(web::QueryConfig::default().error_handler(|error, _| query_error(error)))
            .configure(api::distcompute::routes)
            .configure(api::native::routes)
            .configure(api::lease::routes)
            .default_service(web::to(not_found));
    }
}

/// Binds the server and returns it (not yet awaited) with the addresses it listens on.
///
/// # Errors
/// When the address cannot be bound.
pub fn build_server(store: JobStore, config: &ServerConfig) -> std::io::Result<(Server, Vec<SocketAddr>)> {
    let max_body = config.max_body_bytes;
    let mut server = HttpServer::new(move || {
        App::new().configure(configure(store.clone(), max_body))
    })
    .shutdown_timeout(5);
    if let Some(workers) = config.http_workers {
        server = server.workers(workers.max(1));
    }
    if !config.handle_signals {
        server = server.disable_signals();
    }
    let server = server.bind(config.bind)?;
    let addrs = server.addrs();
    Ok((server.run(), addrs))
}
