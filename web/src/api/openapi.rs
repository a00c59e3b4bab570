//! The OpenAPI 3.1 description of the whole HTTP API, derived from the handlers and the types
//! they read and answer, served at `GET /openapi.json`.
//!
//! Each handler carries its own `#[utoipa::path]` (its parameters, body and the answers only
//! it gives); the answers many routes share are added here by [`SharedAnswers`], from the same
//! rules the server applies: every body-reading or query-reading route can answer 422 (and
//! 413 for bodies), every route that takes a token can answer 429 once its caller's address
//! is over the bad-token limit, and every route that reads the database can answer 503 while
//! it is unavailable.

use std::sync::OnceLock;

use actix_web::http::header::ContentType;
use actix_web::{web, HttpResponse};
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::{HttpMethod, Operation};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use serde_json::{json, Value};
use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder, Type};
use utoipa::{Modify, OpenApi};

use crate::error::{ValidationDetail, ValidationError};

/// The description of the API.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Cascade",
        description = "The HTTP API of a Cascade tracker.\n\n\
            - `/api/*`: the worker API, wire-compatible with the `distcompute-client` 1.0.0 Python \
            library (GET calls take a query, POST calls a JSON body; most answers are plain text).\n\
            - `/v1/lease/*`: lease calls for workers that report more than done or invalid.\n\
            - `/v1/*`: read-only figures for dashboards and scripts.\n\
            - `/v1/admin/*`: operator actions, behind the admin token (`Authorization: Bearer TOKEN`); \
            answers 404 while no admin token is set.\n\
            - `/web`, `/worker/…`: the dashboard's pages; `/metrics`: Prometheus.\n\n\
            In a private project (`worker-key` set), `/api/new` requires the worker key: every path \
            is also served under `/key/KEY/` (give workers `http://HOST:PORT/key/KEY` as the \
            tracker URL), or send it in an `X-Worker-Key` header.\n\n\
            Refusals are plain texts with a fixed status (the Python client shows them); a request \
            that does not validate gets 422 with a JSON `detail`."
    ),
    paths(
        super::distcompute::new_worker,
        super::distcompute::validate_worker,
        super::distcompute::new_job,
        super::distcompute::job_count,
        super::distcompute::update_progress,
        super::distcompute::complete_job,
        super::distcompute::flag_invalid_data,
        super::distcompute::bye,
        super::lease::claim,
        super::lease::complete,
        super::lease::retry,
        super::lease::fail,
        super::lease::release,
        super::native::stats,
        super::native::workers,
        super::native::worker,
        super::native::jobs,
        super::native::job,
        super::native::leaderboard,
        super::native::throughput,
        super::dashboard::dashboard,
        super::dashboard::problems,
        super::admin::add_jobs,
        super::admin::requeue_jobs,
        super::admin::cancel_jobs,
        super::admin::pause_stage,
        super::admin::resume_stage,
        super::admin::actions,
        crate::dashboard::overview,
        crate::dashboard::worker,
        crate::dashboard::job,
        crate::metrics::metrics,
        openapi_json,
    ),
    components(schemas(ValidationError, ValidationDetail)),
    modifiers(&SharedAnswers),
    tags(
        (name = "worker", description = "The distcompute worker API."),
        (name = "lease", description = "Lease calls beyond the distcompute protocol."),
        (name = "read", description = "Figures for dashboards and scripts."),
        (name = "admin", description = "Operator actions."),
        (name = "dashboard", description = "The dashboard's pages."),
        (name = "metrics", description = "Prometheus metrics."),
        (name = "meta", description = "This description."),
    )
)]
pub struct ApiDoc;

/// The description as JSON, as `/openapi.json` serves it.
///
/// # Panics
/// Never: the description is plain data.
pub fn document_json() -> String {
    let mut document = serde_json::to_value(ApiDoc::openapi()).expect("the OpenAPI description serializes");
    add_links(&mut document);
    serde_json::to_string_pretty(&document).expect("JSON values serialize")
}

/// Registers `GET /openapi.json`.
pub fn routes(config: &mut web::ServiceConfig) {
    crate::server::get(config, "/openapi.json", web::to(openapi_json));
}

/// This description.
#[utoipa::path(get, path = "/openapi.json", tag = "meta",
    responses((status = 200, description = "The OpenAPI 3.1 description of this API.", content_type = "application/json")))]
async fn openapi_json() -> HttpResponse {
    static DOCUMENT: OnceLock<String> = OnceLock::new();
    HttpResponse::Ok().content_type(ContentType::json()).body(DOCUMENT.get_or_init(document_json).as_str())
}

/// Adds the answers many routes share, and the admin token's security scheme.
struct SharedAnswers;

impl Modify for SharedAnswers {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "admin_token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        for (path, item) in &mut openapi.paths.paths {
            for method in [HttpMethod::Get, HttpMethod::Post] {
                let operation = match method {
                    HttpMethod::Get => item.get.as_mut(),
                    _ => item.post.as_mut(),
                };
                if let Some(operation) = operation {
                    add_shared_answers(path, &method, operation);
                }
            }
        }
    }
}

/// Links from the answers that hand out a token or a lease to the calls that use them, so a
/// client generator (or a stateful fuzzer) can follow a worker's life: register, claim,
/// report, complete, leave. (Added to the JSON: utoipa 5.5 writes link fields in snake case.)
fn add_links(document: &mut Value) {
    let registered = "$response.body#/token";
    let from_request = "$request.body#/token";
    let (number, lease) = ("$response.body#/number", "$response.body#/lease");
    let link = |operation_id: &str, body: Value| json!({"operationId": operation_id, "requestBody": body});
    let links = [
        ("/api/new", "get", json!({
            "validate": link("validate_worker", json!({"token": registered})),
            "newJob": link("new_job", json!({"token": registered})),
            "updateProgress": link("update_progress", json!({"token": registered, "progress": "working"})),
            "claim": link("claim", json!({"token": registered})),
            "bye": link("bye", json!({"token": registered})),
            "worker": {
                "operationId": "worker",
                "parameters": {"stage": "$request.query.stage", "name": "$response.body#/display_name"},
            },
        })),
        ("/api/newJob", "post", json!({
            "completeJob": link("complete_job", json!({"token": from_request, "data": "output"})),
            "flagInvalidData": link("flag_invalid_data", json!({"token": from_request, "reason": "unreadable"})),
            "job": {"operationId": "job", "parameters": {"number": number}},
        })),
        ("/v1/lease/claim", "post", json!({
            "complete": link(
                "complete",
                json!({"token": from_request, "number": number, "lease": lease, "data": "output", "claim_next": true}),
            ),
            "retry": link(
                "retry",
                json!({"token": from_request, "number": number, "lease": lease, "retry_after_ms": 1000, "reason": "busy"}),
            ),
            "fail": link("fail", json!({"token": from_request, "number": number, "lease": lease, "error": "broken"})),
            "release": link("release", json!({"token": from_request, "number": number, "lease": lease})),
        })),
    ];
    for (path, method, links) in links {
        if let Some(answer) = document.pointer_mut(&format!("/paths/{}/{method}/responses/200", path.replace('/', "~1"))) {
            answer["links"] = links;
        }
    }
}

/// The answers the server's shared machinery can give `operation` at `path`.
fn add_shared_answers(path: &str, method: &HttpMethod, operation: &mut Operation) {
    let takes_query = operation
        .parameters
        .iter()
        .flatten()
        .any(|parameter| matches!(parameter.parameter_in, utoipa::openapi::path::ParameterIn::Query));
    let takes_body = operation.request_body.is_some();
    if path.starts_with("/v1/admin/") {
        operation.security = Some(vec![SecurityRequirement::new::<_, _, &str>("admin_token", [])]);
    }
    let responses = &mut operation.responses.responses;
    let mut add = |status: &str, response: utoipa::openapi::Response| {
        responses.entry(status.to_owned()).or_insert_with(|| response.into());
    };
    if path.starts_with("/v1/admin/") {
        add("401", text_answer("The admin token is missing or wrong."));
        add("404", text_answer("The admin API is disabled (no admin token is set)."));
    }
    if takes_body {
        add("413", text_answer("The body is larger than the server's limit (`max-body-bytes`)."));
    }
    if takes_body || takes_query {
        add(
            "422",
            ResponseBuilder::new()
                .description("The request does not validate (broken JSON, a missing field, a wrong type, a text too long).")
                .content("application/json", ContentBuilder::new().schema(Some(Ref::from_schema_name("ValidationError"))).build())
                .build(),
        );
    }
    if crate::server::takes_token(path) || (path == "/api/new" && *method == HttpMethod::Get) {
        add(
            "429",
            with_retry_after(
                "This address is over its limit of registrations or of unknown tokens per minute.",
                "Seconds until the address may try again.",
            ),
        );
    }
    if path.starts_with("/api/") || path.starts_with("/v1/") {
        add(
            "503",
            with_retry_after("The tracker's database is unavailable; retry.", "Seconds to wait before retrying."),
        );
    }
}

/// A plain-text answer.
fn text_answer(description: &str) -> utoipa::openapi::Response {
    ResponseBuilder::new()
        .description(description)
        .content("text/plain", ContentBuilder::new().schema(Some(utoipa::openapi::ObjectBuilder::new().schema_type(Type::String))).build())
        .build()
}

/// A plain-text answer that carries `Retry-After`.
fn with_retry_after(description: &str, header: &str) -> utoipa::openapi::Response {
    let mut response = text_answer(description);
    response.headers.insert(
        "Retry-After".to_owned(),
        HeaderBuilder::new()
            .schema(utoipa::openapi::ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(0)))
            .description(Some(header))
            .build(),
    );
    response
}
