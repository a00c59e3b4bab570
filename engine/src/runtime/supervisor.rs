//! [`Supervisor`]: starts one [`StagePool`] per locally run stage, wires their hand-off queues,
//! and fans status requests and the shutdown drain out to them.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use actix::prelude::*;
use cascade_stages::stage::{ArtifactStore, StageRegistry};
use cascade_tracker::{JobId, JobStore};
use cascade_web::PoolRegistry;
use crossbeam_channel::{Receiver, Sender};
use rayon::ThreadPoolBuilder;

use super::outcome::RetryPolicy;
use super::pool::{Drain, GetStatus, StagePool};
use super::worker::Crew;
use super::{EngineError, StagePlan};
use crate::config::EngineSettings;

/// The engine's root actor.
pub struct Supervisor {
    pools: Vec<Addr<StagePool>>,
}

impl Actor for Supervisor {
    type Context = Context<Self>;
}

impl Supervisor {
    /// Checks every plan against `registry` (kind known, settings accepted), then starts the
    /// pools and the supervisor on the current actix system. The pools publish their figures
    /// in `pools` (shown on the dashboard and `/metrics`).
    ///
    /// # Errors
    /// [`EngineError::Stage`] for an unknown kind or rejected settings;
    /// [`EngineError::ThreadPool`] when a stage's rayon pool cannot start;
    /// [`EngineError::Artifacts`] when the artifact store cannot be opened.
    pub fn start(
        store: &JobStore,
        plans: &[StagePlan],
        registry: &StageRegistry,
        settings: &EngineSettings,
        pools: &PoolRegistry,
    ) -> Result<Addr<Self>, EngineError> {
        for plan in plans {
            registry
                .create(&plan.kind, &plan.settings)
                .map_err(|source| EngineError::Stage { stage: plan.stage, source })?;
        }
        let artifacts = ArtifactStore::open(settings.artifacts.clone())?;
        let queues = handoff_queues(store, plans);
        let mut started = Vec::with_capacity(plans.len());
        for (plan, QueueEnds { inbound, outbound }) in plans.iter().zip(queues) {
            let rayon = ThreadPoolBuilder::new()
                .num_threads(plan.threads.unwrap_or(0))
                .thread_name({
                    let stage = plan.stage;
                    move |i| format!("cascade-{stage}-rayon-{i}")
                })
                .build()
                .map_err(|e| EngineError::ThreadPool(e.to_string()))?;
            let next_local_stage = outbound.as_ref().and_then(|_| store.config().next_enabled(plan.stage));
            let shared = Crew {
                stage: plan.stage,
                kind: plan.kind.clone(),
                settings: plan.settings.clone(),
                registry: registry.clone(),
                leases: Arc::new(store.clone()),
                nickname: format!("local/{}", plan.kind),
                policy: RetryPolicy { max_attempts: plan.max_attempts, ..RetryPolicy::from(settings) },
                lease_ttl: Some(settings.lease_ttl.min(store.config().idle_timeout)),
                poll_interval: settings.poll_interval,
                artifacts: artifacts.clone(),
                rayon: Arc::new(rayon),
                inbound,
                outbound,
                next_local_stage,
                stopping: AtomicBool::new(false),
                counters: Default::default(),
                unavailable: Mutex::new(None),
            };
            started.push(StagePool::new(shared, plan.workers, pools.clone()).start());
        }
        Ok(Self { pools: started }.start())
    }
}

/// One pool's ends of its hand-off queues.
#[derive(Default)]
struct QueueEnds {
    /// Jobs handed over by the previous local stage.
    inbound: Option<Receiver<JobId>>,
    /// Jobs handed to the next local stage.
    outbound: Option<Sender<JobId>>,
}

/// The hand-off queue ends of each plan. A bounded queue joins two plans when the second runs
/// the stage that follows the first; its capacity is the first plan's `queue`.
fn handoff_queues(store: &JobStore, plans: &[StagePlan]) -> Vec<QueueEnds> {
    let mut ends: Vec<QueueEnds> = plans.iter().map(|_| QueueEnds::default()).collect();
    for (from, plan) in plans.iter().enumerate() {
        let Some(next) = store.config().next_enabled(plan.stage) else { continue };
        if let Some(to) = plans.iter().position(|p| p.stage == next) {
            let (tx, rx) = crossbeam_channel::bounded(plan.queue);
            ends[from].outbound = Some(tx);
            ends[to].inbound = Some(rx);
        }
    }
    ends
}

impl Handler<GetStatus> for Supervisor {
    type Result = ResponseFuture<Vec<cascade_web::PoolSnapshot>>;

    fn handle(&mut self, _: GetStatus, _: &mut Self::Context) -> Self::Result {
        let requests: Vec<_> = self.pools.iter().map(|pool| pool.send(GetStatus)).collect();
        Box::pin(async move {
            let mut statuses = Vec::new();
            for request in requests {
                statuses.extend(request.await.unwrap_or_default());
            }
            statuses
        })
    }
}

impl Handler<Drain> for Supervisor {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, drain: Drain, _: &mut Self::Context) -> Self::Result {
        // Every pool gets the message now and drains concurrently; then wait for all.
        let requests: Vec<_> = self.pools.iter().map(|pool| pool.send(drain)).collect();
        Box::pin(async move {
            for request in requests {
                let _ = request.await;
            }
            tracing::info!("All stage pools drained.");
        })
    }
}
