//! The chaos soak on each backend (see `cascade_tests::chaos`): 2,000 jobs through three
//! stages, local pools and remote workers, while a seeded script kills and restarts remote
//! workers and the daemon, freezes a remote worker past its lease and the daemon past its local
//! workers' leases, and cuts and slows the remote workers' links to the tracker and (on
//! PostgreSQL) the daemon's link to the database.
//! Every job must end done with the right output, every stage completed once by the lease
//! current at the time.
//!
//! The full soak (`--ignored`) is the same code with more jobs and faults:
//! `CASCADE_CHAOS_JOBS=100000 cargo test -p cascade-tests --test chaos -- --ignored --nocapture`.
//! `CASCADE_CHAOS_SEED` replays a script; `CASCADE_CHAOS_FAULTS` sets the faults per kind and
//! `CASCADE_CHAOS_DELAY_MS` the work per stage (3 ms in the full soak, 25 ms here).

use std::path::Path;
use std::sync::Mutex;

use cascade_tests::chaos::{Backend, Soak};

const BINARY: &str = env!("CARGO_BIN_EXE_cascade-test-pipeline");

/// One soak at a time: each has the machine to itself, as its timings assume.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn soak(soak: &Soak) {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let report = soak.run();
    println!("{report}");
    for (kind, injected) in &report.injected {
        assert_eq!(*injected, soak.faults_per_kind, "{} faults injected", kind.name());
    }
}

#[test]
fn chaos_on_sqlite_loses_no_job_and_accepts_no_stale_completion() {
    soak(&Soak::ci(Backend::Sqlite, Path::new(BINARY)));
}

#[test]
fn chaos_on_postgres_loses_no_job_and_accepts_no_stale_completion() {
    soak(&Soak::ci(Backend::Postgres, Path::new(BINARY)));
}

#[test]
#[ignore = "the full soak: 100,000 jobs by default (CASCADE_CHAOS_JOBS), an hour or more"]
fn full_chaos_soak_on_sqlite() {
    soak(&Soak::full(Backend::Sqlite, Path::new(BINARY)));
}

#[test]
#[ignore = "the full soak: 100,000 jobs by default (CASCADE_CHAOS_JOBS), an hour or more"]
fn full_chaos_soak_on_postgres() {
    soak(&Soak::full(Backend::Postgres, Path::new(BINARY)));
}
