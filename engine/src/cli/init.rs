//! `cascade init`: load jobs.

use std::path::PathBuf;

use anyhow::Context;
use cascade_tracker::load;
use clap::Args;

use super::{open_store, Cli, PipelineArgs, ServerArgs};

/// Where the jobs come from (exactly one).
#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("source").required(true).multiple(false))]
pub(crate) struct InitArgs {
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
    /// Delete every existing job, worker and leaderboard entry first.
    #[arg(long)]
    reset: bool,
}

pub(crate) fn run(cli: &Cli, args: &InitArgs) -> anyhow::Result<()> {
    let config = cli.load_config(&PipelineArgs::default(), &ServerArgs::default())?;
    let jobs = if let Some(pattern) = &args.brace {
        load::jobs_from_brace(pattern)?
    } else if let Some(path) = &args.json {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        load::jobs_from_json(&text)?
    } else if let Some(path) = &args.txt {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        load::jobs_from_lines(&text)
    } else {
        unreachable!("clap requires one source");
    };
    if jobs.is_empty() {
        anyhow::bail!("the job list is empty; nothing was changed");
    }
    let store = open_store(&config)?;
    let loaded = store.load_jobs(&jobs, args.reset)?;
    println!("Loaded {loaded} jobs into {}.", config.database_url().describe());
    Ok(())
}
