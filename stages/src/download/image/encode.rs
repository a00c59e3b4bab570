//! The output JPEG as OpenCV's `cv2.imencode(".jpg", img, [IMWRITE_JPEG_QUALITY, q])` writes
//! it: baseline, libjpeg's standard quantisation tables scaled by quality, standard Huffman
//! tables, 4:2:0 chroma averaged over each 2×2 block (libjpeg's `h2v2_downsample`); grey
//! images as 1-component JPEGs. `jpeg-encoder` picks its AVX2 code at run time.

use jpeg_encoder::{ChromaSubsamplingMethod, ColorType, Encoder, SamplingFactor};

use super::decode::{Channels, Pixels};
use super::ImageFailure;

/// The longest side libjpeg (and so most readers) accepts.
pub(super) const MAX_SIDE: u32 = 65_500;

/// Encodes `pixels` at `quality` (clamped to 1–100).
pub(super) fn jpeg(pixels: &Pixels, quality: u8) -> Result<Vec<u8>, ImageFailure> {
    let side = |v: u32| u16::try_from(v).ok().filter(|&v| u32::from(v) <= MAX_SIDE);
    let (Some(width), Some(height)) = (side(pixels.width), side(pixels.height)) else {
        return Err(ImageFailure::TooLargeForJpeg { width: pixels.width, height: pixels.height });
    };
    // Headers plus roughly 1 byte per 8 samples at quality 95 is a close first guess.
    let mut out = Vec::with_capacity(1024 + pixels.data.len() / 6);
    let mut encoder = Encoder::new(&mut out, quality.clamp(1, 100));
    encoder.set_sampling_factor(SamplingFactor::F_2_2);
    encoder.set_chroma_subsampling_method(ChromaSubsamplingMethod::Average);
    let color = match pixels.channels {
        Channels::Grey => ColorType::Luma,
        Channels::Rgb => ColorType::Rgb,
    };
    encoder.encode(&pixels.data, width, height, color).map_err(|e| ImageFailure::Encode(e.to_string()))?;
    Ok(out)
}

/// Python's `imghdr.what(…) == "jpeg"` (img2dataset's `skip_reencode` test): a JFIF or Exif
/// identifier at byte 6, or a raw JPEG starting with a quantisation table.
pub(super) fn imghdr_says_jpeg(bytes: &[u8]) -> bool {
    matches!(bytes.get(6..10), Some(b"JFIF" | b"Exif")) || bytes.starts_with(b"\xff\xd8\xff\xdb")
}
