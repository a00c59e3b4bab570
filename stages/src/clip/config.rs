//! Model sizes: ViT-B/32 by default, or read from a Hugging Face `config.json`.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::error::ClipError;

/// The activation between the two MLP layers of a transformer block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// `x * sigmoid(1.702 x)`, OpenAI's CLIP.
    QuickGelu,
    /// The exact (erf) GELU, used by some later CLIP-style models.
    Gelu,
}

/// One transformer tower (the `text_config` or `vision_config` of Hugging Face's `CLIPConfig`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TowerConfig {
    /// Residual stream width.
    pub hidden_size: usize,
    /// Hidden width of the MLPs.
    pub intermediate_size: usize,
    /// Attention heads (must divide `hidden_size`).
    pub num_attention_heads: usize,
    /// Transformer blocks.
    pub num_hidden_layers: usize,
    /// MLP activation.
    pub hidden_act: Activation,
    /// Layer norm epsilon.
    pub layer_norm_eps: f64,
    /// Text: context length (77). Unused by the vision tower.
    pub max_position_embeddings: usize,
    /// Text: vocabulary size (49,408). Unused by the vision tower.
    pub vocab_size: usize,
    /// Vision: input side in pixels (224). Unused by the text tower.
    pub image_size: usize,
    /// Vision: patch side in pixels (32). Unused by the text tower.
    pub patch_size: usize,
}

impl Default for TowerConfig {
    fn default() -> Self {
        Self {
            hidden_size: 512,
            intermediate_size: 2048,
            num_attention_heads: 8,
            num_hidden_layers: 12,
            hidden_act: Activation::QuickGelu,
            layer_norm_eps: 1e-5,
            max_position_embeddings: 77,
            vocab_size: 49_408,
            image_size: 224,
            patch_size: 32,
        }
    }
}

impl TowerConfig {
    /// Number of patches plus the class token.
    #[must_use]
    pub fn vision_tokens(&self) -> usize {
        (self.image_size / self.patch_size).pow(2) + 1
    }
}

/// The whole model, field for field a subset of Hugging Face's `CLIPConfig` JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClipConfig {
    /// The text tower.
    pub text_config: TowerConfig,
    /// The vision tower.
    pub vision_config: TowerConfig,
    /// Width of the shared embedding space.
    pub projection_dim: usize,
}

impl Default for ClipConfig {
    fn default() -> Self {
        Self::vit_b_32()
    }
}

impl ClipConfig {
    /// `openai/clip-vit-base-patch32`: a 12-layer 768-wide ViT over 32-pixel patches of a 224
    /// image, a 12-layer 512-wide text transformer over 77 tokens, both projected to 512.
    #[must_use]
    pub fn vit_b_32() -> Self {
        let text_config = TowerConfig::default();
        let vision_config =
            TowerConfig { hidden_size: 768, intermediate_size: 3072, num_attention_heads: 12, ..TowerConfig::default() };
        Self { text_config, vision_config, projection_dim: 512 }
    }

    /// Reads a Hugging Face `config.json` (unknown keys are ignored, missing ones take the
    /// ViT-B/32 values) and checks it.
    ///
    /// # Errors
    ///
    /// [`ClipError::Read`] or [`ClipError::Config`].
    pub fn from_json_file(path: &Path) -> Result<Self, ClipError> {
        let bytes = std::fs::read(path).map_err(|source| ClipError::Read { path: path.to_owned(), source })?;
        let config = Self::from_json_slice(&bytes).map_err(|e| ClipError::Config(format!("{}: {e}", path.display())))?;
        config.validate()?;
        Ok(config)
    }

    /// Parses a Hugging Face `config.json`. Keys the file leaves out (recent `transformers`
    /// writes only those that differ from its defaults) take the ViT-B/32 value of their own
    /// tower, so a missing `vision_config.hidden_size` is 768, not the text tower's 512.
    fn from_json_slice(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        let file: serde_json::Value = serde_json::from_slice(bytes)?;
        let mut merged = serde_json::to_value(Self::vit_b_32())?;
        for key in ["text_config", "vision_config"] {
            if let (Some(base), Some(serde_json::Value::Object(given))) = (merged.get_mut(key), file.get(key)) {
                for (k, v) in given {
                    if base.get(k).is_some() {
                        base[k] = v.clone();
                    }
                }
            }
        }
        if let Some(dim) = file.get("projection_dim") {
            merged["projection_dim"] = dim.clone();
        }
        serde_json::from_value(merged)
    }

    /// Checks that the sizes fit together.
    ///
    /// # Errors
    ///
    /// [`ClipError::Config`] naming the first inconsistency.
    pub fn validate(&self) -> Result<(), ClipError> {
        for (name, tower) in [("text", &self.text_config), ("vision", &self.vision_config)] {
            if tower.num_attention_heads == 0 || tower.hidden_size % tower.num_attention_heads != 0 {
                return Err(ClipError::Config(format!(
                    "{name}: hidden_size {} is not a multiple of num_attention_heads {}",
                    tower.hidden_size, tower.num_attention_heads
                )));
            }
        }
        let v = &self.vision_config;
        if v.patch_size == 0 || !v.image_size.is_multiple_of(v.patch_size) {
            return Err(ClipError::Config(format!("vision: image_size {} is not a multiple of patch_size {}", v.image_size, v.patch_size)));
        }
        if self.text_config.max_position_embeddings < 2 || self.projection_dim == 0 {
            return Err(ClipError::Config("text context below 2 tokens or empty projection".into()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_keys_take_their_own_towers_defaults() {
        let c = ClipConfig::from_json_slice(br#"{"text_config": {"num_hidden_layers": 2, "extra": 1}, "vision_config": {"patch_size": 16}}"#).unwrap();
        assert_eq!(c.text_config.num_hidden_layers, 2);
        assert_eq!(c.text_config.hidden_size, 512);
        assert_eq!(c.vision_config.hidden_size, 768);
        assert_eq!(c.vision_config.patch_size, 16);
        assert_eq!(c.vision_config.vision_tokens(), 197);
        assert_eq!(c.projection_dim, 512);
        let bad = ClipConfig { projection_dim: 0, ..ClipConfig::vit_b_32() };
        assert!(bad.validate().is_err());
    }
}
