//! The lease protocol over HTTP, through the client's `Leases`: a claim tells the attempt number
//! and the lease, outcomes name the lease they end, and one sent again after its answer was
//! lost changes nothing; the distcompute answers keep their exact shape.

mod common;

use std::time::Duration;

use cascade_tracker::testing::TestDatabase;
use cascade_tracker::{JobId, LeaseError, Leases, StageId};
use cascade_web::TrackerClient;
use common::TestServer;

fn server_with_jobs(jobs: usize) -> TestServer {
    let server = TestServer::start(TestDatabase::sqlite());
    let items: Vec<String> = (1..=jobs).map(|i| format!("job-{i}")).collect();
    server.store.load_jobs(&items, false).unwrap();
    server
}

#[test]
fn a_remote_claim_tells_the_attempt_and_lease_and_a_repeated_completion_is_refused() {
    let server = server_with_jobs(3);
    let client = TrackerClient::new(&server.url);
    let worker = Leases::register(&client, "remote", StageId::A, None).unwrap().token;

    let first = client.claim(&worker, None).unwrap().expect("a job");
    assert_eq!((first.number, first.stage, first.data.as_str(), first.attempt), (JobId(1), StageId::A, "job-1", 1));
    // Given back untouched: the next claim of the same job is still its first attempt.
    client.release(&worker, first.held()).unwrap();
    let again = client.claim(&worker, Some(JobId(1))).unwrap().expect("job 1 again");
    assert_eq!(again.attempt, 1);
    assert!(again.lease > first.lease, "every claim is a new lease");
    assert_eq!(client.release(&worker, first.held()), Err(LeaseError::LeaseLost), "an older lease is refused");

    let (done, next) = client.complete(&worker, again.held(), "out-1", true).unwrap();
    assert_eq!((done.number, done.next_stage), (JobId(1), Some(StageId::B)));
    let next = next.expect("the next job, claimed in the same step");
    assert_eq!(next.number, JobId(2));
    // The answer was lost and the worker sends the completion again: it must not complete job 2.
    assert_eq!(client.complete(&worker, again.held(), "out-1", true), Err(LeaseError::LeaseLost));
    assert_eq!(client.retry_later(&worker, again.held(), Duration::ZERO, "x"), Err(LeaseError::LeaseLost));
    assert_eq!(client.fail(&worker, again.held(), "x"), Err(LeaseError::LeaseLost));
    assert_eq!(client.flag(&worker, again.held(), "x"), Err(LeaseError::LeaseLost));
    assert_eq!(server.store.job(2).unwrap().data[1], None);
    client.complete(&worker, next.held(), "out-2", false).unwrap();
    assert_eq!(server.store.job(2).unwrap().data[1].as_deref(), Some("out-2"));

    // A transient failure keeps the attempt counted; the next claim says so.
    let third = client.claim(&worker, None).unwrap().expect("job 3");
    client.retry_later(&worker, third.held(), Duration::ZERO, "busy").unwrap();
    assert_eq!(client.claim(&worker, None).unwrap().map(|job| (job.number, job.attempt)), Some((JobId(3), 2)));
    client.bye(&worker).unwrap();
    assert_eq!(client.claim(&worker, None), Err(LeaseError::UnknownWorker));
}

#[test]
fn the_distcompute_answers_keep_their_exact_bytes() {
    let server = server_with_jobs(1);
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let registered = agent
        .get(format!("{}/api/new?nickname=py&stage=a", server.url))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    let fields: Vec<String> =
        serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&registered).unwrap().keys().cloned().collect();
    assert_eq!(fields, ["token", "display_name", "project", "stage_name"]);
    let token = serde_json::from_str::<serde_json::Value>(&registered).unwrap()["token"].as_str().unwrap().to_owned();
    let job = agent
        .post(format!("{}/api/newJob", server.url))
        .send_json(serde_json::json!({ "token": token }))
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    assert_eq!(job, r#"{"data":"job-1","number":1}"#);
}
