//! Background WAL checkpoints for SQLite.
//!
//! SQLite copies the write-ahead log back into the database file (a checkpoint, with its
//! `fsync`s) on the connection whose commit takes the log past a size limit: under load that
//! is the group-commit writer, and every operation queued behind it waits for the copy. Those
//! waits were the tracker's longest answers. A [`Checkpointer`] runs a *passive* checkpoint,
//! which never blocks the writer, on a connection of its own every [`CHECKPOINT_EVERY`], so the
//! copy stays close behind the log's end. The writer still checkpoints when the log reaches
//! its limit (`wal_autocheckpoint` in [`super::SQLITE_PRAGMAS`], raised to 50,000 pages so it
//! happens rarely): by then nearly everything is copied, and its checkpoint is what lets the
//! log start again from its beginning while writes never pause (a checkpoint that could do that
//! from here would have to stop the writer for the whole copy).

use std::time::Duration;

use crossbeam_channel::{bounded, RecvTimeoutError, Sender};
use diesel::connection::SimpleConnection;

use super::connect_sqlite;
use crate::error::TrackerError;

/// How often the log is copied back in the background.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(20);

/// The background checkpoint thread of one SQLite database; it stops when this is dropped.
#[derive(Debug)]
pub(crate) struct Checkpointer {
    _stop: Sender<()>,
}

impl Checkpointer {
    /// Starts checkpointing the database at `path` in the background.
    pub(crate) fn start(path: &str) -> Result<Self, TrackerError> {
        let mut conn = connect_sqlite(path)?;
        let (stop, stopped) = bounded::<()>(0);
        std::thread::Builder::new()
            .name("cascade-wal-checkpoint".to_owned())
            .spawn(move || {
                // Its timer must not take the core from the writer either.
                cascade_threads::no_wakeup_preemption();
                loop {
                    match stopped.recv_timeout(CHECKPOINT_EVERY) {
                        Err(RecvTimeoutError::Timeout) => {}
                        Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
                    }
                    if let Err(error) = conn.batch_execute("PRAGMA wal_checkpoint(PASSIVE)") {
                        tracing::debug!(%error, "Background checkpoint failed; the writer's own checkpoint covers it.");
                    }
                }
            })
            .map_err(|e| TrackerError::Commit(format!("cannot start the checkpoint thread: {e}")))?;
        Ok(Self { _stop: stop })
    }
}
