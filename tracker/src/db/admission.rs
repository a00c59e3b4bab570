//! How many of a PostgreSQL writer's lanes run batches at once.
//!
//! Several lanes let one batch's round trips overlap another's commit. But the lanes of several
//! daemons on one database add up, and each daemon batches only its own workers' writes, which
//! its lanes split further: three daemons with two lanes each committed 0.42–0.45 transactions
//! per cycle where one daemon committed 0.16–0.17, and together did half of one daemon's work;
//! with one lane each they did 1.4–1.7× as much (docs/performance.md). So a writer may let only
//! some of its lanes run at once (its share of the database, see
//! [`daemons`](super::daemons)): a lane over the limit waits, holding the operation it took,
//! until a running lane ends its batch and hands it the turn, and then takes everything queued
//! meanwhile. A lane that enters later cannot overtake one that was handed the turn.

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

/// The turns of one writer's lanes (see the module docs).
pub(super) struct Admission {
    turns: Mutex<Turns>,
    changed: Condvar,
}

struct Turns {
    /// Lanes that may run batches at once (at least one).
    limit: usize,
    /// Lanes admitted that have not left yet (taking or committing a batch).
    running: usize,
    /// Lanes waiting in [`Admission::enter`].
    waiting: usize,
    /// Turns a leaving lane handed to a waiting one that no waiting lane has taken yet (each
    /// still counted in `running`).
    handed: usize,
}

/// A lane's turn to run a batch; ends when dropped.
pub(super) struct Turn<'a>(&'a Admission);

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        self.0.leave();
    }
}

impl Admission {
    /// Turns for lanes of which at most `limit` run at once.
    pub(super) fn new(limit: usize) -> Self {
        let turns = Turns { limit: limit.max(1), running: 0, waiting: 0, handed: 0 };
        Self { turns: Mutex::new(turns), changed: Condvar::new() }
    }

    /// Lets at most `limit` lanes (at least one) run at once from now on; lanes running beyond
    /// a lowered limit finish their batches. Returns whether the limit changed.
    pub(super) fn set_limit(&self, limit: usize) -> bool {
        let mut turns = self.lock();
        let changed = turns.limit != limit.max(1);
        if changed {
            turns.limit = limit.max(1);
            self.changed.notify_all();
        }
        changed
    }

    /// Waits for a turn to run a batch: at once while fewer lanes than the limit run one.
    pub(super) fn enter(&self) -> Turn<'_> {
        let mut turns = self.lock();
        if turns.running < turns.limit {
            turns.running += 1;
            return Turn(self);
        }
        turns.waiting += 1;
        loop {
            turns = self.changed.wait(turns).unwrap_or_else(PoisonError::into_inner);
            if turns.handed > 0 {
                turns.handed -= 1;
                break;
            }
            if turns.running < turns.limit {
                turns.running += 1;
                break;
            }
        }
        turns.waiting -= 1;
        Turn(self)
    }

    /// Ends a turn: hands it to a waiting lane while the limit allows (which then takes
    /// everything queued meanwhile, and which no lane entering now can overtake).
    fn leave(&self) {
        let mut turns = self.lock();
        if turns.waiting > turns.handed && turns.running <= turns.limit {
            turns.handed += 1;
            self.changed.notify_all();
        } else {
            turns.running -= 1;
        }
    }

    /// Locks the turns (no code that can panic runs under the lock, so a poisoned one is
    /// consistent).
    fn lock(&self) -> MutexGuard<'_, Turns> {
        self.turns.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use crossbeam_channel::{bounded, Receiver};

    use super::*;

    /// Starts a lane that asks for a turn and ends it at once; the receiver hears when it got
    /// the turn.
    fn lane(admission: &Arc<Admission>) -> Receiver<()> {
        let (entered, heard) = bounded(1);
        let admission = Arc::clone(admission);
        std::thread::spawn(move || {
            drop(admission.enter());
            let _ = entered.send(());
        });
        heard
    }

    /// Long enough for a lane that may enter to have entered.
    const SETTLE: Duration = Duration::from_millis(200);
    /// Longer than any wait a test expects to end.
    const LONG_ENOUGH: Duration = Duration::from_secs(10);

    #[test]
    fn lanes_over_the_limit_wait_for_a_running_one_to_hand_its_turn_on() {
        let admission = Arc::new(Admission::new(1));
        let first = admission.enter();
        let second = lane(&admission);
        assert!(second.recv_timeout(SETTLE).is_err(), "one lane at a time: the second waits");
        drop(first);
        second.recv_timeout(LONG_ENOUGH).expect("the running lane hands its turn on when it leaves");
        let turns = admission.lock();
        assert_eq!((turns.running, turns.waiting, turns.handed), (0, 0, 0));
    }

    #[test]
    fn a_raised_limit_lets_a_waiting_lane_in_and_a_lowered_one_lets_running_lanes_finish() {
        let admission = Arc::new(Admission::new(2));
        let (first, second) = (admission.enter(), admission.enter());
        assert!(admission.set_limit(1));
        assert!(!admission.set_limit(1), "unchanged");
        let third = lane(&admission);
        drop(first);
        assert!(third.recv_timeout(SETTLE).is_err(), "two were running over a limit of one");
        assert!(admission.set_limit(2));
        third.recv_timeout(LONG_ENOUGH).expect("a raised limit lets the waiting lane in");
        drop(second);
        let turns = admission.lock();
        assert_eq!((turns.running, turns.waiting, turns.handed), (0, 0, 0));
    }
}
