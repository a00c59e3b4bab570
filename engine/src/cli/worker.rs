//! `cascade worker`: run one stage against a remote tracker over HTTP.

use std::sync::Arc;
use std::time::Duration;

use actix_web::rt::System;
use anyhow::Context;
use cascade_stages::stage::{ArtifactStore, StageRegistry};
use cascade_tracker::StageId;
use clap::Args;
use rayon::ThreadPoolBuilder;

use super::run::shutdown_signal;
use super::{Cli, PipelineArgs, ServerArgs};
use crate::runtime::outcome::RetryPolicy;
use crate::runtime::RemoteWorker;

/// Options of `cascade worker`.
#[derive(Debug, Args)]
pub(crate) struct WorkerArgs {
    /// The tracker's URL, e.g. `http://tracker.example:8080`.
    #[arg(long)]
    tracker: String,
    /// The stage to work on (`a`..`e`).
    #[arg(long)]
    stage: StageId,
    /// Stage kind to run (default: the stage's `kind` in the configuration file).
    #[arg(long)]
    kind: Option<String>,
    /// The kind's settings as JSON (default: the stage's settings in the configuration file).
    #[arg(long, value_name = "JSON")]
    settings: Option<String>,
    /// Parallel workers (each registers separately and holds one job).
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// Nickname on the leaderboard.
    #[arg(long, default_value = "anonymous")]
    nickname: String,
}

pub(crate) fn run(cli: &Cli, args: &WorkerArgs, registry: &StageRegistry) -> anyhow::Result<()> {
    let config = cli.load_config(&PipelineArgs::default(), &ServerArgs::default())?;
    let configured = config.stages.get(args.stage.letter());
    let kind = args
        .kind
        .clone()
        .or_else(|| configured.and_then(|s| s.kind.clone()))
        .with_context(|| format!("no stage kind: give --kind (known kinds: {})", registry.kinds().collect::<Vec<_>>().join(", ")))?;
    let settings = match &args.settings {
        Some(json) => serde_json::from_str(json).context("--settings is not valid JSON")?,
        None => configured.map_or_else(|| serde_json::json!({}), |s| s.settings.clone()),
    };
    let threads = configured.and_then(|s| s.threads).unwrap_or(0);
    let rayon = ThreadPoolBuilder::new().num_threads(threads).build().context("starting the stage's thread pool")?;
    let worker = RemoteWorker {
        tracker: args.tracker.trim_end_matches('/').to_owned(),
        stage: args.stage,
        kind,
        settings,
        nickname: args.nickname.clone(),
        policy: RetryPolicy { max_attempts: config.max_attempts(args.stage), ..RetryPolicy::from(&config.engine) },
        poll_interval: config.engine.poll_interval.max(Duration::from_millis(100)),
        artifacts: ArtifactStore::open(config.engine.artifacts.clone()).context("opening the artifact store")?,
        rayon: Arc::new(rayon),
        registry: registry.clone(),
    };
    worker.validate()?;
    let grace = config.engine.shutdown_grace;
    let crew = Arc::new(worker.crew(args.workers));
    System::new().block_on(async move {
        let mut joined = actix_web::rt::task::spawn_blocking({
            let crew = Arc::clone(&crew);
            move || crew.run()
        });
        let finished = tokio::select! {
            done = &mut joined => done,
            () = shutdown_signal() => {
                tracing::info!(?grace, "Stopping: finishing running jobs.");
                crew.stop();
                match actix_web::rt::time::timeout(grace, &mut joined).await {
                    Ok(done) => done,
                    Err(_) => {
                        tracing::info!("Cancelling running jobs.");
                        crew.cancel();
                        joined.await
                    }
                }
            }
        };
        let run = finished.context("the workers stopped abnormally")?.context("starting worker threads")?;
        tracing::info!(completed = run.completed, "Worker stopped.");
        match run.unavailable {
            Some(reason) => anyhow::bail!("stage '{}' cannot run here: {reason}", args.stage),
            None => anyhow::Ok(()),
        }
    })
}
