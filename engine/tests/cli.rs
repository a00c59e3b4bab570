//! The `cascade` command as a user runs it: loading jobs, status, configuration errors, and
//! `cascade wat` on the bundled samples.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn cascade(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cascade"))
        .current_dir(dir)
        .args(args)
        .env("CASCADE_LOG", "warn")
        .env_remove("RUST_BACKTRACE")
        .output()
        .expect("cascade runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn samples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../stages/tests/data/wat")
}

#[test]
fn init_refuses_to_replace_jobs_without_reset() {
    let dir = tempfile::tempdir().unwrap();
    let first = cascade(dir.path(), &["init", "--brace", "job-{01..10}"]);
    assert!(first.status.success(), "{}", text(&first.stderr));
    assert!(text(&first.stdout).contains("Loaded 10 jobs"));
    assert!(dir.path().join("cascade.db").exists(), "the default database is ./cascade.db");

    let again = cascade(dir.path(), &["init", "--brace", "x{1..3}"]);
    assert!(!again.status.success());
    assert!(text(&again.stderr).contains("--reset"), "{}", text(&again.stderr));

    std::fs::write(dir.path().join("jobs.txt"), "a\nb\n\nc\n").unwrap();
    let reset = cascade(dir.path(), &["init", "--txt", "jobs.txt", "--reset"]);
    assert!(reset.status.success(), "{}", text(&reset.stderr));
    let status = cascade(dir.path(), &["status"]);
    let table = text(&status.stdout);
    assert!(table.lines().any(|l| l.starts_with('a') && l.split_whitespace().nth(2) == Some("3")), "{table}");
}

#[test]
fn bad_job_lists_and_configurations_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("jobs.json"), r#"{"not": "a list"}"#).unwrap();
    let json = cascade(dir.path(), &["init", "--json", "jobs.json"]);
    assert!(!json.status.success());
    assert!(text(&json.stderr).contains("must contain a list"), "{}", text(&json.stderr));

    std::fs::write(dir.path().join("cascade.toml"), "[stages.b]\nname = \"GPU\"\n[stages.q]\nname = \"x\"\n").unwrap();
    let config = cascade(dir.path(), &["status"]);
    let message = text(&config.stderr);
    assert!(!config.status.success());
    assert!(message.contains("unknown stage 'q'") && message.contains("stage 'a' must be enabled"), "{message}");
}

#[test]
fn wat_extracts_the_samples_to_parquet() {
    let dir = tempfile::tempdir().unwrap();
    let input = samples().join("cc-whirlwind-CC-MAIN-2024-22.derived.warc.wat.gz");
    let out = dir.path().join("shards");
    let run = cascade(dir.path(), &["wat", input.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    let report: serde_json::Value = serde_json::from_str(text(&run.stdout).trim()).unwrap();
    assert_eq!(report["summary"]["pairs"], 7);
    assert!(out.join("cc-whirlwind-CC-MAIN-2024-22.derived.parquet").exists());

    let not_wat = dir.path().join("notes.txt");
    std::fs::write(&not_wat, "hello").unwrap();
    let failed = cascade(dir.path(), &["wat", not_wat.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert!(!failed.status.success());
    assert!(text(&failed.stderr).contains("not a WARC file"), "{}", text(&failed.stderr));
}
