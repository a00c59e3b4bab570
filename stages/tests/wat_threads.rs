//! The same output at every thread count: members inflated ahead on the pool, parsed on the
//! pool or all on the calling thread give the same pairs and the same counters, damage included.
#![cfg(feature = "wat")]

mod wat_support;

use cascade_stages::wat::{WatOptions, WatSummary};
use wat_support::{assert_pairs, gunzip, gzip, members, metadata_member, read, run, DERIVED};

/// The four derived samples and the genuine WAT fragment, member by member, with damage of
/// every kind the decoder handles, and cut short inside the last member.
fn damaged_corpus() -> Vec<u8> {
    let mut all: Vec<Vec<u8>> = DERIVED.iter().flat_map(|stem| members(&read(&format!("{stem}.warc.wat.gz")))).collect();
    all.extend(members(&read("cc-whirlwind-CC-MAIN-2024-22.warc.wat.gz")));
    let n = all.len();
    assert!(n > 900, "{n} members");

    // A deflate error in the middle of a member.
    let mid = all[n / 7].len() / 2;
    for b in &mut all[n / 7][mid..mid + 16] {
        *b ^= 0x5a;
    }
    // A CRC-32 mismatch.
    let len = all[2 * n / 7].len();
    all[2 * n / 7][len - 8] ^= 0xff;
    // Garbage with a false header after a member, and a repeated trailer after another.
    all[3 * n / 7].extend_from_slice(b"garbage \x1f\x8b\x08\x00 more garbage");
    let trailer = all[4 * n / 7][all[4 * n / 7].len() - 8..].to_vec();
    all[4 * n / 7].extend_from_slice(&trailer);
    // A record with broken JSON, and one record split over two members.
    all[5 * n / 7] = metadata_member(r#"{"Envelope": {"Payload-Metadata": [}"#);
    let record = gunzip(&all[6 * n / 7]);
    let half = record.len() / 2;
    all[6 * n / 7] = [gzip(&record[..half]), gzip(&record[half..])].concat();

    let mut corpus = all.concat();
    corpus.truncate(corpus.len() - 20);
    corpus
}

#[test]
fn a_damaged_multi_member_corpus_gives_the_same_output_at_0_1_and_2_threads() {
    let corpus = damaged_corpus();
    let (want, want_summary) = run(&corpus, &WatOptions::default(), 0).unwrap();
    assert!(want.len() > 1000, "{} pairs", want.len());
    let s = &want_summary;
    // The false header in the garbage counts as a third bad member.
    assert_eq!((s.bad_gzip_members, s.skipped.invalid_json), (3, 1));
    assert!(s.garbage_bytes > 30 && s.truncated_at.is_some(), "{s:?}");
    // Small batches make small read-ahead chunks, so chunk boundaries fall everywhere.
    for batch_bytes in [4096, 20_000, 64 * 1024, 1 << 20] {
        for threads in [0, 1, 2] {
            let opts = WatOptions { batch_bytes, ..WatOptions::default() };
            let (got, summary) = run(&corpus, &opts, threads).unwrap();
            let what = format!("batch_bytes={batch_bytes} threads={threads}");
            assert_pairs(&got, &want, &what);
            assert_eq!(summary, want_summary, "{what}");
        }
    }
}

#[test]
fn every_cut_of_a_small_corpus_gives_the_same_output_at_0_and_2_threads() {
    let corpus: Vec<u8> = members(&read(&format!("{}.warc.wat.gz", DERIVED[3]))).into_iter().take(40).flatten().collect();
    let opts = WatOptions { batch_bytes: 4096, ..WatOptions::default() };
    for cut in (1..corpus.len()).step_by(997) {
        let inline = run(&corpus[..cut], &opts, 0);
        let pooled = run(&corpus[..cut], &opts, 2);
        match (inline, pooled) {
            (Ok((want, want_summary)), Ok((got, summary))) => {
                assert_pairs(&got, &want, &format!("cut={cut}"));
                assert_eq!(summary, want_summary, "cut={cut}");
            }
            (inline, pooled) => assert_eq!(summary_or_err(inline), summary_or_err(pooled), "cut={cut}"),
        }
    }
}

/// The summary, or the error's text, for comparing two runs that may fail.
fn summary_or_err<P>(r: Result<(P, WatSummary), cascade_stages::wat::WatError>) -> Result<WatSummary, String> {
    r.map(|(_, s)| s).map_err(|e| e.to_string())
}
