//! `cascade`: load jobs, run the tracker or the whole pipeline, work remotely, and watch.

use cascade_stages::stage::StageRegistry;

/// mimalloc instead of the system allocator: every request allocates and frees dozens of small
/// buffers (HTTP parsing, JSON, statement bindings) on several threads, where glibc's allocator
/// took a fifth of the HTTP threads' time.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    cascade_engine::cli::main(&StageRegistry::builtin())
}
