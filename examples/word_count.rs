//! A pipeline author's own stage kind, run by the unchanged `cascade` command line.
//!
//! Stage kind `word-count`: each job is the path of a text file; the stage counts its lines and
//! words, writes a JSON summary with the most frequent words next to the other artifacts, and
//! returns the counts as the job's output (JSON, so a next stage could read it as a struct).
//!
//! ```text
//! cargo run -p cascade-engine --example word_count -- run --config examples/word-count.toml \
//!     --brace 'README.md' --until-done
//! ```

use std::collections::HashMap;
use std::path::PathBuf;

use cascade_stages::stage::{Stage, StageContext, StageError, StageRegistry};
use serde::{Deserialize, Serialize};

/// Settings of `word-count` (`[stages.X.settings]`).
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
struct WordCount {
    /// How many of the most frequent words the summary lists.
    top: usize,
}

impl Default for WordCount {
    fn default() -> Self {
        Self { top: 10 }
    }
}

/// The job output.
#[derive(Debug, Serialize)]
struct Counts {
    file: PathBuf,
    lines: usize,
    words: usize,
    summary: PathBuf,
}

impl Stage for WordCount {
    type Input = PathBuf;
    type Output = Counts;

    fn process(&mut self, file: PathBuf, ctx: &StageContext) -> Result<Counts, StageError> {
        // A path, or an `s3://` URL copied to a temporary file.
        let local = ctx.artifacts().fetch(&file)?;
        let text = match std::fs::read(local.path()) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(StageError::invalid(format!("{}: {e}", file.display()))),
            Err(e) => return Err(StageError::transient(format!("{}: {e}", file.display()))),
        };
        let mut frequency: HashMap<String, usize> = HashMap::new();
        let mut words = 0;
        for word in text.split_whitespace() {
            let word: String = word.chars().filter(|c| c.is_alphanumeric()).flat_map(char::to_lowercase).collect();
            if word.is_empty() {
                ctx.skip("punctuation-only token", 1);
                continue;
            }
            words += 1;
            *frequency.entry(word).or_default() += 1;
        }
        let mut top: Vec<(String, usize)> = frequency.into_iter().collect();
        top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        top.truncate(self.top);
        // Written in the job's output folder, then published (uploaded when the artifacts are
        // in S3); the reference is what the next stage or the result names.
        let out = ctx.artifacts().output("word-count")?;
        let job = ctx.job().map_or(0, |job| job.number);
        let written = out.path().join(format!("job-{job}.json"));
        let json = serde_json::json!({ "file": file, "words": words, "top": top });
        std::fs::write(&written, json.to_string()).map_err(StageError::transient)?;
        let summary = out.publish(&written)?;
        Ok(Counts { file, lines: text.lines().count(), words, summary })
    }
}

fn main() -> anyhow::Result<()> {
    let mut registry = StageRegistry::builtin();
    registry.register_settings::<WordCount>("word-count");
    cascade_engine::cli::main(&registry)
}
