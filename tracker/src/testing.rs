//! Throw-away databases for tests: a SQLite file in a temporary directory, or a uniquely named
//! database on a running PostgreSQL server that is dropped again afterwards.

use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection, RunQueryDsl, SqliteConnection};

use crate::db::DatabaseUrl;

/// The PostgreSQL server tests use, from `CASCADE_TEST_POSTGRES`, by default the local server's
/// `test` database with trust authentication.
pub fn postgres_admin_url() -> String {
    std::env::var("CASCADE_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A database that exists for the lifetime of this value.
#[derive(Debug)]
pub struct TestDatabase {
    url: DatabaseUrl,
    cleanup: Cleanup,
}

#[derive(Debug)]
enum Cleanup {
    /// Deleted (with the database file) when dropped.
    Sqlite { _dir: tempfile::TempDir },
    Postgres { admin_url: String, name: String },
}

impl TestDatabase {
    /// A fresh SQLite file.
    ///
    /// # Panics
    /// When no temporary directory can be created.
    pub fn sqlite() -> Self {
        // unwrap: tests cannot run without a temporary directory.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cascade-test.db");
        Self { url: DatabaseUrl::Sqlite(path.display().to_string()), cleanup: Cleanup::Sqlite { _dir: dir } }
    }

    /// A fresh, uniquely named database on the test PostgreSQL server.
    ///
    /// # Panics
    /// When the server cannot be reached or the database cannot be created: PostgreSQL tests
    /// need the server, and silently skipping them would hide a broken backend.
    pub fn postgres() -> Self {
        let admin_url = postgres_admin_url();
        let name = format!("cascade_test_{}_{}", std::process::id(), uuid::Uuid::new_v4().simple());
        let mut admin = PgConnection::establish(&admin_url)
            .unwrap_or_else(|e| panic!("PostgreSQL tests need a server at {admin_url}: {e}"));
        diesel::sql_query(format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .unwrap_or_else(|e| panic!("cannot create test database {name}: {e}"));
        let base = admin_url.rsplit_once('/').map_or(admin_url.as_str(), |(base, _)| base);
        Self {
            url: DatabaseUrl::Postgres(format!("{base}/{name}")),
            cleanup: Cleanup::Postgres { admin_url, name },
        }
    }

    /// Where the database is.
    pub fn url(&self) -> &DatabaseUrl {
        &self.url
    }

    /// Runs `sql` (one or more statements) on the database directly, beside any open store:
    /// for tests that need a state no store operation makes (a failed job, say).
    ///
    /// # Panics
    /// When the database cannot be reached or the SQL fails.
    pub fn execute(&self, sql: &str) {
        let result = match &self.url {
            DatabaseUrl::Sqlite(path) => SqliteConnection::establish(path)
                .map_err(|e| e.to_string())
                .and_then(|mut c| c.batch_execute(&format!("PRAGMA busy_timeout = 10000; {sql}")).map_err(|e| e.to_string())),
            DatabaseUrl::Postgres(url) => PgConnection::establish(url)
                .map_err(|e| e.to_string())
                .and_then(|mut c| c.batch_execute(sql).map_err(|e| e.to_string())),
        };
        if let Err(e) = result {
            panic!("test SQL failed: {e}: {sql}");
        }
    }

    /// Runs `query`, a `SELECT count(*) AS n …`, on the database directly, and returns `n`.
    ///
    /// # Panics
    /// When the database cannot be reached or the query fails.
    pub fn count(&self, query: &str) -> i64 {
        #[derive(diesel::QueryableByName)]
        struct Count {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        let result: Result<Vec<Count>, String> = match &self.url {
            DatabaseUrl::Sqlite(path) => SqliteConnection::establish(path)
                .map_err(|e| e.to_string())
                .and_then(|mut c| diesel::sql_query(query).load(&mut c).map_err(|e| e.to_string())),
            DatabaseUrl::Postgres(url) => PgConnection::establish(url)
                .map_err(|e| e.to_string())
                .and_then(|mut c| diesel::sql_query(query).load(&mut c).map_err(|e| e.to_string())),
        };
        match result {
            Ok(rows) => rows.first().map_or(0, |row| row.n),
            Err(e) => panic!("test query failed: {e}: {query}"),
        }
    }

    /// The URL as the command line takes it.
    pub fn url_string(&self) -> String {
        match &self.url {
            DatabaseUrl::Sqlite(path) | DatabaseUrl::Postgres(path) => path.clone(),
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Cleanup::Postgres { admin_url, name } = &self.cleanup {
            match PgConnection::establish(admin_url) {
                Ok(mut admin) => {
                    if let Err(e) =
                        diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut admin)
                    {
                        eprintln!("could not drop test database {name}: {e}");
                    }
                }
                Err(e) => eprintln!("could not drop test database {name}: {e}"),
            }
        }
    }
}
