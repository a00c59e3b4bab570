//! Webdataset tar shards (img2dataset's layout): the files of one sample are consecutive and
//! share a key, the path up to the first dot of the file name (`00000/000000012.jpg`,
//! `00000/000000012.txt`, `00000/000000012.json` → key `00000/000000012`).

use std::io::{self, Read, Write};

/// Image extensions, in the order of preference when a sample has several.
const IMAGE_EXTENSIONS: [&str; 4] = ["jpg", "jpeg", "png", "webp"];

/// One sample: its files in shard order, and the parts the filter uses.
#[derive(Debug, Clone, Default)]
pub(crate) struct Sample {
    pub(crate) key: String,
    /// `(path in the tar, mtime, bytes)` of every file of the sample.
    pub(crate) files: Vec<(String, u64, Vec<u8>)>,
}

impl Sample {
    fn file(&self, extensions: &[&str]) -> Option<&[u8]> {
        extensions.iter().find_map(|ext| {
            self.files
                .iter()
                .find(|(path, _, _)| extension(path).eq_ignore_ascii_case(ext))
                .map(|(_, _, bytes)| bytes.as_slice())
        })
    }

    /// The encoded image, if the sample has one.
    pub(crate) fn image(&self) -> Option<&[u8]> {
        self.file(&IMAGE_EXTENSIONS)
    }

    /// The caption (`.txt`, lossily decoded), if the sample has one.
    pub(crate) fn caption(&self) -> Option<String> {
        self.file(&["txt"]).map(|b| String::from_utf8_lossy(b).into_owned())
    }

    /// The `url` of the sample's `.json` metadata, if any.
    pub(crate) fn url(&self) -> Option<String> {
        let json: serde_json::Value = serde_json::from_slice(self.file(&["json"])?).ok()?;
        json.get("url")?.as_str().map(str::to_owned)
    }
}

/// `dir/name.ext.more` → `dir/name`.
fn key_of(path: &str) -> &str {
    let name_start = path.rfind('/').map_or(0, |i| i + 1);
    match path[name_start..].find('.') {
        Some(dot) => &path[..name_start + dot],
        None => path,
    }
}

/// `dir/name.ext.more` → `ext.more`.
fn extension(path: &str) -> &str {
    path[key_of(path).len()..].trim_start_matches('.')
}

/// Calls `each` with every sample of the tar stream `input`, in order.
///
/// Returns the read error that ended the stream early (a truncated or damaged tar), if any:
/// the samples before it have been delivered, the one being read is dropped.
///
/// # Errors
///
/// Whatever `each` returns stops the walk and is passed through.
pub(crate) fn for_each_sample<R: Read, E>(
    input: R,
    mut each: impl FnMut(Sample) -> Result<(), E>,
) -> Result<Option<io::Error>, E> {
    let mut archive = tar::Archive::new(input);
    let entries = match archive.entries() {
        Ok(entries) => entries,
        Err(e) => return Ok(Some(e)),
    };
    let mut current = Sample::default();
    for entry in entries {
        let read = entry.and_then(|mut entry| {
            if !entry.header().entry_type().is_file() {
                return Ok(None);
            }
            let path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            let mtime = entry.header().mtime().unwrap_or(0);
            // The header's size is untrusted: reserve at most 16 MiB up front.
            let mut bytes = Vec::with_capacity(entry.size().min(16 << 20) as usize);
            entry.read_to_end(&mut bytes)?;
            Ok(Some((path, mtime, bytes)))
        });
        let (path, mtime, bytes) = match read {
            Ok(Some(file)) => file,
            Ok(None) => continue,
            Err(e) => return Ok(Some(e)),
        };
        let key = key_of(&path);
        if key != current.key && !current.files.is_empty() {
            each(std::mem::take(&mut current))?;
        }
        if current.files.is_empty() {
            current.key = key.to_owned();
        }
        current.files.push((path, mtime, bytes));
    }
    if !current.files.is_empty() {
        each(current)?;
    }
    Ok(None)
}

/// Appends whole samples to a webdataset tar.
pub(crate) struct SampleWriter<W: Write> {
    builder: tar::Builder<W>,
}

impl<W: Write> SampleWriter<W> {
    pub(crate) fn new(out: W) -> Self {
        Self { builder: tar::Builder::new(out) }
    }

    /// Writes every file of `sample`, with its path and modification time.
    pub(crate) fn append(&mut self, sample: &Sample) -> io::Result<()> {
        for (path, mtime, bytes) in &sample.files {
            let mut header = tar::Header::new_gnu();
            header.set_size(bytes.len() as u64);
            header.set_mode(0o644);
            header.set_mtime(*mtime);
            header.set_entry_type(tar::EntryType::Regular);
            self.builder.append_data(&mut header, path, bytes.as_slice())?;
        }
        Ok(())
    }

    /// Writes the end-of-archive marker and returns the writer.
    pub(crate) fn finish(self) -> io::Result<W> {
        self.builder.into_inner()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_cut_at_the_first_dot_of_the_name() {
        assert_eq!(key_of("00000/000000012.jpg"), "00000/000000012");
        assert_eq!(key_of("a.b/c.seg.png"), "a.b/c");
        assert_eq!(extension("a.b/c.seg.png"), "seg.png");
        assert_eq!(key_of("noext"), "noext");
    }

    #[test]
    fn groups_consecutive_files_and_round_trips() {
        let mut writer = SampleWriter::new(Vec::new());
        let a = Sample {
            key: "s/1".into(),
            files: vec![
                ("s/1.jpg".into(), 7, b"img".to_vec()),
                ("s/1.txt".into(), 7, b"a cat".to_vec()),
                ("s/1.json".into(), 7, br#"{"url": "http://x/1.jpg"}"#.to_vec()),
            ],
        };
        let b = Sample { key: "s/2".into(), files: vec![("s/2.txt".into(), 8, b"no image".to_vec())] };
        writer.append(&a).unwrap();
        writer.append(&b).unwrap();
        let tar = writer.finish().unwrap();
        let mut seen = Vec::new();
        let end = for_each_sample(tar.as_slice(), |s| {
            seen.push(s);
            Ok::<_, ()>(())
        })
        .unwrap();
        assert!(end.is_none());
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[0].image(), Some(b"img".as_slice()));
        assert_eq!(seen[0].caption().as_deref(), Some("a cat"));
        assert_eq!(seen[0].url().as_deref(), Some("http://x/1.jpg"));
        assert_eq!(seen[1].image(), None);
        assert_eq!(seen[1].files[0].1, 8);
        // A tar cut in the middle of a file delivers the samples before it and reports why.
        let cut = &tar[..1024 + 100];
        let mut n = 0;
        let end = for_each_sample(cut, |_| {
            n += 1;
            Ok::<_, ()>(())
        })
        .unwrap();
        assert!(end.is_some());
        assert_eq!(n, 0);
    }
}
