//! Where the model runs: burn's CPU backend (burn-flex), or a CUDA GPU with the `cuda` feature.

use std::fmt;
use std::str::FromStr;

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::error::ClipError;
use super::model::{ClipBackend, ClipModel};
use super::tokenizer::TokenBatch;

/// A compute device, written `cpu`, `cuda` or `cuda:N` in configuration.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum ClipDevice {
    /// burn-flex on the CPU (its matrix products use the rayon pool's threads).
    #[default]
    Cpu,
    /// The CUDA GPU of this index (feature `cuda`).
    Cuda(usize),
}

impl FromStr for ClipDevice {
    type Err = ClipError;

    fn from_str(s: &str) -> Result<Self, ClipError> {
        match s.trim() {
            "cpu" => Ok(Self::Cpu),
            "cuda" | "gpu" => Ok(Self::Cuda(0)),
            other => other
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(Self::Cuda)
                .ok_or_else(|| ClipError::Device(other.to_owned())),
        }
    }
}

impl TryFrom<String> for ClipDevice {
    type Error = ClipError;

    fn try_from(s: String) -> Result<Self, ClipError> {
        s.parse()
    }
}

impl From<ClipDevice> for String {
    fn from(d: ClipDevice) -> String {
        d.to_string()
    }
}

impl fmt::Display for ClipDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cpu => f.write_str("cpu"),
            Self::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

/// The two encoders of a loaded model, with the backend erased.
pub(crate) trait Encode: Send {
    /// `pixels`: `batch × 3 × side × side` → `batch × dim` projected embeddings.
    fn images(&self, pixels: Vec<f32>, batch: usize, side: usize) -> Vec<f32>;
    /// Tokenized captions → `rows × dim` projected embeddings.
    fn texts(&self, tokens: &TokenBatch) -> Vec<f32>;
}

/// A model on a device of backend `B`.
pub(crate) struct OnDevice<B: Backend> {
    pub(crate) model: ClipModel<B>,
    pub(crate) device: B::Device,
}

fn to_vec<B: Backend>(t: Tensor<B, 2>) -> Vec<f32> {
    // unwrap: the model computes in f32, so the data converts to f32.
    t.into_data().convert::<f32>().into_vec().unwrap()
}

impl<B: ClipBackend> Encode for OnDevice<B>
where
    ClipModel<B>: Send,
    B::Device: Send,
{
    fn images(&self, pixels: Vec<f32>, batch: usize, side: usize) -> Vec<f32> {
        let input = Tensor::<B, 4>::from_data(TensorData::new(pixels, [batch, 3, side, side]), &self.device);
        to_vec(self.model.encode_image(input))
    }

    fn texts(&self, tokens: &TokenBatch) -> Vec<f32> {
        let rows = tokens.eot.len();
        let ids: Vec<i64> = tokens.ids.iter().map(|&t| i64::from(t)).collect();
        let ids = Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [rows, tokens.context_length]), &self.device);
        to_vec(self.model.encode_text(ids, &tokens.eot))
    }
}
