//! The CLIP network in burn, generic over the backend, with Hugging Face `CLIPModel`
//! parameter names so that `model.safetensors` loads by path.
//!
//! burn's own transformer uses other parameter names and has no QuickGELU, so the blocks are
//! built here from `Linear`, `LayerNorm` and `Embedding` (`layers`), with attention through
//! the backend's fused `attention` op; `backend`: [`ClipBackend`], the CPU backend and its fused
//! `kernels`.

mod backend;
mod kernels;
mod layers;
mod panels;
mod text;
mod vision;

use std::ops::Range;

use burn::module::{Module, Param};
use burn::nn::Linear;
use burn::tensor::backend::Backend;
use burn::tensor::{ElementConversion, Int, Tensor};
use rayon::prelude::*;

use super::config::ClipConfig;
pub use backend::{ClipBackend, CpuBackend, CpuDevice};
use layers::{linear, project};
use text::TextTransformer;
use vision::VisionTransformer;

/// CLIP: both towers, their projections into the shared space, and the learned temperature.
#[derive(Module, Debug)]
pub struct ClipModel<B: Backend> {
    text_model: TextTransformer<B>,
    vision_model: VisionTransformer<B>,
    visual_projection: Linear<B>,
    text_projection: Linear<B>,
    /// HF stores a 0-d tensor; the loader reshapes it to `[1]`.
    logit_scale: Param<Tensor<B, 1>>,
}

impl<B: ClipBackend> ClipModel<B> {
    /// A model of the given sizes with zeroed parameters, to be filled by
    /// [`load_safetensors`](super::load_safetensors).
    #[must_use]
    pub fn new(config: &ClipConfig, device: &B::Device) -> Self {
        let (text, vision, dim) = (&config.text_config, &config.vision_config, config.projection_dim);
        Self {
            text_model: TextTransformer::new(text, device),
            vision_model: VisionTransformer::new(vision, device),
            visual_projection: linear(vision.hidden_size, dim, false, device),
            text_projection: linear(text.hidden_size, dim, false, device),
            logit_scale: Param::from_tensor(Tensor::zeros([1], device)),
        }
    }

    /// Image embeddings (projected, not normalised): `pixels` `[batch, 3, side, side]` as
    /// [`preprocess`](super::preprocess_image) makes them → `[batch, projection_dim]`.
    pub fn encode_image(&self, pixels: Tensor<B, 4>) -> Tensor<B, 2> {
        let batch = pixels.dims()[0];
        self.in_sub_batches(batch, |rows| {
            project(&self.visual_projection, self.vision_model.forward(pixels.clone().slice(rows)))
        })
    }

    /// Text embeddings (projected, not normalised): token ids `[batch, context]` and the
    /// `<|endoftext|>` position of each row → `[batch, projection_dim]`.
    pub fn encode_text(&self, ids: Tensor<B, 2, Int>, eot: &[usize]) -> Tensor<B, 2> {
        self.in_sub_batches(eot.len(), |rows| {
            project(&self.text_projection, self.text_model.forward(ids.clone().slice(rows.clone()), &eot[rows]))
        })
    }

    /// `encode(rows)` over [`ClipBackend::sub_batches`] consecutive row ranges in parallel,
    /// the results concatenated in order.
    fn in_sub_batches(&self, batch: usize, encode: impl Fn(Range<usize>) -> Tensor<B, 2> + Sync) -> Tensor<B, 2> {
        let parts = B::sub_batches(batch);
        if parts <= 1 {
            return B::whole_batch(|| encode(0..batch));
        }
        let parts: Vec<Tensor<B, 2>> =
            (0..parts).into_par_iter().map(|p| encode(p * batch / parts..(p + 1) * batch / parts)).collect();
        Tensor::cat(parts, 0)
    }

    /// `exp(logit_scale)`, the factor CLIP multiplies cosine similarities by for its logits.
    pub fn logit_scale(&self) -> f32 {
        self.logit_scale.val().exp().into_scalar().elem()
    }
}
