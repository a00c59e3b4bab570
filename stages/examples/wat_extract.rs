//! Extracts one WAT file to parquet and prints the job output JSON and the throughput.
//!
//! `cargo run --release -p cascade-stages --features wat --example wat_extract -- FILE [THREADS] [OUT_DIR]`
//! (`THREADS` 0 = parse on the calling thread; `OUT_DIR` defaults to the system temp dir).

use std::time::Instant;

use cascade_stages::wat::{extract_file, WatOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let input = args.next().ok_or("usage: wat_extract FILE [THREADS] [OUT_DIR]")?;
    let threads = args.next().map(|t| t.parse()).transpose()?.unwrap_or(2);
    let out_dir = args.next().map_or_else(std::env::temp_dir, Into::into);
    let options = WatOptions { threads, ..WatOptions::default() };
    let start = Instant::now();
    let out = extract_file(input.as_ref(), &options, &out_dir, |_, _| {})?;
    let secs = start.elapsed().as_secs_f64();
    println!("{}", serde_json::to_string_pretty(&out)?);
    eprintln!(
        "{threads} parser threads: {:.2} s, {:.1} MB/s compressed, {:.0} pairs/s",
        secs,
        out.summary.bytes_read as f64 / 1e6 / secs,
        out.summary.pairs as f64 / secs
    );
    Ok(())
}
