//! The fault script of a chaos soak, made from a seed: which faults, in what order, on which
//! remote worker, how long each lasts and how long the loop waits before the next. The same
//! seed gives the same script (the timing of the pipeline around it varies from run to run).

use std::time::Duration;

/// A small, seedable pseudo-random generator (SplitMix64): enough for a fault script, and
/// its sequence never changes with a dependency's version.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator starting from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// A duration in `low..=high`, to the millisecond.
    pub fn between(&mut self, low: Duration, high: Duration) -> Duration {
        let (low_ms, high_ms) = (low.as_millis() as u64, high.as_millis() as u64);
        Duration::from_millis(low_ms + self.below(high_ms.saturating_sub(low_ms) + 1))
    }

    /// Shuffles `items` in place (Fisher–Yates).
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }
}

/// A kind of fault the chaos loop injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FaultKind {
    /// `kill -9` of a remote worker, restarted after the hold.
    KillWorker,
    /// `kill -9` of the daemon, restarted on the same port after the hold.
    KillDaemon,
    /// `SIGSTOP` of a remote worker for longer than its lease, then `SIGCONT`.
    FreezeWorker,
    /// `SIGSTOP` of the daemon (a stalled host) for longer than its local workers' leases, then
    /// `SIGCONT`: its sweep and its own workers, holding expired leases, wake together.
    FreezeDaemon,
    /// Every connection between the remote workers and the tracker cut, new ones refused.
    CutWorkerLinks,
    /// Every chunk between the remote workers and the tracker delayed.
    DelayWorkerLinks,
    /// Every connection between the daemon and PostgreSQL cut, new ones refused.
    CutDatabase,
    /// Every chunk between the daemon and PostgreSQL delayed.
    DelayDatabase,
}

impl FaultKind {
    /// The kinds that apply to every backend.
    pub const PROCESS_AND_WORKER_LINKS: [Self; 6] = [
        Self::KillWorker,
        Self::KillDaemon,
        Self::FreezeWorker,
        Self::FreezeDaemon,
        Self::CutWorkerLinks,
        Self::DelayWorkerLinks,
    ];
    /// The kinds that apply to a database reached over the network (PostgreSQL).
    pub const DATABASE_LINKS: [Self; 2] = [Self::CutDatabase, Self::DelayDatabase];

    /// The name used in the log and the summary.
    pub fn name(self) -> &'static str {
        match self {
            Self::KillWorker => "kill-worker",
            Self::KillDaemon => "kill-daemon",
            Self::FreezeWorker => "freeze-worker",
            Self::FreezeDaemon => "freeze-daemon",
            Self::CutWorkerLinks => "cut-worker-links",
            Self::DelayWorkerLinks => "delay-worker-links",
            Self::CutDatabase => "cut-database",
            Self::DelayDatabase => "delay-database",
        }
    }
}

/// One fault of the script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// What happens.
    pub kind: FaultKind,
    /// Which remote worker (an index, taken modulo the live workers) a worker fault hits.
    pub worker: usize,
    /// How long the loop waits after the previous fault started before starting this one.
    pub gap: Duration,
    /// How long the fault lasts (a killed process stays down, a link stays cut or slow).
    pub hold: Duration,
    /// The delay per chunk of a delay fault.
    pub delay: Duration,
}

/// Timing bounds of a script.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// A remote worker's lease: a freeze of a worker lasts longer than this.
    pub worker_lease: Duration,
    /// A local worker's lease: a freeze of the daemon lasts longer than this.
    pub local_lease: Duration,
}

/// The script: `per_kind` faults of each of `kinds`, shuffled, for `workers` remote workers.
pub fn script(seed: u64, kinds: &[FaultKind], per_kind: usize, workers: usize, timing: Timing) -> Vec<Fault> {
    let mut rng = Rng::new(seed);
    let mut order: Vec<FaultKind> = kinds.iter().flat_map(|&kind| std::iter::repeat_n(kind, per_kind)).collect();
    rng.shuffle(&mut order);
    let ms = Duration::from_millis;
    order
        .into_iter()
        .map(|kind| {
            let hold = match kind {
                FaultKind::KillWorker => rng.between(ms(100), ms(1000)),
                FaultKind::KillDaemon => rng.between(ms(200), ms(1500)),
                // Past the lease and the sweep that re-opens its job.
                FaultKind::FreezeWorker => timing.worker_lease + rng.between(ms(1500), ms(3000)),
                FaultKind::FreezeDaemon => timing.local_lease + rng.between(ms(500), ms(2500)),
                FaultKind::CutWorkerLinks | FaultKind::CutDatabase => rng.between(ms(300), ms(3000)),
                FaultKind::DelayWorkerLinks | FaultKind::DelayDatabase => rng.between(ms(1000), ms(4000)),
            };
            let delay = match kind {
                FaultKind::DelayWorkerLinks => rng.between(ms(5), ms(60)),
                FaultKind::DelayDatabase => rng.between(ms(2), ms(25)),
                _ => Duration::ZERO,
            };
            let worker = rng.below(workers.max(1) as u64) as usize;
            Fault { kind, worker, gap: rng.between(ms(100), ms(1200)), hold, delay }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMING: Timing = Timing { worker_lease: Duration::from_secs(3), local_lease: Duration::from_secs(2) };

    #[test]
    fn a_seed_always_gives_the_same_script_with_each_kind_as_often_as_asked() {
        let kinds = FaultKind::PROCESS_AND_WORKER_LINKS;
        let first = script(7, &kinds, 4, 3, TIMING);
        assert_eq!(first, script(7, &kinds, 4, 3, TIMING));
        assert_ne!(first, script(8, &kinds, 4, 3, TIMING));
        for kind in kinds {
            assert_eq!(first.iter().filter(|f| f.kind == kind).count(), 4, "{kind:?}");
        }
        assert!(first.iter().all(|f| f.worker < 3));
        let freezes = first.iter().filter(|f| f.kind == FaultKind::FreezeWorker);
        assert!(freezes.into_iter().all(|f| f.hold > TIMING.worker_lease), "a freeze outlasts the lease");
        let stalls = first.iter().filter(|f| f.kind == FaultKind::FreezeDaemon);
        assert!(stalls.into_iter().all(|f| f.hold > TIMING.local_lease), "a stall outlasts the local leases");
    }

    #[test]
    fn the_generator_spreads_its_draws() {
        let mut rng = Rng::new(1);
        let mut seen = [0usize; 4];
        for _ in 0..4000 {
            seen[rng.below(4) as usize] += 1;
        }
        assert!(seen.iter().all(|&n| (800..1200).contains(&n)), "{seen:?}");
        let d = rng.between(Duration::from_millis(10), Duration::from_millis(20));
        assert!((10..=20).contains(&d.as_millis()));
    }
}
