use super::python::{fraction, py_bytes, py_float, py_strip};
use super::*;

/// One IFD entry: tag, field type, count (`None`: the payload's length) and payload, or the
/// name of an IFD whose offset is the value.
enum Payload {
    Bytes(Vec<u8>),
    Pointer(&'static str),
}

struct Entry(u16, u16, Option<u32>, Payload);

/// A TIFF block in the layout of the reference script (header, then each IFD followed by its
/// data area), little- or big-endian.
fn tiff(little: bool) -> Vec<u8> {
    let u16s =
        |v: &[u16]| v.iter().flat_map(|x| if little { x.to_le_bytes() } else { x.to_be_bytes() }).collect::<Vec<u8>>();
    let i16s =
        |v: &[i16]| v.iter().flat_map(|x| if little { x.to_le_bytes() } else { x.to_be_bytes() }).collect::<Vec<u8>>();
    let u32s =
        |v: &[u32]| v.iter().flat_map(|x| if little { x.to_le_bytes() } else { x.to_be_bytes() }).collect::<Vec<u8>>();
    let i32s =
        |v: &[i32]| v.iter().flat_map(|x| if little { x.to_le_bytes() } else { x.to_be_bytes() }).collect::<Vec<u8>>();
    let f32s =
        |v: &[f32]| v.iter().flat_map(|x| if little { x.to_le_bytes() } else { x.to_be_bytes() }).collect::<Vec<u8>>();
    let f64s =
        |v: &[f64]| v.iter().flat_map(|x| if little { x.to_le_bytes() } else { x.to_be_bytes() }).collect::<Vec<u8>>();
    let b = |v: &[u8]| Payload::Bytes(v.to_vec());
    let p = Payload::Bytes;
    use Payload::Pointer;
    let ifd0 = vec![
        Entry(0x010F, 2, None, b(b"Cascade Camera\0")),
        Entry(0x0110, 2, None, b(b"X100\0")),
        Entry(0x010E, 2, None, b(b"  hello world \0junk")),
        Entry(0x0112, 3, Some(1), p(u16s(&[6]))),
        Entry(0x011A, 5, Some(1), p(u32s(&[72, 1]))),
        Entry(0x011B, 5, Some(1), p(u32s(&[300, 4]))),
        Entry(0x0128, 3, Some(1), p(u16s(&[2]))),
        Entry(0x0131, 2, None, b(b"\xff\xfeCam'\0")),
        Entry(0x011D, 2, None, b(b" page \0")),
        Entry(0x013B, 2, None, b(b"First\0")),
        Entry(0x0123, 3, Some(60), p(u16s(&(0..60).collect::<Vec<_>>()))),
        Entry(0x012D, 3, Some(1000), p(u16s(&[1; 1000]))),
        Entry(0x0200, 1, Some(3), b(&[1, 2, 3])),
        Entry(0xC001, 11, Some(2), p(f32s(&[0.1, 1e20]))),
        Entry(0xC002, 12, Some(1), p(f64s(&[1.5e-7]))),
        Entry(0xC003, 10, Some(2), p(i32s(&[-3, 6, 5, 0]))),
        Entry(0xC004, 8, Some(1), p(i16s(&[-5]))),
        Entry(0xC005, 4, Some(1), p(u32s(&[7]))),
        Entry(0x0213, 5, Some(1), p(u32s(&[2, 2]))),
        Entry(0x0103, 3, Some(2), p(u16s(&[6, 99]))),
        Entry(0x9C9D, 1, Some(6), b(b"A\0B\0\0\0")),
        Entry(0x8769, 4, Some(1), Pointer("EXIF")),
        Entry(0x8825, 4, Some(1), Pointer("GPS")),
        Entry(0x013B, 2, None, b(b"Second\0")),
    ];
    let exif = vec![
        Entry(0x829A, 5, Some(1), p(u32s(&[1, 100]))),
        Entry(0x829D, 5, Some(1), p(u32s(&[28, 10]))),
        Entry(0x8827, 3, Some(1), p(u16s(&[200]))),
        Entry(0x9000, 7, Some(4), b(b"0230")),
        Entry(0x9003, 2, None, b(b"2024:01:02 03:04:05\0")),
        Entry(0x9101, 7, Some(4), b(b"\x01\x02\x03\x00")),
        Entry(0x9209, 3, Some(1), p(u16s(&[16]))),
        Entry(0x9204, 10, Some(1), p(i32s(&[-1, 3]))),
        Entry(0xA002, 4, Some(1), p(u32s(&[4000]))),
        Entry(0x9286, 7, Some(12), b(b"ASCII\0\0\0hi!!")),
        Entry(0x927C, 7, Some(8), b(b"makernot")),
        Entry(0xA005, 4, Some(1), Pointer("INTEROP")),
        Entry(0xA001, 3, Some(1), p(u16s(&[65535]))),
        Entry(0x9999, 3, Some(2), p(u16s(&[1, 2]))),
    ];
    let gps = vec![
        Entry(0x0000, 1, Some(4), b(&[2, 3, 0, 0])),
        Entry(0x0001, 2, Some(2), b(b"N\0")),
        Entry(0x0002, 5, Some(3), p(u32s(&[52, 1, 30, 1, 1234, 100]))),
        Entry(0x0006, 5, Some(1), p(u32s(&[0, 1]))),
        Entry(0x0099, 3, Some(1), p(u16s(&[9]))),
    ];
    let interop = vec![Entry(0x0001, 2, Some(4), b(b"R98\0")), Entry(0x0002, 7, Some(4), b(b"0100"))];
    let ifd1 = vec![
        Entry(0x0103, 3, Some(1), p(u16s(&[6]))),
        Entry(0x0201, 4, Some(1), p(u32s(&[0]))),
        Entry(0x0202, 4, Some(1), p(u32s(&[0]))),
        Entry(0x011A, 5, Some(1), p(u32s(&[1, 3]))),
    ];
    let ifds = [("IFD0", ifd0), ("IFD1", ifd1), ("EXIF", exif), ("GPS", gps), ("INTEROP", interop)];
    let payload_len = |payload: &Payload| match payload {
        Payload::Bytes(bytes) => bytes.len(),
        Payload::Pointer(_) => 4,
    };
    let mut offsets = std::collections::HashMap::new();
    let mut pos = 8usize;
    for (name, entries) in &ifds {
        offsets.insert(*name, pos as u32);
        let data: usize = entries.iter().map(|e| payload_len(&e.3)).filter(|&n| n > 4).map(|n| n + (n & 1)).sum();
        pos += 2 + 12 * entries.len() + 4 + data;
    }
    let mut out = if little { b"II*\0".to_vec() } else { b"MM\0*".to_vec() };
    out.extend(u32s(&[offsets["IFD0"]]));
    for (name, entries) in &ifds {
        let mut data_pos = offsets[name] as usize + 2 + 12 * entries.len() + 4;
        let mut data = Vec::new();
        out.extend(u16s(&[entries.len() as u16]));
        for Entry(tag, field_type, count, payload) in entries {
            let bytes = match payload {
                Payload::Bytes(bytes) => bytes.clone(),
                Payload::Pointer(target) => u32s(&[offsets[target]]),
            };
            out.extend(u16s(&[*tag, *field_type]));
            out.extend(u32s(&[count.unwrap_or(bytes.len() as u32)]));
            if bytes.len() > 4 {
                out.extend(u32s(&[data_pos as u32]));
                data_pos += bytes.len() + (bytes.len() & 1);
                data.extend_from_slice(&bytes);
                if bytes.len() & 1 == 1 {
                    data.push(0);
                }
            } else {
                out.extend_from_slice(&bytes);
                out.extend(std::iter::repeat_n(0, 4 - bytes.len()));
            }
        }
        out.extend(u32s(&[if *name == "IFD0" { offsets["IFD1"] } else { 0 }]));
        out.extend(data);
    }
    out
}

/// A JPEG's first segments: optionally JFIF and an ICC APP2 before the `Exif` APP1.
fn jpeg(tiff: &[u8], jfif: bool, icc: bool) -> Vec<u8> {
    let mut out = b"\xff\xd8".to_vec();
    if jfif {
        out.extend(b"\xff\xe0\x00\x10JFIF\0\x01\x01\0\0\x01\0\x01\0\0");
    }
    if icc {
        let payload = [b"ICC_PROFILE\0".as_slice(), &[0; 100]].concat();
        out.extend(b"\xff\xe2");
        out.extend(((payload.len() + 2) as u16).to_be_bytes());
        out.extend(payload);
    }
    out.extend(b"\xff\xe1");
    out.extend(((tiff.len() + 8) as u16).to_be_bytes());
    out.extend(b"Exif\0\0");
    out.extend(tiff);
    out.extend(b"\xff\xdb\x00\x43");
    out.extend([0; 65]);
    out.extend(b"\xff\xd9");
    out
}

/// An extended WebP holding only a `VP8X` and an `EXIF` chunk.
fn webp(tiff: &[u8]) -> Vec<u8> {
    let mut chunks = b"VP8X\x0a\0\0\0\x08\0\0\0\0\0\0\0\0\0".to_vec();
    chunks.extend(b"EXIF");
    chunks.extend((tiff.len() as u32).to_le_bytes());
    chunks.extend(tiff);
    if tiff.len() & 1 == 1 {
        chunks.push(0);
    }
    [b"RIFF".as_slice(), &(chunks.len() as u32 + 4).to_le_bytes(), b"WEBP", &chunks].concat()
}

/// exifread 3.0.1's answer for all the containers above (checked with the reference script),
/// through img2dataset's `json.dumps({k: str(v).strip() …})`.
const EXPECTED: &str = concat!(
    r#"{"Image Make": "Cascade Camera", "Image Model": "X100", "Image ImageDescription": "hello world", "#,
    r#""Image Orientation": "Rotated 90 CW", "Image XResolution": "72", "Image YResolution": "75", "#,
    r#""Image ResolutionUnit": "Pixels/Inch", "Image Software": "b\"\\xff\\xfeCam'\"", "Image PageName": "page", "#,
    r#""Image Artist": "Second", "Image GrayResponseCurve": "[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, "#,
    r#"16, 17, 18, 19, ... ]", "Image TransferFunction": "[]", "Image JPEGProc": "[0, 0, 0]", "#,
    r#""Image Tag 0xC001": "[(0.10000000149011612,), (1.0000000200408773e+20,)]", "Image Tag 0xC002": "(1.5e-07,)", "#,
    r#""Image Tag 0xC003": "[-1/2, 5/0]", "Image Tag 0xC004": "-5", "Image Tag 0xC005": "7", "#,
    r#""Image YCbCrPositioning": "Centered", "Image Compression": "JPEG (old-style)99", "Image XPAuthor": "", "#,
    r#""Image ExifOffset": "2618", "GPS GPSVersionID": "[0, 0, 0, 0]", "GPS GPSLatitudeRef": "N", "#,
    r#""GPS GPSLatitude": "[52, 30, 617/50]", "GPS GPSAltitude": "0", "GPS Tag 0x0099": "9", "#,
    r#""Image GPSInfo": "2856", "Thumbnail Compression": "JPEG (old-style)", "Thumbnail JPEGInterchangeFormat": "0", "#,
    r#""Thumbnail JPEGInterchangeFormatLength": "0", "Thumbnail XResolution": "1/3", "EXIF ExposureTime": "1/100", "#,
    r#""EXIF FNumber": "14/5", "EXIF ISOSpeedRatings": "200", "EXIF ExifVersion": "", "#,
    r#""EXIF DateTimeOriginal": "2024:01:02 03:04:05", "EXIF ComponentsConfiguration": "", "#,
    r#""EXIF Flash": "Flash did not fire, compulsory flash mode", "EXIF ExposureBiasValue": "-1/3", "#,
    r#""EXIF ExifImageWidth": "4000", "Interoperability InteroperabilityIndex": "R98", "#,
    r#""Interoperability InteroperabilityVersion": "[0, 0, 0, 0]", "EXIF InteroperabilityOffset": "2954", "#,
    r#""EXIF ColorSpace": "Uncalibrated", "EXIF Tag 0x9999": "[1, 2]"}"#,
);

#[test]
fn matches_exifread_in_every_container() {
    let (le, be) = (tiff(true), tiff(false));
    assert_eq!(exif_json(&jpeg(&le, true, true)).as_deref(), Some(EXPECTED));
    assert_eq!(exif_json(&jpeg(&be, false, false)).as_deref(), Some(EXPECTED));
    assert_eq!(exif_json(&be).as_deref(), Some(EXPECTED));
    assert_eq!(exif_json(&webp(&le)).as_deref(), Some(EXPECTED));
}

#[test]
fn no_exif_is_an_empty_object_and_a_cut_value_is_null() {
    // Not searched (PNG, GIF, text) or without an `Exif` APP1.
    for bytes in [
        &b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR"[..],
        b"GIF89a",
        b"<html>",
        b"",
        b"\xff\xd8\xff\xe0\0\x10JFIF\0\x01\x01\0\0\x01\0\x01\0\0\xff\xdb\0\x43",
    ] {
        assert_eq!(exif_json(bytes).as_deref(), Some("{}"), "{bytes:?}");
    }
    // Cut in the middle of the TIFF data: a 4-byte value with 2 bytes left raises in exifread,
    // which img2dataset writes as null.
    let full = jpeg(&tiff(true), true, true);
    assert_eq!(exif_json(&full[..full.len() / 2]), None);
    // A byte-order mark exifread does not know raises too.
    let mut bad = jpeg(&tiff(true), true, true);
    let at = bad.windows(6).position(|w| w == b"Exif\0\0").unwrap() + 6;
    bad[at] = b'X';
    assert_eq!(exif_json(&bad), None);
}

#[test]
fn damaged_exif_never_panics() {
    let base = jpeg(&tiff(true), true, true);
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..2000 {
        let mut bytes = base.clone();
        for _ in 0..(next() % 8 + 1) {
            let at = (next() % bytes.len() as u64) as usize;
            bytes[at] = next() as u8;
        }
        let cut = bytes.len() - (next() % 64) as usize;
        let _ = exif_json(&bytes[..cut]);
    }
}

#[test]
fn python_printing() {
    assert_eq!(fraction(10, 20), "1/2");
    assert_eq!(fraction(3, -6), "-1/2");
    assert_eq!(fraction(0, 7), "0");
    assert_eq!(fraction(0, 0), "0/0");
    for (x, repr) in [
        (0.1, "0.1"),
        (1.0, "1.0"),
        (1e16, "1e+16"),
        (1e15, "1000000000000000.0"),
        (0.0001, "0.0001"),
        (0.00001, "1e-05"),
        (-2.5e-7, "-2.5e-07"),
        (123.456, "123.456"),
        (f64::from(0.1f32), "0.10000000149011612"),
    ] {
        assert_eq!(py_float(x), repr);
    }
    assert_eq!(py_bytes(b"a'b"), r#"b"a'b""#);
    assert_eq!(py_bytes(b"a'\"\x01\\"), r#"b'a\'"\x01\\'"#);
    assert_eq!(py_strip("\u{1f} x \u{a0}\n"), "x");
}
