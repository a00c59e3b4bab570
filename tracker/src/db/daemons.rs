//! The Cascade daemons that share a PostgreSQL database now, and a writer's share of its lanes.
//!
//! Every connection a process opens to PostgreSQL names itself after the process
//! (`application_name` `cascade-daemon-<id>`, one random id per process), so the processes using
//! a database are the distinct such names among its sessions. A writer whose lanes the operator
//! did not set runs its lanes divided by that count at once (at least one,
//! [`Admission`](super::admission::Admission)), recounted every [`RECOUNT_EVERY`]: all the
//! daemons' lanes together then stay near what one daemon alone would run, which is what the
//! `db-writer-lanes` setting was for (docs/performance.md). A daemon with no connection open
//! (an idle one) is not counted, and does not need to be.

use std::sync::LazyLock;
use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::r2d2::{ConnectionManager, CustomizeConnection, Pool};

use super::admission::Admission;
use super::{statements, DbConnection};
use crate::error::TrackerError;

/// How often a writer counts the daemons again.
pub(super) const RECOUNT_EVERY: Duration = Duration::from_secs(2);

/// What every connection of this process is named.
static NAME: LazyLock<String> = LazyLock::new(|| format!("cascade-daemon-{}", uuid::Uuid::new_v4().simple()));

/// Names each new PostgreSQL connection after this process.
#[derive(Debug)]
pub(super) struct NameConnections;

impl CustomizeConnection<DbConnection, diesel::r2d2::Error> for NameConnections {
    fn on_acquire(&self, conn: &mut DbConnection) -> Result<(), diesel::r2d2::Error> {
        conn.batch_execute(&format!("SET application_name = '{}'", *NAME))
            .map_err(diesel::r2d2::Error::QueryError)
    }
}

/// The daemons with a session on the database of `conn` now (at least one: the caller's).
pub(super) fn count(conn: &mut DbConnection) -> Result<usize, TrackerError> {
    let rows = statements::count_daemons(conn)?;
    Ok(rows.first().map_or(1, |row| usize::try_from(row.count).unwrap_or(1)).max(1))
}

/// The lanes of `lanes` that one of `daemons` daemons runs at once.
pub(super) fn share(lanes: usize, daemons: usize) -> usize {
    (lanes / daemons.max(1)).max(1)
}

/// Counts the daemons on `pool`'s database and sets `admission`'s limit to this writer's share
/// of its `lanes`; when the count fails, the limit stays as it was.
pub(super) fn take_share(pool: &Pool<ConnectionManager<DbConnection>>, admission: &Admission, lanes: usize) {
    let counted = pool.get().map_err(TrackerError::Pool).and_then(|mut conn| count(&mut conn));
    match counted {
        Ok(daemons) => {
            let running = share(lanes, daemons);
            if admission.set_limit(running) {
                tracing::info!(daemons, lanes, running, "Daemons using the database changed: writer lanes running at once.");
            }
        }
        Err(error) => tracing::debug!(%error, "Could not count the daemons sharing the database."),
    }
}

#[cfg(test)]
mod tests {
    use diesel::Connection;

    use super::*;
    use crate::testing::TestDatabase;

    #[test]
    fn each_daemon_runs_its_share_of_the_lanes_and_at_least_one() {
        assert_eq!(share(2, 1), 2);
        assert_eq!(share(8, 3), 2);
        assert_eq!(share(2, 3), 1);
        assert_eq!(share(1, 0), 1);
    }

    #[test]
    fn the_daemons_on_a_database_are_its_distinctly_named_cascade_sessions() {
        let db = TestDatabase::postgres();
        let url = db.url_string();
        let connect = || DbConnection::Pg(diesel::PgConnection::establish(&url).unwrap());
        let named = |name: &str| {
            let mut conn = connect();
            conn.batch_execute(&format!("SET application_name = '{name}'")).unwrap();
            conn
        };
        let mut ours = connect();
        NameConnections.on_acquire(&mut ours).unwrap();
        let mut same = connect();
        NameConnections.on_acquire(&mut same).unwrap();
        let _someone_else = named("psql");
        assert_eq!(count(&mut ours).unwrap(), 1, "two sessions of one process are one daemon");
        let other = named("cascade-daemon-0123456789abcdef0123456789abcdef");
        assert_eq!(count(&mut ours).unwrap(), 2);
        drop(other);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while count(&mut ours).unwrap() != 1 {
            assert!(std::time::Instant::now() < deadline, "the other daemon's session did not end");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
