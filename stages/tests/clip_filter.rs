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
        weights: dir.join("model/model.safetensors"),
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
    let (_all_tmp, all) = run(-1.0, 8);
    let mut sims: Vec<f32> = metadata(&all.outputs.metadata).iter().map(|r| r.3).collect();
    sims.sort_by(f32::total_cmp);
    let threshold = sims[2];
    // Batching must not change the result: batch 2 here, 8 above.
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
