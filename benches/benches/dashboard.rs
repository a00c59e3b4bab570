//! The dashboard with 10,000 registered workers, over HTTP on loopback (SQLite, 100,000 jobs,
//! 20,000 of them finished):
//!
//! - "page load": `GET /web` and `GET /v1/dashboard`, what a browser fetches when it opens the
//!   page (the script and style sheet are cached);
//! - "refresh": `GET /v1/dashboard`, what the open page fetches every 2 seconds;
//!
//! beside the named reference `GET /v1/stats` on the same server (per-stage counts and ETA,
//! the smallest answer that still counts every job). The bytes of each answer are printed.
#![allow(missing_docs)] // criterion_group! generates an undocumented public function

use std::sync::Arc;
use std::time::Duration;

use cascade_tracker::testing::TestDatabase;
use cascade_tracker::{JobStore, StageId, StoreConfig, SystemClock};
use cascade_web::{build_server, ServerConfig};
use criterion::{criterion_group, criterion_main, Criterion};

const WORKERS: usize = 10_000;
const JOBS: usize = 100_000;
const FINISHED: usize = 20_000;

/// A store with `JOBS` jobs, `FINISHED` of them done, and `WORKERS` workers on two stages.
fn filled_store(db: &TestDatabase) -> JobStore {
    let config = StoreConfig {
        stage_names: [Some("wat".to_owned()), Some("download".to_owned()), None, None, None],
        ..StoreConfig::default()
    };
    let store = JobStore::open(db.url(), config, Arc::new(SystemClock), 8).unwrap();
    let jobs: Vec<String> = (0..JOBS).map(|i| format!("crawl/segment-{i:06}.warc.wat.gz")).collect();
    store.load_jobs(&jobs, true).unwrap();
    let finisher = store.register_worker("finisher", StageId::A, None).unwrap();
    for _ in 0..FINISHED {
        store.claim(&finisher.token).unwrap();
        store.complete(&finisher.token, None, "pairs.parquet").unwrap();
    }
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                for i in (t..WORKERS).step_by(8) {
                    let stage = if i % 4 == 0 { StageId::B } else { StageId::A };
                    let worker = store.register_worker(&format!("owner-{}", i % 500), stage, None).unwrap();
                    store.update_progress(&worker.token, "downloading 12/64").unwrap();
                }
            })
        })
        .collect();
    threads.into_iter().for_each(|t| t.join().unwrap());
    store
}

/// Serves `store` on a free loopback port from a background thread; returns the base URL.
fn serve(store: JobStore) -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            let config = ServerConfig { bind: "127.0.0.1:0".parse().unwrap(), http_workers: Some(1), ..ServerConfig::default() };
            let (server, addrs) = build_server(store, &config).unwrap();
            tx.send(addrs[0]).unwrap();
            server.await
        })
    });
    format!("http://{}", rx.recv().unwrap())
}

/// GETs `url` and returns the body's length.
fn fetch(agent: &ureq::Agent, url: &str) -> usize {
    let mut response = agent.get(url).call().unwrap();
    response.body_mut().read_to_vec().unwrap().len()
}

fn dashboard_benches(c: &mut Criterion) {
    let db = TestDatabase::sqlite();
    let base = serve(filled_store(&db));
    let agent = ureq::Agent::new_with_defaults();
    let [page, snapshot, stats] = ["/web", "/v1/dashboard", "/v1/stats"].map(|path| format!("{base}{path}"));
    println!(
        "bytes with {WORKERS} workers: page {} + snapshot {}; reference /v1/stats {}",
        fetch(&agent, &page),
        fetch(&agent, &snapshot),
        fetch(&agent, &stats)
    );
    let mut group = c.benchmark_group("dashboard/10k workers");
    group.measurement_time(Duration::from_secs(10));
    group.bench_function("page load (/web + /v1/dashboard)", |b| {
        b.iter(|| fetch(&agent, &page) + fetch(&agent, &snapshot))
    });
    group.bench_function("refresh (/v1/dashboard)", |b| b.iter(|| fetch(&agent, &snapshot)));
    group.bench_function("reference: /v1/stats", |b| b.iter(|| fetch(&agent, &stats)));
    group.finish();
}

criterion_group!(benches, dashboard_benches);
criterion_main!(benches);
