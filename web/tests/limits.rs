//! Abuse limits over HTTP: registrations per address, bad tokens per address, nickname and
//! progress lengths, and the `Retry-After` of 429 and 503 answers.

mod common;

use cascade_tracker::testing::TestDatabase;
use cascade_web::limits::AbuseLimits;
use cascade_web::{ClientError, ServerConfig, TrackerClient, UNAVAILABLE_RETRY_AFTER};
use common::TestServer;

/// A server allowing `registrations` and `bad_tokens` per minute and address.
fn start(registrations: u32, bad_tokens: u32) -> TestServer {
    let limits = AbuseLimits { registrations_per_minute: registrations, bad_tokens_per_minute: bad_tokens };
    TestServer::start_with(TestDatabase::sqlite(), ServerConfig { abuse_limits: limits, ..ServerConfig::default() })
}

/// Sends `method path` with a JSON `body`: (status, Retry-After header, body).
fn send(server: &TestServer, method: &str, path: &str, body: &str) -> (u16, Option<String>, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let url = format!("{}{path}", server.url);
    let result = if method == "GET" { agent.get(&url).call() } else { agent.post(&url).header("Content-Type", "application/json").send(body) };
    let mut response = result.expect("the server answers");
    let retry_after = response.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_owned);
    (response.status().as_u16(), retry_after, response.body_mut().read_to_string().unwrap_or_default())
}

#[test]
fn registrations_past_the_limit_get_429_with_retry_after() {
    let server = start(3, 0);
    let client = TrackerClient::new(&server.url);
    for n in 0..3 {
        client.register(&format!("w{n}"), "a").expect("within the limit");
    }
    let (status, retry_after, body) = send(&server, "GET", "/api/new?nickname=w4&stage=a", "");
    assert_eq!(status, 429, "{body}");
    let seconds: u64 = retry_after.expect("Retry-After").parse().unwrap();
    assert!((1..=20).contains(&seconds), "one registration comes back every 20 s: {seconds}");
    assert!(body.contains("Too many requests"), "{body}");
    assert_eq!(server.store.workers(None, 0, 10).unwrap().total, 3, "the refused one was not registered");
    // Other calls are not limited.
    assert_eq!(client.job_count("a").unwrap(), 0);
}

#[test]
fn an_address_sending_bad_tokens_is_refused_for_a_while() {
    let server = start(0, 2);
    let worker = TrackerClient::new(&server.url).register("honest", "a").expect("registers");
    server.store.load_jobs(&["job-1".to_owned()], false).unwrap();
    let bogus = r#"{"token": "00000000-0000-0000-0000-000000000000"}"#;
    for _ in 0..3 {
        assert_eq!(send(&server, "POST", "/api/newJob", bogus).0, 404);
    }
    let (status, retry_after, _) = send(&server, "POST", "/api/newJob", bogus);
    assert_eq!((status, retry_after.as_deref()), (429, Some("30")));
    // The address is refused token calls (its honest worker too), not the public ones.
    assert!(matches!(worker.new_job(), Err(ClientError::Server { status: 429, .. })));
    assert_eq!(send(&server, "GET", "/api/jobCount?stage=a", "").0, 200);
    assert_eq!(send(&server, "GET", "/v1/stats", "").0, 200);
}

#[test]
fn long_nicknames_and_progress_texts_get_422() {
    let server = start(0, 0);
    let longest = "n".repeat(128);
    let client = TrackerClient::new(&server.url);
    let worker = client.register(&longest, "a").expect("128 characters are fine");
    let (status, _, body) = send(&server, "GET", &format!("/api/new?nickname={longest}x&stage=a"), "");
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("nickname is longer than 128 characters"), "{body}");
    worker.log(&"é".repeat(1024)).expect("1,024 characters are fine");
    let progress = serde_json::json!({"token": worker.token.as_str(), "progress": "p".repeat(1025)});
    let (status, _, body) = send(&server, "POST", "/api/updateProgress", &progress.to_string());
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("progress is longer than 1024 characters"), "{body}");
    assert_eq!(server.store.workers(None, 0, 10).unwrap().items[0].progress, "é".repeat(1024));
}

#[test]
fn database_failures_answer_503_with_retry_after() {
    let server = start(0, 0);
    server.db.execute("DROP TABLE jobs");
    let (status, retry_after, body) = send(&server, "GET", "/api/jobCount?stage=a", "");
    assert_eq!(status, 503, "{body}");
    assert_eq!(retry_after, Some(UNAVAILABLE_RETRY_AFTER.to_string()));
}

/// A server for a private project with worker key `key`.
fn private(key: &str) -> TestServer {
    let settings = ServerConfig { worker_key: Some(key.to_owned()), ..ServerConfig::default() };
    TestServer::start_with(TestDatabase::sqlite(), settings)
}

#[test]
fn a_private_project_registers_only_workers_with_its_key() {
    let key = "volunteers-only-2026";
    let server = private(key);
    server.store.load_jobs(&["job-1".to_owned()], false).unwrap();
    let (status, _, body) = send(&server, "GET", "/api/new?nickname=x&stage=a", "");
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("/key/KEY"), "says how to present it: {body}");
    assert_eq!(send(&server, "GET", "/key/not-the-key-at-all/api/new?nickname=x&stage=a", "").0, 401);
    // The key in the tracker URL: every call goes under /key/KEY/, as the Python client makes them.
    let keyed = TrackerClient::new(&format!("{}/key/{key}", server.url));
    let worker = keyed.register("alice", "a").expect("the key opens registration");
    assert_eq!(keyed.job_count("a").unwrap(), 1);
    let job = worker.new_job().unwrap();
    worker.complete_job(&format!("done {}", job.data)).unwrap();
    let (status, _, page) = send(&server, "GET", &format!("/key/{key}/worker/cpu/{}", worker.display_name), "");
    assert_eq!(status, 200, "the worker page the client prints: {page}");
    // Or in a header; everything but registration works without it.
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let status = agent
        .get(format!("{}/api/new?nickname=bob&stage=a", server.url))
        .header("X-Worker-Key", key)
        .call()
        .unwrap()
        .status();
    assert_eq!(status, 200);
    assert_eq!(TrackerClient::new(&server.url).job_count("a").unwrap(), 0);
    assert_eq!(server.store.workers(None, 0, 10).unwrap().total, 2);
}
