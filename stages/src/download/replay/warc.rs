//! [`WarcIndex`]: the HTTP(S) `response` records of WARC files by target URI, located by offset
//! (the gzip member holding each record, or the record itself in a plain file) and read again
//! only when asked for, so a large archive costs memory for its URLs alone.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::archived::ArchivedResponse;
use super::ReplayError;

/// Where one record is.
#[derive(Debug, Clone, Copy)]
struct Location {
    file: usize,
    /// Offset of the gzip member holding the record, or of the record in a plain file.
    offset: u64,
    gzip: bool,
    /// The record's position among the records of its gzip member (0 when one per member).
    nth: usize,
}

/// The replayable responses of some WARC files.
#[derive(Debug, Default)]
pub(crate) struct WarcIndex {
    files: Vec<PathBuf>,
    by_url: HashMap<String, Location>,
    /// URLs in archive order, for listing.
    order: Vec<String>,
}

/// The fields of a WARC record header the index needs.
struct RecordHeader {
    kind: String,
    target: Option<String>,
    length: u64,
}

impl WarcIndex {
    /// Indexes `files`.
    ///
    /// # Errors
    /// [`ReplayError::Open`] when a file cannot be opened; [`ReplayError::NotWarc`] when one
    /// does not start with a WARC record. Damage later in a file ends its index there.
    pub(crate) fn build(files: &[PathBuf]) -> Result<Self, ReplayError> {
        let mut index = Self { files: files.to_vec(), ..Self::default() };
        for (file, path) in files.iter().enumerate() {
            let open = || File::open(path).map_err(|source| ReplayError::Open { path: path.clone(), source });
            let mut reader = BufReader::with_capacity(1 << 16, open()?);
            let gzip = reader.fill_buf().map_err(|source| ReplayError::Open { path: path.clone(), source })?.starts_with(&[0x1f, 0x8b]);
            let found = if gzip { index.add_gzip(file, reader) } else { index.add_plain(file, reader) };
            if found == 0 && !index.starts_like_warc(path, gzip) {
                return Err(ReplayError::NotWarc(path.clone()));
            }
        }
        Ok(index)
    }

    /// Whether the first record of `path` has a WARC header (a file without responses is fine).
    fn starts_like_warc(&self, path: &Path, gzip: bool) -> bool {
        let Ok(file) = File::open(path) else { return false };
        let mut head = Vec::new();
        let read = if gzip {
            flate2::read::GzDecoder::new(file).take(16).read_to_end(&mut head)
        } else {
            file.take(16).read_to_end(&mut head)
        };
        read.is_ok() && head.starts_with(b"WARC/")
    }

    fn insert(&mut self, target: String, location: Location) {
        if !(target.starts_with("http://") || target.starts_with("https://")) || self.by_url.contains_key(&target) {
            return;
        }
        self.order.push(target.clone());
        self.by_url.insert(target, location);
    }

    /// Indexes a gzip WARC member by member; returns the responses found.
    fn add_gzip(&mut self, file: usize, reader: BufReader<File>) -> usize {
        let before = self.order.len();
        let mut input = Counting { inner: reader, offset: 0 };
        loop {
            match input.fill_buf() {
                Ok([]) => break,
                Ok(_) => {}
                Err(_) => break,
            }
            let offset = input.offset;
            let mut member = Vec::new();
            if let Err(error) = flate2::bufread::GzDecoder::new(&mut input).read_to_end(&mut member) {
                tracing::debug!(file = %self.files[file].display(), offset, %error, "Damaged gzip member; indexing stops here.");
                // A damaged last member may still hold whole records before the damage.
                self.add_records(file, offset, &member);
                break;
            }
            self.add_records(file, offset, &member);
        }
        self.order.len() - before
    }

    fn add_records(&mut self, file: usize, offset: u64, member: &[u8]) {
        for (nth, (header, _)) in records(member).into_iter().enumerate() {
            if header.kind == "response" {
                if let Some(target) = header.target {
                    self.insert(target, Location { file, offset, gzip: true, nth });
                }
            }
        }
    }

    /// Indexes a plain WARC record by record, skipping the blocks; returns the responses found.
    fn add_plain(&mut self, file: usize, mut reader: BufReader<File>) -> usize {
        let before = self.order.len();
        let mut offset = 0u64;
        while let Some((header, header_bytes)) = read_header(&mut reader) {
            if header.kind == "response" {
                if let Some(target) = header.target {
                    self.insert(target, Location { file, offset, gzip: false, nth: 0 });
                }
            }
            let Ok(skip) = i64::try_from(header.length) else { break };
            if reader.seek_relative(skip).is_err() {
                break;
            }
            offset += header_bytes + header.length;
            // The two CRLFs after a block.
            while matches!(reader.fill_buf(), Ok([b'\r' | b'\n', ..])) {
                reader.consume(1);
                offset += 1;
            }
        }
        self.order.len() - before
    }

    /// The indexed URLs, in archive order.
    pub(crate) fn urls(&self) -> impl Iterator<Item = &str> {
        self.order.iter().map(String::as_str)
    }

    /// Whether `url` is indexed.
    pub(crate) fn contains(&self, url: &str) -> bool {
        self.by_url.contains_key(url)
    }

    /// Reads the archived response of `url` back from its file.
    pub(crate) fn response(&self, url: &str) -> Option<ArchivedResponse> {
        let location = *self.by_url.get(url)?;
        let mut file = File::open(&self.files[location.file]).ok()?;
        file.seek(SeekFrom::Start(location.offset)).ok()?;
        let block = if location.gzip {
            let mut member = Vec::new();
            // A damaged member still yields the records before the damage.
            let _ = flate2::bufread::GzDecoder::new(BufReader::new(file)).read_to_end(&mut member);
            records(&member).into_iter().nth(location.nth)?.1.to_vec()
        } else {
            let mut reader = BufReader::new(file);
            let (header, _) = read_header(&mut reader)?;
            let mut block = Vec::new();
            reader.take(header.length).read_to_end(&mut block).ok()?;
            block
        };
        ArchivedResponse::parse(&block)
    }
}

/// A `BufRead` that counts the bytes consumed: the offset of the next gzip member.
struct Counting<R> {
    inner: R,
    offset: u64,
}

impl<R: BufRead> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.offset += n as u64;
        Ok(n)
    }
}

impl<R: BufRead> BufRead for Counting<R> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        self.inner.fill_buf()
    }

    fn consume(&mut self, amount: usize) {
        self.offset += amount as u64;
        self.inner.consume(amount);
    }
}

/// Parses a WARC header's text (after the `WARC/x.y` line check).
fn parse_header(text: &str) -> Option<RecordHeader> {
    let mut lines = text.lines();
    if !lines.next()?.starts_with("WARC/") {
        return None;
    }
    let (mut kind, mut target, mut length) = (String::new(), None, None);
    for line in lines {
        let Some((name, value)) = line.split_once(':') else { continue };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "warc-type" => kind = value.to_ascii_lowercase(),
            "warc-target-uri" => target = Some(value.trim_start_matches('<').trim_end_matches('>').to_owned()),
            "content-length" => length = value.parse().ok(),
            _ => {}
        }
    }
    Some(RecordHeader { kind, target, length: length? })
}

/// Reads one record header from a plain WARC: the header and the bytes it took.
fn read_header(reader: &mut impl BufRead) -> Option<(RecordHeader, u64)> {
    let mut text = String::new();
    let mut taken = 0u64;
    loop {
        let mut line = Vec::new();
        let n = reader.read_until(b'\n', &mut line).ok()?;
        if n == 0 {
            return None;
        }
        taken += n as u64;
        if line == b"\r\n" || line == b"\n" {
            if text.is_empty() {
                continue;
            }
            break;
        }
        text.push_str(&String::from_utf8_lossy(&line));
    }
    Some((parse_header(&text)?, taken))
}

/// The records of a decompressed gzip member (usually one): header and block.
fn records(mut data: &[u8]) -> Vec<(RecordHeader, &[u8])> {
    let mut out = Vec::new();
    loop {
        while let [b'\r' | b'\n', rest @ ..] = data {
            data = rest;
        }
        let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") else { break };
        let Some(header) = parse_header(&String::from_utf8_lossy(&data[..end])) else { break };
        let start = end + 4;
        let stop = usize::try_from(header.length).ok().and_then(|l| start.checked_add(l)).filter(|&s| s <= data.len());
        let Some(stop) = stop else { break };
        let block = &data[start..stop];
        data = &data[stop..];
        out.push((header, block));
    }
    out
}
