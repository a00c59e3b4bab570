//! The vision tower: patch embedding, class token, positions, pre-norm, encoder, post-norm of
//! the class token (Hugging Face's `CLIPVisionTransformer`).

use burn::module::{Module, Param};
use burn::nn::LayerNorm;
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

use super::backend::ClipBackend;
use super::layers::{layer_norm, Encoder};
use crate::clip::config::TowerConfig;

/// The convolution of HF's `patch_embedding` (stride = kernel = patch, no bias), kept as its
/// `[width, 3, patch, patch]` weight and applied as one matrix product over the flattened
/// patches, which is exactly the convolution for non-overlapping patches.
#[derive(Module, Debug)]
pub(crate) struct PatchEmbedding<B: Backend> {
    weight: Param<Tensor<B, 4>>,
}

/// `embeddings.{class_embedding, patch_embedding, position_embedding}`.
#[derive(Module, Debug)]
pub(crate) struct VisionEmbeddings<B: Backend> {
    class_embedding: Param<Tensor<B, 1>>,
    patch_embedding: PatchEmbedding<B>,
    position_embedding: PositionEmbedding<B>,
}

/// A learned position table, `[tokens, width]` (HF's `position_embedding.weight`).
#[derive(Module, Debug)]
pub(crate) struct PositionEmbedding<B: Backend> {
    pub(crate) weight: Param<Tensor<B, 2>>,
}

impl<B: Backend> PositionEmbedding<B> {
    pub(crate) fn new(tokens: usize, width: usize, device: &B::Device) -> Self {
        Self { weight: Param::from_tensor(Tensor::zeros([tokens, width], device)) }
    }
}

/// `vision_model.*`.
#[derive(Module, Debug)]
pub(crate) struct VisionTransformer<B: Backend> {
    embeddings: VisionEmbeddings<B>,
    /// HF spells it `pre_layrnorm`; the loader renames.
    pre_layernorm: LayerNorm<B>,
    encoder: Encoder<B>,
    post_layernorm: LayerNorm<B>,
    #[module(skip)]
    patch_size: usize,
}

impl<B: ClipBackend> VisionTransformer<B> {
    pub(crate) fn new(config: &TowerConfig, device: &B::Device) -> Self {
        let (width, patch) = (config.hidden_size, config.patch_size);
        Self {
            embeddings: VisionEmbeddings {
                class_embedding: Param::from_tensor(Tensor::zeros([width], device)),
                patch_embedding: PatchEmbedding {
                    weight: Param::from_tensor(Tensor::zeros([width, 3, patch, patch], device)),
                },
                position_embedding: PositionEmbedding::new(config.vision_tokens(), width, device),
            },
            pre_layernorm: layer_norm(config, device),
            encoder: Encoder::new(config, device),
            post_layernorm: layer_norm(config, device),
            patch_size: patch,
        }
    }

    /// `pixels`: `[batch, 3, side, side]` normalised; returns the pooled `[batch, width]`.
    pub(crate) fn forward(&self, pixels: Tensor<B, 4>) -> Tensor<B, 2> {
        let [batch, channels, side, _] = pixels.dims();
        let (p, grid) = (self.patch_size, side / self.patch_size);
        let weight = self.embeddings.patch_embedding.weight.val();
        let width = weight.dims()[0];
        // [b, c, gy, p, gx, p] -> [b, gy, gx, c, p, p]: one row per patch, in the conv's order.
        let patches = pixels
            .reshape([batch, channels, grid, p, grid, p])
            .permute([0, 2, 4, 1, 3, 5])
            .reshape([batch * grid * grid, channels * p * p]);
        let embedded = B::linear_layer(patches, weight.reshape([width, channels * p * p]).transpose(), None);
        let embedded = embedded.reshape([batch, grid * grid, width]);
        let class = self.embeddings.class_embedding.val().reshape([1, 1, width]).expand([batch, 1, width]);
        let tokens = Tensor::cat(vec![class, embedded], 1);
        let x = tokens + self.embeddings.position_embedding.weight.val().unsqueeze::<3>();
        let x = self.encoder.forward(self.pre_layernorm.forward(x), false);
        let pooled = x.slice([0..batch, 0..1, 0..width]).reshape([batch, width]);
        self.post_layernorm.forward(pooled)
    }
}
