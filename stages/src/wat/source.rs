//! Where a WAT file comes from: a local path, or an `http://` / `https://` URL streamed as it
//! downloads (memory stays bounded either way).

use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::time::Duration;

use super::error::WatError;

/// An opened input and its size in bytes (0 when the server does not say).
pub(crate) struct Source {
    pub(crate) reader: Box<dyn Read>,
    pub(crate) total: u64,
}

/// Whether `input` names a URL rather than a path.
fn is_url(input: &Path) -> bool {
    input.to_str().is_some_and(|s| s.starts_with("http://") || s.starts_with("https://"))
}

/// Opens `input`.
///
/// # Errors
/// [`WatError::Open`] for a path that cannot be opened, [`WatError::Fetch`] for a URL that
/// cannot be fetched.
pub(crate) fn open(input: &Path) -> Result<Source, WatError> {
    match input.to_str().filter(|_| is_url(input)) {
        Some(url) => fetch(url),
        None => {
            let open_err = |source| WatError::Open { path: input.to_owned(), source };
            let file = File::open(input).map_err(open_err)?;
            let total = file.metadata().map_err(open_err)?.len();
            Ok(Source { reader: Box::new(file), total })
        }
    }
}

fn fetch(url: &str) -> Result<Source, WatError> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_recv_response(Some(Duration::from_secs(60)))
        .build()
        .into();
    let fail = |status, message: String| WatError::Fetch { url: url.to_owned(), status, message };
    let response = agent.get(url).call().map_err(|e| fail(None, e.to_string()))?;
    let status = response.status().as_u16();
    if status != 200 {
        return Err(fail(Some(status), format!("the server answered {status}")));
    }
    let total = response
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Ok(Source { reader: Box::new(response.into_body().into_reader()), total })
}
