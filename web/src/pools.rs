//! What the engine's local stage pools report, for the dashboard and `/metrics`.
//!
//! The engine owns the pools; this crate only shows them. The engine keeps a [`PoolRegistry`]
//! (cheap to clone; clones share one table), hands a clone to the server through
//! [`crate::ServerConfig::pools`], and calls [`PoolRegistry::set`] whenever a pool's figures
//! change (or on a timer):
//!
//! ```
//! use cascade_tracker::StageId;
//! use cascade_web::pools::{PoolRegistry, PoolSnapshot};
//!
//! let pools = PoolRegistry::default();
//! pools.set(PoolSnapshot { busy: 3, completed: 1234, ..PoolSnapshot::idle(StageId::A, "wat", 4, 16) });
//! assert_eq!(pools.snapshots()[0].busy, 3);
//! ```

use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError, RwLock};

use cascade_tracker::StageId;
use serde::Serialize;
use utoipa::ToSchema;

/// The figures of one local stage pool at one moment (what the engine reports about a pool,
/// and what the dashboard and `/metrics` show).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct PoolSnapshot {
    /// The stage the pool serves; one pool per stage.
    pub stage: StageId,
    /// The stage kind it runs (`wat`, `download`, `clip`, …).
    pub kind: String,
    /// Worker threads in the pool.
    pub workers: usize,
    /// Of those, how many are working on a job now.
    pub busy: usize,
    /// Jobs waiting in the pool's input channel.
    pub queued: usize,
    /// The capacity of that channel.
    pub queue_capacity: usize,
    /// Jobs the pool completed since the process started.
    pub completed: u64,
    /// Jobs whose input the pool flagged as invalid.
    pub flagged: u64,
    /// Jobs given back for a later retry (transient failures and panics).
    pub retried: u64,
    /// Jobs the pool marked failed.
    pub failed: u64,
    /// Jobs released untouched after a cancellation.
    pub released: u64,
    /// Stage panics caught (each restarted its worker).
    pub panics: u64,
    /// Why the stage cannot run here (its `open` failed for good), if so.
    pub unavailable: Option<String>,
}

impl PoolSnapshot {
    /// A pool of `workers` that has done nothing yet, fed by a queue of `queue_capacity`.
    pub fn idle(stage: StageId, kind: &str, workers: usize, queue_capacity: usize) -> Self {
        Self {
            stage,
            kind: kind.to_owned(),
            workers,
            busy: 0,
            queued: 0,
            queue_capacity,
            completed: 0,
            flagged: 0,
            retried: 0,
            failed: 0,
            released: 0,
            panics: 0,
            unavailable: None,
        }
    }
}

/// The latest [`PoolSnapshot`] of each stage's local pool, shared between the engine (which
/// writes) and the HTTP handlers (which read). Empty when no pool runs in this process.
#[derive(Debug, Clone, Default)]
pub struct PoolRegistry {
    pools: Arc<RwLock<BTreeMap<StageId, PoolSnapshot>>>,
}

impl PoolRegistry {
    /// Records `snapshot` as the current state of its stage's pool, replacing the previous one.
    pub fn set(&self, snapshot: PoolSnapshot) {
        // A writer that panicked mid-insert leaves a whole map behind; keep using it.
        let mut pools = self.pools.write().unwrap_or_else(PoisonError::into_inner);
        pools.insert(snapshot.stage, snapshot);
    }

    /// Forgets the pool of `stage` (it was stopped).
    pub fn remove(&self, stage: StageId) {
        self.pools.write().unwrap_or_else(PoisonError::into_inner).remove(&stage);
    }

    /// Every pool's latest snapshot, in stage order.
    pub fn snapshots(&self) -> Vec<PoolSnapshot> {
        self.pools.read().unwrap_or_else(PoisonError::into_inner).values().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(stage: StageId, busy: usize) -> PoolSnapshot {
        PoolSnapshot { busy, ..PoolSnapshot::idle(stage, "wat", 4, 8) }
    }

    #[test]
    fn clones_share_one_table_and_set_replaces_a_stage() {
        let engine = PoolRegistry::default();
        let server = engine.clone();
        engine.set(pool(StageId::B, 1));
        engine.set(pool(StageId::A, 2));
        engine.set(pool(StageId::B, 3));
        let seen: Vec<_> = server.snapshots().into_iter().map(|p| (p.stage, p.busy)).collect();
        assert_eq!(seen, [(StageId::A, 2), (StageId::B, 3)]);
        engine.remove(StageId::A);
        assert_eq!(server.snapshots().len(), 1);
    }
}
