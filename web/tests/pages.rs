//! The `/web` pages and the `/v1/dashboard` snapshot against a real server on loopback: no
//! page fails for missing data, the printed worker URL works, the snapshot matches what
//! happened, and 10,000 workers do not grow what a page load fetches.

mod common;

use std::time::Duration;

use cascade_tracker::testing::TestDatabase;
use cascade_tracker::StageId;
use cascade_web::{PoolSnapshot, TrackerClient};
use common::TestServer;

/// What one dashboard page load fetches besides the cached assets: the page and one snapshot.
/// Generous for 50 worker rows and 20 of each other listing, and independent of the totals.
const PAGE_LOAD_BYTES: usize = 48 * 1024;

#[test]
fn pages_answer_without_data_and_never_fail() {
    let server = TestServer::start(TestDatabase::sqlite());
    for path in ["/web", "/web/"] {
        let (status, content_type, body) = server.get(path);
        assert_eq!((status, content_type.as_str()), (200, "text/html; charset=utf-8"), "{path}");
        assert!(body.contains("<title>Dash Test - Dashboard</title>"), "{body}");
        assert!(body.contains("/web/assets/app.js?v="), "{body}");
    }
    assert_eq!(server.get("/").0, 302);

    let snapshot = server.get_json("/v1/dashboard");
    assert_eq!(snapshot["project"], "Dash Test");
    assert_eq!(snapshot["completion_percent"], 100.0);
    let stages: Vec<_> = snapshot["stages"].as_array().unwrap().iter().map(|s| s["stage"].as_str().unwrap()).collect();
    assert_eq!(stages, ["a", "b"], "disabled, empty stages are left out");
    assert_eq!(snapshot["stages"][0]["eta_seconds"], serde_json::Value::Null);
    for listing in ["workers", "problems", "leaderboard"] {
        assert_eq!(snapshot[listing]["total"], 0, "{listing}");
    }
    assert_eq!(server.get_json("/v1/problems")["total"], 0);

    let refused = [
        ("/worker/cpu/nobody-here-1", 404, "Worker not found."),
        ("/worker/CPU/x", 404, "No such stage."),
        ("/worker/c/x", 404, "No such stage."),
        ("/web/job/1", 404, "Job 1 does not exist."),
        ("/web/job/one", 400, "Invalid job number: &#39;one&#39;."),
    ];
    for (path, want, message) in refused {
        let (status, content_type, body) = server.get(path);
        assert_eq!(status, want, "{path}: {body}");
        assert!(content_type.starts_with("text/html"), "{path}");
        assert!(body.contains(message), "{path}: {body}");
    }
    assert_eq!(server.get("/v1/dashboard?stage=z").0, 400);

    let (status, content_type, script) = server.get("/web/assets/app.js");
    assert_eq!((status, content_type.as_str()), (200, "text/javascript; charset=utf-8"));
    assert!(script.contains("/v1/dashboard"));
    assert_eq!(server.get("/web/assets/app.css").1, "text/css; charset=utf-8");
    assert_eq!(server.get("/web/assets/other.js").0, 404);
    // Nothing is fetched from elsewhere (the SVG namespace is a name, not a fetch).
    assert!(!script.replace("http://www.w3.org/2000/svg", "").contains("://"));
    assert!(!server.get("/web").2.contains("://"));
}

#[test]
fn the_worker_url_the_python_client_prints_opens_the_worker_page() {
    let server = TestServer::start(TestDatabase::sqlite());
    server.store.load_jobs(&["job-1".to_owned()], false).unwrap();
    let worker = TrackerClient::new(&server.url).register("alice", "a").unwrap();
    worker.new_job().unwrap();
    // distcompute-client prints f"{url}/worker/{stage_name.lower()}/{display_name}".
    let printed = format!("/worker/{}/{}", worker.stage_name.to_lowercase(), worker.display_name);
    let (status, _, body) = server.get(&printed);
    assert_eq!(status, 200, "{printed}: {body}");
    assert!(body.contains(&format!("<title>{} - Dash Test</title>", worker.display_name)), "{body}");
    assert!(body.contains("&quot;page&quot;:&quot;worker&quot;"), "{body}");
    assert_eq!(server.get(&format!("/worker/a/{}", worker.display_name)).0, 200, "the letter works too");
    assert_eq!(server.get(&format!("/worker/gpu/{}", worker.display_name)).0, 404, "another stage's worker");
    let (status, _, body) = server.get("/web/job/1");
    assert_eq!(status, 200);
    assert!(body.contains("<title>Job #1 - Dash Test</title>"), "{body}");
}

#[test]
fn the_snapshot_shows_counts_rates_problems_pools_and_the_leaderboard() {
    let server = TestServer::start(TestDatabase::sqlite());
    let jobs: Vec<String> = (1..=6).map(|i| format!("shard-{i}")).collect();
    server.store.load_jobs(&jobs, false).unwrap();
    let client = TrackerClient::new(&server.url);
    let a = client.register("alice", "a").unwrap();
    let b = client.register("bob", "b").unwrap();
    for _ in 0..4 {
        a.new_job().unwrap();
        a.complete_job("pairs.parquet").unwrap();
        server.clock.advance(Duration::from_secs(30));
    }
    b.new_job().unwrap();
    b.flag_invalid_data_because("truncated parquet").unwrap();
    a.new_job().unwrap();
    a.log("downloading 3/10").unwrap();
    server.db.execute("UPDATE jobs SET state = 'failed', error = 'unreadable WAT' WHERE id = 6");
    server.pools.set(PoolSnapshot { busy: 3, queued: 5, completed: 17, ..PoolSnapshot::idle(StageId::A, "wat", 4, 8) });

    let snapshot = server.get_json("/v1/dashboard");
    let stage = |i: usize, field: &str| snapshot["stages"][i][field].as_i64().unwrap();
    assert_eq!([stage(0, "open"), stage(0, "leased"), stage(0, "done"), stage(0, "failed")], [0, 1, 4, 1]);
    assert_eq!([stage(1, "open"), stage(1, "leased"), stage(1, "done"), stage(1, "failed")], [4, 0, 0, 0]);
    assert_eq!(snapshot["stages"][0]["pool"]["busy"], 3);
    assert_eq!(snapshot["stages"][1]["pool"], serde_json::Value::Null);
    // Four completions in the two minutes since the minute of the first one began.
    let rate = snapshot["stages"][0]["jobs_per_minute"].as_f64().unwrap();
    assert!((rate - 4.0 / 2.0).abs() < 1e-9, "{rate}");
    assert_eq!(stage(0, "eta_seconds"), 30, "one job left at a, two per minute");
    let completed: i64 = snapshot["throughput"].as_array().unwrap().iter().map(|p| p["completed"].as_i64().unwrap()).sum();
    assert_eq!(completed, 4);

    let problems = &snapshot["problems"];
    assert_eq!(problems["total"], 2);
    let reasons: Vec<_> = problems["items"].as_array().unwrap().iter().map(|p| (p["summary"]["id"].as_i64().unwrap(), p["reason"].as_str().unwrap())).collect();
    assert!(reasons.contains(&(1, "truncated parquet")) && reasons.contains(&(6, "unreadable WAT")), "{reasons:?}");

    let workers = snapshot["workers"]["items"].as_array().unwrap();
    let alice = workers.iter().find(|w| w["nickname"] == "alice").unwrap();
    assert_eq!((alice["progress"].as_str(), alice["job"].as_i64(), alice["jobs_completed"].as_i64()), (Some("downloading 3/10"), Some(5), Some(4)));
    assert!(workers.iter().all(|w| w.get("token").is_none()), "tokens are credentials");
    assert_eq!(snapshot["leaderboard"]["items"][0], serde_json::json!({"nickname": "alice", "jobs_completed": 4}));
    let only_b = server.get_json("/v1/dashboard?stage=b");
    assert_eq!((only_b["workers"]["total"].as_i64(), only_b["workers"]["items"][0]["nickname"].as_str()), (Some(1), Some("bob")));
}

#[test]
fn ten_thousand_workers_do_not_grow_a_page_load() {
    const WORKERS: usize = 10_000;
    let server = TestServer::start(TestDatabase::sqlite());
    let empty_page = server.get("/web").2;
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let store = server.store.clone();
            std::thread::spawn(move || {
                for i in (t..WORKERS).step_by(8) {
                    let stage = if i % 4 == 0 { StageId::B } else { StageId::A };
                    store.register_worker(&format!("owner-{}", i % 100), stage, None).unwrap();
                }
            })
        })
        .collect();
    threads.into_iter().for_each(|t| t.join().unwrap());

    let page = server.get("/web").2;
    assert_eq!(page.len(), empty_page.len(), "the page itself carries no data");
    let (status, _, body) = server.get("/v1/dashboard");
    assert_eq!(status, 200);
    let snapshot: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(snapshot["workers"]["total"], WORKERS);
    assert_eq!(snapshot["workers"]["items"].as_array().unwrap().len(), 50);
    assert_eq!(snapshot["stages"][0]["workers"], 7_500);
    assert!(page.len() + body.len() < PAGE_LOAD_BYTES, "page {} + snapshot {} bytes", page.len(), body.len());

    let last = server.get_json("/v1/dashboard?workers_offset=9990");
    assert_eq!((last["workers"]["offset"].as_i64(), last["workers"]["items"].as_array().unwrap().len()), (Some(9990), 10));
    let b = server.get_json("/v1/dashboard?stage=b&workers_offset=2450");
    assert_eq!((b["workers"]["total"].as_i64(), b["workers"]["items"].as_array().unwrap().len()), (Some(2500), 50));
    assert!(b["workers"]["items"].as_array().unwrap().iter().all(|w| w["stage"] == "b"));
}
