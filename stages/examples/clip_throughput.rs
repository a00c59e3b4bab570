//! Times the CLIP encoders on the CPU backend, for profiling without the criterion harness:
//! `clip_throughput [images|captions] [BATCH] [CALLS]` (defaults: images, 32, 3).
//!
//! Weights from `$CLIP_WEIGHTS` (a Hugging Face `model.safetensors`), otherwise zeros (the same
//! arithmetic). Threads: rayon's (`RAYON_NUM_THREADS`). Prints the time of each call after one
//! warm-up call, and the rate of the fastest.

use std::time::Instant;

use burn::tensor::{Int, Tensor, TensorData};
use cascade_stages::clip::{load_safetensors, ClipConfig, ClipModel, ClipTokenizer, CpuBackend, CpuDevice};

/// The `cascade` binary's allocator, so that the figures are those of its CLIP filter.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const CAPTION: &str = "A photograph of a red vintage car parked on a cobblestone street in the old town at sunset";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let what = args.next().unwrap_or_else(|| "images".into());
    let batch: usize = args.next().map_or(Ok(32), |b| b.parse())?;
    let calls: usize = args.next().map_or(Ok(3), |c| c.parse())?;
    let config = ClipConfig::vit_b_32();
    let mut model = ClipModel::<CpuBackend>::new(&config, &CpuDevice);
    if let Some(path) = std::env::var_os("CLIP_WEIGHTS") {
        load_safetensors(&mut model, path.as_ref())?;
    }
    let side = config.vision_config.image_size;
    let tokens = ClipTokenizer::new(config.text_config.max_position_embeddings).encode_batch(&vec![CAPTION; batch]);
    let run = || match what.as_str() {
        "captions" => {
            let ids: Vec<i64> = tokens.ids.iter().map(|&t| i64::from(t)).collect();
            let ids = TensorData::new(ids, [batch, tokens.context_length]);
            model.encode_text(Tensor::<CpuBackend, 2, Int>::from_data(ids, &CpuDevice), &tokens.eot).into_data()
        }
        _ => {
            let pixels: Vec<f32> = (0..batch * 3 * side * side).map(|i| ((i % 251) as f32 - 125.0) / 60.0).collect();
            let pixels = TensorData::new(pixels, [batch, 3, side, side]);
            model.encode_image(Tensor::<CpuBackend, 4>::from_data(pixels, &CpuDevice)).into_data()
        }
    };
    run();
    let mut best = f64::INFINITY;
    for _ in 0..calls {
        let start = Instant::now();
        run();
        let secs = start.elapsed().as_secs_f64();
        best = best.min(secs);
        println!("{what} batch {batch}: {:.1} ms", secs * 1e3);
    }
    println!("{what} batch {batch}: {:.2}/s (fastest call)", batch as f64 / best);
    Ok(())
}
