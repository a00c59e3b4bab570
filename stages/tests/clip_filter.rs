//! The shard filter end to end on the tiny model: a webdataset tar with good, corrupt and
//! incomplete samples in; the kept shard, metadata parquet and embeddings out.
#![cfg(feature = "clip")]

use std::path::{Path, PathBuf};

use cascade_stages::clip::{filter_shard, ClipFilter, EmbeddingDtype, FilterOptions, FilterSummary, ModelSettings};
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::RowAccessor;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/clip/fixtures")
}

fn filter() -> ClipFilter {
    let dir = fixtures();
    ClipFilter::load(&ModelSettings {
        weights: dir.join("model/model.safetensors").into(),
        config: Some(dir.join("model/config.json")),
        ..ModelSettings::default()
    })
    .expect("tiny model")
}

fn append(tar: &mut tar::Builder<Vec<u8>>, path: &str, bytes: &[u8]) {
    let mut header = tar::Header::new_gnu();
    header.set_size(bytes.len() as u64);
    header.set_mode(0o644);
    tar.append_data(&mut header, path, bytes).unwrap();
}

/// Five good samples (the fixture images with captions and urls), one corrupt JPEG, one
/// sample without caption, one without image.
fn make_shard(path: &Path) {
    let images = ["wide_40x30.png", "photo_300x200.jpg", "tall_64x100.png", "gray_50x50.png", "odd_97x61.jpg"];
    let mut tar = tar::Builder::new(Vec::new());
    for (i, name) in images.iter().enumerate() {
        let ext = name.rsplit('.').next().unwrap();
        let bytes = std::fs::read(fixtures().join("images").join(name)).unwrap();
        append(&mut tar, &format!("00000/{i:09}.{ext}"), &bytes);
        append(&mut tar, &format!("00000/{i:09}.txt"), format!("caption number {i} of {name}").as_bytes());
        append(&mut tar, &format!("00000/{i:09}.json"), format!(r#"{{"url": "http://example.com/{name}"}}"#).as_bytes());
    }
    append(&mut tar, "00000/000000005.jpg", b"\xff\xd8\xff\xe0 truncated jpeg");
    append(&mut tar, "00000/000000005.txt", b"corrupt image");
    append(&mut tar, "00000/000000006.png", &std::fs::read(fixtures().join("images/wide_40x30.png")).unwrap());
    append(&mut tar, "00000/000000007.txt", b"caption without image");
    std::fs::write(path, tar.into_inner().unwrap()).unwrap();
}

fn run(threshold: f32, batch_size: usize) -> (tempfile::TempDir, FilterSummary) {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("00000.tar");
    make_shard(&input);
    let options = FilterOptions { threshold, batch_size, threads: 2, embeddings: EmbeddingDtype::Float32 };
    let mut seen = Vec::new();
    let summary = filter_shard(&filter(), &input, &tmp.path().join("out"), &options, |n| seen.push(n)).unwrap();
    assert_eq!(seen.last(), Some(&8));
    (tmp, summary)
}

fn metadata(path: &Path) -> Vec<(String, Option<String>, String, f32)> {
    let reader = SerializedFileReader::new(std::fs::File::open(path).unwrap()).unwrap();
    reader
        .get_row_iter(None)
        .unwrap()
        .map(|row| {
            let row = row.unwrap();
            let url = row.get_string(1).ok().cloned();
            (row.get_string(0).unwrap().clone(), url, row.get_string(2).unwrap().clone(), row.get_float(3).unwrap())
        })
        .collect()
}

fn npy_rows(path: &Path) -> (String, usize) {
    let bytes = std::fs::read(path).unwrap();
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = String::from_utf8(bytes[10..10 + header_len].to_vec()).unwrap();
    (header, bytes.len() - 10 - header_len)
}

#[test]
fn keeps_everything_at_threshold_minus_one_and_counts_damage() {
    let (_tmp, s) = run(-1.0, 3);
    assert_eq!((s.samples, s.embedded, s.kept), (8, 5, 5));
    assert_eq!((s.corrupt_images, s.missing_caption, s.missing_image), (1, 1, 1));
    assert!(s.truncated.is_none());
    let rows = metadata(&s.outputs.metadata);
    assert_eq!(rows.len(), 5);
    assert_eq!(rows[1].0, "00000/000000001");
    assert_eq!(rows[1].1.as_deref(), Some("http://example.com/photo_300x200.jpg"));
    assert_eq!(rows[1].2, "caption number 1 of photo_300x200.jpg");
    assert!(rows.iter().all(|r| (-1.0..=1.0).contains(&r.3)));
    let mean = rows.iter().map(|r| r.3).sum::<f32>() / 5.0;
    assert!((mean - s.mean_similarity).abs() < 1e-5);
    let (header, data) = npy_rows(&s.outputs.image_embeddings);
    assert!(header.contains("'descr': '<f4'") && header.contains("'shape': (5, 8)"), "{header}");
    assert_eq!(data, 5 * 8 * 4);
    let mut files = Vec::new();
    for entry in tar::Archive::new(std::fs::File::open(&s.outputs.shard).unwrap()).entries().unwrap() {
        files.push(entry.unwrap().path().unwrap().to_string_lossy().into_owned());
    }
    assert_eq!(files.len(), 15);
    assert_eq!(files[3], "00000/000000001.jpg");
}

#[test]
fn threshold_keeps_exactly_the_pairs_at_or_above_it() {
    let similarities = |batch| {
        let (_tmp, all) = run(-1.0, batch);
        metadata(&all.outputs.metadata).iter().map(|r| r.3).collect::<Vec<f32>>()
    };
    // Batching changes a similarity by rounding at most (the CPU backend splits a batch into
    // one sub-batch per thread, and matrix products of other sizes may sum in another order).
    let (mut sims, by_eight) = (similarities(2), similarities(8));
    assert!(sims.iter().zip(&by_eight).all(|(a, b)| (a - b).abs() < 1e-5), "{sims:?} vs {by_eight:?}");
    sims.sort_by(f32::total_cmp);
    let threshold = sims[2];
    // The pair at the threshold itself is kept.
    let (_tmp, some) = run(threshold, 2);
    let kept = metadata(&some.outputs.metadata);
    assert_eq!(some.kept, 3);
    assert!(kept.iter().all(|r| r.3 >= threshold));
    let (header, _) = npy_rows(&some.outputs.text_embeddings);
    assert!(header.contains("'shape': (3, 8)"), "{header}");
    let (_none_tmp, none) = run(1.01, 4);
    assert_eq!(none.kept, 0);
    assert!(metadata(&none.outputs.metadata).is_empty());
}

#[test]
fn a_shard_stopped_by_its_caller_publishes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("00000.tar");
    make_shard(&input);
    let out = tmp.path().join("out");
    let options = FilterOptions { threshold: -1.0, batch_size: 2, threads: 1, embeddings: EmbeddingDtype::Float32 };
    let mut reports = Vec::new();
    let stopped = cascade_stages::clip::filter_shard_in(None, &filter(), &input, &out, &options, |done| {
        reports.push(done);
        if done >= 4 { std::ops::ControlFlow::Break(()) } else { std::ops::ControlFlow::Continue(()) }
    });
    assert!(matches!(stopped, Err(cascade_stages::clip::ClipError::Cancelled)), "{stopped:?}");
    assert_eq!(reports, [2, 4]);
    for file in ["00000.tar", "00000.tar.partial", "metadata/metadata_00000.parquet", "img_emb/img_emb_00000.npy"] {
        assert!(!out.join(file).exists(), "{file} was left behind");
    }
}

mod stage {
    use std::sync::Arc;

    use cascade_stages::clip::{ClipOutput, ClipStage, ShardInput};
    use cascade_stages::stage::{wire, Stage, StageContext, StageError};

    use super::*;

    fn open_stage(dir: &Path) -> (ClipStage, StageContext) {
        let model = fixtures().join("model");
        let settings = serde_json::json!({
            "weights": model.join("model.safetensors"),
            "config": model.join("config.json"),
            "threshold": -1.0,
            "batch-size": 3,
            "out": dir.join("out"),
        });
        let mut stage: ClipStage = serde_json::from_value(settings).unwrap();
        let pool = Arc::new(rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap());
        let ctx = StageContext::new("c", dir.join("artifacts"), pool);
        stage.open(&ctx).unwrap();
        (stage, ctx)
    }

    /// The download stage's report of one job: two shards of 8 samples.
    fn download_report(dir: &Path) -> String {
        for name in ["00000", "00001"] {
            std::fs::create_dir_all(dir.join("x")).unwrap();
            make_shard(&dir.join(format!("x/{name}.tar")));
        }
        let shard = |name: &str| {
            serde_json::json!({
                "shard": dir.join(format!("x/{name}.tar")), "parquet": dir.join(format!("x/{name}.parquet")),
                "stats": dir.join(format!("x/{name}_stats.json")), "count": 9, "successes": 7,
            })
        };
        let report = serde_json::json!({
            "input": dir.join("x.parquet"), "shards": [shard("00000"), shard("00001")], "count": 18, "successes": 14,
        });
        format!("<!json!>{report}")
    }

    #[test]
    fn a_list_of_shards_is_filtered_in_order_with_totals() {
        let tmp = tempfile::tempdir().unwrap();
        let (mut stage, ctx) = open_stage(tmp.path());
        let input: ShardInput = wire::decode(&download_report(tmp.path())).unwrap();
        let ClipOutput::List(list) = stage.process(input, &ctx).unwrap() else { panic!("a list summary") };
        assert_eq!(list.shards.len(), 2);
        assert_eq!(list.shards[0].input, tmp.path().join("x/00000.tar"));
        // In the folder of the shard's own folder: another job's `00001.tar` stays apart.
        assert_eq!(list.shards[1].outputs.shard, tmp.path().join("out/x/00001.tar"));
        assert!(list.shards.iter().all(|s| (s.samples, s.kept) == (8, 5)));
        assert_eq!((list.samples, list.embedded, list.kept), (16, 10, 10));
        assert_eq!((list.corrupt_images, list.missing_image, list.missing_caption, list.truncated_shards), (2, 2, 2, 0));
        assert_eq!(list.threshold, -1.0);
        let mean = (list.shards[0].mean_similarity + list.shards[1].mean_similarity) / 2.0;
        assert!((list.mean_similarity - mean).abs() < 1e-6);
        assert_eq!(ctx.skipped().get("corrupt_image"), Some(&2));
        for file in ["00000.tar", "00001.tar", "metadata/metadata_00001.parquet", "img_emb/img_emb_00000.npy"] {
            assert!(tmp.path().join("out/x").join(file).is_file(), "{file}");
        }
        let json = serde_json::to_value(ClipOutput::List(list)).unwrap();
        assert_eq!(json["samples"], 16);
        assert_eq!(json["shards"][1]["kept"], 5);

        // An empty list (every download of the pair shard failed) keeps nothing.
        let empty: ShardInput = wire::decode(r#"<!json!>{"input": "y.parquet", "shards": [], "count": 3, "successes": 0}"#).unwrap();
        let json = serde_json::to_value(stage.process(empty, &ctx).unwrap()).unwrap();
        assert_eq!(json["shards"], serde_json::json!([]));
        assert_eq!((json["samples"].as_u64(), json["kept"].as_u64()), (Some(0), Some(0)));
    }

    #[test]
    fn single_shard_inputs_still_give_a_plain_summary() {
        let tmp = tempfile::tempdir().unwrap();
        let (mut stage, ctx) = open_stage(tmp.path());
        let path = tmp.path().join("00000.tar");
        make_shard(&path);
        let text: ShardInput = wire::decode(path.to_str().unwrap()).unwrap();
        let described: ShardInput =
            wire::decode(&format!("<!json!>{}", serde_json::json!({"shard": path, "shards": "ignored", "count": 8}))).unwrap();
        assert_eq!(text, ShardInput::Path(path.clone()));
        assert_eq!(described, ShardInput::Described { shard: path.clone() });
        for input in [text, described] {
            let json = serde_json::to_value(stage.process(input, &ctx).unwrap()).unwrap();
            let summary: FilterSummary = serde_json::from_value(json.clone()).unwrap();
            assert_eq!((summary.samples, summary.kept), (8, 5));
            assert!(json.get("shards").is_none() && json["input"] == serde_json::json!(path), "{json}");
        }
    }

    #[test]
    fn a_missing_shard_in_a_list_stops_the_job_as_invalid_input() {
        let tmp = tempfile::tempdir().unwrap();
        let (mut stage, ctx) = open_stage(tmp.path());
        make_shard(&tmp.path().join("00000.tar"));
        let input = ShardInput::List {
            shards: vec![
                cascade_stages::clip::ShardRef::Path(tmp.path().join("00000.tar")),
                cascade_stages::clip::ShardRef::Path(tmp.path().join("gone.tar")),
            ],
        };
        let err = stage.process(input, &ctx).unwrap_err();
        assert!(matches!(err, StageError::InvalidInput(ref m) if m.contains("gone.tar")), "{err:?}");
    }
}
