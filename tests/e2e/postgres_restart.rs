//! A real PostgreSQL restart under a running pipeline: the local cluster (a Debian
//! `pg_ctlcluster` cluster, stopped and started as root) goes down mid-run. Meanwhile the daemon
//! answers 503 with `Retry-After`; once the server is back it reconnects by itself, and every
//! job finishes every stage with nothing lost.
//!
//! A test binary of its own: cargo runs test binaries one after another, so no other test of
//! this workspace uses the server while it restarts. Without root or `pg_ctlcluster` the test
//! says why and passes, except in CI (`CI=true`), where it fails.

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cascade_tests::chaos::history;
use cascade_tests::process_log::ProcessLog;
use cascade_tests::{append_stage_toml, get_answer, wait_until, Daemon};
use cascade_tracker::testing::{postgres_admin_url, TestDatabase};
use cascade_tracker::{DatabaseUrl, JobStore, StageId, StoreConfig, SystemClock};

const BINARY: &str = env!("CARGO_BIN_EXE_cascade-test-pipeline");
const JOBS: i64 = 400;
const STAGES: [(StageId, &str); 2] = [(StageId::A, "|a"), (StageId::B, "|b")];

/// The `pg_ctlcluster` cluster (version, name) serving the test database, or why it cannot
/// be restarted from here.
fn cluster() -> Result<(String, String), String> {
    let uid = Command::new("id").arg("-u").output().map_err(|e| format!("cannot run id: {e}"))?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Err("restarting PostgreSQL needs root".to_owned());
    }
    let listing = Command::new("pg_lsclusters")
        .arg("--no-header")
        .output()
        .map_err(|e| format!("pg_lsclusters is missing ({e}): not a Debian PostgreSQL cluster"))?;
    let admin = postgres_admin_url();
    let port = admin
        .split_once("://")
        .and_then(|(_, rest)| rest.split('/').next())
        .and_then(|authority| authority.rsplit_once(':'))
        .map_or("5432", |(_, port)| port)
        .to_owned();
    String::from_utf8_lossy(&listing.stdout)
        .lines()
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .find(|fields| fields.len() >= 4 && fields[2] == port && fields[3] == "online")
        .map(|fields| (fields[0].to_owned(), fields[1].to_owned()))
        .ok_or_else(|| format!("no online pg_ctlcluster cluster on port {port}"))
}

/// A stopped cluster, started again when dropped (also when the test fails).
struct Stopped<'a> {
    version: &'a str,
    name: &'a str,
}

/// Runs `pg_ctlcluster VERSION NAME ACTION`.
///
/// # Panics
/// When it fails.
fn pg_ctlcluster(version: &str, name: &str, action: &str) {
    let output = Command::new("pg_ctlcluster")
        .args(["--skip-systemctl-redirect", version, name, action])
        .output()
        .expect("pg_ctlcluster runs");
    assert!(output.status.success(), "pg_ctlcluster {action}: {}", String::from_utf8_lossy(&output.stderr));
}

impl<'a> Stopped<'a> {
    fn stop(version: &'a str, name: &'a str) -> Self {
        pg_ctlcluster(version, name, "stop");
        Self { version, name }
    }
}

impl Drop for Stopped<'_> {
    fn drop(&mut self) {
        pg_ctlcluster(self.version, self.name, "start");
    }
}

/// A store on the test database, beside the daemon.
fn reader(db: &TestDatabase) -> JobStore {
    let stage_names = [Some("a".into()), Some("b".into()), None, None, None];
    let config = StoreConfig { stage_names, ..StoreConfig::default() };
    JobStore::open(&DatabaseUrl::parse(&db.url_string()), config, Arc::new(SystemClock), 2).unwrap()
}

#[test]
fn a_postgres_restart_mid_run_is_answered_with_503_and_loses_nothing() {
    let (version, name) = match cluster() {
        Ok(cluster) => cluster,
        Err(why) if std::env::var("CI").is_ok_and(|ci| ci == "true") => panic!("CI must restart PostgreSQL: {why}"),
        Err(why) => {
            eprintln!("skipped: {why}");
            return;
        }
    };
    let db = TestDatabase::postgres();
    let dir = tempfile::tempdir().unwrap();
    let stage =
        |(stage, suffix): (StageId, &str), workers: usize| append_stage_toml(stage.letter(), suffix, workers, 10);
    let toml = format!(
        "project = \"restart\"\ndatabase = \"{}\"\nsweep-interval = \"250ms\"\n\
         [engine]\nartifacts = \"artifacts\"\nlease-ttl = \"2s\"\nmax-attempts = 50\nretry-backoff = \"50ms\"\n\
         max-retry-backoff = \"500ms\"\nshutdown-grace = \"500ms\"\npoll-interval = \"50ms\"\n{}{}",
        db.url_string(),
        stage(STAGES[0], 2),
        stage(STAGES[1], 1)
    );
    let config = dir.path().join("cascade.toml");
    std::fs::write(&config, toml).unwrap();
    let brace = format!("job-{{1..{JOBS}}}");
    let args = ["run", "--config", config.to_str().unwrap(), "--no-progress", "--brace", &brace, "--until-done"];
    let log = ProcessLog::new();
    let mut daemon = Daemon::start_logged(BINARY.as_ref(), &args, 0, Some(dir.path()), Some(Arc::clone(&log)));
    let store = reader(&db);
    let done = || store.stage_counts().map_or(0, |counts| counts[1].done);
    wait_until("some jobs are done", Duration::from_secs(60), || done() >= 40);

    let down = Instant::now();
    let stopped = Stopped::stop(&version, &name);
    let count_url = format!("{}/api/jobCount?stage=a", daemon.url);
    let mut answer = (0, None, String::new());
    wait_until("the tracker answers 503 while the server is down", Duration::from_secs(30), || {
        answer = get_answer(&count_url);
        answer.0 == 503
    });
    assert_eq!(answer.1.as_deref(), Some("2"), "Retry-After");
    std::thread::sleep(Duration::from_secs(1));
    drop(stopped);
    let outage = down.elapsed();
    wait_until("the tracker reconnects", Duration::from_secs(30), || get_answer(&count_url).0 == 200);
    let reconnected = down.elapsed();
    let finished_before = done();
    assert!(finished_before < JOBS, "the restart came before the end ({finished_before} done)");

    let exit = daemon.wait_exit(Duration::from_secs(240)).expect("the run finishes by itself");
    assert!(exit.success(), "{exit:?}\n{}", log.tail(30));
    assert!(log.panics().is_empty(), "{:?}", log.panics());
    // A fresh store: each pooled connection from before the restart fails once before the pool
    // replaces it.
    let store = reader(&db);
    assert_eq!(store.jobs(None, None, 0, 1).unwrap().total, JOBS);
    let mut tally = history::Tally::default();
    for n in 1..=JOBS {
        let job = store.job(n).unwrap();
        tally.add(&history::check_job(n, &job, &STAGES, &format!("job-{n}")).unwrap_or_else(|e| panic!("{e}")));
    }
    assert_eq!(tally.completions as i64, JOBS * 2);
    println!(
        "postgres restart: server down {:.1} s, tracker back after {:.1} s, {tally:?}",
        outage.as_secs_f64(),
        reconnected.as_secs_f64()
    );
}
