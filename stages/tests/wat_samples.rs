//! The derived WAT samples must give exactly cc2dataset's pairs; output shard round trip;
//! filters; Python urljoin compatibility.
#![cfg(feature = "wat")]

mod wat_support;

use std::collections::HashSet;
use std::fs::File;

use cascade_stages::wat::{extract_file, python_urljoin, Pair, PairWriter, WatFilters, WatOptions};
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::RowAccessor;
use wat_support::{assert_pairs, data, expected, gunzip, opts, read, run, DERIVED};

#[test]
fn derived_samples_match_cc2dataset_pairs() {
    for stem in DERIVED {
        let input = read(&format!("{stem}.warc.wat.gz"));
        let want = expected(stem);
        for threads in [0, 1, 2] {
            let (got, summary) = run(&input, &opts(), threads).unwrap();
            assert_pairs(&got, &want, &format!("{stem} threads={threads}"));
            assert_eq!(summary.skipped.bad_records(), 0);
            assert_eq!(summary.garbage_bytes + summary.resync_bytes, 0);
            assert_eq!(summary.bytes_read, input.len() as u64);
            assert_eq!(summary.gzip_members, summary.records);
        }
    }
}

#[test]
fn readme_counts_hold() {
    // README table: records, IMG@/src links, pairs for the derived samples.
    let table = [(5, 13, 7), (51, 151, 32), (823, 858, 666), (31, 1252, 556)];
    for (stem, (records, img, pairs)) in DERIVED.iter().zip(table) {
        let (_, s) = run(&read(&format!("{stem}.warc.wat.gz")), &opts(), 2).unwrap();
        assert_eq!((s.records, s.img_links, s.pairs), (records, img, pairs), "{stem}");
    }
}

#[test]
fn genuine_cc_wat_fragment_has_no_pairs() {
    let (pairs, s) = run(&read("cc-whirlwind-CC-MAIN-2024-22.warc.wat.gz"), &opts(), 2).unwrap();
    assert!(pairs.is_empty());
    assert_eq!((s.records, s.metadata_records, s.skipped.bad_records()), (2, 1, 0));
}

#[test]
fn plain_uncompressed_wat_gives_the_same_pairs() {
    let stem = DERIVED[2];
    let plain = gunzip(&read(&format!("{stem}.warc.wat.gz")));
    let (got, s) = run(&plain, &opts(), 2).unwrap();
    assert_pairs(&got, &expected(stem), stem);
    assert!(!s.compressed);
    assert_eq!(s.bytes_read, plain.len() as u64);
}

#[test]
fn small_batches_and_big_batches_keep_file_order() {
    let stem = DERIVED[3];
    let input = read(&format!("{stem}.warc.wat.gz"));
    for batch_bytes in [4096, 1 << 24] {
        let o = WatOptions { batch_bytes, ..opts() };
        assert_pairs(&run(&input, &o, 2).unwrap().0, &expected(stem), &format!("batch_bytes={batch_bytes}"));
    }
}

fn all_expected() -> Vec<Pair> {
    DERIVED.iter().flat_map(|s| expected(s)).collect()
}

fn all_input() -> Vec<u8> {
    DERIVED.iter().flat_map(|s| read(&format!("{s}.warc.wat.gz"))).collect()
}

#[test]
fn each_filter_matches_a_direct_computation() {
    let input = all_input();
    let want = all_expected();
    let check = |filters: WatFilters, keep: &dyn Fn(&Pair) -> bool| {
        let o = WatOptions { filters: filters.clone(), ..opts() };
        let (got, _) = run(&input, &o, 2).unwrap();
        let exp: Vec<Pair> = want.iter().filter(|p| keep(p)).cloned().collect();
        assert_pairs(&got, &exp, &format!("{filters:?}"));
        assert!(exp.len() < want.len(), "filter {filters:?} should drop something");
    };
    check(WatFilters { min_alt_chars: Some(5), ..Default::default() }, &|p| p.alt.chars().count() >= 5);
    check(WatFilters { max_alt_chars: Some(20), ..Default::default() }, &|p| p.alt.chars().count() <= 20);
    check(WatFilters { max_url_chars: Some(60), ..Default::default() }, &|p| p.url.chars().count() <= 60);
    let blocked = [".svg", ".gif", "data:image", "javascript:"];
    check(
        WatFilters { blocked_url_patterns: blocked.map(String::from).to_vec(), ..Default::default() },
        &|p| !blocked.iter().any(|b| p.url.to_ascii_lowercase().contains(b)),
    );
    check(WatFilters { max_host_chars: Some(15), ..Default::default() }, &|p| {
        p.url.split('/').nth(2).is_some_and(|h| h.len() <= 15)
    });
    let mut seen = HashSet::new();
    let firsts: HashSet<usize> = want.iter().enumerate().filter(|(_, p)| seen.insert(p.uid.clone())).map(|(i, _)| i).collect();
    let o = WatOptions { filters: WatFilters { dedup_uid: true, ..Default::default() }, ..opts() };
    let (got, s) = run(&input, &o, 2).unwrap();
    let exp: Vec<Pair> = want.iter().enumerate().filter(|(i, _)| firsts.contains(i)).map(|(_, p)| p.clone()).collect();
    assert_pairs(&got, &exp, "dedup");
    // README: 152 pairs after uid dedup (each file deduplicated alone gives the same here).
    assert_eq!(got.len(), 152);
    assert_eq!(s.skipped.duplicate_uid, 1261 - 152);
}

#[test]
fn laion5b_preset_combines_the_filters() {
    let o = WatOptions { filters: WatFilters::laion5b(), ..opts() };
    let (got, s) = run(&all_input(), &o, 2).unwrap();
    assert!(!got.is_empty());
    assert!(got.iter().all(|p| p.alt.chars().count() >= 5 && !p.url.contains(".gif") && !p.url.contains(".svg")));
    assert_eq!(got.iter().map(|p| &p.uid).collect::<HashSet<_>>().len(), got.len());
    assert!(s.skipped.alt_too_short > 0 && s.skipped.blocked_url > 0 && s.skipped.duplicate_uid > 0);
    let defaults: WatFilters = serde_json::from_str("{}").unwrap();
    assert_eq!(defaults, WatFilters::default());
}

/// The pairs of a parquet shard, in file order.
fn rows_of(reader: &SerializedFileReader<File>) -> Vec<Pair> {
    reader
        .get_row_iter(None)
        .unwrap()
        .map(|r| {
            let r = r.unwrap();
            let s = |i| r.get_string(i).unwrap().clone();
            Pair { uid: s(0), url: s(1), alt: s(2), cc_filename: s(3), page_url: s(4) }
        })
        .collect()
}

#[test]
fn parquet_shard_round_trips() {
    let stem = DERIVED[1];
    let dir = tempfile::tempdir().unwrap();
    let mut calls = Vec::new();
    let input = data(&format!("{stem}.warc.wat.gz"));
    let o = WatOptions { row_group_rows: 10, ..opts() };
    let out = extract_file(&input, &o, dir.path(), |done, total| calls.push((done, total))).unwrap();
    assert_eq!(out.output, dir.path().join("cc-CC-MAIN-2020-34-excerpt.derived.parquet"));
    let size = std::fs::metadata(&input).unwrap().len();
    assert_eq!(calls.last(), Some(&(size, size)));
    assert!(calls.windows(2).all(|w| w[0].0 <= w[1].0));

    let reader = SerializedFileReader::new(File::open(&out.output).unwrap()).unwrap();
    let meta = reader.metadata();
    assert_eq!(meta.num_row_groups(), 4); // 32 rows, 10 per group
    let fields: Vec<_> = meta.file_metadata().schema_descr().columns().iter().map(|c| c.name().to_owned()).collect();
    assert_eq!(fields, ["uid", "url", "alt", "cc_filename", "page_url"]);
    // Every column but the uids (unique by construction) has a dictionary.
    let dictionaries: Vec<bool> = meta.row_group(0).columns().iter().map(|c| c.dictionary_page_offset().is_some()).collect();
    assert_eq!(dictionaries, [false, true, true, true, true]);
    assert_pairs(&rows_of(&reader), &expected(stem), "parquet");
    let json = serde_json::to_value(&out).unwrap();
    assert_eq!(json["summary"]["pairs"], 32);
    assert!(!dir.path().join("cc-CC-MAIN-2020-34-excerpt.derived.parquet.partial").exists());
}

#[test]
fn values_of_many_sizes_across_row_groups_read_back_in_order() {
    // Values of several sizes, some over a MiB (beyond a data page), in batches that straddle
    // the row groups.
    let pair = |i: usize| Pair {
        uid: format!("{i:032x}"),
        url: format!("https://example.com/{}", "p".repeat(i % 300)),
        alt: if i.is_multiple_of(97) { "a".repeat((1 << 20) + i) } else { format!("alt {i} ").repeat(i % 13 + 1) },
        cc_filename: "crawl.warc.gz".to_owned(),
        page_url: format!("https://example.com/page/{}", i / 10),
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pairs.parquet");
    let want: Vec<Pair> = (0..3000).map(pair).collect();
    let mut writer = PairWriter::create(&path, 1100).unwrap();
    for batch in want.chunks(250) {
        writer.write(batch.to_vec()).unwrap();
    }
    assert_eq!(writer.finish().unwrap(), 3000);

    let reader = SerializedFileReader::new(File::open(&path).unwrap()).unwrap();
    assert_eq!(reader.metadata().num_row_groups(), 3);
    assert!(rows_of(&reader) == want, "the pairs read back differ from those written");
}

#[test]
fn empty_shard_is_valid_parquet() {
    let dir = tempfile::tempdir().unwrap();
    let out = extract_file(&data("cc-whirlwind-CC-MAIN-2024-22.warc.wat.gz"), &WatOptions::default(), dir.path(), |_, _| {}).unwrap();
    let reader = SerializedFileReader::new(File::open(&out.output).unwrap()).unwrap();
    assert_eq!(reader.metadata().file_metadata().num_rows(), 0);
    assert_eq!(out.output.file_name().unwrap(), "cc-whirlwind-CC-MAIN-2024-22.parquet");
}

#[test]
fn urljoin_matches_cpython() {
    let text = std::fs::read_to_string(data("urljoin_cases.jsonl")).unwrap();
    let mut n = 0;
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let (base, url) = (v["base"].as_str().unwrap(), v["url"].as_str().unwrap());
        assert_eq!(python_urljoin(base, url).as_deref(), v["out"].as_str(), "urljoin({base:?}, {url:?})");
        n += 1;
    }
    assert!(n > 1000);
}

/// Serves `body` once per connection at any path on a loopback port, answering `status`
/// (with `Content-Length`); returns the base URL.
fn serve_once(body: Vec<u8>, status: &'static str) -> String {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let mut stream = stream.unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap() > 2 {
                line.clear();
            }
            let head = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
            stream.write_all(head.as_bytes()).unwrap();
            stream.write_all(&body).unwrap();
        }
    });
    url
}

#[test]
fn a_url_streams_the_same_pairs_as_the_file() {
    let stem = DERIVED[1];
    let name = format!("{stem}.warc.wat.gz");
    let base = serve_once(read(&name), "200 OK");
    let dir = tempfile::tempdir().unwrap();
    let url = format!("{base}/crawl/{name}");
    let mut last = (0, 0);
    let out = extract_file(url.as_ref(), &opts(), dir.path(), |done, total| last = (done, total)).unwrap();
    assert_eq!(out.output, dir.path().join("cc-CC-MAIN-2020-34-excerpt.derived.parquet"));
    let size = read(&name).len() as u64;
    assert_eq!(last, (size, size), "progress counts the downloaded bytes against Content-Length");
    let local = extract_file(&data(&name), &opts(), tempfile::tempdir().unwrap().path(), |_, _| {}).unwrap();
    assert_eq!(out.summary, local.summary);
    assert_eq!(out.summary.pairs, expected(stem).len() as u64);
}

#[test]
fn a_missing_url_is_a_fetch_error_with_its_status() {
    let base = serve_once(b"no such file".to_vec(), "404 Not Found");
    let dir = tempfile::tempdir().unwrap();
    let url = format!("{base}/missing.warc.wat.gz");
    match extract_file(url.as_ref(), &opts(), dir.path(), |_, _| {}) {
        Err(cascade_stages::wat::WatError::Fetch { status: Some(404), .. }) => {}
        other => panic!("expected a 404 fetch error, got {other:?}"),
    }
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "no shard, no partial file");
}
