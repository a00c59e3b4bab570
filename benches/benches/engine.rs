//! Engine overhead: no-op jobs through local stage pools (one stage, five stages) and through
//! remote `cascade worker` threads over HTTP, all on SQLite, beside the named reference "the
//! bare store cycle": one thread calling `claim` + `complete` on the same kind of database with
//! no engine around it. Throughput is in jobs (per stage passed).
#![allow(missing_docs)] // criterion_group! generates an undocumented public function

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::rt::System;
use cascade_engine::config::EngineSettings;
use cascade_engine::runtime::outcome::RetryPolicy;
use cascade_engine::runtime::{Drain, RemoteWorker, StagePlan, Supervisor};
use cascade_stages::stage::{ArtifactLocation, ArtifactStore, Stage, StageContext, StageError, StageRegistry};
use cascade_tracker::testing::TestDatabase;
use cascade_tracker::{JobStore, StageId, StoreConfig, SystemClock};
use cascade_web::ServerConfig;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

/// Jobs per measured run: enough that starting and stopping the pools (64 registrations, 64
/// `bye`s) is a small part of it.
const JOBS: usize = 5000;

/// Passes its input on.
struct Noop;

impl Stage for Noop {
    type Input = String;
    type Output = String;

    fn process(&mut self, input: String, _: &StageContext) -> Result<String, StageError> {
        Ok(input)
    }
}

fn registry() -> StageRegistry {
    let mut registry = StageRegistry::new();
    registry.register("noop", |_| Ok(Noop));
    registry
}

fn engine_settings(artifacts: &std::path::Path) -> EngineSettings {
    EngineSettings {
        artifacts: ArtifactLocation::Local(artifacts.to_owned()),
        lease_ttl: Duration::from_secs(60),
        max_attempts: 3,
        retry_backoff: Duration::from_secs(1),
        max_retry_backoff: Duration::from_secs(10),
        shutdown_grace: Duration::from_secs(1),
        poll_interval: Duration::from_millis(5),
    }
}

/// A fresh SQLite store with `stages` stages and `JOBS` jobs.
fn loaded_store(db: &TestDatabase, stages: usize) -> JobStore {
    let mut stage_names: [Option<String>; 5] = Default::default();
    for (i, name) in stage_names.iter_mut().enumerate().take(stages) {
        *name = Some(format!("s{i}"));
    }
    let config = StoreConfig { stage_names, ..StoreConfig::default() };
    let store = JobStore::open(db.url(), config, Arc::new(SystemClock), 8).unwrap();
    let jobs: Vec<String> = (0..JOBS).map(|i| format!("job-{i}")).collect();
    store.load_jobs(&jobs, true).unwrap();
    store
}

fn all_done(store: &JobStore, last: usize) -> bool {
    store.stage_counts().unwrap()[last].done == JOBS as i64
}

/// Seconds for `JOBS` jobs through `stages` local no-op stages of `workers` threads each.
fn run_local(stages: usize, workers: usize) -> Duration {
    let db = TestDatabase::sqlite();
    let artifacts = tempfile::tempdir().unwrap();
    let store = loaded_store(&db, stages);
    let plans: Vec<StagePlan> = StageId::ALL
        .into_iter()
        .take(stages)
        .map(|stage| StagePlan {
            stage,
            kind: "noop".into(),
            workers,
            queue: 64,
            threads: Some(1),
            max_attempts: 5,
            settings: serde_json::json!({}),
        })
        .collect();
    System::new().block_on(async move {
        let started = Instant::now();
        let supervisor = Supervisor::start(&store, &plans, &registry(), &engine_settings(artifacts.path()), &Default::default())
                .unwrap();
        while !all_done(&store, stages - 1) {
            actix_web::rt::time::sleep(Duration::from_millis(10)).await;
        }
        let elapsed = started.elapsed();
        supervisor.send(Drain { grace: Duration::from_secs(1) }).await.unwrap();
        elapsed
    })
}

/// Seconds for `JOBS` jobs through one stage worked by `workers` remote workers over HTTP.
fn run_remote(workers: usize) -> Duration {
    let db = TestDatabase::sqlite();
    let artifacts = tempfile::tempdir().unwrap();
    let store = loaded_store(&db, 1);
    let (url_tx, url_rx) = std::sync::mpsc::channel();
    let server_store = store.clone();
    let server = std::thread::spawn(move || {
        System::new().block_on(async move {
            let config = ServerConfig { bind: ([127, 0, 0, 1], 0).into(), ..ServerConfig::default() };
            let (server, addrs) = cascade_web::build_server(server_store, &config).unwrap();
            url_tx.send((format!("http://{}", addrs[0]), server.handle())).unwrap();
            server.await.unwrap();
        });
    });
    let (url, handle) = url_rx.recv().unwrap();
    let settings = engine_settings(artifacts.path());
    let worker = RemoteWorker {
        tracker: url,
        stage: StageId::A,
        kind: "noop".into(),
        settings: serde_json::json!({}),
        nickname: "bench".into(),
        policy: RetryPolicy::from(&settings),
        poll_interval: Duration::from_millis(5),
        artifacts: ArtifactStore::local(artifacts.path()),
        rayon: Arc::new(rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap()),
        registry: registry(),
    };
    let crew = Arc::new(worker.crew(workers));
    let started = Instant::now();
    let running = std::thread::spawn({
        let crew = Arc::clone(&crew);
        move || crew.run().unwrap()
    });
    while !all_done(&store, 0) {
        std::thread::sleep(Duration::from_millis(10));
    }
    let elapsed = started.elapsed();
    crew.stop();
    running.join().unwrap();
    System::new().block_on(handle.stop(true));
    server.join().unwrap();
    elapsed
}

/// Seconds for `JOBS` bare claim + complete cycles on one thread: the reference.
fn run_bare_store() -> Duration {
    let db = TestDatabase::sqlite();
    let store = loaded_store(&db, 1);
    let worker = store.register_worker("bench", StageId::A, None).unwrap();
    let started = Instant::now();
    for _ in 0..JOBS {
        let job = store.claim(&worker.token).unwrap();
        store.complete(&worker.token, None, &job.data).unwrap();
    }
    started.elapsed()
}

fn repeat(iters: u64, run: impl Fn() -> Duration) -> Duration {
    (0..iters).map(|_| run()).sum()
}

fn engine_benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("engine/sqlite");
    group.sample_size(10).measurement_time(Duration::from_secs(15));
    group.throughput(Throughput::Elements(JOBS as u64));
    group.bench_function("reference: bare store claim+complete, 1 thread", |b| b.iter_custom(|n| repeat(n, run_bare_store)));
    for workers in [1, 4, 16, 64] {
        group.bench_function(format!("1 local no-op stage, {workers} workers"), |b| {
            b.iter_custom(|n| repeat(n, || run_local(1, workers)))
        });
    }
    group.bench_function("remote no-op worker over HTTP, 4 workers", |b| b.iter_custom(|n| repeat(n, || run_remote(4))));
    group.throughput(Throughput::Elements(5 * JOBS as u64));
    group.bench_function("5 local no-op stages, 2 workers each (per stage passed)", |b| {
        b.iter_custom(|n| repeat(n, || run_local(5, 2)))
    });
    group.finish();
}

criterion_group!(benches, engine_benches);
criterion_main!(benches);
