//! The tracker's error type.

use crate::protocol::JobId;
use crate::stage::StageId;

/// Everything a [`JobStore`](crate::JobStore) operation can fail with.
///
/// The domain variants map one-to-one onto the distcompute protocol's answers, so the HTTP
/// layer can translate them without inspecting messages.
#[derive(Debug, thiserror::Error)]
#[must_use]
pub enum TrackerError {
    /// The database reported an error.
    #[error("database error: {0}")]
    Db(diesel::result::Error),
    /// No connection could be taken from the pool (database down, or pool exhausted too long).
    #[error("database connection pool error: {0}")]
    Pool(#[from] diesel::r2d2::PoolError),
    /// A connection could not be opened.
    #[error("could not connect to the database: {0}")]
    Connect(#[from] diesel::ConnectionError),
    /// A write could not be committed (the whole batch it was in failed); it may be retried.
    #[error("write not committed: {0}")]
    Commit(String),
    /// The database file could not be written: its disk is full, a file-size limit was reached,
    /// or the disk failed (SQLite's "database or disk is full" and "disk I/O error"). Nothing
    /// was written; the write may be retried once there is room. Holds SQLite's message.
    #[error("cannot write the database file (disk full, file-size limit reached, or I/O error): {0}")]
    Storage(String),
    /// The schema could not be migrated.
    #[error("database migration failed: {0}")]
    Migration(String),
    /// The token names no worker (never registered, said bye, or swept after going silent).
    #[error("unknown worker token")]
    UnknownWorker,
    /// The stage letter is not one of `a`..`e`.
    #[error("invalid worker stage: '{0}'")]
    InvalidStage(String),
    /// The stage exists but is not enabled in this pipeline.
    #[error("the worker stage '{0}' is disabled")]
    DisabledStage(StageId),
    /// The worker's stage has no job that can be claimed now.
    #[error("no open job at this stage")]
    NoJobAvailable,
    /// The worker holds no job.
    #[error("the worker holds no job")]
    NoJobHeld,
    /// The worker's lease was lost: the job was completed, flagged, or re-claimed by another
    /// worker after the lease expired. Nothing was changed.
    #[error("the worker's lease on job {job} is no longer valid")]
    LeaseLost {
        /// The job the worker believed it held.
        job: JobId,
    },
    /// `init` was asked to load jobs into a database that already has some.
    #[error("the database already holds {existing} jobs; pass --reset to replace them")]
    NotEmpty {
        /// How many jobs are there.
        existing: i64,
    },
    /// The job list to load is malformed.
    #[error("invalid job list: {0}")]
    InvalidJobs(String),
    /// No job has that number.
    #[error("job {0} does not exist")]
    NoSuchJob(i64),
}

impl TrackerError {
    /// Whether this is the store refusing the request (unknown worker, no job, lost lease, …)
    /// rather than the database or the connection failing.
    pub(crate) fn is_refusal(&self) -> bool {
        !matches!(
            self,
            Self::Db(_) | Self::Pool(_) | Self::Connect(_) | Self::Commit(_) | Self::Storage(_) | Self::Migration(_)
        )
    }
}

/// SQLite's messages for a file it cannot write: `SQLITE_FULL` (no room on the disk) and
/// `SQLITE_IOERR` (among others a write refused with `EFBIG` past a file-size limit, or a
/// failing disk). They are SQLite's fixed texts for these result codes (`sqlite3ErrStr`),
/// which diesel passes on as the message of an otherwise unclassified database error.
const SQLITE_STORAGE_MESSAGES: [&str; 2] = ["database or disk is full", "disk I/O error"];

impl From<diesel::result::Error> for TrackerError {
    /// A database error; [`TrackerError::Storage`] when SQLite could not write its file.
    fn from(error: diesel::result::Error) -> Self {
        match &error {
            diesel::result::Error::DatabaseError(_, info) if SQLITE_STORAGE_MESSAGES.contains(&info.message()) => {
                Self::Storage(info.message().to_owned())
            }
            _ => Self::Db(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use diesel::result::{DatabaseErrorKind, Error};

    use super::*;

    #[test]
    fn sqlite_write_failures_are_storage_errors_and_others_stay_database_errors() {
        let database = |message: &str| Error::DatabaseError(DatabaseErrorKind::Unknown, Box::new(message.to_owned()));
        for message in SQLITE_STORAGE_MESSAGES {
            let error = TrackerError::from(database(message));
            assert!(matches!(&error, TrackerError::Storage(m) if m == message), "{error:?}");
            assert!(error.to_string().contains("disk full"), "{error}");
            assert!(!error.is_refusal());
        }
        assert!(matches!(TrackerError::from(database("database is locked")), TrackerError::Db(_)));
        assert!(matches!(TrackerError::from(Error::NotFound), TrackerError::Db(_)));
    }
}
