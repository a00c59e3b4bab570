//! The README's main job: the LAION workflow of `examples/laion-sample.toml` in `cascade run`,
//! with the stock `cascade` binary — a (`wat`) turns each sample WAT file into a pair shard,
//! b (`download`) fetches their images from the bundled WARC through the replay server into
//! webdataset shards, and c (`clip`) filters those with the tiny fixture CLIP model. A second
//! run without reachable weights finishes a and b and says why c could not start.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use cascade_tests::{cascade_binary, workspace_root, Daemon};
use serde_json::Value;

/// The sample configuration with absolute paths, and `weights` replaced by `weights_lines`.
fn sample_config(dir: &Path, weights_lines: &str) -> PathBuf {
    let root = workspace_root();
    let text = std::fs::read_to_string(root.join("examples/laion-sample.toml")).unwrap();
    assert!(text.contains("weights = \"hf:openai/clip-vit-base-patch32\""), "the sample fetches the weights from the hub");
    let text = text
        .replace("\"stages/tests/data/warc/", &format!("\"{}/stages/tests/data/warc/", root.display()))
        .replace("weights = \"hf:openai/clip-vit-base-patch32\"", weights_lines)
        .replace("bind = \"127.0.0.1:8080\"", "bind = \"127.0.0.1:0\"");
    let path = dir.join("laion-sample.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs the sample pipeline in `dir` to the end, with `env` added.
fn run_sample(dir: &Path, config: &Path, env: &[(&str, &Path)]) -> Output {
    let root = workspace_root();
    let inputs = std::fs::read_to_string(root.join("examples/laion-sample.txt")).unwrap();
    let absolute: Vec<String> = inputs.lines().map(|line| root.join(line).display().to_string()).collect();
    std::fs::write(dir.join("jobs.txt"), absolute.join("\n")).unwrap();
    let mut command = Command::new(cascade_binary());
    command
        .args(["run", "--config", config.to_str().unwrap(), "--txt", "jobs.txt", "--reset", "--until-done", "--no-progress"])
        .current_dir(dir)
        .env("CASCADE_LOG", "warn");
    for (name, value) in env {
        command.env(name, value);
    }
    let output = command.output().unwrap();
    assert!(output.status.success(), "the sample run failed: {}", String::from_utf8_lossy(&output.stderr));
    output
}

fn json_of(data: &str) -> Value {
    serde_json::from_str(data.strip_prefix("<!json!>").expect("JSON output")).unwrap()
}

#[test]
fn the_sample_pipeline_runs_wat_download_and_clip() {
    let dir = tempfile::tempdir().unwrap();
    let model = workspace_root().join("stages/tests/clip/fixtures/model");
    let weights = format!(
        "weights = \"{}\"\nconfig = \"{}\"",
        model.join("model.safetensors").display(),
        model.join("config.json").display()
    );
    let config = sample_config(dir.path(), &weights);
    let output = run_sample(dir.path(), &config, &[]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("Summary:"), "{stdout}");

    // Read the results back through a tracker on the same database.
    let database = dir.path().join("laion-sample/cascade.db");
    let server = Daemon::start(&["--database", database.to_str().unwrap(), "--stage", "a=wat", "--stage", "b=download", "--stage", "c=clip"], 0);
    let jobs = server.get_json("/v1/jobs?state=done&limit=100");
    let wat_files = std::fs::read_to_string(workspace_root().join("examples/laion-sample.txt")).unwrap().lines().count();
    assert_eq!(jobs["total"].as_u64().unwrap() as usize, wat_files, "every job passed every stage");
    let (mut pairs, mut downloaded, mut filtered) = (0, 0, 0);
    let (mut clip_shards, mut clip_summaries) = (std::collections::BTreeSet::new(), 0);
    for item in jobs["items"].as_array().unwrap() {
        let detail = server.get_json(&format!("/v1/jobs/{}", item["id"]));
        let data = detail["data"].as_array().unwrap();
        let wat = json_of(data[1].as_str().unwrap());
        let download = json_of(data[2].as_str().unwrap());
        let clip = json_of(detail["result"].as_str().unwrap());
        assert!(dir.path().join(wat["output"].as_str().unwrap()).is_file());
        pairs += wat["summary"]["pairs"].as_u64().unwrap();
        assert_eq!(download["count"], wat["summary"]["pairs"], "every pair was tried");
        downloaded += download["successes"].as_u64().unwrap();
        for shard in download["shards"].as_array().unwrap() {
            for file in ["shard", "parquet", "stats"] {
                let path = dir.path().join(shard[file].as_str().unwrap());
                assert!(path.starts_with(dir.path().join("laion-sample/download")) && path.is_file(), "{}", path.display());
            }
        }
        let shards = clip.get("shards").and_then(Value::as_array).cloned().unwrap_or_default();
        assert_eq!(shards.len(), download["shards"].as_array().unwrap().len());
        filtered += shards.iter().map(|s| s["samples"].as_u64().unwrap()).sum::<u64>();
        clip_summaries += shards.len();
        for shard in &shards {
            let path = dir.path().join(shard["outputs"]["shard"].as_str().unwrap());
            assert!(path.starts_with(dir.path().join("laion-sample/clip")) && path.is_file(), "{}", path.display());
            clip_shards.insert(path);
        }
    }
    assert_eq!(clip_shards.len(), clip_summaries, "each shard is filtered into a file of its own: {clip_shards:?}");
    assert!(pairs > 0 && downloaded >= 50, "{pairs} pairs, {downloaded} images downloaded");
    assert_eq!(filtered, downloaded, "CLIP saw every downloaded image");
    assert!(stdout.contains(&format!("{pairs} image/alt-text pairs")), "{stdout}");
    assert!(stdout.contains(&format!("{downloaded} downloaded")), "{stdout}");
    assert!(stdout.contains("kept by CLIP"), "{stdout}");
}

#[test]
fn the_sample_pipeline_finishes_a_and_b_without_weights() {
    let dir = tempfile::tempdir().unwrap();
    let config = sample_config(dir.path(), "weights = \"hf:openai/clip-vit-base-patch32\"");
    // No hub to be had: a closed loopback port, and an empty cache.
    let cache = dir.path().join("hf-cache");
    std::fs::create_dir_all(&cache).unwrap();
    let output = run_sample(dir.path(), &config, &[("HF_HOME", &cache), ("HF_ENDPOINT", Path::new("http://127.0.0.1:9"))]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("could not start"), "{stdout}");
    assert!(stdout.contains("openai/clip-vit-base-patch32"), "the reason names the model: {stdout}");

    let database = dir.path().join("laion-sample/cascade.db");
    let server = Daemon::start(&["--database", database.to_str().unwrap(), "--stage", "a=wat", "--stage", "b=download", "--stage", "c=clip"], 0);
    let stats = server.get_json("/v1/jobs?stage=c&state=open&limit=100");
    let wat_files = std::fs::read_to_string(workspace_root().join("examples/laion-sample.txt")).unwrap().lines().count();
    assert_eq!(stats["total"].as_u64().unwrap() as usize, wat_files, "every job waits at stage c, a and b done");
    assert!(dir.path().join("laion-sample/download").read_dir().unwrap().next().is_some());
}
