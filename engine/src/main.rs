//! `cascade`: load jobs, run the tracker or the whole pipeline, work remotely, and watch.

use cascade_stages::stage::StageRegistry;

/// mimalloc instead of the system allocator: every request allocates and frees dozens of small
/// buffers (HTTP parsing, JSON, statement bindings) on several threads, where glibc's allocator
/// took a fifth of the HTTP threads' time. Built without its transparent-huge-page advice
/// (`no_thp`): with the kernel's THP in `madvise` mode, every fresh 2 MiB page of its heap was
/// zeroed (and compacted for) on first touch: up to a quarter of the WAT extraction's CPU time.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    cascade_engine::cli::main(&StageRegistry::builtin())
}
