//! The `download` stage: one pair shard per job in, its webdataset shards out.

use std::ops::ControlFlow;

use serde::Deserialize;

use super::{DownloadError, DownloadOptions, DownloadSummary, Downloader, PairShardInput};
use crate::stage::{Stage, StageContext, StageError};

/// Stage `download` (stage b of the LAION workflow). Its settings (`[stages.b.settings]`) are
/// [`DownloadOptions`]; each worker keeps one HTTP client (and, for WARC sources, one replay
/// server) for all its jobs, and decodes and resizes on the stage's rayon pool.
///
/// Job input: a pair shard's path or `s3://` URL, `{"shard": path}`, or stage a's output
/// (`{"output": path, …}`). Job output: the [`DownloadSummary`] as JSON, whose `shards` name the
/// tars written (the CLIP stage's input): paths, or `s3://` URLs when the artifacts are in S3,
/// each shard's stats file published last. A job tried again keeps the shards an earlier
/// attempt finished, in a local directory or in S3.
///
/// ```
/// let stage: cascade_stages::download::DownloadStage = serde_json::from_str(
///     r#"{"source": "warc", "warcs": ["crawl.warc.gz"], "concurrency": 512, "image": {"image-size": 384}}"#,
/// ).unwrap();
/// assert_eq!(stage.options().concurrency, 512);
/// ```
#[derive(Debug, Deserialize)]
#[serde(from = "DownloadOptions")]
pub struct DownloadStage {
    options: DownloadOptions,
    downloader: Option<Downloader>,
}

impl From<DownloadOptions> for DownloadStage {
    fn from(options: DownloadOptions) -> Self {
        Self { options, downloader: None }
    }
}

impl DownloadStage {
    /// The settings.
    #[must_use]
    pub fn options(&self) -> &DownloadOptions {
        &self.options
    }
}

impl Stage for DownloadStage {
    type Input = PairShardInput;
    type Output = DownloadSummary;

    fn open(&mut self, ctx: &StageContext) -> Result<(), StageError> {
        ctx.artifacts().output_or(self.options.out.as_ref(), "download").map_err(StageError::fatal)?;
        if self.downloader.is_none() {
            self.downloader = Some(Downloader::new(self.options.clone()).map_err(StageError::fatal)?);
        }
        Ok(())
    }

    fn process(&mut self, input: PairShardInput, ctx: &StageContext) -> Result<DownloadSummary, StageError> {
        let Some(downloader) = &self.downloader else {
            return Err(StageError::fatal("the download stage was not opened"));
        };
        let out = ctx.artifacts().output_or(self.options.out.as_ref(), "download")?;
        let local = ctx.artifacts().fetch(input.path())?;
        Downloader::restore_finished(&out, local.path())?;
        let name = input.path().display().to_string();
        let mut summary = downloader
            .download_file(local.path(), out.path(), Some(ctx.pool()), |p| {
                if p.done % 100 == 0 || p.done == p.total {
                    ctx.progress(&format!("{name}: {}/{} samples, {} ok", p.done, p.total, p.shard.successes));
                }
                if ctx.is_cancelled() { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
            })
            .map_err(|e| match e {
                DownloadError::Cancelled => StageError::Cancelled,
                // A shard that is not there or not a pair shard is the previous stage's mistake.
                DownloadError::Input { .. } => StageError::invalid(e),
                DownloadError::Write { .. } | DownloadError::Parquet(_) => StageError::transient(e),
                DownloadError::Settings(_) | DownloadError::Start(_) => StageError::fatal(e),
            })?;
        summary.input = input.path().to_owned();
        summary.publish(&out)?;
        for (reason, count) in [
            ("failed_to_download", summary.counts.failed_to_download),
            ("failed_to_resize", summary.counts.failed_to_resize),
        ] {
            if count > 0 {
                ctx.skip(reason, count);
            }
        }
        Ok(summary)
    }

    fn close(&mut self, _ctx: &StageContext) {
        self.downloader = None;
    }
}
