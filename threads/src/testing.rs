//! The scheduling class of a process's threads, read from Linux's `/proc`, for tests that
//! check which threads leave the writer its core.

use std::path::Path;

/// A thread's name and scheduling class, from Linux's `/proc`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadScheduling {
    /// The thread's name as the kernel keeps it (at most 15 bytes).
    pub name: String,
    /// The scheduling policy: 0 is `SCHED_OTHER`, 3 is `SCHED_BATCH`.
    pub policy: u32,
    /// The niceness.
    pub nice: i32,
}

/// The name and scheduling class of the thread whose `/proc` directory is `task` (for example
/// `/proc/thread-self`); `None` when it has ended.
///
/// # Panics
/// When the kernel's `stat` line is not in its documented format.
pub fn thread_scheduling(task: &Path) -> Option<ThreadScheduling> {
    let name = std::fs::read_to_string(task.join("comm")).ok()?;
    let stat = std::fs::read_to_string(task.join("stat")).ok()?;
    // The fields after the parenthesised name start at field 3: niceness is field 19, the
    // policy field 41 (proc(5)).
    let fields: Vec<&str> = stat[stat.rfind(')').expect("stat has a name") + 2..].split(' ').collect();
    Some(ThreadScheduling {
        name: name.trim_end().to_owned(),
        policy: fields[41 - 3].parse().expect("a policy number"),
        nice: fields[19 - 3].parse().expect("a niceness"),
    })
}

/// Every live thread of process `pid` with its scheduling class.
///
/// # Panics
/// When the process's `/proc` directory cannot be read.
pub fn threads_scheduling(pid: u32) -> Vec<ThreadScheduling> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("the process's threads")
        .filter_map(|task| thread_scheduling(&task.expect("a task entry").path()))
        .collect()
}
