//! Parsing one WAT metadata record (JSON) into image/alt pairs, with cc2dataset 1.5.0's rules.
//!
//! Only the path `Envelope > Payload-Metadata > HTTP-Response-Metadata > HTML-Metadata >
//! {Head.Base, Links}` plus `Container.Filename` and `Envelope.WARC-Header-Metadata.
//! WARC-Target-URI` is materialised; everything else is skipped without allocation, and
//! strings are borrowed from the record unless they contain escapes. Of the `Links` array only
//! `IMG@/src` entries are kept.
//!
//! Records are read by a single-pass reader (`fast`) that fills the serde model below; where it
//! cannot vouch for serde_json's answer (and for every bad record) the record is parsed by
//! serde_json into the same model, which decides and classifies the error.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

use super::batch::PairSink;
use super::options::WatFilters;
use super::summary::WatSummary;
use super::urljoin::{clean, hostname, urljoin, Resolver};

mod fast;
mod stops;

/// One image URL with its alt text, as written to parquet.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Pair {
    /// Lowercase hex MD5 of `alt` followed by `url` (UTF-8), as cc2dataset computes it.
    pub uid: String,
    /// Absolute `http(s)` image URL.
    pub url: String,
    /// The `alt` attribute, as the WAT gives it.
    pub alt: String,
    /// `Container.Filename`: the WARC file the page was crawled into.
    pub cc_filename: String,
    /// `WARC-Target-URI` of the page.
    pub page_url: String,
}

/// Why a metadata record produced no pairs at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[must_use]
pub enum RecordError {
    /// The body is not valid UTF-8.
    #[error("record body is not UTF-8")]
    InvalidUtf8,
    /// The body is not valid JSON.
    #[error("record body is not valid JSON")]
    InvalidJson,
    /// Valid JSON of an unexpected shape (an object where a string belongs, or similar).
    #[error("record JSON has an unexpected shape")]
    UnexpectedSchema,
    /// A field cc2dataset indexes directly is missing.
    #[error("record JSON lacks `{0}`")]
    MissingField(&'static str),
}

/// Parses one metadata record body and appends its pairs to `out`, in link order.
///
/// Link-level problems (a `null` alt, a missing `url`) skip that link only; filters in
/// `filters` other than `dedup_uid` (which needs the whole file) are applied here. Counters
/// for links, pairs and drop reasons are added to `stats` (`pairs` counts the pairs appended).
///
/// # Errors
///
/// A [`RecordError`] when the record as a whole is unusable; nothing is appended then.
pub fn parse_metadata_record(
    body: &[u8],
    filters: &WatFilters,
    out: &mut Vec<Pair>,
    stats: &mut WatSummary,
) -> Result<(), RecordError> {
    parse_into(body, filters, out, stats)
}

/// [`parse_metadata_record`] into any [`PairSink`].
pub(crate) fn parse_into(
    body: &[u8],
    filters: &WatFilters,
    out: &mut impl PairSink,
    stats: &mut WatSummary,
) -> Result<(), RecordError> {
    // simdutf8 gives the same answer as `std::str::from_utf8` in about a third of its time.
    let text = simdutf8::basic::from_utf8(body).map_err(|_| RecordError::InvalidUtf8)?;
    let root = match fast::parse(text) {
        Some(root) => root,
        None => serde_json::from_str::<Root<'_>>(text).map_err(|e| match e.classify() {
            serde_json::error::Category::Data => RecordError::UnexpectedSchema,
            _ => RecordError::InvalidJson,
        })?,
    };
    let envelope = root.envelope.ok_or(RecordError::MissingField("Envelope"))?;
    let payload = envelope.payload.ok_or(RecordError::MissingField("Payload-Metadata"))?;
    let Some(html) = payload.http.and_then(|h| h.html) else { return Ok(()) };
    let Some(links) = html.links else { return Ok(()) };
    let JsonStr::Str(filename) = root.container.map(|c| c.filename).unwrap_or_default() else {
        return Err(RecordError::MissingField("Container.Filename"));
    };
    let JsonStr::Str(page_url) = envelope.header.map(|h| h.target_uri).unwrap_or_default() else {
        return Err(RecordError::MissingField("WARC-Target-URI"));
    };
    stats.records_with_links += 1;
    stats.links += links.total;

    let base: Cow<'_, str> = match html.head.map(|h| h.base) {
        Some(JsonStr::Str(b)) => urljoin(&page_url, &b).map_or(Cow::Borrowed(&*page_url), Cow::Owned),
        _ => Cow::Borrowed(&*page_url),
    };
    let base_clean = clean(&base);
    let mut resolver = None;
    let start = out.count();
    for link in links.img {
        let (url, alt) = match link {
            Link::NotObject => {
                stats.skipped.link_not_object += 1;
                continue;
            }
            Link::Img { url, alt } => (url, alt),
        };
        stats.img_links += 1;
        let alt = match alt {
            JsonStr::Str(a) if !a.is_empty() => a,
            JsonStr::Str(_) | JsonStr::Missing => {
                stats.skipped.empty_alt += 1;
                continue;
            }
            JsonStr::Null | JsonStr::Other => {
                stats.skipped.link_bad_alt += 1;
                continue;
            }
        };
        let JsonStr::Str(raw_url) = url else {
            stats.skipped.link_missing_url += 1;
            continue;
        };
        let url = if is_http(&raw_url) {
            &raw_url
        } else {
            let resolver = resolver.get_or_insert_with(|| Resolver::new(&base, &base_clean));
            resolver.join(&raw_url).unwrap_or(&raw_url)
        };
        if !is_http(url) {
            stats.skipped.non_http_url += 1;
            continue;
        }
        if !keep(url, &alt, filters, stats) {
            continue;
        }
        let mut md5 = md5::Context::new();
        md5.consume(alt.as_bytes());
        md5.consume(url.as_bytes());
        let uid = Hex::of(&md5.finalize().0);
        out.push(uid.as_str(), url, &alt, &filename, &page_url);
    }
    stats.pairs += (out.count() - start) as u64;
    Ok(())
}

/// Lowercase hex of a digest (what Python's `hexdigest()` gives).
struct Hex([u8; 32]);

impl Hex {
    fn of(digest: &[u8; 16]) -> Self {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut hex = [0; 32];
        for (pair, b) in hex.chunks_exact_mut(2).zip(digest) {
            pair[0] = DIGITS[usize::from(b >> 4)];
            pair[1] = DIGITS[usize::from(b & 15)];
        }
        Self(hex)
    }

    fn as_str(&self) -> &str {
        // Hex digits only: always UTF-8.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

fn is_http(url: &str) -> bool {
    url.starts_with("http://") || url.starts_with("https://")
}

/// Applies the per-pair filters, counting the first reason a pair fails.
fn keep(url: &str, alt: &str, f: &WatFilters, stats: &mut WatSummary) -> bool {
    let s = &mut stats.skipped;
    let alt_chars = || alt.chars().count();
    if f.min_alt_chars.is_some_and(|min| alt_chars() < min) {
        s.alt_too_short += 1;
        return false;
    }
    if f.max_alt_chars.is_some_and(|max| alt_chars() > max) {
        s.alt_too_long += 1;
        return false;
    }
    if f.max_url_chars.is_some_and(|max| url.chars().count() > max) {
        s.url_too_long += 1;
        return false;
    }
    if !f.blocked_url_patterns.is_empty() {
        let lower = url.to_ascii_lowercase();
        if f.blocked_url_patterns.iter().any(|p| lower.contains(&p.to_ascii_lowercase())) {
            s.blocked_url += 1;
            return false;
        }
    }
    if f.require_host || f.max_host_chars.is_some() {
        let host = hostname(url).unwrap_or("");
        if (f.require_host && host.is_empty()) || f.max_host_chars.is_some_and(|max| host.len() > max) {
            s.bad_host += 1;
            return false;
        }
    }
    true
}

// ---- serde model of the JSON path -------------------------------------------------------

#[derive(Deserialize)]
#[cfg_attr(test, derive(Debug, PartialEq))]
struct Root<'a> {
    #[serde(rename = "Container", borrow)]
    container: Option<Container<'a>>,
    #[serde(rename = "Envelope", borrow)]
    envelope: Option<Envelope<'a>>,
}

#[derive(Deserialize)]
#[cfg_attr(test, derive(Debug, PartialEq))]
struct Container<'a> {
    #[serde(rename = "Filename", borrow, default)]
    filename: JsonStr<'a>,
}

#[derive(Deserialize)]
#[cfg_attr(test, derive(Debug, PartialEq))]
struct Envelope<'a> {
    #[serde(rename = "WARC-Header-Metadata", borrow)]
    header: Option<WarcHeader<'a>>,
    #[serde(rename = "Payload-Metadata", borrow)]
    payload: Option<Payload<'a>>,
}

#[derive(Deserialize)]
#[cfg_attr(test, derive(Debug, PartialEq))]
struct WarcHeader<'a> {
    #[serde(rename = "WARC-Target-URI", borrow, default)]
    target_uri: JsonStr<'a>,
}

#[derive(Deserialize)]
#[cfg_attr(test, derive(Debug, PartialEq))]
struct Payload<'a> {
    #[serde(rename = "HTTP-Response-Metadata", borrow)]
    http: Option<HttpResponse<'a>>,
}

#[derive(Deserialize)]
#[cfg_attr(test, derive(Debug, PartialEq))]
struct HttpResponse<'a> {
    #[serde(rename = "HTML-Metadata", borrow)]
    html: Option<HtmlMetadata<'a>>,
}

#[derive(Deserialize)]
#[cfg_attr(test, derive(Debug, PartialEq))]
struct HtmlMetadata<'a> {
    #[serde(rename = "Head", borrow)]
    head: Option<Head<'a>>,
    #[serde(rename = "Links", borrow)]
    links: Option<Links<'a>>,
}

#[derive(Deserialize)]
#[cfg_attr(test, derive(Debug, PartialEq))]
struct Head<'a> {
    #[serde(rename = "Base", borrow, default)]
    base: JsonStr<'a>,
}

/// A JSON value where a string is expected: the string, or what stood there instead.
#[derive(Debug, Default)]
#[cfg_attr(test, derive(PartialEq))]
enum JsonStr<'a> {
    /// The key was absent.
    #[default]
    Missing,
    Str(Cow<'a, str>),
    Null,
    /// A number, boolean, array or object.
    Other,
}

impl<'de: 'a, 'a> Deserialize<'de> for JsonStr<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = JsonStr<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(JsonStr::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(JsonStr::Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(JsonStr::Str(Cow::Owned(v)))
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(JsonStr::Null)
            }
            fn visit_none<E>(self) -> Result<Self::Value, E> {
                Ok(JsonStr::Null)
            }
            fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
                Ok(JsonStr::Other)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
                Ok(JsonStr::Other)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
                Ok(JsonStr::Other)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
                Ok(JsonStr::Other)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(JsonStr::Other)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(JsonStr::Other)
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

/// The `Links` array, reduced to its `IMG@/src` entries (and entries that are not objects).
#[cfg_attr(test, derive(Debug, PartialEq))]
struct Links<'a> {
    total: u64,
    img: Vec<Link<'a>>,
}

#[cfg_attr(test, derive(Debug, PartialEq))]
enum Link<'a> {
    Img { url: JsonStr<'a>, alt: JsonStr<'a> },
    NotObject,
}

/// One `Links` entry: `Some` when kept, `None` for a link of another kind.
struct LinkEntry<'a>(Option<Link<'a>>);

#[derive(Deserialize)]
#[serde(field_identifier)]
enum LinkKey {
    #[serde(rename = "path")]
    Path,
    #[serde(rename = "url")]
    Url,
    #[serde(rename = "alt")]
    Alt,
    #[serde(other)]
    Other,
}

impl<'de: 'a, 'a> Deserialize<'de> for LinkEntry<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = LinkEntry<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a link object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let (mut path, mut url, mut alt) = (JsonStr::Missing, JsonStr::Missing, JsonStr::Missing);
                while let Some(key) = map.next_key::<LinkKey>()? {
                    match key {
                        LinkKey::Path => path = map.next_value()?,
                        LinkKey::Url => url = map.next_value()?,
                        LinkKey::Alt => alt = map.next_value()?,
                        LinkKey::Other => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                let is_img = matches!(&path, JsonStr::Str(p) if p == "IMG@/src");
                Ok(LinkEntry(is_img.then_some(Link::Img { url, alt })))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(LinkEntry(Some(Link::NotObject)))
            }
            fn visit_borrowed_str<E>(self, _: &'de str) -> Result<Self::Value, E> {
                Ok(LinkEntry(Some(Link::NotObject)))
            }
            fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
                Ok(LinkEntry(Some(Link::NotObject)))
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(LinkEntry(Some(Link::NotObject)))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
                Ok(LinkEntry(Some(Link::NotObject)))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
                Ok(LinkEntry(Some(Link::NotObject)))
            }
            fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
                Ok(LinkEntry(Some(Link::NotObject)))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
                Ok(LinkEntry(Some(Link::NotObject)))
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Links<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Links<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array of links")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut links = Links { total: 0, img: Vec::new() };
                while let Some(LinkEntry(entry)) = seq.next_element()? {
                    links.total += 1;
                    links.img.extend(entry);
                }
                Ok(links)
            }
        }
        d.deserialize_seq(V(std::marker::PhantomData))
    }
}
