//! A port of Python's `urllib.parse.urljoin` (CPython 3.11), the URL resolution cc2dataset uses.
//!
//! Why not the `url` crate: WHATWG parsing normalises (percent-encodes spaces and non-ASCII
//! characters, lowercases and punycodes hosts, drops default ports), so its output differs from
//! the pairs cc2dataset writes. This module reproduces Python byte for byte instead, and is
//! checked against a table of cases produced by CPython 3.11.7 (`tests/data/wat/urljoin_cases.jsonl`).
//!
//! Not reproduced: `_checknetloc`'s NFKC test on non-ASCII hosts (Python raises for hosts such as
//! `\u{2100}` that normalise to `a/c`; here they pass through).

use std::borrow::Cow;
use std::net::Ipv6Addr;

/// Python raised `ValueError` (an invalid bracketed IPv6 host): the caller keeps its fallback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct InvalidUrl;

const USES_RELATIVE: &[&str] = &[
    "", "ftp", "http", "gopher", "nntp", "imap", "wais", "file", "https", "shttp", "mms",
    "prospero", "rtsp", "rtspu", "sftp", "svn", "svn+ssh", "ws", "wss",
];

const USES_NETLOC: &[&str] = &[
    "", "ftp", "http", "gopher", "nntp", "telnet", "imap", "wais", "file", "mms", "https",
    "shttp", "snews", "prospero", "rtsp", "rtspu", "rsync", "svn", "svn+ssh", "sftp", "nfs",
    "git", "git+ssh", "ws", "wss",
];

const USES_PARAMS: &[&str] = &[
    "", "ftp", "hdl", "prospero", "http", "imap", "https", "shttp", "rtsp", "rtspu", "sip",
    "sips", "mms", "sftp", "tel",
];

/// The six parts of `urlparse`.
#[derive(Debug, Default)]
struct Parts<'a> {
    scheme: Cow<'a, str>,
    netloc: &'a str,
    path: &'a str,
    params: &'a str,
    query: &'a str,
    fragment: &'a str,
}

fn is_scheme_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.')
}

/// `str.lstrip(_WHATWG_C0_CONTROL_OR_SPACE)` then removal of tab, CR and LF.
pub(crate) fn clean(url: &str) -> Cow<'_, str> {
    let url = url.trim_start_matches(|c: char| c <= ' ');
    if url.bytes().any(|b| matches!(b, b'\t' | b'\r' | b'\n')) {
        Cow::Owned(url.chars().filter(|c| !matches!(c, '\t' | '\r' | '\n')).collect())
    } else {
        Cow::Borrowed(url)
    }
}

/// Python's `_check_bracketed_host`.
fn check_bracketed_host(host: &str) -> Result<(), InvalidUrl> {
    if let Some(rest) = host.strip_prefix('v') {
        // \Av[a-fA-F0-9]+\..+\Z
        let hex = rest.bytes().take_while(u8::is_ascii_hexdigit).count();
        let after = &rest[hex..];
        let ok = hex > 0
            && after.starts_with('.')
            && after.len() > 1
            && !after[1..].contains('\n');
        return if ok { Ok(()) } else { Err(InvalidUrl) };
    }
    // ipaddress.ip_address: only IPv6 (with an optional non-empty %scope) is accepted in
    // brackets; IPv4 and anything else raise.
    let addr = match host.split_once('%') {
        Some((addr, scope)) if !scope.is_empty() && !scope.contains('%') => addr,
        Some(_) => return Err(InvalidUrl),
        None => host,
    };
    addr.parse::<Ipv6Addr>().map(|_| ()).map_err(|_| InvalidUrl)
}

/// Python's `urlsplit` followed by `urlparse`'s `;params` split.
fn urlparse<'a>(url: &'a str, default_scheme: &'a str) -> Result<Parts<'a>, InvalidUrl> {
    let mut rest = url;
    let mut scheme = Cow::Borrowed(default_scheme);
    if let Some(i) = rest.find(':') {
        let candidate = &rest[..i];
        if i > 0
            && candidate.as_bytes()[0].is_ascii_alphabetic()
            && candidate.bytes().all(is_scheme_char)
        {
            scheme = if candidate.bytes().any(|b| b.is_ascii_uppercase()) {
                Cow::Owned(candidate.to_ascii_lowercase())
            } else {
                Cow::Borrowed(candidate)
            };
            rest = &rest[i + 1..];
        }
    }
    let mut netloc = "";
    if let Some(after) = rest.strip_prefix("//") {
        let end = after.bytes().position(|b| matches!(b, b'/' | b'?' | b'#')).unwrap_or(after.len());
        netloc = &after[..end];
        rest = &after[end..];
        let open = netloc.contains('[');
        let close = netloc.contains(']');
        if open != close {
            return Err(InvalidUrl);
        }
        if open {
            let inner = netloc.split_once('[').map_or("", |(_, r)| r);
            let host = inner.split_once(']').map_or(inner, |(h, _)| h);
            check_bracketed_host(host)?;
        }
    }
    let mut fragment = "";
    if let Some((before, frag)) = rest.split_once('#') {
        rest = before;
        fragment = frag;
    }
    let mut query = "";
    if let Some((before, q)) = rest.split_once('?') {
        rest = before;
        query = q;
    }
    let mut params = "";
    if USES_PARAMS.contains(&scheme.as_ref()) && rest.contains(';') {
        let split_at = match rest.rfind('/') {
            Some(slash) => rest[slash..].find(';').map(|i| slash + i),
            None => rest.find(';'),
        };
        if let Some(i) = split_at {
            params = &rest[i + 1..];
            rest = &rest[..i];
        }
    }
    Ok(Parts { scheme, netloc, path: rest, params, query, fragment })
}

/// Python's `urlunparse`, written into `out` (replacing what it held).
fn urlunparse(out: &mut String, scheme: &str, netloc: &str, path: &str, params: &str, query: &str, fragment: &str) {
    out.clear();
    if !scheme.is_empty() {
        out.push_str(scheme);
        out.push(':');
    }
    // `url` is `path`, followed by `;params` when there are params.
    let url_is_empty = path.is_empty() && params.is_empty();
    if !netloc.is_empty() || (!scheme.is_empty() && USES_NETLOC.contains(&scheme) && !path.starts_with("//")) {
        out.push_str("//");
        out.push_str(netloc);
        if !url_is_empty && !path.starts_with('/') {
            out.push('/');
        }
    }
    out.push_str(path);
    if !params.is_empty() {
        out.push(';');
        out.push_str(params);
    }
    if !query.is_empty() {
        out.push('?');
        out.push_str(query);
    }
    if !fragment.is_empty() {
        out.push('#');
        out.push_str(fragment);
    }
}

/// A base URL parsed once, to resolve any number of URLs against it: what
/// `urljoin(base, url)` does for each, without parsing the base again.
pub(crate) struct Resolver<'a> {
    /// The base as given.
    raw: &'a str,
    /// The base's parts, or Python's `ValueError` for it.
    base: Result<Parts<'a>, InvalidUrl>,
    /// The resolved path being built (reused across calls).
    path: String,
    /// The last URL built (reused across calls).
    joined: String,
}

impl<'a> Resolver<'a> {
    /// A resolver against `raw`, whose [`clean`]ed form is `cleaned`.
    pub(crate) fn new(raw: &'a str, cleaned: &'a str) -> Self {
        Self { raw, base: urlparse(cleaned, ""), path: String::new(), joined: String::new() }
    }

    /// Resolves `url` against the base exactly as Python's `urllib.parse.urljoin(base, url)`:
    /// the result is `url` itself, the base, or a URL built in the resolver.
    ///
    /// # Errors
    ///
    /// [`InvalidUrl`] where Python raises `ValueError` (an unbalanced or invalid bracketed
    /// host in either argument).
    pub(crate) fn join<'s>(&'s mut self, url: &'s str) -> Result<&'s str, InvalidUrl> {
        let Self { raw, base, path, joined } = self;
        if raw.is_empty() {
            return Ok(url);
        }
        if url.is_empty() {
            return Ok(raw);
        }
        let b = base.as_ref().map_err(|e| *e)?;
        let url_clean = clean(url);
        let u = urlparse(&url_clean, &b.scheme)?;

        if u.scheme != b.scheme || !USES_RELATIVE.contains(&u.scheme.as_ref()) {
            return Ok(url);
        }
        let scheme = u.scheme.as_ref();
        let mut netloc = u.netloc;
        if USES_NETLOC.contains(&scheme) {
            if !netloc.is_empty() {
                urlunparse(joined, scheme, netloc, u.path, u.params, u.query, u.fragment);
                return Ok(joined);
            }
            netloc = b.netloc;
        }
        if u.path.is_empty() && u.params.is_empty() {
            let query = if u.query.is_empty() { b.query } else { u.query };
            urlunparse(joined, scheme, netloc, b.path, b.params, query, u.fragment);
            return Ok(joined);
        }
        resolve_path(b.path, u.path, path);
        let path = if path.is_empty() { "/" } else { path.as_str() };
        urlunparse(joined, scheme, netloc, path, u.params, u.query, u.fragment);
        Ok(joined)
    }
}

/// `urljoin`'s path resolution: the segments of `path` after those of `base_path`'s directory
/// (or alone when `path` is absolute), empty segments between the first and the last dropped,
/// then `.` and `..` applied; written into `out` joined by `/` (empty when nothing is left).
fn resolve_path(base_path: &str, path: &str, out: &mut String) {
    out.clear();
    let relative = !path.starts_with('/');
    let mut resolved = Resolved { out, depth: 0, index: 0, drop_empty: relative };
    if relative {
        // base_parts = bpath.split('/'), without its last part unless that is empty.
        match base_path.rfind('/') {
            _ if base_path.is_empty() => resolved.segment("", false),
            Some(last) => {
                each_segment(&base_path[..last], |segment, _| resolved.segment(segment, false));
                if last + 1 == base_path.len() {
                    resolved.segment("", false);
                }
            }
            None => {}
        }
    }
    let mut last_segment = "";
    each_segment(path, |segment, last| {
        resolved.segment(segment, last);
        last_segment = segment;
    });
    // A path ending in `.` or `..` gets an empty last segment (it names a directory).
    if resolved.depth > 0 && matches!(last_segment, "." | "..") {
        resolved.out.push('/');
    }
}

/// Calls `f` with each part of `s` split at `/`, and whether it is the last.
fn each_segment<'s>(s: &'s str, mut f: impl FnMut(&'s str, bool)) {
    let mut start = 0;
    for slash in memchr::memchr_iter(b'/', s.as_bytes()) {
        f(&s[start..slash], false);
        start = slash + 1;
    }
    f(&s[start..], true);
}

/// The resolved segments of a path, kept joined by `/` in `out`.
struct Resolved<'o> {
    out: &'o mut String,
    /// How many segments `out` holds.
    depth: usize,
    /// Segments seen so far.
    index: usize,
    /// Whether empty segments other than the first and the last are dropped.
    drop_empty: bool,
}

impl Resolved<'_> {
    /// Takes the next segment (`last`: the path's last one).
    fn segment(&mut self, segment: &str, last: bool) {
        let first = self.index == 0;
        self.index += 1;
        if self.drop_empty && segment.is_empty() && !first && !last {
            return;
        }
        match segment {
            ".." => {
                // resolved_path.pop(), if there is anything to pop.
                if self.depth > 0 {
                    self.out.truncate(self.out.rfind('/').unwrap_or(0));
                    self.depth -= 1;
                }
            }
            "." => {}
            other => {
                if self.depth > 0 {
                    self.out.push('/');
                }
                self.out.push_str(other);
                self.depth += 1;
            }
        }
    }
}

/// Resolves `url` against `base` exactly as Python's `urllib.parse.urljoin(base, url)` (see
/// [`Resolver`] for many URLs against one base).
///
/// # Errors
///
/// [`InvalidUrl`] where Python raises `ValueError` (an unbalanced or invalid bracketed host in
/// either argument).
pub(crate) fn urljoin(base: &str, url: &str) -> Result<String, InvalidUrl> {
    let cleaned = clean(base);
    Resolver::new(base, &cleaned).join(url).map(str::to_owned)
}

/// The host of an absolute URL's authority as Python's `urlsplit(url).hostname` sees it
/// (userinfo and port removed, brackets stripped), or `None` when there is no authority.
pub(crate) fn hostname(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let netloc = &rest[..end];
    let host_port = netloc.rsplit_once('@').map_or(netloc, |(_, h)| h);
    let host = if let Some(inner) = host_port.strip_prefix('[') {
        inner.split_once(']').map_or(inner, |(h, _)| h)
    } else {
        host_port.split_once(':').map_or(host_port, |(h, _)| h)
    };
    (!host.is_empty()).then_some(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3986_examples_match_python() {
        let base = "http://a/b/c/d;p?q";
        for (rel, want) in [
            ("g", "http://a/b/c/g"),
            ("./g", "http://a/b/c/g"),
            ("g/", "http://a/b/c/g/"),
            ("/g", "http://a/g"),
            ("//g", "http://g"),
            ("?y", "http://a/b/c/d;p?y"),
            ("g?y", "http://a/b/c/g?y"),
            ("#s", "http://a/b/c/d;p?q#s"),
            (";x", "http://a/b/c/;x"),
            ("", "http://a/b/c/d;p?q"),
            (".", "http://a/b/c/"),
            ("..", "http://a/b/"),
            ("../..", "http://a/"),
            ("../../../g", "http://a/g"),
            ("g;x=1/../y", "http://a/b/c/y"),
            ("data:image/png;base64,xx", "data:image/png;base64,xx"),
            ("http:g", "http://a/b/c/g"),
        ] {
            assert_eq!(urljoin(base, rel).as_deref(), Ok(want), "{rel}");
        }
    }

    #[test]
    fn one_resolver_answers_like_fresh_ones() {
        // The resolver keeps a path buffer between calls: no answer may depend on the last.
        let base = "http://a/b/c/d;p?q";
        let cleaned = clean(base);
        let mut resolver = Resolver::new(base, &cleaned);
        for rel in ["../../../g", "g", "", "/./g", ".", "g/../..", "//[::1/x", "?y", "../x/./y/..", "g;x=1/../y"] {
            assert_eq!(resolver.join(rel).map(str::to_owned), urljoin(base, rel), "{rel}");
        }
        let cleaned = clean("//[::1/");
        assert_eq!(Resolver::new("//[::1/", &cleaned).join("g"), Err(InvalidUrl));
    }

    #[test]
    fn invalid_brackets_are_value_errors() {
        assert_eq!(urljoin("http://a/", "//[::1/x"), Err(InvalidUrl));
        assert_eq!(urljoin("http://a/", "//[1.2.3.4]/x"), Err(InvalidUrl));
        assert!(urljoin("http://a/", "//[::1]/x").is_ok());
    }

    #[test]
    fn hostname_strips_userinfo_and_port() {
        assert_eq!(hostname("http://u:p@Example.com:80/x"), Some("Example.com"));
        assert_eq!(hostname("https://[::1]:8/"), Some("::1"));
        assert_eq!(hostname("http:///x"), None);
    }
}
