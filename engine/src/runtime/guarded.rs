//! Running stage code so that its failures, panics included, become values: shared by local
//! pools and remote workers.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use cascade_stages::stage::{StageContext, StageRegistry, WireStage};

use super::outcome::{panic_message, Failure};

/// Builds a stage of `kind` and opens it; a panic in `open` is an error too.
pub(crate) fn open_stage(
    registry: &StageRegistry,
    kind: &str,
    settings: &serde_json::Value,
    ctx: &StageContext,
) -> Result<Box<dyn WireStage>, String> {
    let mut stage = registry.create(kind, settings).map_err(|e| e.to_string())?;
    match catch_unwind(AssertUnwindSafe(|| stage.open(ctx))) {
        Ok(Ok(())) => Ok(stage),
        Ok(Err(e)) => Err(e.to_string()),
        Err(payload) => Err(format!("panicked: {}", panic_message(payload.as_ref()))),
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
