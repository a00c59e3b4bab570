//! The `exif` metadata field, as img2dataset 1.47 fills it:
//! `json.dumps({k: str(v).strip() for k, v in exifread.process_file(img, details=False).items()
//! if v is not None})`, with exifread 3.0 (the `exifread-nocycle` package img2dataset requires).
//!
//! This is a port of exifread's reader rather than a general EXIF library, so that keys, their
//! order and the printed values agree with the reference byte for byte: exifread's group names
//! (`Image`, `Thumbnail`, `IFD 2`…, `EXIF`, `GPS`, `Interoperability`), its tag names
//! (`Image ExifOffset`, `EXIF ExifImageWidth`, `Tag 0x9999` for unknown ones), its value
//! tables (`Image Orientation: Rotated 90 CW`), Python's printing of lists, fractions (reduced:
//! `1/100`, `72`) and floats, and its quirks: only JPEG, TIFF and WebP are searched (a PNG's
//! `eXIf` chunk is not), 1-byte values (`BYTE`, `UNDEFINED`) all read as 0, lists of 1000
//! values or more are dropped, `MakerNote`, `UserComment` and XMP tags are skipped.
//!
//! Where exifread raises (a value cut off by the end of the file, a negative offset, a bad byte
//! order mark), img2dataset catches the exception and writes `null`; [`exif_json`] returns
//! `None` then. Damaged input never fails the image.

mod ifd;
mod python;
mod tags;

use ifd::{First, Header, Table};
use python::py_strip;

use super::pyjson::PyJson;

/// The EXIF of an encoded image as img2dataset writes it: a JSON object (`"{}"` when there is
/// none or it cannot be found), or `None` where exifread raises.
pub(crate) fn exif_json(bytes: &[u8]) -> Option<String> {
    match read_tags(bytes) {
        Ok(tags) => {
            let fields = tags.into_iter().map(|(key, value)| (key, PyJson::Str(py_strip(&value).to_owned()))).collect();
            Some(PyJson::Object(fields).to_compact())
        }
        Err(Stop::Raised) => None,
        Err(Stop::NotFound | Stop::OverBudget) => Some("{}".to_owned()),
    }
}

/// Why reading stopped early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stop {
    /// exifread returns `{}`: no EXIF, or a format it does not search.
    NotFound,
    /// exifread raises an exception (img2dataset writes `null`).
    Raised,
    /// More work than the budget of one image's EXIF.
    OverBudget,
}

/// `exifread.process_file(…, details=False)`: the tags in exifread's order.
fn read_tags(bytes: &[u8]) -> Result<Vec<(String, String)>, Stop> {
    let file = File { bytes };
    let (offset, endian) = find_exif(&file)?;
    // `{'I': …, 'M': …, '\x01': …, 'd': …}[endian]` is evaluated for a debug message.
    let endian = *endian.first().ok_or(Stop::Raised)?;
    if !matches!(endian, b'I' | b'M' | 0x01 | b'd') {
        return Err(Stop::Raised);
    }
    let mut header = Header::new(file, offset, endian == b'I');
    for (n, ifd) in header.list_ifds()?.into_iter().enumerate() {
        let name = match n {
            0 => "Image".to_owned(),
            1 => "Thumbnail".to_owned(),
            n => format!("IFD {n}"),
        };
        header.dump_ifd(ifd, &name, Table::Exif)?;
    }
    if let Some(pointer) = header.values("Image ExifOffset") {
        // `exif_off.values[0]`: an empty list raises; text or fractions fail the seek, which
        // `dump_ifd` catches.
        match pointer.first_offset() {
            First::Missing => return Err(Stop::Raised),
            First::Offset(ifd) => header.dump_ifd(ifd, "EXIF", Table::Exif)?,
            First::NotAnOffset => {}
        }
    }
    Ok(header.into_tags())
}

/// The downloaded bytes, read as exifread reads its `BytesIO`.
#[derive(Clone, Copy)]
struct File<'a> {
    bytes: &'a [u8],
}

impl<'a> File<'a> {
    /// `seek(pos); read(len)`: what is there, short at the end; a negative position raises.
    pub(super) fn read(&self, pos: i64, len: u64) -> Result<&'a [u8], Stop> {
        let start = usize::try_from(pos).map_err(|_| Stop::Raised)?.min(self.bytes.len());
        let end = start.saturating_add(usize::try_from(len).unwrap_or(usize::MAX)).min(self.bytes.len());
        Ok(&self.bytes[start..end])
    }

    /// Python's `bytes[start..end]` (clamped, never raising).
    fn slice(&self, start: usize, end: usize) -> &'a [u8] {
        let end = end.min(self.bytes.len());
        &self.bytes[start.min(end)..end]
    }

    /// Python's `bytes[index]`: out of range raises.
    fn at(&self, index: usize) -> Result<u8, Stop> {
        self.bytes.get(index).copied().ok_or(Stop::Raised)
    }
}

/// exifread's `_determine_type`: where the TIFF header starts and its first byte.
fn find_exif<'a>(file: &File<'a>) -> Result<(i64, &'a [u8]), Stop> {
    let data = file.slice(0, 12);
    if matches!(data.get(..2), Some(b"II" | b"MM")) {
        return Ok((0, file.slice(0, 1)));
    }
    if data.get(4..12) == Some(b"ftypheic") {
        // HEIC is never decoded here, so its EXIF is never asked for.
        return Err(Stop::NotFound);
    }
    if data.get(..4) == Some(b"RIFF") && data.get(8..12) == Some(b"WEBP") {
        return find_webp_exif(file);
    }
    if data.get(..2) == Some(b"\xff\xd8") {
        return find_jpeg_exif(file);
    }
    Err(Stop::NotFound)
}

/// exifread's `_find_webp_exif`: the `EXIF` chunk of an extended (`VP8X`) WebP.
fn find_webp_exif<'a>(file: &File<'a>) -> Result<(i64, &'a [u8]), Stop> {
    let data = file.slice(12, 17);
    if data.get(..4) == Some(b"VP8X") && data.get(4).ok_or(Stop::Raised)? & 8 != 0 {
        let mut pos = 30usize;
        loop {
            let chunk = file.slice(pos, pos.saturating_add(8));
            if chunk.len() != 8 {
                return Err(Stop::NotFound);
            }
            pos += 8;
            if &chunk[..4] == b"EXIF" {
                return Ok((pos as i64, file.slice(pos, pos + 1)));
            }
            // Odd sizes are not padded, as in exifread.
            pos = pos.saturating_add(u32::from_le_bytes([chunk[4], chunk[5], chunk[6], chunk[7]]) as usize);
        }
    }
    Err(Stop::NotFound)
}

/// exifread's `_find_jpeg_exif`: skips JFIF-like APP0 segments, then walks the segments of the
/// first `base + 4000` bytes to an `Exif` APP1, with its index arithmetic and its failures.
fn find_jpeg_exif<'a>(file: &File<'a>) -> Result<(i64, &'a [u8]), Stop> {
    let mut base = 2usize;
    let mut data: Vec<u8> = file.slice(0, 12).to_vec();
    let mut pos = data.len();
    let at = |data: &[u8], i: usize| data.get(i).copied().ok_or(Stop::Raised);
    while at(&data, 2)? == 0xff && matches!(data.get(6..10), Some(b"JFIF" | b"JFXX" | b"OLYM" | b"Phot")) {
        let length = usize::from(at(&data, 4)?) * 256 + usize::from(at(&data, 5)?);
        // `read(length - 8)`: a negative size reads to the end.
        pos = if length < 8 { file.bytes.len() } else { (pos + length - 8).min(file.bytes.len()) };
        data = b"\xff\x00".to_vec();
        data.extend_from_slice(file.slice(pos, pos + 10));
        pos = (pos + 10).min(file.bytes.len());
        base = if base > 2 { base + length + 4 - 2 } else { length + 4 };
    }
    let data = File { bytes: file.slice(0, base + 4000) };
    let increment = |base: usize| -> Result<usize, Stop> {
        Ok(usize::from(data.at(base + 2)?) * 256 + usize::from(data.at(base + 3)?) + 2)
    };
    loop {
        match data.slice(base, base + 2) {
            b"\xff\xe1" => {
                if data.slice(base + 4, base + 8) == b"Exif" {
                    base -= 2;
                    break;
                }
                base += increment(base)?;
            }
            b"\xff\xe0" | b"\xff\xe2" | b"\xff\xee" | b"\xff\xd8" | b"\xff\xec" => base += increment(base)?,
            b"\xff\xdb" => break,
            // An `IndexError` here becomes `InvalidExif`, which exifread turns into `{}`.
            _ => base += increment(base).map_err(|_| Stop::NotFound)?,
        }
    }
    let marker = data.at(base + 2)?;
    let found = marker == 0xff
        && (data.slice(base + 6, base + 10) == b"Exif"
            || data.slice(base + 6, base + 11) == b"Ducky"
            || data.slice(base + 6, base + 11) == b"Adobe");
    if !found {
        return Err(Stop::NotFound);
    }
    let offset = base + 12;
    Ok((offset as i64, file.slice(offset, offset + 1)))
}

#[cfg(test)]
mod tests;
