//! WAT extraction throughput: MB/s of compressed input and pairs/s, at 0 (inline), 1 and 2
//! parser threads, against the floor of bare multi-member gzip decompression of the same file.
//!
//! Corpus: `$WAT_CORPUS` (e.g. built by `shared/tools/make_corpus.sh /tmp/wat-corpus.warc.wat.gz
//! 200`), otherwise a ~10 MB corpus concatenated from the test samples in a temp file.
#![allow(missing_docs)]

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::PathBuf;
use std::time::Duration;

use cascade_stages::wat::{extract_pairs, WatOptions};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const SAMPLES: [&str; 5] = [
    "cc-whirlwind-CC-MAIN-2024-22.derived.warc.wat.gz",
    "cc-CC-MAIN-2020-34-excerpt.derived.warc.wat.gz",
    "ia-archive-org-2008.derived.warc.wat.gz",
    "clueweb09-ja-quirk.derived.warc.wat.gz",
    "cc-whirlwind-CC-MAIN-2024-22.warc.wat.gz",
];

fn corpus() -> PathBuf {
    if let Some(path) = std::env::var_os("WAT_CORPUS") {
        return path.into();
    }
    let data = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../stages/tests/data/wat");
    let unit: Vec<u8> = SAMPLES.iter().flat_map(|s| std::fs::read(data.join(s)).expect("sample")).collect();
    let path = std::env::temp_dir().join("cascade-bench-wat-corpus.warc.wat.gz");
    std::fs::write(&path, unit.repeat(10)).expect("write corpus");
    path
}

fn pairs(path: &PathBuf, threads: usize) -> u64 {
    let opts = WatOptions { threads, ..WatOptions::default() };
    let pool = (threads > 0).then(|| rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("pool"));
    let file = File::open(path).expect("corpus");
    let mut n = 0u64;
    extract_pairs(
        file,
        &opts,
        pool.as_ref(),
        0,
        |batch| {
            n += batch.len() as u64;
            Ok(())
        },
        |_, _| {},
    )
    .expect("extract");
    n
}

fn bench(c: &mut Criterion) {
    let path = corpus();
    let bytes = std::fs::metadata(&path).expect("corpus").len();
    let expected_pairs = pairs(&path, 2);
    eprintln!("corpus {}: {bytes} bytes, {expected_pairs} pairs", path.display());

    let mut g = c.benchmark_group("wat_mb");
    g.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(20));
    g.throughput(Throughput::Bytes(bytes));
    g.bench_function("gunzip_floor_flate2", |b| {
        b.iter(|| {
            let mut dec = flate2::read::MultiGzDecoder::new(BufReader::with_capacity(1 << 20, File::open(&path).expect("corpus")));
            io::copy(&mut dec, &mut io::sink()).expect("gunzip")
        })
    });
    g.bench_function("read_file_floor", |b| {
        b.iter(|| {
            let mut buf = vec![0u8; 1 << 20];
            let mut f = File::open(&path).expect("corpus");
            let mut n = 0;
            while let Ok(k @ 1..) = f.read(&mut buf) {
                n += k;
            }
            n
        })
    });
    for threads in [0, 1, 2] {
        g.bench_function(format!("extract_threads_{threads}"), |b| b.iter(|| assert_eq!(pairs(&path, threads), expected_pairs)));
    }
    g.finish();

    let mut g = c.benchmark_group("wat_pairs");
    g.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(20));
    g.throughput(Throughput::Elements(expected_pairs));
    for threads in [1, 2] {
        g.bench_function(format!("extract_threads_{threads}"), |b| b.iter(|| pairs(&path, threads)));
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
