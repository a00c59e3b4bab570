//! The `wat` stage: one WAT file per job in, one parquet shard of pairs out.

use std::path::PathBuf;

use serde::Deserialize;

use super::{extract_opened_in, FileOutput, WatError, WatFilters, WatOptions};
use crate::stage::{ArtifactLocation, Stage, StageContext, StageError};

/// Stage `wat` (stage a of the LAION workflow). Its settings (`[stages.a.settings]`, all
/// optional) are its fields; parsing runs on the stage's rayon pool.
///
/// Job input: the path, `http(s)://` URL or `s3://` URL of a `.warc.wat.gz` / `.warc.wat` file;
/// URLs are parsed as they download (through the artifact store for `s3://`), never copied to
/// disk first. Job output: a [`FileOutput`] as JSON — the shard written
/// (a path, or its `s3://` URL when the artifacts are in S3) and the file's counters.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct WatStage {
    /// Where the outputs go instead of `wat` in the artifact store: a local directory, a
    /// `file:///` URL or `s3://bucket/prefix`.
    pub out: Option<ArtifactLocation>,
    /// Apply the LAION-5B filters (replaces `filters`).
    pub laion5b: bool,
    /// Individual filters.
    pub filters: WatFilters,
    /// Decompressed bytes per parse batch (default 1 MiB).
    pub batch_bytes: Option<usize>,
    /// Larger records are skipped and counted (default 64 MiB).
    pub max_record_bytes: Option<u64>,
    /// Rows per parquet row group (default 131,072).
    pub row_group_rows: Option<usize>,
}

impl WatStage {
    fn options(&self) -> WatOptions {
        let defaults = WatOptions::default();
        WatOptions {
            threads: 0,
            batch_bytes: self.batch_bytes.unwrap_or(defaults.batch_bytes),
            max_record_bytes: self.max_record_bytes.unwrap_or(defaults.max_record_bytes),
            row_group_rows: self.row_group_rows.unwrap_or(defaults.row_group_rows),
            filters: if self.laion5b { WatFilters::laion5b() } else { self.filters.clone() },
        }
    }
}

impl Stage for WatStage {
    type Input = PathBuf;
    type Output = FileOutput;

    fn open(&mut self, ctx: &StageContext) -> Result<(), StageError> {
        ctx.artifacts().output_or(self.out.as_ref(), "wat").map(drop).map_err(StageError::fatal)
    }

    fn process(&mut self, input: PathBuf, ctx: &StageContext) -> Result<FileOutput, StageError> {
        let out = ctx.artifacts().output_or(self.out.as_ref(), "wat")?;
        let name = input.display().to_string();
        let progress = |done: u64, total: u64| {
            ctx.progress(&format!("{name}: {:.0}%", done as f64 * 100.0 / total.max(1) as f64));
        };
        let (pool, options) = (Some(ctx.pool()), self.options());
        // An object in S3 is parsed as it downloads, never copied to disk.
        let opened = ctx.artifacts().open_input(&input)?;
        let mut output = extract_opened_in(pool, &input, opened, &options, out.path(), progress).map_err(|e| match e {
            // A path that is not a WAT file is the previous stage's (or the job list's) mistake.
            WatError::Open { .. } | WatError::NotWarc(_) | WatError::NotWat { .. } => StageError::invalid(e),
            // A URL the server does not have is the job list's mistake; anything else may pass.
            WatError::Fetch { status: Some(400..=499), .. } => StageError::invalid(e),
            WatError::Fetch { .. } | WatError::Read(_) | WatError::Write { .. } => StageError::transient(e),
            other => StageError::fatal(other),
        })?;
        output.input = input;
        output.publish(&out)?;
        let skipped = &output.summary.skipped;
        for (reason, count) in [
            ("invalid_utf8", skipped.invalid_utf8),
            ("invalid_json", skipped.invalid_json),
            ("unexpected_schema", skipped.unexpected_schema),
            ("missing_field", skipped.missing_field),
            ("partial_record", skipped.partial_record),
            ("oversized_record", skipped.oversized_record),
        ] {
            if count > 0 {
                ctx.skip(reason, count);
            }
        }
        Ok(output)
    }
}
