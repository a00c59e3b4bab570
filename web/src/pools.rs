//! What the engine's local stage pools report, for the dashboard and `/metrics`.
//!
//! The engine owns the pools; this crate only shows them. The engine keeps a [`PoolRegistry`]
//! (cheap to clone; clones share one table), hands a clone to the server through
//! [`crate::ServerConfig::pools`], and calls [`PoolRegistry::set`] whenever a pool's figures
//! change (or on a timer):
//!
//! ```
//! use cascade_web::pools::{PoolRegistry, PoolSnapshot};
//!
//! let pools = PoolRegistry::default();
//! pools.set(PoolSnapshot {
//!     stage: "a".to_owned(),
//!     kind: "wat".to_owned(),
//!     workers: 4,
//!     busy: 3,
//!     queued: 10,
//!     queue_capacity: 16,
//!     completed: 1234,
//! });
//! assert_eq!(pools.snapshots()[0].busy, 3);
//! ```

use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError, RwLock};

use serde::Serialize;

/// The figures of one local stage pool at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PoolSnapshot {
    /// The stage letter the pool serves, `a`..`e`; one pool per stage.
    pub stage: String,
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
}

/// The latest [`PoolSnapshot`] of each stage's local pool, shared between the engine (which
/// writes) and the HTTP handlers (which read). Empty when no pool runs in this process.
#[derive(Debug, Clone, Default)]
pub struct PoolRegistry {
    pools: Arc<RwLock<BTreeMap<String, PoolSnapshot>>>,
}

impl PoolRegistry {
    /// Records `snapshot` as the current state of its stage's pool, replacing the previous one.
    pub fn set(&self, snapshot: PoolSnapshot) {
        // A writer that panicked mid-insert leaves a whole map behind; keep using it.
        let mut pools = self.pools.write().unwrap_or_else(PoisonError::into_inner);
        pools.insert(snapshot.stage.clone(), snapshot);
    }

    /// Forgets the pool of `stage` (it was stopped).
    pub fn remove(&self, stage: &str) {
        self.pools.write().unwrap_or_else(PoisonError::into_inner).remove(stage);
    }

    /// Every pool's latest snapshot, by stage letter.
    pub fn snapshots(&self) -> Vec<PoolSnapshot> {
        self.pools.read().unwrap_or_else(PoisonError::into_inner).values().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(stage: &str, busy: usize) -> PoolSnapshot {
        PoolSnapshot {
            stage: stage.to_owned(),
            kind: "wat".to_owned(),
            workers: 4,
            busy,
            queued: 0,
            queue_capacity: 8,
            completed: 0,
        }
    }

    #[test]
    fn clones_share_one_table_and_set_replaces_a_stage() {
        let engine = PoolRegistry::default();
        let server = engine.clone();
        engine.set(pool("b", 1));
        engine.set(pool("a", 2));
        engine.set(pool("b", 3));
        let seen: Vec<_> = server.snapshots().into_iter().map(|p| (p.stage, p.busy)).collect();
        assert_eq!(seen, [("a".to_owned(), 2), ("b".to_owned(), 3)]);
        engine.remove("a");
        assert_eq!(server.snapshots().len(), 1);
    }
}
