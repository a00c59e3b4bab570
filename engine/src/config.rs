//! Configuration: compiled-in defaults, then `cascade.toml`, then `CASCADE__…` environment
//! variables, then command-line flags (applied by the caller through [`Overrides`]).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use cascade_stages::stage::ArtifactLocation;
use cascade_tracker::{DatabaseUrl, PoolSettings, StageId, StoreConfig};
use cascade_web::limits::AbuseLimits;
use cascade_web::ServerConfig;
use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

const DEFAULTS: &str = include_str!("default.toml");

/// Stages used when the configuration names none: the LAION workflow, with a local pool for
/// each built-in stage kind that exists (`(stage, name, kind)`).
const DEFAULT_STAGES: [(StageId, &str, Option<&str>); 3] =
    [(StageId::A, "wat", Some("wat")), (StageId::B, "download", None), (StageId::C, "clip", None)];

/// A configuration problem; every problem found is listed, not only the first.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file or environment could not be read or has wrong types or unknown keys.
    #[error("invalid configuration: {0}")]
    Load(#[from] Box<figment::Error>),
    /// The values are individually fine but do not fit together.
    #[error("invalid configuration:\n  - {}", .0.join("\n  - "))]
    Invalid(Vec<String>),
}

/// One stage of the pipeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct StageSettings {
    /// Display name, shown to workers and on the dashboard (e.g. `CPU`, `download`).
    pub name: String,
    /// Stage kind run by `cascade run`'s local workers (a registered kind such as `wat`); none
    /// means the stage is worked only by remote workers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Local worker threads of this stage (with `kind`).
    #[serde(default = "default_workers")]
    pub workers: usize,
    /// Capacity of the hand-off channel from this stage's local pool to the next stage's: how
    /// many finished jobs may wait for a free worker there before this stage stops claiming.
    #[serde(default = "default_queue")]
    pub queue: usize,
    /// Threads of the stage's rayon pool (shared by its workers); default: one per core.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threads: Option<usize>,
    /// Attempts of one job at this stage before it fails (default: `engine.max-attempts`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    /// The stage kind's own settings (`[stages.X.settings]`).
    #[serde(default = "empty_settings")]
    pub settings: serde_json::Value,
}

impl StageSettings {
    /// A stage with a display name and nothing else (remote workers only).
    #[must_use]
    pub fn named(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            kind: None,
            workers: default_workers(),
            queue: default_queue(),
            threads: None,
            max_attempts: None,
            settings: empty_settings(),
        }
    }
}

fn default_workers() -> usize {
    1
}

fn default_queue() -> usize {
    16
}

fn empty_settings() -> serde_json::Value {
    serde_json::Value::Object(serde_json::Map::new())
}

/// How `cascade run` and `cascade worker` treat leases and failures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct EngineSettings {
    /// Root of the artifacts (each stage's shards go in a subdirectory): a local directory
    /// (a path or `file:///path`), or `s3://bucket/prefix` with credentials, region and
    /// endpoint from the `AWS_*` environment.
    pub artifacts: ArtifactLocation,
    /// Lease time of local workers: a crashed daemon's jobs are re-claimed this long after its
    /// last heartbeat (at most `idle-timeout`). Heartbeats go out every quarter of it.
    #[serde(with = "humantime_serde")]
    pub lease_ttl: Duration,
    /// Attempts of one job at one stage before a transient failure or a panic fails it.
    pub max_attempts: u32,
    /// First retry delay after a transient failure; doubles with each attempt.
    #[serde(with = "humantime_serde")]
    pub retry_backoff: Duration,
    /// Longest retry delay.
    #[serde(with = "humantime_serde")]
    pub max_retry_backoff: Duration,
    /// On shutdown, how long running jobs may take to finish before they are cancelled and
    /// their leases released.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// How often an idle worker looks for jobs that arrived from elsewhere (remote workers,
    /// other daemons, retries coming due).
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
}

/// Abuse limits and connection handling of the HTTP server (`[limits]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LimitSettings {
    /// Worker registrations per minute and client address; 0: no limit.
    pub registrations_per_minute: u32,
    /// Requests with an unknown worker token or a wrong admin token per minute and client
    /// address before its token requests are refused for a while; 0: no limit.
    pub bad_tokens_per_minute: u32,
    /// Open connections per HTTP thread.
    pub max_connections: usize,
    /// How long an idle keep-alive connection stays open.
    #[serde(with = "humantime_serde")]
    pub keep_alive: Duration,
    /// How long a client may take to send a request's head.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
}

/// Everything `cascade.toml` may say.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Config {
    /// Project name.
    pub project: String,
    /// Database: a SQLite path or a `postgres://` URL.
    pub database: String,
    /// HTTP listen address.
    pub bind: SocketAddr,
    /// Silence after which a worker is removed and its job re-opened.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Period of the sweep of expired leases and silent workers.
    #[serde(with = "humantime_serde")]
    pub sweep_interval: Duration,
    /// Invalid-input reports for one (job, stage) that send the job back.
    pub flag_threshold: u32,
    /// Largest HTTP request body in bytes.
    pub max_body_bytes: usize,
    /// The bearer token of the admin API (`/v1/admin/*`); unset disables it. Best given as
    /// `CASCADE__ADMIN_TOKEN`, out of files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_token: Option<String>,
    /// The key workers must present to register (a private project; unset: anyone may). They
    /// are given the tracker URL `http://HOST:PORT/key/KEY`. Best given as
    /// `CASCADE__WORKER_KEY`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker_key: Option<String>,
    /// Database connections.
    pub db_connections: u32,
    /// PostgreSQL writer lanes: transactions this daemon commits at the same time (unset: one
    /// per core, 2 to 8, at most half of `db_connections`, of which only this daemon's share
    /// runs at once while other daemons use the database too; set: exactly that many).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub db_writer_lanes: Option<u32>,
    /// Local workers, retries and shutdown.
    pub engine: EngineSettings,
    /// Abuse limits and connection handling of the HTTP server.
    pub limits: LimitSettings,
    /// Enabled stages by letter; none given means the LAION stages a = wat, b = download,
    /// c = clip.
    #[serde(default)]
    pub stages: BTreeMap<String, StageSettings>,
}

/// Values given on the command line, which win over file and environment.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Overrides {
    /// `--database`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    /// `--bind`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bind: Option<SocketAddr>,
    /// `--project`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// `--idle-timeout`.
    #[serde(skip_serializing_if = "Option::is_none", rename = "idle-timeout", with = "humantime_serde::option")]
    pub idle_timeout: Option<Duration>,
    /// `--sweep-interval`.
    #[serde(skip_serializing_if = "Option::is_none", rename = "sweep-interval", with = "humantime_serde::option")]
    pub sweep_interval: Option<Duration>,
    /// `--flag-threshold`.
    #[serde(skip_serializing_if = "Option::is_none", rename = "flag-threshold")]
    pub flag_threshold: Option<u32>,
    /// `--stage X=NAME` (replaces the configured stages when any is given).
    #[serde(skip)]
    pub stages: Vec<(String, String)>,
}

impl Config {
    /// Loads defaults, then `file` if it exists (an explicitly named file must exist), then the
    /// environment, then `overrides`, and validates the result.
    ///
    /// # Errors
    /// Unreadable file, unknown keys, wrong types, or inconsistent values (all listed).
    pub fn load(file: &Path, file_required: bool, overrides: &Overrides) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Toml::string(DEFAULTS));
        if file_required || file.exists() {
            figment = figment.merge(Toml::file_exact(file));
        }
        figment = figment
            .merge(Env::prefixed("CASCADE__").map(|key| key.as_str().replace("__", ".").replace('_', "-").into()))
            .merge(Serialized::defaults(overrides));
        let mut config: Config = figment.extract().map_err(Box::new)?;
        if !overrides.stages.is_empty() {
            config.stages = overrides
                .stages
                .iter()
                .map(|(letter, name)| (letter.clone(), StageSettings::named(name)))
                .collect();
        }
        if config.stages.is_empty() {
            config.stages = DEFAULT_STAGES
                .iter()
                .map(|(stage, name, kind)| {
                    let settings = StageSettings { kind: kind.map(str::to_owned), ..StageSettings::named(name) };
                    (stage.letter().to_owned(), settings)
                })
                .collect();
        }
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        for letter in self.stages.keys() {
            if letter.parse::<StageId>().is_err() {
                problems.push(format!("unknown stage '{letter}' (stages are 'a' to 'e')"));
            }
        }
        let names = self.stage_names();
        if names[0].is_none() {
            problems.push("stage 'a' must be enabled: it receives the jobs".to_owned());
        }
        for stage in StageId::ALL.into_iter().skip(1) {
            let previous = stage.previous().map(|p| names[p.index()].is_some()).unwrap_or(true);
            if names[stage.index()].is_some() && !previous {
                problems.push(format!(
                    "stage '{stage}' is enabled but the stage before it is not, so no job could reach it"
                ));
            }
        }
        for (letter, stage) in &self.stages {
            if stage.name.trim().is_empty() {
                problems.push(format!("stage '{letter}' needs a non-empty name"));
            }
            if stage.kind.is_some() && stage.workers == 0 {
                problems.push(format!("stage '{letter}' has a kind but workers = 0"));
            }
            if stage.queue == 0 {
                problems.push(format!("stage '{letter}': queue must be at least 1"));
            }
            if stage.threads == Some(0) {
                problems.push(format!("stage '{letter}': threads must be at least 1"));
            }
            if stage.max_attempts == Some(0) {
                problems.push(format!("stage '{letter}': max-attempts must be at least 1"));
            }
            if !stage.settings.is_object() {
                problems.push(format!("stage '{letter}': settings must be a table"));
            }
        }
        let engine = &self.engine;
        if engine.lease_ttl < Duration::from_millis(200) {
            problems.push("engine.lease-ttl must be at least 200ms".to_owned());
        }
        if engine.max_attempts == 0 {
            problems.push("engine.max-attempts must be at least 1".to_owned());
        }
        if engine.retry_backoff > engine.max_retry_backoff {
            problems.push("engine.retry-backoff must not exceed engine.max-retry-backoff".to_owned());
        }
        if engine.poll_interval < Duration::from_millis(1) {
            problems.push("engine.poll-interval must be at least 1ms".to_owned());
        }
        if self.flag_threshold == 0 {
            problems.push("flag-threshold must be at least 1".to_owned());
        }
        if self.idle_timeout < Duration::from_secs(1) {
            problems.push("idle-timeout must be at least 1s".to_owned());
        }
        if self.sweep_interval < Duration::from_millis(100) {
            problems.push("sweep-interval must be at least 100ms".to_owned());
        }
        if self.admin_token.as_deref().is_some_and(|token| token.len() < 16) {
            problems.push("admin-token must be at least 16 characters".to_owned());
        }
        if self.worker_key.as_deref().is_some_and(|key| key.len() < 16 || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')) {
            problems.push("worker-key must be at least 16 characters of letters, digits, - and _".to_owned());
        }
        if self.limits.max_connections == 0 {
            problems.push("limits.max-connections must be at least 1".to_owned());
        }
        if self.db_writer_lanes == Some(0) {
            problems.push("db-writer-lanes must be at least 1".to_owned());
        }
        if self.limits.request_timeout < Duration::from_millis(100) {
            problems.push("limits.request-timeout must be at least 100ms".to_owned());
        }
        if self.max_body_bytes < 1024 {
            problems.push("max-body-bytes must be at least 1024".to_owned());
        }
        if problems.is_empty() { Ok(()) } else { Err(ConfigError::Invalid(problems)) }
    }

    /// Display names of stages `a`..`e`, `None` where disabled.
    pub fn stage_names(&self) -> [Option<String>; 5] {
        StageId::ALL.map(|stage| self.stages.get(stage.letter()).map(|s| s.name.clone()))
    }

    /// Attempts of one job at `stage` before it fails: the stage's `max-attempts`, else the
    /// engine's. The tracker fails a job at its next claim once they are used up; workers fail
    /// it on a transient error at the last attempt.
    pub fn max_attempts(&self, stage: StageId) -> u32 {
        self.stages.get(stage.letter()).and_then(|s| s.max_attempts).unwrap_or(self.engine.max_attempts)
    }

    /// The database location.
    pub fn database_url(&self) -> DatabaseUrl {
        DatabaseUrl::parse(&self.database)
    }

    /// How the store connects to its database.
    pub fn pool_settings(&self) -> PoolSettings {
        PoolSettings { max_connections: self.db_connections, writer_lanes: self.db_writer_lanes }
    }

    /// What the store enforces.
    pub fn store_config(&self) -> StoreConfig {
        StoreConfig {
            project: self.project.clone(),
            stage_names: self.stage_names(),
            idle_timeout: self.idle_timeout,
            flag_threshold: self.flag_threshold,
            max_attempts: StageId::ALL.map(|stage| self.max_attempts(stage)),
        }
    }

    /// How the HTTP server runs.
    pub fn server_config(&self) -> ServerConfig {
        ServerConfig {
            bind: self.bind,
            max_body_bytes: self.max_body_bytes,
            admin_token: self.admin_token.clone(),
            worker_key: self.worker_key.clone(),
            abuse_limits: AbuseLimits {
                registrations_per_minute: self.limits.registrations_per_minute,
                bad_tokens_per_minute: self.limits.bad_tokens_per_minute,
            },
            max_connections: self.limits.max_connections,
            keep_alive: self.limits.keep_alive,
            request_timeout: self.limits.request_timeout,
            ..ServerConfig::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_str(toml: &str, overrides: &Overrides) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cascade.toml");
        std::fs::write(&path, toml).unwrap();
        Config::load(&path, true, overrides)
    }

    #[test]
    fn defaults_give_the_laion_stages() {
        let config = load_str("", &Overrides::default()).unwrap();
        assert_eq!(config.stage_names()[1].as_deref(), Some("download"));
        assert_eq!(config.idle_timeout, Duration::from_secs(7200));
        assert_eq!(config.flag_threshold, 5);
        assert_eq!(config.pool_settings(), PoolSettings::connections(16));
    }

    #[test]
    fn writer_lanes_are_set_or_left_to_the_store() {
        let config = load_str("db-connections = 8\ndb-writer-lanes = 1\n", &Overrides::default()).unwrap();
        assert_eq!(config.pool_settings(), PoolSettings { max_connections: 8, writer_lanes: Some(1) });
        let message = load_str("db-writer-lanes = 0\n", &Overrides::default()).unwrap_err().to_string();
        assert!(message.contains("db-writer-lanes must be at least 1"), "{message}");
    }

    #[test]
    fn file_and_flags_override_defaults() {
        let toml = "project = \"P\"\nidle-timeout = \"90s\"\n[stages.a]\nname = \"CPU\"\n[stages.b]\nname = \"GPU\"\n";
        let overrides = Overrides { flag_threshold: Some(2), ..Overrides::default() };
        let config = load_str(toml, &overrides).unwrap();
        assert_eq!(config.project, "P");
        assert_eq!(config.idle_timeout, Duration::from_secs(90));
        assert_eq!(config.flag_threshold, 2);
        assert_eq!(config.stage_names()[2], None);
        let overrides = Overrides { stages: vec![("a".into(), "only".into())], ..Overrides::default() };
        assert_eq!(load_str(toml, &overrides).unwrap().stage_names()[1], None);
    }

    #[test]
    fn every_problem_is_reported() {
        let toml = "flag-threshold = 0\n[stages.b]\nname = \"x\"\n[stages.z]\nname = \"y\"\n";
        let message = load_str(toml, &Overrides::default()).unwrap_err().to_string();
        for expected in ["unknown stage 'z'", "stage 'a' must be enabled", "flag-threshold", "stage 'b' is enabled"] {
            assert!(message.contains(expected), "{expected:?} missing from {message}");
        }
        assert!(load_str("colour = 1\n", &Overrides::default()).unwrap_err().to_string().contains("colour"));
    }

    #[test]
    fn a_named_file_must_exist() {
        assert!(Config::load(Path::new("/nonexistent/cascade.toml"), true, &Overrides::default()).is_err());
        assert!(Config::load(Path::new("/nonexistent/cascade.toml"), false, &Overrides::default()).is_ok());
    }
}
