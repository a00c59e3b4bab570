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

/// Sends `request` (a whole HTTP/1.1 request head, `Connection: close`) to `addr`; (head,
/// body) of the answer. A server that keeps the connection open fails the test, not hangs it.
fn exchange(addr: SocketAddr, request: &str) -> (String, Vec<u8>) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let end = response.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&response[..end]).into_owned();
    (head, response[end + 4..].to_vec())
}

/// GETs `url` through the proxy at `addr` as a proxy client does (absolute-form).
fn get(addr: SocketAddr, url: &str) -> (String, Vec<u8>) {
    exchange(addr, &format!("GET {url} HTTP/1.1\r\nHost: ignored\r\nConnection: close\r\n\r\n"))
}

/// A gzip WARC, one member per record, of small test responses.
fn tiny_warc(dir: &Path) -> (PathBuf, Vec<u8>) {
    let mut warc = Vec::new();
    warc.extend(gzip(b"WARC/1.1\r\nWARC-Type: warcinfo\r\nContent-Length: 0\r\n\r\n\r\n\r\n"));
    warc.extend(gzip(&record("https://secure.example/a.png", b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\n\r\nPNGDATA")));
    warc.extend(gzip(&record(
        "<http://chunked.example/b.jpg>",
        b"HTTP/1.1 200 Fine\r\nTransfer-Encoding: chunked\r\nX-Robots-Tag: noai\r\nX-Robots-Tag: noindex\r\n\r\n4\r\nJPEG\r\n3\r\n!!!\r\n0\r\n\r\n",
    )));
    warc.extend(gzip(&record("http://moved.example/c", b"HTTP/1.1 301 Moved Permanently\r\nLocation: http://secure.example/a.png\r\n\r\n")));
    warc.extend(gzip(&record("dns:moved.example", b"20080430204825\nmoved.example. 3600 IN A 10.0.0.1")));
    // Damage: a member that is no record, a web response that is no HTTP, a later duplicate.
    warc.extend(gzip(b"this is no WARC record\r\n"));
    warc.extend(gzip(&record("http://broken.example/", b"<html>no status line</html>")));
    warc.extend(gzip(&record("http://moved.example/c", b"HTTP/1.1 200 OK\r\n\r\nsecond")));
    let path = dir.join("tiny.warc.gz");
    std::fs::write(&path, &warc).unwrap();
    (path, warc)
}

#[test]
fn replays_the_archived_images_of_a_real_crawl() {
    let server = ReplayServer::start(&[crawl()]).unwrap();
    // 260 http + 1 https responses; the 38 dns: responses are no web responses.
    assert_eq!(server.urls(), 261);
    assert_eq!(server.skipped(), 0);
    let images: Vec<&str> = server
        .targets()
        .filter(|url| {
            let archived = server.index.response(url).unwrap().unwrap();
            archived.status == 200
                && archived.headers.iter().any(|(n, v)| n.eq_ignore_ascii_case("content-type") && v.starts_with(b"image/"))
        })
        .collect();
    assert_eq!(images.len(), 55);
    for url in images.iter().step_by(11) {
        let (head, body) = get(server.addr(), url);
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(head.to_ascii_lowercase().contains("content-type: image/"), "{head}");
        assert!(!body.is_empty());
        assert_eq!(body, server.payload(url).unwrap());
        // HEAD: the same head, the length of the body, no body.
        let (head, body) = exchange(server.addr(), &format!("HEAD {url} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"));
        assert!(head.contains(&format!("content-length: {}", server.payload(url).unwrap().len())), "{head}");
        assert!(body.is_empty());
    }
    let (head, body) = get(server.addr(), "http://www.archive.org/no-such-thing.jpg");
    assert!(head.starts_with("HTTP/1.1 404 Not Found\r\n"), "{head}");
    assert_eq!(body, b"not in the archive\n");
    assert!(server.payload("http://www.archive.org/no-such-thing.jpg").is_none());
}

#[test]
fn serves_https_records_for_http_chunked_bodies_and_redirects() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = tiny_warc(dir.path());
    let server = ReplayServer::start(std::slice::from_ref(&path)).unwrap();
    assert_eq!(server.targets().collect::<Vec<_>>(), ["https://secure.example/a.png", "http://chunked.example/b.jpg", "http://moved.example/c"]);
    assert_eq!(server.skipped(), 2, "the stray member and the response without HTTP");

    let (head, body) = get(server.addr(), "http://secure.example/a.png");
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert_eq!(body, b"PNGDATA");
    assert_eq!(server.payload("http://secure.example/a.png").unwrap(), b"PNGDATA");

    let (head, body) = get(server.addr(), "http://chunked.example/b.jpg");
    assert!(head.starts_with("HTTP/1.1 200 Fine\r\n"), "the archived reason: {head}");
    let lower = head.to_ascii_lowercase();
    assert!(lower.contains("x-robots-tag: noai\r\nx-robots-tag: noindex"), "{head}");
    assert!(!lower.contains("transfer-encoding") && lower.contains("content-length: 7"), "{head}");
    assert_eq!(body, b"JPEG!!!");
    assert_eq!(server.payload("http://chunked.example/b.jpg").unwrap(), b"JPEG!!!");

    // Origin-form with a Host header; the first of two records of a URL.
    let (head, body) = exchange(server.addr(), "GET /c HTTP/1.1\r\nHost: moved.example\r\nConnection: close\r\n\r\n");
    assert!(head.starts_with("HTTP/1.1 301 Moved Permanently"), "{head}");
    assert!(head.contains("location: http://secure.example/a.png"), "{head}");
    assert!(body.is_empty());

    let (head, _) = exchange(server.addr(), "CONNECT secure.example:443 HTTP/1.1\r\nHost: secure.example:443\r\nConnection: close\r\n\r\n");
    assert!(head.starts_with("HTTP/1.1 501"), "{head}");
    let (head, _) = get(server.addr(), "http://broken.example/");
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
}

#[test]
fn reads_plain_and_single_member_files() {
    let dir = tempfile::tempdir().unwrap();
    let (_, warc) = tiny_warc(dir.path());
    // The same records uncompressed, and as one gzip member holding them all.
    let mut plain = Vec::new();
    flate2::read::MultiGzDecoder::new(warc.as_slice()).read_to_end(&mut plain).unwrap();
    let plain_path = dir.path().join("tiny.warc");
    std::fs::write(&plain_path, &plain).unwrap();
    let one_member = dir.path().join("one.warc.gz");
    std::fs::write(&one_member, gzip(&plain)).unwrap();
    for path in [plain_path, one_member] {
        let server = ReplayServer::start(std::slice::from_ref(&path)).unwrap();
        assert_eq!((server.urls(), server.skipped()), (3, 2), "{}", path.display());
        assert_eq!(server.payload("http://chunked.example/b.jpg").unwrap(), b"JPEG!!!", "{}", path.display());
        assert_eq!(server.payload("http://secure.example/a.png").unwrap(), b"PNGDATA", "{}", path.display());
        assert_eq!(server.payload("http://moved.example/c").unwrap(), b"", "{}", path.display());
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
    let gzipped_text = dir.path().join("notes.txt.gz");
    std::fs::write(&gzipped_text, gzip(b"not an archive either")).unwrap();
    for path in [text, gzipped_text] {
        assert!(matches!(ReplayServer::start(&[path]), Err(ReplayError::NotWarc(_))));
    }
    assert!(matches!(ReplayServer::start(&[dir.path().join("missing.warc.gz")]), Err(ReplayError::Open { .. })));
}
