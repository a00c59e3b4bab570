//! The shard filter: [`ClipFilter`] holds the model and tokenizer (load once per worker),
//! [`filter_shard`] runs one webdataset tar through it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::config::ClipConfig;
use super::device::{ClipDevice, Encode, OnDevice};
use super::error::ClipError;
use super::hub::{HubSettings, WeightsSource};
use super::model::{ClipBackend, ClipModel, CpuBackend, CpuDevice};
use super::tokenizer::{ClipTokenizer, TokenBatch};
use super::weights::load_safetensors;

/// Which model to load and where to run it.
///
/// Deserialises from kebab-case keys: `weights` (required in practice), `config`, `device`.
///
/// ```
/// let settings: cascade_stages::clip::ModelSettings =
///     serde_json::from_str(r#"{"weights": "hf:openai/clip-vit-base-patch32", "device": "cuda:1"}"#).unwrap();
/// assert_eq!(settings.weights.to_string(), "hf:openai/clip-vit-base-patch32");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct ModelSettings {
    /// A Hugging Face `CLIPModel` `model.safetensors` (f32, f16 or bf16), or a hub model
    /// `hf:OWNER/REPO[@REVISION]` (downloaded once into the hub cache).
    pub weights: WeightsSource,
    /// Its `config.json`; for a file source ViT-B/32 sizes when absent, for a hub model the
    /// repository's `config.json`.
    pub config: Option<PathBuf>,
    /// `cpu` (default), `cuda` or `cuda:N`.
    pub device: ClipDevice,
}

/// A loaded CLIP model with its tokenizer, shared by every shard a worker filters.
pub struct ClipFilter {
    encoder: Box<dyn Encode>,
    tokenizer: ClipTokenizer,
    config: ClipConfig,
    device: ClipDevice,
}

impl std::fmt::Debug for ClipFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClipFilter").field("config", &self.config).field("device", &self.device).finish_non_exhaustive()
    }
}

fn on_device<B: ClipBackend>(
    config: &ClipConfig,
    weights: &Path,
    device: B::Device,
) -> Result<Box<dyn Encode>, ClipError>
where
    OnDevice<B>: Encode + 'static,
{
    let mut model = ClipModel::<B>::new(config, &device);
    load_safetensors(&mut model, weights)?;
    Ok(Box::new(OnDevice { model, device }))
}

impl ClipFilter {
    /// Reads the configuration and weights and puts the model on its device; `hf:` weights
    /// come from the hub of [`HubSettings::from_env`] (see [`ClipFilter::load_with`]).
    ///
    /// # Errors
    ///
    /// [`ClipError::Config`], [`ClipError::Read`], [`ClipError::WeightFile`],
    /// [`ClipError::WeightMismatch`], [`ClipError::Device`] for `cuda` in a build without
    /// the `cuda` feature, [`ClipError::DeviceStart`] when the GPU cannot be used,
    /// [`ClipError::Hub`] when hub weights are not cached and cannot be downloaded.
    pub fn load(settings: &ModelSettings) -> Result<Self, ClipError> {
        Self::load_with(settings, &HubSettings::from_env())
    }

    /// [`ClipFilter::load`] with `hf:` weights from `hub`: the first load downloads
    /// `model.safetensors` (and `config.json` unless `settings.config` is given) into
    /// `hub.cache_dir`, later loads read the cache.
    ///
    /// # Errors
    ///
    /// As [`ClipFilter::load`].
    pub fn load_with(settings: &ModelSettings, hub: &HubSettings) -> Result<Self, ClipError> {
        // An explicit configuration is checked before any download.
        let explicit = settings.config.as_deref().map(ClipConfig::from_json_file).transpose()?;
        let resolved = settings.weights.resolve(hub, explicit.is_none())?;
        let config = match (explicit, &resolved.config) {
            (Some(config), _) => config,
            (None, Some(path)) => ClipConfig::from_json_file(path)?,
            (None, None) => ClipConfig::vit_b_32(),
        };
        config.validate()?;
        let weights = resolved.weights.as_path();
        let encoder = match settings.device {
            ClipDevice::Cpu => on_device::<CpuBackend>(&config, weights, CpuDevice)?,
            // burn-cuda panics when the driver cannot be loaded or the GPU does not exist.
            #[cfg(feature = "cuda")]
            ClipDevice::Cuda(index) => std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                on_device::<burn::backend::Cuda<f32>>(&config, weights, burn::backend::cuda::CudaDevice::new(index))
            }))
            .map_err(|_| ClipError::DeviceStart {
                device: settings.device.to_string(),
                reason: "the NVIDIA driver (libcuda.so) did not load or has no such GPU".to_owned(),
            })??,
            #[cfg(not(feature = "cuda"))]
            ClipDevice::Cuda(_) => return Err(ClipError::Device(settings.device.to_string())),
        };
        tracing::info!(weights = %settings.weights, file = %weights.display(), device = %settings.device, "CLIP model loaded.");
        let tokenizer = ClipTokenizer::new(config.text_config.max_position_embeddings);
        Ok(Self { encoder, tokenizer, config, device: settings.device })
    }

    /// The model's sizes.
    #[must_use]
    pub fn config(&self) -> &ClipConfig {
        &self.config
    }

    /// The side of the square input images, in pixels.
    #[must_use]
    pub fn image_size(&self) -> u32 {
        self.config.vision_config.image_size as u32
    }

    /// The tokenizer.
    #[must_use]
    pub fn tokenizer(&self) -> &ClipTokenizer {
        &self.tokenizer
    }

    /// Projected image embeddings (not normalised), `batch × projection_dim`, of
    /// preprocessed pixels `batch × 3 × side × side`.
    #[must_use]
    pub fn embed_pixels(&self, pixels: Vec<f32>, batch: usize) -> Vec<f32> {
        if batch == 0 {
            return Vec::new();
        }
        self.encoder.images(pixels, batch, self.image_size() as usize)
    }

    /// Projected text embeddings (not normalised) of tokenized captions.
    #[must_use]
    pub fn embed_tokens(&self, tokens: &TokenBatch) -> Vec<f32> {
        if tokens.eot.is_empty() {
            return Vec::new();
        }
        self.encoder.texts(tokens)
    }

    /// Tokenizes and embeds captions.
    #[must_use]
    pub fn embed_captions<S: AsRef<str>>(&self, captions: &[S]) -> Vec<f32> {
        self.embed_tokens(&self.tokenizer.encode_batch(captions))
    }
}
