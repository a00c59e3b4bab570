//! One downloaded image through img2dataset 1.47's `Resizer`: decode, composite alpha on white,
//! its size checks, its resize modes with albumentations' rounding, cropping and padding, and
//! JPEG encoding. This is the downloader's CPU hot path, so pixels are decoded once, borrowed
//! by the SIMD resizer (`fast_image_resize`), resized straight into the padded canvas, and
//! encoded by an AVX2 JPEG encoder (`jpeg-encoder`).
//!
//! # Layout
//!
//! - `decode`: format sniffing, the pixel limit read from the header (decompression bombs),
//!   OpenCV's alpha and colour quirks, 8-bit grey or RGB pixels;
//! - `resize`: img2dataset's resize modes, `INTER_AREA`-exact weights when shrinking and
//!   Lanczos-4 when enlarging, centre crop and white padding;
//! - `encode`: baseline JPEG as OpenCV writes it (quality 95, 4:2:0, standard tables).
//!
//! # Differences from img2dataset, all deliberate
//!
//! - 16-bit images are scaled to 8 bits (OpenCV saturates them, which turns most pixels white);
//! - a grey image with alpha stays grey after compositing (OpenCV makes it 3-channel; the pixel
//!   values are the same);
//! - formats outside [`InputFormat`] (PPM, JPEG 2000, …) fail with `Image decoding error`;
//! - limits img2dataset lacks: [`ImageOptions::max_pixels`], and outputs JPEG cannot hold.

mod decode;
mod encode;
mod resize;

use serde::Deserialize;

use super::exif::exif_json;

/// img2dataset's resize modes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResizeMode {
    /// Keep the size (the image is still re-encoded unless `skip-reencode` allows otherwise).
    No,
    /// Longest side to `image-size`, then white padding to an `image-size` square.
    #[default]
    Border,
    /// Shortest side to `image-size`.
    KeepRatio,
    /// Longest side to `image-size`.
    KeepRatioLargest,
    /// Shortest side to `image-size`, then the centred `image-size` square.
    CenterCrop,
}

/// An input format: what img2dataset's decoder (OpenCV) reads among those Cascade decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InputFormat {
    /// JPEG (baseline, progressive; grey, colour, CMYK).
    #[serde(alias = "jpg")]
    Jpeg,
    /// PNG (any bit depth, palette, alpha; the first frame of an APNG).
    Png,
    /// WebP (lossy, lossless, alpha; the first frame of an animation).
    Webp,
    /// GIF (the first frame).
    Gif,
    /// Windows bitmap.
    Bmp,
    /// TIFF (the first page).
    Tiff,
}

impl InputFormat {
    /// Every format, img2dataset's default.
    pub const ALL: [Self; 6] = [Self::Jpeg, Self::Png, Self::Webp, Self::Gif, Self::Bmp, Self::Tiff];

    /// The lower-case name used in settings and messages.
    pub fn name(self) -> &'static str {
        match self {
            Self::Jpeg => "jpeg",
            Self::Png => "png",
            Self::Webp => "webp",
            Self::Gif => "gif",
            Self::Bmp => "bmp",
            Self::Tiff => "tiff",
        }
    }
}

impl std::fmt::Display for InputFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Decoding, checks, resizing and encoding (`[stages.b.settings.image]`): img2dataset's
/// defaults plus a decode limit.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct ImageOptions {
    /// Target size in pixels (img2dataset's `image_size`, 256).
    pub image_size: u32,
    /// How to reach it (`border`).
    pub resize_mode: ResizeMode,
    /// Leave images that do not need shrinking at their size, unpadded and uncropped.
    pub resize_only_if_bigger: bool,
    /// Images whose shorter side is smaller fail with `image too small` (0: none).
    pub min_image_size: u32,
    /// Images of more pixels fail with `image area too large` (none: no limit).
    pub max_image_area: Option<u64>,
    /// Images whose long/short side ratio is larger fail with `aspect ratio too large` (none).
    pub max_aspect_ratio: Option<f64>,
    /// Images whose header declares more pixels fail before any pixel is decoded (Pillow's
    /// decompression-bomb limit, 89,478,484); resized outputs are held to it too.
    pub max_pixels: u64,
    /// Quality of the output JPEG, 1–100 (95).
    pub jpeg_quality: u8,
    /// Accepted input formats (all of [`InputFormat`]); others fail with
    /// `image format gif not accepted`.
    pub formats: Vec<InputFormat>,
    /// Fill the `exif` field.
    pub extract_exif: bool,
    /// img2dataset's `skip_reencode`: when nothing was resized and the input is a JPEG (as
    /// Python's `imghdr` sees it) without alpha, keep the downloaded bytes as they are.
    pub skip_reencode: bool,
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
            formats: InputFormat::ALL.to_vec(),
            extract_exif: true,
            skip_reencode: false,
        }
    }
}

impl ImageOptions {
    /// Checks values that serde accepts but that cannot be used.
    ///
    /// # Errors
    /// A message naming the setting.
    pub fn validate(&self) -> Result<(), String> {
        if self.image_size == 0 {
            return Err("image-size must be at least 1".to_owned());
        }
        if !(1..=100).contains(&self.jpeg_quality) {
            return Err("jpeg-quality must be between 1 and 100".to_owned());
        }
        if self.formats.is_empty() {
            return Err("formats must name at least one format".to_owned());
        }
        if self.max_aspect_ratio.is_some_and(|r| r.is_nan() || r < 1.0) {
            return Err("max-aspect-ratio must be at least 1".to_owned());
        }
        Ok(())
    }
}

/// A processed image: its JPEG and what the metadata records about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessedImage {
    /// The output JPEG (the downloaded bytes themselves when `skip-reencode` applies).
    pub jpeg: Vec<u8>,
    /// Width after resizing, cropping and padding.
    pub width: u32,
    /// Height after resizing, cropping and padding.
    pub height: u32,
    /// Decoded width.
    pub original_width: u32,
    /// Decoded height.
    pub original_height: u32,
    /// The EXIF tags as img2dataset's JSON object text (`"{}"` when there are none); `None`
    /// when not extracted, or where img2dataset writes `null` (exifread raised on damaged EXIF).
    pub exif: Option<String>,
}

/// Why an image was refused. The message is img2dataset's where the cause is the same, so that
/// `status_dict`s of both tools add up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageFailure {
    /// Not an image, a format that cannot be decoded, or a damaged one.
    #[error("Image decoding error")]
    Decode,
    /// A format left out of [`ImageOptions::formats`].
    #[error("image format {0} not accepted")]
    FormatNotAccepted(InputFormat),
    /// The header declares more pixels than [`ImageOptions::max_pixels`].
    #[error("image of {width}x{height} pixels exceeds the {limit}-pixel limit")]
    TooManyPixels {
        /// Declared width.
        width: u32,
        /// Declared height.
        height: u32,
        /// [`ImageOptions::max_pixels`].
        limit: u64,
    },
    /// The shorter side is under [`ImageOptions::min_image_size`].
    #[error("image too small")]
    TooSmall,
    /// More pixels than [`ImageOptions::max_image_area`].
    #[error("image area too large")]
    AreaTooLarge,
    /// The side ratio is over [`ImageOptions::max_aspect_ratio`].
    #[error("aspect ratio too large")]
    AspectRatioTooLarge,
    /// The resized image would have more pixels than [`ImageOptions::max_pixels`] (a thin
    /// strip enlarged by `keep_ratio`, say).
    #[error("resized image of {width}x{height} pixels exceeds the {limit}-pixel limit")]
    ResizedTooLarge {
        /// Width after resizing.
        width: u32,
        /// Height after resizing.
        height: u32,
        /// [`ImageOptions::max_pixels`].
        limit: u64,
    },
    /// The output has a side over JPEG's 65,500 pixels.
    #[error("image of {width}x{height} pixels does not fit in a JPEG (65500 pixels per side at most)")]
    TooLargeForJpeg {
        /// Output width.
        width: u32,
        /// Output height.
        height: u32,
    },
    /// The encoder failed (not expected for valid pixels).
    #[error("JPEG encoding error: {0}")]
    Encode(String),
}

/// Decodes, checks, resizes and encodes one downloaded image as img2dataset's `Resizer` does,
/// then reads its EXIF as img2dataset's downloader does.
///
/// # Errors
/// [`ImageFailure`]: undecodable input, a format not accepted, the pixel limit, img2dataset's
/// size checks, or an output JPEG cannot hold.
pub fn process_image(bytes: &[u8], options: &ImageOptions) -> Result<ProcessedImage, ImageFailure> {
    let format = decode::sniff(bytes)?;
    if !options.formats.contains(&format) {
        return Err(ImageFailure::FormatNotAccepted(format));
    }
    let decode::Decoded { pixels, had_alpha } = decode::decode(bytes, format, options.max_pixels)?;
    let (original_width, original_height) = (pixels.width, pixels.height);
    check_size(original_width, original_height, options)?;
    let plan = resize::plan(original_width, original_height, options);
    let (width, height) = plan.as_ref().map_or((original_width, original_height), resize::Plan::output_size);
    if u64::from(width) * u64::from(height)
        > options.max_pixels.max(u64::from(original_width) * u64::from(original_height))
    {
        return Err(ImageFailure::ResizedTooLarge { width, height, limit: options.max_pixels });
    }
    let keep_bytes = options.skip_reencode && plan.is_none() && !had_alpha && encode::imghdr_says_jpeg(bytes);
    let jpeg = if keep_bytes {
        bytes.to_vec()
    } else {
        if width > encode::MAX_SIDE || height > encode::MAX_SIDE {
            return Err(ImageFailure::TooLargeForJpeg { width, height });
        }
        let pixels = match &plan {
            Some(plan) => resize::apply(pixels, plan)?,
            None => pixels,
        };
        encode::jpeg(&pixels, options.jpeg_quality)?
    };
    let exif = if options.extract_exif { exif_json(bytes) } else { None };
    Ok(ProcessedImage { jpeg, width, height, original_width, original_height, exif })
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
    if options.max_aspect_ratio.is_some_and(|max| f64::from(long) / f64::from(short) > max) {
        return Err(ImageFailure::AspectRatioTooLarge);
    }
    Ok(())
}

#[cfg(test)]
mod tests;
