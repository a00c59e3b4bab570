//! [`ArchivedResponse`]: the HTTP response stored in a WARC `response` record, ready to be
//! served again: status, headers, and the body with its transfer and content codings removed.

use std::io::Read;

/// An archived HTTP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ArchivedResponse {
    pub(crate) status: u16,
    /// The status line's reason phrase as archived (may be empty).
    pub(crate) reason: Vec<u8>,
    /// Header fields in archive order, repeated names kept, values as archived (bytes: not
    /// every server sent UTF-8); framing and hop-by-hop fields removed.
    pub(crate) headers: Vec<(String, Vec<u8>)>,
    pub(crate) body: Vec<u8>,
}

/// Headers that describe the archived connection or framing, not the resource.
const HOP_BY_HOP: [&str; 6] = ["transfer-encoding", "connection", "keep-alive", "content-length", "proxy-connection", "upgrade"];

impl ArchivedResponse {
    /// Parses a `response` record's block (`HTTP/1.x CODE REASON`, headers, body); `None` when
    /// it is not an HTTP response. Interim `1xx` heads before the final one are passed over.
    pub(crate) fn parse(mut block: &[u8]) -> Option<Self> {
        loop {
            let (head, body) = split_head(block)?;
            let mut lines = head.split(|&b| b == b'\n').map(trim_cr);
            let (status, reason) = parse_status_line(lines.next()?)?;
            if (100..200).contains(&status) && body.starts_with(b"HTTP/") {
                block = body;
                continue;
            }
            let headers = parse_fields(lines);
            return Some(Self::decoded(status, reason, headers, body));
        }
    }

    /// The response with the body's transfer and content codings removed.
    fn decoded(status: u16, reason: Vec<u8>, mut headers: Vec<(String, Vec<u8>)>, body: &[u8]) -> Self {
        let has = |headers: &[(String, Vec<u8>)], name: &str, value: &str| {
            headers.iter().any(|(n, v)| n.eq_ignore_ascii_case(name) && v.to_ascii_lowercase().windows(value.len()).any(|w| w == value.as_bytes()))
        };
        let mut body = body.to_vec();
        if has(&headers, "transfer-encoding", "chunked") {
            if let Some(dechunked) = dechunk(&body) {
                body = dechunked;
            }
        }
        let coding = headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("content-encoding"))
            .map(|(_, v)| String::from_utf8_lossy(v).trim().to_ascii_lowercase())
            .next_back();
        if let Some(decoded) = coding.and_then(|c| decode(&c, &body)) {
            body = decoded;
            headers.retain(|(n, _)| !n.eq_ignore_ascii_case("content-encoding"));
        }
        headers.retain(|(n, _)| !HOP_BY_HOP.iter().any(|h| n.eq_ignore_ascii_case(h)));
        Self { status, reason, headers, body }
    }
}

/// `HTTP/1.x CODE REASON`: the code and the reason phrase.
fn parse_status_line(line: &[u8]) -> Option<(u16, Vec<u8>)> {
    let rest = line.strip_prefix(b"HTTP/")?;
    let after_version = &rest[rest.iter().position(|&b| b == b' ')?..];
    let text = after_version.trim_ascii_start();
    let code = text.get(..3).filter(|c| c.iter().all(u8::is_ascii_digit))?;
    let status: u16 = std::str::from_utf8(code).ok()?.parse().ok().filter(|s| (100..1000).contains(s))?;
    Some((status, text[3..].trim_ascii().to_vec()))
}

/// Header fields from head lines; an obsolete continuation line joins the previous value.
fn parse_fields<'a>(lines: impl Iterator<Item = &'a [u8]>) -> Vec<(String, Vec<u8>)> {
    let mut headers: Vec<(String, Vec<u8>)> = Vec::new();
    for line in lines {
        if line.starts_with(b" ") || line.starts_with(b"\t") {
            if let Some((_, value)) = headers.last_mut() {
                value.push(b' ');
                value.extend_from_slice(line.trim_ascii());
            }
            continue;
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else { continue };
        let name = String::from_utf8_lossy(line[..colon].trim_ascii()).into_owned();
        headers.push((name, line[colon + 1..].trim_ascii().to_vec()));
    }
    headers
}

/// A line without its final `\r`.
fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Splits an HTTP message at the blank line after its head (CRLF or bare LF).
fn split_head(block: &[u8]) -> Option<(&[u8], &[u8])> {
    let crlf = block.windows(4).position(|w| w == b"\r\n\r\n").map(|i| (i, i + 4));
    let lf = block.windows(2).position(|w| w == b"\n\n").map(|i| (i, i + 2));
    let (end, body) = match (crlf, lf) {
        (Some(a), Some(b)) => if a.0 <= b.0 { a } else { b },
        (Some(a), None) | (None, Some(a)) => a,
        // A head with no body at all.
        (None, None) => (block.len(), block.len()),
    };
    Some((&block[..end], &block[body..]))
}

/// Removes chunked transfer coding; `None` when the framing is broken from the start. A body
/// cut short (a truncated record) keeps the chunks, or the part of one, that it holds.
fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(data.len());
    let salvage = |out: Vec<u8>| (!out.is_empty()).then_some(out);
    loop {
        let Some(line_end) = data.windows(2).position(|w| w == b"\r\n") else { return salvage(out) };
        let size_text = String::from_utf8_lossy(&data[..line_end]);
        let size_field = size_text.split(';').next().unwrap_or_default().trim();
        let Ok(size) = usize::from_str_radix(size_field, 16) else { return salvage(out) };
        data = &data[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        let held = size.min(data.len());
        out.extend_from_slice(&data[..held]);
        if held < size {
            return salvage(out);
        }
        data = &data[size..];
        data = data.strip_prefix(b"\r\n").unwrap_or(data);
    }
}

/// Removes a `gzip` or `deflate` content coding; `None` when the bytes do not decode.
fn decode(coding: &str, body: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let read = match coding {
        "gzip" | "x-gzip" => flate2::read::MultiGzDecoder::new(body).read_to_end(&mut out),
        // Servers send both zlib-wrapped and raw deflate under this name.
        "deflate" => flate2::read::ZlibDecoder::new(body)
            .read_to_end(&mut out)
            .or_else(|_| {
                out.clear();
                flate2::read::DeflateDecoder::new(body).read_to_end(&mut out)
            }),
        _ => return None,
    };
    read.ok().map(|_| out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(pairs: &[(&str, &str)]) -> Vec<(String, Vec<u8>)> {
        pairs.iter().map(|(n, v)| ((*n).to_owned(), v.as_bytes().to_vec())).collect()
    }

    #[test]
    fn parses_status_headers_and_body() {
        let block = b"HTTP/1.1 200 Fine Thanks\r\nContent-Type: image/png\r\nX-Robots-Tag: noai\r\nX-Robots-Tag: nofollow\r\nContent-Length: 4\r\nConnection: close\r\nX-Latin: caf\xe9\r\n\r\nPNG!";
        let response = ArchivedResponse::parse(block).unwrap();
        assert_eq!((response.status, response.reason.as_slice()), (200, b"Fine Thanks".as_slice()));
        assert_eq!(response.body, b"PNG!");
        let mut expected = fields(&[("Content-Type", "image/png"), ("X-Robots-Tag", "noai"), ("X-Robots-Tag", "nofollow")]);
        expected.push(("X-Latin".to_owned(), b"caf\xe9".to_vec()));
        assert_eq!(response.headers, expected);
        assert!(ArchivedResponse::parse(b"GET / HTTP/1.1\r\n\r\n").is_none());
        assert!(ArchivedResponse::parse(b"HTTP/1.1 2x0 OK\r\n\r\n").is_none());
    }

    #[test]
    fn passes_over_interim_heads() {
        let block = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 404\r\nContent-Type: text/plain\r\n\r\ngone";
        let response = ArchivedResponse::parse(block).unwrap();
        assert_eq!((response.status, response.reason.as_slice(), response.body.as_slice()), (404, b"".as_slice(), b"gone".as_slice()));
    }

    #[test]
    fn removes_chunking_and_gzip() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut gz, b"hello, archive").unwrap();
        let gz = gz.finish().unwrap();
        let mut chunked = format!("{:x}\r\n", 5).into_bytes();
        chunked.extend_from_slice(&gz[..5]);
        chunked.extend_from_slice(format!("\r\n{:x};ext=1\r\n", gz.len() - 5).as_bytes());
        chunked.extend_from_slice(&gz[5..]);
        chunked.extend_from_slice(b"\r\n0\r\n\r\n");
        let mut block = b"HTTP/1.0 302 Found\nTransfer-Encoding: chunked\nContent-Encoding: gzip\nLocation: /x\n\n".to_vec();
        block.extend_from_slice(&chunked);
        let response = ArchivedResponse::parse(&block).unwrap();
        assert_eq!(response.status, 302);
        assert_eq!(response.body, b"hello, archive");
        assert_eq!(response.headers, fields(&[("Location", "/x")]));
    }

    #[test]
    fn keeps_what_a_truncated_chunked_body_holds() {
        let block = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nJPEG\r\n10\r\nshort";
        assert_eq!(ArchivedResponse::parse(block).unwrap().body, b"JPEGshort");
    }

    #[test]
    fn keeps_bodies_whose_coding_is_broken() {
        let block = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n\r\nnot gzip";
        let response = ArchivedResponse::parse(block).unwrap();
        assert_eq!(response.body, b"not gzip");
        assert_eq!(response.headers, fields(&[("Content-Encoding", "gzip")]));
    }
}
