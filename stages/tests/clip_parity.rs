//! Parity with the Python reference (`tests/clip/make_fixtures.py`): tokenizer ids, Pillow
//! preprocessing, and image/text embeddings of a tiny random CLIP in Hugging Face's format.
#![cfg(feature = "clip")]

use std::path::{Path, PathBuf};

use cascade_stages::clip::{
    decode_rgb, normalize, resize_and_crop, ClipConfig, ClipError, ClipFilter, ClipModel, ClipTokenizer, CpuBackend,
    CpuDevice, ModelSettings, TokenBatch,
};
use safetensors::SafeTensors;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/clip/fixtures")
}

/// A reference tensor as f32 (f32 or i64 storage) or raw bytes (u8).
struct Reference {
    bytes: Vec<u8>,
}

impl Reference {
    fn open(dir: &Path) -> Self {
        Self { bytes: std::fs::read(dir.join("reference.safetensors")).expect("reference.safetensors") }
    }

    fn tensor(&self, name: &str) -> (Vec<usize>, Vec<u8>) {
        let st = SafeTensors::deserialize(&self.bytes).expect("safetensors");
        let t = st.tensor(name).expect(name);
        (t.shape().to_vec(), t.data().to_vec())
    }

    fn f32s(&self, name: &str) -> (Vec<usize>, Vec<f32>) {
        let (shape, data) = self.tensor(name);
        (shape, data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())
    }

    fn i64s(&self, name: &str) -> (Vec<usize>, Vec<i64>) {
        let (shape, data) = self.tensor(name);
        (shape, data.chunks_exact(8).map(|b| i64::from_le_bytes(b.try_into().unwrap())).collect())
    }
}

fn tokens_json(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join("tokens.json")).expect("tokens.json")).expect("json")
}

fn load(dir: &Path) -> ClipFilter {
    let settings = ModelSettings {
        weights: dir.join("model/model.safetensors").into(),
        config: Some(dir.join("model/config.json")),
        ..ModelSettings::default()
    };
    ClipFilter::load(&settings).expect("load model")
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// The crops Pillow made, and the same crops made here; returns (per-image max level
/// difference, our crops as normalised pixels).
fn crops(dir: &Path, reference: &Reference) -> (Vec<(String, u8)>, Vec<f32>, Vec<f32>) {
    let (shape, expected) = reference.tensor("pixels_u8");
    let side = shape[1];
    let names = tokens_json(dir)["images"].as_array().unwrap().clone();
    let (mut diffs, mut ours, mut theirs) = (Vec::new(), Vec::new(), Vec::new());
    for (i, name) in names.iter().enumerate() {
        let name = name.as_str().unwrap();
        let img = decode_rgb(&std::fs::read(dir.join("images").join(name)).unwrap()).unwrap();
        let crop = resize_and_crop(&img, side as u32);
        let want = &expected[i * side * side * 3..(i + 1) * side * side * 3];
        let diff = crop.as_raw().iter().zip(want).map(|(a, b)| a.abs_diff(*b)).max().unwrap();
        diffs.push((name.to_owned(), diff));
        ours.extend(normalize(&crop));
        theirs.extend(normalize(&image::RgbImage::from_raw(side as u32, side as u32, want.to_vec()).unwrap()));
    }
    (diffs, ours, theirs)
}

fn check_embeddings(dir: &Path, tolerance: f32) {
    let reference = Reference::open(dir);
    let filter = load(dir);
    let (_, _, pixels) = crops(dir, &reference);
    let (shape, want) = reference.f32s("image_embeds");
    let got = filter.embed_pixels(pixels, shape[0]);
    let image_err = max_abs_diff(&got, &want);

    let (shape, ids) = reference.i64s("text_ids");
    let (rows, context) = (shape[0], shape[1]);
    let ids: Vec<u32> = ids.iter().map(|&i| i as u32).collect();
    let eot = ids.chunks_exact(context).map(|row| row.iter().position(|&t| t == 49407).unwrap()).collect();
    let batch = TokenBatch { ids, eot, context_length: context };
    let (_, want) = reference.f32s("text_embeds");
    let got = filter.embed_tokens(&batch);
    assert_eq!(got.len(), want.len(), "{rows} rows");
    let text_err = max_abs_diff(&got, &want);
    eprintln!("{}: max |Δ| image embeddings {image_err:.3e}, text embeddings {text_err:.3e}", dir.display());
    assert!(image_err <= tolerance && text_err <= tolerance, "image {image_err}, text {text_err}");
}

#[test]
fn tokenizer_ids_match_openai() {
    let tokens = tokens_json(&fixtures());
    let tokenizer = ClipTokenizer::new(77);
    let captions = tokens["captions"].as_array().unwrap();
    let ids = tokens["ids"].as_array().unwrap();
    assert!(captions.len() >= 15);
    for (caption, want) in captions.iter().zip(ids) {
        let want: Vec<u32> = want.as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
        assert_eq!(tokenizer.encode(caption.as_str().unwrap()), want, "caption {caption}");
    }
}

#[test]
fn preprocessing_matches_pillow() {
    let dir = fixtures();
    let (diffs, ours, theirs) = crops(&dir, &Reference::open(&dir));
    eprintln!("max level difference per image: {diffs:?}");
    for (name, diff) in &diffs {
        // PNG: same pixels in, so Pillow's resize must be reproduced exactly. JPEG: the
        // decoders (image/zune-jpeg vs libjpeg-turbo) may differ by a few levels.
        let allowed = if name.ends_with(".png") { 0 } else { 6 };
        assert!(*diff <= allowed, "{name}: {diff} levels off");
    }
    eprintln!("max |Δ| normalised pixels: {:.3e}", max_abs_diff(&ours, &theirs));
}

#[test]
fn embeddings_match_transformers() {
    check_embeddings(&fixtures(), 1e-4);
}

#[test]
fn ill_fitting_weights_are_an_error_listing_names() {
    let dir = fixtures();
    let mut config = ClipConfig::from_json_file(&dir.join("model/config.json")).unwrap();
    config.text_config.num_hidden_layers = 3;
    config.vision_config.intermediate_size = 48;
    let mut model = ClipModel::<CpuBackend>::new(&config, &CpuDevice);
    let err = cascade_stages::clip::load_safetensors(&mut model, &dir.join("model/model.safetensors")).unwrap_err();
    let ClipError::WeightMismatch { missing, mismatched, .. } = &err else { panic!("{err}") };
    assert!(missing.iter().any(|m| m.starts_with("text_model.encoder.layers.2.")), "{missing:?}");
    assert!(mismatched.iter().any(|m| m.contains("vision_model.encoder.layers.0.mlp.fc1")), "{mismatched:?}");
    assert!(err.to_string().contains("text_model.encoder.layers.2.self_attn.q_proj.weight"), "{err}");
}

/// Full-size ViT-B/32 with random weights: `make_fixtures.py full DIR`, then
/// `CLIP_FULL_FIXTURES=DIR cargo test -p cascade-stages --features clip --release -- --ignored`.
#[test]
#[ignore = "needs CLIP_FULL_FIXTURES (about 600 MB, made by make_fixtures.py full)"]
fn full_size_embeddings_match_transformers() {
    let dir = PathBuf::from(std::env::var_os("CLIP_FULL_FIXTURES").expect("CLIP_FULL_FIXTURES"));
    let (diffs, _, _) = crops(&dir, &Reference::open(&dir));
    eprintln!("224 px crops, max level difference per image: {diffs:?}");
    check_embeddings(&dir, 1e-3);
}
