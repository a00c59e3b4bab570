//! [`WriteTx`]: a write transaction as one store operation sees it.
//!
//! Two things make a SQLite group commit cheap per operation, and both live here:
//!
//! - **Lazy savepoints.** Inside a batch of several operations each one needs a savepoint only
//!   if it could fail after it has written something; an operation that checks everything
//!   before its first write needs none. An operation calls [`WriteTx::protect`] before the
//!   first write that a later refusal would have to undo; until then a refusal (a domain error
//!   such as [`TrackerError::LeaseLost`]) leaves nothing behind by construction, and a database
//!   error fails the whole batch.
//! - **Appends written together.** Job history events and leaderboard credits are buffered and
//!   written once per batch, as multi-row inserts and one upsert per nickname, instead of one
//!   statement each. An operation's appends join the batch only when it succeeds, and they are
//!   written before the batch commits (or before any operation that reads or deletes those
//!   tables: see [`WriteTx::flush`]), so the history keeps its order.

use std::collections::BTreeMap;
use std::ops::{Deref, DerefMut};

use super::{cached_sql, CachedSql, DbConnection};
use crate::error::TrackerError;

/// The placeholders of `n` history rows, for `n` a power of two up to 32: history rows are
/// written 32 per `INSERT`, and a remainder by the halves of that, so a handful of statement
/// texts cover every count.
macro_rules! event_rows {
    (1) => {
        "(?, ?, ?, ?, ?, ?)"
    };
    (2) => {
        concat!(event_rows!(1), ", ", event_rows!(1))
    };
    (4) => {
        concat!(event_rows!(2), ", ", event_rows!(2))
    };
    (8) => {
        concat!(event_rows!(4), ", ", event_rows!(4))
    };
    (16) => {
        concat!(event_rows!(8), ", ", event_rows!(8))
    };
    (32) => {
        concat!(event_rows!(16), ", ", event_rows!(16))
    };
}

/// The `INSERT` of `n` history rows.
macro_rules! insert_events_sql {
    ($n:tt) => {
        concat!("INSERT INTO job_events (job_id, stage, kind, worker, at, detail) VALUES ", event_rows!($n))
    };
}

/// One row of a job's history, waiting to be written.
#[derive(Debug, Clone)]
pub(crate) struct Event {
    pub(crate) job: i64,
    pub(crate) stage: String,
    pub(crate) kind: &'static str,
    pub(crate) worker: Option<String>,
    pub(crate) at: i64,
    pub(crate) detail: Option<String>,
}

/// History rows and leaderboard credits not yet written.
#[derive(Debug, Default)]
pub(crate) struct Appends {
    events: Vec<Event>,
    credits: BTreeMap<String, i64>,
}

impl Appends {
    fn is_empty(&self) -> bool {
        self.events.is_empty() && self.credits.is_empty()
    }

    /// Moves `other`'s appends after this one's.
    fn absorb(&mut self, other: Self) {
        self.events.extend(other.events);
        for (nickname, count) in other.credits {
            *self.credits.entry(nickname).or_default() += count;
        }
    }

    /// Writes everything buffered and empties the buffer.
    pub(crate) fn write(&mut self, conn: &mut DbConnection) -> Result<(), TrackerError> {
        let events = std::mem::take(&mut self.events);
        let mut rest = events.as_slice();
        while !rest.is_empty() {
            let written = match rest.len() {
                32.. => insert_events(cached_sql!(insert_events_sql!(32)), &rest[..32], conn),
                16.. => insert_events(cached_sql!(insert_events_sql!(16)), &rest[..16], conn),
                8.. => insert_events(cached_sql!(insert_events_sql!(8)), &rest[..8], conn),
                4.. => insert_events(cached_sql!(insert_events_sql!(4)), &rest[..4], conn),
                2.. => insert_events(cached_sql!(insert_events_sql!(2)), &rest[..2], conn),
                _ => insert_events(cached_sql!(insert_events_sql!(1)), &rest[..1], conn),
            }?;
            rest = &rest[written..];
        }
        for (nickname, count) in std::mem::take(&mut self.credits) {
            cached_sql!(
                "INSERT INTO leaderboard (nickname, jobs_completed) VALUES (?, ?) ON CONFLICT (nickname) \
                 DO UPDATE SET jobs_completed = leaderboard.jobs_completed + excluded.jobs_completed",
            )
            .bind(nickname.as_str())
            .bind(count)
            .execute(conn)?;
        }
        Ok(())
    }
}

/// Runs an [`insert_events_sql!`] statement for exactly as many rows as `events` holds;
/// returns that number.
fn insert_events<'a, K: 'static>(
    mut statement: CachedSql<'a, K>,
    events: &'a [Event],
    conn: &mut DbConnection,
) -> Result<usize, TrackerError> {
    for event in events {
        statement = statement
            .bind(event.job)
            .bind(event.stage.as_str())
            .bind(event.kind)
            .bind(event.worker.as_deref())
            .bind(event.at)
            .bind(event.detail.as_deref());
    }
    statement.execute(conn)?;
    Ok(events.len())
}

/// How a refusal of the operation is undone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Undo {
    /// The operation is alone in its transaction: a failure rolls the transaction back.
    Transaction,
    /// The operation shares its transaction: [`WriteTx::protect`] opens a savepoint.
    Savepoint,
}

/// A write transaction as one operation sees it: the connection (through `Deref`), a lazy
/// savepoint, and buffered appends. See the module documentation.
pub(crate) struct WriteTx<'a> {
    conn: &'a mut DbConnection,
    /// Appends of the operations before this one in the batch, not yet written.
    batch: &'a mut Appends,
    /// This operation's appends.
    own: Appends,
    undo: Undo,
    protected: bool,
}

impl<'a> WriteTx<'a> {
    pub(crate) fn new(conn: &'a mut DbConnection, batch: &'a mut Appends, undo: Undo) -> Self {
        Self { conn, batch, own: Appends::default(), undo, protected: false }
    }

    /// Makes every write that follows undoable if the operation then fails: opens the
    /// operation's savepoint when it shares its transaction (writing the batch's earlier appends
    /// first, so the savepoint covers only this operation). Idempotent.
    pub(crate) fn protect(&mut self) -> Result<(), TrackerError> {
        if self.protected {
            return Ok(());
        }
        if self.undo == Undo::Savepoint {
            self.batch.write(self.conn)?;
            cached_sql!("SAVEPOINT cascade_write").execute(self.conn)?;
        }
        self.protected = true;
        Ok(())
    }

    /// Writes every buffered append now, the batch's and this operation's: call it before
    /// reading or deleting history rows or leaderboard rows. Protects the operation first.
    pub(crate) fn flush(&mut self) -> Result<(), TrackerError> {
        self.protect()?;
        self.own.write(self.conn)
    }

    /// Appends a row to the job's history.
    pub(crate) fn record(
        &mut self,
        job: i64,
        stage: &str,
        kind: &'static str,
        worker: Option<&str>,
        at: i64,
        detail: Option<&str>,
    ) {
        self.own.events.push(Event {
            job,
            stage: stage.to_owned(),
            kind,
            worker: worker.map(str::to_owned),
            at,
            detail: detail.map(str::to_owned),
        });
    }

    /// Credits one completed job to `nickname` on the leaderboard.
    pub(crate) fn credit(&mut self, nickname: &str) {
        *self.own.credits.entry(nickname.to_owned()).or_default() += 1;
    }

    /// Ends the operation: whether it opened a savepoint, and its appends.
    pub(crate) fn finish(self) -> (bool, Appends) {
        (self.protected, self.own)
    }
}

impl Deref for WriteTx<'_> {
    type Target = DbConnection;

    fn deref(&self) -> &DbConnection {
        self.conn
    }
}

impl DerefMut for WriteTx<'_> {
    fn deref_mut(&mut self) -> &mut DbConnection {
        self.conn
    }
}

/// Adds `own` to the batch's appends (the operation succeeded).
pub(crate) fn keep(batch: &mut Appends, own: Appends) {
    if !own.is_empty() {
        batch.absorb(own);
    }
}
