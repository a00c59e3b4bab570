//! The scheduling class of the threads that feed the SQLite writer.
//!
//! On SQLite every write waits for one thread: the writer that commits the batch it joined
//! (group commit). When the machine is saturated, a thread woken with new work (an HTTP thread
//! with a request, a stage worker with a reply) preempts whatever runs on its core; when that is
//! the writer, every write in flight stalls until the scheduler's next tick gives it back (4 ms
//! with the common `HZ=250` kernels). Those stalls were most of the HTTP p99 latency under load.
//! Linux's `SCHED_BATCH` class is the fair scheduler without wakeup preemption: a thread in it
//! still runs at once on an idle core and gets its full share of CPU, but no longer interrupts
//! the writer. Any user may choose it for their own threads, and the thread's niceness is kept.
//! Whoever starts such a thread calls [`no_wakeup_preemption`] on it: the HTTP server its
//! threads, the engine its stage workers, the tracker its background WAL checkpoint; the writer
//! keeps the default class. Elsewhere than Linux, threads keep the default class. With the
//! `test-util` feature, [`testing`] reads the class of a process's threads from `/proc`.

/// Puts the calling thread in the `SCHED_BATCH` class (Linux), keeping its niceness, so that
/// waking it never preempts the SQLite writer. A thread that cannot change class keeps the
/// default one; the reason is logged at debug level.
pub fn no_wakeup_preemption() {
    #[cfg(target_os = "linux")]
    if let Err(reason) = linux::batch_current_thread() {
        tracing::debug!(%reason, "The thread keeps the default scheduling class.");
    }
}

#[cfg(target_os = "linux")]
mod linux {
    use thread_priority::unix::{
        set_thread_priority_and_policy, thread_native_id, NormalThreadSchedulePolicy, ThreadSchedulePolicy,
    };
    use thread_priority::{ThreadPriority, ThreadPriorityValue};

    /// Switches the calling thread to `SCHED_BATCH` at its current niceness.
    pub(super) fn batch_current_thread() -> Result<(), String> {
        let nice = rustix::process::getpriority_process(None).map_err(|e| format!("cannot read the niceness: {e}"))?;
        let batch = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Batch);
        // The crate sets a niceness along with the class, from a 0–99 scale: pick the value that
        // maps to the niceness the thread has.
        let same_niceness = (0..=ThreadPriorityValue::MAX.into())
            .filter_map(|value: u8| ThreadPriorityValue::try_from(value).ok())
            .map(ThreadPriority::Crossplatform)
            .find(|priority| priority.to_posix(batch).ok() == Some(nice))
            .ok_or_else(|| format!("no priority keeps the niceness {nice}"))?;
        set_thread_priority_and_policy(thread_native_id(), same_niceness, batch)
            .map_err(|e| format!("cannot switch to SCHED_BATCH: {e:?}"))
    }
}

#[cfg(feature = "test-util")]
pub mod testing;

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use std::path::Path;

    use crate::testing::{thread_scheduling, ThreadScheduling};

    fn this_thread() -> ThreadScheduling {
        thread_scheduling(Path::new("/proc/thread-self")).expect("this thread is alive")
    }

    #[test]
    fn the_thread_moves_to_sched_batch_and_keeps_its_niceness() {
        std::thread::spawn(|| {
            let before = this_thread();
            assert_eq!(before.policy, 0, "threads start in SCHED_OTHER");
            super::no_wakeup_preemption();
            let after = this_thread();
            assert_eq!((after.policy, after.nice), (3, before.nice), "SCHED_BATCH is 3");
        })
        .join()
        .unwrap();
    }
}
