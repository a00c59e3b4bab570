//! What the store needs to know about the pipeline.

use std::time::Duration;

use crate::stage::StageId;

/// Pipeline settings the store enforces: which stages exist, how long leases last, when flags
/// send a job back.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Project name shown to workers and on the dashboard.
    pub project: String,
    /// Display name of each stage `a`..`e`; `None` disables the stage. Stage `a` must be enabled.
    pub stage_names: [Option<String>; 5],
    /// A worker silent this long is removed and its job re-opened; also the lease length of
    /// remote workers (every authenticated request extends it). Default 2 hours.
    pub idle_timeout: Duration,
    /// Reports of invalid input for one (job, stage) after which the job goes back one stage.
    /// Default 5.
    pub flag_threshold: u32,
    /// Claims of one job at each stage `a`..`e` after which the job is failed instead of
    /// handed out again (a lease given back with `release` does not count). Default 5.
    pub max_attempts: [u32; 5],
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            project: "Cascade".to_owned(),
            stage_names: [Some("wat".to_owned()), Some("download".to_owned()), Some("clip".to_owned()), None, None],
            idle_timeout: Duration::from_secs(7200),
            flag_threshold: 5,
            max_attempts: [5; 5],
        }
    }
}

impl StoreConfig {
    /// The display name of `stage`, or `None` when it is disabled.
    pub fn stage_name(&self, stage: StageId) -> Option<&str> {
        self.stage_names[stage.index()].as_deref()
    }

    /// Whether `stage` is enabled.
    pub fn is_enabled(&self, stage: StageId) -> bool {
        self.stage_name(stage).is_some()
    }

    /// The enabled stages, in order.
    pub fn enabled_stages(&self) -> impl Iterator<Item = StageId> + '_ {
        StageId::ALL.into_iter().filter(|s| self.is_enabled(*s))
    }

    /// Where a job completed at `stage` goes: the next stage when it is enabled, else nowhere
    /// (the job closes). A disabled stage is never skipped over.
    pub fn next_enabled(&self, stage: StageId) -> Option<StageId> {
        stage.next().filter(|s| self.is_enabled(*s))
    }

    /// Claims of one job at `stage` after which it fails instead of being handed out again.
    pub fn max_attempts(&self, stage: StageId) -> u32 {
        self.max_attempts[stage.index()].max(1)
    }

    /// The idle timeout in milliseconds.
    pub fn idle_timeout_ms(&self) -> i64 {
        i64::try_from(self.idle_timeout.as_millis()).unwrap_or(i64::MAX)
    }
}
