//! The live per-stage view of `cascade run`: progress bars on a terminal, periodic `tracing`
//! lines otherwise.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use cascade_tracker::StageCounts;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How often a log line is written when stderr is not a terminal.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// Shows pipeline progress from successive per-stage counts.
pub(crate) struct PipelineProgress {
    bars: Option<(MultiProgress, Vec<ProgressBar>)>,
    last_log: Option<Instant>,
}

impl PipelineProgress {
    /// Bars when stderr is a terminal (and `enabled`), log lines otherwise.
    pub(crate) fn new(enabled: bool) -> Self {
        let bars = (enabled && std::io::stderr().is_terminal()).then(|| (MultiProgress::with_draw_target(ProgressDrawTarget::stderr()), Vec::new()));
        Self { bars, last_log: None }
    }

    /// Updates the view with `counts` (one entry per stage, disabled ones included).
    pub(crate) fn update(&mut self, counts: &[StageCounts]) {
        let enabled: Vec<&StageCounts> = counts.iter().filter(|c| c.name.is_some()).collect();
        // Every job is open, leased or failed at one stage, or done at the last one.
        let total: i64 = counts.iter().map(|c| c.open + c.leased + c.failed).sum::<i64>()
            + enabled.last().map_or(0, |last| last.done);
        match &mut self.bars {
            Some((multi, bars)) => {
                while bars.len() < enabled.len() {
                    let bar = multi.add(ProgressBar::new(0));
                    bar.set_style(
                        ProgressStyle::with_template("{prefix:<14} [{bar:30}] {pos}/{len} {msg}")
                            .expect("valid progress template")
                            .progress_chars("=> "),
                    );
                    bars.push(bar);
                }
                for (bar, stage) in bars.iter().zip(&enabled) {
                    bar.set_prefix(format!("{} {}", stage.stage, stage.name.as_deref().unwrap_or("")));
                    bar.set_length(u64::try_from(total).unwrap_or(0));
                    bar.set_position(u64::try_from(stage.done).unwrap_or(0));
                    bar.set_message(format!("open {} · leased {} · failed {}", stage.open, stage.leased, stage.failed));
                }
            }
            None => {
                if self.last_log.is_some_and(|at| at.elapsed() < LOG_EVERY) {
                    return;
                }
                self.last_log = Some(Instant::now());
                for stage in &enabled {
                    tracing::info!(
                        stage = %stage.stage,
                        passed = stage.done,
                        total,
                        open = stage.open,
                        leased = stage.leased,
                        failed = stage.failed,
                        "Progress."
                    );
                }
            }
        }
    }

    /// Leaves the final state on screen.
    pub(crate) fn finish(&self) {
        if let Some((_, bars)) = &self.bars {
            for bar in bars {
                bar.abandon();
            }
        }
    }
}
