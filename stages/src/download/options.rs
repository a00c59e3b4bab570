//! [`DownloadOptions`]: the downloader's settings, with img2dataset's defaults.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::image::ImageOptions;
use crate::stage::ArtifactLocation;

/// Where image bytes come from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The live web (through `proxy` when one is set).
    #[default]
    Web,
    /// The `response` records of the `warcs` files, replayed by a loopback server.
    Warc,
}

/// The downloader's settings (`[stages.b.settings]`, kebab-case keys). Defaults are
/// img2dataset 1.47's, plus a body cap and a deadline per image.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct DownloadOptions {
    /// `web` (default) or `warc`.
    pub source: Source,
    /// The WARC files replayed when `source = "warc"`.
    pub warcs: Vec<PathBuf>,
    /// An HTTP proxy for every request (`http://host:port`); the environment's proxy variables
    /// are never read.
    pub proxy: Option<String>,
    /// Requests in flight per worker.
    pub concurrency: usize,
    /// Requests in flight per host.
    pub per_host_concurrency: usize,
    /// Requests per second per host (no limit when absent).
    pub per_host_rate: Option<f64>,
    /// Seconds allowed for connecting and for each read.
    pub timeout: f64,
    /// Seconds allowed for a whole image, redirects and body included.
    pub deadline: f64,
    /// Further attempts after a failed download.
    pub retries: u32,
    /// Seconds before the first retry; doubled for each further one.
    pub retry_backoff: f64,
    /// Redirects followed before giving up.
    pub max_redirects: usize,
    /// Bodies larger than this fail while streaming.
    pub max_body_bytes: u64,
    /// Bodies smaller than this fail (img2dataset keeps them: 0).
    pub min_bytes: u64,
    /// Names the downloader in its User-Agent and lets `X-Robots-Tag: TOKEN: …` address it.
    pub user_agent_token: Option<String>,
    /// `X-Robots-Tag` directives that forbid using an image.
    pub disallowed_header_directives: Vec<String>,
    /// Samples per output shard (img2dataset's `number_sample_per_shard`).
    pub samples_per_shard: usize,
    /// Column of the image URL in the input parquet.
    pub url_col: String,
    /// Column of the caption (stage a's `alt`), saved as `caption` and the `.txt` file.
    pub caption_col: String,
    /// Further input columns copied into the metadata, before `caption` and `url`.
    pub save_additional_columns: Vec<String>,
    /// Decoding, checks, resizing and encoding.
    pub image: ImageOptions,
    /// Where the outputs go instead of `download` in the artifact store: a local directory, a
    /// `file:///` URL or `s3://bucket/prefix`.
    pub out: Option<ArtifactLocation>,
}

impl Default for DownloadOptions {
    fn default() -> Self {
        Self {
            source: Source::Web,
            warcs: Vec::new(),
            proxy: None,
            concurrency: 256,
            per_host_concurrency: 16,
            per_host_rate: None,
            timeout: 10.0,
            deadline: 60.0,
            retries: 0,
            retry_backoff: 1.0,
            max_redirects: 10,
            max_body_bytes: 20 << 20,
            min_bytes: 0,
            user_agent_token: None,
            disallowed_header_directives: ["noai", "noimageai", "noindex", "noimageindex"].map(String::from).to_vec(),
            samples_per_shard: 10_000,
            url_col: "url".to_owned(),
            caption_col: "alt".to_owned(),
            save_additional_columns: ["uid", "cc_filename", "page_url"].map(String::from).to_vec(),
            image: ImageOptions::default(),
            out: None,
        }
    }
}

impl DownloadOptions {
    /// Checks values that serde accepts but the downloader cannot use.
    ///
    /// # Errors
    /// A message naming the setting.
    pub fn validate(&self) -> Result<(), String> {
        let positive = |name: &str, value: f64| {
            if value.is_finite() && value > 0.0 { Ok(()) } else { Err(format!("{name} must be a positive number of seconds")) }
        };
        positive("timeout", self.timeout)?;
        positive("deadline", self.deadline)?;
        if !(self.retry_backoff.is_finite() && self.retry_backoff >= 0.0) {
            return Err("retry-backoff must be zero or more seconds".to_owned());
        }
        if self.concurrency == 0 || self.per_host_concurrency == 0 {
            return Err("concurrency and per-host-concurrency must be at least 1".to_owned());
        }
        if self.samples_per_shard == 0 {
            return Err("samples-per-shard must be at least 1".to_owned());
        }
        if let Some(rate) = self.per_host_rate {
            if !(rate.is_finite() && rate > 0.0) {
                return Err("per-host-rate must be a positive number of requests per second".to_owned());
            }
        }
        self.image.validate()?;
        if self.source == Source::Warc && self.warcs.is_empty() {
            return Err("source = \"warc\" needs the WARC files in `warcs`".to_owned());
        }
        Ok(())
    }

    pub(crate) fn timeout(&self) -> Duration {
        Duration::from_secs_f64(self.timeout)
    }

    pub(crate) fn deadline(&self) -> Duration {
        Duration::from_secs_f64(self.deadline)
    }

    /// The columns read from the input, in metadata order: the additional ones, `caption`, `url`
    /// (img2dataset's `column_list`), as (input name, output name).
    pub(crate) fn columns(&self) -> Vec<(String, String)> {
        let mut columns: Vec<(String, String)> =
            self.save_additional_columns.iter().map(|c| (c.clone(), c.clone())).collect();
        columns.push((self.caption_col.clone(), "caption".to_owned()));
        columns.push((self.url_col.clone(), "url".to_owned()));
        columns
    }
}
