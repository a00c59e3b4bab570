//! [`WarcIndex`]: the HTTP(S) `response` records of WARC files by target URI, located by offset
//! and read again only when asked for, so an archive costs memory for its URLs alone.
//!
//! A record is found again from the offset of the gzip member holding it and its offset in the
//! member's decompressed bytes (0 when each record is a member of its own, as WARC writers do),
//! or from its offset in a plain file. A file compressed as one member therefore decompresses
//! from its start up to the record on every request: slow for large files, but bounded memory.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use flate2::bufread::GzDecoder;

use super::archived::ArchivedResponse;
use super::record::{self, Counting, Record};
use super::ReplayError;

/// Where one record is.
#[derive(Debug, Clone, Copy)]
struct Location {
    /// Index into [`WarcIndex::files`].
    file: usize,
    /// Whether `offset` is that of a gzip member.
    gzip: bool,
    /// Offset of the gzip member holding the record, or of the record in a plain file.
    offset: u64,
    /// Offset of the record in the member's decompressed bytes (0 in a plain file).
    skip: u64,
}

/// The replayable responses of some WARC files.
#[derive(Debug, Default)]
pub(crate) struct WarcIndex {
    files: Vec<PathBuf>,
    by_url: HashMap<String, Location>,
    /// URLs in archive order, for listing.
    order: Vec<String>,
    /// Records skipped as damaged.
    malformed: usize,
}

impl WarcIndex {
    /// Indexes `files`; the first record of each URL wins.
    ///
    /// # Errors
    /// [`ReplayError::Open`] when a file cannot be opened or read; [`ReplayError::NotWarc`] when
    /// one does not start with a WARC record. Damage later in a file is skipped (and counted),
    /// or ends the file's index when it cannot be read past (a truncated or corrupt gzip file).
    pub(crate) fn build(files: &[PathBuf]) -> Result<Self, ReplayError> {
        let mut index = Self { files: files.to_vec(), ..Self::default() };
        for (file, path) in files.iter().enumerate() {
            let gzip = sniff(path)?;
            let reader = BufReader::with_capacity(1 << 16, open(path)?);
            let error = if gzip { index.add_gzip(file, reader) } else { index.add_plain(file, reader) };
            if let Some(error) = error {
                tracing::debug!(file = %path.display(), %error, "WARC file cannot be read to its end; indexed up to the damage.");
            }
        }
        Ok(index)
    }

    /// Indexes a gzip file member by member; the error that stopped it early, if any.
    fn add_gzip(&mut self, file: usize, reader: BufReader<File>) -> Option<io::Error> {
        let mut input = Counting::new(reader);
        loop {
            match input.fill_buf() {
                Ok([]) => return None,
                Ok(_) => {}
                Err(error) => return Some(error),
            }
            let member = input.offset;
            // The bufread decoder stops at the end of its member, leaving `input` at the next.
            let decoder = BufReader::new(GzDecoder::new(&mut input));
            let scan = record::scan(decoder, |record| self.add(record, Location { file, gzip: true, offset: member, skip: 0 }));
            self.malformed += scan.malformed;
            if scan.error.is_some() {
                return scan.error;
            }
        }
    }

    /// Indexes a plain file; the error that stopped it early, if any.
    fn add_plain(&mut self, file: usize, reader: BufReader<File>) -> Option<io::Error> {
        let scan = record::scan(reader, |record| self.add(record, Location { file, gzip: false, offset: 0, skip: 0 }));
        self.malformed += scan.malformed;
        scan.error
    }

    /// Adds `record` if it is an HTTP(S) response not indexed yet; `at` is where its stream
    /// starts (the record's own offset is added here).
    fn add(&mut self, record: Record, at: Location) {
        let Record { start, header, http } = record;
        if header.kind != "response" {
            return;
        }
        let Some(target) = header.target.filter(|t| t.starts_with("http://") || t.starts_with("https://")) else {
            return;
        };
        if !http {
            tracing::debug!(%target, "Response record without an HTTP response; skipped.");
            self.malformed += 1;
            return;
        }
        if self.by_url.contains_key(&target) {
            return;
        }
        let location = if at.gzip { Location { skip: start, ..at } } else { Location { offset: start, ..at } };
        self.order.push(target.clone());
        self.by_url.insert(target, location);
    }

    /// The indexed URLs, in archive order.
    pub(crate) fn urls(&self) -> impl Iterator<Item = &str> {
        self.order.iter().map(String::as_str)
    }

    /// How many URLs are indexed.
    pub(crate) fn len(&self) -> usize {
        self.order.len()
    }

    /// How many records were skipped as damaged.
    pub(crate) fn malformed(&self) -> usize {
        self.malformed
    }

    /// The indexed URL that answers `url`: itself, or for an `http://` URL its `https://` twin.
    pub(crate) fn find(&self, url: &str) -> Option<&str> {
        if let Some((key, _)) = self.by_url.get_key_value(url) {
            return Some(key);
        }
        let twin = format!("https://{}", url.strip_prefix("http://")?);
        self.by_url.get_key_value(&twin).map(|(key, _)| key.as_str())
    }

    /// Reads the archived response of the indexed URL `key` back from its file; `Ok(None)`
    /// when `key` is not indexed.
    ///
    /// # Errors
    /// When the file cannot be read at the indexed place any more, or the record there is no
    /// HTTP response.
    pub(crate) fn response(&self, key: &str) -> io::Result<Option<ArchivedResponse>> {
        let Some(&location) = self.by_url.get(key) else { return Ok(None) };
        let mut file = File::open(&self.files[location.file])?;
        file.seek(SeekFrom::Start(location.offset))?;
        let file = BufReader::new(file);
        let block = if location.gzip {
            record::read_block(BufReader::new(GzDecoder::new(file)), location.skip)?
        } else {
            record::read_block(file, location.skip)?
        };
        ArchivedResponse::parse(&block)
            .map(Some)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "the archived record is no HTTP response"))
    }
}

/// Opens `path` for reading.
fn open(path: &Path) -> Result<File, ReplayError> {
    File::open(path).map_err(|source| ReplayError::Open { path: path.to_owned(), source })
}

/// Whether `path` is gzip-compressed, after checking that it starts with a WARC record.
///
/// # Errors
/// [`ReplayError::Open`], or [`ReplayError::NotWarc`] when its first bytes are no `WARC/` line.
fn sniff(path: &Path) -> Result<bool, ReplayError> {
    let mut reader = BufReader::new(open(path)?);
    let magic = reader.fill_buf().map_err(|source| ReplayError::Open { path: path.to_owned(), source })?;
    let gzip = magic.starts_with(&[0x1f, 0x8b]);
    let mut head = Vec::new();
    // A decompression error leaves `head` short, which is the answer.
    let _ = if gzip {
        GzDecoder::new(reader).take(64).read_to_end(&mut head)
    } else {
        reader.take(64).read_to_end(&mut head)
    };
    if head.trim_ascii_start().starts_with(b"WARC/") {
        Ok(gzip)
    } else {
        Err(ReplayError::NotWarc(path.to_owned()))
    }
}
