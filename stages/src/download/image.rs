//! One downloaded image through img2dataset 1.47's `Resizer`: decode (with a pixel limit checked
//! from the header, against decompression bombs), composite alpha on white, its size checks,
//! its resize modes with its rounding and padding, and JPEG encoding — SIMD resizing
//! (`fast_image_resize`) and an AVX2 JPEG encoder (`jpeg-encoder`), since this is the
//! downloader's CPU hot path.

use std::io::Cursor;

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::{DynamicImage, ImageFormat, ImageReader, Limits};
use serde::Deserialize;

use super::exif::exif_json;

/// img2dataset's resize modes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResizeMode {
    /// Keep the size (the image is still re-encoded).
    No,
    /// Longest side to `image-size`, then white padding to a square.
    #[default]
    Border,
    /// Shortest side to `image-size`.
    KeepRatio,
    /// Longest side to `image-size`.
    KeepRatioLargest,
    /// Shortest side to `image-size`, then the centred square.
    CenterCrop,
}

/// Decoding, checks, resizing and encoding (`[stages.b.settings.image]`); img2dataset's
/// defaults plus a decode limit.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct ImageOptions {
    /// Target size in pixels.
    pub image_size: u32,
    /// How to reach it.
    pub resize_mode: ResizeMode,
    /// Leave images that are already small enough at their size.
    pub resize_only_if_bigger: bool,
    /// Images whose shorter side is smaller fail (`image too small`).
    pub min_image_size: u32,
    /// Images of more pixels fail (`image area too large`).
    pub max_image_area: Option<u64>,
    /// Images whose long/short side ratio is larger fail (`aspect ratio too large`).
    pub max_aspect_ratio: Option<f64>,
    /// Images declaring more pixels fail before any pixel is decoded.
    pub max_pixels: u64,
    /// JPEG quality of the output.
    pub jpeg_quality: u8,
    /// Accepted input formats (`jpeg`, `png`, `webp`, `gif`, `bmp`, `tiff`).
    pub formats: Vec<String>,
    /// Fill the `exif` field.
    pub extract_exif: bool,
}

impl Default for ImageOptions {
    fn default() -> Self {
        Self {
            image_size: 256,
            resize_mode: ResizeMode::Border,
            resize_only_if_bigger: false,
            min_image_size: 0,
            max_image_area: None,
            max_aspect_ratio: None,
            max_pixels: 89_478_484,
            jpeg_quality: 95,
            formats: ["jpeg", "png", "webp", "gif", "bmp", "tiff"].map(String::from).to_vec(),
            extract_exif: true,
        }
    }
}

/// A processed image: its JPEG and what the metadata records about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessedImage {
    /// The encoded output.
    pub jpeg: Vec<u8>,
    /// Width after resizing.
    pub width: u32,
    /// Height after resizing.
    pub height: u32,
    /// Decoded width.
    pub original_width: u32,
    /// Decoded height.
    pub original_height: u32,
    /// The EXIF tags as a JSON object (`"{}"` when none); `None` when not extracted.
    pub exif: Option<String>,
}

/// Why an image was refused; the message is img2dataset's where the cause is the same.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageFailure {
    /// Not an image, or a damaged one.
    #[error("Image decoding error")]
    Decode,
    /// A format outside `formats`.
    #[error("image format {0} is not accepted")]
    Format(String),
    /// More pixels than `max-pixels` (a decompression bomb, say).
    #[error("image of {width}x{height} pixels is over the {limit}-pixel limit")]
    TooManyPixels {
        /// Declared width.
        width: u32,
        /// Declared height.
        height: u32,
        /// The limit.
        limit: u64,
    },
    /// Shorter side under `min-image-size`.
    #[error("image too small")]
    TooSmall,
    /// More pixels than `max-image-area`.
    #[error("image area too large")]
    AreaTooLarge,
    /// Side ratio over `max-aspect-ratio`.
    #[error("aspect ratio too large")]
    AspectRatioTooLarge,
    /// The output cannot be made (a side over 65,535 pixels for JPEG, say).
    #[error("cannot encode the image: {0}")]
    Encode(String),
}

/// Decodes, checks, resizes and encodes one downloaded image.
///
/// # Errors
/// [`ImageFailure`].
pub fn process_image(bytes: &[u8], options: &ImageOptions) -> Result<ProcessedImage, ImageFailure> {
    let format = image::guess_format(bytes).map_err(|_| ImageFailure::Decode)?;
    let name = format_name(format);
    if !options.formats.iter().any(|f| f.eq_ignore_ascii_case(name) || (name == "jpeg" && f.eq_ignore_ascii_case("jpg"))) {
        return Err(ImageFailure::Format(name.to_owned()));
    }
    let reader = || ImageReader::with_format(Cursor::new(bytes), format);
    let (width, height) = reader().into_dimensions().map_err(|_| ImageFailure::Decode)?;
    if u64::from(width) * u64::from(height) > options.max_pixels {
        return Err(ImageFailure::TooManyPixels { width, height, limit: options.max_pixels });
    }
    let mut decoder = reader();
    let mut limits = Limits::default();
    limits.max_image_width = Some(width);
    limits.max_image_height = Some(height);
    limits.max_alloc = Some(options.max_pixels.saturating_mul(16));
    decoder.limits(limits);
    let decoded = decoder.decode().map_err(|_| ImageFailure::Decode)?;
    let pixels = Pixels::from_image(decoded);
    let (original_width, original_height) = (pixels.width, pixels.height);
    check_size(original_width, original_height, options)?;
    let pixels = resize(pixels, options)?;
    let jpeg = encode(&pixels, options.jpeg_quality)?;
    let exif = options.extract_exif.then(|| exif_json(bytes));
    Ok(ProcessedImage { jpeg, width: pixels.width, height: pixels.height, original_width, original_height, exif })
}

fn format_name(format: ImageFormat) -> &'static str {
    match format {
        ImageFormat::Jpeg => "jpeg",
        ImageFormat::Png => "png",
        ImageFormat::WebP => "webp",
        ImageFormat::Gif => "gif",
        ImageFormat::Bmp => "bmp",
        ImageFormat::Tiff => "tiff",
        other => other.extensions_str().first().copied().unwrap_or("unknown"),
    }
}

/// img2dataset's checks on the decoded size, in its order.
fn check_size(width: u32, height: u32, options: &ImageOptions) -> Result<(), ImageFailure> {
    let (short, long) = (width.min(height), width.max(height));
    if short < options.min_image_size {
        return Err(ImageFailure::TooSmall);
    }
    if options.max_image_area.is_some_and(|max| u64::from(width) * u64::from(height) > max) {
        return Err(ImageFailure::AreaTooLarge);
    }
    if options.max_aspect_ratio.is_some_and(|max| f64::from(long) / f64::from(short.max(1)) > max) {
        return Err(ImageFailure::AspectRatioTooLarge);
    }
    Ok(())
}

/// 8-bit pixels, grey or RGB (alpha already composited on white).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pixels {
    width: u32,
    height: u32,
    /// 1 (grey) or 3 (RGB).
    channels: u8,
    data: Vec<u8>,
}

impl Pixels {
    /// Grey stays grey, colour becomes RGB; alpha is composited on white as img2dataset does
    /// (`rint(alpha / 255 * colour + 255 - alpha)`), wider samples become 8-bit.
    fn from_image(image: DynamicImage) -> Self {
        let (width, height) = (image.width(), image.height());
        match image {
            DynamicImage::ImageLuma8(grey) => Self { width, height, channels: 1, data: grey.into_raw() },
            DynamicImage::ImageRgb8(rgb) => Self { width, height, channels: 3, data: rgb.into_raw() },
            DynamicImage::ImageLuma16(_) => Self { width, height, channels: 1, data: image.to_luma8().into_raw() },
            other if other.color().has_alpha() => {
                let rgba = other.to_rgba8().into_raw();
                let mut data = Vec::with_capacity(rgba.len() / 4 * 3);
                for pixel in rgba.chunks_exact(4) {
                    let alpha = f32::from(pixel[3]);
                    for &c in &pixel[..3] {
                        data.push((alpha / 255.0 * f32::from(c) + 255.0 - alpha).round_ties_even().clamp(0.0, 255.0) as u8);
                    }
                }
                Self { width, height, channels: 3, data }
            }
            other => Self { width, height, channels: 3, data: other.to_rgb8().into_raw() },
        }
    }

    fn pixel_type(&self) -> PixelType {
        if self.channels == 1 { PixelType::U8 } else { PixelType::U8x3 }
    }
}

/// Python's `round(dim * scale)` (ties to even), at least 1.
fn scaled(dim: u32, scale: f64) -> u32 {
    ((f64::from(dim) * scale).round_ties_even() as u32).max(1)
}

/// Resizes per the mode (albumentations' `SmallestMaxSize`/`LongestMaxSize`, `CenterCrop`,
/// `PadIfNeeded`), area-like filtering when shrinking and Lanczos when enlarging.
fn resize(pixels: Pixels, options: &ImageOptions) -> Result<Pixels, ImageFailure> {
    let size = options.image_size.max(1);
    let (w, h) = (pixels.width, pixels.height);
    let by_shortest = match options.resize_mode {
        ResizeMode::No => return Ok(pixels),
        ResizeMode::KeepRatio | ResizeMode::CenterCrop => true,
        ResizeMode::Border | ResizeMode::KeepRatioLargest => false,
    };
    let side = if by_shortest { w.min(h) } else { w.max(h) };
    let downscale = side > size;
    if options.resize_only_if_bigger && !downscale {
        return Ok(pixels);
    }
    let scale = f64::from(size) / f64::from(side);
    let resized = if side == size { pixels } else { resample(&pixels, scaled(w, scale), scaled(h, scale), downscale)? };
    Ok(match options.resize_mode {
        ResizeMode::CenterCrop => crop_centre(&resized, size),
        ResizeMode::Border => pad_white(&resized, size),
        _ => resized,
    })
}

fn resample(pixels: &Pixels, width: u32, height: u32, downscale: bool) -> Result<Pixels, ImageFailure> {
    let failed = |e: &dyn std::fmt::Display| ImageFailure::Encode(format!("resize: {e}"));
    let src = ImageRef::new(pixels.width, pixels.height, &pixels.data, pixels.pixel_type()).map_err(|e| failed(&e))?;
    let mut dst = Image::new(width, height, pixels.pixel_type());
    // Box convolution scaled to the ratio averages the covered area (OpenCV's INTER_AREA);
    // img2dataset enlarges with INTER_LANCZOS4.
    let filter = if downscale { FilterType::Box } else { FilterType::Lanczos3 };
    Resizer::new()
        .resize(&src, &mut dst, &ResizeOptions::new().resize_alg(ResizeAlg::Convolution(filter)))
        .map_err(|e| failed(&e))?;
    Ok(Pixels { width, height, channels: pixels.channels, data: dst.into_vec() })
}

/// albumentations' `CenterCrop`: the `size`×`size` square at `((h − size) / 2, (w − size) / 2)`.
fn crop_centre(pixels: &Pixels, size: u32) -> Pixels {
    let (width, height) = (size.min(pixels.width), size.min(pixels.height));
    let (left, top) = ((pixels.width - width) / 2, (pixels.height - height) / 2);
    let channels = usize::from(pixels.channels);
    let stride = pixels.width as usize * channels;
    let mut data = Vec::with_capacity(width as usize * height as usize * channels);
    for row in top..top + height {
        let start = row as usize * stride + left as usize * channels;
        data.extend_from_slice(&pixels.data[start..start + width as usize * channels]);
    }
    Pixels { width, height, channels: pixels.channels, data }
}

/// albumentations' `PadIfNeeded` with white: the image centred (extra row/column at the
/// bottom/right) on a `size`×`size` canvas.
fn pad_white(pixels: &Pixels, size: u32) -> Pixels {
    let (width, height) = (size.max(pixels.width), size.max(pixels.height));
    if (width, height) == (pixels.width, pixels.height) {
        return pixels.clone();
    }
    let (left, top) = ((width - pixels.width) / 2, (height - pixels.height) / 2);
    let channels = usize::from(pixels.channels);
    let mut data = vec![255u8; width as usize * height as usize * channels];
    let src_stride = pixels.width as usize * channels;
    for row in 0..pixels.height as usize {
        let start = ((row + top as usize) * width as usize + left as usize) * channels;
        data[start..start + src_stride].copy_from_slice(&pixels.data[row * src_stride..(row + 1) * src_stride]);
    }
    Pixels { width, height, channels: pixels.channels, data }
}

/// Baseline JPEG, 4:2:0 chroma like OpenCV's default.
fn encode(pixels: &Pixels, quality: u8) -> Result<Vec<u8>, ImageFailure> {
    let side = |v: u32| u16::try_from(v).map_err(|_| ImageFailure::Encode(format!("{v} pixels is over JPEG's 65535")));
    let (width, height) = (side(pixels.width)?, side(pixels.height)?);
    let mut out = Vec::with_capacity(pixels.data.len() / 8);
    let color = if pixels.channels == 1 { jpeg_encoder::ColorType::Luma } else { jpeg_encoder::ColorType::Rgb };
    let mut encoder = jpeg_encoder::Encoder::new(&mut out, quality.clamp(1, 100));
    encoder.set_sampling_factor(jpeg_encoder::SamplingFactor::F_2_2);
    encoder.encode(&pixels.data, width, height, color).map_err(|e| ImageFailure::Encode(e.to_string()))?;
    Ok(out)
}

#[cfg(test)]
mod tests;
