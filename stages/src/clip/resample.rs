//! Pillow's bicubic resize of 8-bit images (`Image.resize(size, Image.BICUBIC)`, as
//! `libImaging/Resample.c` computes it), ported so that pixels match OpenAI's preprocessing
//! exactly rather than approximately: the same Keys cubic (a = -0.5) with support widened by
//! the scale when shrinking, the same 22-bit fixed-point coefficients and rounding, and the
//! same two passes (horizontal first) with an 8-bit image in between.

use image::RgbImage;

/// Fractional bits of the fixed-point coefficients (`PRECISION_BITS` in Pillow).
const PRECISION_BITS: u32 = 32 - 8 - 2;
/// The cubic's support radius.
const SUPPORT: f64 = 2.0;

fn bicubic(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

/// For each output position: the first input index and the fixed-point weights.
struct Coefficients {
    first: Vec<usize>,
    weights: Vec<Vec<i32>>,
}

/// `precompute_coeffs` followed by `normalize_coeffs_8bpc`.
fn coefficients(in_size: usize, out_size: usize) -> Coefficients {
    let scale = in_size as f64 / out_size as f64;
    let filter_scale = scale.max(1.0);
    let support = SUPPORT * filter_scale;
    let (mut first, mut weights) = (Vec::with_capacity(out_size), Vec::with_capacity(out_size));
    for xx in 0..out_size {
        let center = (xx as f64 + 0.5) * scale;
        // C's `(int)` truncates toward zero; negative starts are clamped to 0 anyway.
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
        let raw: Vec<f64> =
            (xmin..xmax).map(|x| bicubic((x as f64 - center + 0.5) / filter_scale)).collect();
        let total: f64 = raw.iter().sum();
        let fixed = raw
            .iter()
            .map(|&w| {
                let w = if total == 0.0 { w } else { w / total };
                let v = w * f64::from(1u32 << PRECISION_BITS);
                (if v < 0.0 { v - 0.5 } else { v + 0.5 }) as i32
            })
            .collect();
        first.push(xmin);
        weights.push(fixed);
    }
    Coefficients { first, weights }
}

/// `clip8`: from fixed point back to a byte, saturating.
fn clip8(acc: i64) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Resamples `src` (`src_w × src_h` RGB) along x to `dst_w` columns.
fn horizontal(src: &[u8], src_w: usize, src_h: usize, dst_w: usize) -> Vec<u8> {
    let c = coefficients(src_w, dst_w);
    let mut out = vec![0u8; dst_w * src_h * 3];
    for y in 0..src_h {
        let row = &src[y * src_w * 3..(y + 1) * src_w * 3];
        for (x, (start, weights)) in c.first.iter().zip(&c.weights).enumerate() {
            let mut acc = [1i64 << (PRECISION_BITS - 1); 3];
            for (k, &w) in weights.iter().enumerate() {
                let px = &row[(start + k) * 3..(start + k) * 3 + 3];
                for ch in 0..3 {
                    acc[ch] += i64::from(px[ch]) * i64::from(w);
                }
            }
            let o = (y * dst_w + x) * 3;
            for ch in 0..3 {
                out[o + ch] = clip8(acc[ch]);
            }
        }
    }
    out
}

/// Resamples `src` (`w × src_h` RGB) along y to `dst_h` rows.
fn vertical(src: &[u8], w: usize, src_h: usize, dst_h: usize) -> Vec<u8> {
    let c = coefficients(src_h, dst_h);
    let mut out = vec![0u8; w * dst_h * 3];
    for (y, (start, weights)) in c.first.iter().zip(&c.weights).enumerate() {
        for x in 0..w * 3 {
            let mut acc = 1i64 << (PRECISION_BITS - 1);
            for (k, &wt) in weights.iter().enumerate() {
                acc += i64::from(src[(start + k) * w * 3 + x]) * i64::from(wt);
            }
            out[y * w * 3 + x] = clip8(acc);
        }
    }
    out
}

/// Pillow's `img.resize((width, height), Image.BICUBIC)` for an RGB image.
#[must_use]
pub(crate) fn resize_bicubic(img: &RgbImage, width: u32, height: u32) -> RgbImage {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let (dw, dh) = (width as usize, height as usize);
    let mut data = img.as_raw().clone();
    if dw != w {
        data = horizontal(&data, w, h, dw);
    }
    if dh != h {
        data = vertical(&data, dw, h, dh);
    }
    // unwrap: the buffer length is width × height × 3 by construction.
    RgbImage::from_raw(width, height, data).unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_sum_to_one_in_fixed_point() {
        for (i, o) in [(300, 96), (40, 85), (61, 64), (7, 7)] {
            for w in coefficients(i, o).weights {
                let sum: i64 = w.iter().map(|&v| i64::from(v)).sum();
                assert!((sum - (1 << PRECISION_BITS)).abs() <= w.len() as i64, "{i}->{o}: {sum}");
            }
        }
    }

    #[test]
    fn flat_images_stay_flat() {
        let img = RgbImage::from_pixel(37, 23, image::Rgb([200, 7, 255]));
        let out = resize_bicubic(&img, 64, 101);
        assert!(out.pixels().all(|p| p.0 == [200, 7, 255]));
    }
}
