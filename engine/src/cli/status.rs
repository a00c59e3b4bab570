//! `cascade status`: per-stage counts and the ETA.

use std::time::Duration;

use super::{open_store, Cli, PipelineArgs, ServerArgs};

pub(crate) fn run(cli: &Cli) -> anyhow::Result<()> {
    let config = cli.load_config(&PipelineArgs::default(), &ServerArgs::default())?;
    let store = open_store(&config)?;
    let counts = store.stage_counts()?;
    let eta = store.eta()?;
    let paused = store.paused_stages()?;
    println!("{}  ({})", config.project, config.database_url().describe());
    println!("{:<6} {:<14} {:>10} {:>10} {:>10} {:>10} {:>8}", "stage", "name", "open", "leased", "done", "failed", "workers");
    for stage in counts.iter().filter(|c| c.name.is_some()) {
        let pause = paused.iter().find(|p| p.stage == stage.stage).map_or("", |_| "  paused");
        println!(
            "{:<6} {:<14} {:>10} {:>10} {:>10} {:>10} {:>8}{pause}",
            stage.stage.letter(),
            stage.name.as_deref().unwrap_or(""),
            stage.open,
            stage.leased,
            stage.done,
            stage.failed,
            stage.workers
        );
    }
    let percent = if eta.total == 0 { 100.0 } else { eta.done as f64 * 100.0 / eta.total as f64 };
    println!("done {}/{} ({percent:.2}%), {:.0} jobs/hour", eta.done, eta.total, eta.rate_per_hour);
    match eta.seconds_left {
        Some(0) => println!("finished"),
        Some(seconds) => println!(
            "estimated time left: {}",
            humantime_serde::re::humantime::format_duration(Duration::from_secs(seconds.unsigned_abs()))
        ),
        None if eta.remaining == 0 => println!("finished"),
        None => println!("estimated time left: unknown until jobs complete"),
    }
    Ok(())
}
