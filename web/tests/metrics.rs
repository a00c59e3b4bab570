//! `/metrics` against a real server on loopback: it parses as the Prometheus text format, and
//! its figures match the database (jobs, workers, the job history) and the pool registry.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use cascade_tracker::testing::TestDatabase;
use cascade_tracker::{JobState, StageId};
use cascade_web::{PoolSnapshot, TrackerClient};
use common::TestServer;
use prometheus_parse::{Scrape, Value};

/// Scrapes and parses `/metrics`.
fn scrape(server: &TestServer) -> Scrape {
    let (status, content_type, body) = server.get("/metrics");
    assert_eq!(status, 200, "{body}");
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    Scrape::parse(body.lines().map(|line| Ok(line.to_owned()))).expect("valid text format")
}

/// The value of the single counter or gauge `metric` with exactly `labels`.
fn value(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    let found: Vec<_> = scrape
        .samples
        .iter()
        .filter(|s| s.metric == metric && s.labels.len() == labels.len() && labels.iter().all(|(k, v)| s.labels.get(k) == Some(v)))
        .collect();
    assert_eq!(found.len(), 1, "{metric}{labels:?}: {found:?}");
    match found[0].value {
        Value::Counter(v) | Value::Gauge(v) => v,
        ref other => panic!("{metric} is {other:?}"),
    }
}

/// Drives claims, completions, flags, a release and a lease expiry through HTTP.
fn make_history(server: &TestServer) {
    let items: Vec<String> = (1..=8).map(|i| format!("wat-{i}")).collect();
    server.store.load_jobs(&items, false).unwrap();
    let client = TrackerClient::new(&server.url);
    let a = client.register("alice", "a").unwrap();
    let b = client.register("bob", "b").unwrap();
    for _ in 0..5 {
        a.new_job().unwrap();
        a.complete_job("pairs").unwrap();
    }
    for _ in 0..3 {
        b.new_job().unwrap();
        b.flag_invalid_data().unwrap(); // the third report sends the job back to a
    }
    b.new_job().unwrap();
    b.complete_job("done").unwrap();
    a.new_job().unwrap();
    a.new_job().unwrap(); // gives the first job back: a release
    // A worker that goes silent: its lease runs out and the sweep re-opens the job.
    let silent = client.register("carol", "b").unwrap();
    silent.new_job().unwrap();
    server.clock.advance(Duration::from_secs(3600));
    assert_eq!(server.store.sweep().unwrap().leases_expired, 2);
    server.pools.set(PoolSnapshot { busy: 6, queued: 3, completed: 42, ..PoolSnapshot::idle(StageId::B, "download", 8, 16) });
}

fn metrics_match_the_database(db: TestDatabase) {
    let server = TestServer::start(db);
    let before = scrape(&server);
    assert_eq!(value(&before, "cascade_store_up", &[]), 1.0);
    assert_eq!(value(&before, "cascade_info", &[("project", "Dash Test")]), 1.0);
    assert_eq!(value(&before, "cascade_claims_total", &[("stage", "a")]), 0.0, "enabled stages start at zero");
    assert_eq!(value(&before, "cascade_jobs", &[("stage", "b"), ("state", "open")]), 0.0);

    make_history(&server);
    let scrape = scrape(&server);

    // Jobs by stage and state, against a listing of every job.
    let all = server.store.jobs(None, None, 0, 1000).unwrap();
    for stage in [StageId::A, StageId::B] {
        for state in JobState::ALL {
            let expected = all.items.iter().filter(|j| j.stage == stage && j.state == state).count();
            let labels = [("stage", stage.letter()), ("state", state.as_str())];
            assert_eq!(value(&scrape, "cascade_jobs", &labels), expected as f64, "{labels:?}");
        }
    }
    // Event counters, against every job's own history.
    let mut events: BTreeMap<(String, String), f64> = BTreeMap::new();
    for job in &all.items {
        for event in server.store.job(job.id).unwrap().events {
            *events.entry((event.kind, event.stage.letter().to_owned())).or_default() += 1.0;
        }
    }
    let families = [
        ("claim", "cascade_claims_total"),
        ("complete", "cascade_completions_total"),
        ("flag", "cascade_flags_total"),
        ("sent_back", "cascade_sent_back_total"),
        ("release", "cascade_releases_total"),
        ("expire", "cascade_lease_expiries_total"),
    ];
    for (kind, family) in families {
        for stage in ["a", "b"] {
            let expected = events.get(&(kind.to_owned(), stage.to_owned())).copied().unwrap_or(0.0);
            assert_eq!(value(&scrape, family, &[("stage", stage)]), expected, "{family} at {stage}");
        }
    }
    // The history above, spelled out, so a wrong history cannot pass by matching itself.
    assert_eq!(value(&scrape, "cascade_completions_total", &[("stage", "a")]), 5.0);
    assert_eq!(value(&scrape, "cascade_flags_total", &[("stage", "b")]), 3.0);
    assert_eq!(value(&scrape, "cascade_sent_back_total", &[("stage", "b")]), 1.0);
    assert_eq!(value(&scrape, "cascade_lease_expiries_total", &[("stage", "a")]), 1.0);
    assert_eq!(value(&scrape, "cascade_lease_expiries_total", &[("stage", "b")]), 1.0);
    assert_eq!(value(&scrape, "cascade_releases_total", &[("stage", "a")]), 1.0);

    let workers = server.store.workers(Some(StageId::B), 0, 10).unwrap().total;
    assert_eq!(value(&scrape, "cascade_workers", &[("stage", "b")]), workers as f64);
    let pool = [("stage", "b"), ("kind", "download")];
    assert_eq!(value(&scrape, "cascade_pool_utilisation", &pool), 0.75);
    assert_eq!(value(&scrape, "cascade_pool_queued_jobs", &pool), 3.0);
    assert_eq!(value(&scrape, "cascade_pool_completed_total", &pool), 42.0);

    // Latency histograms: the worker API calls above, one series per route, method and status.
    let histogram = |route: &str, code: &str| {
        scrape
            .samples
            .iter()
            .find(|s| {
                s.metric == "cascade_http_request_duration_seconds"
                    && s.labels.get("route") == Some(route)
                    && s.labels.get("code") == Some(code)
            })
            .map(|s| match &s.value {
                Value::Histogram(buckets) => buckets.iter().map(|b| b.count).fold(0.0, f64::max),
                other => panic!("not a histogram: {other:?}"),
            })
    };
    assert_eq!(histogram("/api/completeJob", "200"), Some(6.0));
    assert_eq!(histogram("/api/new", "200"), Some(3.0));
    assert_eq!(histogram("/metrics", "200"), Some(1.0), "the first scrape, timed once it was answered");
    server.get("/no/such/page");
    let after = self::scrape(&server);
    let unmatched = after.samples.iter().any(|s| s.labels.get("route") == Some("unmatched") && s.labels.get("code") == Some("404"));
    assert!(unmatched, "unknown paths share one series");
}

#[test]
fn metrics_match_the_database_on_sqlite() {
    metrics_match_the_database(TestDatabase::sqlite());
}

#[test]
fn metrics_match_the_database_on_postgres() {
    metrics_match_the_database(TestDatabase::postgres());
}

#[test]
fn metrics_still_answer_when_the_database_fails() {
    let server = TestServer::start(TestDatabase::sqlite());
    server.db.execute("DROP TABLE job_events");
    let scrape = scrape(&server);
    assert_eq!(value(&scrape, "cascade_store_up", &[]), 0.0);
    assert!(scrape.samples.iter().all(|s| s.metric != "cascade_claims_total"));
    let (status, _, body) = server.get("/web");
    assert_eq!(status, 200, "pages do not need the database: {body}");
    assert_eq!(server.get("/v1/dashboard").0, 503, "the snapshot says the database is unavailable");
}
