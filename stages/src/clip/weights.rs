//! Loading Hugging Face `CLIPModel` safetensors (`openai/clip-vit-base-patch32/model.safetensors`)
//! through burn-store, with the PyTorch→burn adapter (transposed `Linear` weights, LayerNorm
//! `weight`/`bias` as `gamma`/`beta`).
//!
//! Two CLIP-specific fixes on the way: HF's `pre_layrnorm` spelling is renamed to the
//! model's `pre_layernorm`, and 0-d tensors (`logit_scale`) become `[1]`. Half-precision
//! files are widened to f32. Loading is all or nothing: any parameter without a tensor of the
//! right shape fails with every such name listed.

use std::collections::HashSet;
use std::path::Path;
use std::rc::Rc;

use burn::tensor::backend::Backend;
use burn::tensor::DType;
use burn_store::{ApplyResult, ModuleAdapter, ModuleSnapshot, PyTorchToBurnAdapter, SafetensorsStore, TensorSnapshot};

use super::error::ClipError;
use super::model::ClipModel;

/// Buffers in HF checkpoints that are no parameter of the model.
const IGNORED_SUFFIXES: [&str; 1] = ["position_ids"];

/// Loads `path` into `model`, replacing every parameter.
///
/// # Errors
///
/// [`ClipError::WeightFile`] when the file cannot be read as safetensors,
/// [`ClipError::WeightMismatch`] listing every missing or ill-shaped tensor.
pub fn load_safetensors<B: Backend>(model: &mut ClipModel<B>, path: &Path) -> Result<(), ClipError> {
    if !path.is_file() {
        return Err(ClipError::Read { path: path.to_owned(), source: std::io::ErrorKind::NotFound.into() });
    }
    let result = apply(model, path)?;
    let unused = unused(&result);
    if !unused.is_empty() {
        tracing::warn!(file = %path.display(), ?unused, "Weight file tensors not used by the model.");
    }
    if result.missing.is_empty() && result.errors.is_empty() {
        tracing::debug!(file = %path.display(), tensors = result.applied.len(), "CLIP weights loaded.");
        return Ok(());
    }
    Err(ClipError::WeightMismatch {
        path: path.to_owned(),
        missing: result.missing.into_iter().map(|(name, _)| name).collect(),
        mismatched: result.errors.iter().map(ToString::to_string).collect(),
    })
}

/// Applies every tensor of `path` that fits, reporting what did not.
fn apply<B: Backend>(model: &mut ClipModel<B>, path: &Path) -> Result<ApplyResult, ClipError> {
    let mut store = SafetensorsStore::from_file(path)
        .with_from_adapter(WidenToF32.chain(PyTorchToBurnAdapter))
        .with_key_remapping(r"^vision_model\.pre_layrnorm\.", "vision_model.pre_layernorm.")
        .allow_partial(true)
        .validate(false);
    model.load_from(&mut store).map_err(|e| ClipError::WeightFile { path: path.to_owned(), message: e.to_string() })
}

/// File tensors that filled no parameter. burn-store lists a LayerNorm's `weight`/`bias` as
/// unused even when the adapter applied them as `gamma`/`beta`, so those are checked under
/// their burn names.
fn unused(result: &ApplyResult) -> Vec<&str> {
    let applied: HashSet<&str> = result.applied.iter().map(String::as_str).collect();
    result
        .unused
        .iter()
        .map(String::as_str)
        .filter(|name| !IGNORED_SUFFIXES.iter().any(|s| name.ends_with(s)))
        .filter(|name| {
            let burn_name = name.strip_suffix(".weight").map(|p| format!("{p}.gamma"))
                .or_else(|| name.strip_suffix(".bias").map(|p| format!("{p}.beta")));
            !burn_name.is_some_and(|n| applied.contains(n.as_str()))
        })
        .collect()
}

/// Widens half-precision and f64 floats to f32 and gives 0-d tensors the shape `[1]`.
#[derive(Debug, Clone, Copy)]
struct WidenToF32;

impl ModuleAdapter for WidenToF32 {
    fn adapt(&self, snapshot: &TensorSnapshot) -> TensorSnapshot {
        let widen = matches!(snapshot.dtype, DType::F16 | DType::BF16 | DType::F64);
        let scalar = snapshot.shape.num_dims() == 0;
        if !widen && !scalar {
            return snapshot.clone();
        }
        let shape: Vec<usize> = if scalar { vec![1] } else { snapshot.shape.to_vec() };
        let dtype = if widen { DType::F32 } else { snapshot.dtype };
        let source = snapshot.clone_data_fn();
        let target = shape.clone();
        let data_fn = Rc::new(move || {
            let mut data = source()?.convert_dtype(dtype);
            data.shape = target.clone().into();
            Ok(data)
        });
        TensorSnapshot::from_closure(
            data_fn,
            dtype,
            shape.into(),
            snapshot.path_stack.clone().unwrap_or_default(),
            snapshot.container_stack.clone().unwrap_or_default(),
            snapshot.tensor_id.unwrap_or_default(),
        )
    }

    fn clone_box(&self) -> Box<dyn ModuleAdapter> {
        Box::new(*self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_tensor_of_a_hugging_face_file_is_used() {
        let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/clip/fixtures/model");
        let config = crate::clip::ClipConfig::from_json_file(&dir.join("config.json")).unwrap();
        let mut model = ClipModel::<crate::clip::CpuBackend>::new(&config, &crate::clip::CpuDevice);
        let result = apply(&mut model, &dir.join("model.safetensors")).unwrap();
        assert!(result.missing.is_empty() && result.errors.is_empty(), "{result}");
        assert_eq!(unused(&result), Vec::<&str>::new());
        assert!((model.logit_scale() - 2.6592f32.exp()).abs() < 5e-2, "{}", model.logit_scale());
    }
}
