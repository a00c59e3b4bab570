//! A full disk under a SQLite pipeline. The daemon runs with its file-size limit capped a
//! little above the database's size (`ulimit -S -f` in the shell that starts it, with SIGXFSZ
//! ignored so that a write past the limit fails with `EFBIG` instead of killing the process),
//! so its database stops growing mid-run as on a full disk. The daemon must keep running
//! without a panic, say why in its log, refuse writes with 503, a `Retry-After` and a message
//! that names the cause, still answer reads, stop cleanly, and leave a consistent database;
//! restarted without the cap, it finishes every job with nothing lost.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use cascade_tests::chaos::history;
use cascade_tests::process_log::ProcessLog;
use cascade_tests::{append_stage_toml, get_answer, wait_until, Daemon};
use cascade_tracker::testing::TestDatabase;
use cascade_tracker::{DatabaseUrl, JobStore, StageId, StoreConfig, SystemClock};

const BINARY: &str = env!("CARGO_BIN_EXE_cascade-test-pipeline");
const JOBS: i64 = 2_000;
/// Room the database file (and its log) may grow by before writes fail.
const HEADROOM_BYTES: u64 = 64 * 1024;
/// The pipeline's stages and their suffixes.
const STAGES: [(StageId, &str); 2] = [(StageId::A, "|a"), (StageId::B, "|b")];

/// How many rows of `PRAGMA integrity_check` are not "ok" (0: the database is consistent).
fn integrity_problems(db: &TestDatabase) -> i64 {
    db.count("SELECT count(*) AS n FROM pragma_integrity_check WHERE integrity_check <> 'ok'")
}

#[test]
fn a_full_disk_refuses_writes_clearly_keeps_the_database_consistent_and_loses_nothing() {
    let db = TestDatabase::sqlite();
    let dir = tempfile::tempdir().unwrap();
    let stage =
        |(stage, suffix): (StageId, &str), workers: usize| append_stage_toml(stage.letter(), suffix, workers, 2);
    let toml = format!(
        "project = \"full-disk\"\ndatabase = \"{}\"\nsweep-interval = \"250ms\"\n\
         [limits]\nregistrations-per-minute = 0\n\
         [engine]\nartifacts = \"artifacts\"\nlease-ttl = \"1s\"\nmax-attempts = 100\nretry-backoff = \"50ms\"\n\
         max-retry-backoff = \"500ms\"\nshutdown-grace = \"500ms\"\npoll-interval = \"50ms\"\n{}{}",
        db.url_string(),
        stage(STAGES[0], 2),
        stage(STAGES[1], 1)
    );
    let config = dir.path().join("cascade.toml");
    std::fs::write(&config, toml).unwrap();
    let config = config.to_str().unwrap();
    let loaded = Command::new(BINARY)
        .args(["init", "--config", config, "--brace", &format!("job-{{1..{JOBS}}}")])
        .env("CASCADE_LOG", "warn")
        .output()
        .unwrap();
    assert!(loaded.status.success(), "{}", String::from_utf8_lossy(&loaded.stderr));
    // Fold the log into the file: its size is where the disk fills up from.
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)");
    let size = std::fs::metadata(db.url_string()).unwrap().len();
    let blocks = (size + HEADROOM_BYTES) / 512;

    let log = ProcessLog::new();
    let capped = format!("trap '' XFSZ; ulimit -S -f {blocks}; exec \"$0\" \"$@\"");
    let args = ["-c", &capped, BINARY, "run", "--config", config, "--no-progress"];
    let mut daemon = Daemon::start_logged(Path::new("/bin/sh"), &args, 0, Some(dir.path()), Some(Arc::clone(&log)));
    let register = format!("{}/api/new?nickname=probe&stage=a", daemon.url);
    let mut refused = (0, None, String::new());
    wait_until("a write is refused for want of room", Duration::from_secs(120), || {
        refused = get_answer(&register);
        refused.0 == 503
    });
    assert_eq!(refused.1.as_deref(), Some("2"), "Retry-After: {refused:?}");
    assert_eq!(refused.2, cascade_web::CANNOT_WRITE);
    let (status, _, stats) = get_answer(&format!("{}/v1/stats", daemon.url));
    assert_eq!(status, 200, "reads go on: {stats}");
    let explained = log.matching("the database file cannot be written");
    assert!(!explained.is_empty(), "the log says why writes fail:\n{}", log.tail(20));
    assert!(explained[0].contains("disk full"), "{}", explained[0]);
    assert!(daemon.wait_exit(Duration::ZERO).is_none(), "the daemon keeps running:\n{}", log.tail(20));
    assert_eq!(integrity_problems(&db), 0, "consistent while full");

    // A graceful stop while the disk is full: its leases cannot be given back, so they expire.
    daemon.terminate();
    let status = daemon.wait_exit(Duration::from_secs(30)).expect("the daemon stops while the disk is full");
    assert!(status.success(), "{status:?}\n{}", log.tail(20));
    assert!(log.panics().is_empty(), "{:?}", log.panics());
    assert_eq!(integrity_problems(&db), 0, "consistent after the stop");
    let store = JobStore::open(
        &DatabaseUrl::parse(&db.url_string()),
        StoreConfig { stage_names: [Some("a".into()), Some("b".into()), None, None, None], ..StoreConfig::default() },
        Arc::new(SystemClock),
        2,
    )
    .unwrap();
    let finished_while_full = store.stage_counts().unwrap()[1].done;
    assert!(finished_while_full < JOBS, "the disk filled up before the end ({finished_while_full} jobs done)");

    // Room again: a restart finishes every job.
    let args = ["run", "--config", config, "--no-progress", "--until-done"];
    let mut daemon = Daemon::start_logged(Path::new(BINARY), &args, 0, Some(dir.path()), Some(Arc::clone(&log)));
    let status = daemon.wait_exit(Duration::from_secs(240)).expect("the run finishes");
    assert!(status.success(), "{status:?}\n{}", log.tail(20));
    assert!(log.panics().is_empty(), "{:?}", log.panics());
    assert_eq!(integrity_problems(&db), 0);
    assert_eq!(store.jobs(None, None, 0, 1).unwrap().total, JOBS);
    let mut tally = history::Tally::default();
    for n in 1..=JOBS {
        let job = store.job(n).unwrap();
        tally.add(&history::check_job(n, &job, &STAGES, &format!("job-{n}")).unwrap_or_else(|e| panic!("{e}")));
    }
    assert_eq!(tally.completions as i64, JOBS * 2);
    println!("full disk: {finished_while_full} of {JOBS} jobs done before the disk filled; then {tally:?}");
}
