//! `cascade`: load jobs, run the tracker, and watch a pipeline.

mod cli;

use clap::Parser;

fn main() -> anyhow::Result<()> {
    let args = cli::Cli::parse();
    cli::init_logging();
    cli::run(args)
}
