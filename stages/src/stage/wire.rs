//! Typed stage input and output to and from the job's wire string.
//!
//! Jobs carry strings. A value that serialises to a JSON string travels as that plain string;
//! any other value (object, list, number, …) as JSON behind the [`JSON_PREFIX`], the convention
//! the Python `distcompute-client` uses for dicts and lists. Decoding accepts both, so a stage
//! with `Input = String` receives plain text unchanged and a stage with a struct input reads the
//! JSON a previous stage (Rust or Python) wrote.

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::StageError;

/// Marks a job string as JSON.
pub const JSON_PREFIX: &str = "<!json!>";

/// Decodes a job's wire string into a stage input.
///
/// # Errors
/// [`StageError::InvalidInput`] when the string does not fit `T`.
///
/// ```
/// use cascade_stages::stage::wire::decode;
/// #[derive(serde::Deserialize, PartialEq, Debug)]
/// struct Shard { path: String }
/// assert_eq!(decode::<String>("\"quoted\" text").unwrap(), "\"quoted\" text");
/// assert_eq!(decode::<u32>("42").unwrap(), 42);
/// assert_eq!(decode::<Shard>("<!json!>{\"path\": \"a.tar\"}").unwrap(), Shard { path: "a.tar".into() });
/// assert!(decode::<Shard>("a.tar").is_err());
/// ```
pub fn decode<T: DeserializeOwned>(raw: &str) -> Result<T, StageError> {
    if let Some(json) = raw.strip_prefix(JSON_PREFIX) {
        return serde_json::from_str(json).map_err(|e| StageError::invalid(format!("input JSON does not fit: {e}")));
    }
    // Plain text first, so that string-like inputs never get reinterpreted as JSON.
    if let Ok(value) = T::deserialize(serde_json::Value::String(raw.to_owned())) {
        return Ok(value);
    }
    serde_json::from_str(raw).map_err(|e| StageError::invalid(format!("input is neither the expected text nor JSON: {e}")))
}

/// Encodes a stage output as a job's wire string.
///
/// # Errors
/// [`StageError::Fatal`] when the value cannot be serialised (e.g. a map with non-string keys).
///
/// ```
/// use cascade_stages::stage::wire::encode;
/// assert_eq!(encode(&"plain").unwrap(), "plain");
/// assert_eq!(encode(&vec![1, 2]).unwrap(), "<!json!>[1,2]");
/// ```
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<String, StageError> {
    let value = serde_json::to_value(value).map_err(|e| StageError::fatal(format!("output cannot be encoded: {e}")))?;
    Ok(match value {
        serde_json::Value::String(text) => text,
        other => format!("{JSON_PREFIX}{other}"),
    })
}
