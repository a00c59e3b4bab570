//! `cascade init`: load jobs; also the job sources `cascade run` accepts.

use std::path::PathBuf;

use anyhow::Context;
use cascade_tracker::{load, JobStore};
use clap::Args;

use super::{open_store, Cli, PipelineArgs, ServerArgs};

/// A job list (at most one source).
#[derive(Debug, Args, Default)]
#[command(group = clap::ArgGroup::new("source").multiple(false))]
pub(crate) struct JobList {
    /// A JSON file holding a list; strings are loaded as they are, lists and objects as
    /// `<!json!>`-prefixed JSON.
    #[arg(long, group = "source", value_name = "FILE")]
    json: Option<PathBuf>,
    /// A text file with one job per line.
    #[arg(long, group = "source", value_name = "FILE")]
    txt: Option<PathBuf>,
    /// A brace pattern, e.g. `'crawl/segment_{000..099}.warc.wat.gz'`.
    #[arg(long, group = "source", value_name = "PATTERN")]
    brace: Option<String>,
}

impl JobList {
    /// Whether a source was given.
    pub(crate) fn is_given(&self) -> bool {
        self.json.is_some() || self.txt.is_some() || self.brace.is_some()
    }

    /// Reads the jobs; refuses an empty list.
    pub(crate) fn read(&self) -> anyhow::Result<Vec<String>> {
        let read = |path: &PathBuf| std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()));
        let jobs = if let Some(pattern) = &self.brace {
            load::jobs_from_brace(pattern)?
        } else if let Some(path) = &self.json {
            load::jobs_from_json(&read(path)?)?
        } else if let Some(path) = &self.txt {
            load::jobs_from_lines(&read(path)?)
        } else {
            anyhow::bail!("give the jobs with one of --json, --txt or --brace");
        };
        if jobs.is_empty() {
            anyhow::bail!("the job list is empty; nothing was changed");
        }
        Ok(jobs)
    }
}

/// Where jobs come from, and whether they replace or join the project's jobs.
#[derive(Debug, Args, Default)]
pub(crate) struct JobSource {
    #[command(flatten)]
    list: JobList,
    /// Delete every existing job, worker and leaderboard entry first.
    #[arg(long, conflicts_with = "append")]
    reset: bool,
    /// Add the jobs to a project that may be running, after its last job; inputs that are
    /// already jobs are skipped, so appending the same list twice adds nothing.
    #[arg(long)]
    append: bool,
}

impl JobSource {
    /// Whether a source was given.
    pub(crate) fn is_given(&self) -> bool {
        self.list.is_given()
    }

    /// Reads the jobs and loads (or appends) them into `store`, the `database` described; says
    /// what it did.
    pub(crate) fn load_into(&self, store: &JobStore, database: &str) -> anyhow::Result<String> {
        let jobs = self.list.read()?;
        if self.append {
            let appended = store.add_jobs(&jobs, &super::admin::cli_actor())?;
            Ok(format!("Added {} jobs to {database} ({} already there).", appended.added, appended.skipped))
        } else {
            Ok(format!("Loaded {} jobs into {database}.", store.load_jobs(&jobs, self.reset)?))
        }
    }
}

/// Options of `cascade init`.
#[derive(Debug, Args)]
pub(crate) struct InitArgs {
    #[command(flatten)]
    source: JobSource,
}

pub(crate) fn run(cli: &Cli, args: &InitArgs) -> anyhow::Result<()> {
    let config = cli.load_config(&PipelineArgs::default(), &ServerArgs::default())?;
    if !args.source.is_given() {
        anyhow::bail!("give the jobs with one of --json, --txt or --brace");
    }
    let store = open_store(&config)?;
    println!("{}", args.source.load_into(&store, &config.database_url().describe())?);
    Ok(())
}
