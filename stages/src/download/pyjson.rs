//! JSON text as Python's `json.dumps(value, indent=4)` writes it (img2dataset's `.json` members
//! and `_stats.json`): four-space indents, `": "` after keys, non-ASCII escaped as `\u` and four hex digits.

use std::fmt::Write;

/// A JSON value in Python's layout; objects keep their order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum PyJson {
    Null,
    Int(i64),
    Float(f64),
    Str(String),
    Object(Vec<(String, PyJson)>),
}

impl From<Option<String>> for PyJson {
    fn from(value: Option<String>) -> Self {
        value.map_or(Self::Null, Self::Str)
    }
}

impl From<Option<i32>> for PyJson {
    fn from(value: Option<i32>) -> Self {
        value.map_or(Self::Null, |v| Self::Int(i64::from(v)))
    }
}

impl PyJson {
    /// The text, indented by four spaces per level.
    pub(crate) fn to_indented(&self) -> String {
        let mut out = String::new();
        self.write(&mut out, 0);
        out
    }

    /// The text on one line, as `json.dumps(value)` writes it (`", "` and `": "`).
    pub(crate) fn to_compact(&self) -> String {
        let mut out = String::new();
        self.write_compact(&mut out);
        out
    }

    fn write_compact(&self, out: &mut String) {
        match self {
            Self::Object(fields) => {
                out.push('{');
                for (i, (key, value)) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    write_string(out, key);
                    out.push_str(": ");
                    value.write_compact(out);
                }
                out.push('}');
            }
            scalar => scalar.write(out, 0),
        }
    }

    fn write(&self, out: &mut String, depth: usize) {
        match self {
            Self::Null => out.push_str("null"),
            Self::Int(n) => {
                let _ = write!(out, "{n}");
            }
            Self::Float(x) => out.push_str(&float_repr(*x)),
            Self::Str(s) => write_string(out, s),
            Self::Object(fields) if fields.is_empty() => out.push_str("{}"),
            Self::Object(fields) => {
                out.push('{');
                for (i, (key, value)) in fields.iter().enumerate() {
                    out.push_str(if i == 0 { "\n" } else { ",\n" });
                    out.push_str(&"    ".repeat(depth + 1));
                    write_string(out, key);
                    out.push_str(": ");
                    value.write(out, depth + 1);
                }
                out.push('\n');
                out.push_str(&"    ".repeat(depth));
                out.push('}');
            }
        }
    }
}

/// Python's `repr(float)`: shortest round-trip digits, always with a `.0` or exponent.
fn float_repr(x: f64) -> String {
    if x.is_nan() {
        return "NaN".to_owned();
    }
    if x.is_infinite() {
        return if x > 0.0 { "Infinity" } else { "-Infinity" }.to_owned();
    }
    let text = format!("{x}");
    if text.contains(['.', 'e', 'E']) { text } else { text + ".0" }
}

/// A JSON string with `ensure_ascii`: control and non-ASCII characters as `\u` escapes of their UTF-16 units.
fn write_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_python_json_dumps_indent_4() {
        // json.dumps({"caption": "Café \"😀\"\n", "width": 256, "exif": None, "t": 1.0, "d": {}}, indent=4)
        let value = PyJson::Object(vec![
            ("caption".into(), PyJson::Str("Café \"😀\"\n".into())),
            ("width".into(), PyJson::Int(256)),
            ("exif".into(), PyJson::Null),
            ("t".into(), PyJson::Float(1.0)),
            ("d".into(), PyJson::Object(vec![])),
        ]);
        assert_eq!(
            value.to_indented(),
            "{\n    \"caption\": \"Caf\\u00e9 \\\"\\ud83d\\ude00\\\"\\n\",\n    \"width\": 256,\n    \"exif\": null,\n    \"t\": 1.0,\n    \"d\": {}\n}"
        );
        let nested = PyJson::Object(vec![("s".into(), PyJson::Object(vec![("a".into(), PyJson::Int(1))]))]);
        assert_eq!(nested.to_indented(), "{\n    \"s\": {\n        \"a\": 1\n    }\n}");
        assert_eq!(float_repr(1_733_390_000.123_456_7), "1733390000.1234567");
        // json.dumps({"Image Make": "Café", "n": 1})
        let compact = PyJson::Object(vec![("Image Make".into(), PyJson::Str("Café".into())), ("n".into(), PyJson::Int(1))]);
        assert_eq!(compact.to_compact(), "{\"Image Make\": \"Caf\\u00e9\", \"n\": 1}");
    }
}
