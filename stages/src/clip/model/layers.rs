//! The pre-norm transformer block both CLIP towers share, with Hugging Face's parameter names
//! (`self_attn.{q,k,v,out}_proj`, `layer_norm1`, `mlp.fc1`, `mlp.fc2`, `layer_norm2`).

use burn::module::Module;
use burn::nn::{Initializer, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::activation::gelu;
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

use super::backend::ClipBackend;
use crate::clip::config::{Activation, TowerConfig};

/// Parameters are overwritten by the weight file, so initialise them cheaply.
pub(crate) fn linear<B: Backend>(d_input: usize, d_output: usize, bias: bool, device: &B::Device) -> Linear<B> {
    LinearConfig::new(d_input, d_output).with_bias(bias).with_initializer(Initializer::Zeros).init(device)
}

/// A layer norm of the tower's width and epsilon.
pub(crate) fn layer_norm<B: Backend>(config: &TowerConfig, device: &B::Device) -> LayerNorm<B> {
    LayerNormConfig::new(config.hidden_size).with_epsilon(config.layer_norm_eps).init(device)
}

/// `layer` applied to `[rows, d_input]` rows through the backend's [`ClipBackend::linear`].
pub(crate) fn project<B: ClipBackend>(layer: &Linear<B>, x: Tensor<B, 2>) -> Tensor<B, 2> {
    B::linear_layer(x, layer.weight.val(), layer.bias.as_ref().map(|b| b.val()))
}

/// Multi-head self-attention.
#[derive(Module, Debug)]
pub(crate) struct SelfAttention<B: Backend> {
    q_proj: Linear<B>,
    k_proj: Linear<B>,
    v_proj: Linear<B>,
    out_proj: Linear<B>,
    #[module(skip)]
    heads: usize,
}

impl<B: ClipBackend> SelfAttention<B> {
    fn new(config: &TowerConfig, device: &B::Device) -> Self {
        let d = config.hidden_size;
        Self {
            q_proj: linear(d, d, true, device),
            k_proj: linear(d, d, true, device),
            v_proj: linear(d, d, true, device),
            out_proj: linear(d, d, true, device),
            heads: config.num_attention_heads,
        }
    }

    /// `x`: `[batch × tokens, width]` rows of `batch` sequences of `tokens`; `causal`: each
    /// token attends only to itself and earlier tokens (the text tower).
    fn forward(&self, x: Tensor<B, 2>, batch: usize, causal: bool) -> Tensor<B, 2> {
        let q = project(&self.q_proj, x.clone());
        let k = project(&self.k_proj, x.clone());
        let v = project(&self.v_proj, x);
        let context = B::multi_head_attention(q, k, v, batch, self.heads, causal);
        project(&self.out_proj, context)
    }
}

/// The two-layer MLP.
#[derive(Module, Debug)]
pub(crate) struct Mlp<B: Backend> {
    fc1: Linear<B>,
    fc2: Linear<B>,
    #[module(skip)]
    activation: Activation,
}

impl<B: ClipBackend> Mlp<B> {
    fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        let h = project(&self.fc1, x);
        let h = match self.activation {
            Activation::QuickGelu => B::quick_gelu(h),
            Activation::Gelu => gelu(h),
        };
        project(&self.fc2, h)
    }
}

/// One pre-norm residual block.
#[derive(Module, Debug)]
pub(crate) struct EncoderLayer<B: Backend> {
    self_attn: SelfAttention<B>,
    layer_norm1: LayerNorm<B>,
    mlp: Mlp<B>,
    layer_norm2: LayerNorm<B>,
}

/// The stack of blocks (`encoder.layers.N`).
#[derive(Module, Debug)]
pub(crate) struct Encoder<B: Backend> {
    layers: Vec<EncoderLayer<B>>,
}

impl<B: ClipBackend> Encoder<B> {
    pub(crate) fn new(config: &TowerConfig, device: &B::Device) -> Self {
        let layers = (0..config.num_hidden_layers)
            .map(|_| EncoderLayer {
                self_attn: SelfAttention::new(config, device),
                layer_norm1: layer_norm(config, device),
                mlp: Mlp {
                    fc1: linear(config.hidden_size, config.intermediate_size, true, device),
                    fc2: linear(config.intermediate_size, config.hidden_size, true, device),
                    activation: config.hidden_act,
                },
                layer_norm2: layer_norm(config, device),
            })
            .collect();
        Self { layers }
    }

    /// `x`: `[batch, tokens, width]`; `causal` as in [`SelfAttention`]. The blocks run on the
    /// `[batch × tokens, width]` rows, so each linear layer is one large matrix product.
    pub(crate) fn forward(&self, x: Tensor<B, 3>, causal: bool) -> Tensor<B, 3> {
        let [batch, tokens, width] = x.dims();
        let mut x = x.reshape([batch * tokens, width]);
        for layer in &self.layers {
            x = x.clone() + layer.self_attn.forward(layer.layer_norm1.forward(x), batch, causal);
            x = x.clone() + layer.mlp.forward(layer.layer_norm2.forward(x));
        }
        x.reshape([batch, tokens, width])
    }
}
