//! Helpers shared by the WAT integration tests: sample paths, expected pairs, and gzip
//! member surgery for building damaged inputs.
#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, Cursor, Read, Write};
use std::path::PathBuf;

use cascade_stages::wat::{extract_pairs, Pair, WatError, WatOptions, WatSummary};
use flate2::{bufread::GzDecoder, write::GzEncoder, Compression};

/// The derived samples with expected pairs.
pub const DERIVED: [&str; 4] = [
    "cc-whirlwind-CC-MAIN-2024-22.derived",
    "cc-CC-MAIN-2020-34-excerpt.derived",
    "ia-archive-org-2008.derived",
    "clueweb09-ja-quirk.derived",
];

pub fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/wat").join(name)
}

pub fn read(name: &str) -> Vec<u8> {
    std::fs::read(data(name)).unwrap()
}

/// Expected pairs of a derived sample, in file order.
pub fn expected(stem: &str) -> Vec<Pair> {
    let text = std::fs::read_to_string(data(&format!("{stem}.pairs.jsonl"))).unwrap();
    text.lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let s = |k: &str| v[k].as_str().unwrap().to_owned();
            Pair { uid: s("uid"), url: s("url"), alt: s("alt"), cc_filename: s("cc_filename"), page_url: s("page") }
        })
        .collect()
}

/// Runs the pipeline over bytes.
pub fn run(input: &[u8], opts: &WatOptions, threads: usize) -> Result<(Vec<Pair>, WatSummary), WatError> {
    let pool = (threads > 0).then(|| rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap());
    let mut pairs = Vec::new();
    let summary = extract_pairs(
        input,
        opts,
        pool.as_ref(),
        input.len() as u64,
        |batch| {
            pairs.extend(batch);
            Ok(())
        },
        |_, _| {},
    )?;
    assert_eq!(summary.pairs, pairs.len() as u64);
    Ok((pairs, summary))
}

/// Asserts equal pair lists without printing thousands of pairs.
pub fn assert_pairs(got: &[Pair], want: &[Pair], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: pair count");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(g, w, "{what}: pair {i}");
    }
}

pub fn opts() -> WatOptions {
    WatOptions { threads: 2, batch_bytes: 64 * 1024, ..WatOptions::default() }
}

/// Splits a multi-member gzip file into its members (raw bytes).
pub fn members(gz: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut cur = Cursor::new(gz);
    while !cur.fill_buf().unwrap().is_empty() {
        let start = cur.position() as usize;
        let mut dec = GzDecoder::new(&mut cur);
        std::io::copy(&mut dec, &mut std::io::sink()).unwrap();
        out.push(gz[start..cur.position() as usize].to_vec());
    }
    out
}

/// Decompresses all members.
pub fn gunzip(gz: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::bufread::MultiGzDecoder::new(gz).read_to_end(&mut out).unwrap();
    out
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

/// A WAT metadata record around `json`, as one gzip member.
pub fn metadata_member(json: &str) -> Vec<u8> {
    let rec = format!(
        "WARC/1.0\r\nWARC-Type: metadata\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{json}\r\n\r\n",
        json.len()
    );
    gzip(rec.as_bytes())
}

/// Index of the first member whose record yields pairs (found by running each alone).
pub fn member_with_pairs(members: &[Vec<u8>], min_pairs: usize) -> usize {
    members
        .iter()
        .position(|m| run(m, &opts(), 0).map(|(p, _)| p.len() >= min_pairs).unwrap_or(false))
        .unwrap()
}
