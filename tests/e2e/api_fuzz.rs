//! The HTTP API fuzzed from its own OpenAPI description by `schemathesis`, against the real
//! `cascade serve` on SQLite: every generated request (valid and invalid ones, and chains that
//! follow the description's links: register, claim, report, complete, leave) gets an answer the
//! description lists, with the status, headers, content type and body it promises, never a
//! 5xx; and afterwards the database's invariants hold.
//!
//! Bounded by `CASCADE_FUZZ_EXAMPLES` examples per operation (default 40) and seeded by
//! `CASCADE_FUZZ_SEED` (default fixed), so a failure can be replayed.

use std::process::Command;

use cascade_tests::{cascade, python_with_schemathesis, Daemon};
use cascade_tracker::testing::TestDatabase;

const ADMIN_TOKEN: &str = "fuzzing-admin-token-0123456789";

/// Runs schemathesis on the description at `url` with `extra` arguments; panics with its
/// report unless every check passed. Its caches and reports go to a throw-away folder.
fn fuzz(url: &str, label: &str, extra: &[&str]) {
    let python = python_with_schemathesis();
    let schemathesis = python.parent().expect("the venv's bin folder").join("schemathesis");
    let examples = std::env::var("CASCADE_FUZZ_EXAMPLES").unwrap_or_else(|_| "40".to_owned());
    let seed = std::env::var("CASCADE_FUZZ_SEED").unwrap_or_else(|_| "20261205".to_owned());
    let scratch = tempfile::tempdir().expect("a temporary folder");
    let output = Command::new(&schemathesis)
        .args(["run", &format!("{url}/openapi.json"), "--checks", "all", "--max-examples", &examples, "--seed", &seed])
        .args(["--header", &format!("Authorization: Bearer {ADMIN_TOKEN}"), "--request-timeout", "20"])
        .args(extra)
        .env("NO_COLOR", "1")
        .current_dir(&scratch)
        .output()
        .expect("schemathesis can be started");
    let report = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<&str> = report.lines().collect();
    let summary = lines[lines.len().saturating_sub(30)..].join("\n");
    assert!(
        output.status.success(),
        "schemathesis found problems in the {label} (seed {seed}):\n{report}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(report.contains("passed"), "schemathesis ran no test in the {label}:\n{summary}");
    println!("{label}:\n{summary}");
}

#[test]
fn the_api_fuzzed_from_its_description_answers_as_described_and_keeps_the_database_consistent() {
    let db = TestDatabase::sqlite();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("fuzz.toml");
    // Every stage is enabled, so a stage letter the description allows is never refused as
    // disabled; the abuse limits are high, so the fuzzer reaches past them.
    let stages: String = ["a", "b", "c", "d", "e"].iter().map(|s| format!("[stages.{s}]\nname = \"{s}\"\n")).collect();
    std::fs::write(
        &config,
        format!(
            "project = \"Fuzz\"\nadmin-token = \"{ADMIN_TOKEN}\"\n\
             [limits]\nregistrations-per-minute = 1000000\nbad-tokens-per-minute = 1000000\n{stages}"
        ),
    )
    .unwrap();
    let (config, database) = (config.to_str().unwrap().to_owned(), db.url_string());
    let local = ["--config", config.as_str(), "--database", database.as_str()];
    let (loaded, _, stderr) = cascade(&[&local[..], &["init", "--brace", "job-{1..300}"]].concat());
    assert!(loaded, "{stderr}");
    let daemon = Daemon::start(&local, 0);

    // The worker and read APIs first, the admin API after it: its pauses and cancellations
    // would otherwise leave the workers' chains nothing to claim.
    fuzz(&daemon.url, "worker, lease, read and page routes", &["--exclude-tag", "admin"]);
    fuzz(&daemon.url, "admin routes", &["--include-tag", "admin"]);
    let stats = ureq::get(&format!("{}/v1/stats", daemon.url)).call();
    assert!(stats.is_ok_and(|answer| answer.status() == 200), "the daemon still serves");
    drop(daemon);

    let claims = db.count("SELECT count(*) AS n FROM job_events WHERE kind = 'claim'");
    assert!(claims > 0, "the fuzzer's chains claimed no job, so the lease invariants were not exercised");
    let invariants = [
        ("open jobs without a lease", "SELECT count(*) AS n FROM jobs WHERE state = 'open' AND (lease_owner IS NOT NULL OR lease_expires_at IS NOT NULL)"),
        (
            "leased jobs held by a current worker that says it holds them",
            "SELECT count(*) AS n FROM jobs j WHERE state = 'leased' AND NOT EXISTS \
             (SELECT 1 FROM workers w WHERE w.token = j.lease_owner AND w.job_id = j.id)",
        ),
        (
            // A worker's pointer may be stale (a cancel or an expiry bumped the job's epoch
            // since), but a pointer at the job's current epoch is a lease the job agrees on.
            "a worker's current lease is leased to it",
            "SELECT count(*) AS n FROM workers w WHERE EXISTS (SELECT 1 FROM jobs j WHERE j.id = w.job_id \
             AND j.lease_token = w.lease_token AND NOT (j.state = 'leased' AND j.lease_owner = w.token))",
        ),
        ("done jobs with a result", "SELECT count(*) AS n FROM jobs WHERE state = 'done' AND (result IS NULL OR completed_at IS NULL)"),
        ("failed jobs with an error", "SELECT count(*) AS n FROM jobs WHERE state = 'failed' AND error IS NULL"),
        ("jobs in a known state", "SELECT count(*) AS n FROM jobs WHERE state NOT IN ('open', 'leased', 'done', 'failed')"),
        ("tokens kept only as digests", "SELECT count(*) AS n FROM workers WHERE length(token) <> 64"),
    ];
    for (invariant, violations) in invariants {
        assert_eq!(db.count(violations), 0, "invariant broken: {invariant}");
    }
    assert_eq!(db.count("SELECT count(*) AS n FROM jobs WHERE id <= 300"), 300, "no loaded job was lost");
}
