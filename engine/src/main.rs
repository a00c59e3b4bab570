//! `cascade`: load jobs, run the tracker or the whole pipeline, work remotely, and watch.

use cascade_stages::stage::StageRegistry;

fn main() -> anyhow::Result<()> {
    cascade_engine::cli::main(&StageRegistry::builtin())
}
