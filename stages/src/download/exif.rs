//! The `exif` metadata field: img2dataset's `json.dumps({k: str(v).strip() for k, v in
//! exifread.process_file(img, details=False).items()})`, with exifread's tag names (`"Image
//! Make"`, `"EXIF DateTimeOriginal"`, `"GPS GPSLatitude"`, …) and the values as text.

use exif::{Context, In, Reader, Tag};

use super::pyjson::PyJson;

/// The EXIF tags of an encoded image as a JSON object; `"{}"` when it has none or they cannot
/// be read (never an error, as in img2dataset).
pub(crate) fn exif_json(bytes: &[u8]) -> String {
    let Ok(exif) = Reader::new().read_from_container(&mut std::io::Cursor::new(bytes)) else {
        return "{}".to_owned();
    };
    let mut fields: Vec<(String, PyJson)> = Vec::new();
    for field in exif.fields() {
        // `details=False`: no maker notes, no thumbnail bytes.
        if field.tag == Tag::MakerNote || matches!(field.tag, Tag::JPEGInterchangeFormat | Tag::JPEGInterchangeFormatLength) {
            continue;
        }
        let group = match (field.tag.context(), field.ifd_num) {
            (Context::Tiff, In::PRIMARY) => "Image",
            (Context::Tiff, _) => "Thumbnail",
            (Context::Exif, _) => "EXIF",
            (Context::Gps, _) => "GPS",
            (Context::Interop, _) => "Interoperability",
            _ => "Image",
        };
        let key = format!("{group} {}", field.tag);
        if fields.iter().any(|(k, _)| *k == key) {
            continue;
        }
        let value = field.display_value().with_unit(&exif).to_string();
        fields.push((key, PyJson::Str(value.trim().trim_matches('"').to_owned())));
    }
    PyJson::Object(fields).to_compact()
}
