//! `cascade download`: fetch the images of pair shards into img2dataset webdataset shards,
//! outside any pipeline.

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::Context;
use cascade_stages::download::{Counts, DownloadOptions, DownloadSummary, Downloader, Source};
use cascade_stages::stage::ArtifactLocation;
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Options of `cascade download`.
#[derive(Debug, Args)]
pub(crate) struct DownloadArgs {
    /// Pair shards (parquet with `url` and `alt` columns, as `cascade wat` writes): paths or
    /// `s3://` URLs.
    #[arg(required = true)]
    shards: Vec<PathBuf>,
    /// Where `<shard name>/NNNNN.tar`, `.parquet` and `_stats.json` go: a directory, a
    /// `file:///` URL or `s3://bucket/prefix`. Shards finished there by an earlier run are kept.
    #[arg(long, short)]
    out: ArtifactLocation,
    /// Replay the images from these WARC files instead of the web (repeatable).
    #[arg(long = "warc", value_name = "FILE")]
    warcs: Vec<PathBuf>,
    /// An HTTP proxy for every request.
    #[arg(long)]
    proxy: Option<String>,
    /// Requests in flight.
    #[arg(long)]
    concurrency: Option<usize>,
    /// Decoding and resizing threads (default: one per CPU core).
    #[arg(long)]
    threads: Option<usize>,
    /// Further settings as JSON, the keys of `[stages.b.settings]`
    /// (e.g. `{"image": {"resize-mode": "center_crop"}, "retries": 2}`).
    #[arg(long, default_value = "{}")]
    settings: String,
}

impl DownloadArgs {
    fn options(&self) -> anyhow::Result<DownloadOptions> {
        let mut options: DownloadOptions = serde_json::from_str(&self.settings).context("parsing --settings")?;
        if !self.warcs.is_empty() {
            options.source = Source::Warc;
            options.warcs.clone_from(&self.warcs);
        }
        if self.proxy.is_some() {
            options.proxy.clone_from(&self.proxy);
        }
        if let Some(concurrency) = self.concurrency {
            options.concurrency = concurrency;
        }
        Ok(options)
    }
}

pub(crate) fn run(args: &DownloadArgs) -> anyhow::Result<()> {
    let (store, out) = super::open_out(&args.out)?;
    let downloader = Downloader::new(args.options()?)?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(args.threads.unwrap_or(0))
        .thread_name(|i| format!("cascade-image-{i}"))
        .build()
        .context("starting the image threads")?;
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{msg:24!} {spinner} {pos} samples {per_sec} {prefix}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    let started = Instant::now();
    let mut total = Counts::default();
    let mut failures = 0usize;
    let done_before = AtomicU64::new(0);
    for shard in &args.shards {
        bar.set_message(shard.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default());
        let result = store.fetch(shard).map_err(anyhow::Error::from).and_then(|local| {
            Downloader::restore_finished(&out, local.path())?;
            let mut summary = downloader.download_file(local.path(), out.path(), Some(&pool), |p| {
                bar.set_position(done_before.load(Ordering::Relaxed) + p.done);
                bar.set_prefix(describe(p.shard));
                ControlFlow::Continue(())
            })?;
            summary.input.clone_from(shard);
            summary.publish(&out)?;
            Ok(summary)
        });
        match result {
            Ok(summary) => {
                done_before.fetch_add(summary.counts.count, Ordering::Relaxed);
                total.merge(&summary.counts);
                bar.suspend(|| report(&summary));
            }
            Err(e) => {
                failures += 1;
                bar.suspend(|| eprintln!("{}", super::failure_line(shard, &e)));
            }
        }
    }
    bar.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "{} shards, {} samples in {seconds:.1} s ({:.1} samples/s): {}",
        args.shards.len(),
        total.count,
        total.count as f64 / seconds.max(1e-9),
        describe(&total)
    );
    let mut reasons = total.status_dict.clone();
    reasons.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    for (message, count) in &reasons {
        eprintln!("  {count:>8}  {message}");
    }
    if failures > 0 {
        anyhow::bail!("{failures} of {} shards failed", args.shards.len());
    }
    Ok(())
}

/// `N ok, N failed to download, N failed to resize`.
fn describe(counts: &Counts) -> String {
    format!(
        "{} ok, {} failed to download, {} failed to resize",
        counts.successes, counts.failed_to_download, counts.failed_to_resize
    )
}

/// Prints one input's result as a JSON line (the same object a pipeline job returns).
fn report(summary: &DownloadSummary) {
    match serde_json::to_string(summary) {
        Ok(line) => println!("{line}"),
        Err(e) => eprintln!("{}: cannot print the summary: {e}", summary.input.display()),
    }
}
