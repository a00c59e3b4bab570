//! The backend the model runs on without a GPU.

/// burn's CPU backend for CLIP: burn-flex in `f32`, whose matrix products (the `gemm` crate) and
/// fused layer norm, softmax and attention kernels run on the current rayon pool.
pub type CpuBackend = burn::backend::Flex;

/// The device of [`CpuBackend`] (a unit struct: `CpuDevice` is also its value).
pub use burn::backend::flex::FlexDevice as CpuDevice;
