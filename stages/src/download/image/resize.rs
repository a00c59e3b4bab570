//! img2dataset's resize modes on [`Pixels`]: albumentations' `SmallestMaxSize` /
//! `LongestMaxSize` sizes (`max(1, round(side * scale))`, Python's ties-to-even `round`),
//! `CenterCrop` (offsets `(size - crop) // 2`) and `PadIfNeeded` with white (the odd pixel at
//! the bottom/right), resampled by `fast_image_resize`'s SIMD convolution.
//!
//! Shrinking uses OpenCV's `INTER_AREA` weights exactly (each source pixel weighted by how much
//! of it the destination pixel covers) on 8-bit samples, rounding once more than OpenCV between
//! the vertical and horizontal passes (at most 1 level apart). Enlarging uses `INTER_LANCZOS4`'s
//! 8-tap kernel on 32-bit floats over a source with its edge pixels repeated, as OpenCV's
//! replicated border: its lobes overshoot, and 8-bit intermediates would clip them. Centre
//! crops resample only the kept part, and `border` shrinks straight into the white canvas.

use std::cell::{Cell, RefCell};

use fast_image_resize::images::{CroppedImageMut, Image, ImageRef};
use fast_image_resize::{Filter, FilterType, IntoImageViewMut, PixelType, ResizeAlg, ResizeOptions, Resizer};

use super::decode::{Channels, Pixels};
use super::{ImageFailure, ImageOptions, ResizeMode};

/// A rectangle in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Rect {
    pub(super) left: u32,
    pub(super) top: u32,
    pub(super) width: u32,
    pub(super) height: u32,
}

/// The resampling filter, after img2dataset's `downscale` test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kernel {
    /// `cv2.INTER_AREA`.
    Area,
    /// `cv2.INTER_LANCZOS4`.
    Lanczos4,
}

/// What img2dataset does to an image of a given size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Plan {
    /// The whole image's size after scaling.
    pub(super) scaled: (u32, u32),
    /// The part of the scaled image kept (`center_crop`), else all of it.
    pub(super) keep: Rect,
    /// The white canvas's size and where the kept part goes on it (`border`).
    pub(super) canvas: Option<((u32, u32), (u32, u32))>,
    pub(super) kernel: Kernel,
}

impl Plan {
    /// Width and height of the result.
    pub(super) fn output_size(&self) -> (u32, u32) {
        self.canvas.map_or((self.keep.width, self.keep.height), |(size, _)| size)
    }
}

/// img2dataset's resize branch for a `width`×`height` image; `None` when it does not resize
/// (mode `no`, or `resize_only_if_bigger` with nothing to shrink).
pub(super) fn plan(width: u32, height: u32, options: &ImageOptions) -> Option<Plan> {
    let size = options.image_size.max(1);
    let side = match options.resize_mode {
        ResizeMode::No => return None,
        ResizeMode::KeepRatio | ResizeMode::CenterCrop => width.min(height),
        ResizeMode::Border | ResizeMode::KeepRatioLargest => width.max(height),
    };
    let downscale = side > size;
    if options.resize_only_if_bigger && !downscale {
        return None;
    }
    let scale = f64::from(size) / f64::from(side);
    let scaled = |dim: u32| ((f64::from(dim) * scale).round_ties_even() as u32).max(1);
    let (sw, sh) = (scaled(width), scaled(height));
    let mut keep = Rect { left: 0, top: 0, width: sw, height: sh };
    let mut canvas = None;
    match options.resize_mode {
        ResizeMode::CenterCrop => {
            let (cw, ch) = (size.min(sw), size.min(sh));
            keep = Rect { left: (sw - cw) / 2, top: (sh - ch) / 2, width: cw, height: ch };
        }
        ResizeMode::Border => {
            let (cw, ch) = (size.max(sw), size.max(sh));
            canvas = Some(((cw, ch), ((cw - sw) / 2, (ch - sh) / 2)));
        }
        _ => {}
    }
    Some(Plan { scaled: (sw, sh), keep, canvas, kernel: if downscale { Kernel::Area } else { Kernel::Lanczos4 } })
}

/// Carries out `plan` on `pixels`.
pub(super) fn apply(pixels: Pixels, plan: &Plan) -> Result<Pixels, ImageFailure> {
    let channels = usize::from(pixels.channels as u8);
    let pixel_type = if pixels.channels == Channels::Grey { PixelType::U8 } else { PixelType::U8x3 };
    let (out_width, out_height) = plan.output_size();
    let keep = plan.keep;
    let unscaled = plan.scaled == (pixels.width, pixels.height);
    if unscaled && plan.canvas.is_none() && (keep.width, keep.height) == plan.scaled {
        return Ok(pixels);
    }
    let mut out = match plan.canvas {
        Some(_) => vec![255u8; out_width as usize * out_height as usize * channels],
        None => Vec::new(),
    };
    let (left, top) = plan.canvas.map_or((0, 0), |(_, offset)| offset);
    if unscaled {
        // Only cropping or padding: copy the kept rows.
        if out.is_empty() {
            out = vec![0u8; out_width as usize * out_height as usize * channels];
        }
        let src_stride = pixels.width as usize * channels;
        let dst_stride = out_width as usize * channels;
        let row_len = keep.width as usize * channels;
        for row in 0..keep.height as usize {
            let src = (keep.top as usize + row) * src_stride + keep.left as usize * channels;
            let dst = (top as usize + row) * dst_stride + left as usize * channels;
            out[dst..dst + row_len].copy_from_slice(&pixels.data[src..src + row_len]);
        }
        return Ok(Pixels { width: out_width, height: out_height, channels: pixels.channels, data: out });
    }
    let failed = |e: &dyn std::fmt::Display| ImageFailure::Encode(format!("resize: {e}"));
    let src = ImageRef::new(pixels.width, pixels.height, &pixels.data, pixel_type).map_err(|e| failed(&e))?;
    // The kept part of the scaled image, in source pixels.
    let (sx, sy) =
        (f64::from(pixels.width) / f64::from(plan.scaled.0), f64::from(pixels.height) / f64::from(plan.scaled.1));
    let region_left = f64::from(keep.left) * sx;
    let region_top = f64::from(keep.top) * sy;
    let region = SrcRegion {
        left: region_left,
        top: region_top,
        width: (f64::from(keep.width) * sx).min(f64::from(pixels.width) - region_left),
        height: (f64::from(keep.height) * sy).min(f64::from(pixels.height) - region_top),
    };
    if plan.kernel == Kernel::Lanczos4 {
        let block = enlarge(&pixels, region, keep.width, keep.height)?;
        if out.is_empty() {
            return Ok(Pixels { width: out_width, height: out_height, channels: pixels.channels, data: block });
        }
        let (dst_stride, row_len) = (out_width as usize * channels, keep.width as usize * channels);
        for (row, src) in block.chunks_exact(row_len).enumerate() {
            let dst = (top as usize + row) * dst_stride + left as usize * channels;
            out[dst..dst + row_len].copy_from_slice(src);
        }
        return Ok(Pixels { width: out_width, height: out_height, channels: pixels.channels, data: out });
    }
    let result = if plan.canvas.is_some() {
        let mut canvas = Image::from_vec_u8(out_width, out_height, out, pixel_type).map_err(|e| failed(&e))?;
        {
            let mut view =
                CroppedImageMut::new(&mut canvas, left, top, keep.width, keep.height).map_err(|e| failed(&e))?;
            shrink(&src, region, &mut view).map_err(|e| failed(&e))?;
        }
        canvas.into_vec()
    } else {
        let mut dst = Image::new(keep.width, keep.height, pixel_type);
        shrink(&src, region, &mut dst).map_err(|e| failed(&e))?;
        dst.into_vec()
    };
    Ok(Pixels { width: out_width, height: out_height, channels: pixels.channels, data: result })
}

/// A region of the source image in (fractional) pixels.
#[derive(Debug, Clone, Copy)]
struct SrcRegion {
    left: f64,
    top: f64,
    width: f64,
    height: f64,
}

thread_local! {
    /// One resizer per thread keeps its work buffers between images.
    static RESIZER: RefCell<Resizer> = RefCell::new(Resizer::new());
    /// The float source and destination of [`enlarge`], kept between images.
    static FLOATS: Cell<(Vec<u8>, Vec<u8>)> = const { Cell::new((Vec::new(), Vec::new())) };
    /// The scale (source pixels per destination pixel, at least 1) that [`area_weight`] is
    /// computing weights for.
    static AREA_SCALE: Cell<f64> = const { Cell::new(1.0) };
}

/// `cv2.INTER_AREA`'s weight of a source pixel whose centre is `t` destination pixels from the
/// destination pixel's centre: the length of `[d - ½, d + ½]` inside `[-s/2, s/2]`, `d = t·s`
/// source pixels. `fast_image_resize` gives a filter only `t`, so the scale `s` of the pass
/// being set up comes from [`AREA_SCALE`]; weights are computed on the calling thread before
/// any pixel is touched, and each pass changes one axis only, so one scale is exact.
fn area_weight(t: f64) -> f64 {
    let scale = AREA_SCALE.with(Cell::get);
    let d = t * scale;
    ((d + 0.5).min(scale / 2.0) - (d - 0.5).max(-scale / 2.0)).max(0.0)
}

/// `cv2.INTER_LANCZOS4`'s kernel, `sinc(x)·sinc(x/4)` on `[-4, 4]`, with one `sin_cos`:
/// `sin(πx) = sin 4θ = 4 sin θ cos θ (cos²θ − sin²θ)` for `θ = πx/4`.
fn lanczos4(x: f64) -> f64 {
    if x == 0.0 {
        return 1.0;
    }
    if !(-4.0..4.0).contains(&x) {
        return 0.0;
    }
    let theta = x * std::f64::consts::FRAC_PI_4;
    let (s, c) = theta.sin_cos();
    let sin_pi_x = 4.0 * s * c * (c * c - s * s);
    sin_pi_x * s / (4.0 * theta * theta)
}

/// The resize options for `region` with `filter`.
fn crop(region: SrcRegion, filter: FilterType) -> ResizeOptions {
    ResizeOptions::new().resize_alg(ResizeAlg::Convolution(filter)).crop(
        region.left,
        region.top,
        region.width,
        region.height,
    )
}

/// Source pixels repeated past each edge for the Lanczos kernel (its 8 taps reach 4 pixels out).
const EDGE: u32 = 4;

/// `region` of `pixels` enlarged to `width`×`height` with `INTER_LANCZOS4`: in 32-bit floats,
/// over a copy of the source with [`EDGE`] pixels repeated around it, rounded to 8 bits once
/// (half up, as OpenCV's fixed point). The float buffers are kept per thread between images.
fn enlarge(pixels: &Pixels, region: SrcRegion, width: u32, height: u32) -> Result<Vec<u8>, ImageFailure> {
    let failed = |e: &dyn std::fmt::Display| ImageFailure::Encode(format!("resize: {e}"));
    let channels = usize::from(pixels.channels as u8);
    let (w, h) = (pixels.width as usize, pixels.height as usize);
    let (pw, ph) = (w + 2 * EDGE as usize, h + 2 * EDGE as usize);
    let pixel_type = if pixels.channels == Channels::Grey { PixelType::F32 } else { PixelType::F32x3 };
    let (mut src_buffer, mut dst_buffer) = FLOATS.take();
    src_buffer.resize(pw * ph * channels * 4, 0);
    dst_buffer.resize(width as usize * height as usize * channels * 4, 0);
    let edge = EDGE as usize * channels;
    for (y, out) in src_buffer.chunks_exact_mut(pw * channels * 4).enumerate() {
        let row = &pixels.data[y.saturating_sub(EDGE as usize).min(h - 1) * w * channels..][..w * channels];
        let (left, rest) = out.split_at_mut(edge * 4);
        let (middle, right) = rest.split_at_mut(w * channels * 4);
        for (sample, &value) in middle.chunks_exact_mut(4).zip(row) {
            sample.copy_from_slice(&f32::from(value).to_ne_bytes());
        }
        for (side, pixel) in [(left, &row[..channels]), (right, &row[(w - 1) * channels..])] {
            for (sample, &value) in side.chunks_exact_mut(4).zip(pixel.iter().cycle()) {
                sample.copy_from_slice(&f32::from(value).to_ne_bytes());
            }
        }
    }
    let src = float_image(src_buffer, pw as u32, ph as u32, pixel_type).map_err(|e| failed(&e))?;
    let mut dst = float_image(dst_buffer, width, height, pixel_type).map_err(|e| failed(&e))?;
    let region = SrcRegion { left: region.left + f64::from(EDGE), top: region.top + f64::from(EDGE), ..region };
    // unwrap: the support is finite and positive.
    let lanczos = FilterType::Custom(Filter::new("lanczos4", lanczos4, 4.0).unwrap());
    RESIZER
        .with(|resizer| resizer.borrow_mut().resize(&src, &mut dst, &crop(region, lanczos)))
        .map_err(|e| failed(&e))?;
    // `as u8` saturates: negative overshoot to 0, positive to 255.
    let mut out = vec![0u8; width as usize * height as usize * channels];
    for (value, b) in out.iter_mut().zip(dst.buffer().chunks_exact(4)) {
        *value = (f32::from_ne_bytes([b[0], b[1], b[2], b[3]]) + 0.5) as u8;
    }
    FLOATS.set((src.into_vec(), dst.into_vec()));
    Ok(out)
}

/// An `f32` image over `buffer`, or over a copy of it if the allocator did not align it for
/// `f32`.
fn float_image(
    buffer: Vec<u8>,
    width: u32,
    height: u32,
    pixel_type: PixelType,
) -> Result<Image<'static>, fast_image_resize::ImageBufferError> {
    if buffer.as_ptr().align_offset(4) == 0 {
        return Image::from_vec_u8(width, height, buffer, pixel_type);
    }
    let mut image = Image::new(width, height, pixel_type);
    image.buffer_mut().copy_from_slice(&buffer);
    Ok(image)
}

/// Shrinks `region` of `src` to the whole of `dst` with `INTER_AREA` weights.
fn shrink(
    src: &ImageRef<'_>,
    region: SrcRegion,
    dst: &mut impl IntoImageViewMut,
) -> Result<(), fast_image_resize::ResizeError> {
    // unwrap: the support is finite and positive.
    let area = FilterType::Custom(Filter::new("area", area_weight, 1.0).unwrap());
    let (dst_width, dst_height) = (f64::from(dst.width()), f64::from(dst.height()));
    RESIZER.with(|resizer| {
        let mut resizer = resizer.borrow_mut();
        let vertical = dst_height != region.height || region.top.fract() != 0.0;
        let horizontal = dst_width != region.width || region.left.fract() != 0.0;
        if !(vertical && horizontal) {
            AREA_SCALE.set(if vertical { region.height / dst_height } else { region.width / dst_width }.max(1.0));
            return resizer.resize(src, dst, &crop(region, area));
        }
        // Vertical pass over the columns the horizontal one reads, then the horizontal pass.
        let first = region.left.floor();
        let last = (region.left + region.width).ceil().min(f64::from(src.width()));
        let mut temp = Image::new((last - first) as u32, dst.height(), src.pixel_type());
        AREA_SCALE.set((region.height / dst_height).max(1.0));
        resizer.resize(src, &mut temp, &crop(SrcRegion { left: first, width: last - first, ..region }, area))?;
        AREA_SCALE.set((region.width / dst_width).max(1.0));
        let left = region.left - first;
        let region = SrcRegion { left, top: 0.0, width: region.width.min(last - first - left), height: dst_height };
        resizer.resize(&temp, dst, &crop(region, area))
    })
}
