//! The downloader's input: the rows of a pair shard (stage a's parquet, or any parquet with a
//! URL and a caption column).

use std::fs::File;
use std::path::{Path, PathBuf};

use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::Field;
use serde::Deserialize;

use super::error::DownloadError;

/// The job input: a pair shard path, a description naming it in `shard`, or stage a's output
/// (which names it in `output`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum PairShardInput {
    /// The parquet file's path.
    Path(PathBuf),
    /// An object with the path in `shard` (other fields are ignored).
    Described {
        /// The parquet file's path.
        shard: PathBuf,
    },
    /// Stage a's output: the shard written is `output` (other fields are ignored).
    WatOutput {
        /// The parquet file's path.
        output: PathBuf,
    },
}

impl PairShardInput {
    /// The parquet file's path.
    #[must_use]
    pub fn path(&self) -> &Path {
        match self {
            Self::Path(path) | Self::Described { shard: path } | Self::WatOutput { output: path } => path,
        }
    }
}

/// One input row: the values of the metadata columns, in order (`None` for nulls).
pub(crate) type Row = Vec<Option<String>>;

/// Reads the `columns` (input names) of every row of the parquet file at `path`.
///
/// # Errors
/// [`DownloadError::Input`] when the file cannot be read or lacks a column.
pub(crate) fn read_rows(path: &Path, columns: &[String]) -> Result<Vec<Row>, DownloadError> {
    let input_error = |message: String| DownloadError::Input { path: path.to_owned(), message };
    let file = File::open(path).map_err(|e| input_error(e.to_string()))?;
    let reader = SerializedFileReader::new(file).map_err(|e| input_error(e.to_string()))?;
    let schema = reader.metadata().file_metadata().schema_descr_ptr();
    let names: Vec<String> = schema.columns().iter().map(|c| c.name().to_owned()).collect();
    let indices = columns
        .iter()
        .map(|wanted| {
            names.iter().position(|name| name == wanted).ok_or_else(|| {
                input_error(format!("no column `{wanted}` (columns: {})", names.join(", ")))
            })
        })
        .collect::<Result<Vec<usize>, _>>()?;
    let rows = reader.get_row_iter(None).map_err(|e| input_error(e.to_string()))?;
    let mut out = Vec::with_capacity(usize::try_from(reader.metadata().file_metadata().num_rows()).unwrap_or(0));
    for row in rows {
        let row = row.map_err(|e| input_error(e.to_string()))?;
        let fields: Vec<&Field> = row.get_column_iter().map(|(_, field)| field).collect();
        out.push(indices.iter().map(|&i| fields.get(i).and_then(|f| field_text(f))).collect());
    }
    Ok(out)
}

/// A field as metadata text: strings as they are, other scalars printed, nulls `None`.
fn field_text(field: &Field) -> Option<String> {
    match field {
        Field::Null => None,
        Field::Str(text) => Some(text.clone()),
        Field::Bytes(bytes) => Some(String::from_utf8_lossy(bytes.data()).into_owned()),
        other => Some(other.to_string()),
    }
}
