//! CLIP image/caption filtering: OpenAI CLIP (ViT-B/32 by default) in burn, its tokenizer and
//! preprocessing, and a webdataset shard filter that keeps the pairs whose image and caption
//! embeddings agree, writing clip-retrieval's layout.
//!
//! # Layout
//!
//! - `stage`: [`ClipStage`], the filter as the pipeline stage kind `clip`;
//! - `run`: [`filter_shard`] / [`filter_shard_in`], one tar shard through the filter;
//! - `filter`: [`ClipFilter`], the model and tokenizer, loaded once ([`ModelSettings`]);
//! - `hub`: [`WeightsSource`], a weights file or `hf:OWNER/REPO` fetched once into the
//!   Hugging Face cache ([`HubSettings`]);
//! - `options`: [`FilterOptions`], [`FilterSummary`], [`ShardOutputs`];
//! - `config`: [`ClipConfig`], ViT-B/32 or a Hugging Face `config.json`;
//! - `model`: [`ClipModel`], the network in burn, generic over the backend; [`ClipBackend`], the
//!   backends it runs on, with [`CpuBackend`] the one without a GPU (burn-flex);
//! - `weights`: [`load_safetensors`], Hugging Face `CLIPModel` safetensors into the model;
//! - `device`: [`ClipDevice`], CPU (burn-flex) or CUDA (feature `cuda`); `device_share`:
//!   a stage's workers spread over several GPUs;
//! - `tokenizer`, `clean`: [`ClipTokenizer`], id-for-id with OpenAI's tokenizer;
//! - `preprocess`, `resample`: OpenAI's image preprocessing with Pillow's exact bicubic;
//! - `shard`, `parquet_out`, `npy`: webdataset tars, the metadata parquet, `.npy` files;
//! - `error`: [`ClipError`], [`HubError`].
//!
//! # Example
//!
//! ```no_run
//! use cascade_stages::clip::{filter_shard, ClipFilter, FilterOptions, ModelSettings};
//!
//! // Or a downloaded file: `weights: std::path::PathBuf::from("clip/model.safetensors").into()`.
//! let settings = ModelSettings { weights: "hf:openai/clip-vit-base-patch32".parse()?, ..Default::default() };
//! let filter = ClipFilter::load(&settings)?;
//! let summary = filter_shard(&filter, "00000.tar".as_ref(), "out".as_ref(), &FilterOptions::default(), |_| {})?;
//! println!("{}", serde_json::to_string(&summary)?);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod clean;
mod config;
mod device;
mod device_share;
mod error;
mod filter;
mod hub;
mod model;
mod npy;
mod options;
mod parquet_out;
mod preprocess;
mod resample;
mod run;
mod shard;
mod stage;
mod tokenizer;
mod weights;

pub use config::{Activation, ClipConfig, TowerConfig};
pub use device::ClipDevice;
pub use error::{ClipError, HubError};
pub use filter::{ClipFilter, ModelSettings};
pub use hub::{
    HubSettings, ResolvedWeights, WeightsSource, CONFIG_FILE, DEFAULT_ENDPOINT, DEFAULT_REVISION, WEIGHTS_FILE,
};
pub use model::{ClipBackend, ClipModel, CpuBackend, CpuDevice};
pub use npy::EmbeddingDtype;
pub use options::{FilterOptions, FilterSummary, ShardOutputs};
pub use parquet_out::SAMPLE_SCHEMA;
pub use preprocess::{decode_rgb, normalize, preprocess_batch, preprocess_image, resize_and_crop, MEAN, STD};
pub use run::{filter_shard, filter_shard_in};
pub use stage::{ClipOutput, ClipStage, DeviceSetting, ShardInput, ShardListSummary, ShardRef};
pub use tokenizer::{ClipTokenizer, TokenBatch, END_OF_TEXT, START_OF_TEXT, VOCAB_SIZE};
pub use weights::load_safetensors;
