//! WARC records read one after the other from an uncompressed stream (a plain file, or one gzip
//! member being decompressed): [`scan`] walks the records without keeping their blocks, and
//! [`read_block`] reads one block back from the offset `scan` reported.

use std::io::{self, BufRead, Read};

/// Longest header line read at once; a longer line is read in pieces (and is damage).
const MAX_LINE: u64 = 8 * 1024;

/// Longest record header accepted; a longer one is damage.
const MAX_HEADER: usize = 64 * 1024;

/// The fields of a WARC record header the replay server needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RecordHeader {
    /// `WARC-Type`, lower-cased (`response`, `request`, …).
    pub(crate) kind: String,
    /// `WARC-Target-URI` without its `<>`, if any.
    pub(crate) target: Option<String>,
    /// `Content-Length`: the size of the block after the header.
    pub(crate) length: u64,
}

/// A whole record met by [`scan`].
#[derive(Debug)]
pub(crate) struct Record {
    /// Offset of its `WARC/` line in the stream.
    pub(crate) start: u64,
    /// Its header.
    pub(crate) header: RecordHeader,
    /// Whether its block starts like an HTTP response (`HTTP/`).
    pub(crate) http: bool,
}

/// How a [`scan`] ended.
#[derive(Debug, Default)]
pub(crate) struct Scan {
    /// Whole records met.
    pub(crate) records: usize,
    /// Headers that could not be parsed, and runs of bytes that were no record, skipped.
    pub(crate) malformed: usize,
    /// Why the stream stopped before its end (a decompression error, a truncated record).
    pub(crate) error: Option<io::Error>,
}

/// Reads the records of `reader` to its end, handing each whole one to `found`. Damage is
/// skipped up to the next `WARC/` line; a failing or truncated stream ends the scan.
pub(crate) fn scan(reader: impl BufRead, mut found: impl FnMut(Record)) -> Scan {
    let mut input = Counting::new(reader);
    let mut summary = Scan::default();
    // After a header that does not parse, its block is skipped as part of the same damage.
    let mut damaged = false;
    loop {
        let mut garbage = false;
        let next = read_header(&mut input, &mut garbage);
        if garbage && !damaged {
            summary.malformed += 1;
        }
        let next = match next {
            Ok(Some(next)) => next,
            Ok(None) => return summary,
            Err(error) => {
                summary.error = Some(error);
                return summary;
            }
        };
        damaged = next.header.is_none();
        let Some(header) = next.header else {
            summary.malformed += 1;
            continue;
        };
        match skip_block(&mut input, header.length) {
            Ok(http) => {
                summary.records += 1;
                found(Record { start: next.start, header, http });
            }
            Err(error) => {
                summary.error = Some(error);
                return summary;
            }
        }
    }
}

/// Reads the block of the record that starts `skip` bytes into `reader`.
///
/// # Errors
/// When the stream fails or ends early, or no record header is there.
pub(crate) fn read_block(reader: impl BufRead, skip: u64) -> io::Result<Vec<u8>> {
    let mut input = Counting::new(reader);
    let skipped = io::copy(&mut (&mut input).take(skip), &mut io::sink())?;
    if skipped < skip {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    let Some(NextHeader { header: Some(header), .. }) = read_header(&mut input, &mut false)? else {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "no WARC record header at the indexed offset"));
    };
    let mut block = Vec::new();
    input.take(header.length).read_to_end(&mut block)?;
    if (block.len() as u64) < header.length {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(block)
}

/// A record header as [`read_header`] found it.
struct NextHeader {
    /// Offset of its `WARC/` line.
    start: u64,
    /// The header, `None` when it does not parse.
    header: Option<RecordHeader>,
}

/// Reads the next record header, skipping whatever comes before a `WARC/` line (and setting
/// `garbage` if that was more than blank lines); `Ok(None)` at the end of the stream.
fn read_header(input: &mut Counting<impl BufRead>, garbage: &mut bool) -> io::Result<Option<NextHeader>> {
    let mut line = Vec::new();
    let start = loop {
        let start = input.offset;
        if !read_line(input, &mut line)? {
            return Ok(None);
        }
        if line.starts_with(b"WARC/") {
            break start;
        }
        *garbage |= !line.iter().all(u8::is_ascii_whitespace);
    };
    let mut text = String::from_utf8_lossy(&line).into_owned();
    loop {
        if !read_line(input, &mut line)? {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        if line == b"\r\n" || line == b"\n" {
            return Ok(Some(NextHeader { start, header: parse_header(&text) }));
        }
        if text.len() + line.len() > MAX_HEADER {
            return Ok(Some(NextHeader { start, header: None }));
        }
        text.push_str(&String::from_utf8_lossy(&line));
    }
}

/// Reads one line (at most [`MAX_LINE`] bytes) into `line`; `false` at the end of the stream.
fn read_line(input: &mut impl BufRead, line: &mut Vec<u8>) -> io::Result<bool> {
    line.clear();
    Ok(input.take(MAX_LINE).read_until(b'\n', line)? > 0)
}

/// Passes over a block of `length` bytes; whether it starts like an HTTP response.
fn skip_block(input: &mut impl BufRead, length: u64) -> io::Result<bool> {
    let mut prefix = Vec::with_capacity(5);
    input.take(length.min(5)).read_to_end(&mut prefix)?;
    let rest = length - prefix.len() as u64;
    if io::copy(&mut input.take(rest), &mut io::sink())? < rest {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(prefix == b"HTTP/")
}

/// Parses a WARC record header (`WARC/x.y` line, then named fields); `None` without a
/// `Content-Length`.
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

/// A `BufRead` that counts the bytes consumed through it: offsets in the stream.
#[derive(Debug)]
pub(crate) struct Counting<R> {
    inner: R,
    /// Bytes consumed so far.
    pub(crate) offset: u64,
}

impl<R> Counting<R> {
    /// Counts from 0.
    pub(crate) fn new(inner: R) -> Self {
        Self { inner, offset: 0 }
    }
}

impl<R: BufRead> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.offset += n as u64;
        Ok(n)
    }
}

impl<R: BufRead> BufRead for Counting<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.inner.fill_buf()
    }

    fn consume(&mut self, amount: usize) {
        self.offset += amount as u64;
        self.inner.consume(amount);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO: &[u8] = b"WARC/1.0\r\nWARC-Type: response\r\nWARC-Target-URI: <http://a/>\r\nContent-Length: 9\r\n\r\nHTTP/1.1 \r\n\r\n\
        WARC/0.17\r\nWARC-Type: request\r\nContent-Length: 3\r\n\r\nGET\r\n\r\n";

    #[test]
    fn scans_records_and_reads_them_back() {
        let mut found = Vec::new();
        let summary = scan(TWO, |record| found.push(record));
        assert_eq!((summary.records, summary.malformed), (2, 0));
        assert!(summary.error.is_none());
        assert_eq!(found[0].header, RecordHeader { kind: "response".into(), target: Some("http://a/".into()), length: 9 });
        assert!(found[0].http && !found[1].http);
        assert_eq!(read_block(TWO, found[1].start).unwrap(), b"GET");
        assert_eq!(read_block(TWO, found[0].start).unwrap(), b"HTTP/1.1 ");
    }

    #[test]
    fn skips_damage_and_stops_at_truncation() {
        let mut data = b"garbage\r\nmore\r\n".to_vec();
        data.extend_from_slice(TWO);
        data.extend_from_slice(b"WARC/1.0\r\nWARC-Type: response\r\n\r\nits block\r\n\r\n");
        data.extend_from_slice(TWO);
        let mut found = 0;
        let summary = scan(data.as_slice(), |_| found += 1);
        // The garbage run, then a header without Content-Length (its block is the same damage).
        assert_eq!((found, summary.malformed), (4, 2));

        let mut found = 0;
        let summary = scan(&TWO[..TWO.len() - 6], |_| found += 1);
        assert_eq!(found, 1);
        assert_eq!(summary.error.map(|e| e.kind()), Some(io::ErrorKind::UnexpectedEof));
    }
}
