//! Damaged and wrong inputs: every pair before or around the damage is kept, the damage is
//! counted, nothing panics.
#![cfg(feature = "wat")]

mod wat_support;

use cascade_stages::wat::{Pair, WatError, WatOptions};
use wat_support::{assert_pairs, expected, gunzip, gzip, members, metadata_member, opts, read, run, DERIVED};

const IA: &str = DERIVED[2];

fn ia() -> (Vec<u8>, Vec<Vec<u8>>) {
    let input = read(&format!("{IA}.warc.wat.gz"));
    let m = members(&input);
    (input, m)
}

/// Pairs of the file with member `skip` left out (the expectation when that member is damaged).
fn without_member(members: &[Vec<u8>], skip: usize) -> Vec<Pair> {
    let input: Vec<u8> = members.iter().enumerate().filter(|(i, _)| *i != skip).flat_map(|(_, m)| m.clone()).collect();
    run(&input, &opts(), 0).unwrap().0
}

fn index_with_pairs(members: &[Vec<u8>], from: usize) -> usize {
    from + wat_support::member_with_pairs(&members[from..], 2)
}

#[test]
fn truncated_gzip_keeps_every_pair_before_the_fault() {
    let (input, members) = ia();
    assert_eq!(members.len(), 823);
    let want = expected(IA);
    let mut checked = 0;
    for cut in [input.len() / 3, input.len() / 2, input.len() - 5, 12] {
        // Pairs of the members that end before the cut.
        let mut end = 0;
        let mut whole = 0;
        for m in &members {
            if end + m.len() > cut {
                break;
            }
            end += m.len();
            whole += 1;
        }
        let prefix: Vec<u8> = members[..whole].concat();
        let before = run(&prefix, &opts(), 0).unwrap().0;
        for threads in [0, 2] {
            let (got, s) = run(&input[..cut], &opts(), threads).unwrap();
            assert_pairs(&got, &before, &format!("cut={cut}"));
            assert_pairs(&got, &want[..got.len()], "prefix of the full output");
            assert_eq!(s.truncated_at, Some(end as u64), "cut={cut}");
            assert_eq!(s.records, whole as u64);
        }
        checked += before.len();
    }
    assert!(checked > 300);
}

#[test]
fn truncated_plain_warc_keeps_complete_records() {
    let plain = gunzip(&read(&format!("{IA}.warc.wat.gz")));
    let (got, s) = run(&plain[..plain.len() / 2], &opts(), 2).unwrap();
    assert!(!got.is_empty());
    assert_pairs(&got, &expected(IA)[..got.len()], "plain prefix");
    assert_eq!(s.skipped.partial_record, 1);
}

#[test]
fn garbage_between_members_is_skipped_and_counted() {
    let (_, members) = ia();
    let k = index_with_pairs(&members, 100);
    let garbage: Vec<u8> = (0..5000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).chain(*b"\x1f\x8b\x08junk").collect();
    let mut input = members[..k].concat();
    input.extend_from_slice(&garbage);
    input.extend(members[k..].concat());
    // Garbage at the very end too.
    input.extend_from_slice(b"trailing junk");
    for threads in [0, 2] {
        let (got, s) = run(&input, &opts(), threads).unwrap();
        assert_pairs(&got, &expected(IA), "garbage");
        assert_eq!(s.garbage_bytes, garbage.len() as u64 + 13);
        assert_eq!(s.records, 823);
        assert_eq!(s.truncated_at, None);
    }
}

#[test]
fn corrupt_member_loses_only_its_record() {
    let (_, mut members) = ia();
    let k = index_with_pairs(&members, 200);
    let want = without_member(&members, k);
    // Flip bytes in the middle of the deflate data.
    let mid = members[k].len() / 2;
    for b in &mut members[k][mid..mid + 16] {
        *b ^= 0x5a;
    }
    let (got, s) = run(&members.concat(), &opts(), 2).unwrap();
    assert_pairs(&got, &want, "corrupt member");
    assert_eq!(s.bad_gzip_members, 1);
    assert_eq!(s.records, 822);
}

#[test]
fn bad_json_and_bad_utf8_skip_one_record() {
    let (_, members) = ia();
    let k = index_with_pairs(&members, 300);
    let want = without_member(&members, k);
    let record = gunzip(&members[k]);
    let body_at = record.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let alt_at = body_at + record[body_at..].windows(6).position(|w| w == b"\"alt\":").unwrap();

    let mut bad_json = record.clone();
    bad_json[body_at + 1] = b'#'; // {"Container"… → {#Container"…, same length
    let mut bad_utf8 = record.clone();
    bad_utf8[alt_at + 7] = 0xff; // first byte of an alt text
    let mut bad_shape = record;
    let links_at = body_at + bad_shape[body_at..].windows(9).position(|w| w == b"\"Links\":[").unwrap();
    bad_shape[links_at + 8] = b'7'; // "Links":7…  → invalid JSON after it, still one record

    for (damaged, field) in [(bad_json, "invalid_json"), (bad_utf8, "invalid_utf8"), (bad_shape, "bad")] {
        let mut m = members.clone();
        m[k] = gzip(&damaged);
        let (got, s) = run(&m.concat(), &opts(), 2).unwrap();
        assert_pairs(&got, &want, field);
        assert_eq!(s.skipped.bad_records(), 1, "{field}");
        match field {
            "invalid_json" => assert_eq!(s.skipped.invalid_json, 1),
            "invalid_utf8" => assert_eq!(s.skipped.invalid_utf8, 1),
            _ => {}
        }
        assert_eq!(s.records, 823);
    }
}

#[test]
fn bad_links_are_skipped_one_by_one() {
    let json = r#"{"Container":{"Filename":"f.warc.gz"},"Envelope":{"WARC-Header-Metadata":{"WARC-Target-URI":"http://h/dir/page.html"},
      "Payload-Metadata":{"HTTP-Response-Metadata":{"HTML-Metadata":{"Head":{"Base":"http://base/b/"},"Links":[
        {"path":"IMG@/src","url":"a.png","alt":"ok \u00e9"},
        {"path":"IMG@/src","url":"b.png","alt":null},
        {"path":"IMG@/src","alt":"no url"},
        {"path":"IMG@/src","url":null,"alt":"null url"},
        "not an object",
        {"path":"IMG@/src","url":"c.png"},
        {"path":"IMG@/src","url":"c.png","alt":""},
        {"path":"IMG@/src","url":"data:image/png;base64,xx","alt":"data"},
        {"path":"A@/href","url":"x.html","alt":null,"text":"t"},
        {"alt":"last","url":"/d.png","path":"IMG@/src","title":{"nested":[1,2]}}
      ]}}}}}"#;
    let mut input = metadata_member(json);
    input.extend(metadata_member(r#"{"Envelope":{"Payload-Metadata":{"HTTP-Response-Metadata":{"HTML-Metadata":{"Links":[]}}}}}"#));
    input.extend(metadata_member(r#"{"Envelope":{}}"#));
    input.extend(metadata_member(r#"[1,2,3]"#));
    let (got, s) = run(&input, &opts(), 2).unwrap();
    let urls: Vec<_> = got.iter().map(|p| (p.url.as_str(), p.alt.as_str())).collect();
    assert_eq!(urls, [("http://base/b/a.png", "ok é"), ("http://base/d.png", "last")]);
    assert_eq!(got[0].page_url, "http://h/dir/page.html");
    assert_eq!(got[0].cc_filename, "f.warc.gz");
    assert_eq!(got[0].uid, format!("{:x}", md5::compute("ok éhttp://base/b/a.png")));
    let k = &s.skipped;
    assert_eq!((k.link_bad_alt, k.link_missing_url, k.link_not_object, k.empty_alt, k.non_http_url), (1, 2, 1, 2, 1));
    assert_eq!((s.links, s.img_links), (10, 8));
    // No filename / target URI → missing field; `Envelope` without payload → missing field;
    // an array → unexpected shape.
    assert_eq!((k.missing_field, k.unexpected_schema), (2, 1));
}

#[test]
fn a_plain_warc_is_rejected_as_not_wat() {
    let err = run(&read("cc-whirlwind-CC-MAIN-2024-22.warc.gz"), &opts(), 2).unwrap_err();
    assert!(matches!(&err, WatError::NotWat { record_type } if record_type == "request"), "{err}");
    assert!(err.to_string().contains("not a WAT"));
}

#[test]
fn empty_and_non_warc_inputs() {
    let (pairs, s) = run(b"", &opts(), 2).unwrap();
    assert!(pairs.is_empty());
    assert_eq!((s.records, s.bytes_read), (0, 0));
    assert!(matches!(run(b"PK\x03\x04 a zip file", &opts(), 2), Err(WatError::NotWarc(_))));
    assert!(matches!(run(&gzip(b"just some text\n"), &opts(), 2), Err(WatError::NotWarc(_))));
    // Only garbage after a valid gzip magic: zero records, the bytes counted as garbage.
    assert!(run(b"\x1f\x8bxxxxxxxxxxxxxxxxxxxxxxxx", &opts(), 0).is_ok());
}

#[test]
fn oversized_records_are_skipped() {
    let input = read(&format!("{}.warc.wat.gz", DERIVED[3]));
    let o = WatOptions { max_record_bytes: 12_000, ..opts() };
    let (got, s) = run(&input, &o, 2).unwrap();
    assert!(s.skipped.oversized_record > 0);
    assert!(got.len() < expected(DERIVED[3]).len());
    let all = expected(DERIVED[3]);
    // What is kept is a subsequence of the full output.
    let mut it = all.iter();
    assert!(got.iter().all(|p| it.any(|q| q == p)));
}

#[test]
fn random_mutations_never_panic() {
    // A cheap in-suite stand-in for the cargo-fuzz targets (stages/fuzz/).
    let (input, _) = ia();
    let input = &input[..200_000];
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut rand = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for round in 0..40 {
        let mut data = input.to_vec();
        for _ in 0..=(rand() % 8) {
            let at = (rand() as usize) % data.len();
            match rand() % 3 {
                0 => data[at] = rand() as u8,
                1 => data.truncate(at.max(1)),
                _ => data.splice(at..at, (0..rand() % 64).map(|_| rand() as u8)).for_each(drop),
            }
        }
        let threads = round % 3;
        let _ = run(&data, &WatOptions { batch_bytes: 8192, ..opts() }, threads);
        let _ = run(&gunzip_lossy(&data), &opts(), 0);
    }
}

/// Whatever a multi-member decoder gets out of `data` before failing.
fn gunzip_lossy(data: &[u8]) -> Vec<u8> {
    use std::io::Read;
    let mut out = Vec::new();
    let _ = flate2::bufread::MultiGzDecoder::new(data).read_to_end(&mut out);
    out
}

/// A metadata record with one image link and an ignored field of `filler` characters, as one
/// gzip member.
fn big_member(filler: &str, alt: &str) -> Vec<u8> {
    metadata_member(&format!(
        concat!(
            r#"{{"Container":{{"Filename":"big.warc.gz"}},"Envelope":{{"WARC-Header-Metadata":"#,
            r#"{{"WARC-Target-URI":"http://example.com/"}},"Payload-Metadata":{{"HTTP-Response-Metadata":"#,
            r#"{{"HTML-Metadata":{{"Links":[{{"path":"A@/href","url":"/x","text":"{}"}},"#,
            r#"{{"path":"IMG@/src","url":"/big.png","alt":"{}"}}]}}}}}}}}}}"#
        ),
        filler, alt
    ))
}

#[test]
fn members_bigger_than_the_input_buffer_or_the_one_call_cap_are_streamed() {
    let (_, members) = ia();
    // ~1.5 MB of incompressible text: a member larger than the 1 MiB input buffer.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let noise: String = (0..1_500_000)
        .map(|_| {
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            char::from(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_"[(state >> 58) as usize])
        })
        .collect();
    let wide = big_member(&noise, "wide");
    assert!(wide.len() > 1 << 20);
    // 5 MB that compress to a few KiB: more output than one call inflates.
    let tall = big_member(&" ".repeat(5_000_000), "tall");
    assert!(tall.len() < 64 * 1024);
    let (k, m) = (index_with_pairs(&members, 100), index_with_pairs(&members, 400));
    let mut input = members[..k].concat();
    input.extend(&wide);
    input.extend(members[k..m].concat());
    input.extend(&tall);
    input.extend(members[m..].concat());
    // The same records uncompressed take no gzip path at all.
    let (want, _) = run(&gunzip(&input), &opts(), 0).unwrap();
    assert_eq!(want.len(), expected(IA).len() + 2);
    for threads in [0, 2] {
        let (got, s) = run(&input, &opts(), threads).unwrap();
        assert_pairs(&got, &want, "big members");
        assert_eq!((s.gzip_members, s.bad_gzip_members, s.garbage_bytes), (825, 0, 0));
    }
    // A bad CRC in a big member is still found, and every other member is kept. (The big
    // record itself may already have been handed over when the trailer is read.)
    let others = |pairs: &[Pair]| pairs.iter().filter(|p| p.alt != "wide" && p.alt != "tall").cloned().collect::<Vec<_>>();
    for member in [&wide, &tall] {
        let start = input.windows(member.len()).position(|w| w == &member[..]).unwrap();
        let mut bad = input.clone();
        bad[start + member.len() - 6] ^= 0xff;
        let (got, s) = run(&bad, &opts(), 2).unwrap();
        assert_pairs(&others(&got), &others(&want), "bad CRC in a big member");
        assert_eq!((s.gzip_members, s.bad_gzip_members), (824, 1));
    }
}

#[test]
fn a_repeated_trailer_after_a_member_is_garbage() {
    let (_, members) = ia();
    let k = index_with_pairs(&members, 100);
    let mut input = members[..=k].concat();
    let trailer = members[k][members[k].len() - 8..].to_vec();
    input.extend(&trailer);
    input.extend(members[k + 1..].concat());
    for threads in [0, 2] {
        let (got, s) = run(&input, &opts(), threads).unwrap();
        assert_pairs(&got, &expected(IA), "repeated trailer");
        assert_eq!((s.gzip_members, s.bad_gzip_members, s.garbage_bytes), (823, 0, 8));
    }
}
