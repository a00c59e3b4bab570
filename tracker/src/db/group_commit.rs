//! Group commit: many operations per transaction, on one or a few writer connections.
//!
//! A commit costs far more than the statements in it (SQLite syncs its log; PostgreSQL waits
//! for its WAL to be flushed, and each transaction costs two more round trips), so under load a
//! writer thread takes every operation waiting in its queue (up to [`MAX_BATCH`]), runs each
//! inside its own savepoint — an operation that fails is rolled back alone — and commits them
//! together. An operation gets its own savepoint only when it asks for one (see [`WriteTx`]:
//! most lease operations check everything before their first write and need none), and the
//! history events and leaderboard credits of the whole batch are written together just before
//! the commit. The savepoint statements are prepared once and kept (diesel's nested
//! transactions would parse them anew for every operation). Each caller gets its answer only
//! after the commit, so a reported success is durable exactly as with one transaction per
//! operation. The queue is bounded: when the writers fall behind, callers block instead of
//! piling up work.
//!
//! SQLite has one writer at a time: one writer thread on one connection. A caller that finds
//! the queue empty and the connection free runs its operation on its own thread instead, as a
//! batch of one: without load, a write then costs no thread hand-off at all (two context
//! switches, which on a busy machine cost far more than the transaction itself).
//!
//! PostgreSQL runs several writer threads ("lanes"), each committing its batches on a
//! connection from the pool, so one batch's round trips overlap another's commit; unless the
//! operator chose the lanes, a daemon runs only its share of them at once when other daemons use
//! the database too ([`LaneUse::Share`]). Batches of
//! different lanes (and of other tracker processes) run concurrently as ordinary
//! transactions. Lanes take operations from one shared queue, but while a worker has a write in
//! a lane (in its batch, or waiting for its next one), its other writes go to that lane alone,
//! so two concurrent batches never both hold rows of one worker or of the job it holds: a
//! worker's heartbeat and its completion, sent at the same time, would otherwise lock the job
//! and the worker in opposite orders in two batches, and each batch holds several workers'
//! rows, so such pairs deadlock. Claims skip rows another transaction has locked (`FOR UPDATE
//! SKIP LOCKED`), and the batch's leaderboard credits are written last, in nickname order, so
//! concurrent batches wait for each other but do not deadlock.
//!
//! On PostgreSQL the steps of the workers' lease cycle (claims, progress, completions: most of
//! the writes under load) are data rather than closures ([`Combine`]): a batch with at least
//! [`MIN_TOGETHER`] of them runs them together in a few statements that each cover every one,
//! after its other operations.

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError};
use std::time::Instant;

use crossbeam_channel::{bounded, unbounded, Receiver, Sender, TrySendError};
use diesel::connection::{AnsiTransactionManager, TransactionManager};
use diesel::r2d2::{ConnectionManager, Pool};
use tokio::sync::oneshot;

use super::admission::Admission;
use super::daemons;
use super::write_tx::{keep, Appends, Undo, WriteTx};
use super::{cached_sql, per_backend, DbConnection};
use crate::error::TrackerError;

/// Fewest [`Combine`] operations a PostgreSQL batch runs together; fewer run alone. A few cost
/// no fewer round trips together than alone, and the combined statements are the dearer to plan
/// and run: combining from two on made 8, 16 and 32 concurrent workers 0.7–0.9× as fast as
/// running each alone, and 64 workers 1.3×; from eight on, 64 workers keep nearly all of that
/// gain and fewer lose nothing.
const MIN_TOGETHER: usize = 8;

/// Most operations committed together.
const MAX_BATCH: usize = 512;
/// Operations that may wait for the writers (all lanes together) before callers block.
const QUEUE_CAPACITY: usize = 4096;

/// Operations of one kind that a PostgreSQL batch runs together: a few statements that each
/// cover all of them, instead of a few statements for each one. Every statement costs a round
/// trip and a query the server plans and starts, which under load is most of PostgreSQL's work
/// per operation. SQLite, whose statements cost neither, runs each alone.
pub(crate) trait Combine: Send + Sized + 'static {
    /// What one operation answers.
    type Answer: Send + 'static;

    /// The stored key of the worker the operation is of: it picks the operation's lane.
    fn worker_key(&self) -> &str;

    /// Runs one operation in the open transaction, as any other write (see [`WriteTx`]).
    fn run_alone(self, tx: &mut WriteTx<'_>) -> Result<Self::Answer, TrackerError>;

    /// Runs `ops` together in the open transaction, after the batch's other operations, and
    /// says for each one (in order) either its outcome or that it must run alone (after this).
    /// An operation given an error here must have written nothing; `Err` fails the batch.
    fn run_together(tx: &mut WriteTx<'_>, ops: Vec<Self>) -> Result<Vec<Together<Self>>, TrackerError>;
}

/// What [`Combine::run_together`] did with one operation.
pub(crate) enum Together<C: Combine> {
    /// Its outcome (an error wrote nothing).
    Settled(Result<C::Answer, TrackerError>),
    /// It must run alone.
    Alone(C),
}

/// The [`Combine`] of writers that combine nothing (tests of the group commit itself).
#[cfg(test)]
pub(crate) enum Uncombined {}

#[cfg(test)]
impl Combine for Uncombined {
    type Answer = ();

    fn worker_key(&self) -> &str {
        match *self {}
    }

    fn run_alone(self, _: &mut WriteTx<'_>) -> Result<(), TrackerError> {
        match self {}
    }

    fn run_together(_: &mut WriteTx<'_>, ops: Vec<Self>) -> Result<Vec<Together<Self>>, TrackerError> {
        Ok(ops.into_iter().map(|op| match op {}).collect())
    }
}

/// An operation waiting for the writer, type-erased; `C` is the kind a PostgreSQL batch runs
/// together.
trait PendingWrite<C: Combine>: Send {
    /// Runs the operation inside the open transaction, shared with other operations, adding its
    /// appends to `appends` when it succeeds; `Err` means the batch must be rolled back (the
    /// operation panicked, failed part-way without a savepoint, or its savepoint could not be
    /// closed).
    fn run(&mut self, conn: &mut DbConnection, appends: &mut Appends) -> Result<(), BatchFailure>;
    /// Runs the operation directly in the open transaction (it is alone in its batch, so the
    /// caller rolls the transaction back if it failed); returns whether it succeeded.
    fn run_alone(&mut self, conn: &mut DbConnection, appends: &mut Appends) -> Result<bool, Panicked>;
    /// The operation's place, when it is one a batch can run together with others.
    fn combined(&mut self) -> Option<&mut CombinedSlot<C>> {
        None
    }
    /// Delivers the outcome once the batch is committed (or failed with `batch_error`).
    fn finish(self: Box<Self>, batch_error: Option<&BatchError>);
}

/// Runs `operation` in the transaction it shares with the rest of its batch, inside a savepoint
/// when it asks for one (see [`WriteTx`]), keeping its appends when it succeeds. Returns its
/// outcome; `Err` when the batch must be rolled back.
fn run_shared<T>(
    conn: &mut DbConnection,
    appends: &mut Appends,
    operation: impl FnOnce(&mut WriteTx<'_>) -> Result<T, TrackerError>,
) -> Result<Result<T, TrackerError>, BatchFailure> {
    let mut tx = WriteTx::new(conn, appends, Undo::Savepoint);
    let outcome = catch_unwind(AssertUnwindSafe(|| operation(&mut tx))).map_err(|_| BatchFailure::Panicked)?;
    let (protected, own) = tx.finish();
    let closed = match (&outcome, protected) {
        (Ok(_), true) => cached_sql!("RELEASE cascade_write").execute(conn).map(drop),
        (Err(_), true) => cached_sql!("ROLLBACK TO cascade_write")
            .execute(conn)
            .and_then(|_| cached_sql!("RELEASE cascade_write").execute(conn))
            .map(drop),
        (Ok(_), false) => Ok(()),
        // A refusal before any write left nothing behind; anything else may have.
        (Err(error), false) if error.is_refusal() => Ok(()),
        (Err(error), false) => return Err(BatchFailure::Failed(BatchError::new("a write failed part-way: ", error))),
    };
    closed.map_err(|e| BatchFailure::Failed(BatchError::new("cannot close a write's savepoint: ", &e.into())))?;
    if outcome.is_ok() {
        keep(appends, own);
    }
    Ok(outcome)
}

/// Runs `operation` directly in the open transaction, alone in its batch (the caller rolls the
/// transaction back if it failed), keeping its appends when it succeeds.
fn run_lone<T>(
    conn: &mut DbConnection,
    appends: &mut Appends,
    operation: impl FnOnce(&mut WriteTx<'_>) -> Result<T, TrackerError>,
) -> Result<Result<T, TrackerError>, Panicked> {
    let mut tx = WriteTx::new(conn, appends, Undo::Transaction);
    let outcome = catch_unwind(AssertUnwindSafe(|| operation(&mut tx))).map_err(|_| Panicked)?;
    let (_, own) = tx.finish();
    if outcome.is_ok() {
        keep(appends, own);
    }
    Ok(outcome)
}

struct Pending<T, F> {
    operation: Option<F>,
    outcome: Option<Result<T, TrackerError>>,
    reply: Reply<T>,
}

/// Where the outcome of an operation goes.
enum Reply<T> {
    /// A thread blocked in [`GroupCommitWriter::write`].
    Blocking(Sender<Result<T, TrackerError>>),
    /// A task awaiting [`GroupCommitWriter::write_async`].
    Async(oneshot::Sender<Result<T, TrackerError>>),
}

impl<T> Reply<T> {
    /// Delivers `outcome`; a caller that gave up waiting is ignored.
    fn send(self, outcome: Result<T, TrackerError>) {
        match self {
            Self::Blocking(reply) => drop(reply.send(outcome)),
            Self::Async(reply) => drop(reply.send(outcome)),
        }
    }

    /// Delivers the outcome of an operation of a batch: its own once the batch committed, else
    /// the batch's error.
    fn deliver(self, outcome: Option<Result<T, TrackerError>>, batch_error: Option<&BatchError>) {
        self.send(match (batch_error, outcome) {
            (None, Some(outcome)) => outcome,
            (Some(error), _) => Err(error.to_tracker_error()),
            (None, None) => Err(TrackerError::Commit("the operation did not run".to_owned())),
        });
    }
}

impl<C, T, F> PendingWrite<C> for Pending<T, F>
where
    C: Combine,
    T: Send,
    F: FnOnce(&mut WriteTx<'_>) -> Result<T, TrackerError> + Send,
{
    fn run(&mut self, conn: &mut DbConnection, appends: &mut Appends) -> Result<(), BatchFailure> {
        let Some(operation) = self.operation.take() else { return Ok(()) };
        self.outcome = Some(run_shared(conn, appends, operation)?);
        Ok(())
    }

    fn run_alone(&mut self, conn: &mut DbConnection, appends: &mut Appends) -> Result<bool, Panicked> {
        let Some(operation) = self.operation.take() else { return Ok(true) };
        let outcome = run_lone(conn, appends, operation)?;
        let succeeded = outcome.is_ok();
        self.outcome = Some(outcome);
        Ok(succeeded)
    }

    fn finish(self: Box<Self>, batch_error: Option<&BatchError>) {
        self.reply.deliver(self.outcome, batch_error);
    }
}

/// An operation a batch can run together with others of its kind, and then its outcome.
pub(crate) struct CombinedSlot<C: Combine> {
    operation: Option<C>,
    outcome: Option<Result<C::Answer, TrackerError>>,
}

/// A [`Combine`] operation waiting for the writer.
struct PendingCombined<C: Combine> {
    slot: CombinedSlot<C>,
    reply: Reply<C::Answer>,
}

impl<C: Combine> PendingWrite<C> for PendingCombined<C> {
    fn run(&mut self, conn: &mut DbConnection, appends: &mut Appends) -> Result<(), BatchFailure> {
        let Some(operation) = self.slot.operation.take() else { return Ok(()) };
        self.slot.outcome = Some(run_shared(conn, appends, |tx| operation.run_alone(tx))?);
        Ok(())
    }

    fn run_alone(&mut self, conn: &mut DbConnection, appends: &mut Appends) -> Result<bool, Panicked> {
        let Some(operation) = self.slot.operation.take() else { return Ok(true) };
        let outcome = run_lone(conn, appends, |tx| operation.run_alone(tx))?;
        let succeeded = outcome.is_ok();
        self.slot.outcome = Some(outcome);
        Ok(succeeded)
    }

    fn combined(&mut self) -> Option<&mut CombinedSlot<C>> {
        Some(&mut self.slot)
    }

    fn finish(self: Box<Self>, batch_error: Option<&BatchError>) {
        self.reply.deliver(self.slot.outcome, batch_error);
    }
}

/// An operation in a lane's queue, with the stored key of the worker it is of, if any.
struct Queued<C: Combine> {
    worker: Option<String>,
    pending: Box<dyn PendingWrite<C>>,
}

/// The lane each worker's writes are bound to while any of them is in a lane, and how many of
/// its writes are in flight (queued anywhere or in a batch).
#[derive(Default)]
struct Affinity {
    workers: HashMap<String, Binding>,
}

/// A worker's writes in flight and the lane they are bound to, once a lane has taken one.
struct Binding {
    lane: Option<usize>,
    writes: usize,
}

impl Affinity {
    /// Counts a new write of `worker`; the lane it must go to, if the worker's writes are bound
    /// to one (else it goes to the shared queue).
    fn enter(&mut self, worker: &str) -> Option<usize> {
        match self.workers.get_mut(worker) {
            Some(binding) => {
                binding.writes += 1;
                binding.lane
            }
            None => {
                self.workers.insert(worker.to_owned(), Binding { lane: None, writes: 1 });
                None
            }
        }
    }

    /// The lane that runs a write of `worker` that `lane` took: the lane the worker's writes are
    /// bound to, binding them to `lane` when they are not yet bound.
    fn take(&mut self, worker: &str, lane: usize) -> usize {
        match self.workers.get_mut(worker) {
            Some(binding) => *binding.lane.get_or_insert(lane),
            None => lane,
        }
    }

    /// The writes of `workers` are committed (or failed); a worker with none left in flight is
    /// bound to no lane.
    fn release(&mut self, workers: &[Option<String>]) {
        for worker in workers.iter().flatten() {
            if let Some(binding) = self.workers.get_mut(worker) {
                binding.writes -= 1;
                if binding.writes == 0 {
                    self.workers.remove(worker);
                }
            }
        }
    }
}

/// Locks the lane affinity (a panic while it was held left it consistent: no code that can
/// panic runs under it).
fn lock_affinity(affinity: &Mutex<Affinity>) -> MutexGuard<'_, Affinity> {
    affinity.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A handle to the writers; cheap to clone. The writer threads end when every handle is gone.
pub(crate) struct GroupCommitWriter<C: Combine> {
    /// Operations any lane may take.
    shared: Sender<Queued<C>>,
    /// Per lane: operations of the workers bound to it (see [`Affinity`]).
    bound: Arc<[Sender<Queued<C>>]>,
    affinity: Arc<Mutex<Affinity>>,
    connections: Arc<Connections>,
}

impl<C: Combine> Clone for GroupCommitWriter<C> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
            bound: Arc::clone(&self.bound),
            affinity: Arc::clone(&self.affinity),
            connections: Arc::clone(&self.connections),
        }
    }
}

/// How many of a PostgreSQL writer's lanes run batches at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LaneUse {
    /// All of them: the operator chose how many.
    All,
    /// This daemon's share of them: its lanes divided by the daemons using the database now,
    /// at least one ([`daemons`]).
    Share,
}

/// Opens the SQLite write connection.
type Connect = dyn Fn() -> Result<DbConnection, TrackerError> + Send + Sync;

/// Where the batches run.
enum Connections {
    /// SQLite: the one write connection, reopened by `connect` after an operation panicked.
    Single { conn: Mutex<DbConnection>, connect: Box<Connect> },
    /// PostgreSQL: a connection from the pool for each batch.
    Pool(Pool<ConnectionManager<DbConnection>>),
}

/// Locks the write connection. A poisoned lock is taken over: operations run under
/// `catch_unwind`, and a batch with a panicked operation is rolled back and its connection
/// replaced, so the lock only guards a connection outside any transaction.
fn lock(conn: &Mutex<DbConnection>) -> MutexGuard<'_, DbConnection> {
    conn.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<C: Combine> GroupCommitWriter<C> {
    /// Starts the SQLite writer thread on a connection opened by `connect` (used again to
    /// replace the connection after an operation panicked).
    pub(crate) fn start_single(
        connect: impl Fn() -> Result<DbConnection, TrackerError> + Send + Sync + 'static,
    ) -> Result<Self, TrackerError> {
        let conn = Mutex::new(connect()?);
        Self::start(Connections::Single { conn, connect: Box::new(connect) }, 1, LaneUse::All)
    }

    /// Starts `lanes` writer threads committing on connections from `pool` (PostgreSQL), of
    /// which `used` run batches at once.
    pub(crate) fn start_pool(
        pool: Pool<ConnectionManager<DbConnection>>,
        lanes: usize,
        used: LaneUse,
    ) -> Result<Self, TrackerError> {
        Self::start(Connections::Pool(pool), lanes.max(1), used)
    }

    fn start(connections: Connections, lanes: usize, used: LaneUse) -> Result<Self, TrackerError> {
        let connections = Arc::new(connections);
        let affinity = Arc::new(Mutex::new(Affinity::default()));
        let admission = (lanes > 1 && used == LaneUse::Share).then(|| Arc::new(Admission::new(lanes)));
        if let (Connections::Pool(pool), Some(admission)) = (&*connections, &admission) {
            daemons::take_share(pool, admission, lanes);
        }
        let (shared, operations) = bounded(QUEUE_CAPACITY);
        // Unbounded: a lane hands an operation on to another without waiting, and a worker has
        // only a few writes in flight at a time.
        let (bound, own): (Vec<_>, Vec<_>) = (0..lanes).map(|_| unbounded()).unzip();
        let bound: Arc<[Sender<Queued<C>>]> = bound.into();
        for (lane, own) in own.into_iter().enumerate() {
            let name = match &*connections {
                Connections::Single { .. } => "cascade-sqlite-writer".to_owned(),
                Connections::Pool(_) => format!("cascade-pg-writer-{lane}"),
            };
            let queues = LaneQueues { lane, shared: operations.clone(), own, bound: Arc::clone(&bound) };
            let (connections, affinity, admission) = (Arc::clone(&connections), Arc::clone(&affinity), admission.clone());
            std::thread::Builder::new()
                .name(name)
                .spawn(move || write_loop::<C>(&connections, &queues, &affinity, admission.as_deref()))
                .map_err(|e| TrackerError::Commit(format!("cannot start a writer thread: {e}")))?;
        }
        Ok(Self { shared, bound, affinity, connections })
    }

    /// The stored key `worker` as a queued operation keeps it: with one lane (SQLite), none,
    /// since nothing is bound to a lane there.
    fn lane_key(&self, worker: Option<&str>) -> Option<String> {
        worker.filter(|_| self.bound.len() > 1).map(str::to_owned)
    }

    /// `pending` (of the worker with stored key `worker`, see [`lane_key`](Self::lane_key)) as
    /// queued, and its queue: the lane the worker's writes are bound to, else the shared queue.
    fn enqueue(&self, worker: Option<String>, pending: Box<dyn PendingWrite<C>>) -> (&Sender<Queued<C>>, Queued<C>) {
        let lane = worker.as_deref().and_then(|worker| lock_affinity(&self.affinity).enter(worker));
        let queue = lane.map_or(&self.shared, |lane| &self.bound[lane]);
        (queue, Queued { worker, pending })
    }

    /// Runs `operation` (of the worker with stored key `worker`, if any) in the next batch of
    /// its lane and returns its outcome after the batch commits.
    pub(crate) fn write<T, F>(&self, worker: Option<&str>, operation: F) -> Result<T, TrackerError>
    where
        T: Send + 'static,
        F: FnOnce(&mut WriteTx<'_>) -> Result<T, TrackerError> + Send + 'static,
    {
        let (reply, answer) = bounded(1);
        let pending = Box::new(Pending { operation: Some(operation), outcome: None, reply: Reply::Blocking(reply) });
        self.submit(self.lane_key(worker), pending, &answer)
    }

    /// Runs `operation` in the next batch, together with the other operations of its kind on
    /// PostgreSQL (see [`Combine`]), and returns its outcome after the batch commits.
    pub(crate) fn write_combined(&self, operation: C) -> Result<C::Answer, TrackerError> {
        let (reply, answer) = bounded(1);
        let worker = self.lane_key(Some(operation.worker_key()));
        let slot = CombinedSlot { operation: Some(operation), outcome: None };
        self.submit(worker, Box::new(PendingCombined { slot, reply: Reply::Blocking(reply) }), &answer)
    }

    /// Queues `pending` (of the worker with stored key `worker`, see
    /// [`lane_key`](Self::lane_key)) on its lane (on SQLite with an idle writer, runs it here)
    /// and waits for `answer`.
    fn submit<T>(
        &self,
        worker: Option<String>,
        pending: Box<dyn PendingWrite<C>>,
        answer: &Receiver<Result<T, TrackerError>>,
    ) -> Result<T, TrackerError> {
        if let Connections::Single { conn, connect } = &*self.connections {
            if self.shared.is_empty() {
                match conn.try_lock() {
                    Ok(mut conn) => return run_here(&mut conn, connect, pending, answer),
                    Err(TryLockError::Poisoned(poisoned)) => {
                        return run_here(&mut poisoned.into_inner(), connect, pending, answer)
                    }
                    Err(TryLockError::WouldBlock) => {}
                }
            }
        }
        let (queue, queued) = self.enqueue(worker, pending);
        queue
            .send(queued)
            .map_err(|_| TrackerError::Commit("the writer threads have stopped".to_owned()))?;
        answer
            .recv()
            .map_err(|_| TrackerError::Commit("the writer thread stopped before answering".to_owned()))?
    }

    /// Like [`write`](Self::write), for async callers: the operation always runs on a writer
    /// thread and the caller's task is woken with its outcome after the commit, so no thread
    /// blocks on its behalf. When the queue is full, the wait for room happens on tokio's
    /// blocking pool, never on the caller's executor thread.
    pub(crate) async fn write_async<T, F>(&self, worker: Option<&str>, operation: F) -> Result<T, TrackerError>
    where
        T: Send + 'static,
        F: FnOnce(&mut WriteTx<'_>) -> Result<T, TrackerError> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let pending = Box::new(Pending { operation: Some(operation), outcome: None, reply: Reply::Async(reply) });
        self.submit_async(self.lane_key(worker), pending, answer).await
    }

    /// [`write_combined`](Self::write_combined) for async callers, as
    /// [`write_async`](Self::write_async).
    pub(crate) async fn write_combined_async(&self, operation: C) -> Result<C::Answer, TrackerError> {
        let (reply, answer) = oneshot::channel();
        let worker = self.lane_key(Some(operation.worker_key()));
        let slot = CombinedSlot { operation: Some(operation), outcome: None };
        self.submit_async(worker, Box::new(PendingCombined { slot, reply: Reply::Async(reply) }), answer).await
    }

    /// Queues `pending` (of the worker with stored key `worker`, see
    /// [`lane_key`](Self::lane_key)) on its lane without blocking the caller's executor thread
    /// and awaits `answer`.
    async fn submit_async<T>(
        &self,
        worker: Option<String>,
        pending: Box<dyn PendingWrite<C>>,
        answer: oneshot::Receiver<Result<T, TrackerError>>,
    ) -> Result<T, TrackerError> {
        let stopped = || TrackerError::Commit("the writer threads have stopped".to_owned());
        let (queue, queued) = self.enqueue(worker, pending);
        match queue.try_send(queued) {
            Ok(()) => {}
            Err(TrySendError::Disconnected(_)) => return Err(stopped()),
            Err(TrySendError::Full(queued)) => {
                let queue = queue.clone();
                tokio::task::spawn_blocking(move || queue.send(queued))
                    .await
                    .map_err(|e| TrackerError::Commit(format!("could not queue the write: {e}")))?
                    .map_err(|_| stopped())?;
            }
        }
        answer
            .await
            .map_err(|_| TrackerError::Commit("the writer thread stopped before answering".to_owned()))?
    }
}

/// Runs one operation as a batch of its own on the caller's thread and returns its outcome.
fn run_here<C: Combine, T>(
    conn: &mut DbConnection,
    connect: &Connect,
    pending: Box<dyn PendingWrite<C>>,
    answer: &Receiver<Result<T, TrackerError>>,
) -> Result<T, TrackerError> {
    commit_batch(conn, Some(connect), vec![pending]);
    answer
        .try_recv()
        .map_err(|_| TrackerError::Commit("the operation did not answer".to_owned()))?
}

/// A lane's queues.
struct LaneQueues<C: Combine> {
    lane: usize,
    shared: Receiver<Queued<C>>,
    /// Operations of the workers bound to this lane.
    own: Receiver<Queued<C>>,
    /// Every lane's own queue, to hand operations on to.
    bound: Arc<[Sender<Queued<C>>]>,
}

impl<C: Combine> LaneQueues<C> {
    /// The next operation, its own queue first; `None` once the writer is gone and nothing is
    /// left for this lane.
    fn next(&self) -> Option<Queued<C>> {
        // One lane (SQLite): nothing is ever bound to it, and one queue is the cheaper wait.
        if self.bound.len() == 1 {
            return self.shared.recv().ok();
        }
        if let Ok(queued) = self.own.try_recv() {
            return Some(queued);
        }
        crossbeam_channel::select! {
            recv(self.own) -> queued => queued.ok(),
            recv(self.shared) -> queued => queued.ok().or_else(|| self.own.try_recv().ok()),
        }
    }

    /// What is queued for this lane, up to [`MAX_BATCH`] operations, after `first`: writes of a
    /// worker bound to another lane (one took another write of it meanwhile) are handed on to it.
    fn batch(&self, first: Queued<C>, affinity: &Mutex<Affinity>) -> Vec<Queued<C>> {
        let mut taken = vec![first];
        taken.extend(self.own.try_iter().take(MAX_BATCH - 1));
        taken.extend(self.shared.try_iter().take(MAX_BATCH - taken.len()));
        let mut affinity = lock_affinity(affinity);
        taken
            .into_iter()
            .filter_map(|queued| {
                let Some(worker) = &queued.worker else { return Some(queued) };
                let lane = affinity.take(worker, self.lane);
                if lane == self.lane {
                    return Some(queued);
                }
                // Unbounded: never waits. The other lane gone means the writer is stopping.
                let _ = self.bound[lane].send(queued);
                None
            })
            .collect()
    }
}

/// A lane's writer thread: takes what is queued for it, up to [`MAX_BATCH`] operations, and
/// commits it; with `admission` (a PostgreSQL daemon's share of its lanes), once it has its
/// turn. The first lane counts the daemons on the database again every
/// [`RECOUNT_EVERY`](daemons::RECOUNT_EVERY), between its batches.
fn write_loop<C: Combine>(
    connections: &Connections,
    queues: &LaneQueues<C>,
    affinity: &Mutex<Affinity>,
    admission: Option<&Admission>,
) {
    let mut counted = Instant::now();
    while let Some(first) = queues.next() {
        let turn = admission.map(Admission::enter);
        let (workers, batch): (Vec<_>, Vec<_>) =
            queues.batch(first, affinity).into_iter().map(|queued| (queued.worker, queued.pending)).unzip();
        if batch.is_empty() {
            continue;
        }
        match connections {
            Connections::Single { conn, connect } => commit_batch(&mut lock(conn), Some(&**connect), batch),
            Connections::Pool(pool) => commit_pooled(pool, batch),
        }
        lock_affinity(affinity).release(&workers);
        drop(turn);
        if let (Connections::Pool(pool), Some(admission), 0) = (connections, admission, queues.lane) {
            if counted.elapsed() >= daemons::RECOUNT_EVERY {
                counted = Instant::now();
                daemons::take_share(pool, admission, queues.bound.len());
            }
        }
    }
}

/// Runs `batch` in one transaction and delivers every outcome; after an operation panicked,
/// replaces the connection with one from `connect`.
fn commit_batch<C: Combine>(conn: &mut DbConnection, connect: Option<&Connect>, mut batch: Vec<Box<dyn PendingWrite<C>>>) {
    let outcome = begin(conn).and_then(|()| run_begun(conn, &mut batch, None));
    if deliver(batch, outcome) {
        match connect.map(|connect| connect()) {
            Some(Ok(fresh)) => *conn = fresh,
            Some(Err(error)) => tracing::error!(%error, "Could not reopen the SQLite write connection."),
            None => {}
        }
    }
}

/// Runs `batch` in one transaction on a connection from `pool` and delivers every outcome. A
/// connection that cannot even begin the transaction (the server restarted or dropped it since
/// it was opened) has run nothing of the batch: it leaves the pool (diesel marks a closed
/// connection broken) and the batch moves to the next one, so after a database restart no
/// batch fails for a stale connection while a live one can be had.
fn commit_pooled<C: Combine>(pool: &Pool<ConnectionManager<DbConnection>>, mut batch: Vec<Box<dyn PendingWrite<C>>>) {
    let mut failure = None;
    for _ in 0..=pool.max_size() {
        let mut conn = match pool.get() {
            Ok(conn) => conn,
            Err(error) => {
                failure = Some(BatchFailure::Failed(BatchError::new("no database connection: ", &TrackerError::Pool(error))));
                break;
            }
        };
        match begin(&mut conn) {
            Ok(()) => {
                let outcome = run_begun(&mut conn, &mut batch, Some(MIN_TOGETHER));
                deliver(batch, outcome);
                return;
            }
            Err(not_begun) => {
                if let BatchFailure::Failed(error) = &not_begun {
                    tracing::warn!(%error, "A pooled database connection could not begin a transaction; trying another.");
                }
                failure = Some(not_begun);
            }
        }
    }
    let failure = failure.unwrap_or_else(|| BatchFailure::Failed(BatchError::Commit("no database connection".to_owned())));
    deliver(batch, Err(failure));
}

/// Delivers every outcome of `batch` (`outcome` is the batch's own); returns whether an
/// operation panicked, after which the connection should be replaced.
fn deliver<C: Combine>(batch: Vec<Box<dyn PendingWrite<C>>>, outcome: Result<(), BatchFailure>) -> bool {
    match outcome {
        Ok(()) => batch.into_iter().for_each(|op| op.finish(None)),
        Err(BatchFailure::Failed(error)) => {
            match &error {
                BatchError::Storage(_) => tracing::error!(
                    error = %error.to_tracker_error(),
                    operations = batch.len(),
                    "SQLite write batch failed: the database file cannot be written. Writes are refused (503) until \
                     there is room again; reads go on."
                ),
                BatchError::Commit(_) => tracing::error!(%error, operations = batch.len(), "Write batch failed."),
            }
            batch.into_iter().for_each(|op| op.finish(Some(&error)));
        }
        Err(BatchFailure::Panicked) => {
            tracing::error!(operations = batch.len(), "A write operation panicked; its batch was rolled back.");
            let error = BatchError::Commit("a write operation panicked".to_owned());
            batch.into_iter().for_each(|op| op.finish(Some(&error)));
            return true;
        }
    }
    false
}

/// An operation panicked.
struct Panicked;

/// Why a batch failed, as each of its operations is told.
#[derive(Debug, Clone)]
enum BatchError {
    /// The batch could not be committed; the text says why.
    Commit(String),
    /// SQLite could not write its file ([`TrackerError::Storage`]; holds SQLite's message).
    Storage(String),
}

impl BatchError {
    /// `error`, met while doing what `context` says (left out of a storage failure, whose
    /// cause is the same whatever was being done).
    fn new(context: &str, error: &TrackerError) -> Self {
        match error {
            TrackerError::Storage(message) => Self::Storage(message.clone()),
            TrackerError::Db(error) => Self::Commit(format!("{context}{error}")),
            other => Self::Commit(format!("{context}{other}")),
        }
    }

    /// The error each operation of the batch gets.
    fn to_tracker_error(&self) -> TrackerError {
        match self {
            Self::Commit(message) => TrackerError::Commit(message.clone()),
            Self::Storage(message) => TrackerError::Storage(message.clone()),
        }
    }
}

impl std::fmt::Display for BatchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Commit(message) | Self::Storage(message) => f.write_str(message),
        }
    }
}

enum BatchFailure {
    Failed(BatchError),
    Panicked,
}

/// Opens the batch's transaction: on SQLite with the write lock taken at once (`IMMEDIATE`),
/// so no operation of the batch can meet another writer half-way.
fn begin(conn: &mut DbConnection) -> Result<(), BatchFailure> {
    match conn {
        DbConnection::Sqlite(c) => AnsiTransactionManager::begin_transaction_sql(c, "BEGIN IMMEDIATE"),
        DbConnection::Pg(c) => AnsiTransactionManager::begin_transaction_sql(c, "BEGIN"),
    }
    .map_err(|e| BatchFailure::Failed(BatchError::new("", &e.into())))
}

/// Rolls the batch's transaction back.
fn rollback(conn: &mut DbConnection) -> Result<(), BatchFailure> {
    per_backend!(conn, |c| AnsiTransactionManager::rollback_transaction(c))
        .map_err(|e| BatchFailure::Failed(BatchError::new("", &e.into())))
}

/// Runs `batch` in the transaction just begun on `conn` and commits it (or rolls it back).
/// With `together` (PostgreSQL), the batch's [`Combine`] operations, when there are at least
/// that many, run together, after the others.
fn run_begun<C: Combine>(
    conn: &mut DbConnection,
    batch: &mut [Box<dyn PendingWrite<C>>],
    together: Option<usize>,
) -> Result<(), BatchFailure> {
    let mut appends = Appends::default();
    let combine = together.is_some_and(|least| batch.iter_mut().filter_map(|op| op.combined()).nth(least.max(1) - 1).is_some());
    // Taken out first: the loop below then passes over them.
    let combined: Vec<(usize, C)> = if combine {
        batch
            .iter_mut()
            .enumerate()
            .filter_map(|(at, op)| Some((at, op.combined()?.operation.take()?)))
            .collect()
    } else {
        Vec::new()
    };
    // A lone operation needs no savepoint: if it fails, the whole transaction is rolled back.
    if let ([op], true) = (&mut *batch, combined.is_empty()) {
        return match op.run_alone(conn, &mut appends) {
            Ok(true) => write_appends_and_commit(conn, &mut appends),
            Ok(false) => rollback(conn),
            Err(Panicked) => {
                let _ = rollback(conn);
                Err(BatchFailure::Panicked)
            }
        };
    }
    let outcome = batch
        .iter_mut()
        .try_for_each(|op| op.run(conn, &mut appends))
        .and_then(|()| run_together(conn, &mut appends, batch, combined));
    if let Err(failure) = outcome {
        let _ = rollback(conn);
        return Err(failure);
    }
    write_appends_and_commit(conn, &mut appends)
}

/// Runs the `combined` operations taken out of `batch` together, settling their outcomes in
/// their slots, then those that must run alone, each as any other operation.
fn run_together<C: Combine>(
    conn: &mut DbConnection,
    appends: &mut Appends,
    batch: &mut [Box<dyn PendingWrite<C>>],
    combined: Vec<(usize, C)>,
) -> Result<(), BatchFailure> {
    if combined.is_empty() {
        return Ok(());
    }
    let (places, operations): (Vec<usize>, Vec<C>) = combined.into_iter().unzip();
    let together = run_shared(conn, appends, |tx| C::run_together(tx, operations))?
        .map_err(|error| BatchFailure::Failed(BatchError::new("", &error)))?;
    if together.len() != places.len() {
        return Err(BatchFailure::Failed(BatchError::Commit("operations run together went unanswered".to_owned())));
    }
    for (at, done) in places.into_iter().zip(together) {
        let Some(slot) = batch[at].combined() else { continue };
        match done {
            Together::Settled(outcome) => slot.outcome = Some(outcome),
            Together::Alone(operation) => {
                slot.operation = Some(operation);
                batch[at].run(conn, appends)?;
            }
        }
    }
    Ok(())
}

/// Writes the batch's history events and leaderboard credits, then commits.
fn write_appends_and_commit(conn: &mut DbConnection, appends: &mut Appends) -> Result<(), BatchFailure> {
    if let Err(error) = appends.write(conn) {
        let _ = rollback(conn);
        return Err(BatchFailure::Failed(BatchError::new("cannot write the batch's history: ", &error)));
    }
    per_backend!(conn, |c| AnsiTransactionManager::commit_transaction(c)).map_err(|e| {
        let _ = rollback(conn);
        BatchFailure::Failed(BatchError::new("", &e.into()))
    })
}

/// Commits `ops` on `conn` as one PostgreSQL batch does, run together, and returns their
/// outcomes (tests of [`Combine`] implementations).
#[cfg(test)]
pub(crate) fn commit_together<C: Combine>(conn: &mut DbConnection, ops: Vec<C>) -> Vec<Result<C::Answer, TrackerError>> {
    let (mut batch, mut answers): (Vec<Box<dyn PendingWrite<C>>>, Vec<_>) = (Vec::new(), Vec::new());
    for operation in ops {
        let (reply, answer) = bounded(1);
        let slot = CombinedSlot { operation: Some(operation), outcome: None };
        batch.push(Box::new(PendingCombined { slot, reply: Reply::Blocking(reply) }));
        answers.push(answer);
    }
    let outcome = begin(conn).and_then(|()| run_begun(conn, &mut batch, Some(2)));
    deliver(batch, outcome);
    answers
        .iter()
        .map(|answer| answer.try_recv().unwrap_or_else(|_| Err(TrackerError::Commit("no answer".to_owned()))))
        .collect()
}

#[cfg(test)]
mod tests {
    use diesel::connection::SimpleConnection;
    use diesel::sql_types::BigInt;
    use diesel::QueryableByName;

    use super::*;

    #[derive(QueryableByName)]
    struct Value {
        #[diesel(sql_type = BigInt)]
        v: i64,
    }

    /// A connector to a new SQLite database file in a directory deleted when the guard is
    /// dropped.
    fn scratch_database() -> (tempfile::TempDir, impl Fn() -> Result<DbConnection, TrackerError>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("scratch.db").to_string_lossy().into_owned();
        (dir, move || super::super::connect_sqlite(&path))
    }

    /// A connector to a new database on the local PostgreSQL server, dropped with the guard.
    fn scratch_postgres() -> (crate::testing::TestDatabase, impl Fn() -> Result<DbConnection, TrackerError>) {
        use diesel::Connection;
        let db = crate::testing::TestDatabase::postgres();
        let super::super::DatabaseUrl::Postgres(url) = db.url().clone() else { unreachable!("a PostgreSQL database") };
        (db, move || Ok(DbConnection::Pg(diesel::PgConnection::establish(&url)?)))
    }

    /// An operation inserting `v`, then failing when told to.
    fn insert(v: i64, fail: bool) -> impl FnOnce(&mut WriteTx<'_>) -> Result<i64, TrackerError> + Send {
        move |tx| {
            tx.protect()?;
            cached_sql!("INSERT INTO t (v) VALUES (?)").bind(v).execute(tx)?;
            if fail {
                Err(TrackerError::NoJobHeld)
            } else {
                Ok(v)
            }
        }
    }

    #[test]
    fn a_failing_operation_is_rolled_back_alone_and_the_rest_of_its_batch_commits_on_sqlite() {
        let (_dir, connect) = scratch_database();
        a_failing_operation_is_rolled_back_alone_and_the_rest_of_its_batch_commits(&connect);
    }

    #[test]
    fn a_failing_operation_is_rolled_back_alone_and_the_rest_of_its_batch_commits_on_postgres() {
        let (_db, connect) = scratch_postgres();
        a_failing_operation_is_rolled_back_alone_and_the_rest_of_its_batch_commits(&connect);
    }

    fn a_failing_operation_is_rolled_back_alone_and_the_rest_of_its_batch_commits(connect: &Connect) {
        let mut conn = connect().unwrap();
        conn.batch_execute("CREATE TABLE t (v BIGINT NOT NULL)").unwrap();
        let mut answers = Vec::new();
        let mut batch: Vec<Box<dyn PendingWrite<Uncombined>>> = Vec::new();
        for (v, fail) in [(1, false), (2, true), (3, false), (4, true), (5, false)] {
            let (reply, answer) = bounded(1);
            batch.push(Box::new(Pending { operation: Some(insert(v, fail)), outcome: None, reply: Reply::Blocking(reply) }));
            answers.push(answer);
        }
        commit_batch(&mut conn, Some(connect), batch);
        let outcomes: Vec<Option<i64>> = answers.iter().map(|a| a.try_recv().unwrap().ok()).collect();
        assert_eq!(outcomes, [Some(1), None, Some(3), None, Some(5)]);
        let rows: Vec<Value> = cached_sql!("SELECT v FROM t ORDER BY v").load(&mut conn).unwrap();
        assert_eq!(rows.iter().map(|r| r.v).collect::<Vec<_>>(), [1, 3, 5]);
        // The savepoint statements are reused, and the connection is usable for the next batch.
        let (reply, answer) = bounded(1);
        let pending = Box::new(Pending { operation: Some(insert(6, false)), outcome: None, reply: Reply::Blocking(reply) });
        let (reply2, answer2) = bounded(1);
        let failing = Box::new(Pending { operation: Some(insert(7, true)), outcome: None, reply: Reply::Blocking(reply2) });
        commit_batch::<Uncombined>(&mut conn, Some(connect), vec![pending, failing]);
        assert_eq!(answer.try_recv().unwrap().unwrap(), 6);
        assert!(answer2.try_recv().unwrap().is_err());
        let rows: Vec<Value> = cached_sql!("SELECT v FROM t ORDER BY v").load(&mut conn).unwrap();
        assert_eq!(rows.len(), 4);
    }

    /// An operation of a test batch.
    type TestOp = Box<dyn FnOnce(&mut WriteTx<'_>) -> Result<i64, TrackerError> + Send>;

    /// A batch that exercises the lazy savepoints and the appends: returns the answers.
    fn run_ops(
        conn: &mut DbConnection,
        connect: &Connect,
        ops: Vec<TestOp>,
    ) -> Vec<Result<i64, TrackerError>> {
        let mut answers = Vec::new();
        let mut batch: Vec<Box<dyn PendingWrite<Uncombined>>> = Vec::new();
        for op in ops {
            let (reply, answer) = bounded(1);
            batch.push(Box::new(Pending { operation: Some(op), outcome: None, reply: Reply::Blocking(reply) }));
            answers.push(answer);
        }
        commit_batch(conn, Some(connect), batch);
        answers.iter().map(|a| a.try_recv().unwrap()).collect()
    }

    #[derive(QueryableByName)]
    struct EventRow {
        #[diesel(sql_type = BigInt)]
        job_id: i64,
    }

    #[test]
    fn appends_of_refused_or_failed_operations_are_dropped_and_the_rest_keep_their_order() {
        let (_dir, connect) = scratch_database();
        let mut conn = connect().unwrap();
        conn.batch_execute(
            "CREATE TABLE t (v BIGINT NOT NULL); \
             CREATE TABLE job_events (id INTEGER PRIMARY KEY, job_id BIGINT NOT NULL, stage TEXT NOT NULL, \
             kind TEXT NOT NULL, worker TEXT, at BIGINT NOT NULL, detail TEXT); \
             CREATE TABLE leaderboard (nickname TEXT PRIMARY KEY NOT NULL, jobs_completed BIGINT NOT NULL);",
        )
        .unwrap();
        let event = |job: i64| move |tx: &mut WriteTx<'_>| tx.record(job, "a", "claim", Some("w"), 0, None);
        let answers = run_ops(
            &mut conn,
            &connect,
            vec![
                Box::new(move |tx| {
                    event(1)(tx);
                    tx.credit("x");
                    Ok(1)
                }),
                // Refused before writing, unprotected: nothing of it is kept.
                Box::new(move |tx| {
                    event(2)(tx);
                    Err(TrackerError::NoJobHeld)
                }),
                // Failed after writing, protected: rolled back to its savepoint.
                Box::new(move |tx| {
                    tx.protect()?;
                    cached_sql!("INSERT INTO t (v) VALUES (3)").execute(tx)?;
                    event(3)(tx);
                    Err(TrackerError::LeaseLost { job: crate::protocol::JobId(3) })
                }),
                Box::new(move |tx| {
                    event(4)(tx);
                    tx.credit("x");
                    Ok(4)
                }),
                // Reading the history after a flush sees the earlier operations' events.
                Box::new(move |tx| {
                    tx.flush()?;
                    let rows: Vec<EventRow> = cached_sql!("SELECT job_id FROM job_events").load(tx)?;
                    event(5)(tx);
                    Ok(i64::try_from(rows.len()).unwrap())
                }),
            ],
        );
        let answers: Vec<Option<i64>> = answers.into_iter().map(Result::ok).collect();
        assert_eq!(answers, [Some(1), None, None, Some(4), Some(2)]);
        let rows: Vec<EventRow> = cached_sql!("SELECT job_id FROM job_events ORDER BY id").load(&mut conn).unwrap();
        assert_eq!(rows.iter().map(|r| r.job_id).collect::<Vec<_>>(), [1, 4, 5]);
        let credits: Vec<Value> = cached_sql!("SELECT jobs_completed AS v FROM leaderboard").load(&mut conn).unwrap();
        assert_eq!(credits.iter().map(|r| r.v).collect::<Vec<_>>(), [2]);
        let kept: Vec<Value> = cached_sql!("SELECT v FROM t").load(&mut conn).unwrap();
        assert!(kept.is_empty());
    }

    #[test]
    fn a_database_error_after_an_unprotected_write_fails_the_whole_batch() {
        let (_dir, connect) = scratch_database();
        let mut conn = connect().unwrap();
        conn.batch_execute("CREATE TABLE t (v BIGINT NOT NULL)").unwrap();
        let answers = run_ops(
            &mut conn,
            &connect,
            vec![
                Box::new(|tx| {
                    cached_sql!("INSERT INTO t (v) VALUES (1)").execute(tx)?;
                    Ok(1)
                }),
                Box::new(|tx| {
                    cached_sql!("INSERT INTO t (v) VALUES (2)").execute(tx)?;
                    cached_sql!("INSERT INTO no_such_table (v) VALUES (2)").execute(tx)?;
                    Ok(2)
                }),
            ],
        );
        assert!(answers.iter().all(|a| matches!(a, Err(TrackerError::Commit(_)))), "{answers:?}");
        let kept: Vec<Value> = cached_sql!("SELECT v FROM t").load(&mut conn).unwrap();
        assert!(kept.is_empty(), "a failed batch left rows behind");
    }

    fn a_database_error_in_a_protected_operation_rolls_back_that_operation_alone(connect: &Connect) {
        let mut conn = connect().unwrap();
        conn.batch_execute("CREATE TABLE t (v BIGINT NOT NULL)").unwrap();
        let answers = run_ops(
            &mut conn,
            connect,
            vec![
                Box::new(insert(1, false)),
                Box::new(|tx| {
                    tx.protect()?;
                    cached_sql!("INSERT INTO t (v) VALUES (2)").execute(tx)?;
                    cached_sql!("INSERT INTO no_such_table (v) VALUES (2)").execute(tx)?;
                    Ok(2)
                }),
                Box::new(insert(3, false)),
            ],
        );
        let answers: Vec<Option<i64>> = answers.into_iter().map(Result::ok).collect();
        assert_eq!(answers, [Some(1), None, Some(3)]);
        let kept: Vec<Value> = cached_sql!("SELECT v FROM t ORDER BY v").load(&mut conn).unwrap();
        assert_eq!(kept.iter().map(|r| r.v).collect::<Vec<_>>(), [1, 3]);
    }

    #[test]
    fn a_database_error_in_a_protected_operation_rolls_back_that_operation_alone_on_sqlite() {
        let (_dir, connect) = scratch_database();
        a_database_error_in_a_protected_operation_rolls_back_that_operation_alone(&connect);
    }

    #[test]
    fn a_database_error_in_a_protected_operation_rolls_back_that_operation_alone_on_postgres() {
        let (_db, connect) = scratch_postgres();
        a_database_error_in_a_protected_operation_rolls_back_that_operation_alone(&connect);
    }

    #[derive(QueryableByName)]
    struct Pid {
        #[diesel(sql_type = diesel::sql_types::Integer)]
        pid: i32,
    }

    #[test]
    fn a_batch_given_a_pooled_connection_the_server_dropped_moves_to_a_live_one() {
        let (db, connect) = scratch_postgres();
        let mut admin = connect().unwrap();
        admin.batch_execute("CREATE TABLE t (v BIGINT NOT NULL)").unwrap();
        let pool = Pool::builder()
            .max_size(2)
            .min_idle(Some(0))
            .test_on_check_out(false)
            .build(ConnectionManager::<DbConnection>::new(db.url_string()))
            .unwrap();
        // A connection goes back to the pool idle; then the server ends its session.
        let stale: Vec<Pid> = cached_sql!("SELECT pg_backend_pid() AS pid").load(&mut pool.get().unwrap()).unwrap();
        cached_sql!("SELECT pg_terminate_backend(CAST(? AS INTEGER))")
            .bind(i64::from(stale[0].pid))
            .execute(&mut admin)
            .unwrap();
        let mut gone = || {
            let alive: Vec<Pid> = cached_sql!("SELECT pid FROM pg_stat_activity WHERE pid = CAST(? AS INTEGER)")
                .bind(i64::from(stale[0].pid))
                .load(&mut admin)
                .unwrap();
            alive.is_empty()
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !gone() {
            assert!(std::time::Instant::now() < deadline, "the server did not end the session");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let (reply, answer) = bounded(1);
        let pending = Box::new(Pending { operation: Some(insert(1, false)), outcome: None, reply: Reply::Blocking(reply) });
        commit_pooled::<Uncombined>(&pool, vec![pending]);
        assert_eq!(answer.try_recv().unwrap().unwrap(), 1);
        let rows: Vec<Value> = cached_sql!("SELECT v FROM t").load(&mut admin).unwrap();
        assert_eq!(rows.len(), 1);
    }

    #[test]
    fn the_writes_of_a_worker_go_to_the_lane_that_took_one_of_them_until_none_is_in_flight() {
        let (one, two) = ("1".repeat(64), "2".repeat(64));
        let mut affinity = Affinity::default();
        // Nothing in a lane yet: both writes go to the shared queue.
        assert_eq!((affinity.enter(&one), affinity.enter(&one)), (None, None));
        // Lane 1 takes the first; the second, taken by lane 0, must go to lane 1 too.
        assert_eq!(affinity.take(&one, 1), 1);
        assert_eq!(affinity.take(&one, 0), 1);
        assert_eq!(affinity.enter(&one), Some(1), "a third write goes straight to lane 1");
        assert_eq!(affinity.enter(&two), None, "another worker is free");
        assert_eq!(affinity.take(&two, 0), 0);
        affinity.release(&[Some(one.clone()), Some(one.clone()), None]);
        assert_eq!(affinity.enter(&one), Some(1), "one write still in flight");
        affinity.release(&[Some(one.clone()), Some(one.clone()), Some(two.clone())]);
        assert!(affinity.workers.is_empty());
        assert_eq!(affinity.enter(&one), None, "nothing in flight: free again");
    }
}
