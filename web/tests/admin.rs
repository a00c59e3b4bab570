//! The admin API: disabled without a token, 401 without the right one on every route; adding
//! jobs to a running project with the same rules as `cascade init --append`; pausing a stage
//! as distcompute workers see it; requeue, cancel and the action log over HTTP, through
//! [`AdminClient`] as `cascade jobs --tracker` uses it, and on the dashboard.

mod common;

use std::sync::Arc;
use std::time::Duration;

use cascade_tracker::testing::TestDatabase;
use cascade_tracker::{JobSelection, JobState, JobStore, ManualClock, StageId};
use cascade_web::{build_server, AdminClient, ClientError, ServerConfig, TrackerClient};
use common::START_MS;

const TOKEN: &str = "an-admin-token-of-some-length";

/// A server with `admin_token`; its URL and store.
fn start(db: &TestDatabase, admin_token: Option<&str>) -> (String, JobStore) {
    let store =
        JobStore::open(db.url(), common::config(), Arc::new(ManualClock::new(START_MS)), 4).expect("store opens");
    let config = ServerConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        http_workers: Some(1),
        admin_token: admin_token.map(str::to_owned),
        ..ServerConfig::default()
    };
    let (tx, rx) = std::sync::mpsc::channel();
    let served = store.clone();
    std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            let (server, addrs) = build_server(served, &config).expect("server binds");
            tx.send(addrs[0]).expect("test is waiting");
            server.await
        })
    });
    let addr = rx.recv_timeout(Duration::from_secs(30)).expect("server started");
    (format!("http://{addr}"), store)
}

/// POSTs `body` to `/v1/admin/jobs` with `token` as bearer: (status, body).
fn add_jobs(url: &str, token: Option<&str>, body: &str) -> (u16, String) {
    post(url, "/v1/admin/jobs", token, body)
}

/// POSTs `body` to `path` with `token` as bearer: (status, body).
fn post(url: &str, path: &str, token: Option<&str>, body: &str) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let mut request = agent.post(format!("{url}{path}")).header("Content-Type", "application/json");
    if let Some(token) = token {
        request = request.header("Authorization", &format!("Bearer {token}"));
    }
    let mut response = request.send(body).expect("the server answers");
    (response.status().as_u16(), response.body_mut().read_to_string().unwrap_or_default())
}

#[test]
fn the_admin_api_is_off_without_a_token() {
    let db = TestDatabase::sqlite();
    let (url, store) = start(&db, None);
    let (status, body) = add_jobs(&url, Some(TOKEN), r#"{"jobs": ["x"]}"#);
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("disabled"), "{body}");
    assert_eq!(store.jobs(None, None, 0, 1).unwrap().total, 0);
}

#[test]
fn only_the_right_token_adds_jobs_and_a_repeated_list_adds_nothing() {
    let db = TestDatabase::sqlite();
    let (url, store) = start(&db, Some(TOKEN));
    store.load_jobs(&["job-1".to_owned(), "job-2".to_owned()], false).unwrap();
    for wrong in [None, Some("an-admin-token-of-some-lengtH"), Some("")] {
        let (status, body) = add_jobs(&url, wrong, r#"{"jobs": ["job-3"]}"#);
        assert_eq!(status, 401, "{wrong:?}: {body}");
    }
    assert_eq!(store.jobs(None, None, 0, 1).unwrap().total, 2, "refused requests change nothing");
    let (status, body) = add_jobs(&url, Some(TOKEN), r#"{"jobs": ["job-2", "job-3", "job-4", "job-3"]}"#);
    assert_eq!((status, body.as_str()), (200, r#"{"added":2,"skipped":2}"#));
    let (status, body) = add_jobs(&url, Some(TOKEN), r#"{"jobs": ["job-2", "job-3", "job-4", "job-3"]}"#);
    assert_eq!((status, body.as_str()), (200, r#"{"added":0,"skipped":4}"#));
    assert_eq!(store.job(4).unwrap().data[0].as_deref(), Some("job-4"));
    assert_eq!(add_jobs(&url, Some(TOKEN), r#"{"jobs": []}"#).0, 400);
    assert_eq!(add_jobs(&url, Some(TOKEN), r#"{"jobs": "job-5"}"#).0, 422);
}

/// Every admin route, as (method, path, body).
const ROUTES: [(&str, &str, &str); 6] = [
    ("POST", "/v1/admin/jobs", r#"{"jobs": ["x"]}"#),
    ("POST", "/v1/admin/jobs/requeue", "{}"),
    ("POST", "/v1/admin/jobs/cancel", r#"{"stage": "a"}"#),
    ("POST", "/v1/admin/stages/a/pause", ""),
    ("POST", "/v1/admin/stages/a/resume", ""),
    ("GET", "/v1/admin/actions", ""),
];

/// Sends one of [`ROUTES`] with `token`: its status.
fn call(url: &str, (method, path, body): (&str, &str, &str), token: Option<&str>) -> u16 {
    if method == "POST" {
        return post(url, path, token, body).0;
    }
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let mut request = agent.get(format!("{url}{path}"));
    if let Some(token) = token {
        request = request.header("Authorization", &format!("Bearer {token}"));
    }
    request.call().expect("the server answers").status().as_u16()
}

#[test]
fn every_admin_route_refuses_a_missing_or_wrong_token_and_is_off_without_one() {
    let db = TestDatabase::sqlite();
    let (url, store) = start(&db, Some(TOKEN));
    store.load_jobs(&["job-1".to_owned()], false).unwrap();
    for route in ROUTES {
        for wrong in [None, Some("not-the-admin-token-at-all"), Some("")] {
            assert_eq!(call(&url, route, wrong), 401, "{route:?} with {wrong:?}");
        }
    }
    assert!(store.admin_actions(10).unwrap().is_empty(), "refused requests change nothing");
    assert!(!store.is_paused(StageId::A).unwrap());
    assert_eq!(store.job(1).unwrap().summary.state, JobState::Open);
    let db = TestDatabase::sqlite();
    let (off, _) = start(&db, None);
    for route in ROUTES {
        assert_eq!(call(&off, route, Some(TOKEN)), 404, "{route:?}");
    }
}

#[test]
fn a_paused_stage_shows_no_jobs_to_distcompute_workers_until_resumed() {
    let db = TestDatabase::sqlite();
    let (url, store) = start(&db, Some(TOKEN));
    store.load_jobs(&["job-1".to_owned(), "job-2".to_owned()], false).unwrap();
    let admin = AdminClient::new(&url, TOKEN);
    let workers = TrackerClient::new(&url);
    let worker = workers.register("volunteer", "a").unwrap();
    assert!(admin.pause(StageId::A).unwrap());
    assert!(!admin.pause(StageId::A).unwrap());
    assert_eq!(workers.job_count("a").unwrap(), 0);
    assert!(matches!(worker.new_job(), Err(ClientError::NoJob(_))));
    let (status, body) = post(&url, "/v1/admin/stages/z/pause", Some(TOKEN), "");
    assert_eq!(status, 400, "{body}");
    let dashboard: serde_json::Value =
        ureq::get(format!("{url}/v1/dashboard")).call().unwrap().body_mut().read_json().unwrap();
    assert_eq!(dashboard["stages"][0]["paused"]["paused_by"].as_str().map(|by| by.starts_with("admin@127.0.0.1")), Some(true));
    assert_eq!(dashboard["actions"][0]["action"], "pause");
    assert!(admin.resume(StageId::A).unwrap());
    assert_eq!(workers.job_count("a").unwrap(), 2);
    assert_eq!(worker.new_job().unwrap().number, cascade_tracker::JobId(1));
}

#[test]
fn requeue_cancel_and_the_action_log_over_http() {
    let db = TestDatabase::sqlite();
    let (url, store) = start(&db, Some(TOKEN));
    store.load_jobs(&(1..=4).map(|n| format!("job-{n}")).collect::<Vec<_>>(), false).unwrap();
    let admin = AdminClient::new(&url, TOKEN);
    let worker = TrackerClient::new(&url).register("volunteer", "a").unwrap();
    let job = worker.new_job().unwrap();
    assert_eq!(job.number, cascade_tracker::JobId(1));
    let (status, body) = post(&url, "/v1/admin/jobs/cancel", Some(TOKEN), "{}");
    assert_eq!(status, 403, "cancelling everything needs a stage or numbers: {body}");
    let (status, body) = post(&url, "/v1/admin/jobs/requeue", Some(TOKEN), "[]");
    assert_eq!(status, 422, "a list is not a selection (it would read as every job): {body}");
    assert_eq!(admin.cancel(&JobSelection { stage: None, numbers: vec![1, 2] }).unwrap(), 2);
    assert!(worker.complete_job("late").is_err(), "the cancelled job's lease is void");
    assert_eq!(store.job(1).unwrap().summary.error.as_deref().map(|e| e.starts_with("cancelled by admin@")), Some(true));
    assert_eq!(admin.requeue(&JobSelection { stage: Some(StageId::A), numbers: vec![] }).unwrap(), 2);
    assert_eq!(store.job(2).unwrap().summary.state, JobState::Open);
    assert_eq!(admin.add_jobs(&["job-4".to_owned(), "job-5".to_owned()]).unwrap().added, 1);
    let log = admin.actions(10).unwrap();
    let actions: Vec<&str> = log.iter().map(|a| a.action.as_str()).collect();
    assert_eq!(actions, ["add", "requeue", "cancel"]);
    assert_eq!(log[2].detail, "jobs 1, 2: 2 jobs");
    assert!(log.iter().all(|a| a.actor.starts_with("admin@127.0.0.1")), "{log:?}");
    let wrong = AdminClient::new(&url, "not-the-admin-token-at-all");
    assert!(matches!(wrong.actions(1), Err(ClientError::Server { status: 401, .. })));
}
