//! Network faults under a running pipeline: the daemon's connections to PostgreSQL are cut for
//! a while (as in a database restart or a partition) and slowed, and so are a remote worker's
//! connections to the tracker. The daemon answers 503 with `Retry-After` meanwhile, reconnects
//! by itself, and every job still finishes every stage with nothing lost and no completion
//! counted that a lease expiry does not explain.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use cascade_tests::fault_proxy::FaultProxy;
use cascade_tests::{get_answer, wait_until, Daemon};
use cascade_tracker::testing::TestDatabase;
use cascade_tracker::{DatabaseUrl, JobState, JobStore, StageId, StoreConfig, SystemClock};

const BINARY: &str = env!("CARGO_BIN_EXE_cascade-test-pipeline");
const JOBS: i64 = 300;
/// Where the test PostgreSQL server listens.
const POSTGRES: &str = "127.0.0.1:5432";

/// The store of a two-stage pipeline on `db`, read directly beside the daemon.
fn two_stage_store(db: &TestDatabase) -> JobStore {
    let config = StoreConfig {
        stage_names: [Some("a".into()), Some("b".into()), None, None, None],
        ..StoreConfig::default()
    };
    JobStore::open(&DatabaseUrl::parse(&db.url_string()), config, Arc::new(SystemClock), 2).unwrap()
}

#[test]
fn a_pipeline_survives_database_and_worker_network_faults_with_nothing_lost() {
    let db = TestDatabase::postgres();
    let database_proxy = FaultProxy::start(POSTGRES.parse().unwrap());
    let through_proxy = db.url_string().replace(POSTGRES, &database_proxy.addr().to_string());
    let dir = tempfile::tempdir().unwrap();
    let stage = |letter: &str, workers: usize| {
        format!(
            "[stages.{letter}]\nname = \"{letter}\"\nkind = \"append\"\nworkers = {workers}\nqueue = 4\n\
             [stages.{letter}.settings]\nsuffix = \"|{letter}\"\ndelay-ms = 5\n"
        )
    };
    let toml = format!(
        "project = \"faults\"\ndatabase = \"{through_proxy}\"\nsweep-interval = \"200ms\"\n\
         [engine]\nartifacts = \"artifacts\"\nlease-ttl = \"2s\"\nmax-attempts = 50\nretry-backoff = \"50ms\"\n\
         max-retry-backoff = \"500ms\"\nshutdown-grace = \"200ms\"\npoll-interval = \"50ms\"\n{}{}",
        stage("a", 2),
        stage("b", 1)
    );
    let config = dir.path().join("cascade.toml");
    std::fs::write(&config, toml).unwrap();
    let brace = format!("job-{{1..{JOBS}}}");
    let args = ["run", "--config", config.to_str().unwrap(), "--no-progress", "--brace", &brace, "--until-done"];
    let mut daemon = Daemon::start_in(Path::new(BINARY), &args, 0, Some(dir.path()));
    let tracker: SocketAddr = daemon.url.trim_start_matches("http://").parse().unwrap();
    let tracker_proxy = FaultProxy::start(tracker);
    let remote = Command::new(BINARY)
        .args(["worker", "--tracker", &format!("http://{}", tracker_proxy.addr()), "--stage", "b", "--kind", "append"])
        .args(["--nickname", "remote", "--settings", r#"{"suffix": "|b", "delay-ms": 5}"#])
        .current_dir(dir.path())
        .env("CASCADE_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("the remote worker starts");

    let store = two_stage_store(&db);
    let done = || store.stage_counts().map_or(0, |counts| counts[1].done);
    wait_until("some jobs are done", Duration::from_secs(60), || done() >= 20);

    // The database goes away: the tracker answers 503 with Retry-After, and stays up.
    let count_url = format!("{}/api/jobCount?stage=a", daemon.url);
    database_proxy.cut();
    tracker_proxy.cut();
    let (code, retry_after, _) = get_answer(&count_url);
    assert_eq!((code, retry_after.as_deref()), (503, Some("2")), "while the database is unreachable");
    std::thread::sleep(Duration::from_secs(3));
    database_proxy.restore();
    tracker_proxy.restore();
    wait_until("the tracker reconnects", Duration::from_secs(30), || get_answer(&count_url).0 == 200);

    // Then slow links to both, and a second, shorter partition.
    database_proxy.delay(Duration::from_millis(20));
    tracker_proxy.delay(Duration::from_millis(30));
    std::thread::sleep(Duration::from_secs(2));
    database_proxy.cut();
    std::thread::sleep(Duration::from_secs(1));
    database_proxy.restore();
    database_proxy.delay(Duration::ZERO);
    tracker_proxy.delay(Duration::ZERO);

    let exit = daemon.wait_exit(Duration::from_secs(240)).expect("the run finishes by itself");
    assert!(exit.success(), "the daemon survived the faults: {exit:?}");
    let mut remote = remote;
    let _ = remote.kill();
    let _ = remote.wait();

    let mut completions: HashMap<(i64, StageId), usize> = HashMap::new();
    let mut expiries = 0;
    for n in 1..=JOBS {
        let job = store.job(n).unwrap();
        assert_eq!(job.summary.state, JobState::Done, "job {n}: {:?}", job.summary.error);
        let input = job.data[0].clone().unwrap();
        assert_eq!(job.result, Some(format!("{input}|a|b")), "job {n}");
        for event in &job.events {
            match event.kind.as_str() {
                "complete" => *completions.entry((n, event.stage)).or_default() += 1,
                "expire" => expiries += 1,
                _ => {}
            }
        }
    }
    assert_eq!(completions.len() as i64, JOBS * 2, "every job completed both stages");
    let repeated: usize = completions.values().map(|&c| c - 1).sum();
    assert!(repeated <= expiries, "{repeated} repeated completions, {expiries} lease expiries");
    println!("faults: {JOBS} jobs, {repeated} repeated completions, {expiries} lease expiries");
}

#[test]
fn a_worker_frozen_past_its_lease_cannot_complete_the_job_it_held() {
    const JOBS: i64 = 60;
    let db = TestDatabase::sqlite();
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        "project = \"freeze\"\ndatabase = \"{}\"\nsweep-interval = \"200ms\"\nidle-timeout = \"2s\"\n\
         [engine]\nartifacts = \"artifacts\"\nlease-ttl = \"1s\"\nretry-backoff = \"10ms\"\nmax-retry-backoff = \"50ms\"\n\
         shutdown-grace = \"200ms\"\npoll-interval = \"20ms\"\n\
         [stages.a]\nname = \"a\"\nkind = \"append\"\nworkers = 2\n[stages.a.settings]\nsuffix = \"|a\"\n\
         [stages.b]\nname = \"b\"\nkind = \"append\"\nworkers = 1\n[stages.b.settings]\nsuffix = \"|b\"\ndelay-ms = 50\n",
        db.url_string()
    );
    let config = dir.path().join("cascade.toml");
    std::fs::write(&config, toml).unwrap();
    let brace = format!("job-{{1..{JOBS}}}");
    let args = ["run", "--config", config.to_str().unwrap(), "--no-progress", "--brace", &brace];
    let daemon = Daemon::start_in(Path::new(BINARY), &args, 0, Some(dir.path()));
    // A remote stage-b worker whose jobs take long enough to be caught holding one.
    let mut remote = Command::new(BINARY)
        .args(["worker", "--tracker", &daemon.url, "--stage", "b", "--kind", "append"])
        .args(["--nickname", "sleeper", "--settings", r#"{"suffix": "|b", "delay-ms": 1000}"#])
        .current_dir(dir.path())
        .env("CASCADE_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("the remote worker starts");
    let store = two_stage_store(&db);
    let mut held = None;
    wait_until("the remote worker holds a job", Duration::from_secs(60), || {
        let workers = store.workers(Some(StageId::B), 0, 50).map(|page| page.items).unwrap_or_default();
        held = workers.into_iter().find(|w| w.nickname == "sleeper").and_then(|w| w.job.map(|job| (job, w.display_name)));
        held.is_some()
    });
    let (job, sleeper) = held.unwrap();
    let signal = |name: &str| {
        let sent = Command::new("kill").args([name, &remote.id().to_string()]).status().unwrap();
        assert!(sent.success(), "kill {name}");
    };
    signal("-STOP");
    // Past the idle timeout: the sleeper is swept and its job goes to the local worker.
    wait_until("the frozen worker's job is done by another", Duration::from_secs(60), || {
        store.job(job).is_ok_and(|detail| detail.summary.state == JobState::Done)
    });
    signal("-CONT");
    // The sleeper wakes, finishes its job and reports it to the running tracker, which refuses.
    std::thread::sleep(Duration::from_secs(3));
    let all_done = || store.stage_counts().is_ok_and(|counts| counts[1].done == JOBS);
    wait_until("every job is done", Duration::from_secs(120), all_done);
    let _ = remote.kill();
    let _ = remote.wait();
    drop(daemon);

    let detail = store.job(job).unwrap();
    assert_eq!(detail.result, Some(format!("{}|a|b", detail.data[0].clone().unwrap())));
    let completed_by: Vec<Option<String>> =
        detail.events.iter().filter(|e| e.kind == "complete" && e.stage == StageId::B).map(|e| e.worker.clone()).collect();
    assert_eq!(completed_by.len(), 1, "completed once at stage b: {:?}", detail.events);
    assert_ne!(completed_by[0].as_deref(), Some(sleeper.as_str()), "not by the frozen worker");
    for n in 1..=JOBS {
        let job = store.job(n).unwrap();
        assert_eq!(job.summary.state, JobState::Done, "job {n}");
        let completions = job.events.iter().filter(|e| e.kind == "complete").count();
        assert_eq!(completions, 2, "job {n} completed each stage once");
    }
}
