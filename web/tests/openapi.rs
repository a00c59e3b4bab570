//! The OpenAPI description: served at `/openapi.json`, every path it names is a route of the
//! server (with the methods it names), the answers it promises for refusals are the ones the
//! server gives, and the copies in `docs/` (the JSON and its Markdown rendering) are current.
//!
//! Regenerate the copies with `CASCADE_UPDATE_OPENAPI=1 cargo test -p cascade-web --test openapi`.

mod common;

use std::fmt::Write as _;
use std::path::PathBuf;

use cascade_tracker::testing::TestDatabase;
use cascade_web::api::openapi::document_json;
use common::TestServer;
use serde_json::Value;

fn docs() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs")
}

fn description() -> Value {
    serde_json::from_str(&document_json()).expect("the description is JSON")
}

/// `(method, path)` of every operation, in the description's order.
fn operations(description: &Value) -> Vec<(String, String)> {
    let mut found = Vec::new();
    for (path, item) in description["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("a path item").keys() {
            found.push((method.clone(), path.clone()));
        }
    }
    found
}

/// `path` with its `{parameters}` filled by plausible values.
fn concrete(path: &str) -> String {
    path.replace("{stage}", "a").replace("{name}", "nobody").replace("{number}", "1")
}

#[test]
fn the_server_serves_the_description_and_every_documented_operation_is_routed() {
    let server = TestServer::start(TestDatabase::sqlite());
    let (status, content_type, body) = server.get("/openapi.json");
    assert_eq!(status, 200);
    assert!(content_type.starts_with("application/json"), "{content_type}");
    assert_eq!(body, document_json(), "the served description is the built one");
    let description: Value = serde_json::from_str(&body).unwrap();
    assert!(description["openapi"].as_str().is_some_and(|v| v.starts_with("3.")), "{}", description["openapi"]);

    let operations = operations(&description);
    assert!(operations.len() >= 30, "{operations:?}");
    let agent: ureq::Agent =
        ureq::Agent::config_builder().http_status_as_error(false).max_redirects(0).build().into();
    for (method, path) in &operations {
        let url = format!("{}{}", server.url, concrete(path));
        let mut response = match method.as_str() {
            "get" => agent.get(&url).call(),
            "post" => agent.post(&url).header("Content-Type", "application/json").send("{}"),
            other => panic!("{other} {path}: only GET and POST are served"),
        }
        .expect("the server answers");
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().unwrap_or_default();
        assert_ne!((status, text.as_str()), (404, "Not Found"), "{method} {path} is not routed");
        assert_ne!(status, 405, "{method} {path}: method not allowed");
        let documented = &description["paths"][path][method]["responses"];
        assert!(
            documented.get(status.to_string()).is_some(),
            "{method} {path} answered {status}, which the description does not list: {text}"
        );
    }
}

#[test]
fn shared_answers_follow_the_servers_rules() {
    let description = description();
    let answers = |method: &str, path: &str| -> Vec<String> {
        description["paths"][path][method]["responses"].as_object().expect(path).keys().cloned().collect()
    };
    // A token route that reads a body: validation, size, the bad-token limit, the database.
    let new_job = answers("post", "/api/newJob");
    for status in ["200", "403", "404", "413", "422", "429", "503"] {
        assert!(new_job.contains(&status.to_owned()), "/api/newJob lacks {status}: {new_job:?}");
    }
    // No token and no body: no 413 or 429.
    let job_count = answers("get", "/api/jobCount");
    assert!(!job_count.contains(&"413".to_owned()) && !job_count.contains(&"429".to_owned()), "{job_count:?}");
    // Registration is rate-limited and may need the worker key.
    let new_worker = answers("get", "/api/new");
    assert!(new_worker.contains(&"429".to_owned()) && new_worker.contains(&"401".to_owned()), "{new_worker:?}");
    // Pages never answer 503: they render and their script retries.
    assert!(!answers("get", "/web").contains(&"503".to_owned()));
    // Admin routes carry the bearer scheme.
    assert_eq!(description["paths"]["/v1/admin/jobs/cancel"]["post"]["security"][0]["admin_token"], serde_json::json!([]));
    assert_eq!(description["components"]["securitySchemes"]["admin_token"]["scheme"], "bearer");
    let retry_after = &description["paths"]["/api/newJob"]["post"]["responses"]["429"]["headers"]["Retry-After"];
    assert_eq!(retry_after["schema"]["type"], "integer", "{retry_after}");
}

/// The description rendered as Markdown: one section per operation with its parameters, body
/// and answers.
fn markdown(description: &Value) -> String {
    let mut out = String::from(
        "# HTTP API\n\nGenerated from the code's OpenAPI description (served at `/openapi.json`; a copy is \
         [openapi.json](openapi.json)). Regenerate both with\n`CASCADE_UPDATE_OPENAPI=1 cargo test -p cascade-web --test openapi`.\n\n",
    );
    let info = description["info"]["description"].as_str().unwrap_or_default();
    out.push_str(info);
    out.push_str("\n\n");
    let schema_name = |schema: &Value| -> String {
        if let Some(reference) = schema["$ref"].as_str() {
            return format!("`{}`", reference.rsplit('/').next().unwrap_or(reference));
        }
        match schema["type"].as_str() {
            Some("array") => {
                let items = &schema["items"];
                let inner = items["$ref"].as_str().map_or("item", |r| r.rsplit('/').next().unwrap_or(r));
                format!("array of `{inner}`")
            }
            Some(other) => other.to_owned(),
            None => schema["type"].as_array().map_or_else(String::new, |types| {
                types.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(" or ")
            }),
        }
    };
    for (method, path) in operations(description) {
        let operation = &description["paths"][&path][&method];
        let _ = writeln!(out, "## `{} {path}`\n", method.to_uppercase());
        if let Some(summary) = operation["summary"].as_str() {
            let _ = writeln!(out, "{summary}\n");
        }
        if let Some(parameters) = operation["parameters"].as_array() {
            out.push_str("| parameter | in | required | type | meaning |\n|---|---|---|---|---|\n");
            for parameter in parameters {
                let _ = writeln!(
                    out,
                    "| `{}` | {} | {} | {} | {} |",
                    parameter["name"].as_str().unwrap_or_default(),
                    parameter["in"].as_str().unwrap_or_default(),
                    if parameter["required"].as_bool() == Some(true) { "yes" } else { "no" },
                    schema_name(&parameter["schema"]),
                    parameter["description"].as_str().unwrap_or_default().replace('|', "\\|"),
                );
            }
            out.push('\n');
        }
        if let Some(content) = operation["requestBody"]["content"].as_object() {
            for (media, body) in content {
                let _ = writeln!(out, "Body ({media}): {}\n", schema_name(&body["schema"]));
            }
        }
        out.push_str("| status | answer |\n|---|---|\n");
        for (status, answer) in operation["responses"].as_object().expect("responses") {
            let body = answer["content"]
                .as_object()
                .and_then(|content| content.iter().next())
                .map(|(media, body)| format!(" ({media}{})", {
                    let name = schema_name(&body["schema"]);
                    if name.is_empty() { String::new() } else { format!(": {name}") }
                }))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "| {status} | {}{body} |",
                answer["description"].as_str().unwrap_or_default().replace('|', "\\|")
            );
        }
        out.push('\n');
    }
    out
}

#[test]
fn the_copies_in_docs_are_current() {
    let json = document_json() + "\n";
    let rendered = markdown(&description());
    let (json_path, markdown_path) = (docs().join("openapi.json"), docs().join("api.md"));
    if std::env::var_os("CASCADE_UPDATE_OPENAPI").is_some() {
        std::fs::write(&json_path, &json).unwrap();
        std::fs::write(&markdown_path, &rendered).unwrap();
    }
    let stale = "is stale: regenerate it with CASCADE_UPDATE_OPENAPI=1 cargo test -p cascade-web --test openapi";
    assert!(std::fs::read_to_string(&json_path).is_ok_and(|copy| copy == json), "docs/openapi.json {stale}");
    assert!(std::fs::read_to_string(&markdown_path).is_ok_and(|copy| copy == rendered), "docs/api.md {stale}");
}
