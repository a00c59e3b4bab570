//! The downloader's CPU hot path, one image at a time on one thread: `process_image` (decode,
//! `border` resize to 256, JPEG quality 95, EXIF) on photo-like JPEGs, beside img2dataset's own
//! `Resizer` timed by `benches/image_resize_reference.py` on the same files (figures in
//! `docs/download.md`).
//!
//! The images are made here, deterministically, and written to `$DOWNLOAD_IMAGE_BENCH_DIR`
//! (default `target/download-image-bench`) for the Python script to read.
#![allow(missing_docs)]

use std::path::PathBuf;
use std::time::Duration;

use cascade_stages::download::{process_image, ImageOptions};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

/// The benchmark images: name, width, height. 1024×768 and 500×375 are typical LAION sources
/// (shrunk with `INTER_AREA`); 200×150 is enlarged (Lanczos-4).
const IMAGES: [(&str, u32, u32); 3] =
    [("photo_1024x768", 1024, 768), ("photo_500x375", 500, 375), ("photo_200x150", 200, 150)];

/// Photo-like content: smooth colour fields, a texture, hard edges and sensor noise, saved as a
/// quality-90 JPEG (4:2:0) — what a camera or a web CMS serves, unlike flat synthetic images
/// that compress to nothing.
fn photo(width: u32, height: u32) -> Vec<u8> {
    let mut state = 0x853c_49e6_748f_ea9bu64 ^ u64::from(width * height);
    let image = image::RgbImage::from_fn(width, height, |x, y| {
        let (fx, fy) = (x as f32, y as f32);
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let noise = (state % 25) as f32 - 12.0;
        let edge = if (x / 50 + y / 40) % 2 == 0 { 0.0 } else { 40.0 };
        let r = 128.0 + 100.0 * (fx / 37.0).sin() * (fy / 23.0).cos();
        let g = 255.0 * fx / width as f32;
        let b = 255.0 * fy / height as f32;
        let px = |v: f32| (v * 0.8 + edge + noise).clamp(0.0, 255.0) as u8;
        image::Rgb([px(r), px(g), px(b)])
    });
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90).encode_image(&image).expect("encode");
    out
}

fn bench(c: &mut Criterion) {
    let dir = std::env::var_os("DOWNLOAD_IMAGE_BENCH_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/download-image-bench"),
        PathBuf::from,
    );
    std::fs::create_dir_all(&dir).expect("bench image folder");
    let options = ImageOptions::default();
    let mut g = c.benchmark_group("download_image");
    g.throughput(Throughput::Elements(1));
    g.sample_size(50).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(5));
    for (name, width, height) in IMAGES {
        let jpeg = photo(width, height);
        std::fs::write(dir.join(format!("{name}.jpg")), &jpeg).expect("write bench image");
        let done = process_image(&jpeg, &options).expect("process");
        assert_eq!((done.width, done.height), (256, 256));
        g.bench_with_input(BenchmarkId::new("border_256", name), &jpeg, |b, jpeg| {
            b.iter(|| process_image(jpeg, &options).expect("process"))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
