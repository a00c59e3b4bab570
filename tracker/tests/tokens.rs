//! Worker tokens are kept as digests: the database never holds one a worker could present,
//! and tokens an earlier version stored in clear are re-keyed when the store opens, with their
//! workers carrying on. Run on SQLite and on the local PostgreSQL server.

use std::sync::Arc;

use cascade_tracker::testing::TestDatabase;
use cascade_tracker::{JobStore, ManualClock, StageId, StoreConfig};

fn open(db: &TestDatabase) -> JobStore {
    let config = StoreConfig {
        project: "Tokens".to_owned(),
        stage_names: [Some("A".to_owned()), None, None, None, None],
        ..StoreConfig::default()
    };
    JobStore::open(db.url(), config, Arc::new(ManualClock::new(1_700_000_000_000)), 4).unwrap()
}

fn count(db: &TestDatabase, table: &str, column: &str, value: &str) -> i64 {
    db.count(&format!("SELECT count(*) AS n FROM {table} WHERE {column} = '{value}'"))
}

macro_rules! token_suite {
    ($backend:ident) => {
        mod $backend {
            use super::*;

            #[test]
            fn the_database_keeps_digests_not_tokens() {
                let db = TestDatabase::$backend();
                let store = open(&db);
                store.load_jobs(&["job-1".to_owned(), "job-2".to_owned()], false).unwrap();
                let worker = store.register_worker("w", StageId::A, None).unwrap();
                let job = store.claim(&worker.token).unwrap();
                let (raw, key) = (worker.token.as_str(), worker.token.stored_key());
                assert_eq!(key.len(), 64);
                assert_ne!(raw, key);
                assert_eq!(count(&db, "workers", "token", raw), 0, "no token in clear");
                assert_eq!(count(&db, "workers", "token", key), 1);
                assert_eq!(count(&db, "jobs", "lease_owner", raw), 0);
                assert_eq!(count(&db, "jobs", "lease_owner", key), 1);
                store.complete(&worker.token, Some(job.held()), "out").unwrap();
                assert_eq!(store.job(1).unwrap().result.as_deref(), Some("out"));
            }

            #[test]
            fn tokens_stored_in_clear_are_rekeyed_and_keep_working() {
                let db = TestDatabase::$backend();
                let store = open(&db);
                store.load_jobs(&["job-1".to_owned()], false).unwrap();
                let worker = store.register_worker("w", StageId::A, None).unwrap();
                let job = store.claim(&worker.token).unwrap();
                drop(store);
                // As an earlier version left it: the token itself in both places.
                let (raw, key) = (worker.token.as_str(), worker.token.stored_key());
                db.execute(&format!(
                    "UPDATE workers SET token = '{raw}' WHERE token = '{key}'; \
                     UPDATE jobs SET lease_owner = '{raw}' WHERE lease_owner = '{key}';"
                ));
                assert_eq!(count(&db, "workers", "token", raw), 1);
                let store = open(&db);
                assert_eq!(count(&db, "workers", "token", raw), 0);
                assert_eq!(count(&db, "jobs", "lease_owner", key), 1);
                assert!(store.validate_worker(&worker.token).unwrap());
                store.complete(&worker.token, Some(job.held()), "out").unwrap();
                assert_eq!(store.job(1).unwrap().result.as_deref(), Some("out"));
            }
        }
    };
}

token_suite!(sqlite);
token_suite!(postgres);
