//! The HTTP worker threads of a real server run in Linux's `SCHED_BATCH` class, so a new
//! request never preempts the SQLite writer every request waits for.
#![cfg(target_os = "linux")]

mod common;

use cascade_threads::testing::threads_scheduling;
use cascade_tracker::testing::TestDatabase;
use common::TestServer;

#[test]
fn http_worker_threads_run_without_wakeup_preemption() {
    let server = TestServer::start(TestDatabase::sqlite());
    let (status, _, _) = server.get("/api/jobCount?stage=a");
    assert_eq!(status, 200);
    // actix names its worker threads `actix-rt|system:N|arbiter:M`; `comm` keeps 15 bytes.
    let policies: Vec<u32> = threads_scheduling(std::process::id())
        .into_iter()
        .filter(|thread| thread.name.starts_with("actix-rt|system"))
        .map(|thread| thread.policy)
        .collect();
    assert_eq!(policies.len(), 2, "the test server runs two HTTP workers");
    assert!(policies.iter().all(|&policy| policy == 3), "SCHED_BATCH is policy 3: {policies:?}");
}
