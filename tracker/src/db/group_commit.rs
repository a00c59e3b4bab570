//! Group commit for SQLite: many operations per write transaction.
//!
//! SQLite has one writer at a time and a commit costs far more than the statements in it, so
//! under load the holder of the write connection takes every operation waiting in the queue (up
//! to [`MAX_BATCH`]), runs each inside its own savepoint — an operation that fails is rolled
//! back alone — and commits them together. Each caller gets its answer only after the commit,
//! so a reported success is durable exactly as with one transaction per operation. The queue is
//! bounded: when writes fall behind, callers block instead of piling up work.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex, PoisonError};

use crossbeam_channel::{bounded, Receiver, Sender};
use diesel::connection::{AnsiTransactionManager, TransactionManager};
use diesel::Connection;

use super::DbConnection;
use crate::error::TrackerError;

/// Most operations committed together.
const MAX_BATCH: usize = 512;
/// Operations that may wait for the write connection before callers block.
const QUEUE_CAPACITY: usize = 4096;

/// An operation waiting for the writer, type-erased.
trait PendingWrite: Send {
    /// Runs the operation in a savepoint of the open transaction; `Err` means it panicked.
    fn run(&mut self, conn: &mut DbConnection) -> Result<(), Panicked>;
    /// Runs the operation directly in the open transaction (it is alone in its batch, so the
    /// caller rolls the transaction back if it failed); returns whether it succeeded.
    fn run_alone(&mut self, conn: &mut DbConnection) -> Result<bool, Panicked>;
    /// Delivers the outcome once the batch is committed (or failed with `batch_error`).
    fn finish(self: Box<Self>, batch_error: Option<&str>);
}

struct Pending<T, F> {
    operation: Option<F>,
    outcome: Option<Result<T, TrackerError>>,
    reply: Sender<Result<T, TrackerError>>,
}

impl<T, F> PendingWrite for Pending<T, F>
where
    T: Send,
    F: FnOnce(&mut DbConnection) -> Result<T, TrackerError> + Send,
{
    fn run(&mut self, conn: &mut DbConnection) -> Result<(), Panicked> {
        let Some(operation) = self.operation.take() else { return Ok(()) };
        let outcome = catch_unwind(AssertUnwindSafe(|| conn.transaction(operation))).map_err(|_| Panicked)?;
        self.outcome = Some(outcome);
        Ok(())
    }

    fn run_alone(&mut self, conn: &mut DbConnection) -> Result<bool, Panicked> {
        let Some(operation) = self.operation.take() else { return Ok(true) };
        let outcome = catch_unwind(AssertUnwindSafe(|| operation(conn))).map_err(|_| Panicked)?;
        let succeeded = outcome.is_ok();
        self.outcome = Some(outcome);
        Ok(succeeded)
    }

    fn finish(self: Box<Self>, batch_error: Option<&str>) {
        let outcome = match (batch_error, self.outcome) {
            (None, Some(outcome)) => outcome,
            (Some(error), _) => Err(TrackerError::Commit(error.to_owned())),
            (None, None) => Err(TrackerError::Commit("the operation did not run".to_owned())),
        };
        // The caller may have given up waiting; nothing else to do then.
        let _ = self.reply.send(outcome);
    }
}

/// The shared write path: a queue of waiting operations and the one write connection.
///
/// There is no writer thread. A caller queues its operation, then takes the connection lock;
/// whoever holds the lock runs everything queued so far as one batch (flat combining). Under
/// contention most callers find, once they get the lock, that the holder before them already
/// ran and committed their operation, and leave at once; without contention a caller runs its
/// own operation on its own thread, with no hand-off at all.
#[derive(Clone)]
pub(crate) struct GroupCommitWriter {
    queue: Sender<Box<dyn PendingWrite>>,
    waiting: Receiver<Box<dyn PendingWrite>>,
    connection: Arc<Mutex<WriteConnection>>,
}

/// The write connection and how to open it again.
struct WriteConnection {
    conn: DbConnection,
    connect: Box<dyn Fn() -> Result<DbConnection, TrackerError> + Send>,
}

impl GroupCommitWriter {
    /// Opens the write connection with `connect` (used again to replace the connection after an
    /// operation panicked).
    pub(crate) fn start(
        connect: impl Fn() -> Result<DbConnection, TrackerError> + Send + 'static,
    ) -> Result<Self, TrackerError> {
        let conn = connect()?;
        let (queue, waiting) = bounded(QUEUE_CAPACITY);
        let connection = WriteConnection { conn, connect: Box::new(connect) };
        Ok(Self { queue, waiting, connection: Arc::new(Mutex::new(connection)) })
    }

    /// Runs `operation` in a batch and returns its outcome after the batch commits.
    pub(crate) fn write<T, F>(&self, operation: F) -> Result<T, TrackerError>
    where
        T: Send + 'static,
        F: FnOnce(&mut DbConnection) -> Result<T, TrackerError> + Send + 'static,
    {
        let (reply, answer) = bounded(1);
        let pending = Pending { operation: Some(operation), outcome: None, reply };
        self.queue
            .send(Box::new(pending))
            .map_err(|_| TrackerError::Commit("the write queue is closed".to_owned()))?;
        loop {
            if let Ok(outcome) = answer.try_recv() {
                return outcome;
            }
            let mut connection = self.connection.lock().unwrap_or_else(PoisonError::into_inner);
            if let Ok(outcome) = answer.try_recv() {
                return outcome;
            }
            // Run batches until the queue is empty: ours is in it, possibly behind others.
            loop {
                let batch: Vec<_> = self.waiting.try_iter().take(MAX_BATCH).collect();
                if batch.is_empty() {
                    break;
                }
                connection.commit_batch(batch);
            }
        }
    }
}

impl WriteConnection {
    /// Runs and commits one batch, then answers every caller in it.
    fn commit_batch(&mut self, mut batch: Vec<Box<dyn PendingWrite>>) {
        match run_batch(&mut self.conn, &mut batch) {
            Ok(()) => batch.into_iter().for_each(|op| op.finish(None)),
            Err(BatchFailure::Failed(error)) => {
                tracing::error!(%error, operations = batch.len(), "SQLite write batch failed.");
                batch.into_iter().for_each(|op| op.finish(Some(&error)));
            }
            Err(BatchFailure::Panicked) => {
                tracing::error!(operations = batch.len(), "A write operation panicked; its batch was rolled back.");
                batch.into_iter().for_each(|op| op.finish(Some("a write operation panicked")));
                match (self.connect)() {
                    Ok(fresh) => self.conn = fresh,
                    Err(error) => tracing::error!(%error, "Could not reopen the SQLite write connection."),
                }
            }
        }
    }
}

/// An operation panicked.
struct Panicked;

enum BatchFailure {
    Failed(String),
    Panicked,
}

fn sqlite(conn: &mut DbConnection) -> Result<&mut diesel::SqliteConnection, BatchFailure> {
    match conn {
        DbConnection::Sqlite(c) => Ok(c),
        DbConnection::Pg(_) => Err(BatchFailure::Failed("group commit is for SQLite only".to_owned())),
    }
}

fn run_batch(conn: &mut DbConnection, batch: &mut [Box<dyn PendingWrite>]) -> Result<(), BatchFailure> {
    AnsiTransactionManager::begin_transaction_sql(sqlite(conn)?, "BEGIN IMMEDIATE")
        .map_err(|e| BatchFailure::Failed(e.to_string()))?;
    // A lone operation needs no savepoint: if it fails, the whole transaction is rolled back.
    if let [op] = batch {
        return match op.run_alone(conn) {
            Ok(true) => commit(sqlite(conn)?),
            Ok(false) => AnsiTransactionManager::rollback_transaction(sqlite(conn)?)
                .map_err(|e| BatchFailure::Failed(e.to_string())),
            Err(Panicked) => {
                let _ = AnsiTransactionManager::rollback_transaction(sqlite(conn)?);
                Err(BatchFailure::Panicked)
            }
        };
    }
    for op in batch.iter_mut() {
        if op.run(conn).is_err() {
            let _ = AnsiTransactionManager::rollback_transaction(sqlite(conn)?);
            return Err(BatchFailure::Panicked);
        }
    }
    commit(sqlite(conn)?)
}

fn commit(inner: &mut diesel::SqliteConnection) -> Result<(), BatchFailure> {
    AnsiTransactionManager::commit_transaction(inner).map_err(|e| {
        let _ = AnsiTransactionManager::rollback_transaction(inner);
        BatchFailure::Failed(e.to_string())
    })
}
