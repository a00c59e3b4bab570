//! The `clip` stage: webdataset shards per job in (one, or the list a download job made), the
//! kept samples, their metadata and embeddings out.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::device_share::DeviceLease;
use super::hub::{HubSettings, WeightsSource};
use super::{
    filter_shard_in, ClipDevice, ClipError, ClipFilter, EmbeddingDtype, FilterOptions, FilterSummary, ModelSettings, ShardOutputs,
};
use crate::stage::{ArtifactLocation, OutputDir, Stage, StageContext, StageError};

/// Stage `clip` (stage c of the LAION workflow). Its settings (`[stages.c.settings]`) are its
/// fields; only `weights` is required: a `model.safetensors` path, or `hf:OWNER/REPO[@REVISION]`
/// fetched once into the Hugging Face cache (`HF_HOME`, `HF_ENDPOINT`, `HF_TOKEN` as in
/// Python). Each worker loads the model once, in `open`, on its device (with several devices
/// listed, each worker takes the least used one, so `workers = N` with N GPUs listed runs one
/// worker per GPU); image decoding runs on the stage's rayon pool.
///
/// Job input ([`ShardInput`]): the path or `s3://` URL of a webdataset tar, as plain text or as
/// JSON with a `shard` field (so a downloader may report more about the shard beside it), or a
/// download job's report with a `shards` list. Job output ([`ClipOutput`]): the shard's
/// [`FilterSummary`] as JSON, whose `outputs` name the files written (paths, or `s3://` URLs when
/// the artifacts are in S3), or for a list a [`ShardListSummary`] (one summary per shard and the
/// totals). A shard's outputs go in a folder named after the shard's own folder
/// (`download/NAME/00000.tar` → `clip/NAME/00000.tar`), so the equally named shards of
/// different download jobs do not overwrite each other.
///
/// ```
/// let stage: cascade_stages::clip::ClipStage = serde_json::from_str(
///     r#"{"weights": "hf:openai/clip-vit-base-patch32", "threshold": 0.3, "device": ["cuda:0", "cuda:1"]}"#,
/// ).unwrap();
/// assert_eq!(stage.threshold, 0.3);
/// assert_eq!(stage.weights.to_string(), "hf:openai/clip-vit-base-patch32");
/// ```
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ClipStage {
    /// A Hugging Face `CLIPModel` `model.safetensors`, or `hf:OWNER/REPO[@REVISION]`.
    pub weights: WeightsSource,
    /// Its `config.json` (default: the hub model's own, or ViT-B/32 sizes for a file).
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
    /// Where the outputs go instead of `clip` in the artifact store: a local directory, a
    /// `file:///` URL or `s3://bucket/prefix`.
    #[serde(default)]
    pub out: Option<ArtifactLocation>,
    /// The hub for `hf:` weights; [`HubSettings::from_env`] when not set.
    #[serde(skip)]
    hub: Option<HubSettings>,
    /// The model and the device it occupies, once `open` has loaded it.
    #[serde(skip)]
    loaded: Option<(ClipFilter, DeviceLease)>,
}

impl ClipStage {
    /// Takes `hf:` weights from `hub` instead of the one the environment names.
    #[must_use]
    pub fn with_hub(mut self, hub: HubSettings) -> Self {
        self.hub = Some(hub);
        self
    }
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

/// The job input: a shard path, a description of the shard that names it, or a list of
/// shards (the download stage's report of one job).
///
/// ```
/// use cascade_stages::clip::{ShardInput, ShardRef};
///
/// let input: ShardInput = serde_json::from_str(r#"{"input": "x.parquet", "count": 3,
///     "shards": [{"shard": "x/00000.tar", "count": 2}, "x/00001.tar"]}"#).unwrap();
/// let ShardInput::List { shards } = input else { panic!("a list") };
/// assert_eq!(shards[1], ShardRef::Path("x/00001.tar".into()));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum ShardInput {
    /// The tar's path.
    Path(PathBuf),
    /// An object with the tar's path in `shard` (other fields are ignored).
    Described {
        /// The tar's path.
        shard: PathBuf,
    },
    /// An object with a `shards` list (other fields are ignored), filtered in order; an
    /// empty list is a job that keeps nothing.
    List {
        /// The tars.
        shards: Vec<ShardRef>,
    },
}

/// One shard of a [`ShardInput::List`]: its path, or an object with it in `shard`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum ShardRef {
    /// The tar's path.
    Path(PathBuf),
    /// An object with the tar's path in `shard` (other fields are ignored).
    Described {
        /// The tar's path.
        shard: PathBuf,
    },
}

impl ShardRef {
    fn into_path(self) -> PathBuf {
        match self {
            Self::Path(path) | Self::Described { shard: path } => path,
        }
    }
}

/// The job output: one shard's summary, or a list's.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum ClipOutput {
    /// For a single shard input: its summary, as [`filter_shard`](super::filter_shard) gives it.
    Shard(FilterSummary),
    /// For a list input.
    List(ShardListSummary),
}

/// What a list of shards gave: each shard's summary, in input order, and their totals.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ShardListSummary {
    /// One summary per input shard.
    pub shards: Vec<FilterSummary>,
    /// Samples read, all shards.
    pub samples: u64,
    /// Samples embedded.
    pub embedded: u64,
    /// Samples kept.
    pub kept: u64,
    /// Samples with an undecodable image.
    pub corrupt_images: u64,
    /// Samples without an image file.
    pub missing_image: u64,
    /// Samples without a caption.
    pub missing_caption: u64,
    /// Shards that ended early (each summary says why).
    pub truncated_shards: u64,
    /// The threshold applied.
    pub threshold: f32,
    /// Mean similarity of the embedded samples of all shards.
    pub mean_similarity: f32,
}

impl ShardListSummary {
    /// The totals of `shards` filtered at `threshold`.
    #[must_use]
    pub fn new(shards: Vec<FilterSummary>, threshold: f32) -> Self {
        let sum = |field: fn(&FilterSummary) -> u64| shards.iter().map(field).sum::<u64>();
        let embedded = sum(|s| s.embedded);
        let similarity: f64 = shards.iter().map(|s| f64::from(s.mean_similarity) * s.embedded as f64).sum();
        Self {
            samples: sum(|s| s.samples),
            embedded,
            kept: sum(|s| s.kept),
            corrupt_images: sum(|s| s.corrupt_images),
            missing_image: sum(|s| s.missing_image),
            missing_caption: sum(|s| s.missing_caption),
            truncated_shards: sum(|s| u64::from(s.truncated.is_some())),
            threshold,
            mean_similarity: if embedded == 0 { 0.0 } else { (similarity / embedded as f64) as f32 },
            shards,
        }
    }
}

impl Stage for ClipStage {
    type Input = ShardInput;
    type Output = ClipOutput;

    fn open(&mut self, ctx: &StageContext) -> Result<(), StageError> {
        ctx.artifacts().output_or(self.out.as_ref(), "clip").map_err(StageError::fatal)?;
        if self.loaded.is_none() {
            let lease = DeviceLease::take(self.device.devices());
            let settings = ModelSettings { weights: self.weights.clone(), config: self.config.clone(), device: lease.device() };
            let hub = self.hub.clone().unwrap_or_else(HubSettings::from_env);
            self.loaded = Some((ClipFilter::load_with(&settings, &hub).map_err(StageError::fatal)?, lease));
        }
        Ok(())
    }

    fn process(&mut self, input: ShardInput, ctx: &StageContext) -> Result<ClipOutput, StageError> {
        let Some((filter, _)) = &self.loaded else {
            return Err(StageError::fatal("the clip stage was not opened"));
        };
        let out = ctx.artifacts().output_or(self.out.as_ref(), "clip")?;
        let options = FilterOptions { threshold: self.threshold, batch_size: self.batch_size, threads: 0, embeddings: self.embeddings };
        let shards = match input {
            ShardInput::Path(path) | ShardInput::Described { shard: path } => {
                return filter_one(filter, &path, &out, &options, ctx, "").map(ClipOutput::Shard);
            }
            ShardInput::List { shards } => shards,
        };
        let count = shards.len();
        let mut summaries = Vec::with_capacity(count);
        for (i, shard) in shards.into_iter().enumerate() {
            summaries.push(filter_one(filter, &shard.into_path(), &out, &options, ctx, &format!(" ({}/{count})", i + 1))?);
        }
        Ok(ClipOutput::List(ShardListSummary::new(summaries, self.threshold)))
    }

    fn close(&mut self, _ctx: &StageContext) {
        self.loaded = None;
    }
}

/// Filters one shard of a job into `out/<the shard's folder name>`, publishes its outputs,
/// reports progress as `NAME{position}: N samples`, and counts its damage as the job's skips.
fn filter_one(
    filter: &ClipFilter,
    input: &Path,
    out: &OutputDir,
    options: &FilterOptions,
    ctx: &StageContext,
    position: &str,
) -> Result<FilterSummary, StageError> {
    let name = input.display().to_string();
    let local = ctx.artifacts().fetch(input)?;
    let folder = ShardOutputs::folder_for(input, out.path());
    let mut summary = filter_shard_in(Some(ctx.pool()), filter, local.path(), &folder, options, |done| {
        ctx.progress(&format!("{name}{position}: {done} samples"));
        if ctx.is_cancelled() { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
    })
    .map_err(|e| match e {
        ClipError::Cancelled => StageError::Cancelled,
        // A shard that is not there is the previous stage's mistake.
        ClipError::Read { .. } => StageError::invalid(e),
        ClipError::Write { .. } | ClipError::Parquet(_) | ClipError::ThreadPool(_) => StageError::transient(e),
        other => StageError::fatal(other),
    })?;
    summary.input = input.to_owned();
    summary.publish(out)?;
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
