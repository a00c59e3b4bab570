//! The CPU backend's linear-layer weights kept a second time in column panels, for products of
//! few rows (a single image or caption per thread).
//!
//! `gemm` reads the weight `W` (`[depth, width]`, row-major) of `x · W` a block of output
//! columns at a time, down its `depth` rows. In a whole weight those reads are `width` floats
//! apart, so `gemm` first copies ("packs") each block into contiguous order, or reads it in
//! place at the same cost. With 50 or 77 rows each block serves few rows after that, and the
//! copies took a third of `gemm`'s time at batch 1. A weight stored as contiguous
//! `[depth, PANEL]` panels is already in that order: each panel is multiplied where it lies,
//! 1.2–1.5× the rate of the whole weight on one thread at 50–77 rows (docs/clip.md). At
//! hundreds of rows the whole weight is faster (`gemm` then reads the input once for all
//! columns), so the whole weight stays and panels are made for a weight the first time it
//! meets few rows. A model that never runs so few rows per thread never holds them; a filter
//! worker at batch 32 makes them only for a shard's last batch, when that has at most two
//! images (one caption) per thread. For ViT-B/32 they take 493 MB.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use burn::backend::flex::FlexTensor;
use burn::tensor::{Bytes, Tensor, TensorPrimitive};

use super::backend::CpuBackend;

/// Output columns per panel: whole AVX-512 tiles of `gemm`'s `f32` kernels.
const PANEL: usize = 64;

/// A weight's panels, left to right.
pub(super) type Panels = Arc<[Tensor<CpuBackend, 2>]>;

/// Panels made so far, by the weight's storage (address and element offset). The storage is
/// held weakly: an entry whose weight is gone (a model dropped, weights reloaded) is removed
/// when the next weight's panels are made. Model weights are never written in place (loading
/// replaces the tensors), so panels stay equal to their weight.
static MADE: Mutex<Vec<Entry>> = Mutex::new(Vec::new());

struct Entry {
    source: Weak<Bytes>,
    offset: usize,
    panels: Panels,
}

/// The panels of `weight` (`[depth, width]`), made on first use, or `None` when it is not a
/// contiguous row-major matrix of whole panels (a transposed view, or an odd width).
pub(super) fn panels_of(weight: &Tensor<CpuBackend, 2>) -> Option<Panels> {
    let [depth, width] = weight.dims();
    let whole = weight.clone();
    let weight: FlexTensor = weight.clone().into_primitive().tensor();
    let (offset, _) = weight.layout().contiguous_offsets()?;
    if width % PANEL != 0 {
        return None;
    }
    let storage = weight.data_arc();
    let find = |made: &[Entry]| {
        // An entry's `Weak` keeps the storage's allocation, so no other storage can have its
        // address.
        made.iter()
            .find(|entry| entry.offset == offset && std::ptr::eq(entry.source.as_ptr(), Arc::as_ptr(&storage)))
            .map(|entry| Arc::clone(&entry.panels))
    };
    if let Some(panels) = find(&lock()) {
        return Some(panels);
    }
    // Made without the lock, so that other weights are found meanwhile; two threads that meet
    // the same new weight may both make it, and the first one's panels are kept.
    let panels: Panels = (0..width)
        .step_by(PANEL)
        .map(|first| {
            let view = whole.clone().slice([0..depth, first..first + PANEL]).into_primitive().tensor();
            Tensor::from_primitive(TensorPrimitive::Float(view.to_contiguous()))
        })
        .collect();
    let mut made = lock();
    if let Some(first) = find(&made) {
        return Some(first);
    }
    made.retain(|entry| entry.source.strong_count() > 0);
    made.push(Entry { source: Arc::downgrade(&storage), offset, panels: Arc::clone(&panels) });
    Some(panels)
}

/// The list of panels made so far. A poisoned lock only means that another thread panicked
/// while it held it; the list is intact.
fn lock() -> MutexGuard<'static, Vec<Entry>> {
    MADE.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    use crate::clip::model::backend::CpuDevice;

    #[test]
    fn panels_hold_the_weights_columns_and_are_made_once_per_weight() {
        let weight = Tensor::<CpuBackend, 2>::random([5, 3 * PANEL], Distribution::Normal(0.0, 1.0), &CpuDevice);
        let panels = panels_of(&weight).unwrap();
        assert_eq!(panels.len(), 3);
        for (i, panel) in panels.iter().enumerate() {
            assert!(panel.clone().into_primitive().tensor().layout().contiguous_offsets().is_some());
            let want = weight.clone().slice([0..5, i * PANEL..(i + 1) * PANEL]);
            panel.clone().into_data().assert_eq(&want.into_data(), true);
        }
        // The same weight (another handle on its storage) finds the same panels.
        let again = panels_of(&weight.clone()).unwrap();
        assert!(Arc::ptr_eq(&panels, &again));
        // Another weight of the same shape gets its own.
        let other = Tensor::<CpuBackend, 2>::random([5, 3 * PANEL], Distribution::Normal(0.0, 1.0), &CpuDevice);
        assert!(!Arc::ptr_eq(&panels, &panels_of(&other).unwrap()));
    }

    #[test]
    fn views_and_odd_widths_have_no_panels() {
        let square = Tensor::<CpuBackend, 2>::random([PANEL, PANEL], Distribution::Normal(0.0, 1.0), &CpuDevice);
        assert!(panels_of(&square.clone().transpose()).is_none());
        let odd = Tensor::<CpuBackend, 2>::random([4, PANEL + 8], Distribution::Normal(0.0, 1.0), &CpuDevice);
        assert!(panels_of(&odd).is_none());
    }
}
