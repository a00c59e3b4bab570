//! The standard error of child processes (the daemon, remote workers), read on threads of their
//! own and kept in memory: tests assert on it (no panic anywhere, an expected error message)
//! and show its end when they fail, instead of letting thousands of warnings from a fault test
//! scroll past on the terminal.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::sync::{Arc, Mutex, PoisonError};

/// Lines kept; older ones are dropped (their panics are kept apart).
const MAX_LINES: usize = 200_000;

/// What the reader threads collected.
#[derive(Debug, Default)]
struct Lines {
    /// The latest lines, each prefixed with its process's label.
    recent: VecDeque<String>,
    /// Every line that reports a panic (`… panicked at …`), never dropped.
    panics: Vec<String>,
    /// Lines read in all.
    total: usize,
}

/// The collected standard error of one or more child processes. Cheap to share (`Arc`).
#[derive(Debug, Default)]
pub struct ProcessLog {
    lines: Mutex<Lines>,
}

impl ProcessLog {
    /// An empty log, shared.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Reads `stream` (a child's piped standard error) line by line on a thread of its own
    /// until it closes, prefixing each line with `label`.
    pub fn attach(self: &Arc<Self>, label: &str, stream: impl Read + Send + 'static) {
        let (log, label) = (Arc::clone(self), label.to_owned());
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                log.push(format!("{label}: {line}"));
            }
        });
    }

    fn push(&self, line: String) {
        let mut lines = self.lines.lock().unwrap_or_else(PoisonError::into_inner);
        lines.total += 1;
        if line.contains("panicked at") {
            lines.panics.push(line.clone());
        }
        if lines.recent.len() == MAX_LINES {
            lines.recent.pop_front();
        }
        lines.recent.push_back(line);
    }

    /// Every line that reports a panic.
    pub fn panics(&self) -> Vec<String> {
        self.lines.lock().unwrap_or_else(PoisonError::into_inner).panics.clone()
    }

    /// The kept lines that contain `text`.
    pub fn matching(&self, text: &str) -> Vec<String> {
        let lines = self.lines.lock().unwrap_or_else(PoisonError::into_inner);
        lines.recent.iter().filter(|line| line.contains(text)).cloned().collect()
    }

    /// Lines read in all.
    pub fn total(&self) -> usize {
        self.lines.lock().unwrap_or_else(PoisonError::into_inner).total
    }

    /// The last `n` lines, one per line, for a failure message.
    pub fn tail(&self, n: usize) -> String {
        let lines = self.lines.lock().unwrap_or_else(PoisonError::into_inner);
        let skip = lines.recent.len().saturating_sub(n);
        lines.recent.iter().skip(skip).map(String::as_str).collect::<Vec<_>>().join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_labelled_lines_and_every_panic() {
        let log = ProcessLog::new();
        log.attach("daemon", &b"WARN retrying\nthread 'x' panicked at src/a.rs:1:1\nINFO done\n"[..]);
        crate::wait_until("the reader is done", std::time::Duration::from_secs(5), || log.total() == 3);
        assert_eq!(log.panics(), ["daemon: thread 'x' panicked at src/a.rs:1:1"]);
        assert_eq!(log.matching("retrying"), ["daemon: WARN retrying"]);
        assert_eq!(log.tail(1), "daemon: INFO done");
    }
}
