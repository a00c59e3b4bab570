//! A single-pass reader for metadata records of the usual shape.
//!
//! serde_json spends most of a record's time in its visitors for the `Links` array. This reader
//! walks the record once, checking its syntax the way serde_json does (strings, escapes,
//! numbers, literals, nesting, trailing bytes) and filling the same model ([`Root`]) that the
//! serde parse fills.
//!
//! It answers only where it can vouch for giving serde_json's answer, and gives up (`None`)
//! otherwise; the caller then runs the serde parse, which also produces the exact error of a
//! bad record. It gives up on any syntax error, on a value of another type than the model
//! expects on the extraction path (where serde would raise a shape error or, for a struct given
//! an array, read it by position), on a repeated field of the model, on an escaped key where
//! serde decodes keys, and on a number where serde would parse (and range-check) it. Escaped
//! strings that the model keeps are decoded by serde_json itself.
//!
//! A string is scanned by its stops (`"`, `\`, control characters), found for the whole record
//! in one pass beforehand ([`stops`]).

use std::borrow::Cow;
use std::cell::RefCell;

use super::stops;
use super::{Container, Envelope, Head, HtmlMetadata, HttpResponse, JsonStr, Link, Links, Payload, Root, WarcHeader};

/// Nesting allowed in skipped values before giving up (serde_json has no limit there).
const MAX_DEPTH: usize = 100;

/// Stop masks kept by each thread above this many bytes are freed after the record.
const KEEP_BYTES: usize = 1 << 16;

thread_local! {
    /// The stop mask of the record being read, reused across records.
    static STOPS: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Reads `text` as a whole record, or gives up.
pub(super) fn parse(text: &str) -> Option<Root<'_>> {
    STOPS.with_borrow_mut(|bits| {
        stops::classify(text.as_bytes(), bits);
        let mut r = Reader { text, b: text.as_bytes(), i: 0, stops: bits };
        r.ws();
        let root = r.root();
        r.ws();
        let whole = r.i == r.b.len();
        if bits.capacity() > KEEP_BYTES {
            *bits = Vec::new();
        }
        root.filter(|_| whole)
    })
}

struct Reader<'a, 'w> {
    text: &'a str,
    b: &'a [u8],
    i: usize,
    /// The record's stop mask ([`stops::classify`]).
    stops: &'w [u8],
}

impl<'a> Reader<'a, '_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        (self.peek() == Some(c)).then(|| self.i += 1)
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        self.b.get(self.i..)?.starts_with(word).then(|| self.i += word.len())
    }

    /// An object of the model: calls `field` with each key, the reader then at its value.
    /// `null` is `None` (an absent `Option`); any other non-object value gives up.
    fn object(&mut self, mut field: impl FnMut(&mut Self, &'a [u8]) -> Option<()>) -> Option<Option<()>> {
        if self.peek() == Some(b'n') {
            self.literal(b"null")?;
            return Some(None);
        }
        self.eat(b'{')?;
        self.ws();
        if self.eat(b'}').is_some() {
            return Some(Some(()));
        }
        loop {
            self.ws();
            let (key, escaped) = self.string()?;
            if escaped {
                return None;
            }
            self.ws();
            self.eat(b':')?;
            self.ws();
            field(self, key)?;
            self.ws();
            match self.b.get(self.i)? {
                b',' => self.i += 1,
                b'}' => {
                    self.i += 1;
                    return Some(Some(()));
                }
                _ => return None,
            }
        }
    }

    /// An object of the model with the fields `names`: calls `field` with the index of each
    /// one found (a repeated one gives up, as serde rejects it) and skips any other key.
    fn model<const N: usize>(
        &mut self,
        names: [&[u8]; N],
        mut field: impl FnMut(&mut Self, usize) -> Option<()>,
    ) -> Option<Option<()>> {
        let mut seen = [false; N];
        self.object(|r, key| match names.iter().position(|&n| n == key) {
            Some(i) if !std::mem::replace(&mut seen[i], true) => field(r, i),
            Some(_) => None,
            None => r.skip(0),
        })
    }

    /// An object of the model whose one field `name` is a [`JsonStr`] (absent: `Missing`).
    fn one_str(&mut self, name: &[u8]) -> Option<Option<JsonStr<'a>>> {
        let mut value = JsonStr::Missing;
        let found = self.model([name], |r, _| {
            value = r.json_str()?;
            Some(())
        })?;
        Some(found.map(|()| value))
    }

    fn root(&mut self) -> Option<Root<'a>> {
        let (mut container, mut envelope) = (None, None);
        self.model([b"Container", b"Envelope"], |r, field| {
            if field == 0 {
                container = r.one_str(b"Filename")?.map(|filename| Container { filename });
            } else {
                envelope = r.envelope()?;
            }
            Some(())
        })??;
        Some(Root { container, envelope })
    }

    fn envelope(&mut self) -> Option<Option<Envelope<'a>>> {
        let (mut header, mut payload) = (None, None);
        let found = self.model([b"WARC-Header-Metadata", b"Payload-Metadata"], |r, field| {
            if field == 0 {
                header = r.one_str(b"WARC-Target-URI")?.map(|target_uri| WarcHeader { target_uri });
            } else {
                payload = r.payload()?;
            }
            Some(())
        })?;
        Some(found.map(|()| Envelope { header, payload }))
    }

    fn payload(&mut self) -> Option<Option<Payload<'a>>> {
        let mut http = None;
        let found = self.model([b"HTTP-Response-Metadata"], |r, _| {
            let mut html = None;
            let found = r.model([b"HTML-Metadata"], |r, _| {
                html = r.html()?;
                Some(())
            })?;
            http = found.map(|()| HttpResponse { html });
            Some(())
        })?;
        Some(found.map(|()| Payload { http }))
    }

    fn html(&mut self) -> Option<Option<HtmlMetadata<'a>>> {
        let (mut head, mut links) = (None, None);
        let found = self.model([b"Head", b"Links"], |r, field| {
            if field == 0 {
                head = r.one_str(b"Base")?.map(|base| Head { base });
            } else {
                links = r.links()?;
            }
            Some(())
        })?;
        Some(found.map(|()| HtmlMetadata { head, links }))
    }

    /// The `Links` array: `null` is `None`; entries that are not objects give up.
    fn links(&mut self) -> Option<Option<Links<'a>>> {
        if self.peek() == Some(b'n') {
            self.literal(b"null")?;
            return Some(None);
        }
        self.eat(b'[')?;
        let mut links = Links { total: 0, img: Vec::new() };
        self.ws();
        if self.eat(b']').is_some() {
            return Some(Some(links));
        }
        loop {
            self.ws();
            let (mut path, mut url, mut alt) = (JsonStr::Missing, JsonStr::Missing, JsonStr::Missing);
            // Repeated keys in a link: the last one counts, as in the serde model.
            self.object(|r, key| {
                match key {
                    b"path" => path = r.json_str()?,
                    b"url" => url = r.json_str()?,
                    b"alt" => alt = r.json_str()?,
                    _ => r.skip(0)?,
                }
                Some(())
            })??;
            links.total += 1;
            if matches!(&path, JsonStr::Str(p) if p == "IMG@/src") {
                links.img.push(Link::Img { url, alt });
            }
            self.ws();
            match self.b.get(self.i)? {
                b',' => self.i += 1,
                b']' => {
                    self.i += 1;
                    return Some(Some(links));
                }
                _ => return None,
            }
        }
    }

    /// A value the model reads as [`JsonStr`]: strings, `null` and booleans; numbers, arrays
    /// and objects give up.
    fn json_str(&mut self) -> Option<JsonStr<'a>> {
        match self.peek()? {
            b'"' => {
                let start = self.i;
                let (_, escaped) = self.string()?;
                if escaped {
                    let literal = &self.text[start..self.i];
                    serde_json::from_str::<String>(literal).ok().map(|s| JsonStr::Str(Cow::Owned(s)))
                } else {
                    // Between the two quotes, so on character boundaries.
                    self.text.get(start + 1..self.i - 1).map(|s| JsonStr::Str(Cow::Borrowed(s)))
                }
            }
            b'n' => self.literal(b"null").map(|()| JsonStr::Null),
            b't' => self.literal(b"true").map(|()| JsonStr::Other),
            b'f' => self.literal(b"false").map(|()| JsonStr::Other),
            _ => None,
        }
    }

    /// A string at the read position, checked like serde_json checks a string it skips
    /// (no control characters, valid escapes): its raw contents (bytes, so that strings only
    /// skipped or compared are never checked for character boundaries) and whether they hold
    /// an escape.
    #[inline(always)]
    fn string(&mut self) -> Option<(&'a [u8], bool)> {
        self.eat(b'"')?;
        let start = self.i;
        self.skip_plain();
        // Most strings end at their first stop: that path stays inline.
        if self.peek() == Some(b'"') {
            let s = &self.b[start..self.i];
            self.i += 1;
            return Some((s, false));
        }
        self.string_rest(start)
    }

    /// The rest of the string whose contents start at `start` and whose scan stopped short of
    /// its closing quote: at an escape, a control character or the end of the record.
    #[cold]
    #[inline(never)]
    fn string_rest(&mut self, start: usize) -> Option<(&'a [u8], bool)> {
        let mut escaped = false;
        loop {
            match self.peek()? {
                b'"' => {
                    let s = &self.b[start..self.i];
                    self.i += 1;
                    return Some((s, escaped));
                }
                b'\\' => {
                    escaped = true;
                    self.i += 1;
                    match self.peek()? {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => self.i += 1,
                        b'u' => {
                            let hex = self.b.get(self.i + 1..self.i + 5)?;
                            if !hex.iter().all(u8::is_ascii_hexdigit) {
                                return None;
                            }
                            self.i += 5;
                        }
                        _ => return None,
                    }
                }
                _ => return None,
            }
            self.skip_plain();
        }
    }

    /// Moves to the next byte that needs attention inside a string (`"`, `\` or a control
    /// character), or to the end of the record.
    #[inline(always)]
    fn skip_plain(&mut self) {
        // The 64 bits from the mask byte that holds the read position: at least 57 bytes ahead.
        let Some(first) = self.stops_at(self.i / 8) else { return };
        let found = first >> (self.i % 8);
        if found != 0 {
            self.i += found.trailing_zeros() as usize;
            return;
        }
        let mut at = self.i / 8;
        loop {
            at += 8;
            let Some(next) = self.stops_at(at) else {
                self.i = self.b.len();
                return;
            };
            if next != 0 {
                self.i = at * 8 + next.trailing_zeros() as usize;
                return;
            }
        }
    }

    /// The 64 stop bits of the mask bytes from `at` on, for bytes `8 × at` onwards (zero past
    /// the end of the record).
    fn stops_at(&self, at: usize) -> Option<u64> {
        let bytes: [u8; 8] = self.stops.get(at..at + 8)?.try_into().ok()?;
        Some(u64::from_le_bytes(bytes))
    }

    /// Skips any value, checking it like serde_json checks a value it ignores.
    fn skip(&mut self, depth: usize) -> Option<()> {
        match self.peek()? {
            b'"' => self.string().map(drop),
            b'{' => {
                let depth = depth.checked_add(1).filter(|&d| d <= MAX_DEPTH)?;
                self.i += 1;
                self.ws();
                if self.eat(b'}').is_some() {
                    return Some(());
                }
                loop {
                    self.ws();
                    self.string()?;
                    self.ws();
                    self.eat(b':')?;
                    self.ws();
                    self.skip(depth)?;
                    self.ws();
                    match self.b.get(self.i)? {
                        b',' => self.i += 1,
                        b'}' => {
                            self.i += 1;
                            return Some(());
                        }
                        _ => return None,
                    }
                }
            }
            b'[' => {
                let depth = depth.checked_add(1).filter(|&d| d <= MAX_DEPTH)?;
                self.i += 1;
                self.ws();
                if self.eat(b']').is_some() {
                    return Some(());
                }
                loop {
                    self.ws();
                    self.skip(depth)?;
                    self.ws();
                    match self.b.get(self.i)? {
                        b',' => self.i += 1,
                        b']' => {
                            self.i += 1;
                            return Some(());
                        }
                        _ => return None,
                    }
                }
            }
            b'n' => self.literal(b"null"),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'-' => {
                self.i += 1;
                self.number()
            }
            b'0'..=b'9' => self.number(),
            _ => None,
        }
    }

    /// A number (after any minus sign), in JSON's grammar, as serde_json checks one it ignores.
    fn number(&mut self) -> Option<()> {
        match self.peek()? {
            b'0' => {
                self.i += 1;
                if self.peek().is_some_and(|c| c.is_ascii_digit()) {
                    return None;
                }
            }
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        if self.eat(b'.').is_some() {
            if !self.peek()?.is_ascii_digit() {
                return None;
            }
            self.digits();
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if !self.peek()?.is_ascii_digit() {
                return None;
            }
            self.digits();
        }
        Some(())
    }

    fn digits(&mut self) {
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::super::Root;
    use super::parse;

    /// The JSON bodies of the metadata records of every sample.
    fn bodies() -> Vec<String> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/wat");
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if !path.to_string_lossy().ends_with(".warc.wat.gz") {
                continue;
            }
            let mut data = Vec::new();
            flate2::read::MultiGzDecoder::new(std::fs::File::open(&path).unwrap()).read_to_end(&mut data).unwrap();
            let mut at = 0;
            while let Some(end) = memchr::memmem::find(&data[at..], b"\r\n\r\n") {
                let header = String::from_utf8_lossy(&data[at..at + end]).into_owned();
                let body = at + end + 4;
                let len: usize = header
                    .lines()
                    .find_map(|l| l.strip_prefix("Content-Length:"))
                    .map_or(0, |v| v.trim().parse().unwrap());
                if header.contains("WARC-Type: metadata") {
                    out.push(String::from_utf8(data[body..body + len].to_vec()).unwrap());
                }
                at = body + len;
            }
        }
        out
    }

    /// When the fast reader answers, serde_json must parse the record to the same model.
    fn check(text: &str) -> bool {
        let Some(fast) = parse(text) else { return false };
        let full: Root<'_> = serde_json::from_str(text).unwrap_or_else(|e| panic!("fast read a record serde rejects ({e}): {text}"));
        assert_eq!(fast, full, "{text}");
        true
    }

    #[test]
    fn agrees_with_serde_on_every_sample_record() {
        let bodies = bodies();
        assert!(bodies.len() > 800, "{} records", bodies.len());
        let read = bodies.iter().filter(|b| check(b)).count();
        assert!(read * 100 >= bodies.len() * 99, "fast reader answered {read} of {}", bodies.len());
    }

    #[test]
    fn agrees_with_serde_on_mutated_records() {
        let bodies = bodies();
        let mut state = 0x853c_49e6_748f_ea9bu64;
        let mut rand = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        const BYTES: &[u8] = b"\"\\{}[],:0123456789-+.eEnultrfa \x01\x1fu/";
        for round in 0..4000 {
            let body = bodies[(rand() as usize) % bodies.len()].as_bytes();
            let mut data = body.to_vec();
            for _ in 0..=(rand() % 3) {
                let at = (rand() as usize) % data.len().max(1);
                let byte = BYTES[(rand() as usize) % BYTES.len()];
                match rand() % 3 {
                    0 if at < data.len() => data[at] = byte,
                    1 if at < data.len() => drop(data.remove(at)),
                    _ => data.insert(at.min(data.len()), byte),
                }
            }
            if let Ok(text) = std::str::from_utf8(&data) {
                check(text);
            }
            assert!(round < 4000);
        }
    }

    #[test]
    fn gives_up_or_agrees_on_edge_cases() {
        let link = |l: &str| {
            format!(
                r#"{{"Container":{{"Filename":"f"}},"Envelope":{{"WARC-Header-Metadata":{{"WARC-Target-URI":"http://a/"}},"Payload-Metadata":{{"HTTP-Response-Metadata":{{"HTML-Metadata":{{"Links":[{l}]}}}}}}}}}}"#
            )
        };
        let answered = [
            link(r#"{"path":"IMG@/src","url":"x","alt":"caf\u00e9 \"q\""}"#),
            link(r#"{"path":"IMG@\/src","alt":"a","alt":null,"url":"u","x":[1,-0.5e+3,{"k\u0041":true}]}"#),
            link(r#"{}, {"path":"A@/href","text":"\ud800"}"#),
            r#" {"Envelope":null,"Other":[[[]]]} "#.to_owned(),
        ];
        for text in &answered {
            assert!(check(text), "{text}");
        }
        let refused = [
            link(r#"{"path":"IMG@/src","url":1e400}"#),
            link(r#"{"path":"IMG@/src","alt":["a"]}"#),
            link(r#"{"p\u0061th":"IMG@/src"}"#),
            link(r#""not an object""#),
            link(r#"{"x":01}"#),
            link(r#"{"x":1.}"#),
            link(r#"{"x":[1,]}"#),
            link(r#"{"x":"\q"}"#),
            link("{\"x\":\"tab\there\"}"),
            r#"{"Container":{},"Container":{}}"#.to_owned(),
            r#"{"Container":["f"]}"#.to_owned(),
            r#"{"Envelope":{}} x"#.to_owned(),
            r#"null"#.to_owned(),
            String::new(),
        ];
        for text in &refused {
            assert!(!check(text), "{text}");
        }
    }
}
