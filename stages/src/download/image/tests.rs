use std::io::Cursor;
use std::path::PathBuf;
use std::time::Instant;

use image::{GenericImageView, ImageBuffer, Luma, Rgb, RgbImage, Rgba};

use super::*;

fn encode_as(image: &DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    image.write_to(&mut out, format).unwrap();
    out.into_inner()
}

/// A smooth colour gradient of `w`×`h`.
fn gradient(w: u32, h: u32) -> DynamicImage {
    DynamicImage::ImageRgb8(RgbImage::from_fn(w, h, |x, y| Rgb([(x * 255 / w) as u8, (y * 255 / h) as u8, 128])))
}

fn decode(jpeg: &[u8]) -> DynamicImage {
    assert_eq!(&jpeg[..3], b"\xff\xd8\xff", "a JPEG");
    image::load_from_memory_with_format(jpeg, ImageFormat::Jpeg).unwrap()
}

fn with_mode(mode: ResizeMode) -> ImageOptions {
    ImageOptions { resize_mode: mode, ..ImageOptions::default() }
}

fn fixture(name: &str) -> Vec<u8> {
    let path: PathBuf = [env!("CARGO_MANIFEST_DIR"), "..", "tests", "data", "images", name].iter().collect();
    std::fs::read(path).unwrap()
}

#[test]
fn sizes_follow_img2dataset_per_mode() {
    let png = encode_as(&gradient(1000, 500), ImageFormat::Png);
    for (mode, expected) in [
        (ResizeMode::Border, (256, 256)),
        (ResizeMode::KeepRatio, (512, 256)),
        (ResizeMode::KeepRatioLargest, (256, 128)),
        (ResizeMode::CenterCrop, (256, 256)),
        (ResizeMode::No, (1000, 500)),
    ] {
        let image = process_image(&png, &with_mode(mode)).unwrap();
        assert_eq!((image.width, image.height), expected, "{mode:?}");
        assert_eq!((image.original_width, image.original_height), (1000, 500));
        assert_eq!(decode(&image.jpeg).dimensions(), expected, "{mode:?}");
    }
    // 333×500, shortest side to 256: round(500 × 256/333) = 384.
    let tall = encode_as(&gradient(333, 500), ImageFormat::Png);
    let image = process_image(&tall, &with_mode(ResizeMode::KeepRatio)).unwrap();
    assert_eq!((image.width, image.height), (256, 384));
    // Small images are enlarged, unless only bigger ones are to be resized (then not padded).
    let small = encode_as(&gradient(100, 50), ImageFormat::Png);
    assert_eq!(process_image(&small, &ImageOptions::default()).map(|i| (i.width, i.height)), Ok((256, 256)));
    let only_bigger = ImageOptions { resize_only_if_bigger: true, ..ImageOptions::default() };
    assert_eq!(process_image(&small, &only_bigger).map(|i| (i.width, i.height)), Ok((100, 50)));
}

#[test]
fn border_pads_with_white_around_the_centred_image() {
    let red = DynamicImage::ImageRgb8(RgbImage::from_pixel(400, 200, Rgb([220, 20, 20])));
    let image = process_image(&encode_as(&red, ImageFormat::Png), &ImageOptions::default()).unwrap();
    let pixels = decode(&image.jpeg).to_rgb8();
    // 256×128 centred: rows 64..192 red, the bands above and below white.
    for (x, y, white) in [(128, 10, true), (128, 250, true), (128, 128, false), (5, 70, false), (250, 186, false)] {
        let [r, g, b] = pixels.get_pixel(x, y).0;
        if white {
            assert!(r > 245 && g > 245 && b > 245, "({x},{y}) = {r},{g},{b}");
        } else {
            assert!(r > 190 && g < 60 && b < 60, "({x},{y}) = {r},{g},{b}");
        }
    }
}

#[test]
fn alpha_is_composited_on_white_and_grey_stays_grey() {
    let mut rgba = ImageBuffer::from_pixel(64, 64, Rgba([0u8, 0, 255, 0]));
    for x in 0..32 {
        for y in 0..64 {
            rgba.put_pixel(x, y, Rgba([0, 0, 0, 255]));
        }
    }
    let options = ImageOptions { resize_mode: ResizeMode::No, ..ImageOptions::default() };
    let image = process_image(&encode_as(&DynamicImage::ImageRgba8(rgba), ImageFormat::Png), &options).unwrap();
    let pixels = decode(&image.jpeg).to_rgb8();
    assert!(pixels.get_pixel(60, 30).0.iter().all(|&c| c > 245), "transparent → white");
    assert!(pixels.get_pixel(5, 30).0.iter().all(|&c| c < 10), "opaque black stays black");

    let grey = DynamicImage::ImageLuma8(ImageBuffer::from_fn(300, 200, |x, _| Luma([(x % 256) as u8])));
    let image = process_image(&encode_as(&grey, ImageFormat::Png), &ImageOptions::default()).unwrap();
    assert_eq!(decode(&image.jpeg).color(), image::ColorType::L8);
    let deep = DynamicImage::ImageRgb16(ImageBuffer::from_pixel(50, 40, Rgb([65535u16, 0, 32768])));
    let image = process_image(&encode_as(&deep, ImageFormat::Png), &options).unwrap();
    let [r, g, b] = decode(&image.jpeg).to_rgb8().get_pixel(25, 20).0;
    assert!(r > 240 && g < 15 && (120..136).contains(&b), "{r},{g},{b}");
}

#[test]
fn accepts_opencv_formats_and_real_world_jpegs() {
    let picture = gradient(120, 90);
    for format in [ImageFormat::Png, ImageFormat::Jpeg, ImageFormat::WebP, ImageFormat::Gif, ImageFormat::Bmp, ImageFormat::Tiff] {
        let bytes = encode_as(&DynamicImage::ImageRgba8(picture.to_rgba8()), format);
        let image = process_image(&bytes, &ImageOptions::default()).unwrap_or_else(|e| panic!("{format:?}: {e}"));
        assert_eq!((image.original_width, image.original_height), (120, 90), "{format:?}");
    }
    let only_jpeg = ImageOptions { formats: vec!["jpg".into()], ..ImageOptions::default() };
    let png = encode_as(&picture, ImageFormat::Png);
    assert_eq!(process_image(&png, &only_jpeg).map(|_| ()), Err(ImageFailure::Format("png".into())));
    assert!(process_image(&encode_as(&picture, ImageFormat::Jpeg), &only_jpeg).is_ok());

    // A CMYK JPEG decodes to colour; EXIF orientation is left alone (as img2dataset).
    let cmyk = process_image(&fixture("cmyk_320x180.jpg"), &ImageOptions::default()).unwrap();
    assert_eq!((cmyk.original_width, cmyk.original_height), (320, 180));
    let rotated = process_image(&fixture("exif_rotated_320x180.jpg"), &ImageOptions::default()).unwrap();
    assert_eq!((rotated.original_width, rotated.original_height), (320, 180));
    let exif: serde_json::Value = serde_json::from_str(rotated.exif.as_deref().unwrap()).unwrap();
    assert_eq!(exif["Image Make"], "Cascade Test Camera");
    assert!(exif.get("Image Orientation").is_some(), "{exif}");
    assert_eq!(cmyk.exif.as_deref(), Some("{}"));
}

#[test]
fn damaged_and_hostile_inputs_fail_cleanly() {
    let jpeg = encode_as(&gradient(200, 100), ImageFormat::Jpeg);
    let outcome = |bytes: &[u8]| process_image(bytes, &ImageOptions::default()).map(|i| (i.original_width, i.original_height));
    // A JPEG cut short decodes as far as it goes, as OpenCV's libjpeg does; one cut inside its
    // header does not.
    assert_eq!(outcome(&jpeg[..jpeg.len() / 3]), Ok((200, 100)));
    assert_eq!(outcome(&jpeg[..100]), Err(ImageFailure::Decode));
    assert_eq!(outcome(b"<html><body>hello</body></html>"), Err(ImageFailure::Decode));
    assert_eq!(outcome(&[0u8; 0]), Err(ImageFailure::Decode));
    let noise: Vec<u8> = (0..5000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    assert_eq!(outcome(&noise), Err(ImageFailure::Decode));

    // A PNG header declaring 100,000 × 100,000 pixels fails before any allocation.
    let mut png = encode_as(&gradient(8, 8), ImageFormat::Png);
    png[16..20].copy_from_slice(&100_000u32.to_be_bytes());
    png[20..24].copy_from_slice(&100_000u32.to_be_bytes());
    let crc = crc32(&png[12..29]);
    png[29..33].copy_from_slice(&crc.to_be_bytes());
    let started = Instant::now();
    let failure = process_image(&png, &ImageOptions::default()).unwrap_err();
    assert_eq!(failure, ImageFailure::TooManyPixels { width: 100_000, height: 100_000, limit: 89_478_484 });
    assert!(failure.to_string().contains("100000x100000"));
    assert!(started.elapsed().as_secs() < 5);
}

#[test]
fn size_checks_use_img2dataset_messages() {
    let png = encode_as(&gradient(300, 60), ImageFormat::Png);
    let check = |options: ImageOptions| process_image(&png, &options).map(|_| ()).map_err(|e| e.to_string());
    assert_eq!(check(ImageOptions { min_image_size: 100, ..ImageOptions::default() }), Err("image too small".into()));
    assert_eq!(check(ImageOptions { max_image_area: Some(10_000), ..ImageOptions::default() }), Err("image area too large".into()));
    assert_eq!(check(ImageOptions { max_aspect_ratio: Some(3.0), ..ImageOptions::default() }), Err("aspect ratio too large".into()));
    assert_eq!(check(ImageOptions { min_image_size: 60, max_aspect_ratio: Some(5.0), ..ImageOptions::default() }), Ok(()));
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xedb8_8320 } else { crc >> 1 };
        }
    }
    !crc
}
