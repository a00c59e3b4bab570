//! Image preprocessing exactly as OpenAI CLIP's `_transform` (torchvision on PIL images):
//! resize the short side to the model's input size with Pillow's bicubic filter (long side
//! `int(size * long / short)`), centre crop (offsets rounded half to even, as Python's
//! `round`), RGB, scale to [0, 1], normalise with CLIP's mean and std, channels first.
//!
//! Decoding uses the `image` crate. PNG pixels then match the reference exactly; JPEG
//! decoders may differ from libjpeg-turbo by a level or two (measured in `docs/clip.md`).
//! Images with alpha are flattened by dropping alpha before resizing, where Pillow resizes
//! premultiplied RGBA, and EXIF orientation is ignored, as in the reference.

use image::{imageops, RgbImage};
use rayon::prelude::*;

use super::resample::resize_bicubic;

/// CLIP's per-channel mean (RGB).
pub const MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
/// CLIP's per-channel standard deviation (RGB).
#[allow(clippy::excessive_precision)] // The published digits, rounded to f32 as torch does.
pub const STD: [f32; 3] = [0.268_629_54, 0.261_302_58, 0.275_777_11];

/// Decodes an image file (JPEG, PNG or WebP) to 8-bit RGB.
///
/// # Errors
///
/// The decoder's error for a corrupt, truncated or unsupported image.
pub fn decode_rgb(bytes: &[u8]) -> Result<RgbImage, image::ImageError> {
    Ok(image::load_from_memory(bytes)?.to_rgb8())
}

/// Resizes the short side to `size` and centre-crops to `size × size`, in 8 bits.
#[must_use]
pub fn resize_and_crop(img: &RgbImage, size: u32) -> RgbImage {
    let (w, h) = (img.width(), img.height());
    let (short, long) = if w <= h { (w, h) } else { (h, w) };
    let new_long = (f64::from(size) * f64::from(long) / f64::from(short)) as u32;
    let (nw, nh) = if w <= h { (size, new_long) } else { (new_long, size) };
    let resized = if (nw, nh) == (w, h) { img.clone() } else { resize_bicubic(img, nw, nh) };
    let top = (f64::from(nh - size) / 2.0).round_ties_even() as u32;
    let left = (f64::from(nw - size) / 2.0).round_ties_even() as u32;
    imageops::crop_imm(&resized, left, top, size, size).to_image()
}

/// Scales a square RGB crop to [0, 1] and normalises it: `[3, size, size]`, row-major.
#[must_use]
pub fn normalize(crop: &RgbImage) -> Vec<f32> {
    let plane = (crop.width() * crop.height()) as usize;
    let mut out = vec![0f32; 3 * plane];
    for (i, px) in crop.pixels().enumerate() {
        for ch in 0..3 {
            out[ch * plane + i] = (f32::from(px.0[ch]) / 255.0 - MEAN[ch]) / STD[ch];
        }
    }
    out
}

/// Decodes and preprocesses one image into the model's `[3, size, size]` input.
///
/// # Errors
///
/// The decoder's error; an image with a zero side is reported as a decoding error too.
pub fn preprocess_image(bytes: &[u8], size: u32) -> Result<Vec<f32>, image::ImageError> {
    let img = decode_rgb(bytes)?;
    if img.width() == 0 || img.height() == 0 {
        return Err(image::ImageError::Limits(image::error::LimitError::from_kind(
            image::error::LimitErrorKind::DimensionError,
        )));
    }
    Ok(normalize(&resize_and_crop(&img, size)))
}

/// [`preprocess_image`] over a batch, in parallel on `pool` (the current rayon pool when
/// `None`), results in input order.
pub fn preprocess_batch<B: AsRef<[u8]> + Sync>(
    pool: Option<&rayon::ThreadPool>,
    images: &[B],
    size: u32,
) -> Vec<Result<Vec<f32>, image::ImageError>> {
    let run = || images.par_iter().map(|b| preprocess_image(b.as_ref(), size)).collect();
    match pool {
        Some(pool) => pool.install(run),
        None => run(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crops_centre_with_python_rounding() {
        // 64 x 67: no resize; offset (67 - 64) / 2 = 1.5 rounds to 2 (half to even).
        let img = RgbImage::from_fn(64, 67, |_, y| image::Rgb([y as u8, 0, 0]));
        let crop = resize_and_crop(&img, 64);
        assert_eq!(crop.get_pixel(0, 0).0[0], 2);
        // 64 x 65: offset 0.5 rounds to 0.
        let img = RgbImage::from_fn(64, 65, |_, y| image::Rgb([y as u8, 0, 0]));
        assert_eq!(resize_and_crop(&img, 64).get_pixel(0, 0).0[0], 0);
    }

    #[test]
    fn normalises_channels_first() {
        let crop = RgbImage::from_pixel(2, 2, image::Rgb([255, 0, 128]));
        let t = normalize(&crop);
        assert_eq!(t.len(), 12);
        assert!((t[0] - (1.0 - MEAN[0]) / STD[0]).abs() < 1e-6);
        assert!((t[4] + MEAN[1] / STD[1]).abs() < 1e-6);
    }

    #[test]
    fn corrupt_images_are_errors() {
        assert!(preprocess_image(b"\xff\xd8\xff\xe0 not a jpeg", 224).is_err());
        assert!(preprocess_batch(None, &[b"garbage".as_slice()], 224)[0].is_err());
    }
}
