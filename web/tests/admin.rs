//! The admin API: disabled without a token, 401 without the right one, and adding jobs to a
//! running project with the same rules as `cascade init --append`.

mod common;

use std::sync::Arc;
use std::time::Duration;

use cascade_tracker::testing::TestDatabase;
use cascade_tracker::{JobStore, ManualClock};
use cascade_web::{build_server, ServerConfig};
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
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let mut request = agent.post(format!("{url}/v1/admin/jobs")).header("Content-Type", "application/json");
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
