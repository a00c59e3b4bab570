//! Fuzzes one WAT metadata record body (JSON) through the pair extraction, with and without
//! the LAION-5B filters, and Python-compatible URL joining.
#![no_main]

use cascade_stages::wat::{parse_metadata_record, python_urljoin, WatFilters, WatSummary};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for filters in [WatFilters::default(), WatFilters::laion5b()] {
        let mut out = Vec::new();
        let mut stats = WatSummary::default();
        if parse_metadata_record(data, &filters, &mut out, &mut stats).is_ok() {
            assert_eq!(stats.pairs, out.len() as u64);
            for p in &out {
                assert!(p.url.starts_with("http://") || p.url.starts_with("https://"));
                assert_eq!(p.uid.len(), 32);
                assert!(!p.alt.is_empty());
            }
        } else {
            assert!(out.is_empty());
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Some((base, url)) = text.split_once('\n') {
            let _ = python_urljoin(base, url);
        }
    }
});
