//! The `download` stage: one pair shard per job in, its webdataset shards out.

use std::ops::ControlFlow;

use serde::Deserialize;

use super::{DownloadError, DownloadOptions, DownloadSummary, Downloader, PairShardInput};
use crate::stage::{Stage, StageContext, StageError};

/// Stage `download` (stage b of the LAION workflow). Its settings (`[stages.b.settings]`) are
/// [`DownloadOptions`]; each worker keeps one HTTP client (and, for WARC sources, one replay
/// server) for all its jobs, and decodes and resizes on the stage's rayon pool.
///
/// Job input: a pair shard's path, `{"shard": path}`, or stage a's output (`{"output": path,
/// …}`). Job output: the [`DownloadSummary`] as JSON, whose `shards` name the tars written (the
/// CLIP stage's input).
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
        let out = self.options.out.clone().unwrap_or_else(|| ctx.artifacts().join("download"));
        std::fs::create_dir_all(&out).map_err(|e| StageError::fatal(format!("cannot create {}: {e}", out.display())))?;
        self.options.out = Some(out);
        if self.downloader.is_none() {
            self.downloader = Some(Downloader::new(self.options.clone()).map_err(StageError::fatal)?);
        }
        Ok(())
    }

    fn process(&mut self, input: PairShardInput, ctx: &StageContext) -> Result<DownloadSummary, StageError> {
        let (Some(downloader), Some(out)) = (&self.downloader, &self.options.out) else {
            return Err(StageError::fatal("the download stage was not opened"));
        };
        let path = input.path();
        let name = path.display().to_string();
        let summary = downloader
            .download_file(path, out, Some(ctx.pool()), |p| {
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
