//! Writing pairs to a parquet shard with the low-level column writer (no arrow).
//!
//! Five required UTF-8 string columns `uid, url, alt, cc_filename, page_url`, snappy
//! compression, dictionary encoding except for `uid` (the dictionary collapses the repeated
//! `cc_filename` and `page_url` values; uids are unique). Each column of the row group being
//! built has a writer of its own that encodes into memory as the pairs arrive, batch by batch,
//! from slices of the batch's one text buffer, so little work is left for the end of a row
//! group: its columns are closed and their encoded chunks spliced into the file, in schema
//! order, every `row_group_rows` rows.

use std::fs::File;
use std::io::BufWriter;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use parquet::basic::Compression;
use parquet::column::page::{CompressedPage, PageWriteSpec, PageWriter};
use parquet::column::writer::ColumnWriterImpl;
use parquet::data_type::{ByteArray, ByteArrayType};
use parquet::errors::Result as ParquetResult;
use parquet::file::properties::{WriterProperties, WriterPropertiesPtr};
use parquet::file::writer::{SerializedFileWriter, SerializedPageWriter, TrackedWrite};
use parquet::schema::parser::parse_message_type;
use parquet::schema::types::ColumnPath;

use super::error::WatError;
use super::batch::{PairBatch, PairSink};
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
    props: WriterPropertiesPtr,
    /// The columns of the row group being built, in schema order.
    columns: Vec<Column>,
    /// Values of one column of the batch being written (reused).
    values: Vec<ByteArray>,
    row_group_rows: usize,
    /// Rows in the row group being built.
    pending: usize,
    rows: u64,
}

/// The encoded bytes of one column chunk, shared by its page writer and the [`Column`] that
/// splices them into the file.
type ChunkBytes = Arc<Mutex<TrackedWrite<Vec<u8>>>>;

/// A page writer that serializes pages into memory, as the file writer would into the file.
struct MemoryPages(ChunkBytes);

impl PageWriter for MemoryPages {
    fn write_page(&mut self, page: CompressedPage) -> ParquetResult<PageWriteSpec> {
        let mut sink = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        SerializedPageWriter::new(&mut sink).write_page(page)
    }

    fn close(&mut self) -> ParquetResult<()> {
        Ok(())
    }
}

/// One column of the row group being built, encoding into memory.
struct Column {
    writer: ColumnWriterImpl<'static, ByteArrayType>,
    chunk: ChunkBytes,
}

impl Column {
    /// A writer for column `index` of `file`'s schema.
    fn new(file: &SerializedFileWriter<BufWriter<File>>, props: &WriterPropertiesPtr, index: usize) -> Self {
        let chunk: ChunkBytes = Arc::new(Mutex::new(TrackedWrite::new(Vec::new())));
        let descr = file.schema_descr().column(index);
        let writer = ColumnWriterImpl::new(descr, Arc::clone(props), Box::new(MemoryPages(Arc::clone(&chunk))));
        Self { writer, chunk }
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
        let props = Arc::new(
            WriterProperties::builder()
                .set_compression(Compression::SNAPPY)
                // A uid is an MD5 of its pair, so a dictionary of uids never repeats a value: it
                // would only cost hashing and comparing until it fell back to plain encoding.
                .set_column_dictionary_enabled(ColumnPath::from("uid"), false)
                .set_created_by(concat!("cascade-stages ", env!("CARGO_PKG_VERSION")).to_owned())
                .build(),
        );
        let writer = SerializedFileWriter::new(BufWriter::with_capacity(1 << 20, file), schema, Arc::clone(&props))?;
        let columns = (0..writer.schema_descr().num_columns()).map(|i| Column::new(&writer, &props, i)).collect();
        Ok(Self {
            writer,
            props,
            columns,
            values: Vec::new(),
            row_group_rows: row_group_rows.max(1),
            pending: 0,
            rows: 0,
        })
    }

    /// Encodes `pairs`, writing a row group whenever `row_group_rows` are in.
    ///
    /// # Errors
    ///
    /// [`WatError::Parquet`] when encoding or writing fails.
    pub fn write(&mut self, pairs: Vec<Pair>) -> Result<(), WatError> {
        let mut batch = PairBatch::default();
        for p in &pairs {
            batch.push(&p.uid, &p.url, &p.alt, &p.cc_filename, &p.page_url);
        }
        self.write_batch(batch)
    }

    /// [`PairWriter::write`] for a batch of pairs in one buffer, which parquet is handed slices
    /// of (no copy).
    pub(crate) fn write_batch(&mut self, pairs: PairBatch) -> Result<(), WatError> {
        let (text, pairs) = pairs.into_parts();
        let text = Bytes::from(text.into_bytes());
        let mut rest = &pairs[..];
        while !rest.is_empty() {
            let (part, after) = rest.split_at((self.row_group_rows - self.pending).min(rest.len()));
            for (index, column) in self.columns.iter_mut().enumerate() {
                self.values.clear();
                self.values.extend(part.iter().map(|fields| {
                    let (start, end) = fields[index];
                    ByteArray::from(text.slice(start..end))
                }));
                column.writer.write_batch(&self.values, None, None)?;
            }
            self.values.clear();
            self.pending += part.len();
            if self.pending >= self.row_group_rows {
                self.flush()?;
            }
            rest = after;
        }
        Ok(())
    }

    /// Closes the columns of the row group being built and writes it to the file.
    fn flush(&mut self) -> Result<(), WatError> {
        if self.pending == 0 {
            return Ok(());
        }
        let fresh = (0..self.columns.len()).map(|i| Column::new(&self.writer, &self.props, i)).collect();
        let columns = std::mem::replace(&mut self.columns, fresh);
        let mut row_group = self.writer.next_row_group()?;
        for column in columns {
            let close = column.writer.close()?;
            let chunk = std::mem::replace(
                &mut *column.chunk.lock().unwrap_or_else(PoisonError::into_inner),
                TrackedWrite::new(Vec::new()),
            );
            row_group.append_column(&Bytes::from(chunk.into_inner()?), close)?;
        }
        self.rows += row_group.close()?.num_rows() as u64;
        self.pending = 0;
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
