//! [`ArchivedResponse`]: the HTTP response stored in a WARC `response` record, ready to be
//! served again: status, headers, and the body with its transfer and content codings removed.

use std::io::Read;

/// An archived HTTP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ArchivedResponse {
    pub(crate) status: u16,
    /// Header lines in archive order, repeated names kept; framing headers removed.
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

/// Headers that describe the archived connection or framing, not the resource.
const HOP_BY_HOP: [&str; 6] = ["transfer-encoding", "connection", "keep-alive", "content-length", "proxy-connection", "upgrade"];

impl ArchivedResponse {
    /// Parses a `response` record's block (`HTTP/1.x CODE REASON`, headers, body); `None` when
    /// it is not an HTTP response.
    pub(crate) fn parse(block: &[u8]) -> Option<Self> {
        let (head, body) = split_head(block)?;
        let head = String::from_utf8_lossy(head);
        let mut lines = head.lines();
        let status_line = lines.next()?;
        let mut parts = status_line.split_whitespace();
        if !parts.next()?.starts_with("HTTP/") {
            return None;
        }
        let status: u16 = parts.next()?.parse().ok().filter(|s| (100..1000).contains(s))?;
        let mut headers: Vec<(String, String)> = Vec::new();
        for line in lines {
            if line.starts_with([' ', '\t']) {
                // An obsolete continuation line: part of the previous header's value.
                if let Some((_, value)) = headers.last_mut() {
                    value.push(' ');
                    value.push_str(line.trim());
                }
                continue;
            }
            if let Some((name, value)) = line.split_once(':') {
                headers.push((name.trim().to_owned(), value.trim().to_owned()));
            }
        }
        let has = |name: &str, value: &str| {
            headers.iter().any(|(n, v)| n.eq_ignore_ascii_case(name) && v.to_ascii_lowercase().contains(value))
        };
        let mut body = body.to_vec();
        if has("transfer-encoding", "chunked") {
            if let Some(dechunked) = dechunk(&body) {
                body = dechunked;
            }
        }
        let coding = ["gzip", "deflate"].into_iter().find(|c| has("content-encoding", c));
        if let Some(decoded) = coding.and_then(|c| decode(c, &body)) {
            body = decoded;
            headers.retain(|(n, _)| !n.eq_ignore_ascii_case("content-encoding"));
        }
        headers.retain(|(n, _)| !HOP_BY_HOP.iter().any(|h| n.eq_ignore_ascii_case(h)));
        Some(Self { status, headers, body })
    }
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

/// Removes chunked transfer coding; `None` when the framing is broken.
fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(data.len());
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&data[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size..)?;
        data = data.strip_prefix(b"\r\n").unwrap_or(data);
    }
}

/// Removes a `gzip` or `deflate` content coding; `None` when the bytes do not decode.
fn decode(coding: &str, body: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let read = match coding {
        "gzip" => flate2::read::MultiGzDecoder::new(body).read_to_end(&mut out),
        // Servers send both zlib-wrapped and raw deflate under this name.
        _ => flate2::read::ZlibDecoder::new(body)
            .read_to_end(&mut out)
            .or_else(|_| {
                out.clear();
                flate2::read::DeflateDecoder::new(body).read_to_end(&mut out)
            }),
    };
    read.ok().map(|_| out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status_headers_and_body() {
        let block = b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nX-Robots-Tag: noai\r\nX-Robots-Tag: nofollow\r\nContent-Length: 4\r\nConnection: close\r\n\r\nPNG!";
        let response = ArchivedResponse::parse(block).unwrap();
        assert_eq!(response.status, 200);
        assert_eq!(response.body, b"PNG!");
        assert_eq!(
            response.headers,
            [("Content-Type", "image/png"), ("X-Robots-Tag", "noai"), ("X-Robots-Tag", "nofollow")]
                .map(|(n, v)| (n.to_owned(), v.to_owned()))
        );
        assert!(ArchivedResponse::parse(b"GET / HTTP/1.1\r\n\r\n").is_none());
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
        assert_eq!(response.headers, [("Location".to_owned(), "/x".to_owned())]);
    }

    #[test]
    fn keeps_bodies_whose_coding_is_broken() {
        let block = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n\r\nnot gzip";
        let response = ArchivedResponse::parse(block).unwrap();
        assert_eq!(response.body, b"not gzip");
        assert_eq!(response.headers, [("Content-Encoding".to_owned(), "gzip".to_owned())]);
    }
}
