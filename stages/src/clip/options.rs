//! Filter settings and the per-shard report.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::npy::EmbeddingDtype;
use crate::stage::{ArtifactError, OutputDir};

/// How a shard is filtered.
///
/// Deserialises from the kebab-case keys of `cascade.toml`; every key is optional.
///
/// ```
/// let opts: cascade_stages::clip::FilterOptions =
///     serde_json::from_str(r#"{"threshold": 0.3, "embeddings": "float32"}"#).unwrap();
/// assert_eq!(opts.batch_size, 32);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct FilterOptions {
    /// Keep pairs whose cosine similarity is at least this (LAION-5B: 0.28, LAION-400M: 0.3).
    pub threshold: f32,
    /// Samples embedded per model call.
    pub batch_size: usize,
    /// Decode/preprocess threads for [`filter_shard`](super::filter_shard); 0 uses rayon's
    /// global pool.
    pub threads: usize,
    /// Element type of the embedding `.npy` files.
    pub embeddings: EmbeddingDtype,
}

impl Default for FilterOptions {
    fn default() -> Self {
        Self { threshold: 0.28, batch_size: 32, threads: 0, embeddings: EmbeddingDtype::Float16 }
    }
}

/// What one shard gave, serialisable as job output.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FilterSummary {
    /// The input shard.
    pub input: PathBuf,
    /// Samples (distinct keys) read.
    pub samples: u64,
    /// Samples whose image and caption were both embedded.
    pub embedded: u64,
    /// Samples kept (similarity ≥ threshold).
    pub kept: u64,
    /// Samples skipped because their image could not be decoded.
    pub corrupt_images: u64,
    /// Samples without an image file.
    pub missing_image: u64,
    /// Samples without a `.txt` caption.
    pub missing_caption: u64,
    /// Why the tar ended early (truncated or damaged), if it did; samples before are kept.
    pub truncated: Option<String>,
    /// The threshold applied.
    pub threshold: f32,
    /// Mean similarity of the embedded samples.
    pub mean_similarity: f32,
    /// Files written.
    pub outputs: ShardOutputs,
}

impl FilterSummary {
    /// Publishes the shard's four files through `out` and names each as the next stage reads
    /// it: its path, or its `s3://` URL once uploaded (see [`OutputDir::publish`]).
    ///
    /// # Errors
    /// As [`OutputDir::publish`].
    pub fn publish(&mut self, out: &OutputDir) -> Result<(), ArtifactError> {
        let outputs = &mut self.outputs;
        for file in [&mut outputs.shard, &mut outputs.metadata, &mut outputs.image_embeddings, &mut outputs.text_embeddings] {
            *file = out.publish(file)?;
        }
        Ok(())
    }
}

/// The files one filtered shard produces (clip-retrieval's layout under the output folder).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ShardOutputs {
    /// `NAME.tar`: the kept samples, every file of each, in input order.
    pub shard: PathBuf,
    /// `metadata/metadata_NAME.parquet`: `key, url, caption, similarity` per kept sample.
    pub metadata: PathBuf,
    /// `img_emb/img_emb_NAME.npy`: L2-normalised image embeddings, one row per kept sample.
    pub image_embeddings: PathBuf,
    /// `text_emb/text_emb_NAME.npy`: L2-normalised caption embeddings, same rows.
    pub text_embeddings: PathBuf,
}

impl ShardOutputs {
    /// The folder under `out_dir` that a shard's outputs go in: one named after the shard's
    /// own folder (`images/pairs-1/00000.tar` → `out_dir/pairs-1`), so that the equally named
    /// shards of several folders (the download stage's `00000.tar` of each pair shard) keep
    /// apart; `out_dir` itself for a shard named without a folder.
    ///
    /// ```
    /// use std::path::Path;
    /// use cascade_stages::clip::ShardOutputs;
    ///
    /// let folder = ShardOutputs::folder_for(Path::new("s3://b/images/pairs-1/00000.tar"), Path::new("out"));
    /// assert_eq!(folder, Path::new("out/pairs-1"));
    /// assert_eq!(ShardOutputs::folder_for(Path::new("00000.tar"), Path::new("out")), Path::new("out"));
    /// ```
    #[must_use]
    pub fn folder_for(input: &std::path::Path, out_dir: &std::path::Path) -> std::path::PathBuf {
        input.parent().and_then(std::path::Path::file_name).map_or_else(|| out_dir.to_owned(), |name| out_dir.join(name))
    }

    /// The output paths for `input` (named after its file stem) under `out_dir`.
    #[must_use]
    pub fn for_input(input: &std::path::Path, out_dir: &std::path::Path) -> Self {
        let name = input.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let stem = name.strip_suffix(".tar").unwrap_or(&name);
        Self {
            shard: out_dir.join(format!("{stem}.tar")),
            metadata: out_dir.join("metadata").join(format!("metadata_{stem}.parquet")),
            image_embeddings: out_dir.join("img_emb").join(format!("img_emb_{stem}.npy")),
            text_embeddings: out_dir.join("text_emb").join(format!("text_emb_{stem}.npy")),
        }
    }
}
