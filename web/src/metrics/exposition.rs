//! Writing the Prometheus text exposition format (version 0.0.4).

use std::fmt::{Display, Write};

/// The content type of the text format.
pub(crate) const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The type of a metric family.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kind {
    /// Only ever goes up (and back to zero on a reset).
    Counter,
    /// Goes up and down.
    Gauge,
    /// Cumulative buckets, a sum and a count.
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Counter => "counter",
            Self::Gauge => "gauge",
            Self::Histogram => "histogram",
        }
    }
}

/// An exposition being written: families, each a `# HELP` and `# TYPE` line followed by its
/// samples.
#[derive(Debug, Default)]
pub(crate) struct Exposition {
    text: String,
}

impl Exposition {
    /// Starts the family `name`.
    pub(crate) fn family(&mut self, name: &str, kind: Kind, help: &str) {
        let help = help.replace('\\', r"\\").replace('\n', r"\n");
        // unwrap: writing to a String cannot fail.
        writeln!(self.text, "# HELP {name} {help}\n# TYPE {name} {}", kind.as_str()).unwrap();
    }

    /// Adds one sample of the current family (`name` may carry a `_bucket`/`_sum`/`_count`
    /// suffix for histograms).
    pub(crate) fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (label, value)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                self.text.push_str(label);
                self.text.push_str("=\"");
                escape_label_value(&mut self.text, value);
                self.text.push('"');
            }
            self.text.push('}');
        }
        // unwrap: writing to a String cannot fail.
        writeln!(self.text, " {value}").unwrap();
    }

    /// The finished text.
    pub(crate) fn finish(self) -> String {
        self.text
    }
}

/// Appends `value` with backslash, double quote and newline escaped.
fn escape_label_value(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str(r"\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str(r"\n"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_samples_and_escapes() {
        let mut out = Exposition::default();
        out.family("cascade_info", Kind::Gauge, "Project.\nSecond line \\ here");
        out.sample("cascade_info", &[("project", "a \"b\"\\\nc"), ("x", "y")], 1);
        out.sample("cascade_up", &[], 0.5);
        assert_eq!(
            out.finish(),
            "# HELP cascade_info Project.\\nSecond line \\\\ here\n# TYPE cascade_info gauge\n\
             cascade_info{project=\"a \\\"b\\\"\\\\\\nc\",x=\"y\"} 1\ncascade_up 0.5\n"
        );
    }
}
