//! Weights from the Hugging Face hub: [`WeightsSource`] is a file path or `hf:OWNER/REPO[@REVISION]`;
//! [`WeightsSource::resolve`] downloads a hub model's `model.safetensors` (and `config.json`)
//! once into the hub cache that Python's `huggingface_hub` uses, and reads the cache afterwards
//! without any network.
//!
//! The downloader is a few dozen lines on ureq (the workspace's blocking client, rustls with
//! ring) rather than the `hf-hub` crate: hf-hub 1.0 brings tokio, reqwest and hf-xet, and 0.5
//! ureq 2 with native-tls by default; both need the hub's metadata headers on every first
//! request, which a loopback test server would have to imitate.
//!
//! Cache layout (`$HF_HUB_CACHE`, else `$HF_HOME/hub`, else `~/.cache/huggingface/hub`):
//! `models--OWNER--REPO/snapshots/COMMIT/FILE`, with `refs/REVISION` holding the commit a
//! branch pointed to when it was fetched. Files Python put there (symlinks into `blobs/`) are
//! read as they are; files fetched here are stored in the snapshot folder directly.

use std::fmt;
use std::fs::{self, File};
use std::io::{self, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::error::HubError;

/// The hub used when `HF_ENDPOINT` is not set.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";
/// The revision of `hf:OWNER/REPO` without `@REVISION`.
pub const DEFAULT_REVISION: &str = "main";
/// The weights file of a hub model.
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// The configuration file of a hub model.
pub const CONFIG_FILE: &str = "config.json";

/// Redirects followed at most (the hub sends one, to its CDN).
const MAX_REDIRECTS: usize = 10;
/// A log line this often while downloading when stderr is not a terminal.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// Downloads of this process run one at a time, so workers loading the same model at once
/// fetch it once (the second finds it in the cache).
static DOWNLOADS: Mutex<()> = Mutex::new(());

/// Where CLIP weights come from: a local file, or a Hugging Face model repository.
///
/// Written as a string: `hf:OWNER/REPO` or `hf:OWNER/REPO@REVISION` (a branch, tag or commit;
/// `main` by default) names a hub model, anything else is a path (write `./hf:x` for a file
/// whose name starts with `hf:`).
///
/// ```
/// use cascade_stages::clip::WeightsSource;
///
/// let hub: WeightsSource = "hf:openai/clip-vit-base-patch32".parse().unwrap();
/// assert_eq!(hub, WeightsSource::Hub { repo: "openai/clip-vit-base-patch32".into(), revision: "main".into() });
/// assert_eq!(hub.to_string(), "hf:openai/clip-vit-base-patch32");
/// let file: WeightsSource = "clip/model.safetensors".parse().unwrap();
/// assert_eq!(file, WeightsSource::File("clip/model.safetensors".into()));
/// assert!("hf:no-owner".parse::<WeightsSource>().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WeightsSource {
    /// A Hugging Face `CLIPModel` `model.safetensors` on disk.
    File(PathBuf),
    /// A hub model repository.
    Hub {
        /// `OWNER/REPO`.
        repo: String,
        /// Branch, tag or commit.
        revision: String,
    },
}

impl Default for WeightsSource {
    fn default() -> Self {
        Self::File(PathBuf::new())
    }
}

impl From<PathBuf> for WeightsSource {
    fn from(path: PathBuf) -> Self {
        Self::File(path)
    }
}

impl From<&Path> for WeightsSource {
    fn from(path: &Path) -> Self {
        Self::File(path.to_owned())
    }
}

impl FromStr for WeightsSource {
    type Err = HubError;

    fn from_str(text: &str) -> Result<Self, HubError> {
        let Some(spec) = text.strip_prefix("hf:") else {
            return Ok(Self::File(PathBuf::from(text)));
        };
        let invalid = |reason| HubError::Spec { spec: text.to_owned(), reason };
        let (repo, revision) = spec.split_once('@').unwrap_or((spec, DEFAULT_REVISION));
        let name_ok = |part: &str| {
            !part.is_empty()
                && part.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
                && !part.starts_with(['-', '.'])
                && !part.ends_with(['-', '.'])
        };
        match repo.split_once('/') {
            Some((owner, name)) if name_ok(owner) && name_ok(name) && !repo.contains("--") && !repo.contains("..") => {}
            _ => return Err(invalid("the repository must be OWNER/REPO (letters, digits, `-`, `_`, `.`)")),
        }
        let revision_ok = !revision.is_empty()
            && revision.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
            && revision.split('/').all(|part| !part.is_empty() && part != "." && part != "..");
        if !revision_ok {
            return Err(invalid("the revision must be a branch, tag or commit"));
        }
        Ok(Self::Hub { repo: repo.to_owned(), revision: revision.to_owned() })
    }
}

impl fmt::Display for WeightsSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(path) => write!(f, "{}", path.display()),
            Self::Hub { repo, revision } if revision == DEFAULT_REVISION => write!(f, "hf:{repo}"),
            Self::Hub { repo, revision } => write!(f, "hf:{repo}@{revision}"),
        }
    }
}

impl Serialize for WeightsSource {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::File(path) => path.serialize(serializer),
            Self::Hub { .. } => serializer.collect_str(self),
        }
    }
}

impl<'de> Deserialize<'de> for WeightsSource {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?.parse().map_err(serde::de::Error::custom)
    }
}

/// The local files of a [`WeightsSource`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedWeights {
    /// `model.safetensors`.
    pub weights: PathBuf,
    /// The hub model's `config.json`, when it was asked for; `None` for a file source.
    pub config: Option<PathBuf>,
}

impl WeightsSource {
    /// The local files: a file source as it is; a hub model's `model.safetensors` (and
    /// `config.json` when `with_config`) from the cache, downloaded there first when missing.
    /// A file source is not checked here (loading it reports a missing file).
    ///
    /// # Errors
    ///
    /// [`HubError::Download`] when a file is not cached and cannot be downloaded,
    /// [`HubError::Cache`] when the cache cannot be written.
    pub fn resolve(&self, hub: &HubSettings, with_config: bool) -> Result<ResolvedWeights, HubError> {
        match self {
            Self::File(path) => Ok(ResolvedWeights { weights: path.clone(), config: None }),
            Self::Hub { repo, revision } => {
                let weights = hub.fetch(repo, revision, WEIGHTS_FILE)?;
                let config = with_config.then(|| hub.fetch(repo, revision, CONFIG_FILE)).transpose()?;
                Ok(ResolvedWeights { weights, config })
            }
        }
    }
}

/// Where hub files come from and where they are kept.
#[derive(Clone, PartialEq, Eq)]
pub struct HubSettings {
    /// The hub's base URL, without a trailing `/` (`https://huggingface.co`).
    pub endpoint: String,
    /// The hub cache: the folder holding `models--OWNER--REPO`.
    pub cache_dir: PathBuf,
    /// Sent as `Authorization: Bearer TOKEN` to the endpoint (not to the CDN it redirects to),
    /// for private and gated models.
    pub token: Option<String>,
}

impl fmt::Debug for HubSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HubSettings")
            .field("endpoint", &self.endpoint)
            .field("cache_dir", &self.cache_dir)
            .field("token", &self.token.as_ref().map(|_| "…"))
            .finish()
    }
}

impl HubSettings {
    /// As Python's `huggingface_hub`: `HF_ENDPOINT` (default `https://huggingface.co`);
    /// the cache `HF_HUB_CACHE`, else `HF_HOME/hub`, else `XDG_CACHE_HOME/huggingface/hub`,
    /// else `~/.cache/huggingface/hub`; the token `HF_TOKEN`.
    #[must_use]
    pub fn from_env() -> Self {
        let var = |name| std::env::var_os(name).filter(|v| !v.is_empty());
        let endpoint = var("HF_ENDPOINT").map_or_else(|| DEFAULT_ENDPOINT.to_owned(), |v| v.to_string_lossy().into_owned());
        let cache_dir = var("HF_HUB_CACHE").map(PathBuf::from).unwrap_or_else(|| {
            let home = var("HF_HOME").map(PathBuf::from).unwrap_or_else(|| {
                let cache = var("XDG_CACHE_HOME")
                    .map(PathBuf::from)
                    .or_else(|| var("HOME").or_else(|| var("USERPROFILE")).map(|home| PathBuf::from(home).join(".cache")))
                    .unwrap_or_else(|| PathBuf::from(".cache"));
                cache.join("huggingface")
            });
            home.join("hub")
        });
        let token = var("HF_TOKEN").map(|v| v.to_string_lossy().trim().to_owned());
        Self { endpoint: endpoint.trim_end_matches('/').to_owned(), cache_dir, token }
    }

    /// The local copy of `file` of model `repo` at `revision`: from the cache, or downloaded
    /// into it first (to a `*.partial` file renamed when complete).
    ///
    /// # Errors
    ///
    /// [`HubError::Download`], [`HubError::Cache`].
    pub fn fetch(&self, repo: &str, revision: &str, file: &str) -> Result<PathBuf, HubError> {
        let repo_dir = self.cache_dir.join(format!("models--{}", repo.replace('/', "--")));
        if let Some(path) = cached(&repo_dir, revision, file) {
            tracing::debug!(repo, revision, file, path = %path.display(), "Hub file found in the cache.");
            return Ok(path);
        }
        let _one_at_a_time = DOWNLOADS.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(path) = cached(&repo_dir, revision, file) {
            return Ok(path);
        }
        Download { hub: self, repo, revision, file }.run(&repo_dir)
    }
}

/// The cached copy, if any: under the commit `refs/REVISION` names, or under the revision
/// itself (a commit, or a branch fetched from a server that did not name its commit).
fn cached(repo_dir: &Path, revision: &str, file: &str) -> Option<PathBuf> {
    let commit = fs::read_to_string(repo_dir.join("refs").join(revision)).ok().map(|text| text.trim().to_owned());
    commit
        .filter(|c| is_commit(c))
        .into_iter()
        .chain([revision.to_owned()])
        .map(|snapshot| repo_dir.join("snapshots").join(snapshot).join(file))
        .find(|path| path.is_file())
}

fn is_commit(text: &str) -> bool {
    !text.is_empty() && text.len() <= 64 && text.chars().all(|c| c.is_ascii_hexdigit())
}

/// One file to fetch.
struct Download<'a> {
    hub: &'a HubSettings,
    repo: &'a str,
    revision: &'a str,
    file: &'a str,
}

impl Download<'_> {
    fn fail(&self, status: Option<u16>, cause: impl Into<String>) -> HubError {
        HubError::Download {
            repo: self.repo.to_owned(),
            revision: self.revision.to_owned(),
            file: self.file.to_owned(),
            endpoint: self.hub.endpoint.clone(),
            status,
            cause: cause.into(),
        }
    }

    fn run(&self, repo_dir: &Path) -> Result<PathBuf, HubError> {
        let (response, commit) = self.request()?;
        let snapshot = commit.as_deref().unwrap_or(self.revision);
        let target = repo_dir.join("snapshots").join(snapshot).join(self.file);
        let dir = target.parent().unwrap_or(repo_dir);
        fs::create_dir_all(dir).map_err(|source| HubError::Cache { path: dir.to_owned(), source })?;
        let partial = partial_path(&target);
        if let Err(e) = self.save(response, &partial) {
            let _ = fs::remove_file(&partial);
            return Err(e);
        }
        fs::rename(&partial, &target).map_err(|source| HubError::Cache { path: target.clone(), source })?;
        if let Some(commit) = commit.filter(|c| c != self.revision) {
            let reference = repo_dir.join("refs").join(self.revision);
            write_atomically(&reference, commit.as_bytes()).map_err(|source| HubError::Cache { path: reference, source })?;
        }
        Ok(target)
    }

    /// GET `{endpoint}/{repo}/resolve/{revision}/{file}`, following redirects by hand so the
    /// token goes to the endpoint only and the commit header of the first answer is seen.
    fn request(&self) -> Result<(ureq::http::Response<ureq::Body>, Option<String>), HubError> {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .user_agent(concat!("cascade/", env!("CARGO_PKG_VERSION")))
            .timeout_connect(Some(Duration::from_secs(30)))
            .timeout_recv_response(Some(Duration::from_secs(60)))
            .timeout_per_read(Some(Duration::from_secs(60)))
            .build()
            .into();
        let mut url = format!("{}/{}/resolve/{}/{}", self.hub.endpoint, self.repo, encode(self.revision), self.file);
        let mut commit = None;
        for _ in 0..=MAX_REDIRECTS {
            let mut request = agent.get(&url);
            if let Some(token) = self.hub.token.as_ref().filter(|_| origin(&url).eq_ignore_ascii_case(origin(&self.hub.endpoint))) {
                request = request.header("Authorization", format!("Bearer {token}"));
            }
            let response = request.call().map_err(|e| self.fail(None, e.to_string()))?;
            let header = |name| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
            if commit.is_none() {
                commit = header("x-repo-commit").filter(|c| is_commit(c));
            }
            let status = response.status();
            if status.is_redirection() {
                let location = header("location").ok_or_else(|| self.fail(Some(status.as_u16()), "a redirect without Location"))?;
                url = join_location(&url, &location);
                continue;
            }
            if status != ureq::http::StatusCode::OK {
                return Err(self.fail(Some(status.as_u16()), describe_status(status)));
            }
            return Ok((response, commit));
        }
        Err(self.fail(None, format!("more than {MAX_REDIRECTS} redirects")))
    }

    /// Streams the body into `partial`, synced to disk.
    fn save(&self, response: ureq::http::Response<ureq::Body>, partial: &Path) -> Result<(), HubError> {
        let headers = response.headers();
        let number = |name| headers.get(name).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
        // The length on the wire is the file's only when the body is not compressed.
        let expected = number("content-length").filter(|_| !headers.contains_key("content-encoding"));
        let mut progress = Progress::start(self, expected.or_else(|| number("x-linked-size")));
        let cache_err = |source| HubError::Cache { path: partial.to_owned(), source };
        let mut out = File::create(partial).map_err(cache_err)?;
        let mut body = response.into_body().into_reader();
        let mut buffer = vec![0; 1 << 20];
        let mut done = 0u64;
        loop {
            let n = match body.read(&mut buffer) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    progress.abandon();
                    let of = expected.map(|total| format!(" of {total}")).unwrap_or_default();
                    return Err(self.fail(None, format!("the download broke off after {done}{of} bytes: {e}")));
                }
            };
            out.write_all(&buffer[..n]).map_err(cache_err)?;
            done += n as u64;
            progress.update(done);
        }
        progress.finish(done);
        if let Some(expected) = expected.filter(|&e| e != done) {
            return Err(self.fail(None, format!("the download ended after {done} of {expected} bytes")));
        }
        out.sync_all().map_err(cache_err)
    }
}

/// `FILE.PID-N.partial` beside `target`: unique per download, so concurrent processes never
/// write into one file.
fn partial_path(target: &Path) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    target.with_file_name(format!("{name}.{}-{n}.partial", std::process::id()))
}

fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    let partial = partial_path(path);
    fs::write(&partial, bytes)?;
    fs::rename(&partial, path).inspect_err(|_| {
        let _ = fs::remove_file(&partial);
    })
}

fn describe_status(status: ureq::http::StatusCode) -> String {
    let code = status.as_u16();
    let reason = status.canonical_reason().unwrap_or("");
    match code {
        401 | 403 => format!(
            "the server answered {code} {reason}: the repository does not exist, or is private or gated (set HF_TOKEN \
             to a token that may read it)"
        ),
        404 => format!("the server answered {code} {reason}: no such repository, revision or file"),
        _ => format!("the server answered {code} {reason}"),
    }
}

/// Percent-encodes everything but unreserved characters (a revision's `/` becomes `%2F`).
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => char::from(b).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `scheme://authority` of a URL.
fn origin(url: &str) -> &str {
    let start = url.find("://").map_or(0, |i| i + 3);
    let end = url[start..].find(['/', '?', '#']).map_or(url.len(), |i| start + i);
    &url[..end]
}

/// The URL a `Location` header points to, relative to the URL that answered.
fn join_location(base: &str, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with("https://") {
        return location.to_owned();
    }
    if let Some(rest) = location.strip_prefix("//") {
        let scheme = base.split_once("://").map_or("https", |(scheme, _)| scheme);
        return format!("{scheme}://{rest}");
    }
    let origin = origin(base);
    if location.starts_with('/') {
        return format!("{origin}{location}");
    }
    let path = base[origin.len()..].split(['?', '#']).next().unwrap_or("");
    let dir = path.rfind('/').map_or("/", |i| &path[..=i]);
    format!("{origin}{dir}{location}")
}

/// A progress bar on a terminal, `tracing` lines otherwise.
struct Progress {
    bar: Option<ProgressBar>,
    label: String,
    total: Option<u64>,
    started: Instant,
    last_log: Instant,
}

impl Progress {
    fn start(download: &Download<'_>, total: Option<u64>) -> Self {
        let label = format!("{} {}", download.repo, download.file);
        tracing::info!(repo = download.repo, revision = download.revision, file = download.file, bytes = ?total,
                       endpoint = %download.hub.endpoint, "Downloading from the Hugging Face hub.");
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::with_draw_target(total, ProgressDrawTarget::stderr());
            let template = if total.is_some() {
                "{msg} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}"
            } else {
                "{msg} {spinner} {bytes} {binary_bytes_per_sec}"
            };
            bar.set_style(ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()).progress_chars("=> "));
            bar.set_message(label.clone());
            bar
        });
        let now = Instant::now();
        Self { bar, label, total, started: now, last_log: now }
    }

    fn update(&mut self, done: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(done);
        } else if self.last_log.elapsed() >= LOG_EVERY {
            self.last_log = Instant::now();
            let rate = done as f64 / self.started.elapsed().as_secs_f64().max(1e-9);
            let eta = self.total.map(|total| format!("{:.0} s", total.saturating_sub(done) as f64 / rate.max(1.0)));
            tracing::info!(file = %self.label, mib = done >> 20, total_mib = ?self.total.map(|t| t >> 20),
                           mib_per_s = format_args!("{:.1}", rate / f64::from(1 << 20)), eta = ?eta, "Downloading…");
        }
    }

    fn finish(&mut self, done: u64) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        let seconds = self.started.elapsed().as_secs_f64();
        tracing::info!(file = %self.label, bytes = done, seconds = format_args!("{seconds:.1}"), "Downloaded.");
    }

    fn abandon(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.abandon();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_sources() {
        let parse = |s: &str| s.parse::<WeightsSource>();
        let hub = |repo: &str, revision: &str| WeightsSource::Hub { repo: repo.into(), revision: revision.into() };
        assert_eq!(parse("hf:openai/clip-vit-base-patch32@refs/pr/1").unwrap(), hub("openai/clip-vit-base-patch32", "refs/pr/1"));
        assert_eq!(parse("hf:a/b@v1.0").unwrap().to_string(), "hf:a/b@v1.0");
        assert_eq!(parse("hf:a/b@main").unwrap().to_string(), "hf:a/b");
        assert_eq!(parse("./hf:a/b").unwrap(), WeightsSource::File("./hf:a/b".into()));
        for bad in ["hf:", "hf:a", "hf:a/b/c", "hf:/b", "hf:a/", "hf:a--x/b", "hf:a/b@", "hf:a/b@../x", "hf:a/b c", "hf:a/b@x//y"] {
            let err = parse(bad).unwrap_err();
            assert!(matches!(err, HubError::Spec { .. }) && err.to_string().contains("hf:OWNER/REPO"), "{bad}: {err}");
        }
        let json: WeightsSource = serde_json::from_str(r#""hf:a/b@dev""#).unwrap();
        assert_eq!(serde_json::to_string(&json).unwrap(), r#""hf:a/b@dev""#);
        assert!(serde_json::from_str::<WeightsSource>(r#""hf:nope""#).unwrap_err().to_string().contains("OWNER/REPO"));
    }

    #[test]
    fn joins_redirect_locations() {
        let base = "http://127.0.0.1:8/a/resolve/main/model.safetensors?x=1";
        assert_eq!(join_location(base, "https://cdn.example/x"), "https://cdn.example/x");
        assert_eq!(join_location(base, "//cdn.example/x"), "http://cdn.example/x");
        assert_eq!(join_location(base, "/api/resolve-cache/x"), "http://127.0.0.1:8/api/resolve-cache/x");
        assert_eq!(join_location(base, "other.json"), "http://127.0.0.1:8/a/resolve/main/other.json");
        assert_eq!(join_location("http://h", "x"), "http://h/x");
        assert_eq!(origin("https://huggingface.co"), "https://huggingface.co");
        assert_eq!(encode("refs/pr/1"), "refs%2Fpr%2F1");
    }

    #[test]
    fn the_token_is_not_printed() {
        let hub = HubSettings { endpoint: DEFAULT_ENDPOINT.into(), cache_dir: "c".into(), token: Some("hf_secret".into()) };
        assert!(!format!("{hub:?}").contains("secret"));
    }
}
