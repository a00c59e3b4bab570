//! The pairs of one batch, their strings back to back in one buffer.
//!
//! Pairs travel from a parser thread to the shard writer as one buffer of text plus the field
//! ranges of each pair, rather than as five strings apiece: no allocation per pair, pairs of one
//! record share their `cc_filename` and `page_url` text, and the writer hands parquet slices of
//! the buffer without copying them ([`PairWriter::write_batch`](super::PairWriter::write_batch)).

use super::record::Pair;

/// Fields of a pair, in [`PAIR_SCHEMA`](super::PAIR_SCHEMA) order: uid, url, alt, cc_filename,
/// page_url.
pub(crate) const FIELDS: usize = 5;

/// Where a record's pairs go.
pub(crate) trait PairSink {
    /// Appends a pair (`uid`: the lowercase hex MD5).
    fn push(&mut self, uid: &str, url: &str, alt: &str, cc_filename: &str, page_url: &str);

    /// Pairs held.
    fn count(&self) -> usize;
}

impl PairSink for Vec<Pair> {
    fn push(&mut self, uid: &str, url: &str, alt: &str, cc_filename: &str, page_url: &str) {
        Vec::push(
            self,
            Pair {
                uid: uid.to_owned(),
                url: url.to_owned(),
                alt: alt.to_owned(),
                cc_filename: cc_filename.to_owned(),
                page_url: page_url.to_owned(),
            },
        );
    }

    fn count(&self) -> usize {
        self.len()
    }
}

/// Pairs whose strings share one buffer.
#[derive(Debug, Default)]
pub(crate) struct PairBatch {
    text: String,
    /// Each pair's fields as `(start, end)` byte offsets in `text`.
    pairs: Vec<[(usize, usize); FIELDS]>,
}

impl PairBatch {
    /// Field `index` of pair `pair`.
    fn field(&self, pair: usize, index: usize) -> &str {
        let (start, end) = self.pairs[pair][index];
        &self.text[start..end]
    }

    /// Appends `s` to the text; returns its range.
    fn append(&mut self, s: &str) -> (usize, usize) {
        let start = self.text.len();
        self.text.push_str(s);
        (start, self.text.len())
    }

    /// Keeps only the pairs whose uid `keep` accepts, in order; returns how many were dropped.
    pub(crate) fn retain_uids(&mut self, mut keep: impl FnMut(&str) -> bool) -> usize {
        let before = self.pairs.len();
        let text = &self.text;
        self.pairs.retain(|fields| keep(&text[fields[0].0..fields[0].1]));
        before - self.pairs.len()
    }

    /// Whether there are no pairs.
    pub(crate) fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// The pairs as [`Pair`]s.
    pub(crate) fn into_pairs(self) -> Vec<Pair> {
        let s = |pair, index| self.field(pair, index).to_owned();
        (0..self.pairs.len())
            .map(|i| Pair { uid: s(i, 0), url: s(i, 1), alt: s(i, 2), cc_filename: s(i, 3), page_url: s(i, 4) })
            .collect()
    }

    /// The text and each pair's field ranges in it.
    pub(crate) fn into_parts(self) -> (String, Vec<[(usize, usize); FIELDS]>) {
        (self.text, self.pairs)
    }
}

impl PairSink for PairBatch {
    fn push(&mut self, uid: &str, url: &str, alt: &str, cc_filename: &str, page_url: &str) {
        let (uid, url, alt) = (self.append(uid), self.append(url), self.append(alt));
        // The pairs of one record come in a row and share their file and page: kept once.
        let shared = self.pairs.len().checked_sub(1).filter(|&last| {
            self.field(last, 3) == cc_filename && self.field(last, 4) == page_url
        });
        let (file, page) = match shared {
            Some(last) => (self.pairs[last][3], self.pairs[last][4]),
            None => (self.append(cc_filename), self.append(page_url)),
        };
        self.pairs.push([uid, url, alt, file, page]);
    }

    fn count(&self) -> usize {
        self.pairs.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_come_back_as_pushed() {
        let mut batch = PairBatch::default();
        let rows = [
            ["a1", "http://x/1", "one", "f.warc.gz", "http://p/1"],
            ["a2", "http://x/2", "two", "f.warc.gz", "http://p/1"],
            ["a3", "http://x/3", "", "f.warc.gz", "http://p/2"],
            ["a4", "http://x/4", "four", "g.warc.gz", "http://p/2"],
        ];
        for [uid, url, alt, file, page] in rows {
            batch.push(uid, url, alt, file, page);
        }
        // The second pair shares the first one's file and page text.
        assert_eq!(batch.pairs[1][3..], batch.pairs[0][3..]);
        assert_eq!(batch.count(), 4);
        assert_eq!(batch.retain_uids(|uid| uid != "a2"), 1);
        let pairs = batch.into_pairs();
        let got: Vec<[&str; 5]> = pairs
            .iter()
            .map(|p| [p.uid.as_str(), p.url.as_str(), p.alt.as_str(), p.cc_filename.as_str(), p.page_url.as_str()])
            .collect();
        assert_eq!(got, [rows[0], rows[2], rows[3]]);
    }
}
