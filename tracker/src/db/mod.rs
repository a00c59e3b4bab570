//! Database access: the backend-neutral connection type, pools, pragmas and migrations.
//!
//! SQLite is the default (an embedded file, nothing to set up); PostgreSQL is chosen by a
//! `postgres://` or `postgresql://` URL and lets several tracker processes share the work.
//! Queries are written once against [`DbConnection`], diesel's multi-backend connection. The
//! write path's statements are named, typed functions in [`statements`] (the few whose SQL
//! differs between backends, such as the claim's row lock, carry both texts); the read models
//! use diesel's query builder.

mod admission;
mod checkpoint;
mod daemons;
mod group_commit;
pub(crate) mod schema;
pub(crate) mod statement;
pub(crate) mod statements;
mod write_tx;

use std::sync::Arc;
use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::Connection;
use diesel::r2d2::{ConnectionManager, CustomizeConnection, Pool, PooledConnection};
use diesel::{PgConnection, SqliteConnection};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

use self::checkpoint::Checkpointer;
use self::group_commit::{GroupCommitWriter, LaneUse};
pub(crate) use self::group_commit::{Combine, Together};
#[cfg(test)]
pub(crate) use self::group_commit::commit_together;
pub(crate) use self::statement::{cached_sql, CachedSql};
pub(crate) use self::write_tx::WriteTx;
use crate::error::TrackerError;
use crate::protocol::WorkerToken;
use crate::store::LeaseCycle;

/// A connection to either supported database.
#[derive(diesel::MultiConnection)]
pub enum DbConnection {
    /// An embedded SQLite database file.
    Sqlite(SqliteConnection),
    /// A PostgreSQL server.
    Pg(PgConnection),
}

const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
const PG_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

/// Runs one diesel statement on the concrete connection inside a [`DbConnection`], for the
/// statements diesel's multi-backend cannot express (batch inserts, upserts).
macro_rules! per_backend {
    ($conn:expr, |$c:ident| $body:expr) => {
        match $conn {
            $crate::db::DbConnection::Sqlite($c) => $body,
            $crate::db::DbConnection::Pg($c) => $body,
        }
    };
}
pub(crate) use per_backend;

/// Where the tracker keeps its data, parsed from a database URL or path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// A SQLite database file (created if missing).
    Sqlite(String),
    /// A PostgreSQL connection URL.
    Postgres(String),
}

impl DatabaseUrl {
    /// The file used when no database is configured.
    pub const DEFAULT_SQLITE_PATH: &'static str = "cascade.db";

    /// Parses a URL or path: `postgres://…`/`postgresql://…` selects PostgreSQL; `sqlite://PATH`,
    /// a plain path, or an empty string (→ `./cascade.db`) selects SQLite.
    pub fn parse(raw: &str) -> Self {
        let raw = raw.trim();
        if raw.starts_with("postgres://") || raw.starts_with("postgresql://") {
            return Self::Postgres(raw.to_owned());
        }
        let path = raw
            .strip_prefix("sqlite://")
            .or_else(|| raw.strip_prefix("sqlite:"))
            .unwrap_or(raw);
        if path.is_empty() {
            Self::Sqlite(Self::DEFAULT_SQLITE_PATH.to_owned())
        } else {
            Self::Sqlite(path.to_owned())
        }
    }

    /// A short description safe to log (no password).
    pub fn describe(&self) -> String {
        match self {
            Self::Sqlite(path) => format!("sqlite:{path}"),
            Self::Postgres(url) => match url.split_once('@') {
                Some((_, host)) => format!("postgres://…@{host}"),
                None => url.clone(),
            },
        }
    }
}

/// A pooled connection.
pub(crate) type Conn = PooledConnection<ConnectionManager<DbConnection>>;

/// The connection pools of one store.
///
/// Writes go through group commit ([`GroupCommitWriter`]). SQLite allows one writer at a time,
/// so its writer has one connection of its own, and reads use a separate pool that WAL mode
/// lets run beside the writer. PostgreSQL uses one pool for both: its writer lanes take their
/// connections from it too.
#[derive(Clone)]
pub(crate) struct Pools {
    writer: GroupCommitWriter<LeaseCycle>,
    reader: Pool<ConnectionManager<DbConnection>>,
    sqlite: bool,
    /// SQLite's background checkpoints, running while any clone of the pools lives.
    _checkpointer: Option<Arc<Checkpointer>>,
}

/// Pragmas applied to every SQLite connection: WAL lets readers run beside the writer;
/// `synchronous = NORMAL` is durable against process crashes (a power loss may lose the last
/// commits, never corrupt the file); the busy timeout lets other processes wait their turn;
/// `temp_store = MEMORY` keeps the savepoint journal of group commit (the pages each operation
/// changes, kept until it ends, at most one batch's worth) in memory instead of writing it to a
/// temporary file; `wal_autocheckpoint = 50000` leaves the copying of the log to the
/// background [`Checkpointer`] and lets the writer restart the log only every 50,000 pages
/// (≈200 MB of log; about once every two seconds under full load), because each restart holds
/// up every write waiting behind it for the two `fsync`s it needs.
const SQLITE_PRAGMAS: &str = "PRAGMA busy_timeout = 10000; PRAGMA journal_mode = WAL; \
                              PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; \
                              PRAGMA temp_store = MEMORY; PRAGMA wal_autocheckpoint = 50000;";

/// Applies [`SQLITE_PRAGMAS`] to pooled connections.
#[derive(Debug)]
struct SqlitePragmas;

impl CustomizeConnection<DbConnection, diesel::r2d2::Error> for SqlitePragmas {
    fn on_acquire(&self, conn: &mut DbConnection) -> Result<(), diesel::r2d2::Error> {
        conn.batch_execute(SQLITE_PRAGMAS).map_err(diesel::r2d2::Error::QueryError)
    }
}

/// Opens one SQLite connection with the pragmas applied.
fn connect_sqlite(path: &str) -> Result<DbConnection, TrackerError> {
    let mut conn = DbConnection::Sqlite(SqliteConnection::establish(path)?);
    conn.batch_execute(SQLITE_PRAGMAS)?;
    Ok(conn)
}

/// Longest wait for a PostgreSQL connection: while the server is unreachable, requests fail
/// (503) after this long instead of queueing, and the pool reconnects once it is back.
const PG_CONNECTION_TIMEOUT: Duration = Duration::from_secs(5);

/// How a store connects to its database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolSettings {
    /// Connections at most (for SQLite, the readers'; its writer has one of its own).
    pub max_connections: u32,
    /// PostgreSQL writer lanes: batches committed at the same time, each on a connection of the
    /// pool, all of them running. `None` chooses [`PoolSettings::default_lanes`], of which a
    /// daemon runs only its share at once while other daemons use the database too (its lanes
    /// divided by the daemons, at least one; recounted every two seconds); SQLite has one
    /// writer whatever this says.
    pub writer_lanes: Option<u32>,
}

impl PoolSettings {
    /// `max_connections` connections and the default writer lanes.
    #[must_use]
    pub fn connections(max_connections: u32) -> Self {
        Self { max_connections, writer_lanes: None }
    }

    /// The writer lanes when none are asked for: one per core (at least two, so that one
    /// lane's statements overlap the other's commit; at most eight), and never more than half
    /// the pool, which reads use too.
    #[must_use]
    pub fn default_lanes(max_connections: u32) -> u32 {
        let cores = std::thread::available_parallelism().map_or(2, |n| u32::try_from(n.get()).unwrap_or(u32::MAX));
        cores.clamp(2, 8).min(max_connections / 2).max(1)
    }

    /// The PostgreSQL writer lanes these settings give (at least one).
    fn pg_writer_lanes(&self) -> u32 {
        self.writer_lanes.unwrap_or_else(|| Self::default_lanes(self.max_connections)).max(1)
    }
}

impl Pools {
    /// Opens the pools and applies pending migrations.
    pub(crate) fn open(url: &DatabaseUrl, settings: PoolSettings) -> Result<Self, TrackerError> {
        let max_connections = settings.max_connections;
        let pools = match url {
            DatabaseUrl::Sqlite(path) => {
                migrate(&mut connect_sqlite(path)?)?;
                let reader = Pool::builder()
                    .max_size(max_connections.max(1))
                    .min_idle(Some(1))
                    .test_on_check_out(false)
                    .connection_timeout(Duration::from_secs(30))
                    .connection_customizer(Box::new(SqlitePragmas))
                    .build(ConnectionManager::<DbConnection>::new(path.clone()))?;
                let checkpointer = Some(Arc::new(Checkpointer::start(path)?));
                let path = path.clone();
                let writer = GroupCommitWriter::start_single(move || connect_sqlite(&path))?;
                Self { writer, reader, sqlite: true, _checkpointer: checkpointer }
            }
            DatabaseUrl::Postgres(url) => {
                let lanes = settings.pg_writer_lanes();
                // No idle connections kept in reserve: the pool opens connections (on its own
                // threads) only for a caller waiting for one, never in the background after a
                // checkout. A connection still being opened when the process exits races
                // OpenSSL's exit-time cleanup (libpq negotiates TLS) and crashes the process.
                let pool = Pool::builder()
                    .max_size(max_connections.max(lanes + 1))
                    .min_idle(Some(0))
                    .test_on_check_out(false)
                    .connection_timeout(PG_CONNECTION_TIMEOUT)
                    .connection_customizer(Box::new(daemons::NameConnections))
                    .build(ConnectionManager::<DbConnection>::new(url.clone()))?;
                migrate(&mut *pool.get()?)?;
                let used = if settings.writer_lanes.is_some() { LaneUse::All } else { LaneUse::Share };
                let writer = GroupCommitWriter::start_pool(pool.clone(), lanes as usize, used)?;
                Self { writer, reader: pool, sqlite: false, _checkpointer: None }
            }
        };
        Ok(pools)
    }

    /// Whether this is the SQLite backend.
    pub(crate) fn is_sqlite(&self) -> bool {
        self.sqlite
    }

    /// Runs `f` as one write transaction, in the next group commit (see [`WriteTx`] for what an
    /// operation must do before writing). The result is returned after the commit.
    pub(crate) fn write<T, F>(&self, f: F) -> Result<T, TrackerError>
    where
        T: Send + 'static,
        F: FnOnce(&mut WriteTx<'_>) -> Result<T, TrackerError> + Send + 'static,
    {
        self.writer.write(None, f)
    }

    /// [`write`](Self::write) of an operation of the worker with `token`: every write of one
    /// worker goes through one writer lane (see [`GroupCommitWriter`]).
    pub(crate) fn write_as<T, F>(&self, token: &WorkerToken, f: F) -> Result<T, TrackerError>
    where
        T: Send + 'static,
        F: FnOnce(&mut WriteTx<'_>) -> Result<T, TrackerError> + Send + 'static,
    {
        self.writer.write(Some(token.stored_key()), f)
    }

    /// [`write_as`](Self::write_as) for async callers: the caller's task waits for the group
    /// commit without holding a thread. Must be awaited inside a tokio runtime.
    pub(crate) async fn write_as_async<T, F>(&self, token: &WorkerToken, f: F) -> Result<T, TrackerError>
    where
        T: Send + 'static,
        F: FnOnce(&mut WriteTx<'_>) -> Result<T, TrackerError> + Send + 'static,
    {
        self.writer.write_async(Some(token.stored_key()), f).await
    }

    /// Runs a step of a worker's lease cycle in the next group commit, on PostgreSQL together
    /// with the other such steps of the batch (see [`Combine`]).
    pub(crate) fn write_cycle(&self, step: LeaseCycle) -> Result<<LeaseCycle as Combine>::Answer, TrackerError> {
        self.writer.write_combined(step)
    }

    /// [`write_cycle`](Self::write_cycle) for async callers, as [`write_as_async`](Self::write_as_async).
    pub(crate) async fn write_cycle_async(&self, step: LeaseCycle) -> Result<<LeaseCycle as Combine>::Answer, TrackerError> {
        self.writer.write_combined_async(step).await
    }

    /// Runs `f` on a connection from the read pool (outside any explicit transaction).
    pub(crate) fn read<T>(
        &self,
        f: impl FnOnce(&mut DbConnection) -> Result<T, TrackerError>,
    ) -> Result<T, TrackerError> {
        let mut conn = self.reader.get()?;
        f(&mut conn)
    }

    /// Runs `f` in a read-only transaction, so several queries see one snapshot.
    pub(crate) fn read_snapshot<T>(
        &self,
        f: impl FnOnce(&mut DbConnection) -> Result<T, TrackerError>,
    ) -> Result<T, TrackerError> {
        let mut conn: Conn = self.reader.get()?;
        diesel::Connection::transaction(&mut *conn, f)
    }
}

/// Applies pending migrations.
fn migrate(conn: &mut DbConnection) -> Result<(), TrackerError> {
    let applied = match conn {
        DbConnection::Sqlite(c) => c.run_pending_migrations(SQLITE_MIGRATIONS),
        DbConnection::Pg(c) => c.run_pending_migrations(PG_MIGRATIONS),
    }
    .map_err(|e| TrackerError::Migration(e.to_string()))?;
    if !applied.is_empty() {
        tracing::info!(count = applied.len(), "Applied database migrations.");
    }
    rekey_clear_tokens(conn)
}

/// A worker token as earlier versions stored it.
#[derive(diesel::QueryableByName)]
struct ClearToken {
    #[diesel(sql_type = diesel::sql_types::Text)]
    token: String,
}

/// Replaces worker tokens that earlier versions stored in clear (anything but a 64-character
/// digest) by their digests, in the workers and in the leases they hold, in one transaction;
/// their workers carry on unaffected. Does nothing once done.
fn rekey_clear_tokens(conn: &mut DbConnection) -> Result<(), TrackerError> {
    use diesel::prelude::*;
    use schema::{jobs, workers};
    conn.transaction::<_, TrackerError, _>(|conn| {
        let clear: Vec<ClearToken> =
            diesel::sql_query("SELECT token FROM workers WHERE length(token) <> 64").load(conn)?;
        for ClearToken { token } in &clear {
            let key = crate::protocol::stored_key_of(token);
            diesel::update(workers::table.filter(workers::token.eq(token))).set(workers::token.eq(&key)).execute(conn)?;
            diesel::update(jobs::table.filter(jobs::lease_owner.eq(token)))
                .set(jobs::lease_owner.eq(&key))
                .execute(conn)?;
        }
        if !clear.is_empty() {
            tracing::info!(workers = clear.len(), "Worker tokens stored in clear were replaced by their digests.");
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::PoolSettings;

    #[test]
    fn writer_lanes_are_the_ones_asked_for_or_follow_the_cores_and_the_pool() {
        assert_eq!(PoolSettings { max_connections: 16, writer_lanes: Some(1) }.pg_writer_lanes(), 1);
        assert_eq!(PoolSettings { max_connections: 16, writer_lanes: Some(3) }.pg_writer_lanes(), 3);
        assert_eq!(PoolSettings { max_connections: 16, writer_lanes: Some(0) }.pg_writer_lanes(), 1);
        assert!((2..=8).contains(&PoolSettings::connections(16).pg_writer_lanes()));
        assert_eq!(PoolSettings::connections(2).pg_writer_lanes(), 1);
    }
}
