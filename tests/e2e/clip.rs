//! The CLIP filter as stage c of a `cascade run` pipeline: two webdataset shards made here pass
//! stages a and b (`append` with no suffix, standing in for the downloader) and are filtered
//! by the tiny random CLIP model of the stage's fixtures; Python (numpy, pyarrow) reads what
//! stage c wrote and checks it against the job outputs.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use cascade_tests::{python_with_data_libraries, workspace_root, Daemon};
use serde_json::Value;

const BINARY: &str = env!("CARGO_BIN_EXE_cascade-test-pipeline");

fn fixtures() -> PathBuf {
    workspace_root().join("stages/tests/clip/fixtures")
}

fn append(tar: &mut tar::Builder<Vec<u8>>, path: &str, bytes: &[u8]) {
    let mut header = tar::Header::new_gnu();
    header.set_size(bytes.len() as u64);
    header.set_mode(0o644);
    tar.append_data(&mut header, path, bytes).unwrap();
}

/// A shard of the fixture images (each with caption and url) plus one undecodable image.
fn make_shard(path: &Path, images: &[&str]) {
    let mut tar = tar::Builder::new(Vec::new());
    for (i, name) in images.iter().enumerate() {
        let ext = name.rsplit('.').next().unwrap();
        let bytes = std::fs::read(fixtures().join("images").join(name)).unwrap();
        append(&mut tar, &format!("{i:05}.{ext}"), &bytes);
        append(&mut tar, &format!("{i:05}.txt"), format!("a photo of {name}").as_bytes());
        append(&mut tar, &format!("{i:05}.json"), format!(r#"{{"url": "https://example.com/{name}"}}"#).as_bytes());
    }
    append(&mut tar, "99999.jpg", b"\xff\xd8\xff\xe0 not really a jpeg");
    append(&mut tar, "99999.txt", b"broken");
    std::fs::write(path, tar.into_inner().unwrap()).unwrap();
}

/// Checks every output of one filtered shard from Python and prints `rows kept`.
const CHECK_OUTPUTS: &str = r#"
import json, sys
import numpy as np
import pyarrow.parquet as pq

outputs = json.loads(sys.argv[1])
table = pq.read_table(outputs["metadata"])
assert table.column_names == ["key", "url", "caption", "similarity"], table.column_names
img = np.load(outputs["image_embeddings"])
txt = np.load(outputs["text_embeddings"])
assert img.dtype == np.float16 and txt.dtype == np.float16, (img.dtype, txt.dtype)
assert img.shape == txt.shape == (table.num_rows, 8), (img.shape, txt.shape, table.num_rows)
norms = np.linalg.norm(img.astype(np.float32), axis=1)
assert np.allclose(norms, 1.0, atol=2e-3), norms
similarity = (img.astype(np.float32) * txt.astype(np.float32)).sum(axis=1)
recorded = np.array(table.column("similarity").to_pylist(), dtype=np.float32)
assert np.allclose(similarity, recorded, atol=5e-3), (similarity, recorded)
for url, caption in zip(table.column("url").to_pylist(), table.column("caption").to_pylist()):
    assert url == "https://example.com/" + caption.removeprefix("a photo of "), (url, caption)
print(table.num_rows)
"#;

#[test]
fn clip_filters_shards_as_stage_c_of_a_pipeline() {
    let dir = tempfile::tempdir().unwrap();
    let shards = [
        (dir.path().join("shards/00000.tar"), vec!["wide_40x30.png", "photo_300x200.jpg", "gray_50x50.png"]),
        (dir.path().join("shards/00001.tar"), vec!["tall_64x100.png", "odd_97x61.jpg"]),
    ];
    std::fs::create_dir_all(dir.path().join("shards")).unwrap();
    for (path, images) in &shards {
        make_shard(path, images);
    }
    let jobs: Vec<String> = shards.iter().map(|(path, _)| path.display().to_string()).collect();
    std::fs::write(dir.path().join("jobs.txt"), jobs.join("\n")).unwrap();
    let model = fixtures().join("model");
    let toml = format!(
        "project = \"clip test\"\ndatabase = \"cascade.db\"\n[engine]\nartifacts = \"artifacts\"\n\
         [stages.a]\nname = \"list\"\nkind = \"append\"\n\
         [stages.b]\nname = \"download\"\nkind = \"append\"\n\
         [stages.c]\nname = \"clip\"\nkind = \"clip\"\nworkers = 1\n\
         [stages.c.settings]\nweights = \"{}\"\nconfig = \"{}\"\nthreshold = -1.0\nbatch-size = 2\n",
        model.join("model.safetensors").display(),
        model.join("config.json").display(),
    );
    std::fs::write(dir.path().join("cascade.toml"), toml).unwrap();
    let args = ["run", "--config", "cascade.toml", "--txt", "jobs.txt", "--until-done", "--no-progress"];
    let mut daemon = Daemon::start_in(Path::new(BINARY), &args, 0, Some(dir.path()));
    let status = daemon.wait_exit(Duration::from_secs(180)).expect("the run finishes by itself");
    assert!(status.success());

    let database = dir.path().join("cascade.db");
    let stages = ["--stage", "a=list", "--stage", "b=download", "--stage", "c=clip"];
    let server = Daemon::start(&[&["--database", database.to_str().unwrap()][..], &stages].concat(), 0);
    let done = server.get_json("/v1/jobs?state=done&limit=10");
    assert_eq!(done["total"].as_u64(), Some(2), "{done}");
    let python = python_with_data_libraries();
    for item in done["items"].as_array().unwrap() {
        let job = server.get_json(&format!("/v1/jobs/{}", item["id"]));
        let result = job["result"].as_str().unwrap();
        let summary: Value = serde_json::from_str(result.strip_prefix("<!json!>").expect("JSON output")).unwrap();
        let input = PathBuf::from(summary["input"].as_str().unwrap());
        let images = &shards.iter().find(|(path, _)| *path == input).expect("an input shard").1;
        assert_eq!(summary["samples"].as_u64(), Some(images.len() as u64 + 1), "{summary}");
        assert_eq!(summary["embedded"].as_u64(), Some(images.len() as u64), "{summary}");
        assert_eq!(summary["kept"].as_u64(), Some(images.len() as u64), "{summary}");
        assert_eq!(summary["corrupt_images"].as_u64(), Some(1), "{summary}");
        let outputs = &summary["outputs"];
        let shard = dir.path().join(outputs["shard"].as_str().unwrap());
        assert!(shard.starts_with(dir.path().join("artifacts/clip")), "{}", shard.display());
        assert!(shard.is_file());

        let check = Command::new(python).current_dir(dir.path()).args(["-c", CHECK_OUTPUTS, &outputs.to_string()]).output().unwrap();
        let stdout = String::from_utf8_lossy(&check.stdout);
        assert!(check.status.success(), "{stdout}{}", String::from_utf8_lossy(&check.stderr));
        assert_eq!(stdout.trim(), images.len().to_string());
    }
}
