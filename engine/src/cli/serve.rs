//! `cascade serve`: the tracker over HTTP, with the idle sweep.

use std::time::Duration;

use actix_web::rt::System;
use cascade_tracker::JobStore;
use clap::Args;

use super::{open_store, Cli, PipelineArgs, ServerArgs};

/// Options of `cascade serve`.
#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    #[command(flatten)]
    server: ServerArgs,
    #[command(flatten)]
    pipeline: PipelineArgs,
}

pub(crate) fn run(cli: &Cli, args: &ServeArgs) -> anyhow::Result<()> {
    let config = cli.load_config(&args.pipeline, &args.server)?;
    let store = open_store(&config)?;
    let sweep_interval = config.sweep_interval;
    System::new().block_on(async move {
        let (server, addrs) = cascade_web::build_server(store.clone(), &config.server_config())?;
        for addr in &addrs {
            // Printed on stdout so scripts (and tests) can find a port chosen with `:0`.
            println!("Cascade tracker listening on http://{addr}");
        }
        tracing::info!(
            project = %config.project,
            database = %config.database_url().describe(),
            stages = ?config.stage_names(),
            "Tracker started."
        );
        actix_web::rt::spawn(sweep_forever(store, sweep_interval));
        server.await?;
        tracing::info!("Tracker stopped.");
        anyhow::Ok(())
    })
}

/// Re-opens expired leases and removes silent workers every `interval`.
pub(crate) async fn sweep_forever(store: JobStore, interval: Duration) {
    let mut ticks = actix_web::rt::time::interval(interval);
    loop {
        ticks.tick().await;
        let store = store.clone();
        match actix_web::web::block(move || store.sweep()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "Sweep failed; will retry."),
            Err(e) => tracing::warn!(error = %e, "Sweep could not run; will retry."),
        }
    }
}
