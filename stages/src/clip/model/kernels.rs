//! Fused CPU kernels on `f32` slices for the CPU backend's hot spots: QuickGELU in place, and
//! multi-head attention straight on the projections' row layout.
//!
//! The inner loops are branch-free straight-line arithmetic so that the compiler vectorises
//! them, compiled for the widest vectors the CPU has ([`widest`]), and the work is split over
//! the current rayon pool.

use pulp::{Simd, WithSimd};
use rayon::prelude::*;

/// Elements per rayon task: large enough to amortise the task, small enough to balance.
const CHUNK: usize = 16 * 1024;

/// Runs `work` compiled for the best instruction set of this CPU, chosen at run time (AVX-512,
/// else AVX2 with FMA, else the build's SSE2 baseline), so that the loops of its
/// `with_simd` (always inlined, as are the functions it calls) vectorise 8 or 16 lanes wide
/// instead of 4. The arithmetic is the same in every case (no fused multiply-adds are formed
/// from separate operations), so the results are identical.
fn widest<W: WithSimd>(work: W) -> W::Output {
    pulp::Arch::new().dispatch(work)
}

/// OpenAI's QuickGELU, `x · σ(1.702 x)`, in place over `values`.
pub(crate) fn quick_gelu_in_place(values: &mut [f32]) {
    values.par_chunks_mut(CHUNK).for_each(|chunk| widest(QuickGelu(chunk)));
}

/// [`quick_gelu_in_place`] on one chunk, for [`widest`].
struct QuickGelu<'a>(&'a mut [f32]);

impl WithSimd for QuickGelu<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, _: S) {
        for x in self.0 {
            *x /= 1.0 + exp(-1.702 * *x);
        }
    }
}

/// The sizes of one multi-head attention call.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AttentionShape {
    /// Sequences.
    pub(crate) batch: usize,
    /// Tokens per sequence.
    pub(crate) tokens: usize,
    /// Heads; the width divides into them evenly.
    pub(crate) heads: usize,
    /// Features per token, all heads together.
    pub(crate) width: usize,
    /// Whether each token attends only to itself and earlier tokens.
    pub(crate) causal: bool,
}

/// Scaled dot-product attention (scale `1/√head_dim`) of every head of every sequence.
///
/// `q`, `k`, `v` and the result are `[batch × tokens, width]` rows with the heads side by side
/// in each row, as the projections make them and the output projection takes them, so heads
/// are read in place rather than permuted out. Every (sequence, head) pair is a task of its
/// own, so that one sequence (batch 1) still spreads over the threads.
pub(crate) fn attention(q: &[f32], k: &[f32], v: &[f32], shape: AttentionShape) -> Vec<f32> {
    let AttentionShape { batch, tokens, heads, width, .. } = shape;
    let rows = batch * tokens;
    assert!(q.len() == rows * width && k.len() == q.len() && v.len() == q.len(), "attention: shapes");
    let head_dim = width / heads;
    let span = tokens * width;
    // One `[tokens, head_dim]` context per (sequence, head), in that order.
    let contexts: Vec<Vec<f32>> = (0..batch * heads)
        .into_par_iter()
        .map(|task| {
            let (b, h) = (task / heads, task % heads);
            let at = b * span..(b + 1) * span;
            widest(Attend { q: &q[at.clone()], k: &k[at.clone()], v: &v[at], head: h, shape })
        })
        .collect();
    let mut out = vec![0f32; rows * width];
    for (task, contexts) in contexts.iter().enumerate() {
        let (b, h) = (task / heads, task % heads);
        for (t, context) in contexts.chunks_exact(head_dim).enumerate() {
            let row = (b * tokens + t) * width;
            out[row + h * head_dim..row + (h + 1) * head_dim].copy_from_slice(context);
        }
    }
    out
}

/// One head of one sequence for [`widest`]: its `[tokens, head_dim]` contexts, from the
/// sequence's `q`, `k`, `v` rows.
struct Attend<'a> {
    q: &'a [f32],
    k: &'a [f32],
    v: &'a [f32],
    head: usize,
    shape: AttentionShape,
}

impl WithSimd for Attend<'_> {
    type Output = Vec<f32>;

    #[inline(always)]
    fn with_simd<S: Simd>(self, _: S) -> Vec<f32> {
        let Self { q, k, v, head, shape } = self;
        attend(q, k, v, head, shape)
    }
}

/// Lanes of a vector of running sums in [`attend`]: one AVX-512 register.
const LANES: usize = 16;

/// One vector of running sums.
type Lanes = [f32; LANES];

/// `sum += x · row`, lane by lane.
#[inline(always)]
fn add_scaled(sum: &mut Lanes, x: f32, row: &[f32]) {
    // unwrap: callers lay their rows out in whole vectors.
    let row: &Lanes = row[..LANES].try_into().unwrap();
    for l in 0..LANES {
        sum[l] += x * row[l];
    }
}

/// `Σ xs[i] · rows[i · stride + first ..][..LANES]`: one vector of sums, kept in four
/// independent chains (without fused multiply-adds each step waits about 8 cycles on the
/// previous one of its chain).
#[inline(always)]
fn weighted_sum(xs: &[f32], rows: &[f32], stride: usize, first: usize) -> Lanes {
    let (mut s0, mut s1, mut s2, mut s3) = ([0f32; LANES], [0f32; LANES], [0f32; LANES], [0f32; LANES]);
    let groups = xs.chunks_exact(4);
    let done = xs.len() - groups.remainder().len();
    for (g, x) in groups.enumerate() {
        let at = |c: usize| &rows[(4 * g + c) * stride + first..];
        add_scaled(&mut s0, x[0], at(0));
        add_scaled(&mut s1, x[1], at(1));
        add_scaled(&mut s2, x[2], at(2));
        add_scaled(&mut s3, x[3], at(3));
    }
    for (i, &x) in xs.iter().enumerate().skip(done) {
        add_scaled(&mut s0, x, &rows[i * stride + first..]);
    }
    for l in 0..LANES {
        s0[l] += s1[l] + s2[l] + s3[l];
    }
    s0
}

/// The largest of `values`, kept per lane so that the loop vectorises.
#[inline(always)]
fn max_of(values: &[f32]) -> f32 {
    let mut maxima = [f32::NEG_INFINITY; LANES];
    let vectors = values.chunks_exact(LANES);
    let rest = vectors.remainder().iter().copied().fold(f32::NEG_INFINITY, f32::max);
    for vector in vectors {
        for l in 0..LANES {
            maxima[l] = maxima[l].max(vector[l]);
        }
    }
    maxima.iter().copied().fold(rest, f32::max)
}

/// Replaces each `w` of `weights` by `exp(w · scale − shift)` and returns their sum, kept per
/// lane so that the loop (and [`exp`]) vectorises.
#[inline(always)]
fn exp_in_place(weights: &mut [f32], scale: f32, shift: f32) -> f32 {
    let mut sums = [0f32; LANES];
    let mut vectors = weights.chunks_exact_mut(LANES);
    for vector in &mut vectors {
        for l in 0..LANES {
            vector[l] = exp(vector[l] * scale - shift);
            sums[l] += vector[l];
        }
    }
    let mut rest = 0.0;
    for w in vectors.into_remainder() {
        *w = exp(*w * scale - shift);
        rest += *w;
    }
    sums.iter().sum::<f32>() + rest
}

/// The body of [`Attend`], always inlined into the instruction set [`widest`] chose.
///
/// The head's keys are copied out transposed (`[head_dim, tokens]`) and its values out as
/// rows, both padded to whole vectors with zeros. A query's scores against all keys are then
/// vectors of sums over the features, and its context vectors of sums over the keys, each
/// kept in registers ([`weighted_sum`]), rather than a dot product (with its horizontal sum)
/// per key and a pass over the context in memory per key.
#[inline(always)]
fn attend(q: &[f32], k: &[f32], v: &[f32], h: usize, shape: AttentionShape) -> Vec<f32> {
    let AttentionShape { tokens, heads, width, causal, .. } = shape;
    let head_dim = width / heads;
    let scale = (head_dim as f32).powf(-0.5);
    let at = |t: usize| t * width + h * head_dim..t * width + (h + 1) * head_dim;
    let key_stride = tokens.next_multiple_of(LANES);
    let value_stride = head_dim.next_multiple_of(LANES);
    let mut keys = vec![0f32; head_dim * key_stride];
    let mut values = vec![0f32; tokens * value_stride];
    for j in 0..tokens {
        for (d, &x) in k[at(j)].iter().enumerate() {
            keys[d * key_stride + j] = x;
        }
        values[j * value_stride..][..head_dim].copy_from_slice(&v[at(j)]);
    }
    let mut weights = vec![0f32; key_stride];
    let mut contexts = vec![0f32; tokens * head_dim];
    for (t, context) in contexts.chunks_exact_mut(head_dim).enumerate() {
        let seen = if causal { t + 1 } else { tokens };
        let query = &q[at(t)];
        for first in (0..seen).step_by(LANES) {
            weights[first..first + LANES].copy_from_slice(&weighted_sum(query, &keys, key_stride, first));
        }
        let weights = &mut weights[..seen];
        let max = max_of(weights) * scale;
        let norm = 1.0 / exp_in_place(weights, scale, max);
        for first in (0..head_dim).step_by(LANES) {
            let sums = weighted_sum(weights, &values, value_stride, first);
            for (c, &sum) in context[first..].iter_mut().zip(&sums) {
                *c = sum * norm;
            }
        }
    }
    contexts
}

/// `eˣ` within 5e-7 relative error over the `f32` range (Cephes' `expf` polynomial), written
/// without branches or calls so that loops over it vectorise; arguments outside `[-87.3, 88.3]`
/// are clamped, which gives the tiny or huge (finite) value the caller's formula needs.
#[inline(always)]
fn exp(x: f32) -> f32 {
    // Rounds to the nearest integer by adding and removing 1.5 · 2²³ (exact in this range).
    const ROUND: f32 = 12_582_912.0;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let x = x.clamp(-87.3, 88.3);
    let rounded = x * std::f32::consts::LOG2_E + ROUND;
    let n = rounded - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    // Horner without `mul_add`: without a compile-time FMA target that is a libm call per
    // element, which stops the loop from vectorising.
    let p = 1.987_569_1e-4_f32;
    let p = p * r + 1.398_2e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 5e-1;
    let p = p * r * r + r + 1.0;
    // 2ⁿ from its exponent bits; n ∈ [-126, 127] after the clamp. `rounded` holds n in its
    // low mantissa bits (its bits are those of ROUND plus n), so the exponent comes from
    // integer arithmetic on them: a float-to-integer conversion (`n as i32`) would be
    // computed lane by lane, which kept the loops over this function from vectorising.
    let scale = f32::from_bits(rounded.to_bits().wrapping_sub(ROUND.to_bits()).wrapping_add(127) << 23);
    p * scale
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_matches_the_standard_library() {
        let mut worst = 0f32;
        let mut x = -87.0f32;
        while x < 88.0 {
            let (got, want) = (exp(x), x.exp());
            worst = worst.max(((got - want) / want).abs());
            x += 0.0137;
        }
        assert!(worst < 5e-7, "relative error {worst}");
        assert!(exp(-1000.0) < 1e-37 && exp(1000.0) > 1e38 && exp(1000.0).is_finite());
    }

    #[test]
    fn quick_gelu_matches_its_formula() {
        let input: Vec<f32> = (0..70_000).map(|i| (i as f32 - 35_000.0) * 1e-3).collect();
        let mut got = input.clone();
        quick_gelu_in_place(&mut got);
        for (&x, &y) in input.iter().zip(&got) {
            let want = x / (1.0 + (-1.702 * x).exp());
            assert!((y - want).abs() <= 1e-6 * want.abs().max(1.0), "x {x}: {y} vs {want}");
        }
        let mut extremes = [-1e4f32, 1e4, 0.0];
        quick_gelu_in_place(&mut extremes);
        assert!(extremes[0].abs() < 1e-30 && extremes[1] == 1e4 && extremes[2] == 0.0, "{extremes:?}");
    }
}
