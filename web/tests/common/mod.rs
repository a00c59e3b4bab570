//! A real server on a loopback port over a throw-away database, for the HTTP tests.

#![allow(dead_code, unreachable_pub)] // each test file uses a different part

use std::sync::Arc;
use std::time::Duration;

use cascade_tracker::testing::TestDatabase;
use cascade_tracker::{JobStore, ManualClock, StoreConfig};
use cascade_web::{build_server, PoolRegistry, ServerConfig};

/// A fixed start time (a whole minute), so charts and rates are deterministic.
pub const START_MS: i64 = 1_700_000_040_000;

/// A running server and the handles the tests drive it with.
pub struct TestServer {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// The store the server uses (same database, same clock).
    pub store: JobStore,
    /// The server's clock.
    pub clock: ManualClock,
    /// The pool registry the server shows.
    pub pools: PoolRegistry,
    /// The database; dropped with the server.
    pub db: TestDatabase,
}

/// The store settings: project "Dash Test", stages a = CPU, b = GPU (c..e disabled).
pub fn config() -> StoreConfig {
    StoreConfig {
        project: "Dash Test".to_owned(),
        stage_names: [Some("CPU".to_owned()), Some("GPU".to_owned()), None, None, None],
        idle_timeout: Duration::from_secs(600),
        flag_threshold: 3,
        ..StoreConfig::default()
    }
}

impl TestServer {
    /// Starts a server on `db` with [`config`].
    pub fn start(db: TestDatabase) -> Self {
        Self::start_with(db, ServerConfig::default())
    }

    /// Starts a server on `db` with [`config`] and `settings` (its address, threads and pool
    /// registry are the test's).
    pub fn start_with(db: TestDatabase, settings: ServerConfig) -> Self {
        let clock = ManualClock::new(START_MS);
        let store = JobStore::open(db.url(), config(), Arc::new(clock.clone()), 8).expect("store opens");
        let pools = PoolRegistry::default();
        let server_config = ServerConfig {
            bind: "127.0.0.1:0".parse().expect("address"),
            http_workers: Some(2),
            pools: pools.clone(),
            ..settings
        };
        let (tx, rx) = std::sync::mpsc::channel();
        let served = store.clone();
        std::thread::spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                let (server, addrs) = build_server(served, &server_config).expect("server binds");
                tx.send(addrs[0]).expect("test is waiting");
                server.await
            })
        });
        let addr = rx.recv_timeout(Duration::from_secs(30)).expect("server started");
        Self { url: format!("http://{addr}"), store, clock, pools, db }
    }

    /// GETs `path`: (status, content type, body).
    pub fn get(&self, path: &str) -> (u16, String, String) {
        let agent: ureq::Agent =
            ureq::Agent::config_builder().http_status_as_error(false).max_redirects(0).build().into();
        let mut response = agent.get(format!("{}{path}", self.url)).call().expect("the server answers");
        let content_type =
            response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        let body = response.body_mut().read_to_string().expect("a text body");
        (response.status().as_u16(), content_type, body)
    }

    /// GETs `path`, expecting 200 and JSON.
    pub fn get_json(&self, path: &str) -> serde_json::Value {
        let (status, _, body) = self.get(path);
        assert_eq!(status, 200, "{path}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
    }
}
