//! `cascade wat`: extract image/alt-text pairs from WAT files into parquet shards, outside any
//! pipeline.

use std::path::PathBuf;
use std::time::Instant;

use cascade_stages::stage::ArtifactLocation;
use cascade_stages::wat::{build_pool, extract_opened_in, FileOutput, WatFilters, WatOptions};
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Options of `cascade wat`.
#[derive(Debug, Args)]
pub(crate) struct WatArgs {
    /// WAT files (`.warc.wat.gz` or plain `.warc.wat`): paths, `http(s)://` or `s3://` URLs.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Where the parquet shards go (one per input, named after it): a directory, a `file:///`
    /// URL or `s3://bucket/prefix`.
    #[arg(long, short)]
    out: ArtifactLocation,
    /// Parser threads (default: one per CPU core; 0 parses on the reading thread).
    #[arg(long)]
    threads: Option<usize>,
    /// Apply the LAION-5B filters: alt ≥ 5 characters, no svg/gif/data:/javascript: URLs, host
    /// ≤ 60 characters, URL and alt ≤ 2,000 characters, one pair per uid.
    #[arg(long)]
    laion5b: bool,
}

pub(crate) fn run(args: &WatArgs) -> anyhow::Result<()> {
    let (store, out) = super::open_out(&args.out)?;
    let defaults = WatOptions::default();
    let options = WatOptions {
        threads: args.threads.unwrap_or(defaults.threads),
        filters: if args.laion5b { WatFilters::laion5b() } else { WatFilters::default() },
        ..defaults
    };
    let pool = build_pool(&options)?;
    // Local files are counted now, URLs once they are opened.
    let total: u64 = args.files.iter().filter_map(|f| std::fs::metadata(f).ok()).map(|m| m.len()).sum();
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{msg:30!} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let started = Instant::now();
    let (mut done_before, mut pairs, mut failures) = (0u64, 0u64, 0usize);
    for file in &args.files {
        bar.set_message(file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default());
        let counted = std::fs::metadata(file).ok().map(|m| m.len());
        let mut size = 0;
        let result = store.open_input(file).map_err(anyhow::Error::from).and_then(|opened| {
            let mut output = extract_opened_in(pool.as_ref(), file, opened, &options, out.path(), |done, total| {
                if counted.is_none() {
                    bar.inc_length(total.saturating_sub(size));
                }
                size = total;
                bar.set_position(done_before + done);
            })?;
            output.publish(&out)?;
            Ok(output)
        });
        done_before += counted.unwrap_or(size);
        bar.set_position(done_before);
        match result {
            Ok(output) => {
                pairs += output.summary.pairs;
                bar.suspend(|| report(&output));
            }
            Err(e) => {
                failures += 1;
                bar.suspend(|| eprintln!("{}", super::failure_line(file, &e)));
            }
        }
    }
    bar.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "{} files, {pairs} pairs, {:.1} MB in {seconds:.1} s ({:.1} MB/s)",
        args.files.len(),
        done_before as f64 / 1e6,
        done_before as f64 / 1e6 / seconds.max(1e-9)
    );
    if failures > 0 {
        anyhow::bail!("{failures} of {} files failed", args.files.len());
    }
    Ok(())
}

/// Prints one file's result as a JSON line (the same object a pipeline job returns).
fn report(output: &FileOutput) {
    match serde_json::to_string(output) {
        Ok(line) => println!("{line}"),
        Err(e) => eprintln!("{}: cannot print the summary: {e}", output.input.display()),
    }
}
