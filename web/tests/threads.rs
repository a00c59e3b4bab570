//! The HTTP worker threads of a real server run in Linux's `SCHED_BATCH` class, so a new
//! request never preempts the SQLite writer every request waits for.
#![cfg(target_os = "linux")]

mod common;

use cascade_tracker::testing::TestDatabase;
use common::TestServer;

/// The scheduling policy of every thread of this process whose name starts with `prefix`.
fn policies_of_threads(prefix: &str) -> Vec<u32> {
    let mut policies = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").expect("procfs") {
        let task = task.expect("a task entry").path();
        let (Ok(name), Ok(stat)) = (std::fs::read_to_string(task.join("comm")), std::fs::read_to_string(task.join("stat")))
        else {
            continue; // the thread ended meanwhile
        };
        if name.starts_with(prefix) {
            // Fields after the parenthesised name start at field 3; the policy is field 41.
            let fields: Vec<&str> = stat[stat.rfind(')').expect("stat has a name") + 2..].split(' ').collect();
            policies.push(fields[41 - 3].parse().expect("a policy number"));
        }
    }
    policies
}

#[test]
fn http_worker_threads_run_without_wakeup_preemption() {
    let server = TestServer::start(TestDatabase::sqlite());
    let (status, _, _) = server.get("/api/jobCount?stage=a");
    assert_eq!(status, 200);
    // actix names its worker threads `actix-rt|system:N|arbiter:M`; `comm` keeps 15 bytes.
    let policies = policies_of_threads("actix-rt|system");
    assert_eq!(policies.len(), 2, "the test server runs two HTTP workers");
    assert!(policies.iter().all(|&policy| policy == 3), "SCHED_BATCH is policy 3: {policies:?}");
}
