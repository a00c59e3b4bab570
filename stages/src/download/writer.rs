//! [`ShardWriter`]: one img2dataset webdataset shard — `NNNNN.tar` (successes: `.jpg`, `.json`,
//! `.txt`), `NNNNN.parquet` (every input row) and `NNNNN_stats.json` — written as `*.partial`
//! files renamed at the end; the stats file, renamed last, marks the shard complete.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use parquet::basic::Compression;
use parquet::data_type::{ByteArray, ByteArrayType, Int32Type};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;

use super::error::DownloadError;
use super::input::Row;
use super::pyjson::PyJson;
use super::summary::{Counts, ShardSummary, Status};

/// Digits of the shard id in file names and keys (img2dataset's `oom_shard_count`).
const SHARD_DIGITS: usize = 5;

/// The metadata of one sample: the input columns, then img2dataset's own.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SampleMeta {
    pub(crate) input: Row,
    pub(crate) key: String,
    pub(crate) status: Status,
    pub(crate) error_message: Option<String>,
    pub(crate) width: Option<i32>,
    pub(crate) height: Option<i32>,
    pub(crate) original_width: Option<i32>,
    pub(crate) original_height: Option<i32>,
    pub(crate) exif: Option<String>,
    pub(crate) sha256: Option<String>,
}

/// img2dataset's `compute_key`: `shard_id * 10^digits(samples_per_shard) + row`, zero-padded.
pub(crate) fn compute_key(row: usize, shard_id: usize, samples_per_shard: usize) -> String {
    let mut sample_digits = 0u32;
    while 10usize.saturating_pow(sample_digits) < samples_per_shard {
        sample_digits += 1;
    }
    let key = shard_id.saturating_mul(10usize.saturating_pow(sample_digits)).saturating_add(row);
    format!("{key:0width$}", width = sample_digits as usize + SHARD_DIGITS)
}

/// The three files of shard `shard_id` in `dir`.
#[derive(Debug, Clone)]
pub(crate) struct ShardPaths {
    pub(crate) tar: PathBuf,
    pub(crate) parquet: PathBuf,
    pub(crate) stats: PathBuf,
}

impl ShardPaths {
    pub(crate) fn new(dir: &Path, shard_id: usize) -> Self {
        let name = format!("{shard_id:0SHARD_DIGITS$}");
        Self {
            tar: dir.join(format!("{name}.tar")),
            parquet: dir.join(format!("{name}.parquet")),
            stats: dir.join(format!("{name}_stats.json")),
        }
    }

    /// The summary of a shard written earlier, if its stats file says it is complete.
    pub(crate) fn completed(&self) -> Option<ShardSummary> {
        let text = std::fs::read(&self.stats).ok()?;
        let stats: serde_json::Value = serde_json::from_slice(&text).ok()?;
        let counts: Counts = serde_json::from_value(stats.clone()).ok()?;
        let duration = stats.get("duration").and_then(serde_json::Value::as_f64).unwrap_or(0.0);
        (self.tar.is_file() && self.parquet.is_file()).then(|| self.summary(counts, duration))
    }

    fn summary(&self, counts: Counts, duration: f64) -> ShardSummary {
        ShardSummary {
            shard: self.tar.clone(),
            parquet: self.parquet.clone(),
            stats: self.stats.clone(),
            counts,
            duration,
        }
    }
}

/// `path` + `.partial`.
fn partial(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".partial");
    PathBuf::from(name)
}

/// Writes one shard.
pub(crate) struct ShardWriter {
    paths: ShardPaths,
    /// Output names of the input columns.
    columns: Vec<String>,
    /// Index of `caption` among them.
    caption: Option<usize>,
    tar: tar::Builder<BufWriter<File>>,
    rows: Vec<SampleMeta>,
    counts: Counts,
    start_time: f64,
}

impl ShardWriter {
    /// Starts shard `paths`; `columns` are the output names of the input columns.
    ///
    /// # Errors
    /// [`DownloadError::Write`].
    pub(crate) fn create(paths: ShardPaths, columns: Vec<String>, capacity: usize) -> Result<Self, DownloadError> {
        let tar_path = partial(&paths.tar);
        let file = File::create(&tar_path).map_err(|source| DownloadError::Write { path: tar_path, source })?;
        let caption = columns.iter().position(|c| c == "caption");
        Ok(Self {
            paths,
            columns,
            caption,
            tar: tar::Builder::new(BufWriter::with_capacity(1 << 20, file)),
            rows: Vec::with_capacity(capacity),
            counts: Counts::default(),
            start_time: unix_now(),
        })
    }

    /// The counts so far.
    pub(crate) fn counts(&self) -> &Counts {
        &self.counts
    }

    /// Records a sample; a success's `jpeg` goes into the tar with its `.json` and `.txt`.
    ///
    /// # Errors
    /// [`DownloadError::Write`].
    pub(crate) fn add(&mut self, meta: SampleMeta, jpeg: Option<&[u8]>) -> Result<(), DownloadError> {
        let message = meta.error_message.as_deref().unwrap_or("success");
        self.counts.add(meta.status, message);
        if let Some(jpeg) = jpeg {
            let caption = self.caption.and_then(|i| meta.input.get(i).cloned().flatten()).unwrap_or_default();
            let json = self.json(&meta).to_indented();
            let mtime = unix_now() as u64;
            for (extension, bytes) in [("jpg", jpeg), ("json", json.as_bytes()), ("txt", caption.as_bytes())] {
                self.append(&format!("{}.{extension}", meta.key), bytes, mtime)?;
            }
        }
        self.rows.push(meta);
        Ok(())
    }

    fn append(&mut self, name: &str, bytes: &[u8], mtime: u64) -> Result<(), DownloadError> {
        // webdataset's TarWriter: read-only regular files owned by `bigdata`.
        let mut header = tar::Header::new_ustar();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o444);
        header.set_mtime(mtime);
        header.set_entry_type(tar::EntryType::Regular);
        // ASCII names of at most 32 bytes: these cannot fail.
        let _ = header.set_username("bigdata");
        let _ = header.set_groupname("bigdata");
        self.tar.append_data(&mut header, name, bytes).map_err(|source| self.write_error(source))
    }

    fn write_error(&self, source: std::io::Error) -> DownloadError {
        DownloadError::Write { path: partial(&self.paths.tar), source }
    }

    /// A sample's `.json`: img2dataset's `meta` dict, in its order.
    fn json(&self, meta: &SampleMeta) -> PyJson {
        let mut fields: Vec<(String, PyJson)> =
            self.columns.iter().cloned().zip(meta.input.iter().cloned().map(PyJson::from)).collect();
        fields.extend([
            ("key".to_owned(), PyJson::Str(meta.key.clone())),
            ("status".to_owned(), PyJson::Str(meta.status.as_str().to_owned())),
            ("error_message".to_owned(), meta.error_message.clone().into()),
            ("width".to_owned(), meta.width.into()),
            ("height".to_owned(), meta.height.into()),
            ("original_width".to_owned(), meta.original_width.into()),
            ("original_height".to_owned(), meta.original_height.into()),
            ("exif".to_owned(), meta.exif.clone().into()),
            ("sha256".to_owned(), meta.sha256.clone().into()),
        ]);
        PyJson::Object(fields)
    }

    /// Writes the parquet (rows in key order) and the stats, and renames the files into place.
    ///
    /// # Errors
    /// [`DownloadError::Write`], [`DownloadError::Parquet`].
    pub(crate) fn finish(mut self) -> Result<ShardSummary, DownloadError> {
        let mut file = self.tar.into_inner().map_err(|source| DownloadError::Write { path: partial(&self.paths.tar), source })?;
        file.flush().map_err(|source| DownloadError::Write { path: partial(&self.paths.tar), source })?;
        self.rows.sort_by(|a, b| a.key.cmp(&b.key));
        let parquet_path = partial(&self.paths.parquet);
        write_parquet(&parquet_path, &self.columns, &self.rows)?;
        let end_time = unix_now();
        let duration = end_time - self.start_time;
        let stats = PyJson::Object(vec![
            ("count".to_owned(), PyJson::Int(self.counts.count as i64)),
            ("successes".to_owned(), PyJson::Int(self.counts.successes as i64)),
            ("failed_to_download".to_owned(), PyJson::Int(self.counts.failed_to_download as i64)),
            ("failed_to_resize".to_owned(), PyJson::Int(self.counts.failed_to_resize as i64)),
            ("duration".to_owned(), PyJson::Float(duration)),
            ("start_time".to_owned(), PyJson::Float(self.start_time)),
            ("end_time".to_owned(), PyJson::Float(end_time)),
            (
                "status_dict".to_owned(),
                PyJson::Object(self.counts.status_dict.iter().map(|(m, n)| (m.clone(), PyJson::Int(*n as i64))).collect()),
            ),
        ]);
        let stats_path = partial(&self.paths.stats);
        std::fs::write(&stats_path, stats.to_indented())
            .map_err(|source| DownloadError::Write { path: stats_path.clone(), source })?;
        for path in [&self.paths.tar, &self.paths.parquet, &self.paths.stats] {
            std::fs::rename(partial(path), path).map_err(|source| DownloadError::Write { path: path.clone(), source })?;
        }
        Ok(self.paths.summary(self.counts, duration))
    }
}

/// The metadata parquet: the input columns, `key`, `status`, `error_message` as strings, the
/// four sizes as int32, `exif` and `sha256` as strings; every column nullable (pyarrow's types).
fn write_parquet(path: &Path, columns: &[String], rows: &[SampleMeta]) -> Result<(), DownloadError> {
    let strings = columns.iter().map(String::as_str).chain(["key", "status", "error_message"]);
    let mut schema = String::from("message img2dataset_sample {\n");
    for name in strings {
        schema.push_str(&format!("  OPTIONAL BYTE_ARRAY {name} (STRING);\n"));
    }
    for name in ["width", "height", "original_width", "original_height"] {
        schema.push_str(&format!("  OPTIONAL INT32 {name};\n"));
    }
    schema.push_str("  OPTIONAL BYTE_ARRAY exif (STRING);\n  OPTIONAL BYTE_ARRAY sha256 (STRING);\n}");
    let file = File::create(path).map_err(|source| DownloadError::Write { path: path.to_owned(), source })?;
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_created_by(concat!("cascade-stages ", env!("CARGO_PKG_VERSION")).to_owned())
        .build();
    let mut writer = SerializedFileWriter::new(BufWriter::new(file), Arc::new(parse_message_type(&schema)?), Arc::new(props))?;
    let mut group = writer.next_row_group()?;
    let mut string_columns: Vec<Vec<Option<String>>> =
        (0..columns.len()).map(|i| rows.iter().map(|r| r.input.get(i).cloned().flatten()).collect()).collect();
    string_columns.push(rows.iter().map(|r| Some(r.key.clone())).collect());
    string_columns.push(rows.iter().map(|r| Some(r.status.as_str().to_owned())).collect());
    string_columns.push(rows.iter().map(|r| r.error_message.clone()).collect());
    let int_columns: [Vec<Option<i32>>; 4] = [
        rows.iter().map(|r| r.width).collect(),
        rows.iter().map(|r| r.height).collect(),
        rows.iter().map(|r| r.original_width).collect(),
        rows.iter().map(|r| r.original_height).collect(),
    ];
    let tail: [Vec<Option<String>>; 2] =
        [rows.iter().map(|r| r.exif.clone()).collect(), rows.iter().map(|r| r.sha256.clone()).collect()];
    for values in &string_columns {
        write_strings(&mut group, values)?;
    }
    for values in &int_columns {
        let Some(mut column) = group.next_column()? else { break };
        let (present, levels) = levels(values);
        column.typed::<Int32Type>().write_batch(&present, Some(&levels), None)?;
        column.close()?;
    }
    for values in &tail {
        write_strings(&mut group, values)?;
    }
    group.close()?;
    writer.close()?;
    Ok(())
}

type RowGroup<'a> = parquet::file::writer::SerializedRowGroupWriter<'a, BufWriter<File>>;

fn write_strings(group: &mut RowGroup<'_>, values: &[Option<String>]) -> Result<(), DownloadError> {
    if let Some(mut column) = group.next_column()? {
        let (present, levels) = levels(values);
        let present: Vec<ByteArray> = present.into_iter().map(|s| ByteArray::from(s.into_bytes())).collect();
        column.typed::<ByteArrayType>().write_batch(&present, Some(&levels), None)?;
        column.close()?;
    }
    Ok(())
}

/// The present values of an optional column and its definition levels.
fn levels<T: Clone>(values: &[Option<T>]) -> (Vec<T>, Vec<i16>) {
    (values.iter().flatten().cloned().collect(), values.iter().map(|v| i16::from(v.is_some())).collect())
}

/// Seconds since the epoch, as Python's `time.time()`.
fn unix_now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_img2dataset_compute_key() {
        assert_eq!(compute_key(5, 1, 10_000), "000010005");
        assert_eq!(compute_key(0, 0, 10_000), "000000000");
        assert_eq!(compute_key(42, 3, 100), "0000342");
        assert_eq!(compute_key(7, 2, 1), "00009");
    }
}
