//! The backends the model runs on: [`ClipBackend`] adds the operations of the CLIP blocks that
//! the CPU backend runs as fused kernels (`kernels`) and other backends as burn tensor
//! operations.

use burn::tensor::activation::sigmoid;
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorPrimitive};

use super::kernels;

/// burn's CPU backend for CLIP: burn-flex in `f32`, whose matrix products (the `gemm` crate) and
/// fused layer norm, softmax and attention kernels run on the current rayon pool.
pub type CpuBackend = burn::backend::Flex;

/// The device of [`CpuBackend`] (a unit struct: `CpuDevice` is also its value).
pub use burn::backend::flex::FlexDevice as CpuDevice;

/// A burn backend that can run [`ClipModel`](super::ClipModel): the CLIP-specific operations,
/// each with a default in burn tensor operations that a backend may replace with a fused kernel.
pub trait ClipBackend: Backend {
    /// OpenAI's QuickGELU, `x · σ(1.702 x)`, element-wise.
    fn quick_gelu(x: Tensor<Self, 2>) -> Tensor<Self, 2> {
        x.clone() * sigmoid(x.mul_scalar(1.702))
    }
}

/// One pass in place (when `x` is not shared) instead of three tensors.
impl ClipBackend for CpuBackend {
    fn quick_gelu(x: Tensor<Self, 2>) -> Tensor<Self, 2> {
        let mut t = x.into_primitive().tensor();
        if t.layout().contiguous_offsets().is_none() {
            t = t.to_contiguous();
        }
        // unwrap: `t` is contiguous now.
        let (start, end) = t.layout().contiguous_offsets().unwrap();
        // Copies first if the storage is shared (copy on write), so other holders are unaffected.
        kernels::quick_gelu_in_place(&mut t.storage_mut::<f32>()[start..end]);
        Tensor::from_primitive(TensorPrimitive::Float(t))
    }
}

#[cfg(feature = "cuda")]
impl ClipBackend for burn::backend::Cuda<f32> {}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Distribution, TensorData, Tolerance};

    #[test]
    fn fused_quick_gelu_matches_the_tensor_formula() {
        let x = Tensor::<CpuBackend, 2>::random([37, 301], Distribution::Normal(0.0, 4.0), &CpuDevice);
        let want = x.clone() * sigmoid(x.clone().mul_scalar(1.702));
        // A shared input is left as it was.
        let before: TensorData = x.to_data();
        let got = CpuBackend::quick_gelu(x.clone());
        got.into_data().assert_approx_eq::<f32>(&want.into_data(), Tolerance::absolute(1e-5));
        x.into_data().assert_eq(&before, true);
        // A transposed (strided) input.
        let t = Tensor::<CpuBackend, 2>::random([64, 48], Distribution::Normal(0.0, 4.0), &CpuDevice).transpose();
        let want = t.clone() * sigmoid(t.clone().mul_scalar(1.702));
        CpuBackend::quick_gelu(t).into_data().assert_approx_eq::<f32>(&want.into_data(), Tolerance::absolute(1e-5));
    }
}
