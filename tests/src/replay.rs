//! Test helpers around the downloader's WARC replay server: what it answers for each archived
//! URL, and pair shards of URLs as stage a writes them.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;

use cascade_stages::download::ReplayServer;
use cascade_stages::wat::{Pair, PairWriter};

/// What the replay server answers for every archived `http://` URL: (status, content type),
/// asked for as a proxy client asks (absolute-form request).
///
/// # Panics
/// When the server cannot be reached.
pub fn archived_answers(replay: &ReplayServer) -> BTreeMap<String, (u16, String)> {
    replay
        .targets()
        .filter(|url| url.starts_with("http://"))
        .map(|url| {
            let mut stream = TcpStream::connect(replay.addr()).expect("the replay server answers");
            write!(stream, "HEAD {url} HTTP/1.1\r\nHost: replay\r\nConnection: close\r\n\r\n").expect("request sent");
            let mut head = String::new();
            stream.read_to_string(&mut head).expect("response read");
            let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
            let kind = head
                .lines()
                .find_map(|line| {
                    let (name, value) = line.split_once(':')?;
                    name.eq_ignore_ascii_case("content-type").then(|| value.trim().to_owned())
                })
                .unwrap_or_default();
            (url.to_owned(), (status, kind))
        })
        .collect()
}

/// Writes a pair shard of `urls` to `path`: uid = the row number, alt = `caption(i)`.
///
/// # Panics
/// When the file cannot be written.
pub fn write_pairs(path: &Path, urls: &[String], caption: impl Fn(usize) -> String) {
    let mut writer = PairWriter::create(path, 1000).expect("pair shard created");
    let pairs = urls
        .iter()
        .enumerate()
        .map(|(i, url)| Pair {
            uid: format!("{i:032x}"),
            url: url.clone(),
            alt: caption(i),
            cc_filename: "ia-archive-org-2008.warc.gz".to_owned(),
            page_url: "http://www.archive.org/".to_owned(),
        })
        .collect();
    writer.write(pairs).expect("pairs written");
    writer.finish().expect("pair shard finished");
}
