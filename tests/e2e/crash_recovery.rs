//! `kill -9` of `cascade serve` in the middle of a run, then a restart on the same database:
//! no job is lost, none is completed twice, and leased jobs return when their lease expires.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cascade_tests::{cascade, wait_until, Daemon};
use cascade_tracker::testing::TestDatabase;
use cascade_web::{ClientError, TrackerClient, WorkerSession};

const JOBS: usize = 300;

/// Retries a call while the tracker is unreachable (it is being killed and restarted).
fn retrying<T>(mut call: impl FnMut() -> Result<T, ClientError>) -> Result<T, ClientError> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match call() {
            Err(e) if e.is_transport() && Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            other => return other,
        }
    }
}

/// A worker that processes jobs of `stage` until told to stop, surviving the tracker's crash.
fn run_worker(url: String, stage: &'static str, stop: Arc<AtomicBool>) {
    let client = TrackerClient::new(&url);
    let mut session: WorkerSession = retrying(|| client.register("crash-test", stage)).unwrap();
    while !stop.load(Ordering::SeqCst) {
        match retrying(|| session.new_job()) {
            Ok(job) => match retrying(|| session.complete_job(&format!("{}>{stage}", job.data))) {
                // NoJob: the completion was recorded but its answer was lost in the crash, or
                // the lease was lost; either way the tracker is consistent and we go on.
                Ok(()) | Err(ClientError::NoJob(_)) => {}
                Err(ClientError::UnknownWorker(_)) => session = retrying(|| client.register("crash-test", stage)).unwrap(),
                Err(e) => panic!("complete failed: {e}"),
            },
            Err(ClientError::NoJob(_)) => std::thread::sleep(Duration::from_millis(20)),
            Err(ClientError::UnknownWorker(_)) => session = retrying(|| client.register("crash-test", stage)).unwrap(),
            Err(e) => panic!("newJob failed: {e}"),
        }
    }
    session.bye();
}

fn done_count(daemon: &Daemon) -> i64 {
    daemon.get_json("/v1/stats")["eta"]["done"].as_i64().unwrap()
}

fn kill_and_restart_loses_nothing(db: &TestDatabase) {
    let url = db.url_string();
    let (ok, _, err) = cascade(&["init", "--database", &url, "--brace", &format!("job-{{1..{JOBS}}}")]);
    assert!(ok, "{err}");
    let mut daemon = Daemon::start(
        &["--database", &url, "--stage", "a=CPU", "--stage", "b=GPU", "--idle-timeout", "3s", "--sweep-interval", "200ms"],
        0,
    );

    // A worker that takes a job and vanishes: its lease must expire and the job be re-done.
    let vanishing = TrackerClient::new(&daemon.url).register("vanishing", "a").unwrap();
    let abandoned = vanishing.new_job().unwrap().number;

    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = ["a", "a", "b", "b"]
        .into_iter()
        .map(|stage| {
            let (url, stop) = (daemon.url.clone(), Arc::clone(&stop));
            std::thread::spawn(move || run_worker(url, stage, stop))
        })
        .collect();

    wait_until("a third of the jobs are through stage a", Duration::from_secs(60), || {
        daemon.get_json("/v1/stats")["stages"][0]["done"].as_i64().unwrap() >= (JOBS / 3) as i64
    });
    daemon.kill9();
    std::thread::sleep(Duration::from_millis(300));
    daemon.restart();

    wait_until("every job is done", Duration::from_secs(120), || done_count(&daemon) == JOBS as i64);
    stop.store(true, Ordering::SeqCst);
    for worker in workers {
        worker.join().unwrap();
    }

    for number in 1..=JOBS {
        let job = daemon.get_json(&format!("/v1/jobs/{number}"));
        assert_eq!(job["summary"]["state"], "done", "job {number}");
        assert_eq!(job["result"], format!("job-{number}>a>b"), "job {number}");
        let completions: Vec<&str> = job["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["kind"] == "complete")
            .map(|e| e["stage"].as_str().unwrap())
            .collect();
        assert_eq!(completions, ["a", "b"], "job {number} must complete once per stage");
    }
    let abandoned_job = daemon.get_json(&format!("/v1/jobs/{abandoned}"));
    assert!(
        abandoned_job["events"].as_array().unwrap().iter().any(|e| e["kind"] == "expire"),
        "the vanished worker's lease expired: {abandoned_job}"
    );
    let credited: i64 = daemon.get_json("/v1/leaderboard")["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["jobs_completed"].as_i64().unwrap())
        .sum();
    assert_eq!(credited, 2 * JOBS as i64, "every completion credited exactly once");
}

#[test]
fn kill_9_and_restart_loses_nothing_on_sqlite() {
    kill_and_restart_loses_nothing(&TestDatabase::sqlite());
}

#[test]
fn kill_9_and_restart_loses_nothing_on_postgres() {
    kill_and_restart_loses_nothing(&TestDatabase::postgres());
}
