//! The backends the model runs on: [`ClipBackend`] adds the operations of the CLIP blocks that
//! the CPU backend runs as fused kernels (`kernels`) and other backends as burn tensor
//! operations.

use std::ops::Range;
use std::sync::Once;

use burn::backend::flex::FlexTensor;
use burn::tensor::activation::sigmoid;
use burn::tensor::backend::Backend;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Tensor, TensorData, TensorPrimitive};
use rayon::prelude::*;

use super::kernels::{self, AttentionShape};
use super::panels;

/// burn's CPU backend for CLIP: burn-flex in `f32`, whose matrix products (the `gemm` crate) and
/// fused layer norm, softmax and attention kernels run on the current rayon pool.
pub type CpuBackend = burn::backend::Flex;

/// The device of [`CpuBackend`] (a unit struct: `CpuDevice` is also its value).
pub use burn::backend::flex::FlexDevice as CpuDevice;

/// A burn backend that can run [`ClipModel`](super::ClipModel): the CLIP-specific operations,
/// each with a default in burn tensor operations that a backend may replace with a fused kernel.
pub trait ClipBackend: Backend {
    /// Into how many sub-batches, encoded in parallel, to split a batch of `batch` rows; by
    /// default 1 (the backend parallelises each operation itself).
    fn sub_batches(batch: usize) -> usize {
        let _ = batch;
        1
    }

    /// Runs `encode`, the encoding of a batch that is not split into sub-batches. By default
    /// on the calling thread.
    fn whole_batch<R: Send>(encode: impl FnOnce() -> R + Send) -> R {
        encode()
    }

    /// A linear layer on `[rows, d_input]` rows: `x · weight + bias`, `weight` `[d_input,
    /// d_output]` as burn's `Linear` keeps it. By default burn's `linear` operation.
    fn linear_layer(x: Tensor<Self, 2>, weight: Tensor<Self, 2>, bias: Option<Tensor<Self, 1>>) -> Tensor<Self, 2> {
        burn::tensor::module::linear(x, weight, bias)
    }

    /// OpenAI's QuickGELU, `x · σ(1.702 x)`, element-wise.
    fn quick_gelu(x: Tensor<Self, 2>) -> Tensor<Self, 2> {
        x.clone() * sigmoid(x.mul_scalar(1.702))
    }

    /// Multi-head scaled dot-product attention (scale `1/√head_dim`): `q`, `k`, `v` are the
    /// `[batch × tokens, width]` projections, `heads` side by side in each row; with `causal`
    /// each token attends only to itself and earlier tokens. Returns the heads' contexts in the
    /// same layout. By default through burn's `attention` operation on `[batch, heads, tokens,
    /// head_dim]` views.
    fn multi_head_attention(
        q: Tensor<Self, 2>,
        k: Tensor<Self, 2>,
        v: Tensor<Self, 2>,
        batch: usize,
        heads: usize,
        causal: bool,
    ) -> Tensor<Self, 2> {
        let [rows, width] = q.dims();
        let split = |t: Tensor<Self, 2>| t.reshape([batch, rows / batch, heads, width / heads]).swap_dims(1, 2);
        let options = AttentionModuleOptions { scale: None, softcap: None, is_causal: causal };
        attention(split(q), split(k), split(v), None, None, options).swap_dims(1, 2).reshape([rows, width])
    }
}

/// Products with at most this many rows (one image or caption per thread) multiply the
/// weight's column panels (`panels`) in [`ClipBackend::linear_layer`].
const PANEL_ROWS: usize = 128;

/// Products with at most this many rows are split by columns in [`ClipBackend::linear_layer`].
const FEW_ROWS: usize = 256;

/// Columns per block of such a split are a multiple of this (whole AVX-512 tiles).
const COLUMN_GRAIN: usize = 64;

/// Sets `gemm`'s global thresholds, once, for the process (the `gemm` crate has no other
/// knobs). Its own threading is turned off: the CPU backend spreads the model over the threads
/// itself (a sub-batch per thread, few-row products by columns, attention by (sequence, head)),
/// and inside those tasks `gemm` split each product again by rows, into blocks of a few rows
/// that its kernels run at half speed; the whole model ran at 0.7–0.8× of the rate it has
/// without (see docs/clip.md). Its packing threshold is raised for the panels (`panels`).
fn configure_gemm() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        gemm::set_threading_threshold(usize::MAX);
        // `gemm` copies (packs) a block of the weight before using it when the product has
        // more than this many groups of its kernel's 4–6 rows; [`PANEL_ROWS`] rows must stay
        // under it so that panels are read where they lie.
        gemm::set_lhs_packing_threshold_single_thread(PANEL_ROWS.div_ceil(4));
    });
}

/// A CPU tensor's storage, made contiguous if it was not.
fn contiguous(t: Tensor<CpuBackend, 2>) -> FlexTensor {
    let t = t.into_primitive().tensor();
    if t.layout().contiguous_offsets().is_some() {
        t
    } else {
        t.to_contiguous()
    }
}

/// The values of a contiguous CPU tensor, in row-major order.
fn values(t: &FlexTensor) -> &[f32] {
    // unwrap: callers pass tensors from `contiguous`.
    t.as_slice::<f32>().unwrap()
}

/// The CPU kernels of `kernels` in place of burn's tensor operations.
impl ClipBackend for CpuBackend {
    /// One sub-batch per thread of the current rayon pool: each thread then runs whole
    /// layers on its own rows, rather than every small operation being split over the pool
    /// and joined (the operations still split when a thread is free, e.g. at batch 1).
    fn sub_batches(batch: usize) -> usize {
        rayon::current_num_threads().min(batch)
    }

    /// On a thread of the current rayon pool, so that each operation split over the threads
    /// forks from there: from outside the pool each one woke the pool's threads and then the
    /// caller again.
    fn whole_batch<R: Send>(encode: impl FnOnce() -> R + Send) -> R {
        rayon::scope(|_| encode())
    }

    /// Few rows split over the threads by output columns: up to [`PANEL_ROWS`], each thread
    /// multiplies the whole `x` by its share of the weight's column panels (`panels`); up to
    /// [`FEW_ROWS`], by its own block of the whole weight's columns (a view, not a copy). Then
    /// the bias is added. More rows are one product (the model already runs one sub-batch per
    /// thread). `gemm` itself never threads here ([`configure_gemm`]).
    fn linear_layer(x: Tensor<Self, 2>, weight: Tensor<Self, 2>, bias: Option<Tensor<Self, 1>>) -> Tensor<Self, 2> {
        configure_gemm();
        let [rows, depth] = x.dims();
        let [_, width] = weight.dims();
        if rows <= PANEL_ROWS {
            if let Some(panels) = panels::panels_of(&weight) {
                let share = panels.len().div_ceil(rayon::current_num_threads());
                let blocks: Vec<Vec<Tensor<Self, 2>>> = panels
                    .par_chunks(share)
                    .map(|mine| mine.iter().map(|panel| x.clone().matmul(panel.clone())).collect())
                    .collect();
                let out = Tensor::cat(blocks.into_iter().flatten().collect(), 1);
                return match bias {
                    Some(bias) => out + bias.unsqueeze(),
                    None => out,
                };
            }
        }
        let product = |columns: Range<usize>| {
            let out = x.clone().matmul(weight.clone().slice([0..depth, columns.clone()]));
            match &bias {
                Some(bias) => out + bias.clone().slice(columns).unsqueeze(),
                None => out,
            }
        };
        let threads = rayon::current_num_threads();
        if threads == 1 || rows > FEW_ROWS || width < 2 * COLUMN_GRAIN {
            return product(0..width);
        }
        let part = width.div_ceil(threads).next_multiple_of(COLUMN_GRAIN);
        let firsts: Vec<usize> = (0..width).step_by(part).collect();
        let blocks: Vec<Tensor<Self, 2>> =
            firsts.into_par_iter().map(|first| product(first..(first + part).min(width))).collect();
        Tensor::cat(blocks, 1)
    }

    /// One pass in place (when `x` is not shared) instead of three tensors.
    fn quick_gelu(x: Tensor<Self, 2>) -> Tensor<Self, 2> {
        let mut t = contiguous(x);
        // unwrap: `t` is contiguous.
        let (start, end) = t.layout().contiguous_offsets().unwrap();
        // Copies first if the storage is shared (copy on write), so other holders are unaffected.
        kernels::quick_gelu_in_place(&mut t.storage_mut::<f32>()[start..end]);
        Tensor::from_primitive(TensorPrimitive::Float(t))
    }

    /// Reads the heads where the projections wrote them and writes the contexts where the
    /// output projection reads them: no permuted copies, sequences in parallel.
    fn multi_head_attention(
        q: Tensor<Self, 2>,
        k: Tensor<Self, 2>,
        v: Tensor<Self, 2>,
        batch: usize,
        heads: usize,
        causal: bool,
    ) -> Tensor<Self, 2> {
        let [rows, width] = q.dims();
        let shape = AttentionShape { batch, tokens: rows / batch, heads, width, causal };
        let (q, k, v) = (contiguous(q), contiguous(k), contiguous(v));
        let out = kernels::attention(values(&q), values(&k), values(&v), shape);
        Tensor::from_data(TensorData::new(out, [rows, width]), &CpuDevice)
    }
}

#[cfg(feature = "cuda")]
impl ClipBackend for burn::backend::Cuda<f32> {}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::activation::softmax;
    use burn::tensor::{Bool, Distribution, TensorData, Tolerance};

    #[test]
    fn fused_linear_matches_burns_linear() {
        let random = |shape: [usize; 2]| Tensor::<CpuBackend, 2>::random(shape, Distribution::Normal(0.0, 1.0), &CpuDevice);
        // On three threads a product of 1 or 50 rows multiplies the weight's five column
        // panels (two, two and one per thread); one of 200 rows is split into column blocks of
        // 128, 128 and 64; one of 400 rows is not split.
        let pool = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap();
        for rows in [1, 50, 200, 400] {
            let (x, weight) = (random([rows, 96]), random([96, 320]));
            let bias = Tensor::<CpuBackend, 1>::random([320], Distribution::Normal(0.0, 1.0), &CpuDevice);
            let want = burn::tensor::module::linear(x.clone(), weight.clone(), Some(bias.clone()));
            let got = pool.install(|| CpuBackend::linear_layer(x.clone(), weight, Some(bias)));
            got.into_data().assert_approx_eq::<f32>(&want.into_data(), Tolerance::absolute(1e-4));
            // A weight stored transposed (a strided view, as the patch embedding passes it),
            // without bias.
            let transposed = random([320, 96]).transpose();
            let want = x.clone().matmul(transposed.clone());
            let got = pool.install(|| CpuBackend::linear_layer(x, transposed, None));
            got.into_data().assert_approx_eq::<f32>(&want.into_data(), Tolerance::absolute(1e-4));
        }
    }

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

    /// Attention as the formula reads: per head, `softmax(q kᵀ / √d + mask) v`.
    fn attention_formula(
        q: Tensor<CpuBackend, 2>,
        k: Tensor<CpuBackend, 2>,
        v: Tensor<CpuBackend, 2>,
        batch: usize,
        heads: usize,
        causal: bool,
    ) -> Tensor<CpuBackend, 2> {
        let [rows, width] = q.dims();
        let (tokens, d) = (rows / batch, width / heads);
        let split = |t: Tensor<CpuBackend, 2>| t.reshape([batch, tokens, heads, d]).swap_dims(1, 2);
        let mut scores = split(q).matmul(split(k).swap_dims(2, 3)).mul_scalar((d as f64).powf(-0.5));
        if causal {
            let mask = Tensor::<CpuBackend, 2, Bool>::tril_mask([tokens, tokens], 0, &CpuDevice);
            scores = scores.mask_fill(mask.unsqueeze::<4>().expand([batch, heads, tokens, tokens]), f32::NEG_INFINITY);
        }
        softmax(scores, 3).matmul(split(v)).swap_dims(1, 2).reshape([rows, width])
    }

    #[test]
    fn fused_attention_matches_the_tensor_formula() {
        for (batch, tokens, heads, width, causal) in
            [(3, 50, 12, 768, false), (2, 77, 8, 512, true), (1, 5, 2, 6, true)]
        {
            let random =
                || Tensor::<CpuBackend, 2>::random([batch * tokens, width], Distribution::Normal(0.0, 1.0), &CpuDevice);
            let (q, k, v) = (random(), random(), random());
            let want = attention_formula(q.clone(), k.clone(), v.clone(), batch, heads, causal);
            let got = CpuBackend::multi_head_attention(q, k, v, batch, heads, causal);
            got.into_data().assert_approx_eq::<f32>(&want.into_data(), Tolerance::absolute(1e-5));
        }
    }
}
