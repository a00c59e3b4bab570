//! Splitting a decompressed WARC byte stream into records.
//!
//! Only the three header fields the extraction needs are read (`WARC-Type`, `Content-Length`,
//! and the version line); the body is located by `Content-Length` and never scanned here.

use std::ops::Range;
use std::sync::LazyLock;

use memchr::memmem::Finder;

/// A searcher for the version line, built once rather than on every search.
static VERSION_LINE: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"WARC/"));

/// Longest WARC header block accepted before the record is declared invalid.
pub(crate) const MAX_HEADER: usize = 64 * 1024;

/// The kind of a WARC record, as far as WAT extraction cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RecordKind {
    /// `WARC-Type: metadata`: parsed as WAT JSON.
    Metadata,
    /// `warcinfo`: expected in a WAT file, skipped.
    Warcinfo,
    /// `request`, `response`, `resource`, `revisit`, `conversion`, `continuation`: records that
    /// a WAT file never holds.
    Content,
    /// Anything else (or no `WARC-Type`).
    Other,
}

/// One complete record found in a buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record {
    /// The record's kind.
    pub(crate) kind: RecordKind,
    /// The raw `WARC-Type` value (for error messages).
    pub(crate) warc_type: Range<usize>,
    /// The body, relative to the start of the parsed slice.
    pub(crate) body: Range<usize>,
}

/// Result of [`parse_record`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Parsed {
    /// A complete record.
    Complete(Record),
    /// More bytes are needed. `content_length` is known once the header is complete.
    Incomplete {
        /// The body size announced by a complete header, if the header is complete.
        content_length: Option<u64>,
        /// Where the body starts, if the header is complete.
        body_start: Option<usize>,
    },
    /// The bytes at the start are not a WARC record header.
    Invalid,
}

/// Length of the run of CR/LF bytes at the start of `b` (record separators).
pub(crate) fn separator_len(b: &[u8]) -> usize {
    b.iter().take_while(|&&c| c == b'\r' || c == b'\n').count()
}

/// Parses the record starting at `b[0]` (separators already skipped).
pub(crate) fn parse_record(b: &[u8]) -> Parsed {
    const VERSION: &[u8] = b"WARC/";
    if b.len() < VERSION.len() {
        return if VERSION.starts_with(b) { Parsed::Incomplete { content_length: None, body_start: None } } else { Parsed::Invalid };
    }
    if !b.starts_with(VERSION) {
        return Parsed::Invalid;
    }
    // One pass over the header's lines (ended by CRLF) up to the first empty one.
    let search = &b[..b.len().min(MAX_HEADER)];
    let mut header_end = None;
    let mut content_length = None;
    let mut bad_length = false;
    let mut warc_type = 0..0;
    let mut line_start = 0;
    for newline in memchr::memchr_iter(b'\n', search) {
        if newline == 0 || search[newline - 1] != b'\r' {
            continue;
        }
        let line_end = newline - 1;
        if line_end == line_start {
            // An empty line: the header ends with the line before it.
            header_end = Some(line_start - 2);
            break;
        }
        let line = &b[line_start..line_end];
        if let Some(colon) = memchr::memchr(b':', line) {
            let name = &line[..colon];
            let value = line_start + colon + 1..line_end;
            if name.eq_ignore_ascii_case(b"Content-Length") {
                let value = trim(b, value);
                content_length = std::str::from_utf8(&b[value]).ok().and_then(|s| s.parse::<u64>().ok());
                bad_length |= content_length.is_none();
            } else if name.eq_ignore_ascii_case(b"WARC-Type") {
                warc_type = trim(b, value);
            }
        }
        line_start = newline + 1;
    }
    let Some(header_end) = header_end else {
        return if b.len() >= MAX_HEADER { Parsed::Invalid } else { Parsed::Incomplete { content_length: None, body_start: None } };
    };
    if bad_length {
        return Parsed::Invalid;
    }
    let Some(len) = content_length else { return Parsed::Invalid };
    let body_start = header_end + 4;
    let Some(body_end) = usize::try_from(len).ok().and_then(|l| body_start.checked_add(l)) else {
        return Parsed::Incomplete { content_length: Some(len), body_start: Some(body_start) };
    };
    if body_end > b.len() {
        return Parsed::Incomplete { content_length: Some(len), body_start: Some(body_start) };
    }
    let kind = match &b[warc_type.clone()] {
        t if t.eq_ignore_ascii_case(b"metadata") => RecordKind::Metadata,
        t if t.eq_ignore_ascii_case(b"warcinfo") => RecordKind::Warcinfo,
        t if [&b"request"[..], b"response", b"resource", b"revisit", b"conversion", b"continuation"]
            .iter()
            .any(|k| t.eq_ignore_ascii_case(k)) =>
        {
            RecordKind::Content
        }
        _ => RecordKind::Other,
    };
    Parsed::Complete(Record { kind, warc_type, body: body_start..body_end })
}

/// `r` without the ASCII whitespace at either end of `b[r]`.
fn trim(b: &[u8], r: Range<usize>) -> Range<usize> {
    let (mut s, mut e) = (r.start, r.end);
    while s < e && b[s].is_ascii_whitespace() {
        s += 1;
    }
    while e > s && b[e - 1].is_ascii_whitespace() {
        e -= 1;
    }
    s..e
}

/// Offset of the next plausible record start (`WARC/` at the start of a line) in `b`, searching
/// from index 1.
pub(crate) fn find_resync(b: &[u8]) -> Option<usize> {
    VERSION_LINE.find_iter(b.get(1..)?).map(|i| i + 1).find(|&i| b[i - 1] == b'\n')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_record_and_needs_more() {
        let rec = b"WARC/1.0\r\nWARC-Type: metadata\r\ncontent-length: 4\r\n\r\nabcd\r\n\r\n";
        let Parsed::Complete(r) = parse_record(rec) else { panic!() };
        assert_eq!(r.kind, RecordKind::Metadata);
        assert_eq!(&rec[r.body.clone()], b"abcd");
        assert_eq!(separator_len(&rec[r.body.end..]), 4);
        assert!(matches!(parse_record(&rec[..54]), Parsed::Incomplete { content_length: Some(4), .. }));
        assert!(matches!(parse_record(&rec[..20]), Parsed::Incomplete { content_length: None, .. }));
    }

    #[test]
    fn rejects_non_warc_and_bad_length() {
        assert_eq!(parse_record(b"HTTP/1.1 200 OK\r\n\r\n"), Parsed::Invalid);
        assert_eq!(parse_record(b"WARC/1.0\r\nContent-Length: x\r\n\r\n"), Parsed::Invalid);
        assert_eq!(parse_record(b"WARC/1.0\r\nWARC-Type: metadata\r\n\r\n"), Parsed::Invalid);
    }

    #[test]
    fn resync_requires_line_start() {
        assert_eq!(find_resync(b"xxWARC/ no\nWARC/1.0"), Some(11));
        assert_eq!(find_resync(b"WARC/1.0"), None);
    }
}
