//! [`StagePool`]: the actor that owns one stage's local worker threads.
//!
//! The threads do the work (and block on the database and on hand-offs, never on the actor);
//! the actor starts them, heartbeats their leases and forwards their progress on a timer,
//! reports their state, and drains them on shutdown. Its mailbox carries control messages only.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use actix::prelude::*;
use cascade_web::{PoolRegistry, PoolSnapshot};
use crossbeam_channel::Receiver;

use super::slot::WorkerSlot;
use super::worker::{self, Crew};

/// How long cancelled jobs get to stop before their leases are released from outside.
const CANCEL_GRACE: Duration = Duration::from_secs(2);
/// How often a pool publishes its figures for the dashboard and `/metrics`.
const PUBLISH_EVERY: Duration = Duration::from_secs(1);

/// One stage's local workers.
pub(crate) struct StagePool {
    shared: Arc<Crew>,
    registry: PoolRegistry,
    slots: Vec<Arc<WorkerSlot>>,
    threads: Vec<Option<JoinHandle<()>>>,
    heartbeat_running: Arc<AtomicBool>,
}

impl StagePool {
    pub(crate) fn new(shared: Crew, workers: usize, registry: PoolRegistry) -> Self {
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
            cascade_threads::no_wakeup_preemption();
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
            let _ = actix_web::rt::task::spawn_blocking(move || worker::heartbeat(&shared, &slots)).await;
            running.store(false, Ordering::Release);
        });
    }

    /// Shows the pool's current figures on the dashboard and `/metrics`.
    fn publish(&self) {
        self.registry.set(self.status());
    }

    fn status(&self) -> PoolSnapshot {
        let counters = &self.shared.counters;
        let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
        PoolSnapshot {
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
            unavailable: self.shared.unavailable(),
        }
    }
}

impl Actor for StagePool {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.threads = (0..self.slots.len()).map(|i| self.spawn_worker(i)).collect();
        tracing::info!(stage = %self.shared.stage, kind = %self.shared.kind, workers = self.slots.len(), "Stage pool started.");
        let lease_ttl = self.shared.lease_ttl.unwrap_or(Duration::from_secs(60));
        let period = (lease_ttl / 4).max(Duration::from_millis(50));
        ctx.run_interval(period, |pool, _| pool.heartbeat());
        self.publish();
        ctx.run_interval(PUBLISH_EVERY, |pool, _| pool.publish());
    }
}

/// Asks for a pool's (or, sent to the supervisor, every pool's) status.
#[derive(Debug, Message)]
#[rtype(result = "Vec<PoolSnapshot>")]
pub struct GetStatus;

impl Handler<GetStatus> for StagePool {
    type Result = Vec<PoolSnapshot>;

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
                let stuck: Vec<_> = slots.iter().filter_map(|s| s.token()).collect();
                if !stuck.is_empty() {
                    let _ = actix_web::rt::task::spawn_blocking(move || {
                        for token in stuck {
                            // Releases the lease now; the stuck thread's late outcome is fenced.
                            if let Err(e) = shared.leases.bye(&token) {
                                tracing::warn!(error = %e, "Could not release a stuck worker's lease; it will expire.");
                            }
                        }
                    })
                    .await;
                }
                registry.remove(stage);
            }
            .into_actor(self),
        )
    }
}
