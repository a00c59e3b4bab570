//! The metadata parquet of a filtered shard: one row per kept sample, in the order of the
//! embedding rows (clip-retrieval's `metadata_N.parquet`), written with the low-level column
//! writer like the WAT stage's shards.

use std::fs::File;
use std::io::BufWriter;
use std::path::Path;
use std::sync::Arc;

use parquet::basic::Compression;
use parquet::data_type::{ByteArray, ByteArrayType, FloatType};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;

use super::error::ClipError;

/// The parquet schema of the kept samples.
pub const SAMPLE_SCHEMA: &str = "message clip_sample {
  REQUIRED BYTE_ARRAY key (STRING);
  OPTIONAL BYTE_ARRAY url (STRING);
  REQUIRED BYTE_ARRAY caption (STRING);
  REQUIRED FLOAT similarity;
}";

/// One kept sample.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct KeptRow {
    pub(crate) key: String,
    pub(crate) url: Option<String>,
    pub(crate) caption: String,
    pub(crate) similarity: f32,
}

/// Writes `rows` to `path` as one row group.
///
/// # Errors
///
/// [`ClipError::Write`] when the file cannot be created, [`ClipError::Parquet`] otherwise.
pub(crate) fn write_rows(path: &Path, rows: &[KeptRow]) -> Result<(), ClipError> {
    let file = File::create(path).map_err(|source| ClipError::Write { path: path.to_owned(), source })?;
    let schema = Arc::new(parse_message_type(SAMPLE_SCHEMA)?);
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_created_by(concat!("cascade-stages ", env!("CARGO_PKG_VERSION")).to_owned())
        .build();
    let mut writer = SerializedFileWriter::new(BufWriter::new(file), schema, Arc::new(props))?;
    let mut group = writer.next_row_group()?;
    let bytes = |s: &str| ByteArray::from(s.as_bytes().to_vec());
    let keys: Vec<ByteArray> = rows.iter().map(|r| bytes(&r.key)).collect();
    let urls: Vec<ByteArray> = rows.iter().filter_map(|r| r.url.as_deref().map(bytes)).collect();
    let url_levels: Vec<i16> = rows.iter().map(|r| i16::from(r.url.is_some())).collect();
    let captions: Vec<ByteArray> = rows.iter().map(|r| bytes(&r.caption)).collect();
    let similarity: Vec<f32> = rows.iter().map(|r| r.similarity).collect();
    let mut column = 0;
    while let Some(mut col) = group.next_column()? {
        match column {
            0 => col.typed::<ByteArrayType>().write_batch(&keys, None, None)?,
            1 => col.typed::<ByteArrayType>().write_batch(&urls, Some(&url_levels), None)?,
            2 => col.typed::<ByteArrayType>().write_batch(&captions, None, None)?,
            _ => col.typed::<FloatType>().write_batch(&similarity, None, None)?,
        };
        col.close()?;
        column += 1;
    }
    group.close()?;
    writer.close()?;
    Ok(())
}
