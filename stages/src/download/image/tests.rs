use std::io::Cursor;
use std::time::Instant;

use image::{DynamicImage, GenericImageView, ImageBuffer, ImageFormat, Luma, LumaA, Rgb, RgbImage, Rgba};

use super::decode::{Channels, Pixels};
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

fn sizes(bytes: &[u8], options: &ImageOptions) -> Result<(u32, u32), ImageFailure> {
    process_image(bytes, options).map(|i| (i.width, i.height))
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
    // Python's round, ties to even: 333×500 shortest side to 256 gives round(384.38) = 384;
    // 10×3 longest side to 4 gives round(1.2) = 1; 20×6 to 5 gives round(1.5) = 2 and 20×10
    // to 5 gives round(2.5) = 2.
    let tall = encode_as(&gradient(333, 500), ImageFormat::Png);
    assert_eq!(sizes(&tall, &with_mode(ResizeMode::KeepRatio)), Ok((256, 384)));
    let to =
        |size| ImageOptions { image_size: size, resize_mode: ResizeMode::KeepRatioLargest, ..ImageOptions::default() };
    assert_eq!(sizes(&encode_as(&gradient(10, 3), ImageFormat::Png), &to(4)), Ok((4, 1)));
    assert_eq!(sizes(&encode_as(&gradient(20, 6), ImageFormat::Png), &to(5)), Ok((5, 2)));
    assert_eq!(sizes(&encode_as(&gradient(20, 10), ImageFormat::Png), &to(5)), Ok((5, 2)));
    // A 1000×1 strip keeps one row (albumentations' `max(1, …)`), padded to a square.
    assert_eq!(sizes(&encode_as(&gradient(1000, 1), ImageFormat::Png), &ImageOptions::default()), Ok((256, 256)));
    // Small images are enlarged, unless only bigger ones are to be resized (then neither padded
    // nor cropped).
    let small = encode_as(&gradient(100, 50), ImageFormat::Png);
    assert_eq!(sizes(&small, &ImageOptions::default()), Ok((256, 256)));
    let only_bigger = |mode| ImageOptions { resize_only_if_bigger: true, resize_mode: mode, ..ImageOptions::default() };
    assert_eq!(sizes(&small, &only_bigger(ResizeMode::Border)), Ok((100, 50)));
    assert_eq!(sizes(&small, &only_bigger(ResizeMode::CenterCrop)), Ok((100, 50)));
    // `center_crop` tests the shortest side: 300×200 is not shrunk when only bigger ones are.
    let wide = encode_as(&gradient(300, 200), ImageFormat::Png);
    assert_eq!(sizes(&wide, &only_bigger(ResizeMode::CenterCrop)), Ok((300, 200)));
    assert_eq!(sizes(&wide, &only_bigger(ResizeMode::Border)), Ok((256, 256)));
}

/// Uniform `value` pixels.
fn flat(width: u32, height: u32, channels: Channels, value: u8) -> Pixels {
    Pixels { width, height, channels, data: vec![value; width as usize * height as usize * channels as usize] }
}

#[test]
fn border_pads_white_with_the_odd_row_below() {
    // 1000×505 → 256×129 (round(129.28)): 127 white rows split 63 above, 64 below.
    let plan = resize::plan(1000, 505, &ImageOptions::default()).unwrap();
    assert_eq!((plan.scaled, plan.output_size()), ((256, 129), (256, 256)));
    let out = resize::apply(flat(1000, 505, Channels::Grey, 40), &plan).unwrap();
    let row = |y: usize| &out.data[y * 256..(y + 1) * 256];
    assert!(row(62).iter().all(|&v| v == 255) && row(63).iter().all(|&v| v == 40));
    assert!(row(191).iter().all(|&v| v == 40) && row(192).iter().all(|&v| v == 255));
    // Through the whole path, on a colour image: white bands above and below.
    let red = DynamicImage::ImageRgb8(RgbImage::from_pixel(400, 200, Rgb([220, 20, 20])));
    let image = process_image(&encode_as(&red, ImageFormat::Png), &ImageOptions::default()).unwrap();
    let pixels = decode(&image.jpeg).to_rgb8();
    for (x, y, white) in [(128, 10, true), (128, 250, true), (128, 128, false), (5, 70, false), (250, 186, false)] {
        let [r, g, b] = pixels.get_pixel(x, y).0;
        if white {
            assert!(r > 245 && g > 245 && b > 245, "({x},{y}) = {r},{g},{b}");
        } else {
            assert!(r > 190 && g < 60 && b < 60, "({x},{y}) = {r},{g},{b}");
        }
    }
}

/// OpenCV's `INTER_AREA` in float64: each destination pixel the coverage-weighted mean of the
/// source pixels under it, rounded once.
fn reference_area(src: &[u8], w: usize, h: usize, dw: usize, dh: usize) -> Vec<u8> {
    let weights = |n: usize, dn: usize| -> Vec<Vec<(usize, f64)>> {
        let s = n as f64 / dn as f64;
        (0..dn)
            .map(|d| {
                let (a, b) = (d as f64 * s, (d as f64 + 1.0) * s);
                (a.floor() as usize..(b.ceil() as usize).min(n))
                    .map(|i| (i, ((i + 1) as f64).min(b) - (i as f64).max(a)))
                    .filter(|&(_, wt)| wt > 0.0)
                    .collect()
            })
            .collect()
    };
    let (wx, wy) = (weights(w, dw), weights(h, dh));
    let mut out = Vec::with_capacity(dw * dh);
    for row in &wy {
        for col in &wx {
            let (mut sum, mut total) = (0.0, 0.0);
            for &(y, a) in row {
                for &(x, b) in col {
                    sum += a * b * f64::from(src[y * w + x]);
                    total += a * b;
                }
            }
            out.push((sum / total).round() as u8);
        }
    }
    out
}

#[test]
fn shrinking_uses_inter_area_weights() {
    // A hard checkerboard of 3-pixel cells makes partial coverage visible.
    let (w, h) = (997, 613);
    let src: Vec<u8> = (0..w * h).map(|i| if (i % w / 3 + i / w / 3) % 2 == 0 { 10 } else { 240 }).collect();
    let options = ImageOptions { resize_mode: ResizeMode::KeepRatioLargest, ..ImageOptions::default() };
    let plan = resize::plan(w as u32, h as u32, &options).unwrap();
    assert_eq!(plan.scaled, (256, 157));
    let out =
        resize::apply(Pixels { width: w as u32, height: h as u32, channels: Channels::Grey, data: src.clone() }, &plan)
            .unwrap();
    let expected = reference_area(&src, w, h, 256, 157);
    let worst = out.data.iter().zip(&expected).map(|(&a, &b)| a.abs_diff(b)).max().unwrap();
    assert!(worst <= 1, "max difference {worst}");
    // `center_crop` resamples only the kept square and gets the same pixels.
    let crop = ImageOptions { resize_mode: ResizeMode::CenterCrop, ..ImageOptions::default() };
    let plan = resize::plan(w as u32, h as u32, &crop).unwrap();
    assert_eq!((plan.scaled, plan.keep.left, plan.keep.top), ((416, 256), 80, 0));
    let out =
        resize::apply(Pixels { width: w as u32, height: h as u32, channels: Channels::Grey, data: src.clone() }, &plan)
            .unwrap();
    let full = reference_area(&src, w, h, 416, 256);
    let worst = (0..256 * 256).map(|i| out.data[i].abs_diff(full[(i / 256) * 416 + 80 + i % 256])).max().unwrap();
    assert!(worst <= 1, "max difference {worst}");
}

/// OpenCV's `INTER_LANCZOS4` in float64: 8 taps around `(d + ½)·s − ½`, normalised, edge
/// pixels repeated, rounded once.
fn reference_lanczos(src: &[u8], w: usize, h: usize, dw: usize, dh: usize) -> Vec<u8> {
    let kernel = |x: f64| {
        if x.abs() < 1e-9 {
            return 1.0;
        }
        let px = std::f64::consts::PI * x;
        (px.sin() / px) * ((px / 4.0).sin() / (px / 4.0))
    };
    let weights = |n: usize, dn: usize| -> Vec<Vec<(usize, f64)>> {
        let s = n as f64 / dn as f64;
        (0..dn)
            .map(|d| {
                let f = (d as f64 + 0.5) * s - 0.5;
                let first = f.floor() as i64 - 3;
                let taps: Vec<(usize, f64)> =
                    (first..first + 8).map(|i| (i.clamp(0, n as i64 - 1) as usize, kernel(f - i as f64))).collect();
                let total: f64 = taps.iter().map(|t| t.1).sum();
                taps.into_iter().map(|(i, wt)| (i, wt / total)).collect()
            })
            .collect()
    };
    let (wx, wy) = (weights(w, dw), weights(h, dh));
    let mut out = Vec::with_capacity(dw * dh);
    for row in &wy {
        for col in &wx {
            let sum: f64 =
                row.iter().flat_map(|&(y, a)| col.iter().map(move |&(x, b)| a * b * f64::from(src[y * w + x]))).sum();
            out.push(sum.round().clamp(0.0, 255.0) as u8);
        }
    }
    out
}

#[test]
fn enlarging_uses_lanczos4_with_replicated_edges() {
    // Black and white cells make the kernel's lobes overshoot, which 8-bit intermediates would
    // clip: the result must still match OpenCV's float arithmetic.
    let (w, h) = (13, 9);
    let src: Vec<u8> = (0..w * h).map(|i| if (i % w / 2 + i / w / 2) % 2 == 0 { 0 } else { 255 }).collect();
    let options = ImageOptions { resize_mode: ResizeMode::KeepRatioLargest, ..ImageOptions::default() };
    let plan = resize::plan(w as u32, h as u32, &options).unwrap();
    assert_eq!((plan.scaled, plan.kernel), ((256, 177), resize::Kernel::Lanczos4));
    let out =
        resize::apply(Pixels { width: w as u32, height: h as u32, channels: Channels::Grey, data: src.clone() }, &plan)
            .unwrap();
    let expected = reference_lanczos(&src, w, h, 256, 177);
    let worst = out.data.iter().zip(&expected).map(|(&a, &b)| a.abs_diff(b)).max().unwrap();
    assert!(worst <= 1, "max difference {worst}");
}

#[test]
fn alpha_is_composited_on_white_as_numpy_does() {
    let mut rgba = ImageBuffer::from_pixel(64, 64, Rgba([0u8, 0, 255, 0]));
    for y in 0..64 {
        for x in 0..16 {
            rgba.put_pixel(x, y, Rgba([0, 0, 0, 255]));
            rgba.put_pixel(x + 16, y, Rgba([200, 100, 0, 128]));
        }
    }
    let png = encode_as(&DynamicImage::ImageRgba8(rgba), ImageFormat::Png);
    let decoded = decode::decode(&png, InputFormat::Png, u64::MAX).unwrap();
    assert!(decoded.had_alpha);
    let pixel = |x: usize| &decoded.pixels.data[x * 3..x * 3 + 3];
    assert_eq!(pixel(60), [255, 255, 255], "transparent → white");
    assert_eq!(pixel(5), [0, 0, 0], "opaque black stays black");
    // rint(128/255·200 + 255 − 128) = rint(227.39) = 227; …·100 → rint(177.19) = 177.
    assert_eq!(pixel(20), [227, 177, 127]);

    // Grey with alpha stays grey; a grey PNG with a tRNS colour is opaque, as in OpenCV.
    let grey_alpha = ImageBuffer::from_fn(8, 8, |x, _| LumaA([50u8, if x < 4 { 0 } else { 255 }]));
    let png = encode_as(&DynamicImage::ImageLumaA8(grey_alpha), ImageFormat::Png);
    let decoded = decode::decode(&png, InputFormat::Png, u64::MAX).unwrap().pixels;
    assert_eq!((decoded.channels, decoded.data[0], decoded.data[7]), (Channels::Grey, 255, 50));
    let mut trns = encode_as(&DynamicImage::ImageLuma8(ImageBuffer::from_pixel(8, 8, Luma([50u8]))), ImageFormat::Png);
    let idat = trns.windows(4).position(|w| w == b"IDAT").unwrap() - 4;
    let chunk =
        [&[0, 0, 0, 2][..], b"tRNS", &[0, 50], &crc32(&[b"tRNS".as_slice(), &[0, 50]].concat()).to_be_bytes()].concat();
    trns.splice(idat..idat, chunk);
    let decoded = decode::decode(&trns, InputFormat::Png, u64::MAX).unwrap().pixels;
    assert_eq!((decoded.channels, decoded.data[0]), (Channels::Grey, 50));
}

#[test]
fn grey_16_bit_palette_and_cmyk_inputs_decode_sensibly() {
    let grey = DynamicImage::ImageLuma8(ImageBuffer::from_fn(300, 200, |x, _| Luma([(x % 256) as u8])));
    let image = process_image(&encode_as(&grey, ImageFormat::Png), &ImageOptions::default()).unwrap();
    assert_eq!(decode(&image.jpeg).color(), image::ColorType::L8);
    // 16-bit samples are scaled to 8 bits (OpenCV would saturate them).
    let deep = DynamicImage::ImageRgb16(ImageBuffer::from_pixel(50, 40, Rgb([65535u16, 0, 32768])));
    let decoded = decode::decode(&encode_as(&deep, ImageFormat::Png), InputFormat::Png, u64::MAX).unwrap().pixels;
    assert_eq!(&decoded.data[..3], [255, 0, 128]);
    let deep_alpha = DynamicImage::ImageRgba16(ImageBuffer::from_pixel(4, 4, Rgba([0u16, 0, 0, 0])));
    let decoded = decode::decode(&encode_as(&deep_alpha, ImageFormat::Png), InputFormat::Png, u64::MAX).unwrap().pixels;
    assert_eq!(&decoded.data[..3], [255, 255, 255]);
    // A palette GIF with a transparent index: its transparency is declared, so white.
    let mut gif = ImageBuffer::from_pixel(10, 10, Rgba([0u8, 128, 0, 255]));
    gif.put_pixel(0, 0, Rgba([0, 0, 0, 0]));
    let decoded =
        decode::decode(&encode_as(&DynamicImage::ImageRgba8(gif), ImageFormat::Gif), InputFormat::Gif, u64::MAX)
            .unwrap();
    assert_eq!(&decoded.pixels.data[..3], [255, 255, 255]);
    assert!(
        decoded.pixels.data[3..6].iter().zip([0, 128, 0]).all(|(&a, b)| a.abs_diff(b) < 8),
        "{:?}",
        &decoded.pixels.data[3..6]
    );
    // A CMYK JPEG (Adobe APP14) decodes to colour.
    let mut cmyk = Vec::new();
    let data: Vec<u8> = (0..32 * 24).flat_map(|_| [0u8, 255, 255, 0]).collect();
    jpeg_encoder::Encoder::new(&mut cmyk, 90).encode(&data, 32, 24, jpeg_encoder::ColorType::Cmyk).unwrap();
    let decoded = decode::decode(&cmyk, InputFormat::Jpeg, u64::MAX).unwrap().pixels;
    assert_eq!((decoded.width, decoded.height, decoded.channels), (32, 24, Channels::Rgb));
}

#[test]
fn accepts_opencv_formats_and_only_the_listed_ones() {
    let picture = gradient(120, 90);
    for format in
        [ImageFormat::Png, ImageFormat::Jpeg, ImageFormat::WebP, ImageFormat::Gif, ImageFormat::Bmp, ImageFormat::Tiff]
    {
        let source =
            if format == ImageFormat::Jpeg { picture.clone() } else { DynamicImage::ImageRgba8(picture.to_rgba8()) };
        let image = process_image(&encode_as(&source, format), &ImageOptions::default())
            .unwrap_or_else(|e| panic!("{format:?}: {e}"));
        assert_eq!(
            (image.original_width, image.original_height, image.width, image.height),
            (120, 90, 256, 256),
            "{format:?}"
        );
    }
    let only_jpeg: ImageOptions = serde_json::from_str(r#"{"formats": ["jpg"]}"#).unwrap();
    assert_eq!(only_jpeg.formats, [InputFormat::Jpeg]);
    let png = encode_as(&picture, ImageFormat::Png);
    let refused = process_image(&png, &only_jpeg).unwrap_err();
    assert_eq!(
        (refused.clone(), refused.to_string()),
        (ImageFailure::FormatNotAccepted(InputFormat::Png), "image format png not accepted".into())
    );
    assert!(process_image(&encode_as(&picture, ImageFormat::Jpeg), &only_jpeg).is_ok());
    // Formats OpenCV reads but Cascade does not fail as undecodable, as in img2dataset.
    assert_eq!(process_image(b"P6\n2 2\n255\n............", &ImageOptions::default()), Err(ImageFailure::Decode));
}

#[test]
fn settings_deserialize_with_img2dataset_defaults() {
    let options: ImageOptions = serde_json::from_str("{}").unwrap();
    assert_eq!(options, ImageOptions::default());
    assert_eq!(
        (options.image_size, options.resize_mode, options.jpeg_quality, options.max_pixels),
        (256, ResizeMode::Border, 95, 89_478_484)
    );
    let options: ImageOptions =
        serde_json::from_str(r#"{"resize-mode": "keep_ratio_largest", "max-image-area": 1000, "skip-reencode": true}"#)
            .unwrap();
    assert_eq!(
        (options.resize_mode, options.max_image_area, options.skip_reencode),
        (ResizeMode::KeepRatioLargest, Some(1000), true)
    );
    assert!(serde_json::from_str::<ImageOptions>(r#"{"formats": ["avif"]}"#).is_err());
    assert!(options.validate().is_ok());
    assert!(ImageOptions { jpeg_quality: 0, ..ImageOptions::default() }.validate().is_err());
}

/// A JPEG with an EXIF APP1 holding `Make` and `Orientation` 6 (rotate 90° clockwise).
fn jpeg_with_exif() -> Vec<u8> {
    let mut tiff = b"II*\0\x08\0\0\0\x02\0".to_vec();
    tiff.extend([0x0f, 0x01, 2, 0, 12, 0, 0, 0, 38, 0, 0, 0]);
    tiff.extend([0x12, 0x01, 3, 0, 1, 0, 0, 0, 6, 0, 0, 0]);
    tiff.extend([0, 0, 0, 0]);
    tiff.extend(b"Test Camera\0");
    let pixels: Vec<u8> = (0..200 * 100).flat_map(|i| [(i % 200) as u8, 80, 160]).collect();
    let mut out = Vec::new();
    let mut encoder = jpeg_encoder::Encoder::new(&mut out, 90);
    encoder.add_exif_metadata(&tiff).unwrap();
    encoder.encode(&pixels, 200, 100, jpeg_encoder::ColorType::Rgb).unwrap();
    out
}

#[test]
fn exif_is_read_and_orientation_not_applied() {
    let image = process_image(&jpeg_with_exif(), &with_mode(ResizeMode::No)).unwrap();
    assert_eq!((image.width, image.height), (200, 100), "not rotated");
    assert_eq!(image.exif.as_deref(), Some(r#"{"Image Make": "Test Camera", "Image Orientation": "Rotated 90 CW"}"#));
    let plain = process_image(&encode_as(&gradient(50, 50), ImageFormat::Jpeg), &ImageOptions::default()).unwrap();
    assert_eq!(plain.exif.as_deref(), Some("{}"));
    let off = ImageOptions { extract_exif: false, ..ImageOptions::default() };
    assert_eq!(process_image(&jpeg_with_exif(), &off).unwrap().exif, None);
}

#[test]
fn skip_reencode_keeps_jpeg_bytes_when_nothing_changes() {
    let jpeg = jpeg_with_exif();
    let keep = ImageOptions { skip_reencode: true, resize_mode: ResizeMode::No, ..ImageOptions::default() };
    assert_eq!(process_image(&jpeg, &keep).unwrap().jpeg, jpeg);
    let small = ImageOptions { skip_reencode: true, resize_only_if_bigger: true, ..ImageOptions::default() };
    assert_eq!(process_image(&jpeg, &small).unwrap().jpeg, jpeg);
    // Resized, or not a JPEG: encoded anew.
    assert_ne!(
        process_image(&jpeg, &ImageOptions { skip_reencode: true, ..ImageOptions::default() }).unwrap().jpeg,
        jpeg
    );
    let png = encode_as(&gradient(40, 30), ImageFormat::Png);
    assert_eq!(&process_image(&png, &keep).unwrap().jpeg[..2], b"\xff\xd8");
}

#[test]
fn damaged_and_hostile_inputs_fail_cleanly() {
    let jpeg = encode_as(&gradient(200, 100), ImageFormat::Jpeg);
    let outcome =
        |bytes: &[u8]| process_image(bytes, &ImageOptions::default()).map(|i| (i.original_width, i.original_height));
    // A JPEG cut short decodes as far as it goes, as libjpeg does; one cut inside its header
    // does not.
    assert_eq!(outcome(&jpeg[..jpeg.len() / 3]), Ok((200, 100)));
    assert_eq!(outcome(&jpeg[..100]), Err(ImageFailure::Decode));
    assert_eq!(outcome(b"<html><body>hello</body></html>"), Err(ImageFailure::Decode));
    assert_eq!(outcome(&[]), Err(ImageFailure::Decode));
    let noise: Vec<u8> = (0..5000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    assert_eq!(outcome(&noise), Err(ImageFailure::Decode));
    // Magic bytes followed by noise, for every format, and random damage to real files: clean
    // failures or images, never a panic.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let picture = DynamicImage::ImageRgba8(gradient(40, 30).to_rgba8());
    for format in [ImageFormat::Png, ImageFormat::WebP, ImageFormat::Gif, ImageFormat::Bmp, ImageFormat::Tiff] {
        let good = encode_as(&picture, format);
        let _ = outcome(&[&good[..12], &noise[..]].concat());
        for _ in 0..40 {
            let mut bytes = good.clone();
            for _ in 0..4 {
                let at = (next() % bytes.len() as u64) as usize;
                bytes[at] = next() as u8;
            }
            let _ = outcome(&bytes[..bytes.len() - (next() % 16) as usize]);
        }
    }
    // A GIF whose background index is outside its colour table: OpenCV refuses it.
    let mut gif =
        encode_as(&DynamicImage::ImageRgba8(ImageBuffer::from_pixel(4, 4, Rgba([1, 2, 3, 255]))), ImageFormat::Gif);
    assert_ne!(gif[10] & 0x80, 0, "a global colour table");
    gif[11] = 255;
    assert_eq!(outcome(&gif), Err(ImageFailure::Decode));
}

#[test]
fn huge_headers_fail_before_decoding() {
    let limit = 89_478_484;
    // PNG: IHDR declaring 100,000 × 100,000, with a valid CRC.
    let mut png = encode_as(&gradient(8, 8), ImageFormat::Png);
    png[16..20].copy_from_slice(&100_000u32.to_be_bytes());
    png[20..24].copy_from_slice(&100_000u32.to_be_bytes());
    let crc = crc32(&png[12..29]);
    png[29..33].copy_from_slice(&crc.to_be_bytes());
    // JPEG: SOF0 declaring 65,000 × 65,000 (its largest sides), the rest of a tiny image.
    let mut jpeg = encode_as(&gradient(8, 8), ImageFormat::Jpeg);
    let sof = jpeg.windows(2).position(|w| w == b"\xff\xc0").unwrap();
    jpeg[sof + 5..sof + 7].copy_from_slice(&65_000u16.to_be_bytes());
    jpeg[sof + 7..sof + 9].copy_from_slice(&65_000u16.to_be_bytes());
    // GIF: a 65,535 × 65,535 logical screen.
    let mut gif = encode_as(&DynamicImage::ImageRgba8(gradient(8, 8).to_rgba8()), ImageFormat::Gif);
    gif[6..10].copy_from_slice(&[0xff; 4]);
    for (bytes, (width, height)) in [(png, (100_000, 100_000)), (jpeg, (65_000, 65_000)), (gif, (65_535, 65_535))] {
        let started = Instant::now();
        let failure = process_image(&bytes, &ImageOptions::default()).unwrap_err();
        assert_eq!(failure, ImageFailure::TooManyPixels { width, height, limit });
        assert!(started.elapsed().as_secs() < 2, "{failure}");
    }
    assert_eq!(
        ImageFailure::TooManyPixels { width: 100_000, height: 100_000, limit }.to_string(),
        "image of 100000x100000 pixels exceeds the 89478484-pixel limit"
    );
}

#[test]
fn size_checks_use_img2dataset_messages() {
    let png = encode_as(&gradient(300, 60), ImageFormat::Png);
    let check = |options: ImageOptions| process_image(&png, &options).map(|_| ()).map_err(|e| e.to_string());
    assert_eq!(check(ImageOptions { min_image_size: 100, ..ImageOptions::default() }), Err("image too small".into()));
    assert_eq!(
        check(ImageOptions { max_image_area: Some(10_000), ..ImageOptions::default() }),
        Err("image area too large".into())
    );
    assert_eq!(
        check(ImageOptions { max_aspect_ratio: Some(3.0), ..ImageOptions::default() }),
        Err("aspect ratio too large".into())
    );
    assert_eq!(
        check(ImageOptions {
            min_image_size: 60,
            max_aspect_ratio: Some(5.0),
            max_image_area: Some(18_000),
            ..ImageOptions::default()
        }),
        Ok(())
    );
    // Outputs JPEG cannot hold, or over the pixel limit, fail before any resampling.
    let strip = encode_as(&gradient(1, 300), ImageFormat::Png);
    assert_eq!(
        sizes(&strip, &with_mode(ResizeMode::KeepRatio)),
        Err(ImageFailure::TooLargeForJpeg { width: 256, height: 76_800 })
    );
    let tight = ImageOptions { max_pixels: 100_000, image_size: 1000, ..ImageOptions::default() };
    assert_eq!(sizes(&png, &tight), Err(ImageFailure::ResizedTooLarge { width: 1000, height: 1000, limit: 100_000 }));
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
