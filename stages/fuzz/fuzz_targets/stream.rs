//! Fuzzes the whole stream pipeline (gzip sniffing and resynchronisation, WARC splitting,
//! batching) on arbitrary bytes, inline and on a two-thread pool with tiny batches.
#![no_main]

use std::sync::OnceLock;

use cascade_stages::wat::{extract_pairs, WatOptions};
use libfuzzer_sys::fuzz_target;

fn pool() -> &'static rayon::ThreadPool {
    static POOL: OnceLock<rayon::ThreadPool> = OnceLock::new();
    POOL.get_or_init(|| rayon::ThreadPoolBuilder::new().num_threads(2).build().expect("pool"))
}

fuzz_target!(|data: &[u8]| {
    let opts = WatOptions { batch_bytes: 4096, max_record_bytes: 1 << 16, ..WatOptions::default() };
    let mut counts = Vec::new();
    for pool in [None, Some(pool())] {
        let mut n = 0u64;
        let result = extract_pairs(data, &opts, pool, data.len() as u64, |b| {
            n += b.len() as u64;
            Ok(())
        }, |done, _| assert!(done <= data.len() as u64));
        if let Ok(summary) = &result {
            assert_eq!(summary.pairs, n);
            assert!(summary.bytes_read <= data.len() as u64);
        }
        counts.push(result.map(|s| s.pairs).ok());
    }
    // Inline and pooled runs see the same file.
    assert_eq!(counts[0], counts[1]);
});
