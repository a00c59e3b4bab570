//! Store throughput: one claim + complete cycle (two write transactions) on SQLite and on
//! PostgreSQL, beside the named reference "one empty write transaction on the same database"
//! (SQLite `BEGIN IMMEDIATE; COMMIT`, PostgreSQL `BEGIN; COMMIT`), the floor any durable
//! tracker pays per state change.
#![allow(missing_docs)] // criterion_group! generates an undocumented public function

use std::sync::Arc;
use std::time::Duration;

use cascade_tracker::testing::TestDatabase;
use cascade_tracker::{DatabaseUrl, JobStore, StageId, StoreConfig, SystemClock};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use diesel::connection::SimpleConnection;
use diesel::Connection;

const JOBS: usize = 200_000;

fn store(db: &TestDatabase) -> JobStore {
    let config = StoreConfig {
        stage_names: [Some("a".to_owned()), None, None, None, None],
        ..StoreConfig::default()
    };
    let store = JobStore::open(db.url(), config, Arc::new(SystemClock), 4).unwrap();
    let jobs: Vec<String> = (0..JOBS).map(|i| format!("shard-{i:06}.tar")).collect();
    store.load_jobs(&jobs, true).unwrap();
    store
}

fn empty_transaction(url: &DatabaseUrl) -> Box<dyn FnMut()> {
    match url {
        DatabaseUrl::Sqlite(path) => {
            let mut conn = diesel::SqliteConnection::establish(path).unwrap();
            conn.batch_execute("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;").unwrap();
            Box::new(move || conn.batch_execute("BEGIN IMMEDIATE; COMMIT;").unwrap())
        }
        DatabaseUrl::Postgres(url) => {
            let mut conn = diesel::PgConnection::establish(url).unwrap();
            Box::new(move || conn.batch_execute("BEGIN; COMMIT;").unwrap())
        }
    }
}

fn bench_backend(c: &mut Criterion, name: &str, db: TestDatabase) {
    let store = store(&db);
    let worker = store.register_worker("bench", StageId::A, None).unwrap();
    let mut group = c.benchmark_group(format!("store/{name}"));
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("claim+complete cycle", |b| {
        b.iter(|| {
            store.claim(&worker.token).unwrap();
            store.complete(&worker.token, None, "out").unwrap();
        })
    });
    let mut reference = empty_transaction(db.url());
    group.bench_function("reference: empty write transaction", |b| b.iter(&mut reference));
    group.finish();
}

fn store_benches(c: &mut Criterion) {
    bench_backend(c, "sqlite", TestDatabase::sqlite());
    bench_backend(c, "postgres", TestDatabase::postgres());
}

criterion_group!(benches, store_benches);
criterion_main!(benches);
