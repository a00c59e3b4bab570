//! The downloader's CPU hot path, one image: decode, resize to 256 (border mode), encode JPEG at
//! quality 95 — Cascade's `process_image` (zune-jpeg through `image`, SIMD `fast_image_resize`,
//! AVX2 `jpeg-encoder`) beside the same steps with the `image` crate alone (its decoders,
//! `imageops::resize` with Triangle down / Lanczos3 up, its JPEG encoder), on the real images of
//! the bundled 2008 archive.org crawl. img2dataset's own resizer (OpenCV) on the same images is
//! timed by `benches/image_resize_reference.py`; figures in docs/download.md.
#![allow(missing_docs)]

use std::io::Cursor;
use std::path::PathBuf;

use cascade_stages::download::{process_image, ImageOptions, ReplayServer};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use image::codecs::jpeg::JpegEncoder;
use image::imageops::FilterType;
use image::{DynamicImage, Rgb, RgbImage};

/// The crawl's images that img2dataset's checks accept.
fn archived_images() -> Vec<Vec<u8>> {
    let warc = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../stages/tests/data/warc/ia-archive-org-2008.warc.gz");
    let replay = ReplayServer::start(&[warc]).expect("replay index");
    let options = ImageOptions::default();
    replay
        .targets()
        .filter_map(|url| replay.payload(url))
        .filter(|bytes| process_image(bytes, &options).is_ok())
        .collect()
}

/// Border mode with the `image` crate alone.
fn image_crate_border(bytes: &[u8], size: u32) -> Vec<u8> {
    let decoded = image::load_from_memory(bytes).expect("decodable").to_rgb8();
    let (w, h) = decoded.dimensions();
    let scale = f64::from(size) / f64::from(w.max(h));
    let (nw, nh) = (((f64::from(w) * scale).round() as u32).max(1), ((f64::from(h) * scale).round() as u32).max(1));
    let filter = if w.max(h) > size { FilterType::Triangle } else { FilterType::Lanczos3 };
    let resized = image::imageops::resize(&decoded, nw, nh, filter);
    let mut canvas = RgbImage::from_pixel(size, size, Rgb([255, 255, 255]));
    image::imageops::overlay(&mut canvas, &resized, i64::from((size - nw) / 2), i64::from((size - nh) / 2));
    let mut out = Cursor::new(Vec::new());
    DynamicImage::ImageRgb8(canvas).write_with_encoder(JpegEncoder::new_with_quality(&mut out, 95)).expect("encodes");
    out.into_inner()
}

fn bench(c: &mut Criterion) {
    let images = archived_images();
    let bytes: u64 = images.iter().map(|i| i.len() as u64).sum();
    eprintln!("{} archived images, {} bytes", images.len(), bytes);
    let options = ImageOptions::default();
    let mut group = c.benchmark_group("download_image");
    group.throughput(Throughput::Elements(images.len() as u64));
    group.bench_function("cascade process_image", |b| {
        b.iter(|| images.iter().map(|i| process_image(i, &options).map_or(0, |p| p.jpeg.len())).sum::<usize>());
    });
    group.bench_function("image crate decode+resize+encode", |b| {
        b.iter(|| images.iter().map(|i| image_crate_border(i, 256).len()).sum::<usize>());
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
