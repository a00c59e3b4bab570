//! What a download reports: per shard (img2dataset's `_stats.json`) and per input file (the
//! job's output).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::stage::{ArtifactError, OutputDir};

/// A sample's outcome, img2dataset's `status` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Downloaded, decoded and resized: the sample is in the tar.
    Success,
    /// The bytes could not be had (HTTP error, timeout, robots opt-out, size limits).
    FailedToDownload,
    /// The bytes are not an acceptable image (undecodable, too small, too large…).
    FailedToResize,
}

impl Status {
    /// The value written in the metadata.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::FailedToDownload => "failed_to_download",
            Self::FailedToResize => "failed_to_resize",
        }
    }
}

/// Counts of samples by outcome, and of outcomes by message (img2dataset's `status_dict`:
/// `"success"` and each error message), in the order first seen.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Samples (input rows).
    pub count: u64,
    /// Samples in the tar.
    pub successes: u64,
    /// Samples whose bytes could not be had.
    pub failed_to_download: u64,
    /// Samples whose bytes are not an acceptable image.
    pub failed_to_resize: u64,
    /// Samples by `"success"` or error message.
    #[serde(with = "ordered_counts")]
    pub status_dict: Vec<(String, u64)>,
}

impl Counts {
    /// Counts one sample with `status` and its message (`"success"` for successes).
    pub fn add(&mut self, status: Status, message: &str) {
        self.count += 1;
        match status {
            Status::Success => self.successes += 1,
            Status::FailedToDownload => self.failed_to_download += 1,
            Status::FailedToResize => self.failed_to_resize += 1,
        }
        self.add_message(message, 1);
    }

    /// Adds `other`'s counts to these.
    pub fn merge(&mut self, other: &Self) {
        self.count += other.count;
        self.successes += other.successes;
        self.failed_to_download += other.failed_to_download;
        self.failed_to_resize += other.failed_to_resize;
        for (message, n) in &other.status_dict {
            self.add_message(message, *n);
        }
    }

    fn add_message(&mut self, message: &str, n: u64) {
        match self.status_dict.iter_mut().find(|(m, _)| m == message) {
            Some((_, count)) => *count += n,
            None => self.status_dict.push((message.to_owned(), n)),
        }
    }
}

/// One written shard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardSummary {
    /// The webdataset tar (successes only).
    pub shard: PathBuf,
    /// The metadata parquet (every input row).
    pub parquet: PathBuf,
    /// The `_stats.json`.
    pub stats: PathBuf,
    /// Its counts.
    #[serde(flatten)]
    pub counts: Counts,
    /// Seconds spent on it.
    pub duration: f64,
}

/// One input file's download: the job output of stage `download`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DownloadSummary {
    /// The pair shard read.
    pub input: PathBuf,
    /// The shards written, in order.
    pub shards: Vec<ShardSummary>,
    /// The counts of all shards together.
    #[serde(flatten)]
    pub counts: Counts,
}

impl DownloadSummary {
    /// Publishes every shard through `out`, in order and each one's `_stats.json` last (it marks
    /// the shard complete), and names each file as the next stage reads it: its path, or its
    /// `s3://` URL once uploaded (see [`OutputDir::publish`]).
    ///
    /// # Errors
    /// As [`OutputDir::publish`].
    pub fn publish(&mut self, out: &OutputDir) -> Result<(), ArtifactError> {
        for shard in &mut self.shards {
            shard.shard = out.publish(&shard.shard)?;
            shard.parquet = out.publish(&shard.parquet)?;
            shard.stats = out.publish(&shard.stats)?;
        }
        Ok(())
    }
}

/// `Vec<(String, u64)>` as a JSON object in its order.
mod ordered_counts {
    use serde::de::{MapAccess, Visitor};
    use serde::ser::SerializeMap;
    use serde::{Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(counts: &[(String, u64)], serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(counts.len()))?;
        for (key, value) in counts {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<(String, u64)>, D::Error> {
        struct Ordered;
        impl<'de> Visitor<'de> for Ordered {
            type Value = Vec<(String, u64)>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object of counts")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    out.push(entry);
                }
                Ok(out)
            }
        }
        deserializer.deserialize_map(Ordered)
    }
}
