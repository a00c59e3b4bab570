//! Bad requests against a real `cascade serve`: each gets the documented status and text, and
//! nothing in the database changes.

use std::time::Duration;

use cascade_tests::{cascade, wait_until, Daemon};
use cascade_tracker::testing::TestDatabase;
use cascade_web::{TrackerClient, NOT_WORKING, NO_JOBS, NO_OPEN_JOB, UNKNOWN_WORKER};

/// Sends a raw request and returns (status, content type, body).
fn raw(method: &str, url: &str, content_type: Option<&str>, body: Option<Vec<u8>>) -> (u16, String, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let result = match (method, body) {
        ("GET", _) => agent.get(url).call(),
        (_, Some(body)) => {
            let mut request = agent.post(url);
            if let Some(content_type) = content_type {
                request = request.header("Content-Type", content_type);
            }
            request.send(&body[..])
        }
        (_, None) => agent.post(url).send_empty(),
    };
    let mut response = result.expect("the server answers");
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let text = response.body_mut().read_to_string().unwrap_or_default();
    (status, content_type, text)
}

fn post_json(daemon: &Daemon, path: &str, body: &str) -> (u16, String, String) {
    raw("POST", &format!("{}{path}", daemon.url), Some("application/json"), Some(body.as_bytes().to_vec()))
}

/// Everything a bad request must not change: all jobs with their data and history, the
/// leaderboard, and the per-stage counts.
fn snapshot(daemon: &Daemon) -> String {
    let mut parts = vec![daemon.get_json("/v1/stats")["stages"].to_string(), daemon.get_json("/v1/leaderboard").to_string()];
    for number in 1..=3 {
        parts.push(daemon.get_json(&format!("/v1/jobs/{number}")).to_string());
    }
    parts.join("\n")
}

#[test]
fn bad_requests_get_documented_answers_and_change_nothing() {
    let db = TestDatabase::sqlite();
    let url = db.url_string();
    let (ok, _, err) = cascade(&["init", "--database", &url, "--brace", "job-{1..3}"]);
    assert!(ok, "{err}");
    let daemon = Daemon::start(
        &["--database", &url, "--stage", "a=CPU", "--stage", "b=GPU", "--idle-timeout", "2s", "--sweep-interval", "100ms"],
        0,
    );
    let client = TrackerClient::new(&daemon.url);
    let worker = client.register("tester", "a").unwrap();
    worker.new_job().unwrap();
    worker.complete_job("done-1").unwrap();
    let holder = client.register("holder", "a").unwrap();
    assert_eq!(holder.new_job().unwrap().number.0, 2);
    let before = snapshot(&daemon);

    let token = format!(r#"{{"token": "{}"}}"#, worker.token.as_str());
    let text = |status: u16, body: &str| (status, "text/plain; charset=utf-8".to_owned(), body.to_owned());
    let cases: Vec<(&str, (u16, String, String))> = vec![
        ("unknown token on newJob", post_json(&daemon, "/api/newJob", r#"{"token": "no-such-token"}"#)),
        ("unknown token on completeJob", post_json(&daemon, "/api/completeJob", r#"{"token": "nope", "data": "x"}"#)),
        ("unknown token on updateProgress", post_json(&daemon, "/api/updateProgress", r#"{"token": "nope", "progress": "x"}"#)),
        ("unknown token on flagInvalidData", post_json(&daemon, "/api/flagInvalidData", r#"{"token": "nope"}"#)),
        ("unknown token on bye", post_json(&daemon, "/api/bye", r#"{"token": "nope"}"#)),
        ("completion without a lease", post_json(&daemon, "/api/completeJob", &format!(r#"{{"token": "{}", "data": "x"}}"#, worker.token.as_str()))),
        ("flag without a lease", post_json(&daemon, "/api/flagInvalidData", &token)),
    ];
    let expected = [
        text(404, UNKNOWN_WORKER),
        text(404, UNKNOWN_WORKER),
        text(404, UNKNOWN_WORKER),
        text(404, UNKNOWN_WORKER),
        text(404, UNKNOWN_WORKER),
        text(403, NO_OPEN_JOB),
        text(403, NOT_WORKING),
    ];
    for ((name, got), want) in cases.into_iter().zip(expected) {
        assert_eq!(got, want, "{name}");
    }

    let invalid_stage = |s: &str| format!("Invalid worker stage: '{s}'. Choose from 'a'/'b'/'c'/'d'/'e'.");
    for stage in ["A", "f", "ab", ""] {
        let (status, _, body) = raw("GET", &format!("{}/api/new?nickname=x&stage={stage}", daemon.url), None, None);
        assert_eq!((status, body), (400, invalid_stage(stage)), "new with stage {stage:?}");
        let (status, _, body) = raw("GET", &format!("{}/api/jobCount?stage={stage}", daemon.url), None, None);
        assert_eq!((status, body), (400, invalid_stage(stage)), "jobCount with stage {stage:?}");
    }
    let (status, _, body) = raw("GET", &format!("{}/api/new?nickname=x&stage=c", daemon.url), None, None);
    assert_eq!((status, body.as_str()), (400, "The worker stage 'c' is disabled."));

    for (name, body) in [
        ("null token", r#"{"token": null}"#),
        ("missing token", r#"{}"#),
        ("number token", r#"{"token": 5}"#),
        ("malformed JSON", r#"{"token": "#),
        ("not JSON", "token=abc"),
        ("empty body", ""),
    ] {
        let (status, content_type, detail) = post_json(&daemon, "/api/newJob", body);
        assert_eq!(status, 422, "{name}: {detail}");
        assert_eq!(content_type, "application/json", "{name}");
        assert!(detail.contains("\"detail\""), "{name}: {detail}");
    }
    let (status, _, _) = post_json(&daemon, "/api/completeJob", r#"{"token": "x", "data": null}"#);
    assert_eq!(status, 422, "null data");
    let (status, _, _) = raw("GET", &format!("{}/api/new?stage=a", daemon.url), None, None);
    assert_eq!(status, 422, "missing nickname");

    let huge = format!(r#"{{"token": "{}", "data": "{}"}}"#, holder.token.as_str(), "x".repeat(2 << 20));
    let (status, _, body) = post_json(&daemon, "/api/completeJob", &huge);
    assert_eq!(status, 413, "oversized body: {body}");

    assert_eq!(raw("GET", &format!("{}/no/such/path", daemon.url), None, None), (404, "text/plain; charset=utf-8".into(), "Not Found".into()));
    assert_eq!(
        raw("GET", &format!("{}/api/newJob", daemon.url), None, None),
        (405, "text/plain; charset=utf-8".into(), "Method Not Allowed".into())
    );
    let (status, _, _) = raw("GET", &format!("{}/v1/jobs?state=weird", daemon.url), None, None);
    assert_eq!(status, 400);
    let (status, _, _) = raw("GET", &format!("{}/v1/jobs/abc", daemon.url), None, None);
    assert_eq!(status, 400);
    let (status, _, _) = raw("GET", &format!("{}/v1/jobs/99", daemon.url), None, None);
    assert_eq!(status, 404);

    assert_eq!(snapshot(&daemon), before, "a bad request changed the database");
    assert_eq!(post_json(&daemon, "/api/validateWorker", r#"{"token": "nope"}"#).2, "False");

    // Duplicate completion: the second one is refused and changes nothing.
    holder.complete_job("done-2").unwrap();
    let after_first = snapshot(&daemon);
    let duplicate = post_json(&daemon, "/api/completeJob", &format!(r#"{{"token": "{}", "data": "again"}}"#, holder.token.as_str()));
    assert_eq!(duplicate, text(403, NO_OPEN_JOB));
    assert_eq!(snapshot(&daemon), after_first);

    // An expired token: the worker goes silent past the idle timeout and is swept.
    let silent = client.register("silent", "a").unwrap();
    assert_eq!(silent.new_job().unwrap().number.0, 3);
    wait_until("the silent worker is swept", Duration::from_secs(30), || {
        let workers = daemon.get_json("/v1/workers?stage=a&limit=500");
        !workers["items"].as_array().unwrap().iter().any(|w| w["nickname"] == "silent")
    });
    let swept = post_json(&daemon, "/api/completeJob", &format!(r#"{{"token": "{}", "data": "late"}}"#, silent.token.as_str()));
    assert_eq!(swept, text(404, UNKNOWN_WORKER));
    let swept = post_json(&daemon, "/api/updateProgress", &format!(r#"{{"token": "{}", "progress": "x"}}"#, silent.token.as_str()));
    assert_eq!(swept, text(404, UNKNOWN_WORKER));
    assert_eq!(post_json(&daemon, "/api/validateWorker", &format!(r#"{{"token": "{}"}}"#, silent.token.as_str())).2, "False");
    let job3 = daemon.get_json("/v1/jobs/3");
    assert_eq!(job3["summary"]["state"], "open");
    assert_eq!(job3["data"][1], serde_json::Value::Null, "the late completion changed nothing");

    // A fresh worker gets the re-opened job; an empty stage answers 403 with the documented text.
    let fresh = client.register("fresh", "a").unwrap();
    assert_eq!(fresh.new_job().unwrap().number.0, 3);
    let empty = post_json(&daemon, "/api/newJob", &format!(r#"{{"token": "{}"}}"#, client.register("x", "b").unwrap().token.as_str()));
    assert_eq!(empty.0, 200, "stage b has jobs 1 and 2");
    let idle_b = client.register("y", "b").unwrap();
    idle_b.new_job().unwrap();
    let none_left = post_json(&daemon, "/api/newJob", &format!(r#"{{"token": "{}"}}"#, client.register("z", "b").unwrap().token.as_str()));
    assert_eq!(none_left, text(403, NO_JOBS));
}
