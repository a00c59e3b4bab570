//! The per-file report: what was read, what was kept, what was skipped and why.

use serde::{Deserialize, Serialize};

/// Counters of one extraction, serialisable as job output.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct WatSummary {
    /// Whether the input was gzip (otherwise plain WARC).
    pub compressed: bool,
    /// Input bytes consumed (compressed size for gzip input).
    pub bytes_read: u64,
    /// Decompressed WARC bytes.
    pub bytes_decompressed: u64,
    /// Gzip members decoded and verified.
    pub gzip_members: u64,
    /// Gzip members dropped for a deflate error or a CRC/size mismatch.
    pub bad_gzip_members: u64,
    /// Compressed bytes skipped while resynchronising on the next gzip member header.
    pub garbage_bytes: u64,
    /// Decompressed bytes skipped while resynchronising on the next `WARC/` header.
    pub resync_bytes: u64,
    /// Input offset of the gzip member cut short by the end of the file, if any.
    pub truncated_at: Option<u64>,
    /// Complete WARC records.
    pub records: u64,
    /// `WARC-Type: metadata` records.
    pub metadata_records: u64,
    /// Metadata records with an `HTML-Metadata.Links` array.
    pub records_with_links: u64,
    /// Entries of all `Links` arrays.
    pub links: u64,
    /// `IMG@/src` links.
    pub img_links: u64,
    /// Pairs written (after filters and dedup).
    pub pairs: u64,
    /// Why records, links and pairs were dropped.
    pub skipped: SkipCounts,
}

/// Drop counters by reason.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SkipCounts {
    /// Records whose body is not UTF-8.
    pub invalid_utf8: u64,
    /// Records whose body is not JSON.
    pub invalid_json: u64,
    /// JSON records of an unexpected shape (e.g. `Envelope` not an object).
    pub unexpected_schema: u64,
    /// Records with links but no `Envelope`, `Payload-Metadata`, `WARC-Target-URI` or
    /// `Container.Filename`.
    pub missing_field: u64,
    /// Records larger than `max-record-bytes`.
    pub oversized_record: u64,
    /// Unfinished records lost to a damaged gzip member, garbage or the end of input.
    pub partial_record: u64,
    /// `request`/`response`/… records met after the first metadata record.
    pub non_wat_record: u64,
    /// `Links` entries that are not JSON objects.
    pub link_not_object: u64,
    /// `IMG@/src` links with alt text but no string `url`.
    pub link_missing_url: u64,
    /// `IMG@/src` links whose `alt` is not a string (e.g. `null`).
    pub link_bad_alt: u64,
    /// `IMG@/src` links with no or empty alt text (the cc2dataset rule, not damage).
    pub empty_alt: u64,
    /// Links whose resolved URL is not `http://` or `https://` (also the cc2dataset rule).
    pub non_http_url: u64,
    /// Filter: alt text shorter than `min-alt-chars`.
    pub alt_too_short: u64,
    /// Filter: alt text longer than `max-alt-chars`.
    pub alt_too_long: u64,
    /// Filter: URL longer than `max-url-chars`.
    pub url_too_long: u64,
    /// Filter: URL matched a blocked pattern.
    pub blocked_url: u64,
    /// Filter: no host, or host longer than `max-host-chars`.
    pub bad_host: u64,
    /// Filter: `uid` already seen in this file.
    pub duplicate_uid: u64,
}

impl WatSummary {
    /// Adds the record-level counters of a parsed batch (the stream-level fields are set by
    /// the reader and left alone).
    pub(crate) fn add_batch(&mut self, b: &WatSummary) {
        self.records_with_links += b.records_with_links;
        self.links += b.links;
        self.img_links += b.img_links;
        self.pairs += b.pairs;
        self.skipped.add(&b.skipped);
    }
}

impl SkipCounts {
    fn add(&mut self, o: &SkipCounts) {
        self.invalid_utf8 += o.invalid_utf8;
        self.invalid_json += o.invalid_json;
        self.unexpected_schema += o.unexpected_schema;
        self.missing_field += o.missing_field;
        self.oversized_record += o.oversized_record;
        self.partial_record += o.partial_record;
        self.non_wat_record += o.non_wat_record;
        self.link_not_object += o.link_not_object;
        self.link_missing_url += o.link_missing_url;
        self.link_bad_alt += o.link_bad_alt;
        self.empty_alt += o.empty_alt;
        self.non_http_url += o.non_http_url;
        self.alt_too_short += o.alt_too_short;
        self.alt_too_long += o.alt_too_long;
        self.url_too_long += o.url_too_long;
        self.blocked_url += o.blocked_url;
        self.bad_host += o.bad_host;
        self.duplicate_uid += o.duplicate_uid;
    }

    /// Records dropped for damage (bad UTF-8, JSON, shape or missing fields).
    #[must_use]
    pub fn bad_records(&self) -> u64 {
        self.invalid_utf8 + self.invalid_json + self.unexpected_schema + self.missing_field
    }
}
