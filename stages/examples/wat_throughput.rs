//! Measures WAT extraction on one file: `wat_throughput FILE [THREADS] [gunzip | parquet DIR]`.
//!
//! Prints the wall time, compressed MB/s, pairs/s, an MD5 over every pair in file order and
//! the summary JSON, so that two builds can be compared for speed and identical output. With
//! `gunzip` it only decompresses the file with flate2's `MultiGzDecoder` (the reference floor);
//! with `parquet DIR` it runs the whole file-to-shard extraction (`extract_file`) into `DIR`.

use std::fs::File;
use std::io::{self, BufReader};
use std::time::Instant;

use cascade_stages::wat::{extract_file, extract_pairs, WatOptions};

/// The `cascade` binary's allocator, so that the figures are those of `cascade wat`.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args.next().ok_or("usage: wat_throughput FILE [THREADS] [gunzip]")?;
    let threads: usize = args.next().map_or(Ok(0), |t| t.parse())?;
    let bytes = std::fs::metadata(&path)?.len();
    let start = Instant::now();
    let mode = args.next();
    if mode.as_deref() == Some("parquet") {
        let dir = args.next().ok_or("parquet needs an output folder")?;
        let opts = WatOptions { threads, ..WatOptions::default() };
        let out = extract_file(path.as_ref(), &opts, dir.as_ref(), |_, _| {})?;
        let secs = start.elapsed().as_secs_f64();
        let pairs = out.summary.pairs;
        println!(
            "parquet threads={threads} {secs:.3} s, {:.1} MB/s, {pairs} pairs, {:.0} pairs/s",
            bytes as f64 / secs / 1e6,
            pairs as f64 / secs
        );
        return Ok(());
    }
    if mode.as_deref() == Some("gunzip") {
        let mut dec = flate2::read::MultiGzDecoder::new(BufReader::with_capacity(1 << 20, File::open(&path)?));
        let out = io::copy(&mut dec, &mut io::sink())?;
        let secs = start.elapsed().as_secs_f64();
        println!("gunzip_flate2 {secs:.3} s, {:.1} MB/s, {out} bytes out", bytes as f64 / secs / 1e6);
        return Ok(());
    }
    let opts = WatOptions { threads, ..WatOptions::default() };
    let pool = (threads > 0).then(|| rayon::ThreadPoolBuilder::new().num_threads(threads).build()).transpose()?;
    let mut digest = md5::Context::new();
    let mut pairs = 0u64;
    let summary = extract_pairs(
        File::open(&path)?,
        &opts,
        pool.as_ref(),
        bytes,
        |batch| {
            for p in batch {
                for field in [&p.uid, &p.url, &p.alt, &p.cc_filename, &p.page_url] {
                    digest.consume(field.as_bytes());
                    digest.consume([0]);
                }
                pairs += 1;
            }
            Ok(())
        },
        |_, _| {},
    )?;
    let secs = start.elapsed().as_secs_f64();
    println!(
        "extract threads={threads} {secs:.3} s, {:.1} MB/s, {pairs} pairs, {:.0} pairs/s, md5 {:x}",
        bytes as f64 / secs / 1e6,
        pairs as f64 / secs,
        digest.finalize()
    );
    println!("{}", serde_json::to_string(&summary)?);
    Ok(())
}
