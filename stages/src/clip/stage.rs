//! The `clip` stage: one webdataset shard per job in, the kept samples, their metadata and
//! embeddings out.

use std::ops::ControlFlow;
use std::path::PathBuf;

use serde::Deserialize;

use super::device_share::DeviceLease;
use super::{filter_shard_in, ClipDevice, ClipError, ClipFilter, EmbeddingDtype, FilterOptions, FilterSummary, ModelSettings};
use crate::stage::{Stage, StageContext, StageError};

/// Stage `clip` (stage c of the LAION workflow). Its settings (`[stages.c.settings]`) are its
/// fields; only `weights` is required. Each worker loads the model once, in `open`, on its
/// device (with several devices listed, each worker takes the least used one, so
/// `workers = N` with N GPUs listed runs one worker per GPU); image decoding runs on the
/// stage's rayon pool.
///
/// Job input: the path of a webdataset tar, as plain text or as JSON with a `shard` field (so a
/// downloader may report more about the shard beside it). Job output: the shard's
/// [`FilterSummary`] as JSON, whose `outputs` name the files written.
///
/// ```
/// let stage: cascade_stages::clip::ClipStage = serde_json::from_str(
///     r#"{"weights": "clip-vit-base-patch32/model.safetensors", "threshold": 0.3, "device": ["cuda:0", "cuda:1"]}"#,
/// ).unwrap();
/// assert_eq!(stage.threshold, 0.3);
/// ```
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ClipStage {
    /// A Hugging Face `CLIPModel` `model.safetensors`.
    pub weights: PathBuf,
    /// Its `config.json` (default: ViT-B/32 sizes).
    #[serde(default)]
    pub config: Option<PathBuf>,
    /// `cpu` (default), `cuda`, `cuda:N`, or a list of devices to spread the workers over.
    #[serde(default)]
    pub device: DeviceSetting,
    /// Keep pairs whose similarity is at least this (default 0.28, LAION-5B).
    #[serde(default = "default_threshold")]
    pub threshold: f32,
    /// Samples per model call (default 32).
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Element type of the embedding files (default `float16`).
    #[serde(default)]
    pub embeddings: EmbeddingDtype,
    /// Output folder; default `<artifacts>/clip`.
    #[serde(default)]
    pub out: Option<PathBuf>,
    /// The model and the device it occupies, once `open` has loaded it.
    #[serde(skip)]
    loaded: Option<(ClipFilter, DeviceLease)>,
}

/// Where a stage's workers run: one device for all, or several to spread them over.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum DeviceSetting {
    /// Every worker on this device.
    One(ClipDevice),
    /// Each worker on the least used of these.
    Spread(Vec<ClipDevice>),
}

impl Default for DeviceSetting {
    fn default() -> Self {
        Self::One(ClipDevice::Cpu)
    }
}

impl DeviceSetting {
    fn devices(&self) -> &[ClipDevice] {
        match self {
            Self::One(device) => std::slice::from_ref(device),
            Self::Spread(devices) => devices,
        }
    }
}

fn default_threshold() -> f32 {
    FilterOptions::default().threshold
}

fn default_batch_size() -> usize {
    FilterOptions::default().batch_size
}

/// The job input: a shard path, or a description of the shard that names it.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum ShardInput {
    /// The tar's path.
    Path(PathBuf),
    /// An object with the tar's path in `shard` (other fields are ignored).
    Described {
        /// The tar's path.
        shard: PathBuf,
    },
}

impl ShardInput {
    fn into_path(self) -> PathBuf {
        match self {
            Self::Path(path) | Self::Described { shard: path } => path,
        }
    }
}

impl Stage for ClipStage {
    type Input = ShardInput;
    type Output = FilterSummary;

    fn open(&mut self, ctx: &StageContext) -> Result<(), StageError> {
        let out = self.out.clone().unwrap_or_else(|| ctx.artifacts().join("clip"));
        std::fs::create_dir_all(&out).map_err(|e| StageError::fatal(format!("cannot create {}: {e}", out.display())))?;
        self.out = Some(out);
        if self.loaded.is_none() {
            let lease = DeviceLease::take(self.device.devices());
            let settings = ModelSettings { weights: self.weights.clone(), config: self.config.clone(), device: lease.device() };
            self.loaded = Some((ClipFilter::load(&settings).map_err(StageError::fatal)?, lease));
        }
        Ok(())
    }

    fn process(&mut self, input: ShardInput, ctx: &StageContext) -> Result<FilterSummary, StageError> {
        let (Some((filter, _)), Some(out)) = (&self.loaded, &self.out) else {
            return Err(StageError::fatal("the clip stage was not opened"));
        };
        let input = input.into_path();
        let options = FilterOptions { threshold: self.threshold, batch_size: self.batch_size, threads: 0, embeddings: self.embeddings };
        let name = input.display().to_string();
        let summary = filter_shard_in(Some(ctx.pool()), filter, &input, out, &options, |done| {
            ctx.progress(&format!("{name}: {done} samples"));
            if ctx.is_cancelled() { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
        })
        .map_err(|e| match e {
            ClipError::Cancelled => StageError::Cancelled,
            // A shard that is not there is the previous stage's mistake.
            ClipError::Read { .. } => StageError::invalid(e),
            ClipError::Write { .. } | ClipError::Parquet(_) | ClipError::ThreadPool(_) => StageError::transient(e),
            other => StageError::fatal(other),
        })?;
        for (reason, count) in [
            ("corrupt_image", summary.corrupt_images),
            ("missing_image", summary.missing_image),
            ("missing_caption", summary.missing_caption),
            ("truncated_shard", u64::from(summary.truncated.is_some())),
        ] {
            if count > 0 {
                ctx.skip(reason, count);
            }
        }
        Ok(summary)
    }

    fn close(&mut self, _ctx: &StageContext) {
        self.loaded = None;
    }
}
