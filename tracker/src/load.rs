//! Turning job lists into job data strings, as `cascade init` loads them.
//!
//! Job data are opaque strings. Lists and objects are stored with the `<!json!>` prefix that the
//! distcompute client understands (it strips the prefix and decodes the rest), so a worker
//! receives the same structure that was loaded.

use crate::error::TrackerError;

/// The prefix marking job data that hold JSON (a list or an object).
pub const JSON_PREFIX: &str = "<!json!>";

/// Job data from a JSON document holding a list of strings, lists or objects (object keys keep
/// their order).
///
/// # Errors
/// [`TrackerError::InvalidJobs`] when the document is not valid JSON, not a list, or holds an
/// item that is neither a string, a list nor an object (its position is named).
pub fn jobs_from_json(text: &str) -> Result<Vec<String>, TrackerError> {
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| TrackerError::InvalidJobs(format!("not valid JSON: {e}")))?;
    let serde_json::Value::Array(items) = value else {
        return Err(TrackerError::InvalidJobs("the JSON file must contain a list".to_owned()));
    };
    items
        .into_iter()
        .enumerate()
        .map(|(index, item)| match item {
            serde_json::Value::String(s) => Ok(s),
            serde_json::Value::Array(_) | serde_json::Value::Object(_) => {
                Ok(format!("{JSON_PREFIX}{item}"))
            }
            other => Err(TrackerError::InvalidJobs(format!(
                "item {index} is {other}; each job must be a string, a list or an object"
            ))),
        })
        .collect()
}

/// Job data from text, one job per non-blank line, line endings stripped.
pub fn jobs_from_lines(text: &str) -> Vec<String> {
    text.lines()
        .map(|line| line.strip_suffix('\r').unwrap_or(line))
        .filter(|line| !line.trim().is_empty())
        .map(str::to_owned)
        .collect()
}

/// Job data from a bash-style brace pattern, e.g. `shard_{0000..0099}.tar` or `{a,b}/{1..3}`;
/// zero padding of numeric ranges is kept.
///
/// # Errors
/// [`TrackerError::InvalidJobs`] when the pattern does not parse.
pub fn jobs_from_brace(pattern: &str) -> Result<Vec<String>, TrackerError> {
    if !pattern.contains('{') {
        return Ok(vec![pattern.to_owned()]);
    }
    bracoxide::bracoxidize(pattern)
        .map_err(|e| TrackerError::InvalidJobs(format!("invalid brace pattern {pattern:?}: {e:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_items_keep_their_shape() {
        let jobs = jobs_from_json(r#"["a.wat.gz", {"url": "x", "n": 1}, [1, 2]]"#).unwrap();
        assert_eq!(jobs[0], "a.wat.gz");
        assert_eq!(jobs[1], r#"<!json!>{"url":"x","n":1}"#);
        assert_eq!(jobs[2], "<!json!>[1,2]");
    }

    #[test]
    fn json_rejects_non_lists_and_scalars() {
        assert!(jobs_from_json(r#"{"a": 1}"#).is_err());
        assert!(jobs_from_json("[1]").unwrap_err().to_string().contains("item 0"));
        assert!(jobs_from_json("[\"a\",").is_err());
    }

    #[test]
    fn lines_are_stripped_and_blank_lines_skipped() {
        assert_eq!(jobs_from_lines("a\r\nb\n\n c \n"), vec!["a", "b", " c "]);
    }

    #[test]
    fn brace_expansion_keeps_zero_padding() {
        let jobs = jobs_from_brace("s3://bucket/file_{008..011}.tar").unwrap();
        assert_eq!(
            jobs,
            vec![
                "s3://bucket/file_008.tar",
                "s3://bucket/file_009.tar",
                "s3://bucket/file_010.tar",
                "s3://bucket/file_011.tar"
            ]
        );
        assert_eq!(jobs_from_brace("{a,b}{1..2}").unwrap(), vec!["a1", "a2", "b1", "b2"]);
        assert_eq!(jobs_from_brace("plain").unwrap(), vec!["plain"]);
    }
}
