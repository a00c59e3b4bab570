//! Scale-out on one PostgreSQL database: three `cascade run` daemons, each with local pools of
//! all three stages, and remote `cascade worker` processes attached to them, work through 5,000
//! jobs together. One daemon is killed with SIGKILL midway (its remote worker keeps trying to
//! reach it). Afterwards every job has completed every stage exactly once, every repeated claim
//! is explained by a lease that expired or was given back, nothing is lost, and the two
//! surviving daemons report the same counts.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cascade_tests::{wait_until, Daemon};
use cascade_tracker::testing::TestDatabase;
use cascade_tracker::{DatabaseUrl, JobStore, StageId, StoreConfig, SystemClock};
use serde_json::Value;

const BINARY: &str = env!("CARGO_BIN_EXE_cascade-test-pipeline");
const JOBS: i64 = 5_000;
const STAGES: [&str; 3] = ["a", "b", "c"];

/// Writes a daemon's `cascade.toml` in a directory of its own: local pools of two workers for
/// each stage, short leases (a killed daemon's jobs return within seconds; a remote worker's
/// lease, the idle timeout, outlasts its 5 s heartbeat period), a small connection pool (three
/// daemons share the server's connections with other tests).
fn daemon_config(database: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let stages: String = STAGES
        .iter()
        .map(|s| {
            format!(
                "[stages.{s}]\nname = \"{s}\"\nkind = \"append\"\nworkers = 2\nqueue = 8\n\
                 [stages.{s}.settings]\nsuffix = \"|{s}\"\n"
            )
        })
        .collect();
    let toml = format!(
        "project = \"daemons\"\ndatabase = \"{database}\"\nsweep-interval = \"200ms\"\nidle-timeout = \"8s\"\n\
         db-connections = 6\n\
         [engine]\nartifacts = \"artifacts\"\nlease-ttl = \"2s\"\nmax-attempts = 20\nretry-backoff = \"10ms\"\n\
         max-retry-backoff = \"100ms\"\nshutdown-grace = \"200ms\"\npoll-interval = \"50ms\"\n{stages}"
    );
    std::fs::write(dir.path().join("cascade.toml"), toml).unwrap();
    dir
}

/// `cascade-test-pipeline run` in `dir` on a free port.
fn start_daemon(dir: &Path) -> Daemon {
    let config = dir.join("cascade.toml");
    Daemon::start_in(Path::new(BINARY), &["run", "--config", config.to_str().unwrap(), "--no-progress"], 0, Some(dir))
}

/// A remote worker process for `stage` of the tracker at `url`, run in `dir` (no configuration
/// there: it knows only what its flags say).
fn remote_worker(dir: &Path, url: &str, stage: &str, nickname: &str, delay_ms: u64) -> Child {
    let settings = format!("{{\"suffix\": \"|{stage}\", \"delay-ms\": {delay_ms}}}");
    Command::new(BINARY)
        .args(["worker", "--tracker", url, "--stage", stage, "--kind", "append", "--workers", "2"])
        .args(["--nickname", nickname, "--settings", &settings])
        .current_dir(dir)
        .env("CASCADE_LOG", "error")
        .stdout(Stdio::null())
        .spawn()
        .expect("the remote worker starts")
}

/// `/v1/stats` without the parts that depend on the moment of asking (rate, time left).
fn stable_stats(daemon: &Daemon) -> Value {
    let mut stats = daemon.get_json("/v1/stats");
    let eta = stats["eta"].as_object_mut().unwrap();
    eta.remove("rate_per_hour");
    eta.remove("seconds_left");
    stats
}

#[test]
fn three_daemons_on_one_postgres_survive_a_kill_9_with_every_job_done_once() {
    let started = Instant::now();
    let db = TestDatabase::postgres();
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| daemon_config(&db.url_string())).collect();
    let config: PathBuf = dirs[0].path().join("cascade.toml");
    let brace = format!("job-{{1..{JOBS}}}");
    let loaded = Command::new(BINARY)
        .args(["init", "--config", config.to_str().unwrap(), "--brace", &brace])
        .current_dir(dirs[0].path())
        .output()
        .unwrap();
    assert!(loaded.status.success(), "{}", String::from_utf8_lossy(&loaded.stderr));

    let mut daemons: Vec<Daemon> = dirs.iter().map(|dir| start_daemon(dir.path())).collect();
    let workers_dir = tempfile::tempdir().unwrap();
    // The victim's remote worker takes two minutes a job: the one it holds when its daemon
    // dies can only come back through the lease's expiry.
    let mut remotes = vec![
        remote_worker(workers_dir.path(), &daemons[0].url, "b", "victim-remote", 120_000),
        remote_worker(workers_dir.path(), &daemons[1].url, "b", "remote-b", 0),
        remote_worker(workers_dir.path(), &daemons[2].url, "c", "remote-c", 0),
    ];
    let store = JobStore::open(
        &DatabaseUrl::parse(&db.url_string()),
        StoreConfig {
            project: "daemons".into(),
            stage_names: [Some("a".into()), Some("b".into()), Some("c".into()), None, None],
            ..StoreConfig::default()
        },
        Arc::new(SystemClock),
        2,
    )
    .unwrap();
    let done = |store: &JobStore| store.stage_counts().map_or(0, |counts| counts[2].done);

    wait_until("a third of the jobs are done", Duration::from_secs(120), || done(&store) >= JOBS / 3);
    let mut victim_job = None;
    wait_until("the victim's remote worker holds a job", Duration::from_secs(30), || {
        let workers = store.workers(Some(StageId::B), 0, 100).map(|page| page.items).unwrap_or_default();
        victim_job = workers.into_iter().find(|w| w.nickname == "victim-remote").and_then(|w| w.job);
        victim_job.is_some()
    });
    daemons[0].kill9();
    let killed_at = done(&store);
    assert!(killed_at < JOBS, "the daemon was killed before the end");

    wait_until("every job is done", Duration::from_secs(120), || done(&store) == JOBS);
    let survivors = &daemons[1..];
    wait_until("the survivors' stats agree", Duration::from_secs(10), || {
        stable_stats(&survivors[0]) == stable_stats(&survivors[1])
    });
    let stats = stable_stats(&survivors[0]);
    assert_eq!(stats["eta"]["total"], JOBS);
    assert_eq!(stats["eta"]["done"], JOBS);
    for (i, stage) in stats["stages"].as_array().unwrap().iter().take(3).enumerate() {
        let counts = (&stage["open"], &stage["leased"], &stage["failed"]);
        assert_eq!(counts, (&Value::from(0), &Value::from(0), &Value::from(0)), "stage {}: {stage}", STAGES[i]);
    }
    assert_eq!(stats["stages"][2]["done"], JOBS);
    for remote in &mut remotes {
        let _ = remote.kill();
        let _ = remote.wait();
    }

    // Every job reached the end with each stage's suffix once, in order.
    let finished = db.count("SELECT count(*) AS n FROM jobs WHERE state = 'done' AND result = data_a || '|a|b|c'");
    assert_eq!(finished, JOBS, "jobs done with the computed result");
    // One accepted completion per (job, stage), no more, no fewer.
    let completions = db.count("SELECT count(*) AS n FROM job_events WHERE kind = 'complete'");
    let completed_pairs =
        db.count("SELECT count(*) AS n FROM (SELECT DISTINCT job_id, stage FROM job_events WHERE kind = 'complete') AS p");
    assert_eq!((completions, completed_pairs), (3 * JOBS, 3 * JOBS), "one completion per job and stage");
    // Work done twice: every claim but the last of a (job, stage) ended in an expiry or a
    // release, never in a second completion.
    let unexplained = db.count(
        "SELECT count(*) AS n FROM (SELECT job_id, stage FROM job_events GROUP BY job_id, stage \
         HAVING sum(CASE WHEN kind = 'claim' THEN 1 ELSE 0 END) \
             <> 1 + sum(CASE WHEN kind IN ('expire', 'release') THEN 1 ELSE 0 END)) AS u",
    );
    assert_eq!(unexplained, 0, "repeated claims not explained by an expiry or a release");
    // The job the victim's remote worker held came back by expiry and was finished by another.
    let victim_job = victim_job.unwrap();
    let expired = db.count(&format!(
        "SELECT count(*) AS n FROM job_events WHERE job_id = {victim_job} AND stage = 'b' AND kind = 'expire'"
    ));
    assert!(expired >= 1, "the victim's remote worker's job {victim_job} expired");
    let expiries = db.count("SELECT count(*) AS n FROM job_events WHERE kind = 'expire'");
    let credited = db.count("SELECT sum(jobs_completed)::BIGINT AS n FROM leaderboard");
    assert_eq!(credited, 3 * JOBS, "every completion credited once");
    println!(
        "daemons: {JOBS} jobs, killed at {killed_at} done, {expiries} lease expiries, {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
