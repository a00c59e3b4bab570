//! `cascade run`: the daemon — tracker, HTTP API and the local stage pools in one process.

use std::collections::BTreeMap;
use std::time::Duration;

use actix::Addr;
use actix_web::rt::System;
use anyhow::Context;
use cascade_stages::stage::{ArtifactLocation, StageRegistry};
use cascade_tracker::{JobStore, StageId};
use clap::Args;

use super::init::JobSource;
use super::progress::PipelineProgress;
use super::serve::sweep_forever;
use super::{open_store, summary, Cli, PipelineArgs, ServerArgs};
use crate::runtime::{Drain, GetStatus, StagePlan, Supervisor};

/// How often the progress view and the `--until-done` check look at the counts.
const WATCH_EVERY: Duration = Duration::from_millis(500);

/// Options of `cascade run`.
#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    #[command(flatten)]
    server: ServerArgs,
    #[command(flatten)]
    pipeline: PipelineArgs,
    /// Load these jobs first.
    #[command(flatten)]
    jobs: JobSource,
    /// Stop once no job is open or leased at any stage (a batch run).
    #[arg(long)]
    until_done: bool,
    /// No progress bars (log lines instead).
    #[arg(long)]
    no_progress: bool,
}

pub(crate) fn run(cli: &Cli, args: &RunArgs, registry: &StageRegistry) -> anyhow::Result<()> {
    let config = cli.load_config(&args.pipeline, &args.server)?;
    let store = open_store(&config)?;
    if args.jobs.is_given() {
        let loaded = args.jobs.load_into(&store, &config.database_url().describe())?;
        tracing::info!("{loaded}");
    }
    let plans = StagePlan::from_config(&config);
    if plans.is_empty() {
        tracing::warn!("No stage has a `kind`: no local workers; remote workers do all the work.");
    }
    if let (false, ArtifactLocation::Local(root)) = (plans.is_empty(), &config.engine.artifacts) {
        std::fs::create_dir_all(root).with_context(|| format!("creating the artifacts directory {}", root.display()))?;
    }
    let registry = registry.clone();
    System::new().block_on(async move {
        let mut server_config = config.server_config();
        server_config.handle_signals = false;
        let (server, addrs) = cascade_web::build_server(store.clone(), &server_config)?;
        let server_handle = server.handle();
        let server_task = actix_web::rt::spawn(server);
        for addr in &addrs {
            println!("Cascade tracker listening on http://{addr}");
        }
        let supervisor = Supervisor::start(&store, &plans, &registry, &config.engine, &server_config.pools)?;
        tracing::info!(
            project = %config.project,
            database = %config.database_url().describe(),
            local_stages = ?plans.iter().map(|p| format!("{}={}×{}", p.stage, p.kind, p.workers)).collect::<Vec<_>>(),
            "Pipeline started."
        );
        actix_web::rt::spawn(sweep_forever(store.clone(), config.sweep_interval));
        let reason = wait_for_stop(store.clone(), &supervisor, args.until_done, !args.no_progress).await;
        tracing::info!(reason, grace = ?config.engine.shutdown_grace, "Stopping: draining the stage pools.");
        let unavailable = unavailable_stages(&supervisor).await;
        supervisor.send(Drain { grace: config.engine.shutdown_grace }).await.context("draining the pools")?;
        report(&supervisor).await;
        if args.until_done {
            print_summary(&store, &plans, &config.engine.artifacts, &unavailable).await;
        }
        server_handle.stop(true).await;
        let _ = server_task.await;
        tracing::info!("Pipeline stopped.");
        anyhow::Ok(())
    })
}

/// Waits for SIGINT/SIGTERM or, with `until_done`, for the pipeline to run dry, while keeping
/// the progress view current. Returns why it stopped.
async fn wait_for_stop(store: JobStore, supervisor: &Addr<Supervisor>, until_done: bool, bars: bool) -> &'static str {
    let watcher = watch(store, supervisor, until_done, bars);
    tokio::select! {
        () = shutdown_signal() => "signal",
        () = watcher => "all jobs finished",
    }
}

/// Resolves on SIGINT or SIGTERM.
pub(crate) async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use actix_web::rt::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = actix_web::rt::signal::ctrl_c() => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(_) => {
                let _ = actix_web::rt::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = actix_web::rt::signal::ctrl_c().await;
    }
}

/// Updates the progress view; with `until_done`, resolves when no job is open or leased, save
/// open jobs at stages that cannot start here (they wait for a later run or a remote worker).
async fn watch(store: JobStore, supervisor: &Addr<Supervisor>, until_done: bool, bars: bool) {
    let mut progress = PipelineProgress::new(bars);
    let mut ticks = actix_web::rt::time::interval(WATCH_EVERY);
    loop {
        ticks.tick().await;
        let reader = store.clone();
        let counts = match actix_web::web::block(move || reader.stage_counts()).await {
            Ok(Ok(counts)) => counts,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "Could not read the counts.");
                continue;
            }
            Err(_) => continue,
        };
        progress.update(&counts);
        let blocked = if until_done { unavailable_stages(supervisor).await } else { BTreeMap::new() };
        let unfinished: i64 =
            counts.iter().map(|c| c.leased + if blocked.contains_key(&c.stage) { 0 } else { c.open }).sum();
        if until_done && unfinished == 0 {
            progress.finish();
            return;
        }
    }
}

/// The stages whose pools cannot run, with why.
async fn unavailable_stages(supervisor: &Addr<Supervisor>) -> BTreeMap<StageId, String> {
    let pools = supervisor.send(GetStatus).await.unwrap_or_default();
    pools.into_iter().filter_map(|pool| Some((pool.stage, pool.unavailable?))).collect()
}

/// Prints what each local stage made and where its files are, and the stages that could not
/// start with the jobs waiting there.
async fn print_summary(
    store: &JobStore,
    plans: &[StagePlan],
    artifacts: &ArtifactLocation,
    unavailable: &BTreeMap<StageId, String>,
) {
    let (reader, owned_plans) = (store.clone(), plans.to_vec());
    let totals = match actix_web::web::block(move || summary::stage_totals(&reader, &owned_plans)).await {
        Ok(Ok(totals)) => totals,
        Ok(Err(e)) => return tracing::warn!(error = %e, "Could not read the jobs for the summary."),
        Err(_) => return,
    };
    let reader = store.clone();
    let counts = actix_web::web::block(move || reader.stage_counts()).await.ok().and_then(Result::ok).unwrap_or_default();
    println!("Summary:");
    for plan in plans {
        let stage_totals = totals.get(&plan.stage).map(|t| t.describe(&plan.kind)).unwrap_or_default();
        println!(
            "  {} {:<10} {stage_totals}\n    files: {}",
            plan.stage,
            plan.kind,
            summary::output_folder(plan, artifacts)
        );
        if let Some(reason) = unavailable.get(&plan.stage) {
            let waiting = counts.iter().find(|c| c.stage == plan.stage).map_or(0, |c| c.open);
            println!("    could not start: {reason}\n    {waiting} jobs wait at stage {}; fix this and run again to finish them.", plan.stage);
        }
    }
}

/// Logs what each pool did.
async fn report(supervisor: &Addr<Supervisor>) {
    for pool in supervisor.send(GetStatus).await.unwrap_or_default() {
        tracing::info!(
            stage = %pool.stage,
            kind = %pool.kind,
            completed = pool.completed,
            flagged = pool.flagged,
            retried = pool.retried,
            failed = pool.failed,
            panics = pool.panics,
            "Stage pool summary."
        );
    }
}
