//! Writing pairs to a parquet shard with the low-level column writer (no arrow).
//!
//! Five required UTF-8 string columns `uid, url, alt, cc_filename, page_url`, snappy
//! compression, dictionary encoding (which collapses the repeated `cc_filename` and
//! `page_url` values). Rows are buffered per column, each column's strings back to back in one
//! buffer, and flushed as a row group every `row_group_rows` rows: the pairs' own strings are
//! freed as they arrive rather than all at once when the row group is written.

use std::fs::File;
use std::io::BufWriter;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use parquet::basic::Compression;
use parquet::data_type::{ByteArray, ByteArrayType};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;

use super::error::WatError;
use super::record::Pair;

/// The parquet schema of a pair shard.
pub const PAIR_SCHEMA: &str = "message wat_pair {
  REQUIRED BYTE_ARRAY uid (STRING);
  REQUIRED BYTE_ARRAY url (STRING);
  REQUIRED BYTE_ARRAY alt (STRING);
  REQUIRED BYTE_ARRAY cc_filename (STRING);
  REQUIRED BYTE_ARRAY page_url (STRING);
}";

/// Streams pairs into one parquet file.
pub struct PairWriter {
    writer: SerializedFileWriter<BufWriter<File>>,
    columns: [Column; 5],
    row_group_rows: usize,
    rows: u64,
}

/// One column of the row group being built.
#[derive(Default)]
struct Column {
    /// The values, back to back.
    bytes: Vec<u8>,
    /// Where each value ends in `bytes`.
    ends: Vec<usize>,
}

impl Column {
    fn push(&mut self, value: &str) {
        self.bytes.extend_from_slice(value.as_bytes());
        self.ends.push(self.bytes.len());
    }

    /// The values as parquet byte arrays (slices of one shared buffer); the column is left
    /// empty.
    fn take(&mut self) -> Vec<ByteArray> {
        let bytes = Bytes::from(std::mem::take(&mut self.bytes));
        let mut start = 0;
        let values = self
            .ends
            .iter()
            .map(|&end| ByteArray::from(bytes.slice(std::mem::replace(&mut start, end)..end)))
            .collect();
        self.ends.clear();
        values
    }
}

impl PairWriter {
    /// Creates (or truncates) `path`.
    ///
    /// # Errors
    ///
    /// [`WatError::Write`] when the file cannot be created, [`WatError::Parquet`] otherwise.
    pub fn create(path: &Path, row_group_rows: usize) -> Result<Self, WatError> {
        let file = File::create(path).map_err(|source| WatError::Write { path: path.to_owned(), source })?;
        let schema = Arc::new(parse_message_type(PAIR_SCHEMA)?);
        let props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_created_by(concat!("cascade-stages ", env!("CARGO_PKG_VERSION")).to_owned())
            .build();
        let writer = SerializedFileWriter::new(BufWriter::with_capacity(1 << 20, file), schema, Arc::new(props))?;
        Ok(Self { writer, columns: Default::default(), row_group_rows: row_group_rows.max(1), rows: 0 })
    }

    /// Buffers `pairs`, writing a row group whenever `row_group_rows` are buffered.
    ///
    /// # Errors
    ///
    /// [`WatError::Parquet`] when a row group cannot be written.
    pub fn write(&mut self, pairs: Vec<Pair>) -> Result<(), WatError> {
        for p in pairs {
            let [uid, url, alt, file, page] = &mut self.columns;
            uid.push(&p.uid);
            url.push(&p.url);
            alt.push(&p.alt);
            file.push(&p.cc_filename);
            page.push(&p.page_url);
            if self.columns[0].ends.len() >= self.row_group_rows {
                self.flush()?;
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), WatError> {
        if self.columns[0].ends.is_empty() {
            return Ok(());
        }
        let mut row_group = self.writer.next_row_group()?;
        for values in &mut self.columns {
            // unwrap-free: the schema has exactly five columns, one per buffer.
            let Some(mut column) = row_group.next_column()? else { break };
            column.typed::<ByteArrayType>().write_batch(&values.take(), None, None)?;
            column.close()?;
        }
        self.rows += row_group.close()?.num_rows() as u64;
        Ok(())
    }

    /// Writes the buffered rows and the footer; returns the number of rows written.
    ///
    /// # Errors
    ///
    /// [`WatError::Parquet`] when writing fails.
    pub fn finish(mut self) -> Result<u64, WatError> {
        self.flush()?;
        self.writer.close()?;
        Ok(self.rows)
    }
}
