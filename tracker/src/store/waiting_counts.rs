//! Counts of the jobs waiting at each stage, reused while they are costly to make.
//!
//! Every idle distcompute worker polls `jobCount`; ten thousand of them polling every 30 s ask
//! 333 times a second. Counting the waiting jobs of a stage reads an index entry per job: on
//! a few thousand jobs that takes well under a millisecond, on five million about a second, so
//! at that size the polling alone would need hundreds of cores. A count that took at least
//! [`COSTLY`] is therefore reused for [`REUSE_FACTOR`] times as long as it took (at most
//! [`MAX_REUSE`]), so counting costs at most about one twentieth of a core per stage and
//! process however many workers poll; while one caller counts again, the others get the last
//! count instead of counting too. A count cheaper than that is made afresh on every call, so
//! small projects (and tests) always see the exact number.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::error::TrackerError;
use crate::stage::StageId;

/// Counts that took less than this are never reused.
const COSTLY: Duration = Duration::from_millis(10);
/// A costly count is reused for this many times as long as it took.
const REUSE_FACTOR: u32 = 20;
/// Longest a count is reused.
const MAX_REUSE: Duration = Duration::from_secs(60);

/// One count and what it cost.
#[derive(Debug, Clone, Copy)]
struct Measured {
    count: i64,
    /// When counting started.
    at: Instant,
    took: Duration,
}

impl Measured {
    /// Whether the count may be given out at `now` instead of counting again.
    fn reusable_at(&self, now: Instant) -> bool {
        self.took >= COSTLY && now.saturating_duration_since(self.at) < (self.took * REUSE_FACTOR).min(MAX_REUSE)
    }
}

/// What is known of one stage's count.
#[derive(Debug, Default)]
struct Slot {
    last: Option<Measured>,
    /// Whether a caller is counting again (the others get `last` meanwhile).
    recounting: bool,
}

/// The waiting counts of the five stages; shared by the clones of one store.
#[derive(Debug, Default)]
pub(crate) struct WaitingCounts {
    stages: [Mutex<Slot>; 5],
}

impl WaitingCounts {
    /// The count of `stage`: the last one while it may be reused, else `count()`'s.
    pub(crate) fn get(&self, stage: StageId, count: impl FnOnce() -> Result<i64, TrackerError>) -> Result<i64, TrackerError> {
        self.get_at(stage, Instant::now(), || {
            let started = Instant::now();
            let counted = count()?;
            Ok((counted, started.elapsed()))
        })
    }

    /// [`get`](Self::get) at time `now`, with `count` returning the count and how long it took.
    fn get_at(
        &self,
        stage: StageId,
        now: Instant,
        count: impl FnOnce() -> Result<(i64, Duration), TrackerError>,
    ) -> Result<i64, TrackerError> {
        let slot = &self.stages[stage.index()];
        {
            let mut known = slot.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(last) = known.last.filter(|last| last.took >= COSTLY) {
                if known.recounting || last.reusable_at(now) {
                    return Ok(last.count);
                }
                known.recounting = true;
            }
        }
        let counted = count();
        let mut known = slot.lock().unwrap_or_else(PoisonError::into_inner);
        known.recounting = false;
        let (count, took) = counted?;
        known.last = Some(Measured { count, at: now, took });
        Ok(count)
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    /// A count function that answers `count` as if it took `took`, and counts its calls.
    fn counter<'a>(calls: &'a Cell<u32>, count: i64, took: Duration) -> impl FnOnce() -> Result<(i64, Duration), TrackerError> + 'a {
        move || {
            calls.set(calls.get() + 1);
            Ok((count, took))
        }
    }

    #[test]
    fn a_cheap_count_is_made_afresh_on_every_call() {
        let (counts, calls, t0) = (WaitingCounts::default(), Cell::new(0), Instant::now());
        let cheap = Duration::from_micros(300);
        assert_eq!(counts.get_at(StageId::A, t0, counter(&calls, 5, cheap)).unwrap(), 5);
        assert_eq!(counts.get_at(StageId::A, t0, counter(&calls, 4, cheap)).unwrap(), 4);
        assert_eq!(calls.get(), 2);
    }

    #[test]
    fn a_costly_count_is_reused_for_twenty_times_as_long_as_it_took() {
        let (counts, calls, t0) = (WaitingCounts::default(), Cell::new(0), Instant::now());
        let costly = Duration::from_millis(100);
        assert_eq!(counts.get_at(StageId::B, t0, counter(&calls, 5_000_000, costly)).unwrap(), 5_000_000);
        let soon = t0 + Duration::from_millis(1_999);
        assert_eq!(counts.get_at(StageId::B, soon, counter(&calls, 4_999_000, costly)).unwrap(), 5_000_000);
        assert_eq!(calls.get(), 1, "reused");
        // Stages are counted apart.
        assert_eq!(counts.get_at(StageId::C, soon, counter(&calls, 7, Duration::ZERO)).unwrap(), 7);
        let later = t0 + Duration::from_secs(2);
        assert_eq!(counts.get_at(StageId::B, later, counter(&calls, 4_998_000, costly)).unwrap(), 4_998_000);
        assert_eq!(calls.get(), 3, "counted again once stale");
    }

    #[test]
    fn no_count_is_reused_for_more_than_a_minute() {
        let (counts, calls, t0) = (WaitingCounts::default(), Cell::new(0), Instant::now());
        let very_costly = Duration::from_secs(10);
        counts.get_at(StageId::A, t0, counter(&calls, 9, very_costly)).unwrap();
        counts.get_at(StageId::A, t0 + Duration::from_secs(59), counter(&calls, 8, very_costly)).unwrap();
        assert_eq!(counts.get_at(StageId::A, t0 + MAX_REUSE, counter(&calls, 7, very_costly)).unwrap(), 7);
        assert_eq!(calls.get(), 2);
    }

    #[test]
    fn while_one_caller_counts_again_the_others_get_the_last_count() {
        let (counts, calls, t0) = (WaitingCounts::default(), Cell::new(0), Instant::now());
        let costly = Duration::from_millis(50);
        counts.get_at(StageId::A, t0, counter(&calls, 100, costly)).unwrap();
        let stale = t0 + Duration::from_secs(5);
        let recounted = counts
            .get_at(StageId::A, stale, || {
                // Another caller arrives while this one is counting.
                let meanwhile = counts.get_at(StageId::A, stale, counter(&calls, -1, costly)).unwrap();
                assert_eq!(meanwhile, 100);
                Ok((90, costly))
            })
            .unwrap();
        assert_eq!(recounted, 90);
        assert_eq!(calls.get(), 1, "the caller that arrived meanwhile did not count");
    }

    #[test]
    fn a_failed_count_is_not_kept_and_the_next_caller_counts_again() {
        let (counts, calls, t0) = (WaitingCounts::default(), Cell::new(0), Instant::now());
        let costly = Duration::from_millis(50);
        counts.get_at(StageId::A, t0, counter(&calls, 100, costly)).unwrap();
        let stale = t0 + Duration::from_secs(5);
        let failed = counts.get_at(StageId::A, stale, || Err(TrackerError::NoJobAvailable));
        assert!(failed.is_err());
        assert_eq!(counts.get_at(StageId::A, stale, counter(&calls, 80, costly)).unwrap(), 80);
    }
}
