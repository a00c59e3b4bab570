//! Extraction settings: parallelism, memory bounds and the optional LAION-5B filters.

use serde::{Deserialize, Serialize};

/// How a WAT file is read and which pairs are kept.
///
/// Deserialises from the kebab-case keys of `cascade.toml`; every key is optional.
///
/// ```
/// let opts: cascade_stages::wat::WatOptions =
///     serde_json::from_str(r#"{"threads": 2, "filters": {"min-alt-chars": 5}}"#).unwrap();
/// assert_eq!(opts.filters.min_alt_chars, Some(5));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct WatOptions {
    /// Parser threads of the rayon pool that [`extract_file`](super::extract_file) builds.
    /// `0` parses on the calling thread (no pool, no pipelining). Decompression always runs on
    /// the calling thread, in parallel with the parsers.
    pub threads: usize,
    /// Decompressed bytes per parse batch (the unit of parallel work).
    pub batch_bytes: usize,
    /// Records with a larger body are skipped (and counted) instead of buffered.
    pub max_record_bytes: u64,
    /// Rows per parquet row group (bounds the writer's memory).
    pub row_group_rows: usize,
    /// Optional quality filters, all off by default.
    pub filters: WatFilters,
}

impl Default for WatOptions {
    fn default() -> Self {
        Self {
            threads: std::thread::available_parallelism().map_or(1, usize::from),
            batch_bytes: 1 << 20,
            max_record_bytes: 64 << 20,
            row_group_rows: 128 * 1024,
            filters: WatFilters::default(),
        }
    }
}

/// LAION-5B style pair filters. Each is off when unset; [`WatFilters::laion5b`] turns all on.
///
/// Lengths count Unicode scalar values (Python `len`), except the host, which is ASCII in
/// practice and counted in bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct WatFilters {
    /// Drop pairs whose alt text has fewer characters.
    pub min_alt_chars: Option<usize>,
    /// Drop pairs whose URL contains any of these substrings (ASCII case-insensitive).
    pub blocked_url_patterns: Vec<String>,
    /// Drop pairs whose URL has no host.
    pub require_host: bool,
    /// Drop pairs whose host is longer.
    pub max_host_chars: Option<usize>,
    /// Drop pairs whose URL is longer.
    pub max_url_chars: Option<usize>,
    /// Drop pairs whose alt text is longer.
    pub max_alt_chars: Option<usize>,
    /// Keep only the first pair of each `uid` within one file.
    pub dedup_uid: bool,
}

impl WatFilters {
    /// The LAION-5B settings: alt ≥ 5 characters; no `.svg`, `.gif`, `data:image` or
    /// `javascript:` URLs; a host of at most 60 characters; URL and alt at most 2,000
    /// characters; one pair per `uid` in a file.
    #[must_use]
    pub fn laion5b() -> Self {
        Self {
            min_alt_chars: Some(5),
            blocked_url_patterns: [".svg", ".gif", "data:image", "javascript:"].map(String::from).to_vec(),
            require_host: true,
            max_host_chars: Some(60),
            max_url_chars: Some(2000),
            max_alt_chars: Some(2000),
            dedup_uid: true,
        }
    }
}
