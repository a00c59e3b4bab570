//! Benchmark support for Cascade. The criterion benchmarks live in `benches/`; the HTTP load
//! generator is the `loadgen` binary (`src/bin/loadgen.rs`), driven by `benches/http_load.sh`.
