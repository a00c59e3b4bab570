//! The `cascade` command as a user runs it: loading jobs, status, configuration errors,
//! `cascade wat` on the bundled samples, and `cascade clip` on the tiny random model of the
//! CLIP stage's test fixtures.

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

#[cfg(feature = "clip")]
fn clip_fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../stages/tests/clip/fixtures")
}

/// A shard of the fixture images, each with a caption.
#[cfg(feature = "clip")]
fn clip_shard(path: &Path) {
    let mut tar = tar::Builder::new(Vec::new());
    for (i, name) in ["wide_40x30.png", "photo_300x200.jpg", "gray_50x50.png"].iter().enumerate() {
        let ext = name.rsplit('.').next().unwrap();
        let files = [
            (format!("{i:05}.{ext}"), std::fs::read(clip_fixtures().join("images").join(name)).unwrap()),
            (format!("{i:05}.txt"), format!("a picture called {name}").into_bytes()),
        ];
        for (file, bytes) in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(bytes.len() as u64);
            header.set_mode(0o644);
            tar.append_data(&mut header, file, bytes.as_slice()).unwrap();
        }
    }
    std::fs::write(path, tar.into_inner().unwrap()).unwrap();
}

#[test]
#[cfg(feature = "clip")]
fn clip_filters_a_shard_and_reports_it() {
    let dir = tempfile::tempdir().unwrap();
    clip_shard(&dir.path().join("00007.tar"));
    let weights = clip_fixtures().join("model/model.safetensors");
    let config = clip_fixtures().join("model/config.json");
    let args = ["clip", "--weights", weights.to_str().unwrap(), "--model-config", config.to_str().unwrap()];
    // A shard of the same name in a folder: its outputs go in a folder of that name.
    std::fs::create_dir(dir.path().join("pairs-1")).unwrap();
    clip_shard(&dir.path().join("pairs-1/00007.tar"));
    let run = cascade(dir.path(), &[&args[..], &["--threshold", "-1", "00007.tar", "pairs-1/00007.tar", "--out", "out"]].concat());
    assert!(run.status.success(), "{}", text(&run.stderr));
    let reports: Vec<serde_json::Value> = text(&run.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(reports.len(), 2);
    for (report, folder) in reports.iter().zip(["out", "out/pairs-1"]) {
        assert_eq!((report["samples"].as_u64(), report["kept"].as_u64()), (Some(3), Some(3)), "{report}");
        for file in ["00007.tar", "metadata/metadata_00007.parquet", "img_emb/img_emb_00007.npy", "text_emb/text_emb_00007.npy"] {
            let path = format!("{folder}/{file}");
            assert!(dir.path().join(&path).is_file(), "{path}");
        }
        assert_eq!(report["outputs"]["shard"], format!("{folder}/00007.tar"));
    }

    // The tiny file does not fit the default ViT-B/32 sizes: a clear error, nothing written.
    let wrong = cascade(dir.path(), &["clip", "--weights", weights.to_str().unwrap(), "00007.tar", "--out", "wrong"]);
    assert!(!wrong.status.success());
    let message = text(&wrong.stderr);
    assert!(message.contains("do not fit") && message.contains("vision_model.embeddings.patch_embedding.weight"), "{message}");
    assert!(!dir.path().join("wrong/00007.tar").exists());
}

#[test]
#[cfg(all(feature = "clip", not(feature = "cuda")))]
fn clip_on_cuda_needs_the_cuda_build() {
    let dir = tempfile::tempdir().unwrap();
    let weights = clip_fixtures().join("model/model.safetensors");
    let run = cascade(dir.path(), &["clip", "--weights", weights.to_str().unwrap(), "--device", "cuda:0", "x.tar", "--out", "o"]);
    assert!(!run.status.success());
    assert!(text(&run.stderr).contains("build with the `cuda` feature"), "{}", text(&run.stderr));
}
