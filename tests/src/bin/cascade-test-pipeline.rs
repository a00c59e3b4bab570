//! `cascade` with one extra stage kind, `append`, used by the end-to-end tests: it is also the
//! smallest example of a pipeline author's own binary.
//!
//! `append` adds its `suffix` setting to the input text, after `delay-ms` of (cancellable)
//! work, or `slow-ms` for every `slow-every`-th job number (a job that outlasts a stalled
//! tracker's leases). Inputs containing a marker `KIND@STAGE` misbehave on purpose at that stage:
//! `invalid@b` → invalid input at stage b, `transient@…` → transient error, `flaky@…` →
//! transient on the first attempt only, `fatal@…` → fatal error, `panic@…` → a panic,
//! `abort@…` → the whole process aborts (as a native crash or an out-of-memory kill would end it).

use std::time::{Duration, Instant};

use cascade_stages::stage::{Stage, StageContext, StageError, StageRegistry};
use serde::Deserialize;

/// The `append` stage.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
struct Append {
    suffix: String,
    delay_ms: u64,
    slow_every: i64,
    slow_ms: u64,
}

impl Stage for Append {
    type Input = String;
    type Output = String;

    fn process(&mut self, input: String, ctx: &StageContext) -> Result<String, StageError> {
        let started = Instant::now();
        let slow = self.slow_every > 0 && ctx.job().is_some_and(|job| job.number % self.slow_every == 0);
        let work = Duration::from_millis(if slow { self.slow_ms } else { self.delay_ms });
        while started.elapsed() < work {
            ctx.check_cancelled()?;
            std::thread::sleep(Duration::from_millis(5));
        }
        let attempt = ctx.job().map_or(1, |job| job.attempt);
        let marked = |kind: &str| input.contains(&format!("{kind}@{}", ctx.stage()));
        if marked("invalid") {
            Err(StageError::invalid(format!("{input} is not acceptable")))
        } else if marked("transient") || (marked("flaky") && attempt == 1) {
            Err(StageError::transient_after("service busy", Duration::from_millis(50)))
        } else if marked("fatal") {
            Err(StageError::fatal("cannot ever work"))
        } else if marked("panic") {
            panic!("stage bug triggered by {input}");
        } else if marked("abort") {
            std::process::abort();
        } else {
            ctx.progress(&format!("appending to {input}"));
            Ok(format!("{input}{}", self.suffix))
        }
    }
}

fn main() -> anyhow::Result<()> {
    let mut registry = StageRegistry::builtin();
    registry.register_settings::<Append>("append");
    cascade_engine::cli::main(&registry)
}
