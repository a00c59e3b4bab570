//! CLIP ViT-B/32 embedding throughput on burn's CPU backend: images/s and captions/s at
//! several batch sizes, plus image decoding and preprocessing, beside PyTorch on the same machine (`benches/clip_torch.py`, same
//! thread count; figures in `docs/clip.md`).
//!
//! Weights: `$CLIP_WEIGHTS` (a Hugging Face `model.safetensors`, e.g. the random full-size one
//! `stages/tests/clip/make_fixtures.py full DIR` writes), otherwise zeros (the same work).
//! Batch sizes: `$CLIP_BENCH_BATCHES` (comma-separated, default `1,32,256`). Threads: rayon's
//! (`RAYON_NUM_THREADS`).
#![allow(missing_docs)]

use std::time::Duration;

use burn::tensor::{Int, Tensor, TensorData};
use cascade_stages::clip::{
    load_safetensors, preprocess_batch, preprocess_image, ClipConfig, ClipModel, ClipTokenizer, CpuBackend, CpuDevice,
};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

type B = CpuBackend;

const CAPTION: &str = "A photograph of a red vintage car parked on a cobblestone street in the old town at sunset";

fn model(config: &ClipConfig) -> ClipModel<B> {
    let mut model = ClipModel::<B>::new(config, &CpuDevice);
    if let Some(path) = std::env::var_os("CLIP_WEIGHTS") {
        load_safetensors(&mut model, path.as_ref()).expect("CLIP_WEIGHTS");
    }
    model
}

fn batches() -> Vec<usize> {
    std::env::var("CLIP_BENCH_BATCHES")
        .unwrap_or_else(|_| "1,32,256".into())
        .split(',')
        .map(|b| b.trim().parse().expect("batch size"))
        .collect()
}

/// A 640×480 JPEG (quality 75), the size class of img2dataset's resized downloads.
fn test_image() -> Vec<u8> {
    let img = image::RgbImage::from_fn(640, 480, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, ((x * y / 7 + x + y) % 256) as u8])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Jpeg).expect("encode");
    out.into_inner()
}

fn bench(c: &mut Criterion) {
    let config = ClipConfig::vit_b_32();
    let model = model(&config);
    let device = CpuDevice;
    let side = config.vision_config.image_size;
    let pixels = preprocess_image(&test_image(), side as u32).expect("preprocess");
    let tokenizer = ClipTokenizer::new(77);

    // Decode + Pillow-exact resize + crop + normalise, 32 images on the rayon pool.
    let jpeg = test_image();
    let images = vec![jpeg.as_slice(); 32];
    let mut g = c.benchmark_group("clip_preprocess");
    g.throughput(Throughput::Elements(32));
    g.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(10));
    g.bench_function("jpeg_640x480_batch_32", |b| {
        b.iter(|| assert!(preprocess_batch(None, &images, side as u32).iter().all(Result::is_ok)))
    });
    g.finish();

    let mut g = c.benchmark_group("clip_images");
    for &batch in &batches() {
        let input: Vec<f32> = pixels.iter().copied().cycle().take(batch * pixels.len()).collect();
        g.throughput(Throughput::Elements(batch as u64));
        g.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(if batch > 32 {
            60
        } else {
            15
        }));
        g.bench_with_input(BenchmarkId::from_parameter(batch), &batch, |b, &batch| {
            b.iter(|| {
                let t = Tensor::<B, 4>::from_data(TensorData::new(input.clone(), [batch, 3, side, side]), &device);
                model.encode_image(t).into_data()
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("clip_captions");
    for &batch in &batches() {
        let captions = vec![CAPTION; batch];
        g.throughput(Throughput::Elements(batch as u64));
        g.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(15));
        g.bench_with_input(BenchmarkId::from_parameter(batch), &batch, |b, &batch| {
            b.iter(|| {
                let tokens = tokenizer.encode_batch(&captions);
                let ids: Vec<i64> = tokens.ids.iter().map(|&t| i64::from(t)).collect();
                let ids = Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [batch, 77]), &device);
                model.encode_text(ids, &tokens.eot).into_data()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
