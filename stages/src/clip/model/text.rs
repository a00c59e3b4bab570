//! The text tower: token and position embeddings, causal encoder, final norm, and the
//! hidden state at each caption's `<|endoftext|>` (Hugging Face's `CLIPTextTransformer`).

use burn::module::Module;
use burn::nn::{Embedding, EmbeddingConfig, Initializer, LayerNorm};
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};

use super::backend::ClipBackend;
use super::layers::{layer_norm, Encoder};
use super::vision::PositionEmbedding;
use crate::clip::config::TowerConfig;

/// `embeddings.{token_embedding, position_embedding}`.
#[derive(Module, Debug)]
pub(crate) struct TextEmbeddings<B: Backend> {
    token_embedding: Embedding<B>,
    position_embedding: PositionEmbedding<B>,
}

/// `text_model.*`.
#[derive(Module, Debug)]
pub(crate) struct TextTransformer<B: Backend> {
    embeddings: TextEmbeddings<B>,
    encoder: Encoder<B>,
    final_layer_norm: LayerNorm<B>,
}

impl<B: ClipBackend> TextTransformer<B> {
    pub(crate) fn new(config: &TowerConfig, device: &B::Device) -> Self {
        let token_embedding = EmbeddingConfig::new(config.vocab_size, config.hidden_size)
            .with_initializer(Initializer::Zeros)
            .init(device);
        Self {
            embeddings: TextEmbeddings {
                token_embedding,
                position_embedding: PositionEmbedding::new(config.max_position_embeddings, config.hidden_size, device),
            },
            encoder: Encoder::new(config, device),
            final_layer_norm: layer_norm(config, device),
        }
    }

    /// `ids`: `[batch, context]`; `eot`: the `<|endoftext|>` position of each row. Returns
    /// `[batch, width]`.
    pub(crate) fn forward(&self, ids: Tensor<B, 2, Int>, eot: &[usize]) -> Tensor<B, 2> {
        let [batch, context] = ids.dims();
        let device = ids.device();
        let positions = self.embeddings.position_embedding.weight.val().narrow(0, 0, context);
        let x = self.embeddings.token_embedding.forward(ids) + positions.unsqueeze::<3>();
        let width = x.dims()[2];
        // Causal: a token never attends to later tokens.
        let x = self.final_layer_norm.forward(self.encoder.forward(x, true));
        let rows: Vec<i64> = eot.iter().enumerate().map(|(b, &p)| (b * context + p) as i64).collect();
        let rows = Tensor::<B, 1, Int>::from_data(TensorData::new(rows, [batch]), &device);
        x.reshape([batch * context, width]).select(0, rows)
    }
}
