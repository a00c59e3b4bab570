//! Artifacts in S3, against moto's S3-compatible server on loopback.
//!
//! The LAION workflow with `artifacts = "s3://…"`: the job inputs are the sample WAT files
//! uploaded to the bucket; a `cascade run` daemon runs stage a (`wat`) and stage c (`clip`, tiny
//! fixture model) and two remote `cascade worker` processes run stage b (`download`, images
//! replayed from the bundled WARC). Daemon and workers each have a working and a temporary
//! directory of their own, so every artifact goes from one to the other through the bucket.
//! Afterwards every output a job names is an object in the bucket, the objects hold what the
//! jobs say, nothing is left half-written (no `*.partial` object, no open multipart upload) and
//! no process kept a local copy. A second test drives the artifact store in process: a file
//! larger than one part goes up as a multipart upload and comes back whole (copied, and read as
//! a stream), a download job tried again keeps the shards its first attempt published, and a
//! stage whose `out` setting names a bucket publishes there. A third test runs the `cascade wat`,
//! `cascade download` and `cascade clip` commands from the bucket into the bucket, and a fourth
//! checks that an HTTPS endpoint is used only when its certificate's authority is trusted.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cascade_stages::download::{DownloadStage, DownloadSummary, PairShardInput, ReplayServer};
use cascade_stages::stage::{ArtifactError, ArtifactStore, Input, Stage, StageContext};
use cascade_stages::wat::WatStage;
use cascade_tests::moto::{python_with_moto, MotoServer, TestCertificates};
use cascade_tests::replay::{archived_answers, write_pairs};
use cascade_tests::{cascade_binary, wait_until, workspace_root, Daemon};
use serde_json::Value;

const BINARY: &str = env!("CARGO_BIN_EXE_cascade-test-pipeline");
const BUCKET: &str = "cascade-artifacts";
const ROOT: &str = "s3://cascade-artifacts/run-1";

fn json_of(data: &str) -> Value {
    serde_json::from_str(data.strip_prefix("<!json!>").expect("JSON output")).unwrap()
}

/// A directory for one process: its working directory, with its own `tmp/` as `TMPDIR`.
fn process_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("tmp")).unwrap();
    dir
}

/// The environment of a process in `dir`: the S3 server, and `dir/tmp` as temporary directory.
fn process_env(moto: &MotoServer, dir: &Path) -> Vec<(&'static str, String)> {
    let mut env = moto.env();
    env.push(("TMPDIR", dir.join("tmp").display().to_string()));
    env
}

/// A remote stage-b worker in a directory of its own, knowing the artifacts only from its
/// environment.
fn download_worker(moto: &MotoServer, dir: &Path, tracker: &str, nickname: &str) -> Child {
    let warc = workspace_root().join("stages/tests/data/warc/ia-archive-org-2008.warc.gz");
    let settings = serde_json::json!({ "source": "warc", "warcs": [warc] }).to_string();
    Command::new(BINARY)
        .args(["worker", "--tracker", tracker, "--stage", "b", "--kind", "download", "--nickname", nickname])
        .args(["--settings", &settings])
        .current_dir(dir)
        .envs(process_env(moto, dir))
        .env("CASCADE__ENGINE__ARTIFACTS", ROOT)
        .env("CASCADE_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("the worker starts")
}

/// The URLs of the first `count` images the web archive `warc` answered with 200.
fn archived_images(warc: &Path, count: usize) -> Vec<String> {
    let replay = ReplayServer::start(&[warc.to_owned()]).unwrap();
    let urls: Vec<String> = archived_answers(&replay)
        .into_iter()
        .filter(|(_, (status, kind))| *status == 200 && kind.starts_with("image/"))
        .map(|(url, _)| url)
        .take(count)
        .collect();
    assert_eq!(urls.len(), count, "images in the crawl");
    urls
}

/// Every key in the bucket.
fn keys(moto: &MotoServer) -> Vec<String> {
    let listed = moto.boto(
        "keys = []\n\
         for page in s3.get_paginator('list_objects_v2').paginate(Bucket=args[0]):\n\
         \x20   keys += [o['Key'] for o in page.get('Contents', [])]\n\
         print(json.dumps(keys))",
        &[BUCKET],
    );
    serde_json::from_value(listed).unwrap()
}

/// Multipart uploads started and neither completed nor aborted.
fn open_uploads(moto: &MotoServer) -> Value {
    moto.boto("print(json.dumps(s3.list_multipart_uploads(Bucket=args[0]).get('Uploads', []), default=str))", &[BUCKET])
}

/// The key of an `s3://` URL in the bucket.
fn key_of(url: &str) -> &str {
    url.strip_prefix(&format!("s3://{BUCKET}/")).unwrap_or_else(|| panic!("{url} is not in the bucket"))
}

/// The files of a directory tree, relative to it.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(current) = pending.pop() {
        for entry in std::fs::read_dir(&current).unwrap().map(Result::unwrap) {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else {
                files.push(path.strip_prefix(dir).unwrap().to_owned());
            }
        }
    }
    files
}

#[test]
fn the_laion_stages_pass_their_artifacts_through_s3() {
    let Some(python) = python_with_moto() else { return };
    let started = Instant::now();
    let moto = MotoServer::start(python);
    moto.boto("s3.create_bucket(Bucket=args[0])", &[BUCKET]);
    let root = workspace_root();
    let samples = std::fs::read_to_string(root.join("examples/laion-sample.txt")).unwrap();
    let mut inputs = Vec::new();
    for sample in samples.lines() {
        let name = Path::new(sample).file_name().unwrap().to_str().unwrap();
        let key = format!("inputs/{name}");
        moto.boto("s3.upload_file(args[0], args[1], args[2])", &[root.join(sample).to_str().unwrap(), BUCKET, &key]);
        inputs.push(format!("s3://{BUCKET}/{key}"));
    }

    let daemon_dir = process_dir();
    let model = root.join("stages/tests/clip/fixtures/model");
    let toml = format!(
        "project = \"s3\"\ndatabase = \"cascade.db\"\nsweep-interval = \"200ms\"\nidle-timeout = \"30s\"\n\
         [engine]\nartifacts = \"{ROOT}\"\nretry-backoff = \"100ms\"\nshutdown-grace = \"1s\"\npoll-interval = \"50ms\"\n\
         [stages.a]\nname = \"wat\"\nkind = \"wat\"\nworkers = 2\n\
         [stages.b]\nname = \"download\"\n\
         [stages.c]\nname = \"clip\"\nkind = \"clip\"\n\
         [stages.c.settings]\nweights = \"{}\"\nconfig = \"{}\"\n",
        model.join("model.safetensors").display(),
        model.join("config.json").display()
    );
    std::fs::write(daemon_dir.path().join("cascade.toml"), toml).unwrap();
    std::fs::write(daemon_dir.path().join("jobs.txt"), inputs.join("\n")).unwrap();
    let env = process_env(&moto, daemon_dir.path());
    let env: Vec<(&str, &str)> = env.iter().map(|(name, value)| (*name, value.as_str())).collect();
    let mut daemon = Daemon::start_with_env(
        Path::new(BINARY),
        &["run", "--config", "cascade.toml", "--no-progress", "--txt", "jobs.txt"],
        0,
        Some(daemon_dir.path()),
        &env,
    );
    let worker_dirs = [process_dir(), process_dir()];
    let mut workers: Vec<Child> = worker_dirs
        .iter()
        .enumerate()
        .map(|(i, dir)| download_worker(&moto, dir.path(), &daemon.url, &format!("s3-worker-{i}")))
        .collect();
    let done = || daemon.get_json("/v1/stats")["stages"][2]["done"].as_u64().unwrap() as usize;
    wait_until("every job passed the three stages", Duration::from_secs(300), || done() == inputs.len());

    let objects = keys(&moto);
    let exists = |url: &str| objects.iter().any(|k| k == key_of(url));
    let (mut pairs, mut downloaded, mut filtered) = (0, 0, 0);
    for (number, input) in (1..).zip(&inputs) {
        let job = daemon.get_json(&format!("/v1/jobs/{number}"));
        let data = job["data"].as_array().unwrap();
        assert_eq!(data[0], input.as_str());
        let wat = json_of(data[1].as_str().unwrap());
        assert_eq!(wat["input"], input.as_str(), "stage a names its S3 input");
        let pairs_url = wat["output"].as_str().unwrap();
        let in_wat = pairs_url.starts_with(&format!("{ROOT}/wat/")) && pairs_url.ends_with(".parquet");
        assert!(in_wat && exists(pairs_url), "{pairs_url}");
        pairs += wat["summary"]["pairs"].as_u64().unwrap();

        let download = json_of(data[2].as_str().unwrap());
        assert_eq!(download["input"], pairs_url);
        assert_eq!(download["count"], wat["summary"]["pairs"], "every pair was tried");
        downloaded += download["successes"].as_u64().unwrap();
        let stem = Path::new(pairs_url).file_stem().unwrap().to_str().unwrap();
        for shard in download["shards"].as_array().unwrap() {
            for file in ["shard", "parquet", "stats"] {
                let url = shard[file].as_str().unwrap();
                assert!(url.starts_with(&format!("{ROOT}/download/{stem}/")) && exists(url), "{url}");
            }
            // The tar in the bucket holds the shard's successes; its stats agree.
            let checked = moto.boto(
                "import io, tarfile\n\
                 tar = s3.get_object(Bucket=args[0], Key=args[1])['Body'].read()\n\
                 names = tarfile.open(fileobj=io.BytesIO(tar)).getnames()\n\
                 stats = json.loads(s3.get_object(Bucket=args[0], Key=args[2])['Body'].read())\n\
                 print(json.dumps({'jpg': sum(n.endswith('.jpg') for n in names), 'files': len(names), 'stats': stats}))",
                &[BUCKET, key_of(shard["shard"].as_str().unwrap()), key_of(shard["stats"].as_str().unwrap())],
            );
            assert_eq!(checked["jpg"], shard["successes"], "{checked}");
            assert_eq!(checked["files"].as_u64(), shard["successes"].as_u64().map(|n| 3 * n));
            assert_eq!(checked["stats"]["successes"], shard["successes"]);
            assert_eq!(checked["stats"]["count"], shard["count"]);
        }

        let clip = json_of(job["result"].as_str().unwrap());
        let shards = clip["shards"].as_array().unwrap();
        assert_eq!(shards.len(), download["shards"].as_array().unwrap().len());
        for (summary, shard) in shards.iter().zip(download["shards"].as_array().unwrap()) {
            assert_eq!(summary["input"], shard["shard"]);
            for file in ["shard", "metadata", "image_embeddings", "text_embeddings"] {
                let url = summary["outputs"][file].as_str().unwrap();
                assert!(url.starts_with(&format!("{ROOT}/clip/{stem}/")) && exists(url), "{url}");
            }
            filtered += summary["samples"].as_u64().unwrap();
        }
    }
    assert!(pairs > 0 && downloaded >= 50, "{pairs} pairs, {downloaded} images downloaded");
    assert_eq!(filtered, downloaded, "CLIP read every downloaded image from the bucket");

    // Nothing half-written, and every object belongs to a job's outputs or inputs.
    assert!(objects.iter().all(|k| !k.ends_with(".partial")), "{objects:?}");
    assert_eq!(open_uploads(&moto), serde_json::json!([]));
    let produced = objects.iter().filter(|k| k.starts_with("run-1/")).count();
    assert_eq!(produced + inputs.len(), objects.len(), "{objects:?}");

    daemon.terminate();
    assert!(daemon.wait_exit(Duration::from_secs(30)).is_some_and(|s| s.success()), "the daemon stops cleanly");
    for worker in &mut workers {
        let _ = Command::new("kill").args(["-TERM", &worker.id().to_string()]).status();
        assert!(worker.wait().unwrap().success(), "the worker stops cleanly");
    }
    // No process kept an artifact: staged outputs and fetched inputs are gone.
    for dir in worker_dirs.iter().chain([&daemon_dir]) {
        let left: Vec<PathBuf> = files_under(dir.path())
            .into_iter()
            // The database's own files (`cascade.db`, and its `-wal` and `-shm` when the process
            // ended before its last connection closed) are not artifacts.
            .filter(|f| {
                !["cascade.toml", "jobs.txt"].iter().any(|n| f == Path::new(n)) && !f.to_string_lossy().starts_with("cascade.db")
            })
            .collect();
        assert!(left.is_empty(), "{}: {left:?}", dir.path().display());
    }
    let seconds = started.elapsed().as_secs_f64();
    println!("s3: {} jobs, {pairs} pairs, {downloaded} images, {} objects, {seconds:.1} s", inputs.len(), objects.len());
}

/// The artifact store in this process, against one moto server: the process's S3 client reads
/// its settings from the environment once, so both checks share the server (no other test of
/// this binary sets them).
#[test]
fn the_artifact_store_in_process() {
    let Some(python) = python_with_moto() else { return };
    let moto = MotoServer::start(python);
    moto.boto("s3.create_bucket(Bucket=args[0])", &[BUCKET]);
    for (name, value) in moto.env() {
        std::env::set_var(name, value);
    }
    a_large_artifact_goes_up_in_parts_and_comes_back_whole(&moto);
    a_download_job_tried_again_keeps_the_shards_its_first_attempt_published(&moto);
    a_stage_whose_out_names_a_bucket_publishes_there(&moto);
}

fn a_large_artifact_goes_up_in_parts_and_comes_back_whole(moto: &MotoServer) {
    let store = ArtifactStore::open(format!("s3://{BUCKET}/parts").parse().unwrap()).unwrap();
    let out = store.output("big").unwrap();
    // 20 MiB: three parts of 8 MiB; bytes that differ from part to part.
    let content: Vec<u8> = (0..20u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    let file = out.path().join("sub/blob.bin");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(&file, &content).unwrap();
    let url = out.publish(&file).unwrap();
    assert_eq!(url, Path::new("s3://cascade-artifacts/parts/big/sub/blob.bin"));
    assert!(!file.exists(), "the staged copy is removed once uploaded");
    let head = moto.boto(
        "h = s3.head_object(Bucket=args[0], Key=args[1])\nprint(json.dumps({'size': h['ContentLength'], 'etag': h['ETag']}))",
        &[BUCKET, "parts/big/sub/blob.bin"],
    );
    assert_eq!(head["size"], content.len());
    assert!(head["etag"].as_str().unwrap().ends_with("-3\""), "a three-part upload: {head}");
    assert_eq!(open_uploads(moto), serde_json::json!([]));

    let fetched = store.fetch(&url).unwrap();
    assert_eq!(fetched.path().file_name().unwrap(), "blob.bin");
    assert!(std::fs::read(fetched.path()).unwrap() == content, "the object comes back whole");
    let copy = fetched.path().to_owned();
    drop(fetched);
    assert!(!copy.exists(), "the fetched copy is removed when dropped");

    let missing = store.fetch(Path::new("s3://cascade-artifacts/parts/big/none.bin"));
    assert!(matches!(missing, Err(ArtifactError::NotFound { .. })), "{missing:?}");

    // Read as a stream (as the WAT stage reads its inputs): the same bytes, nothing on disk.
    let Input::Stream { mut reader, size } = store.open_input(&url).unwrap() else { panic!("an object streams") };
    assert_eq!(size, content.len() as u64);
    let mut streamed = Vec::new();
    reader.read_to_end(&mut streamed).unwrap();
    assert!(streamed == content, "the stream gives the object whole");
    // A reader dropped half-way stops its download without blocking.
    let Input::Stream { mut reader, .. } = store.open_input(&url).unwrap() else { panic!("an object streams") };
    let mut first = vec![0; 1 << 20];
    reader.read_exact(&mut first).unwrap();
    assert!(first == content[..1 << 20]);
    drop(reader);
    let missing = store.open_input(Path::new("s3://cascade-artifacts/parts/big/none.bin"));
    assert!(matches!(missing, Err(ArtifactError::NotFound { .. })), "{missing:?}");
    assert!(matches!(store.open_input(Path::new("local/file.wat.gz")), Ok(Input::Path(p)) if p == Path::new("local/file.wat.gz")));
}

/// A download job whose worker died before its last shard was published runs again (as the
/// engine retries it): the shards already in the bucket are copied back and kept, neither
/// downloaded nor uploaded again, and only the lost shard is made anew.
fn a_download_job_tried_again_keeps_the_shards_its_first_attempt_published(moto: &MotoServer) {
    let warc = workspace_root().join("stages/tests/data/warc/ia-archive-org-2008.warc.gz");
    let urls = archived_images(&warc, 25);
    let dir = tempfile::tempdir().unwrap();
    let pairs = dir.path().join("pairs.parquet");
    write_pairs(&pairs, &urls, |i| format!("picture {i}"));

    let settings = serde_json::json!({"source": "warc", "warcs": [warc], "samples-per-shard": 10});
    let store = ArtifactStore::open(format!("s3://{BUCKET}/resume").parse().unwrap()).unwrap();
    let pool = Arc::new(rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap());
    let ctx = StageContext::new("b", store, pool);
    let attempt = || -> DownloadSummary {
        let mut stage: DownloadStage = serde_json::from_value(settings.clone()).unwrap();
        stage.open(&ctx).unwrap();
        let summary = stage.process(PairShardInput::Path(pairs.clone()), &ctx).unwrap();
        stage.close(&ctx);
        summary
    };
    let shard_key = |id: usize, suffix: &str| format!("resume/download/pairs/{id:05}{suffix}");
    let object = |key: &str| {
        moto.boto(
            "o = s3.get_object(Bucket=args[0], Key=args[1])\n\
             print(json.dumps({'body': o['Body'].read().decode('latin-1'), 'modified': str(o['LastModified'])}))",
            &[BUCKET, key],
        )
    };

    let first = attempt();
    assert_eq!(first.shards.len(), 3, "25 samples in shards of 10");
    let before: Vec<Value> = (0..3).map(|id| object(&shard_key(id, "_stats.json"))).collect();
    let tars_before: Vec<Value> = (0..2).map(|id| object(&shard_key(id, ".tar"))["modified"].clone()).collect();
    // The worker died before shard 2 was published: none of its objects is there.
    for suffix in [".tar", ".parquet", "_stats.json"] {
        moto.boto("s3.delete_object(Bucket=args[0], Key=args[1])", &[BUCKET, &shard_key(2, suffix)]);
    }
    // Object times have whole seconds: an object written again would show a later one.
    std::thread::sleep(Duration::from_millis(1100));

    let second = attempt();
    let references = |summary: &DownloadSummary| -> Vec<PathBuf> {
        summary.shards.iter().flat_map(|s| [s.shard.clone(), s.parquet.clone(), s.stats.clone()]).collect()
    };
    assert_eq!(references(&second), references(&first));
    assert_eq!(serde_json::to_value(&second.counts).unwrap(), serde_json::to_value(&first.counts).unwrap());
    for id in 0..2 {
        // A shard made again would hold its own start time and duration.
        assert_eq!(object(&shard_key(id, "_stats.json")), before[id], "shard {id} kept, not made or uploaded again");
        assert_eq!(object(&shard_key(id, ".tar"))["modified"], tars_before[id], "shard {id}'s tar not uploaded again");
    }
    let remade = object(&shard_key(2, "_stats.json"));
    assert_ne!(remade["body"], before[2]["body"], "shard 2 made anew");
    for suffix in [".tar", ".parquet"] {
        object(&shard_key(2, suffix));
    }
    assert_eq!(open_uploads(moto), serde_json::json!([]));
}

/// A stage's `out` setting may name a bucket prefix of its own: the WAT stage of a project whose
/// artifacts are local publishes its shard there, and nothing stays in the local directory.
fn a_stage_whose_out_names_a_bucket_publishes_there(moto: &MotoServer) {
    let artifacts = tempfile::tempdir().unwrap();
    let pool = Arc::new(rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap());
    let ctx = StageContext::new("a", ArtifactStore::local(artifacts.path()), pool);
    let settings = serde_json::json!({"out": format!("s3://{BUCKET}/elsewhere/pairs/")});
    let mut stage: WatStage = serde_json::from_value(settings).unwrap();
    stage.open(&ctx).unwrap();
    let wat = workspace_root().join("stages/tests/data/wat/cc-whirlwind-CC-MAIN-2024-22.derived.warc.wat.gz");
    let output = stage.process(wat, &ctx).unwrap();
    stage.close(&ctx);
    let url = "s3://cascade-artifacts/elsewhere/pairs/cc-whirlwind-CC-MAIN-2024-22.derived.parquet";
    assert_eq!(output.output, Path::new(url));
    assert!(output.summary.pairs > 0, "{:?}", output.summary);
    let head = moto.boto(
        "print(json.dumps({'size': s3.head_object(Bucket=args[0], Key=args[1])['ContentLength']}))",
        &[BUCKET, key_of(url)],
    );
    assert!(head["size"].as_u64().unwrap() > 0, "{head}");
    assert_eq!(files_under(artifacts.path()), Vec::<PathBuf>::new(), "nothing written to the local artifacts");

    // A location of another kind is refused with the settings.
    let refused = serde_json::from_value::<WatStage>(serde_json::json!({"out": "gs://bucket/pairs"}));
    assert!(refused.unwrap_err().to_string().contains("s3://"));
}

/// The commands outside any pipeline take `s3://` inputs and an `s3://` `--out`: `cascade wat`
/// on a WAT file in the bucket, `cascade download` on a pair shard in the bucket (images replayed
/// from the bundled WARC), then `cascade clip` on one of the tars it published. Each runs in a
/// directory of its own and keeps no file there; its report names the objects it published. A
/// download run again keeps the shards of the first run instead of making them anew.
#[test]
fn the_commands_read_from_and_write_to_a_bucket() {
    let Some(python) = python_with_moto() else { return };
    let moto = MotoServer::start(python);
    moto.boto("s3.create_bucket(Bucket=args[0])", &[BUCKET]);
    let root = workspace_root();
    let run = |args: &[&str]| -> Vec<Value> {
        let dir = process_dir();
        let output = Command::new(cascade_binary())
            .args(args)
            .current_dir(dir.path())
            .envs(process_env(&moto, dir.path()))
            .env("CASCADE_LOG", "warn")
            .output()
            .expect("cascade runs");
        assert!(output.status.success(), "cascade {args:?}: {}", String::from_utf8_lossy(&output.stderr));
        assert_eq!(files_under(dir.path()), Vec::<PathBuf>::new(), "cascade {args:?} kept no local file");
        String::from_utf8_lossy(&output.stdout).lines().map(|line| serde_json::from_str(line).unwrap()).collect()
    };
    let object = |url: &str| {
        let body = "print(json.dumps(s3.get_object(Bucket=args[0], Key=args[1])['Body'].read().decode('latin-1')))";
        moto.boto(body, &[BUCKET, key_of(url)])
    };

    let wat = root.join("stages/tests/data/wat/cc-whirlwind-CC-MAIN-2024-22.derived.warc.wat.gz");
    let wat_key = "cli/in/cc-whirlwind-CC-MAIN-2024-22.derived.warc.wat.gz";
    moto.boto("s3.upload_file(args[0], args[1], args[2])", &[wat.to_str().unwrap(), BUCKET, wat_key]);
    let wat_url = format!("s3://{BUCKET}/{wat_key}");
    let reports = run(&["wat", &wat_url, "--out", &format!("s3://{BUCKET}/cli/pairs")]);
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert_eq!(reports[0]["input"], wat_url.as_str());
    assert_eq!(reports[0]["output"], format!("s3://{BUCKET}/cli/pairs/cc-whirlwind-CC-MAIN-2024-22.derived.parquet"));
    assert_eq!(reports[0]["summary"]["pairs"], 7, "as from the local file");
    assert!(!object(reports[0]["output"].as_str().unwrap()).as_str().unwrap().is_empty());
    // An input that is not in the bucket: a clear error, said once.
    let missing = format!("s3://{BUCKET}/cli/in/none.warc.wat.gz");
    let dir = process_dir();
    let failed = Command::new(cascade_binary())
        .args(["wat", &missing, "--out", &format!("s3://{BUCKET}/cli/pairs")])
        .current_dir(dir.path())
        .envs(process_env(&moto, dir.path()))
        .env("CASCADE_LOG", "warn")
        .env_remove("RUST_BACKTRACE")
        .output()
        .expect("cascade runs");
    assert!(!failed.status.success());
    let message = String::from_utf8_lossy(&failed.stderr);
    assert!(message.lines().any(|line| line == format!("{missing}: no such object")), "{message}");

    let warc = root.join("stages/tests/data/warc/ia-archive-org-2008.warc.gz");
    let urls = archived_images(&warc, 12);
    let local = tempfile::tempdir().unwrap();
    let pairs = local.path().join("pairs.parquet");
    write_pairs(&pairs, &urls, |i| format!("picture {i}"));
    moto.boto("s3.upload_file(args[0], args[1], args[2])", &[pairs.to_str().unwrap(), BUCKET, "cli/in/pairs.parquet"]);
    let pairs_url = format!("s3://{BUCKET}/cli/in/pairs.parquet");
    let download = [
        "download",
        &pairs_url,
        "--warc",
        warc.to_str().unwrap(),
        "--settings",
        r#"{"samples-per-shard": 10}"#,
        "--out",
        &format!("s3://{BUCKET}/cli/images"),
    ];
    let reports = run(&download);
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert_eq!(reports[0]["input"], pairs_url.as_str());
    assert_eq!(reports[0]["successes"], 12, "{}", reports[0]);
    let shards = reports[0]["shards"].as_array().unwrap();
    assert_eq!(shards.len(), 2, "12 samples in shards of 10");
    for (id, shard) in shards.iter().enumerate() {
        for (file, suffix) in [("shard", ".tar"), ("parquet", ".parquet"), ("stats", "_stats.json")] {
            assert_eq!(shard[file], format!("s3://{BUCKET}/cli/images/pairs/{id:05}{suffix}"));
        }
    }
    let stats: Vec<Value> = shards.iter().map(|s| object(s["stats"].as_str().unwrap())).collect();
    // Run again: the finished shards are copied back and kept, not made anew (each stats file
    // holds its shard's own start time and duration).
    let again = run(&download);
    assert_eq!(again[0]["shards"], reports[0]["shards"]);
    let stats_again: Vec<Value> = shards.iter().map(|s| object(s["stats"].as_str().unwrap())).collect();
    assert_eq!(stats_again, stats, "the shards of the first run are kept");

    let model = root.join("stages/tests/clip/fixtures/model");
    let tar = shards[0]["shard"].as_str().unwrap();
    let reports = run(&[
        "clip",
        "--weights",
        model.join("model.safetensors").to_str().unwrap(),
        "--model-config",
        model.join("config.json").to_str().unwrap(),
        "--threshold",
        "-1",
        tar,
        "--out",
        &format!("s3://{BUCKET}/cli/filtered"),
    ]);
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert_eq!(reports[0]["input"], tar);
    assert_eq!((reports[0]["samples"].as_u64(), reports[0]["kept"].as_u64()), (Some(10), Some(10)), "{}", reports[0]);
    let outputs = &reports[0]["outputs"];
    for (file, key) in [
        ("shard", "00000.tar"),
        ("metadata", "metadata/metadata_00000.parquet"),
        ("image_embeddings", "img_emb/img_emb_00000.npy"),
        ("text_embeddings", "text_emb/text_emb_00000.npy"),
    ] {
        // In a folder named after the shard's own (`pairs`), as the pipeline stage writes.
        assert_eq!(outputs[file], format!("s3://{BUCKET}/cli/filtered/pairs/{key}"));
        assert!(!object(outputs[file].as_str().unwrap()).as_str().unwrap().is_empty(), "{file}");
    }

    let objects = keys(&moto);
    assert!(objects.iter().all(|k| !k.ends_with(".partial")), "{objects:?}");
    assert_eq!(open_uploads(&moto), serde_json::json!([]));
}

/// An HTTPS endpoint, as AWS's are: the server's certificate is checked against the trusted
/// authorities (the system's, or the PEM bundle `SSL_CERT_FILE` names), so `cascade wat` uploads
/// its shard to a server whose authority it trusts, and sends nothing to one whose authority it
/// does not.
#[test]
fn an_https_endpoint_is_used_only_when_its_authority_is_trusted() {
    let Some(python) = python_with_moto() else { return };
    let certificates = TestCertificates::make(python);
    let moto = MotoServer::start_https(python, &certificates);
    assert!(moto.endpoint.starts_with("https://"));
    moto.boto("s3.create_bucket(Bucket=args[0])", &[BUCKET]);
    let wat = workspace_root().join("stages/tests/data/wat/cc-whirlwind-CC-MAIN-2024-22.derived.warc.wat.gz");
    let upload = |authority: &Path| {
        let dir = process_dir();
        let output = Command::new(cascade_binary())
            .args(["wat", wat.to_str().unwrap(), "--out", &format!("s3://{BUCKET}/tls/pairs")])
            .current_dir(dir.path())
            .envs(process_env(&moto, dir.path()))
            .env("SSL_CERT_FILE", authority)
            .env_remove("SSL_CERT_DIR")
            .env("CASCADE_LOG", "warn")
            .output()
            .expect("cascade runs");
        assert_eq!(files_under(dir.path()), Vec::<PathBuf>::new(), "no local file kept");
        output
    };

    let stranger = TestCertificates::make(python);
    let refused = upload(&stranger.authority);
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{message}");
    assert!(message.contains("invalid peer certificate"), "the error says why: {message}");
    assert_eq!(keys(&moto), Vec::<String>::new(), "nothing was uploaded");

    let trusted = upload(&certificates.authority);
    assert!(trusted.status.success(), "{}", String::from_utf8_lossy(&trusted.stderr));
    let report: Value = serde_json::from_slice(&trusted.stdout).unwrap();
    let key = "tls/pairs/cc-whirlwind-CC-MAIN-2024-22.derived.parquet";
    assert_eq!(report["output"], format!("s3://{BUCKET}/{key}"));
    assert_eq!(keys(&moto), vec![key.to_owned()]);
}
