//! `cascade download` on real archived images: the image responses of the bundled 2008
//! archive.org crawl are replayed by the loopback WARC server, downloaded, resized and written
//! as img2dataset webdataset shards, which Python's `webdataset` and `pyarrow` then read as
//! dataset users do.

use std::path::PathBuf;
use std::process::Command;

use cascade_stages::download::ReplayServer;
use cascade_tests::replay::{archived_answers, write_pairs};
use cascade_tests::{cascade, python_with_data_libraries, workspace_root};
use serde_json::Value;

fn warc() -> PathBuf {
    workspace_root().join("stages/tests/data/warc/ia-archive-org-2008.warc.gz")
}

/// Reads a shard folder with webdataset and pyarrow; prints one JSON object: the parquet's
/// schema, its rows, the tar's samples and the stats.
const READ_SHARD: &str = r#"
import json, sys
import pyarrow.parquet as pq
import webdataset as wds

folder = sys.argv[1]
table = pq.read_table(folder + "/00000.parquet")
schema = {field.name: str(field.type) for field in table.schema}
rows = table.to_pylist()
samples = []
for sample in wds.WebDataset(folder + "/00000.tar", shardshuffle=False):
    meta = json.loads(sample["json"])
    samples.append({
        "key": sample["__key__"],
        "files": sorted(k for k in sample if not k.startswith("__")),
        "jpeg_magic": sample["jpg"][:3].hex(),
        "caption": sample["txt"].decode("utf-8"),
        "meta": meta,
        "json_keys": list(meta),
    })
stats = json.load(open(folder + "/00000_stats.json"))
print(json.dumps({"schema": schema, "rows": rows, "samples": samples, "stats": stats}))
"#;

#[test]
fn replayed_images_become_img2dataset_shards() {
    let replay = ReplayServer::start(&[warc()]).unwrap();
    let answers = archived_answers(&replay);
    let images: Vec<String> = answers
        .iter()
        .filter(|(_, (status, kind))| *status == 200 && kind.starts_with("image/"))
        .map(|(url, _)| url.clone())
        .collect();
    assert!(images.len() >= 50, "only {} image responses in the crawl", images.len());
    let page = answers.iter().find(|(_, (status, kind))| *status == 200 && kind.starts_with("text/html")).unwrap().0;
    let unknown = "http://www.archive.org/not-in-the-crawl.jpg".to_owned();
    let mut urls = images.clone();
    urls.extend([page.clone(), unknown.clone()]);

    let dir = tempfile::tempdir().unwrap();
    let pairs = dir.path().join("pairs.parquet");
    write_pairs(&pairs, &urls, |i| format!("image number {i} — ünïcode"));
    let out = dir.path().join("out");
    let warc = warc();
    let args = ["download", pairs.to_str().unwrap(), "--out", out.to_str().unwrap(), "--warc", warc.to_str().unwrap()];
    let (ok, stdout, stderr) = cascade(&args);
    assert!(ok, "cascade download failed: {stderr}");
    let summary: Value = serde_json::from_str(stdout.lines().next().unwrap()).unwrap();
    assert_eq!(summary["count"], urls.len());

    let folder = out.join("pairs");
    let output = Command::new(python_with_data_libraries()).args(["-c", READ_SHARD]).arg(&folder).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let shard: Value = serde_json::from_slice(&output.stdout).unwrap();

    // img2dataset's columns and types.
    let schema = shard["schema"].as_object().unwrap();
    let names: Vec<&str> = schema.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "uid", "cc_filename", "page_url", "caption", "url", "key", "status", "error_message", "width", "height",
            "original_width", "original_height", "exif", "sha256"
        ]
    );
    for name in ["width", "height", "original_width", "original_height"] {
        assert_eq!(schema[name], "int32", "{name}");
    }
    for name in ["uid", "caption", "url", "key", "status", "error_message", "exif", "sha256"] {
        assert_eq!(schema[name], "string", "{name}");
    }

    // Every input row is in the parquet, keyed by its position; images succeed with the digest
    // of the archived payload, the page and the unknown URL fail with their reasons.
    let rows = shard["rows"].as_array().unwrap();
    assert_eq!(rows.len(), urls.len());
    let mut successes = 0;
    for (i, url) in urls.iter().enumerate() {
        let row = rows.iter().find(|r| r["url"] == url.as_str()).unwrap_or_else(|| panic!("no row for {url}"));
        assert_eq!(row["key"], format!("{i:09}"));
        assert_eq!(row["caption"], format!("image number {i} — ünïcode"));
        if url == page {
            assert_eq!(row["status"], "failed_to_resize", "{row}");
            assert_eq!(row["error_message"], "Image decoding error");
        } else if *url == unknown {
            assert_eq!(row["status"], "failed_to_download", "{row}");
            assert_eq!(row["error_message"], "HTTP Error 404: Not Found");
        } else if row["status"] == "success" {
            successes += 1;
            let payload = replay.payload(url).unwrap();
            assert_eq!(row["sha256"].as_str().unwrap(), sha256_hex(&payload), "{url}");
            assert_eq!((row["width"].as_i64(), row["height"].as_i64()), (Some(256), Some(256)), "border mode: {url}");
            assert!(row["original_width"].as_i64().unwrap() > 0 && row["exif"].is_string());
            assert!(row["error_message"].is_null());
        } else {
            // An archived "image" that is not one (img2dataset fails the same ones, see
            // docs/download.md): a decoding failure, never a download failure.
            assert_eq!(row["status"], "failed_to_resize", "{row}");
        }
    }
    assert!(successes + 2 >= images.len(), "{successes} of {} images succeeded", images.len());

    // The tar: successes only, jpg/json/txt, the json the parquet row.
    let samples = shard["samples"].as_array().unwrap();
    assert_eq!(samples.len(), successes);
    for sample in samples {
        assert_eq!(sample["files"], serde_json::json!(["jpg", "json", "txt"]));
        assert_eq!(sample["jpeg_magic"], "ffd8ff");
        let meta = &sample["meta"];
        let row = rows.iter().find(|r| r["key"] == sample["key"]).unwrap();
        assert_eq!(meta, row);
        assert_eq!(sample["caption"], row["caption"]);
        assert_eq!(sample["json_keys"][0], "uid");
    }

    // The stats agree, and add up by reason.
    let stats = &shard["stats"];
    assert_eq!(stats["count"], urls.len());
    assert_eq!(stats["successes"], successes);
    assert_eq!(stats["status_dict"]["success"], successes);
    assert_eq!(stats["status_dict"]["HTTP Error 404: Not Found"], 1);
    let counted: u64 = stats["status_dict"].as_object().unwrap().values().map(|v| v.as_u64().unwrap()).sum();
    assert_eq!(counted, urls.len() as u64);
    assert!(stats["duration"].as_f64().unwrap() >= 0.0 && stats["end_time"].as_f64() >= stats["start_time"].as_f64());

    // A second run over finished shards is a no-op: same files, same summary counts.
    let before = std::fs::metadata(folder.join("00000.tar")).unwrap().modified().unwrap();
    let (ok, again, stderr) = cascade(&args);
    assert!(ok, "{stderr}");
    let second: Value = serde_json::from_str(again.lines().next().unwrap()).unwrap();
    assert_eq!(second["successes"], summary["successes"]);
    assert_eq!(std::fs::metadata(folder.join("00000.tar")).unwrap().modified().unwrap(), before);
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}
