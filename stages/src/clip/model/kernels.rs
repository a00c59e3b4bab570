//! Fused element-wise CPU kernels on `f32` slices, for the CPU backend's hot spots that burn has
//! no single operation for.
//!
//! The loops are branch-free straight-line arithmetic so that the compiler vectorises them, and
//! they split their slice over the current rayon pool.

use rayon::prelude::*;

/// Elements per rayon task: large enough to amortise the task, small enough to balance.
const CHUNK: usize = 16 * 1024;

/// OpenAI's QuickGELU, `x · σ(1.702 x)`, in place over `values`.
pub(crate) fn quick_gelu_in_place(values: &mut [f32]) {
    values.par_chunks_mut(CHUNK).for_each(|chunk| {
        for x in chunk {
            *x /= 1.0 + exp(-1.702 * *x);
        }
    });
}

/// `eˣ` to within 2 ulp over the `f32` range (Cephes' `expf` polynomial), written without
/// branches or calls so that loops over it vectorise; arguments outside `[-87.3, 88.3]` are
/// clamped, which gives the tiny or huge (finite) value the caller's formula needs.
#[inline(always)]
fn exp(x: f32) -> f32 {
    // Rounds to the nearest integer by adding and removing 1.5 · 2²³ (exact in this range).
    const ROUND: f32 = 12_582_912.0;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let x = x.clamp(-87.3, 88.3);
    let n = (x * std::f32::consts::LOG2_E + ROUND) - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.987_569_1e-4_f32;
    let p = p.mul_add(r, 1.398_2e-3);
    let p = p.mul_add(r, 8.333_452e-3);
    let p = p.mul_add(r, 4.166_579_6e-2);
    let p = p.mul_add(r, 1.666_666_5e-1);
    let p = p.mul_add(r, 5e-1);
    let p = (p * r).mul_add(r, r) + 1.0;
    // 2ⁿ from its exponent bits; n ∈ [-126, 127] after the clamp.
    let scale = f32::from_bits(((n as i32 + 127) as u32) << 23);
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
        assert_eq!(extremes, [0.0, 1e4, 0.0]);
    }
}
