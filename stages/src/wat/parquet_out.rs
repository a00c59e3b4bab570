//! Writing pairs to a parquet shard with the low-level column writer (no arrow).
//!
//! Five required UTF-8 string columns `uid, url, alt, cc_filename, page_url`, snappy
//! compression, dictionary encoding (which collapses the repeated `cc_filename` and
//! `page_url` values). Rows are buffered per column, each column's strings back to back in
//! blocks of about a MiB, and flushed as a row group every `row_group_rows` rows: the pairs' own
//! strings are freed as they arrive rather than all at once when the row group is written.

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

/// Bytes a column's block holds before the next block is started.
const BLOCK_BYTES: usize = 1 << 20;

/// One column of the row group being built.
///
/// The values are copied back to back into blocks of about [`BLOCK_BYTES`]; a full block is
/// frozen into shared bytes that its values slice. Growing one buffer for the whole row group
/// instead would copy it at every doubling and touch twice its final size in fresh pages.
#[derive(Default)]
struct Column {
    /// The values of frozen blocks, in order.
    done: Vec<ByteArray>,
    /// The block being filled.
    block: Vec<u8>,
    /// Where each value of `block` ends in it.
    ends: Vec<usize>,
}

impl Column {
    fn push(&mut self, value: &str) {
        if self.block.len() + value.len() > self.block.capacity() {
            self.freeze();
            self.block.reserve(value.len().max(BLOCK_BYTES));
        }
        self.block.extend_from_slice(value.as_bytes());
        self.ends.push(self.block.len());
    }

    /// Values buffered so far.
    fn len(&self) -> usize {
        self.done.len() + self.ends.len()
    }

    /// Turns the block being filled into shared bytes and its values into slices of them.
    fn freeze(&mut self) {
        let bytes = Bytes::from(std::mem::take(&mut self.block));
        let mut start = 0;
        self.done.extend(
            self.ends.iter().map(|&end| ByteArray::from(bytes.slice(std::mem::replace(&mut start, end)..end))),
        );
        self.ends.clear();
    }

    /// The values as parquet byte arrays (slices of shared blocks); the column is left empty.
    fn take(&mut self) -> Vec<ByteArray> {
        self.freeze();
        std::mem::take(&mut self.done)
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
            if self.columns[0].len() >= self.row_group_rows {
                self.flush()?;
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), WatError> {
        if self.columns[0].len() == 0 {
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
