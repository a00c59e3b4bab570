//! `cascade jobs …` and `cascade stage …`: operator actions on a running project, either
//! directly on the database or through a tracker's admin API (`--tracker URL`).

use anyhow::Context;
use cascade_tracker::{AdminAction, JobSelection, JobStore, StageId};
use cascade_web::AdminClient;
use clap::{Args, Subcommand};

use super::init::JobList;
use super::{open_store, Cli, PipelineArgs, ServerArgs};

/// Where an action goes: the tracker's admin API, or the database (the default).
#[derive(Debug, Args)]
pub(crate) struct Target {
    /// Act through the admin API of the tracker at this URL instead of on the database.
    #[arg(long, value_name = "URL", global = true)]
    tracker: Option<String>,
    /// The tracker's admin token (with `--tracker`).
    #[arg(long, env = "CASCADE_ADMIN_TOKEN", hide_env_values = true, global = true)]
    admin_token: Option<String>,
}

/// Which jobs an action applies to.
#[derive(Debug, Args)]
pub(crate) struct Selection {
    /// Only jobs at this stage (a letter).
    #[arg(long)]
    stage: Option<StageId>,
    /// Only these job numbers.
    numbers: Vec<i64>,
}

impl Selection {
    fn to_selection(&self) -> JobSelection {
        JobSelection { stage: self.stage, numbers: self.numbers.clone() }
    }
}

/// `cascade jobs …`.
#[derive(Debug, Args)]
pub(crate) struct JobsArgs {
    #[command(flatten)]
    target: Target,
    #[command(subcommand)]
    action: JobsAction,
}

#[derive(Debug, Subcommand)]
enum JobsAction {
    /// Re-open failed (or cancelled) jobs at the stage they stopped at, attempts cleared: all of
    /// them, one stage's (`--stage`), or the numbers given.
    Requeue(Selection),
    /// Cancel unfinished jobs of a stage (`--stage`) or by number: they fail as cancelled, and
    /// a worker holding one loses its lease.
    Cancel(Selection),
    /// Add jobs after the last one; inputs that are already jobs are skipped.
    Add(JobList),
    /// Show the operator actions, newest first.
    Log {
        /// How many.
        #[arg(long, default_value_t = 20)]
        limit: i64,
    },
}

/// `cascade stage …`.
#[derive(Debug, Args)]
pub(crate) struct StageArgs {
    #[command(flatten)]
    target: Target,
    #[command(subcommand)]
    action: StageAction,
}

#[derive(Debug, Subcommand)]
enum StageAction {
    /// Hand out no more leases at a stage (leases already held run to their end).
    Pause {
        /// The stage (a letter).
        stage: StageId,
    },
    /// Hand out leases at a paused stage again.
    Resume {
        /// The stage (a letter).
        stage: StageId,
    },
}

/// Who the action log names for an action from this command line: `cli:USER`.
pub(crate) fn cli_actor() -> String {
    let user = std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_else(|_| "unknown".to_owned());
    format!("cli:{user}")
}

/// The database or the tracker an action goes to.
enum Operator {
    Database(JobStore),
    Tracker(AdminClient),
}

impl Operator {
    fn open(cli: &Cli, target: &Target) -> anyhow::Result<Self> {
        match &target.tracker {
            Some(url) => {
                let token = target
                    .admin_token
                    .as_deref()
                    .context("--tracker needs the admin token: --admin-token or CASCADE_ADMIN_TOKEN")?;
                Ok(Self::Tracker(AdminClient::new(url, token)))
            }
            None => {
                let config = cli.load_config(&PipelineArgs::default(), &ServerArgs::default())?;
                Ok(Self::Database(open_store(&config)?))
            }
        }
    }

    fn requeue(&self, selection: &JobSelection) -> anyhow::Result<usize> {
        Ok(match self {
            Self::Database(store) => store.requeue_failed(selection, &cli_actor())?,
            Self::Tracker(client) => client.requeue(selection)?,
        })
    }

    fn cancel(&self, selection: &JobSelection) -> anyhow::Result<usize> {
        Ok(match self {
            Self::Database(store) => store.cancel_jobs(selection, &cli_actor())?,
            Self::Tracker(client) => client.cancel(selection)?,
        })
    }

    fn add(&self, jobs: &[String]) -> anyhow::Result<(usize, usize)> {
        Ok(match self {
            Self::Database(store) => {
                let appended = store.add_jobs(jobs, &cli_actor())?;
                (appended.added, appended.skipped)
            }
            Self::Tracker(client) => {
                let added = client.add_jobs(jobs)?;
                (added.added, added.skipped)
            }
        })
    }

    fn log(&self, limit: i64) -> anyhow::Result<Vec<AdminAction>> {
        Ok(match self {
            Self::Database(store) => store.admin_actions(limit)?,
            Self::Tracker(client) => client.actions(limit)?,
        })
    }

    fn pause(&self, stage: StageId) -> anyhow::Result<bool> {
        Ok(match self {
            Self::Database(store) => store.pause_stage(stage, &cli_actor())?,
            Self::Tracker(client) => client.pause(stage)?,
        })
    }

    fn resume(&self, stage: StageId) -> anyhow::Result<bool> {
        Ok(match self {
            Self::Database(store) => store.resume_stage(stage, &cli_actor())?,
            Self::Tracker(client) => client.resume(stage)?,
        })
    }
}

/// Runs `cascade jobs …`.
pub(crate) fn run_jobs(cli: &Cli, args: &JobsArgs) -> anyhow::Result<()> {
    let operator = Operator::open(cli, &args.target)?;
    match &args.action {
        JobsAction::Requeue(selection) => {
            let jobs = operator.requeue(&selection.to_selection())?;
            println!("Requeued {jobs} failed jobs.");
        }
        JobsAction::Cancel(selection) => {
            let jobs = operator.cancel(&selection.to_selection())?;
            println!("Cancelled {jobs} jobs.");
        }
        JobsAction::Add(list) => {
            let (added, skipped) = operator.add(&list.read()?)?;
            println!("Added {added} jobs ({skipped} already there).");
        }
        JobsAction::Log { limit } => {
            for action in operator.log(*limit)? {
                let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(action.at.unsigned_abs());
                let at = humantime_serde::re::humantime::format_rfc3339_seconds(at);
                println!("{at}  {:<8} {:<24} {}", action.action, action.actor, action.detail);
            }
        }
    }
    Ok(())
}

/// Runs `cascade stage …`.
pub(crate) fn run_stage(cli: &Cli, args: &StageArgs) -> anyhow::Result<()> {
    let operator = Operator::open(cli, &args.target)?;
    match args.action {
        StageAction::Pause { stage } => {
            let changed = operator.pause(stage)?;
            println!("Stage {stage} {}.", if changed { "paused" } else { "was already paused" });
        }
        StageAction::Resume { stage } => {
            let changed = operator.resume(stage)?;
            println!("Stage {stage} {}.", if changed { "resumed" } else { "was not paused" });
        }
    }
    Ok(())
}
