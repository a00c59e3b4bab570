//! Building the HTTP server: routes, body limits, connection limits and timeouts, the abuse
//! limits per client address, request timing, and plain-text 404/405/422/429 answers.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use actix_web::dev::{Server, Service, ServiceResponse};
use actix_web::error::{JsonPayloadError, QueryPayloadError};
use actix_web::http::header::ContentType;
use actix_web::http::{Method, StatusCode};
use actix_web::{web, App, HttpMessage, HttpResponse, HttpServer, ResponseError, Route};
use cascade_tracker::JobStore;

use crate::error::ApiError;
use crate::limits::{self, AbuseLimits, ClientLimiter};
use crate::metrics::{HttpMetrics, UNMATCHED};
use crate::pools::PoolRegistry;
use crate::{api, dashboard, metrics};

/// How the HTTP server runs, and the shared handles it reports from.
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
    /// The local stage pools of this process, shown on `/web` and exported on `/metrics`.
    /// Empty by default; the engine keeps a clone and fills it (see [`crate::pools`]).
    pub pools: PoolRegistry,
    /// Where request latencies are recorded for `/metrics`. Clones share the histograms.
    pub http_metrics: HttpMetrics,
    /// The bearer token of the admin API (`/v1/admin/*`); `None` disables it.
    pub admin_token: Option<String>,
    /// The key a worker must present to register (a private project); `None`: anyone may.
    /// Workers present it in the tracker URL they are given, `http://HOST:PORT/key/KEY`
    /// (every path under `/key/KEY/` is served as the same path without it), or in an
    /// `X-Worker-Key` header.
    pub worker_key: Option<String>,
    /// Registrations and bad tokens allowed per client address.
    pub abuse_limits: AbuseLimits,
    /// Open connections per HTTP thread; more wait in the kernel's accept queue.
    pub max_connections: usize,
    /// How long an idle keep-alive connection stays open.
    pub keep_alive: Duration,
    /// How long a client may take to send a request's head before it gets 408.
    pub request_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_body_bytes: 1 << 20,
            http_workers: None,
            handle_signals: true,
            pools: PoolRegistry::default(),
            http_metrics: HttpMetrics::default(),
            admin_token: None,
            worker_key: None,
            abuse_limits: AbuseLimits::default(),
            max_connections: 25_000,
            keep_alive: Duration::from_secs(75),
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// Registers `route` for GET requests at `path`, answering other methods with `405 Method Not
/// Allowed`.
pub(crate) fn get(config: &mut web::ServiceConfig, path: &str, route: Route) {
    endpoint(config, path, Method::GET, route);
}

/// Registers `route` for POST requests at `path`, answering other methods with `405 Method Not
/// Allowed`.
pub(crate) fn post(config: &mut web::ServiceConfig, path: &str, route: Route) {
    endpoint(config, path, Method::POST, route);
}

/// Registers `route` for `method` at `path`; other methods get 405 with the `Allow` header.
fn endpoint(config: &mut web::ServiceConfig, path: &str, method: Method, route: Route) {
    let allow = method.to_string();
    config.service(
        web::resource(path)
            .route(route.method(method))
            .default_service(web::to(move || method_not_allowed(allow.clone()))),
    );
}

async fn method_not_allowed(allow: String) -> HttpResponse {
    HttpResponse::MethodNotAllowed()
        .insert_header((actix_web::http::header::ALLOW, allow))
        .content_type(ContentType::plaintext())
        .body("Method Not Allowed")
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

/// A bounded label for a request method.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::HEAD => "HEAD",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        _ => "other",
    }
}

/// Records how long `result` took since `started` under its route pattern.
fn observe<B>(metrics: &HttpMetrics, method: &str, started: Instant, result: &Result<ServiceResponse<B>, actix_web::Error>) {
    let seconds = started.elapsed().as_secs_f64();
    match result {
        Ok(response) => {
            let route = response.request().match_pattern();
            metrics.observe(route.as_deref().unwrap_or(UNMATCHED), method, response.status().as_u16(), seconds);
        }
        Err(error) => metrics.observe(UNMATCHED, method, error.as_response_error().status_code().as_u16(), seconds),
    }
}

/// Adds the store, the pool registry, the extractor limits, request timing and every route
/// (`/api/*`, `/v1/*`, `/web`, `/metrics`) to an app.
pub fn configure(store: JobStore, config: &ServerConfig) -> impl FnOnce(&mut web::ServiceConfig) + Clone {
    let (max_body_bytes, pools, http_metrics) = (config.max_body_bytes, config.pools.clone(), config.http_metrics.clone());
    let admin_token = api::admin::AdminToken(config.admin_token.clone());
    let worker_key = api::distcompute::WorkerKey(config.worker_key.clone());
    let limiter = web::Data::new(ClientLimiter::new(config.abuse_limits));
    move |config: &mut web::ServiceConfig| {
        let timing = http_metrics.clone();
        let guard = limiter.clone();
        config
            .app_data(limiter)
            .app_data(web::Data::new(store))
            .app_data(web::Data::new(pools))
            .app_data(web::Data::new(http_metrics))
            .app_data(web::Data::new(admin_token))
            .app_data(web::Data::new(worker_key))
            .app_data(
                web::JsonConfig::default()
                    .limit(max_body_bytes)
                    .content_type_required(false)
                    .error_handler(move |error, _| json_error(error, max_body_bytes)),
            )
            .app_data(web::QueryConfig::default().error_handler(|error, _| query_error(error)))
            .service(
                web::scope("")
                    // Innermost first: the address limits, then the timing of every answer, then
                    // the worker key taken out of the path (so every answer is timed under
                    // its route without the key).
                    .wrap_fn(move |request, service| {
                        let address = request.peer_addr().map(|addr| addr.ip()).filter(|_| takes_token(request.path()));
                        let refused = address.and_then(|address| guard.admit(address).err());
                        let limiter = guard.clone();
                        let response = match refused {
                            None => Ok(service.call(request)),
                            Some(wait) => {
                                let retry_after = limits::retry_after_seconds(wait);
                                Err(request.into_response(ApiError::TooManyRequests { retry_after }.error_response()))
                            }
                        };
                        async move {
                            let result = match response {
                                Ok(call) => call.await,
                                Err(refusal) => return Ok(refusal),
                            };
                            if let (Some(address), Ok(answer)) = (address, &result) {
                                if matches!(answer.status(), StatusCode::NOT_FOUND | StatusCode::UNAUTHORIZED) {
                                    limiter.bad_token(address);
                                }
                            }
                            result
                        }
                    })
                    .wrap_fn(move |request, service| {
                        let (started, method) = (Instant::now(), method_label(request.method()));
                        let metrics = timing.clone();
                        let response = service.call(request);
                        async move {
                            let result = response.await;
                            observe(&metrics, method, started, &result);
                            result
                        }
                    })
                    .wrap_fn(|mut request, service| {
                        if let Some(key) = take_worker_key(&mut request) {
                            request.extensions_mut().insert(PresentedWorkerKey(key));
                        }
                        service.call(request)
                    })
                    .configure(api::distcompute::routes)
                    .configure(api::native::routes)
                    .configure(api::lease::routes)
                    .configure(api::admin::routes)
                    .configure(api::dashboard::routes)
                    .configure(dashboard::routes)
                    .configure(metrics::routes)
                    .configure(api::openapi::routes)
                    .default_service(web::to(not_found)),
            );
    }
}

/// Whether requests to `path` present a worker token, a worker key or an admin token (and so
/// count towards, and are refused by, the bad-token limit).
pub(crate) fn takes_token(path: &str) -> bool {
    (path.starts_with("/api/") && path != "/api/jobCount")
        || path.starts_with("/v1/lease/")
        || path.starts_with("/v1/admin/")
}

/// The worker key a request presented in its path (`/key/KEY/…`).
#[derive(Debug, Clone)]
pub(crate) struct PresentedWorkerKey(pub(crate) String);

/// Takes `/key/KEY` off the front of the request's path, so the rest routes as usual, and
/// returns `KEY`.
fn take_worker_key(request: &mut actix_web::dev::ServiceRequest) -> Option<String> {
    let rest = request.path().strip_prefix("/key/")?;
    let (key, tail) = rest.split_once('/').unwrap_or((rest, ""));
    let key = key.to_owned();
    let path_and_query = match request.uri().query() {
        Some(query) => format!("/{tail}?{query}"),
        None => format!("/{tail}"),
    };
    let uri: actix_web::http::Uri = path_and_query.parse().ok()?;
    request.match_info_mut().get_mut().update(&uri);
    request.head_mut().uri = uri;
    Some(key)
}

/// Binds the server and returns it (not yet awaited) with the addresses it listens on.
///
/// # Errors
/// When the address cannot be bound.
pub fn build_server(store: JobStore, config: &ServerConfig) -> std::io::Result<(Server, Vec<SocketAddr>)> {
    let routes = configure(store, config);
    // The factory runs once on each HTTP worker thread as it starts.
    let mut server = HttpServer::new(move || {
        cascade_threads::no_wakeup_preemption();
        App::new().configure(routes.clone())
    })
    .shutdown_timeout(5)
    .max_connections(config.max_connections)
    .keep_alive(config.keep_alive)
    .client_request_timeout(config.request_timeout);
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
