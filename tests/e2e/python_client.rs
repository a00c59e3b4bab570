//! The real Python `distcompute-client` 1.0.0 drives a fresh `cascade serve` through full a→b
//! and a→b→c flows (see `tests/python/distcompute_flow.py` for every assertion).

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use cascade_tests::{cascade, python_with_distcompute, workspace_root, Daemon};
use cascade_tracker::testing::TestDatabase;

fn run_flow(db: &TestDatabase, stages: &[&str]) {
    let url = db.url_string();
    let jobs = tempfile_with(r#"["job-1", {"url": "https://example.com/x.tar", "n": 2}, ["list", 3]]"#);
    let (ok, out, err) = cascade(&["init", "--database", &url, "--json", jobs.to_str().unwrap()]);
    assert!(ok, "init failed: {out}{err}");

    let mut args = vec!["--database", url.as_str(), "--project", "Python Flow"];
    for stage in stages {
        args.extend(["--stage", stage]);
    }
    let daemon = Daemon::start(&args, 0);
    let script = workspace_root().join("tests/python/distcompute_flow.py");
    let output = Command::new(python_with_distcompute())
        .arg(&script)
        .arg(&daemon.url)
        .arg(stages.len().to_string())
        .output()
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.trim_end().ends_with("ALL CHECKS PASSED"),
        "python flow failed:\n{stdout}\n{stderr}"
    );
    let _ = std::fs::remove_file(jobs);
}

fn tempfile_with(content: &str) -> std::path::PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::SeqCst);
    let path = std::env::temp_dir().join(format!("cascade-jobs-{}-{n}.json", std::process::id()));
    std::fs::write(&path, content).unwrap();
    path
}

#[test]
fn python_client_runs_a_two_stage_flow_on_sqlite() {
    run_flow(&TestDatabase::sqlite(), &["a=CPU", "b=GPU"]);
}

#[test]
fn python_client_runs_a_three_stage_flow_on_sqlite() {
    run_flow(&TestDatabase::sqlite(), &["a=CPU", "b=GPU", "c=CLIP"]);
}

#[test]
fn python_client_runs_a_three_stage_flow_on_postgres() {
    run_flow(&TestDatabase::postgres(), &["a=CPU", "b=GPU", "c=CLIP"]);
}

/// The unmodified client in a private project: without the key it cannot register; given the
/// tracker URL with the key in its path, it works as usual.
const PRIVATE_FLOW: &str = r#"
import sys
import distcompute_client as dc
from distcompute_client.errors import ServerError
url, key = sys.argv[1], sys.argv[2]
try:
    dc.init(url, "a", nickname="nokey", verbose=False)
    raise AssertionError("registered without the worker key")
except ServerError as error:
    assert "private" in str(error) and "status 401" in str(error), error
client = dc.init(f"{url}/key/{key}", "a", nickname="keyholder", verbose=False)
assert client.job_count() == 1
client.new_job()
assert client.job == "job-1", client.job
client.log("working")
client.complete_job("out-1")
assert client.job_count() == 0
client.bye()
print("PRIVATE PROJECT OK")
"#;

#[test]
fn python_client_joins_a_private_project_through_the_keyed_url() {
    const KEY: &str = "private-project-key-1";
    let db = TestDatabase::sqlite();
    let url = db.url_string();
    let (ok, out, err) = cascade(&["init", "--database", &url, "--brace", "job-{1..1}"]);
    assert!(ok, "init failed: {out}{err}");
    let config = tempfile_with(&format!("worker-key = \"{KEY}\"\n"));
    let toml = config.with_extension("toml");
    std::fs::rename(&config, &toml).unwrap();
    let daemon = Daemon::start(&["--config", toml.to_str().unwrap(), "--database", &url, "--stage", "a=CPU"], 0);
    let output = Command::new(python_with_distcompute()).args(["-c", PRIVATE_FLOW, &daemon.url, KEY]).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("PRIVATE PROJECT OK"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let _ = std::fs::remove_file(toml);
}
