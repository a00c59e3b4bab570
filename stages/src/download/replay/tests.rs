use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};

use super::*;

fn crawl() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/warc/ia-archive-org-2008.warc.gz")
}

/// One WARC response record for `uri` whose block is `http`.
fn record(uri: &str, http: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "WARC/1.0\r\nWARC-Type: response\r\nWARC-Target-URI: {uri}\r\nContent-Type: application/http; msgtype=response\r\nContent-Length: {}\r\n\r\n",
        http.len()
    )
    .into_bytes();
    out.extend_from_slice(http);
    out.extend_from_slice(b"\r\n\r\n");
    out
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// GETs `url` through the proxy at `addr` with a hand-written request; (status line, body).
fn get(addr: SocketAddr, url: &str) -> (String, Vec<u8>) {
    let mut stream = TcpStream::connect(addr).unwrap();
    write!(stream, "GET {url} HTTP/1.1\r\nHost: ignored\r\nConnection: close\r\n\r\n").unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let end = response.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&response[..end]).into_owned();
    (head, response[end + 4..].to_vec())
}

#[test]
fn replays_the_archived_images_of_a_real_crawl() {
    let server = ReplayServer::start(&[crawl()]).unwrap();
    assert!(server.urls() >= 250, "{} URLs", server.urls());
    let images: Vec<&str> = server
        .targets()
        .filter(|url| server.index.response(url).is_some_and(|r| {
            r.status == 200 && r.headers.iter().any(|(n, v)| n.eq_ignore_ascii_case("content-type") && v.starts_with("image/"))
        }))
        .collect();
    assert_eq!(images.len(), 55);
    for url in images.iter().take(5) {
        let (head, body) = get(server.addr(), url);
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(head.to_ascii_lowercase().contains("content-type: image/"), "{head}");
        assert_eq!(body, server.payload(url).unwrap());
        assert!(!body.is_empty());
    }
    let (head, _) = get(server.addr(), "http://www.archive.org/no-such-thing.jpg");
    assert!(head.starts_with("HTTP/1.1 404 Not Found"), "{head}");
}

#[test]
fn serves_https_records_for_http_chunked_bodies_and_redirects() {
    let dir = tempfile::tempdir().unwrap();
    let mut warc = Vec::new();
    warc.extend(gzip(b"WARC/1.0\r\nWARC-Type: warcinfo\r\nContent-Length: 0\r\n\r\n\r\n\r\n"));
    warc.extend(gzip(&record("https://secure.example/a.png", b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\n\r\nPNGDATA")));
    warc.extend(gzip(&record(
        "<http://chunked.example/b.jpg>",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Robots-Tag: noai\r\n\r\n4\r\nJPEG\r\n3\r\n!!!\r\n0\r\n\r\n",
    )));
    warc.extend(gzip(&record("http://moved.example/c", b"HTTP/1.1 301 Moved Permanently\r\nLocation: http://secure.example/a.png\r\n\r\n")));
    warc.extend(gzip(&record("dns:moved.example", b"20080430204825\nmoved.example. 3600 IN A 10.0.0.1")));
    let path = dir.path().join("tiny.warc.gz");
    std::fs::write(&path, &warc).unwrap();
    let server = ReplayServer::start(std::slice::from_ref(&path)).unwrap();
    assert_eq!(server.urls(), 3, "dns: records are not web responses");

    let (head, body) = get(server.addr(), "http://secure.example/a.png");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(body, b"PNGDATA");
    let (head, body) = get(server.addr(), "http://chunked.example/b.jpg");
    assert!(head.to_ascii_lowercase().contains("x-robots-tag: noai"), "{head}");
    assert_eq!(body, b"JPEG!!!");
    assert_eq!(server.payload("http://chunked.example/b.jpg").unwrap(), b"JPEG!!!");
    let (head, _) = get(server.addr(), "http://moved.example/c");
    assert!(head.starts_with("HTTP/1.1 301"), "{head}");
    assert!(head.contains("http://secure.example/a.png"), "{head}");

    // The same records uncompressed, and as one gzip member holding them all.
    let mut plain = Vec::new();
    flate2::read::MultiGzDecoder::new(warc.as_slice()).read_to_end(&mut plain).unwrap();
    let plain_path = dir.path().join("tiny.warc");
    std::fs::write(&plain_path, &plain).unwrap();
    let one_member = dir.path().join("one.warc.gz");
    std::fs::write(&one_member, gzip(&plain)).unwrap();
    for path in [plain_path, one_member] {
        let server = ReplayServer::start(std::slice::from_ref(&path)).unwrap();
        assert_eq!(server.urls(), 3, "{}", path.display());
        assert_eq!(server.payload("http://chunked.example/b.jpg").unwrap(), b"JPEG!!!", "{}", path.display());
        assert_eq!(server.payload("http://secure.example/a.png").unwrap(), b"PNGDATA", "{}", path.display());
    }
}

#[test]
fn a_truncated_archive_serves_what_it_holds_and_other_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let whole = std::fs::read(crawl()).unwrap();
    let half = dir.path().join("half.warc.gz");
    std::fs::write(&half, &whole[..whole.len() / 2]).unwrap();
    let full = ReplayServer::start(&[crawl()]).unwrap();
    let server = ReplayServer::start(std::slice::from_ref(&half)).unwrap();
    assert!(server.urls() > 10 && server.urls() < full.urls(), "{} of {}", server.urls(), full.urls());
    for url in server.targets() {
        assert_eq!(server.payload(url), full.payload(url), "{url}");
    }

    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "not an archive").unwrap();
    assert!(matches!(ReplayServer::start(&[text]), Err(ReplayError::NotWarc(_))));
    assert!(matches!(ReplayServer::start(&[dir.path().join("missing.warc.gz")]), Err(ReplayError::Open { .. })));
}
