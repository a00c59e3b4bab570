//! [`StagePool`]: the actor that owns one stage's local worker threads.
//!
//! The threads do the work (and block on the database and on hand-offs, never on the actor);
//! the actor starts them, heartbeats their leases and forwards their progress on a timer,
//! reports their state, and drains them on shutdown. Its mailbox carries control messages only.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use actix::prelude::*;
use cascade_stages::stage::StageRegistry;
use cascade_tracker::{JobStore, StageId, TrackerError};
use cascade_web::{PoolRegistry, PoolSnapshot};
use crossbeam_channel::{Receiver, Sender};
use rayon::ThreadPool;

use super::outcome::RetryPolicy;
use super::slot::{PoolCounters, WorkerSlot};
use super::worker;

/// How long cancelled jobs get to stop before their leases are released from outside.
const CANCEL_GRACE: Duration = Duration::from_secs(2);
/// How often a pool publishes its figures for the dashboard and `/metrics`.
const PUBLISH_EVERY: Duration = Duration::from_secs(1);

/// Everything a pool's worker threads share.
pub(crate) struct PoolShared {
    pub(crate) stage: StageId,
    pub(crate) kind: String,
    pub(crate) settings: serde_json::Value,
    pub(crate) registry: StageRegistry,
    pub(crate) store: JobStore,
    pub(crate) nickname: String,
    pub(crate) policy: RetryPolicy,
    pub(crate) lease_ttl: Duration,
    pub(crate) poll_interval: Duration,
    pub(crate) artifacts: PathBuf,
    pub(crate) rayon: Arc<ThreadPool>,
    /// Jobs handed over by the previous local stage.
    pub(crate) inbound: Option<Receiver<i64>>,
    /// Jobs handed to the next local stage.
    pub(crate) outbound: Option<Sender<i64>>,
    /// The stage the outbound queue feeds.
    pub(crate) next_local_stage: Option<StageId>,
    pub(crate) stopping: AtomicBool,
    pub(crate) counters: PoolCounters,
    /// Why the stage cannot run here, once a worker found that opening it cannot succeed.
    pub(crate) unavailable: Mutex<Option<String>>,
}

impl PoolShared {
    /// Records that the stage cannot run here (the first reason is kept) and says so.
    pub(crate) fn mark_unavailable(&self, reason: String) {
        let mut unavailable = self.unavailable.lock().unwrap_or_else(PoisonError::into_inner);
        if unavailable.is_none() {
            tracing::error!(stage = %self.stage, kind = %self.kind, %reason, "The stage cannot start; its jobs wait in the database.");
            *unavailable = Some(reason);
        }
    }
}

/// What a pool reports about itself.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PoolStatus {
    /// The stage.
    pub stage: StageId,
    /// Its stage kind.
    pub kind: String,
    /// Worker threads.
    pub workers: usize,
    /// Workers holding a lease now.
    pub busy: usize,
    /// Jobs waiting in this pool's inbound hand-off queue.
    pub queued: usize,
    /// Capacity of that queue (0 when the stage before has no local pool).
    pub queue_capacity: usize,
    /// Jobs completed by this pool since the daemon started.
    pub completed: u64,
    /// Jobs whose input this pool flagged as invalid.
    pub flagged: u64,
    /// Jobs given back for a later retry (transient failures and panics).
    pub retried: u64,
    /// Jobs this pool marked failed.
    pub failed: u64,
    /// Jobs released untouched after a cancellation.
    pub released: u64,
    /// Stage panics caught (each restarted its worker).
    pub panics: u64,
    /// Why the stage cannot run here (its `open` failed for good), if so.
    pub unavailable: Option<String>,
}

/// One stage's local workers.
pub(crate) struct StagePool {
    shared: Arc<PoolShared>,
    registry: PoolRegistry,
    slots: Vec<Arc<WorkerSlot>>,
    threads: Vec<Option<JoinHandle<()>>>,
    heartbeat_running: Arc<AtomicBool>,
}

impl StagePool {
    pub(crate) fn new(shared: PoolShared, workers: usize, registry: PoolRegistry) -> Self {
        Self {
            shared: Arc::new(shared),
            registry,
            slots: (0..workers).map(|_| Arc::new(WorkerSlot::default())).collect(),
            threads: Vec::new(),
            heartbeat_running: Arc::new(AtomicBool::new(false)),
        }
    }

    fn spawn_worker(&self, index: usize) -> Option<JoinHandle<()>> {
        let (shared, slot) = (Arc::clone(&self.shared), Arc::clone(&self.slots[index]));
        let name = format!("cascade-{}-{index}", self.shared.stage);
        match std::thread::Builder::new().name(name).spawn(move || {
            cascade_tracker::scheduling::no_wakeup_preemption();
            worker::run(&shared, &slot, index)
        }) {
            Ok(handle) => Some(handle),
            Err(e) => {
                tracing::error!(stage = %self.shared.stage, error = %e, "Cannot start a worker thread.");
                None
            }
        }
    }

    /// Heartbeats every busy worker's lease (sending its latest progress if any) off the
    /// actor's thread; a worker the tracker no longer knows has its job cancelled.
    fn heartbeat(&self) {
        if self.heartbeat_running.swap(true, Ordering::AcqRel) {
            return; // the previous round is still running
        }
        let (shared, slots, running) = (Arc::clone(&self.shared), self.slots.clone(), Arc::clone(&self.heartbeat_running));
        actix::spawn(async move {
            let _ = actix_web::rt::task::spawn_blocking(move || {
                for slot in slots.iter().filter(|slot| slot.is_busy()) {
                    let Some(token) = slot.token() else { continue };
                    let sent = match slot.take_progress() {
                        Some(text) => shared.store.update_progress(&token, &text),
                        None => shared.store.heartbeat(&token),
                    };
                    match sent {
                        Ok(()) => {}
                        Err(TrackerError::UnknownWorker) => slot.cancellation.cancel(),
                        Err(e) => tracing::warn!(stage = %shared.stage, error = %e, "Heartbeat failed."),
                    }
                }
            })
            .await;
            running.store(false, Ordering::Release);
        });
    }

    /// Shows the pool's current figures on the dashboard and `/metrics`.
    fn publish(&self) {
        let status = self.status();
        self.registry.set(PoolSnapshot {
            stage: status.stage.letter().to_owned(),
            kind: status.kind,
            workers: status.workers,
            busy: status.busy,
            queued: status.queued,
            queue_capacity: status.queue_capacity,
            completed: status.completed,
        });
    }

    fn status(&self) -> PoolStatus {
        let counters = &self.shared.counters;
        let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
        PoolStatus {
            stage: self.shared.stage,
            kind: self.shared.kind.clone(),
            workers: self.slots.len(),
            busy: self.slots.iter().filter(|s| s.is_busy()).count(),
            queued: self.shared.inbound.as_ref().map_or(0, Receiver::len),
            queue_capacity: self.shared.inbound.as_ref().and_then(Receiver::capacity).unwrap_or(0),
            completed: load(&counters.completed),
            flagged: load(&counters.flagged),
            retried: load(&counters.retried),
            failed: load(&counters.failed),
            released: load(&counters.released),
            panics: load(&counters.panics),
            unavailable: self.shared.unavailable.lock().unwrap_or_else(PoisonError::into_inner).clone(),
        }
    }
}

impl Actor for StagePool {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.threads = (0..self.slots.len()).map(|i| self.spawn_worker(i)).collect();
        tracing::info!(stage = %self.shared.stage, kind = %self.shared.kind, workers = self.slots.len(), "Stage pool started.");
        let period = (self.shared.lease_ttl / 4).max(Duration::from_millis(50));
        ctx.run_interval(period, |pool, _| pool.heartbeat());
        self.publish();
        ctx.run_interval(PUBLISH_EVERY, |pool, _| pool.publish());
    }
}

/// Asks for a pool's (or, sent to the supervisor, every pool's) status.
#[derive(Debug, Message)]
#[rtype(result = "Vec<PoolStatus>")]
pub struct GetStatus;

impl Handler<GetStatus> for StagePool {
    type Result = Vec<PoolStatus>;

    fn handle(&mut self, _: GetStatus, _: &mut Self::Context) -> Self::Result {
        vec![self.status()]
    }
}

/// Stops claiming, lets running jobs finish for `grace`, then cancels them and releases
/// whatever is still held. Resolves when the pool is idle.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct Drain {
    /// How long running jobs may take to finish.
    pub grace: Duration,
}

impl Handler<Drain> for StagePool {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, drain: Drain, _: &mut Self::Context) -> Self::Result {
        self.shared.stopping.store(true, Ordering::Relaxed);
        let threads: Vec<JoinHandle<()>> = self.threads.iter_mut().filter_map(Option::take).collect();
        let (shared, slots) = (Arc::clone(&self.shared), self.slots.clone());
        let (registry, stage) = (self.registry.clone(), self.shared.stage);
        Box::pin(
            async move {
                let started = Instant::now();
                let all_done = |threads: &[JoinHandle<()>]| threads.iter().all(JoinHandle::is_finished);
                while !all_done(&threads) && started.elapsed() < drain.grace {
                    actix_web::rt::time::sleep(Duration::from_millis(20)).await;
                }
                if !all_done(&threads) {
                    tracing::info!(stage = %shared.stage, "Cancelling running jobs.");
                    for slot in &slots {
                        slot.cancellation.cancel();
                    }
                    let cancelled = Instant::now();
                    while !all_done(&threads) && cancelled.elapsed() < CANCEL_GRACE {
                        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
                    }
                }
                let stuck: Vec<String> = slots.iter().filter_map(|s| s.token()).collect();
                if !stuck.is_empty() {
                    let _ = actix_web::rt::task::spawn_blocking(move || {
                        for token in stuck {
                            // Releases the lease now; the stuck thread's late outcome is fenced.
                            if let Err(e) = shared.store.bye(&token) {
                                tracing::warn!(error = %e, "Could not release a stuck worker's lease; it will expire.");
                            }
                        }
                    })
                    .await;
                }
                registry.remove(stage.letter());
            }
            .into_actor(self),
        )
    }
}
