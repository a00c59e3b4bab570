//! The `cascade` command: parsing and the subcommands.
//!
//! A pipeline author's own binary runs the same command with extra stage kinds:
//!
//! ```no_run
//! use cascade_stages::stage::StageRegistry;
//! # #[derive(serde::Deserialize)] struct MyStage;
//! # impl cascade_stages::stage::Stage for MyStage {
//! #     type Input = String; type Output = String;
//! #     fn process(&mut self, i: String, _: &cascade_stages::stage::StageContext) -> Result<String, cascade_stages::stage::StageError> { Ok(i) }
//! # }
//! fn main() -> anyhow::Result<()> {
//!     let mut registry = StageRegistry::builtin();
//!     registry.register_settings::<MyStage>("my-stage");
//!     cascade_engine::cli::main(&registry)
//! }
//! ```

mod admin;
#[cfg(feature = "clip")]
mod clip;
mod download;
mod init;
mod progress;
mod run;
mod serve;
mod status;
mod summary;
mod wat;
mod worker;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use cascade_stages::stage::{ArtifactLocation, ArtifactStore, OutputDir, StageRegistry};

use crate::config::{Config, Overrides};
use cascade_tracker::{DatabaseUrl, JobStore, SystemClock};
use clap::{Args, Parser, Subcommand};

/// Cascade: multi-stage distributed data pipelines with a durable job tracker.
#[derive(Debug, Parser)]
#[command(name = "cascade", version, about)]
pub struct Cli {
    /// Configuration file (used when it exists; an explicitly given file must exist).
    #[arg(long, short, global = true, env = "CASCADE_CONFIG")]
    config: Option<PathBuf>,
    /// Database: a SQLite file path (default ./cascade.db) or a postgres:// URL.
    #[arg(long, global = true)]
    database: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Load jobs into the database (stage a input).
    Init(init::InitArgs),
    /// Run the tracker: the worker API, the JSON API and the idle sweep.
    Serve(serve::ServeArgs),
    /// Run the pipeline: the tracker plus local worker pools for every stage with a `kind`.
    Run(run::RunArgs),
    /// Work on one stage of a remote tracker over HTTP.
    Worker(worker::WorkerArgs),
    /// Show job counts per stage and the expected time to finish.
    Status,
    /// Operator actions on jobs: requeue, cancel, add, and the action log.
    Jobs(admin::JobsArgs),
    /// Pause or resume a stage.
    Stage(admin::StageArgs),
    /// Extract image URL / alt-text pairs from Common Crawl WAT files into parquet shards.
    Wat(wat::WatArgs),
    /// Download the images of pair shards into webdataset shards (img2dataset's layout).
    Download(download::DownloadArgs),
    /// Keep the image/caption pairs of webdataset shards whose CLIP similarity passes a threshold.
    #[cfg(feature = "clip")]
    Clip(clip::ClipArgs),
}

/// Pipeline settings that several subcommands accept.
#[derive(Debug, Args, Default)]
pub(crate) struct PipelineArgs {
    /// Project name shown to workers.
    #[arg(long)]
    project: Option<String>,
    /// Enable a stage with a display name, e.g. `--stage a=CPU --stage b=GPU` (replaces the
    /// configured stages).
    #[arg(long = "stage", value_name = "LETTER=NAME", value_parser = parse_stage_arg)]
    stages: Vec<(String, String)>,
    /// Remove a silent worker and re-open its job after this long (e.g. `2h`, `90s`).
    #[arg(long, value_parser = humantime_duration)]
    idle_timeout: Option<Duration>,
    /// Invalid-input reports after which a job goes back one stage.
    #[arg(long)]
    flag_threshold: Option<u32>,
}

/// Operational settings of the HTTP tracker.
#[derive(Debug, Args, Default)]
pub(crate) struct ServerArgs {
    /// Address to listen on (port 0 picks a free port; the address is printed).
    #[arg(long)]
    bind: Option<std::net::SocketAddr>,
    /// How often expired leases and silent workers are swept (e.g. `1m`).
    #[arg(long, value_parser = humantime_duration)]
    sweep_interval: Option<Duration>,
}

fn parse_stage_arg(raw: &str) -> Result<(String, String), String> {
    let (letter, name) = raw.split_once('=').ok_or_else(|| format!("expected LETTER=NAME, got {raw:?}"))?;
    Ok((letter.trim().to_owned(), name.trim().to_owned()))
}

/// The `--out` of `cascade wat`, `download` and `clip`: the store that reads their inputs
/// (paths or `s3://` URLs) and the directory their outputs are published through.
fn open_out(location: &ArtifactLocation) -> anyhow::Result<(ArtifactStore, OutputDir)> {
    let store = ArtifactStore::open(location.clone()).with_context(|| format!("opening {location}"))?;
    let out = OutputDir::at(location).with_context(|| format!("opening {location}"))?;
    Ok((store, out))
}

/// The line `cascade wat`, `download` and `clip` print for an input that failed: `INPUT: ERROR`
/// with its causes, or the error alone when it already begins with the input.
fn failure_line(input: &Path, error: &anyhow::Error) -> String {
    let (name, message) = (input.display().to_string(), format!("{error:#}"));
    if message.starts_with(&name) { message } else { format!("{name}: {message}") }
}

fn humantime_duration(raw: &str) -> Result<Duration, String> {
    humantime_serde::re::humantime::parse_duration(raw).map_err(|e| e.to_string())
}

impl Cli {
    fn load_config(&self, pipeline: &PipelineArgs, server: &ServerArgs) -> anyhow::Result<Config> {
        let (path, required) = match &self.config {
            Some(path) => (path.clone(), true),
            None => (PathBuf::from("cascade.toml"), false),
        };
        let overrides = Overrides {
            database: self.database.clone(),
            bind: server.bind,
            sweep_interval: server.sweep_interval,
            project: pipeline.project.clone(),
            idle_timeout: pipeline.idle_timeout,
            flag_threshold: pipeline.flag_threshold,
            stages: pipeline.stages.clone(),
        };
        Ok(Config::load(&path, required, &overrides)?)
    }
}

/// Opens the store the configuration points at.
fn open_store(config: &Config) -> anyhow::Result<JobStore> {
    let url = config.database_url();
    if let DatabaseUrl::Sqlite(path) = &url {
        if let Some(parent) = std::path::Path::new(path).parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
    }
    JobStore::open_with(&url, config.store_config(), Arc::new(SystemClock), config.pool_settings())
        .with_context(|| format!("opening the database {}", url.describe()))
}

/// Parses the command line, sets up logging and runs the subcommand with the stage kinds of
/// `registry` (use [`StageRegistry::builtin`] plus your own).
///
/// # Errors
/// Whatever the subcommand reports; the binary prints it and exits non-zero.
pub fn main(registry: &StageRegistry) -> anyhow::Result<()> {
    use clap::Parser;
    let cli = Cli::parse();
    init_logging();
    run(cli, registry)
}

/// Sends `tracing` output to standard error, filtered by `CASCADE_LOG` (default `info`).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CASCADE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}

/// Runs the chosen subcommand.
fn run(cli: Cli, registry: &StageRegistry) -> anyhow::Result<()> {
    match &cli.command {
        Command::Init(args) => init::run(&cli, args),
        Command::Serve(args) => serve::run(&cli, args),
        Command::Run(args) => run::run(&cli, args, registry),
        Command::Worker(args) => worker::run(&cli, args, registry),
        Command::Status => status::run(&cli),
        Command::Jobs(args) => admin::run_jobs(&cli, args),
        Command::Stage(args) => admin::run_stage(&cli, args),
        Command::Wat(args) => wat::run(args),
        Command::Download(args) => download::run(args),
        #[cfg(feature = "clip")]
        Command::Clip(args) => clip::run(args),
    }
}
