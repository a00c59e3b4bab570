//! Decoding as img2dataset's `cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)` plus its alpha matting,
//! into 8-bit grey or RGB pixels: the format from the magic bytes, the size from the header
//! (checked against the pixel limit before any pixel buffer exists), then one decode into one
//! buffer, converted in place.
//!
//! OpenCV's channel rules are kept where they change pixels: a grey PNG with a `tRNS` colour
//! stays opaque (OpenCV reads it as 1 channel), and a GIF is 4-channel (transparent pixels end
//! up white) only when its last graphic control block declares transparency; otherwise its
//! transparent pixels take the background colour. GIFs OpenCV refuses (background index
//! outside the colour table, a missing trailer, a first frame outside the screen) fail too.

use std::io::Cursor;
use std::sync::OnceLock;

use image::error::ImageError;
use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits};

use super::{ImageFailure, InputFormat};

/// Bytes per pixel a decoder may hold at most (RGBA with 32-bit float samples), plus slack for
/// its working buffers: with the pixel limit, the cap on what one decode may allocate.
const BYTES_PER_PIXEL_CAP: u64 = 16;
const ALLOC_SLACK: u64 = 64 << 20;

/// Samples per pixel of [`Pixels`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Channels {
    Grey = 1,
    Rgb = 3,
}

/// 8-bit pixels, rows packed, alpha already composited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Pixels {
    pub(super) width: u32,
    pub(super) height: u32,
    pub(super) channels: Channels,
    pub(super) data: Vec<u8>,
}

/// A decoded image.
pub(super) struct Decoded {
    pub(super) pixels: Pixels,
    /// Decoded with an alpha channel (img2dataset then always re-encodes).
    pub(super) had_alpha: bool,
}

/// The format named by the magic bytes; anything OpenCV and Cascade do not both read is a
/// decoding error, as in img2dataset.
pub(super) fn sniff(bytes: &[u8]) -> Result<InputFormat, ImageFailure> {
    match image::guess_format(bytes) {
        Ok(ImageFormat::Jpeg) => Ok(InputFormat::Jpeg),
        Ok(ImageFormat::Png) => Ok(InputFormat::Png),
        Ok(ImageFormat::WebP) => Ok(InputFormat::Webp),
        Ok(ImageFormat::Gif) => Ok(InputFormat::Gif),
        Ok(ImageFormat::Bmp) => Ok(InputFormat::Bmp),
        Ok(ImageFormat::Tiff) => Ok(InputFormat::Tiff),
        _ => Err(ImageFailure::Decode),
    }
}

/// What happens to an alpha channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Alpha {
    /// img2dataset's matting on white.
    Composite,
    /// OpenCV reads no alpha: the colour as it is.
    Drop,
    /// OpenCV reads no alpha but fills transparent pixels with this colour (GIF background).
    Background([u8; 3]),
}

/// Decodes `bytes` of `format`, refusing more than `max_pixels` pixels before decoding.
pub(super) fn decode(bytes: &[u8], format: InputFormat, max_pixels: u64) -> Result<Decoded, ImageFailure> {
    let alpha = match format {
        InputFormat::Gif => gif_alpha(bytes).ok_or(ImageFailure::Decode)?,
        InputFormat::Png if png_grey_with_trns(bytes) => Alpha::Drop,
        _ => Alpha::Composite,
    };
    let image_format = match format {
        InputFormat::Jpeg => ImageFormat::Jpeg,
        InputFormat::Png => ImageFormat::Png,
        InputFormat::Webp => ImageFormat::WebP,
        InputFormat::Gif => ImageFormat::Gif,
        InputFormat::Bmp => ImageFormat::Bmp,
        InputFormat::Tiff => ImageFormat::Tiff,
    };
    let cap = max_pixels.saturating_mul(BYTES_PER_PIXEL_CAP).saturating_add(ALLOC_SLACK);
    let decoder = match open(bytes, image_format, Some(cap)) {
        Ok(decoder) => decoder,
        // A decoder that refuses its own header under the cap: read the size without limits
        // to say why.
        Err(ImageError::Limits(_)) => {
            let (width, height) = open(bytes, image_format, None).map_err(|_| ImageFailure::Decode)?.dimensions();
            return Err(over_limit(width, height, max_pixels).unwrap_or(ImageFailure::Decode));
        }
        Err(_) => return Err(ImageFailure::Decode),
    };
    let (width, height) = decoder.dimensions();
    if width == 0 || height == 0 {
        return Err(ImageFailure::Decode);
    }
    if let Some(failure) = over_limit(width, height, max_pixels) {
        return Err(failure);
    }
    let image = DynamicImage::from_decoder(decoder).map_err(|_| ImageFailure::Decode)?;
    Ok(to_pixels(image, alpha))
}

fn over_limit(width: u32, height: u32, max_pixels: u64) -> Option<ImageFailure> {
    (u64::from(width) * u64::from(height) > max_pixels).then_some(ImageFailure::TooManyPixels {
        width,
        height,
        limit: max_pixels,
    })
}

/// A decoder over `bytes` whose allocations are capped at `cap` bytes (no cap: `None`).
fn open(bytes: &[u8], format: ImageFormat, cap: Option<u64>) -> Result<impl ImageDecoder + '_, ImageError> {
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    let mut limits = Limits::no_limits();
    limits.max_alloc = cap;
    reader.limits(limits);
    reader.into_decoder()
}

/// 8-bit grey or RGB from whatever the decoder produced, converting in place where it can.
fn to_pixels(image: DynamicImage, alpha: Alpha) -> Decoded {
    let (width, height) = (image.width(), image.height());
    let grey = |data| Pixels { width, height, channels: Channels::Grey, data };
    let rgb = |data| Pixels { width, height, channels: Channels::Rgb, data };
    let (pixels, had_alpha) = match image {
        DynamicImage::ImageLuma8(buffer) => (grey(buffer.into_raw()), false),
        DynamicImage::ImageRgb8(buffer) => (rgb(buffer.into_raw()), false),
        DynamicImage::ImageLumaA8(buffer) => (grey(flatten::<2>(buffer.into_raw(), alpha)), true),
        DynamicImage::ImageRgba8(buffer) => (rgb(flatten::<4>(buffer.into_raw(), alpha)), true),
        DynamicImage::ImageLuma16(buffer) => (grey(to_8_bits(&buffer.into_raw())), false),
        DynamicImage::ImageRgb16(buffer) => (rgb(to_8_bits(&buffer.into_raw())), false),
        DynamicImage::ImageLumaA16(buffer) => (grey(flatten::<2>(to_8_bits(&buffer.into_raw()), alpha)), true),
        DynamicImage::ImageRgba16(buffer) => (rgb(flatten::<4>(to_8_bits(&buffer.into_raw()), alpha)), true),
        other if other.color().has_alpha() => (rgb(flatten::<4>(other.to_rgba8().into_raw(), alpha)), true),
        other => (rgb(other.to_rgb8().into_raw()), false),
    };
    Decoded { pixels, had_alpha }
}

/// 16-bit samples to 8 bits, rounded (`v / 257`).
fn to_8_bits(samples: &[u16]) -> Vec<u8> {
    samples.iter().map(|&v| ((u32::from(v) + 128) / 257) as u8).collect()
}

/// Drops the alpha sample of `N`-sample pixels (grey+alpha or RGBA) in place, first applying
/// `alpha`.
fn flatten<const N: usize>(mut data: Vec<u8>, alpha: Alpha) -> Vec<u8> {
    let colours = N - 1;
    let pixels = data.len() / N;
    let table = composite_table();
    for i in 0..pixels {
        let (src, dst) = (i * N, i * colours);
        let a = data[src + colours];
        for c in 0..colours {
            let value = data[src + c];
            data[dst + c] = match alpha {
                Alpha::Composite => table[usize::from(a)][usize::from(value)],
                Alpha::Drop => value,
                Alpha::Background(colour) if a == 0 => colour[c.min(2)],
                Alpha::Background(_) => value,
            };
        }
    }
    data.truncate(pixels * colours);
    data
}

/// img2dataset's matting, `rint(clip(alpha / 255 * c + 255 - alpha, 0, 255))` in float64 as
/// numpy evaluates it, for every alpha and sample value.
fn composite_table() -> &'static [[u8; 256]; 256] {
    static TABLE: OnceLock<Box<[[u8; 256]; 256]>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut table = Box::new([[0u8; 256]; 256]);
        for (a, row) in table.iter_mut().enumerate() {
            for (c, cell) in row.iter_mut().enumerate() {
                let (a, c) = (a as f64, c as f64);
                let value = a / 255.0 * c + 255.0 - a;
                *cell = value.clamp(0.0, 255.0).round_ties_even() as u8;
            }
        }
        table
    })
}

/// Whether a PNG is grey (8/16-bit or less) with a `tRNS` chunk before its first `IDAT`: the
/// decoder adds an alpha channel OpenCV does not.
fn png_grey_with_trns(bytes: &[u8]) -> bool {
    let mut pos = 8usize;
    let mut grey = false;
    while let Some(header) = bytes.get(pos..pos + 8) {
        let length = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
        match &header[4..8] {
            b"IHDR" => grey = bytes.get(pos + 17) == Some(&0),
            b"tRNS" => return grey,
            b"IDAT" | b"IEND" => return false,
            _ => {}
        }
        pos = pos.saturating_add(12).saturating_add(length);
    }
    false
}

/// OpenCV's GIF reader, its header and block walk: `None` where it refuses the file, else what
/// happens to transparent pixels (white when the last graphic control block declares
/// transparency, the background colour otherwise).
fn gif_alpha(bytes: &[u8]) -> Option<Alpha> {
    let mut gif = Blocks { bytes, pos: 0 };
    let signature = gif.take(6)?;
    if signature != b"GIF87a" && signature != b"GIF89a" {
        return None;
    }
    let (width, height) = (gif.word()?, gif.word()?);
    let flags = gif.byte()?;
    let background = usize::from(gif.byte()?);
    gif.take(1)?;
    let mut colour = [0u8; 3];
    if flags & 0x80 != 0 {
        let size = 1usize << ((flags & 7) + 1);
        let table = gif.take(3 * size)?;
        if background >= size {
            return None;
        }
        colour.copy_from_slice(&table[3 * background..3 * background + 3]);
    }
    if width == 0 || height == 0 {
        return None;
    }
    let mut transparent = false;
    let mut first_frame = true;
    // Graphic control block of the frame being read: its length must be 4 and its disposal
    // method known, for the first frame only (the one decoded).
    let mut control_ok = true;
    loop {
        match gif.byte()? {
            0x3b => break,
            0x21 => {
                let label = gif.byte()?;
                for index in 0.. {
                    let len = usize::from(gif.byte()?);
                    if len == 0 {
                        break;
                    }
                    let block = gif.take(len)?;
                    if label == 0xf9 {
                        if first_frame && index == 0 && (len != 4 || (block[0] >> 2) & 7 > 3) {
                            control_ok = false;
                        }
                        if len == 4 {
                            transparent = block[0] & 1 == 1;
                        }
                    }
                }
            }
            0x2c => {
                let (left, top, w, h) = (gif.word()?, gif.word()?, gif.word()?, gif.word()?);
                let frame_flags = gif.byte()?;
                if first_frame {
                    let inside = u32::from(left) + u32::from(w) <= u32::from(width)
                        && u32::from(top) + u32::from(h) <= u32::from(height);
                    if !control_ok || w == 0 || h == 0 || !inside {
                        return None;
                    }
                }
                if frame_flags & 0x80 != 0 {
                    gif.take(3 << ((frame_flags & 7) + 1))?;
                }
                let min_code_size = gif.byte()?;
                if first_frame && !(2..=11).contains(&min_code_size) {
                    return None;
                }
                first_frame = false;
                gif.skip_sub_blocks()?;
            }
            _ => return None,
        }
    }
    Some(if transparent { Alpha::Composite } else { Alpha::Background(colour) })
}

/// A cursor over GIF blocks; running off the end is a refusal, as in OpenCV's stream reader.
struct Blocks<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Blocks<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let slice = self.bytes.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(slice)
    }

    fn byte(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn word(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_le_bytes([b[0], b[1]]))
    }

    fn skip_sub_blocks(&mut self) -> Option<()> {
        loop {
            let len = usize::from(self.byte()?);
            if len == 0 {
                return Some(());
            }
            self.take(len)?;
        }
    }
}
