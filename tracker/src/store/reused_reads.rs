//! Reads of whole-table aggregates, reused while they are costly to make.
//!
//! Every idle distcompute worker polls `jobCount`; ten thousand of them polling every 30 s ask
//! 333 times a second. Counting the waiting jobs of a stage reads an index entry per job: on
//! a few thousand jobs that takes well under a millisecond, on five million about a second, so
//! at that size the polling alone would need hundreds of cores. The dashboard's and
//! `/v1/stats`' per-stage counts (a `GROUP BY` over every job) are the same kind of read, asked
//! by every open dashboard and every metrics scrape. A read that took at least [`COSTLY`] is
//! therefore reused for [`REUSE_FACTOR`] times as long as it took (at most [`MAX_REUSE`]), so
//! it costs at most about one twentieth of a core per read and process however often it is
//! asked; while one caller reads again, the others get the last result instead of reading
//! too. A read cheaper than that is made afresh on every call, so small projects (and tests)
//! always see exact numbers.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::error::TrackerError;

/// Reads that took less than this are never reused.
const COSTLY: Duration = Duration::from_millis(10);
/// A costly read is reused for this many times as long as it took.
const REUSE_FACTOR: u32 = 20;
/// Longest a read is reused.
const MAX_REUSE: Duration = Duration::from_secs(60);

/// One result and what it cost.
#[derive(Debug, Clone)]
struct Measured<T> {
    value: T,
    /// When the read started.
    at: Instant,
    took: Duration,
}

impl<T> Measured<T> {
    /// Whether the result of a costly read may be given out at `now` instead of reading again.
    fn fresh_at(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.at) < (self.took * REUSE_FACTOR).min(MAX_REUSE)
    }
}

/// What is known of one read.
#[derive(Debug)]
struct Slot<T> {
    last: Option<Measured<T>>,
    /// Whether a caller is reading again (the others get `last` meanwhile).
    rereading: bool,
}

/// One read's last result; shared by the clones of one store.
#[derive(Debug)]
pub(crate) struct Reused<T> {
    slot: Mutex<Slot<T>>,
}

impl<T> Default for Reused<T> {
    fn default() -> Self {
        Self { slot: Mutex::new(Slot { last: None, rereading: false }) }
    }
}

impl<T: Clone> Reused<T> {
    /// The last result while it may be reused, else `read()`'s.
    pub(crate) fn get(&self, read: impl FnOnce() -> Result<T, TrackerError>) -> Result<T, TrackerError> {
        self.get_at(Instant::now(), || {
            let started = Instant::now();
            let value = read()?;
            Ok((value, started.elapsed()))
        })
    }

    /// [`get`](Self::get) at time `now`, with `read` returning the result and how long it took.
    fn get_at(&self, now: Instant, read: impl FnOnce() -> Result<(T, Duration), TrackerError>) -> Result<T, TrackerError> {
        {
            let mut known = self.slot.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(last) = known.last.as_ref().filter(|last| last.took >= COSTLY) {
                if known.rereading || last.fresh_at(now) {
                    return Ok(last.value.clone());
                }
                known.rereading = true;
            }
        }
        let read = read();
        let mut known = self.slot.lock().unwrap_or_else(PoisonError::into_inner);
        known.rereading = false;
        let (value, took) = read?;
        known.last = Some(Measured { value: value.clone(), at: now, took });
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    /// A read that answers `count` as if it took `took`, and counts its calls.
    fn counter<'a>(calls: &'a Cell<u32>, count: i64, took: Duration) -> impl FnOnce() -> Result<(i64, Duration), TrackerError> + 'a {
        move || {
            calls.set(calls.get() + 1);
            Ok((count, took))
        }
    }

    #[test]
    fn a_cheap_read_is_made_afresh_on_every_call() {
        let (counts, calls, t0) = (Reused::<i64>::default(), Cell::new(0), Instant::now());
        let cheap = Duration::from_micros(300);
        assert_eq!(counts.get_at(t0, counter(&calls, 5, cheap)).unwrap(), 5);
        assert_eq!(counts.get_at(t0, counter(&calls, 4, cheap)).unwrap(), 4);
        assert_eq!(calls.get(), 2);
    }

    #[test]
    fn a_costly_read_is_reused_for_twenty_times_as_long_as_it_took() {
        let (counts, calls, t0) = (Reused::<i64>::default(), Cell::new(0), Instant::now());
        let costly = Duration::from_millis(100);
        assert_eq!(counts.get_at(t0, counter(&calls, 5_000_000, costly)).unwrap(), 5_000_000);
        let soon = t0 + Duration::from_millis(1_999);
        assert_eq!(counts.get_at(soon, counter(&calls, 4_999_000, costly)).unwrap(), 5_000_000);
        assert_eq!(calls.get(), 1, "reused");
        let later = t0 + Duration::from_secs(2);
        assert_eq!(counts.get_at(later, counter(&calls, 4_998_000, costly)).unwrap(), 4_998_000);
        assert_eq!(calls.get(), 2, "read again once stale");
    }

    #[test]
    fn no_read_is_reused_for_more_than_a_minute() {
        let (counts, calls, t0) = (Reused::<i64>::default(), Cell::new(0), Instant::now());
        let very_costly = Duration::from_secs(10);
        counts.get_at(t0, counter(&calls, 9, very_costly)).unwrap();
        counts.get_at(t0 + Duration::from_secs(59), counter(&calls, 8, very_costly)).unwrap();
        assert_eq!(counts.get_at(t0 + MAX_REUSE, counter(&calls, 7, very_costly)).unwrap(), 7);
        assert_eq!(calls.get(), 2);
    }

    #[test]
    fn while_one_caller_reads_again_the_others_get_the_last_result() {
        let (counts, calls, t0) = (Reused::<i64>::default(), Cell::new(0), Instant::now());
        let costly = Duration::from_millis(50);
        counts.get_at(t0, counter(&calls, 100, costly)).unwrap();
        let stale = t0 + Duration::from_secs(5);
        let recounted = counts
            .get_at(stale, || {
                // Another caller arrives while this one is reading.
                let meanwhile = counts.get_at(stale, counter(&calls, -1, costly)).unwrap();
                assert_eq!(meanwhile, 100);
                Ok((90, costly))
            })
            .unwrap();
        assert_eq!(recounted, 90);
        assert_eq!(calls.get(), 1, "the caller that arrived meanwhile did not read");
    }

    #[test]
    fn a_failed_read_is_not_kept_and_the_next_caller_reads_again() {
        let (counts, calls, t0) = (Reused::<i64>::default(), Cell::new(0), Instant::now());
        let costly = Duration::from_millis(50);
        counts.get_at(t0, counter(&calls, 100, costly)).unwrap();
        let stale = t0 + Duration::from_secs(5);
        let failed = counts.get_at(stale, || Err(TrackerError::NoJobAvailable));
        assert!(failed.is_err());
        assert_eq!(counts.get_at(stale, counter(&calls, 80, costly)).unwrap(), 80);
    }
}
