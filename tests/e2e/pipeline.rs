//! The engine end to end: `cascade run` with local pools of a registered test stage
//! (`append`, see `src/bin/cascade-test-pipeline.rs`), remote `cascade worker` processes, error
//! kinds, attempt limits, backpressure, `kill -9` and graceful shutdown.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use cascade_tests::{wait_until, Daemon};
use cascade_threads::testing::threads_scheduling;
use cascade_tracker::testing::TestDatabase;
use cascade_tracker::{JobState, JobStore, StageId, StoreConfig, SystemClock};
use serde_json::Value;

const BINARY: &str = env!("CARGO_BIN_EXE_cascade-test-pipeline");

/// A pipeline directory: `cascade.toml` and the artifacts.
struct Pipeline {
    dir: tempfile::TempDir,
    database: String,
}

impl Pipeline {
    /// Writes `cascade.toml` with `database`, engine settings tuned for tests, and `stages`
    /// (TOML text).
    fn new(db: &TestDatabase, engine: &str, stages: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let database = db.url_string();
        let toml = format!(
            "project = \"test\"\ndatabase = \"{database}\"\nsweep-interval = \"200ms\"\nflag-threshold = 2\n\
             [engine]\nartifacts = \"artifacts\"\nlease-ttl = \"1s\"\nmax-attempts = 3\nretry-backoff = \"10ms\"\n\
             max-retry-backoff = \"50ms\"\nshutdown-grace = \"200ms\"\npoll-interval = \"20ms\"\n{engine}\n{stages}"
        );
        std::fs::write(dir.path().join("cascade.toml"), toml).unwrap();
        Self { dir, database }
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("cascade.toml")
    }

    /// `cascade-test-pipeline run --config … ARGS…` on a free port.
    fn run(&self, args: &[&str]) -> Daemon {
        self.run_on(0, args)
    }

    /// `cascade-test-pipeline run --config … ARGS…` on `port`.
    fn run_on(&self, port: u16, args: &[&str]) -> Daemon {
        let config = self.config();
        let mut full = vec!["run", "--config", config.to_str().unwrap(), "--no-progress"];
        full.extend_from_slice(args);
        Daemon::start_in(Path::new(BINARY), &full, port, Some(self.dir.path()))
    }

    /// A remote `cascade-test-pipeline worker` for `stage`.
    fn worker(&self, url: &str, stage: &str, suffix: &str) -> Child {
        Command::new(BINARY)
            .args(["worker", "--tracker", url, "--stage", stage, "--kind", "append", "--nickname", "remote"])
            .args(["--settings", &format!("{{\"suffix\": \"{suffix}\"}}")])
            .current_dir(self.dir.path())
            .env("CASCADE_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("worker starts")
    }

    /// The store, read directly (the daemon may or may not run).
    fn store(&self, stages: usize) -> JobStore {
        let mut stage_names: [Option<String>; 5] = Default::default();
        for (i, slot) in stage_names.iter_mut().enumerate().take(stages) {
            *slot = Some(format!("s{i}"));
        }
        let config = StoreConfig {
            project: "test".into(),
            stage_names,
            idle_timeout: Duration::from_secs(60),
            flag_threshold: 2,
            ..StoreConfig::default()
        };
        JobStore::open(&cascade_tracker::DatabaseUrl::parse(&self.database), config, Arc::new(SystemClock), 2).unwrap()
    }
}

fn append_stage(letter: &str, suffix: &str, workers: usize, queue: usize, delay_ms: u64) -> String {
    format!(
        "[stages.{letter}]\nname = \"{letter}\"\nkind = \"append\"\nworkers = {workers}\nqueue = {queue}\n\
         [stages.{letter}.settings]\nsuffix = \"{suffix}\"\ndelay-ms = {delay_ms}\n"
    )
}

/// Every job's `(state, result or error)` by its stage-a input.
fn outcomes(store: &JobStore) -> HashMap<String, (JobState, Option<String>, Option<String>)> {
    let total = store.jobs(None, None, 0, 1).unwrap().total;
    (1..=total)
        .map(|n| {
            let job = store.job(n).unwrap();
            (job.data[0].clone().unwrap(), (job.summary.state, job.result, job.summary.error))
        })
        .collect()
}

/// Completions recorded per (job, stage): exactly one each means nothing was finished twice.
fn completions(store: &JobStore, jobs: i64) -> HashMap<(i64, StageId), usize> {
    let mut counts = HashMap::new();
    for n in 1..=jobs {
        for event in store.job(n).unwrap().events.iter().filter(|e| e.kind == "complete") {
            *counts.entry((n, event.stage)).or_default() += 1;
        }
    }
    counts
}

/// Runs the test binary with `args` in the pipeline's directory until it exits.
fn run_to_exit(pipeline: &Pipeline, args: &[&str]) -> ExitStatus {
    let mut child = Command::new(BINARY)
        .args(args)
        .current_dir(pipeline.dir.path())
        .env("CASCADE_LOG", "error")
        .stdout(Stdio::null())
        .spawn()
        .expect("the test pipeline starts");
    let started = std::time::Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(started.elapsed() < Duration::from_secs(120), "{args:?} did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Writes `jobs` as the pipeline's `jobs.json`.
fn write_jobs(pipeline: &Pipeline, jobs: &[&str]) {
    std::fs::write(pipeline.dir.path().join("jobs.json"), serde_json::to_string(jobs).unwrap()).unwrap();
}

/// The number of the job whose stage-a input is `input`.
fn job_number(store: &JobStore, input: &str) -> i64 {
    let total = store.jobs(None, None, 0, 1).unwrap().total;
    (1..=total).find(|&n| store.job(n).unwrap().data[0].as_deref() == Some(input)).expect("the job exists")
}

fn stats(daemon: &Daemon) -> Vec<Value> {
    daemon.get_json("/v1/stats")["stages"].as_array().unwrap().clone()
}

fn count(stage: &Value, key: &str) -> i64 {
    stage[key].as_i64().unwrap()
}

fn five_stages_run_every_job_to_the_computed_output(db: TestDatabase) {
    const JOBS: i64 = 1000;
    let stages: String = ["a", "b", "c", "d", "e"].iter().map(|s| append_stage(s, &format!("|{s}"), 16, 8, 0)).collect();
    let pipeline = Pipeline::new(&db, "", &stages);
    let mut daemon = pipeline.run(&["--brace", "job-{1..1000}", "--until-done"]);
    let status = daemon.wait_exit(Duration::from_secs(300)).expect("the run finishes by itself");
    assert!(status.success());
    let store = pipeline.store(5);
    let outcomes = outcomes(&store);
    assert_eq!(outcomes.len() as i64, JOBS);
    for n in 1..=JOBS {
        let (state, result, _) = &outcomes[&format!("job-{n}")];
        assert_eq!(*state, JobState::Done);
        assert_eq!(result.as_deref(), Some(format!("job-{n}|a|b|c|d|e").as_str()));
    }
    let completions = completions(&store, JOBS);
    assert_eq!(completions.len() as i64, JOBS * 5);
    assert!(completions.values().all(|&c| c == 1), "a job was completed twice at a stage");
}

#[test]
fn five_stages_run_every_job_to_the_computed_output_on_sqlite() {
    five_stages_run_every_job_to_the_computed_output(TestDatabase::sqlite());
}

#[test]
fn five_stages_run_every_job_to_the_computed_output_on_postgres() {
    five_stages_run_every_job_to_the_computed_output(TestDatabase::postgres());
}

/// Stage workers, HTTP threads and the background checkpoint run as `SCHED_BATCH` (policy 3) so
/// that waking them never preempts the SQLite writer, which keeps the default class (0).
fn assert_only_the_writer_preempts(daemon: &Daemon) {
    let threads = threads_scheduling(daemon.pid());
    let of = |named: &dyn Fn(&str) -> bool| -> Vec<u32> {
        threads.iter().filter(|thread| named(&thread.name)).map(|thread| thread.policy).collect()
    };
    // Stage workers are `cascade-{stage}-{index}` (their rayon threads `cascade-{stage}-rayon…`).
    let stage_worker = |name: &str| {
        name.strip_prefix("cascade-").and_then(|rest| rest.split_once('-')).is_some_and(|(_, index)| index.parse::<usize>().is_ok())
    };
    let (stage_workers, http, checkpoint, writer) = (
        of(&stage_worker),
        of(&|name| name.starts_with("actix-rt|system")),
        of(&|name| name.starts_with("cascade-wal")),
        of(&|name| name.starts_with("cascade-sqlite")),
    );
    assert!(!stage_workers.is_empty() && !http.is_empty() && !checkpoint.is_empty(), "threads not found: {threads:?}");
    assert!(stage_workers.iter().chain(&http).chain(&checkpoint).all(|&policy| policy == 3), "{threads:?}");
    assert_eq!(writer, [0], "{threads:?}");
}

fn appending_while_workers_claim_adds_each_new_input_once(db: TestDatabase) {
    const ALL: i64 = 400;
    let stages = append_stage("a", "|a", 2, 4, 2) + &append_stage("b", "|b", 2, 4, 2);
    let pipeline = Pipeline::new(&db, "", &stages);
    let daemon = pipeline.run(&["--brace", "job-{1..200}"]);
    wait_until("the workers are busy", Duration::from_secs(60), || count(&stats(&daemon)[1], "done") >= 20);
    let config = pipeline.config();
    let append = || {
        let out = Command::new(BINARY)
            .args(["init", "--config", config.to_str().unwrap(), "--append", "--brace", "job-{150..400}"])
            .current_dir(pipeline.dir.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let added = append();
    assert!(added.contains("Added 200 jobs") && added.contains("(51 already there)"), "{added}");
    assert!(append().contains("Added 0 jobs"), "a repeated append adds nothing");
    wait_until("every job is done", Duration::from_secs(180), || count(&stats(&daemon)[1], "done") == ALL);
    let store = pipeline.store(2);
    assert_eq!(store.jobs(None, None, 0, 1).unwrap().total, ALL);
    let outcomes = outcomes(&store);
    for n in 1..=ALL {
        assert_eq!(outcomes[&format!("job-{n}")].1.as_deref(), Some(format!("job-{n}|a|b").as_str()));
    }
    let completions = completions(&store, ALL);
    assert_eq!(completions.len() as i64, ALL * 2);
    assert!(completions.values().all(|&c| c == 1), "a job was completed twice at a stage");
}

#[test]
fn appending_while_workers_claim_adds_each_new_input_once_on_sqlite() {
    appending_while_workers_claim_adds_each_new_input_once(TestDatabase::sqlite());
}

#[test]
fn appending_while_workers_claim_adds_each_new_input_once_on_postgres() {
    appending_while_workers_claim_adds_each_new_input_once(TestDatabase::postgres());
}

#[test]
fn a_slow_stage_holds_back_the_stages_before_it() {
    const JOBS: i64 = 150;
    // a and b are fast, c is slow: a and b may only run ahead by their queues and workers.
    let (workers_a, queue_a, workers_b, queue_b, workers_c) = (2, 3, 2, 4, 1);
    let stages = append_stage("a", "|a", workers_a, queue_a, 0)
        + &append_stage("b", "|b", workers_b, queue_b, 0)
        + &append_stage("c", "|c", workers_c, 1, 20);
    let db = TestDatabase::sqlite();
    let pipeline = Pipeline::new(&db, "", &stages);
    let daemon = pipeline.run(&["--brace", "job-{1..150}"]);
    let (bound_b, bound_c) = (queue_a + workers_a + workers_b, queue_b + workers_b + workers_c);
    let mut samples = 0;
    let mut max_seen = (0, 0, 0);
    let mut a_waited = false;
    wait_until("every job passes stage c", Duration::from_secs(120), || {
        let s = stats(&daemon);
        let (a, b, c) = (&s[0], &s[1], &s[2]);
        let held_a = count(a, "leased");
        let held_b = count(b, "open") + count(b, "leased");
        let held_c = count(c, "open") + count(c, "leased");
        assert!(held_a <= workers_a as i64, "stage a holds {held_a} leases");
        assert!(held_b <= bound_b as i64, "stage b holds {held_b} jobs, bound {bound_b}");
        assert!(held_c <= bound_c as i64, "stage c holds {held_c} jobs, bound {bound_c}");
        max_seen = (max_seen.0.max(held_a), max_seen.1.max(held_b), max_seen.2.max(held_c));
        // Held back: stage a still has work it is not allowed to start.
        a_waited |= count(a, "open") > 0 && count(c, "done") > 0;
        samples += 1;
        count(c, "done") == JOBS
    });
    assert!(samples > 10, "too few samples to say anything");
    assert!(a_waited, "stage a never had to wait for stage c");
    assert_only_the_writer_preempts(&daemon);
    assert!(max_seen.2 >= bound_c as i64 - 2, "stage c's queue never filled: {max_seen:?}");
}

#[test]
fn each_error_kind_leads_to_its_documented_state() {
    let stages = append_stage("a", "|a", 2, 4, 0) + &append_stage("b", "|b", 2, 4, 0);
    let db = TestDatabase::sqlite();
    let pipeline = Pipeline::new(&db, "", &stages);
    let jobs = ["ok-1", "ok-2", "flaky@a", "flaky@b", "invalid@a", "invalid@b", "transient@b", "fatal@b", "panic@a", "ok-3"];
    let list = serde_json::to_string(&jobs).unwrap();
    std::fs::write(pipeline.dir.path().join("jobs.json"), list).unwrap();
    let mut daemon = pipeline.run(&["--json", "jobs.json", "--until-done"]);
    assert!(daemon.wait_exit(Duration::from_secs(120)).expect("the run finishes").success());
    let store = pipeline.store(2);
    let outcomes = outcomes(&store);
    let expect_done = |input: &str| {
        let (state, result, _) = &outcomes[input];
        assert_eq!((*state, result.clone()), (JobState::Done, Some(format!("{input}|a|b"))), "{input}");
    };
    let expect_failed = |input: &str, error: &str| {
        let (state, _, message) = &outcomes[input];
        assert_eq!(*state, JobState::Failed, "{input}");
        let message = message.clone().unwrap_or_default();
        assert!(message.contains(error), "{input}: {message:?} lacks {error:?}");
    };
    for ok in ["ok-1", "ok-2", "ok-3", "flaky@a", "flaky@b"] {
        expect_done(ok);
    }
    expect_failed("invalid@a", "invalid input: invalid@a is not acceptable");
    expect_failed("invalid@b", "after 2 send-backs");
    expect_failed("transient@b", "gave up after 3 attempts: service busy");
    expect_failed("fatal@b", "cannot ever work");
    expect_failed("panic@a", "stage panicked: stage bug triggered by panic@a");
    // The invalid input at b went back to a twice, with a's input intact each time.
    let number = (1..=jobs.len() as i64).find(|&n| store.job(n).unwrap().data[0].as_deref() == Some("invalid@b")).unwrap();
    let events = store.job(number).unwrap().events;
    assert_eq!(events.iter().filter(|e| e.kind == "sent_back").count(), 2);
    assert_eq!(events.iter().filter(|e| e.kind == "complete" && e.stage == StageId::A).count(), 3);
}

#[test]
fn a_job_that_kills_the_daemon_fails_after_max_attempts_and_the_rest_finish() {
    let db = TestDatabase::sqlite();
    let pipeline = Pipeline::new(&db, "", &append_stage("a", "|a", 1, 4, 0));
    write_jobs(&pipeline, &["ok-1", "abort@a", "ok-2", "ok-3"]);
    let config = pipeline.config();
    let run = |load: bool| {
        let mut args = vec!["run", "--config", config.to_str().unwrap(), "--no-progress", "--until-done"];
        args.extend(["--bind", "127.0.0.1:0"]);
        if load {
            args.extend(["--json", "jobs.json"]);
        }
        run_to_exit(&pipeline, &args)
    };
    // The poison job takes the daemon down on each of its attempts; each restart re-claims it
    // once its lease expired, until the claim finds its attempts used up.
    let mut crashes = 0;
    let mut status = run(true);
    while !status.success() {
        crashes += 1;
        assert!(crashes <= 3, "the daemon crashed more often than max-attempts: {status}");
        status = run(false);
    }
    assert_eq!(crashes, 3, "each of the 3 attempts crashed the daemon");
    let store = pipeline.store(1);
    let outcomes = outcomes(&store);
    for ok in ["ok-1", "ok-2", "ok-3"] {
        assert_eq!(outcomes[ok].0, JobState::Done, "{ok}");
    }
    let (state, _, error) = &outcomes["abort@a"];
    assert_eq!(*state, JobState::Failed);
    assert_eq!(error.as_deref(), Some("gave up after 3 attempts; last: lease expired"));
    let events = store.job(job_number(&store, "abort@a")).unwrap().events;
    let kinds = |kind: &str| events.iter().filter(|e| e.kind == kind).count();
    assert_eq!((kinds("claim"), kinds("expire"), kinds("fail")), (3, 3, 1), "{events:?}");
    let failed = store.jobs(None, Some(JobState::Failed), 0, 10).unwrap();
    assert_eq!(failed.total, 1);
}

#[test]
fn remote_workers_end_poison_and_transient_jobs_after_max_attempts() {
    let db = TestDatabase::sqlite();
    // Stage a has no kind: only remote workers work on it.
    let pipeline = Pipeline::new(&db, "", "[stages.a]\nname = \"remote\"\n");
    write_jobs(&pipeline, &["ok-1", "abort@a", "ok-2", "transient@a", "ok-3"]);
    // Remote workers' leases last the idle timeout: keep it short so a crashed one's job returns.
    let daemon = pipeline.run(&["--json", "jobs.json", "--idle-timeout", "2s"]);
    let settled = |daemon: &Daemon| {
        let a = &stats(daemon)[0];
        count(a, "open") == 0 && count(a, "leased") == 0
    };
    let mut crashes = 0;
    let started = std::time::Instant::now();
    while !settled(&daemon) {
        assert!(started.elapsed() < Duration::from_secs(120), "the jobs never settled");
        let mut worker = pipeline.worker(&daemon.url, "a", "|a");
        loop {
            if let Some(status) = worker.try_wait().unwrap() {
                assert!(!status.success(), "the worker stopped by itself");
                crashes += 1;
                break;
            }
            if settled(&daemon) {
                worker.kill().unwrap();
                worker.wait().unwrap();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    assert_eq!(crashes, 3, "each of the 3 attempts of the poison job crashed the worker");
    let store = pipeline.store(1);
    let outcomes = outcomes(&store);
    for ok in ["ok-1", "ok-2", "ok-3"] {
        assert_eq!(outcomes[ok].0, JobState::Done, "{ok}");
    }
    let (state, _, error) = &outcomes["abort@a"];
    assert_eq!((*state, error.as_deref()), (JobState::Failed, Some("gave up after 3 attempts; last: lease expired")));
    // The remote worker learnt each attempt's number, so its policy ended the transient job.
    let (state, _, error) = &outcomes["transient@a"];
    assert_eq!((*state, error.as_deref()), (JobState::Failed, Some("gave up after 3 attempts: service busy")));
    let events = store.job(job_number(&store, "transient@a")).unwrap().events;
    assert_eq!(events.iter().filter(|e| e.kind == "retry").count(), 2, "{events:?}");
    let failed = daemon.get_json("/v1/jobs?state=failed");
    assert_eq!(failed["total"].as_i64(), Some(2), "{failed}");
}

#[test]
fn local_and_remote_workers_share_one_tracker() {
    const JOBS: i64 = 200;
    // Stage b has no kind: only remote workers work on it.
    let stages = append_stage("a", "|a", 2, 4, 0) + "[stages.b]\nname = \"remote\"\n";
    let db = TestDatabase::sqlite();
    let pipeline = Pipeline::new(&db, "", &stages);
    let daemon = pipeline.run(&["--brace", "job-{1..200}"]);
    let mut remote = pipeline.worker(&daemon.url, "b", "|b");
    wait_until("every job is done", Duration::from_secs(120), || count(&stats(&daemon)[1], "done") == JOBS);
    let board = daemon.get_json("/v1/leaderboard");
    let credit: HashMap<String, i64> = board["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["nickname"].as_str().unwrap().to_owned(), e["jobs_completed"].as_i64().unwrap()))
        .collect();
    assert_eq!(credit.get("remote"), Some(&JOBS), "{credit:?}");
    assert_eq!(credit.get("local/append"), Some(&JOBS), "{credit:?}");
    // SIGTERM: the remote worker leaves cleanly (bye).
    let sent = Command::new("kill").args(["-TERM", &remote.id().to_string()]).status().unwrap();
    assert!(sent.success());
    assert!(remote.wait().unwrap().success());
    let remote_workers = daemon.get_json("/v1/workers?stage=b")["total"].as_i64().unwrap();
    assert_eq!(remote_workers, 0, "the remote worker said bye");
    let outcomes = outcomes(&pipeline.store(2));
    for n in 1..=JOBS {
        assert_eq!(outcomes[&format!("job-{n}")].1.as_deref(), Some(format!("job-{n}|a|b").as_str()));
    }
}

#[test]
fn kill_9_of_a_remote_worker_or_the_daemon_loses_no_job() {
    const JOBS: i64 = 300;
    let stages = append_stage("a", "|a", 2, 4, 2) + "[stages.b]\nname = \"remote\"\n";
    let db = TestDatabase::sqlite();
    let pipeline = Pipeline::new(&db, "", &stages);
    // Remote workers' leases last the idle timeout: keep it short so a killed one's job returns.
    let mut daemon = pipeline.run(&["--brace", "job-{1..300}", "--idle-timeout", "2s"]);
    let mut remote = pipeline.worker(&daemon.url, "b", "|b");
    let done = |daemon: &Daemon| count(&stats(daemon)[1], "done");
    wait_until("some jobs are done", Duration::from_secs(60), || done(&daemon) >= JOBS / 4);
    remote.kill().unwrap();
    remote.wait().unwrap();
    let mut remote = pipeline.worker(&daemon.url, "b", "|b");
    wait_until("half the jobs are done", Duration::from_secs(60), || done(&daemon) >= JOBS / 2);
    let port = daemon.port();
    daemon.kill9();
    std::thread::sleep(Duration::from_millis(200));
    // Same port: the remote worker reconnects by itself.
    daemon = pipeline.run_on(port, &["--idle-timeout", "2s"]);
    wait_until("every job is done after the crashes", Duration::from_secs(120), || done(&daemon) == JOBS);
    remote.kill().unwrap();
    remote.wait().unwrap();
    let store = pipeline.store(2);
    let outcomes = outcomes(&store);
    for n in 1..=JOBS {
        assert_eq!(outcomes[&format!("job-{n}")].1.as_deref(), Some(format!("job-{n}|a|b").as_str()));
    }
    let completions = completions(&store, JOBS);
    assert_eq!(completions.len() as i64, JOBS * 2);
    assert!(completions.values().all(|&c| c == 1), "a job was completed twice at a stage");
}

#[test]
fn graceful_shutdown_releases_held_leases_at_once() {
    // Jobs that take a minute, leases that last a minute: only a release can free them quickly.
    let stages = append_stage("a", "|a", 3, 4, 60_000);
    let db = TestDatabase::sqlite();
    let pipeline = Pipeline::new(&db, "", "");
    std::fs::write(
        pipeline.config(),
        std::fs::read_to_string(pipeline.config()).unwrap().replace("lease-ttl = \"1s\"", "lease-ttl = \"60s\"") + &stages,
    )
    .unwrap();
    let mut daemon = pipeline.run(&["--brace", "job-{1..10}"]);
    wait_until("three jobs are leased", Duration::from_secs(30), || count(&stats(&daemon)[0], "leased") == 3);
    daemon.terminate();
    let status = daemon.wait_exit(Duration::from_secs(15)).expect("the daemon stops within seconds");
    assert!(status.success());
    let store = pipeline.store(1);
    let counts = &store.stage_counts().unwrap()[0];
    assert_eq!((counts.open, counts.leased, counts.done), (10, 0, 0));
    let released: usize = (1..=10).map(|n| store.job(n).unwrap().events.iter().filter(|e| e.kind == "release").count()).sum();
    assert_eq!(released, 3);
}
