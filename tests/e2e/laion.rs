//! The LAION workflow in `cascade run`, with the stock `cascade` binary and the sample
//! configuration of `examples/`: stage a (`wat`) turns each WAT file into a parquet shard and
//! references it from the job's output.

use std::path::Path;
use std::time::Duration;

use cascade_tests::{cascade_binary, workspace_root, Daemon};
use serde_json::Value;

#[test]
fn wat_runs_as_stage_a_of_the_sample_pipeline() {
    let root = workspace_root();
    let dir = tempfile::tempdir().unwrap();
    let inputs = std::fs::read_to_string(root.join("examples/laion-sample.txt")).unwrap();
    let absolute: Vec<String> = inputs.lines().map(|line| root.join(line).display().to_string()).collect();
    std::fs::write(dir.path().join("jobs.txt"), absolute.join("\n")).unwrap();
    let config = root.join("examples/laion-sample.toml");
    let args = ["run", "--config", config.to_str().unwrap(), "--txt", "jobs.txt", "--reset", "--until-done", "--no-progress"];
    let mut daemon = Daemon::start_in(cascade_binary(), &args, 0, Some(dir.path()));
    let status = daemon.wait_exit(Duration::from_secs(120)).expect("the sample run finishes by itself");
    assert!(status.success());

    // Read the results back through a tracker on the same database.
    let database = dir.path().join("laion-sample/cascade.db");
    let server = Daemon::start(&["--database", database.to_str().unwrap(), "--stage", "a=wat"], 0);
    let jobs = server.get_json("/v1/jobs?state=done&limit=100");
    assert_eq!(jobs["total"].as_u64().unwrap() as usize, absolute.len());
    for item in jobs["items"].as_array().unwrap() {
        let detail = server.get_json(&format!("/v1/jobs/{}", item["id"]));
        let result = detail["result"].as_str().unwrap();
        let output: Value = serde_json::from_str(result.strip_prefix("<!json!>").expect("JSON output")).unwrap();
        let input = Path::new(output["input"].as_str().unwrap());
        let shard = dir.path().join(output["output"].as_str().unwrap());
        assert!(shard.is_file(), "{} was not written", shard.display());
        assert!(shard.starts_with(dir.path().join("laion-sample/wat")));
        let pairs = output["summary"]["pairs"].as_u64().unwrap();
        let name = input.file_name().unwrap().to_str().unwrap().replace(".warc.wat.gz", ".pairs.jsonl");
        if let Ok(expected) = std::fs::read_to_string(input.with_file_name(name)) {
            assert_eq!(pairs as usize, expected.lines().count(), "{}", input.display());
        }
    }
}
