//! Running stage code so that its failures, panics included, become values: shared by local
//! pools and remote workers.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use cascade_stages::stage::{StageContext, StageError, StageRegistry, WireStage};

use super::outcome::{panic_message, Failure};

/// Why a stage could not be opened.
#[derive(Debug)]
pub(crate) struct OpenError {
    /// What went wrong.
    pub(crate) message: String,
    /// Whether trying again cannot help: settings the kind rejects, or a
    /// [`StageError::Fatal`](cascade_stages::stage::StageError::Fatal) or `InvalidInput` from
    /// `open` (weights that cannot be had, say). Transient errors and panics may pass.
    pub(crate) permanent: bool,
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Builds a stage of `kind` and opens it; a panic in `open` is an error too.
pub(crate) fn open_stage(
    registry: &StageRegistry,
    kind: &str,
    settings: &serde_json::Value,
    ctx: &StageContext,
) -> Result<Box<dyn WireStage>, OpenError> {
    let mut stage =
        registry.create(kind, settings).map_err(|e| OpenError { message: e.to_string(), permanent: true })?;
    match catch_unwind(AssertUnwindSafe(|| stage.open(ctx))) {
        Ok(Ok(())) => Ok(stage),
        Ok(Err(e)) => {
            let permanent = matches!(e, StageError::Fatal(_) | StageError::InvalidInput(_));
            Err(OpenError { message: e.to_string(), permanent })
        }
        Err(payload) => {
            Err(OpenError { message: format!("panicked: {}", panic_message(payload.as_ref())), permanent: false })
        }
    }
}

/// Runs the stage on one job's wire input, catching a panic.
pub(crate) fn process(stage: &mut dyn WireStage, input: &str, ctx: &StageContext) -> Result<String, Failure> {
    match catch_unwind(AssertUnwindSafe(|| stage.process_wire(input, ctx))) {
        Ok(result) => result.map_err(Failure::Stage),
        Err(payload) => Err(Failure::Panic(panic_message(payload.as_ref()))),
    }
}

/// Sleeps `duration` in short naps, returning early once `stopping` is set.
pub(crate) fn nap(stopping: &AtomicBool, duration: Duration) {
    let step = Duration::from_millis(50);
    let mut left = duration;
    while !left.is_zero() && !stopping.load(Ordering::Relaxed) {
        let slice = left.min(step);
        std::thread::sleep(slice);
        left -= slice;
    }
}
