//! [`WorkerSlot`]: what a worker thread shares with whoever heartbeats and stops it (its pool
//! actor, or the remote worker's control).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use cascade_stages::stage::{Cancellation, ProgressSink};
use cascade_tracker::WorkerToken;

/// One worker as its pool sees it: its tracker token, whether it holds a lease, its
/// latest unsent progress text, and its cancellation flag.
#[derive(Debug, Default)]
pub(crate) struct WorkerSlot {
    token: Mutex<Option<WorkerToken>>,
    busy: AtomicBool,
    progress: Mutex<Option<String>>,
    pub(crate) cancellation: Cancellation,
}

impl WorkerSlot {
    pub(crate) fn set_token(&self, token: Option<WorkerToken>) {
        *self.token.lock().unwrap_or_else(PoisonError::into_inner) = token;
    }

    pub(crate) fn token(&self) -> Option<WorkerToken> {
        self.token.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    pub(crate) fn set_busy(&self, busy: bool) {
        self.busy.store(busy, Ordering::Relaxed);
    }

    pub(crate) fn is_busy(&self) -> bool {
        self.busy.load(Ordering::Relaxed)
    }

    /// The progress reported since the last call, if any.
    pub(crate) fn take_progress(&self) -> Option<String> {
        self.progress.lock().unwrap_or_else(PoisonError::into_inner).take()
    }
}

impl ProgressSink for WorkerSlot {
    fn report(&self, text: &str) {
        *self.progress.lock().unwrap_or_else(PoisonError::into_inner) = Some(text.to_owned());
    }
}

/// Counters of one stage's workers since the process started.
#[derive(Debug, Default)]
pub(crate) struct PoolCounters {
    pub(crate) completed: AtomicU64,
    pub(crate) flagged: AtomicU64,
    pub(crate) retried: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) released: AtomicU64,
    pub(crate) panics: AtomicU64,
}

impl PoolCounters {
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}
