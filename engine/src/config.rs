//! Configuration: compiled-in defaults, then `cascade.toml`, then `CASCADE__…` environment
//! variables, then command-line flags (applied by the caller through [`Overrides`]).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use cascade_tracker::{DatabaseUrl, StageId, StoreConfig};
use cascade_web::ServerConfig;
use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

const DEFAULTS: &str = include_str!("default.toml");

/// Stages used when the configuration names none: the LAION workflow.
const DEFAULT_STAGES: [(StageId, &str); 3] = [(StageId::A, "wat"), (StageId::B, "download"), (StageId::C, "clip")];

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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct StageSettings {
    /// Display name, shown to workers and on the dashboard (e.g. `CPU`, `download`).
    pub name: String,
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
    /// Database connections.
    pub db_connections: u32,
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
                .map(|(letter, name)| (letter.clone(), StageSettings { name: name.clone() }))
                .collect();
        }
        if config.stages.is_empty() {
            config.stages = DEFAULT_STAGES
                .iter()
                .map(|(stage, name)| (stage.letter().to_owned(), StageSettings { name: (*name).to_owned() }))
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
        if self.max_body_bytes < 1024 {
            problems.push("max-body-bytes must be at least 1024".to_owned());
        }
        if problems.is_empty() { Ok(()) } else { Err(ConfigError::Invalid(problems)) }
    }

    /// Display names of stages `a`..`e`, `None` where disabled.
    pub fn stage_names(&self) -> [Option<String>; 5] {
        StageId::ALL.map(|stage| self.stages.get(stage.letter()).map(|s| s.name.clone()))
    }

    /// The database location.
    pub fn database_url(&self) -> DatabaseUrl {
        DatabaseUrl::parse(&self.database)
    }

    /// What the store enforces.
    pub fn store_config(&self) -> StoreConfig {
        StoreConfig {
            project: self.project.clone(),
            stage_names: self.stage_names(),
            idle_timeout: self.idle_timeout,
            flag_threshold: self.flag_threshold,
        }
    }

    /// How the HTTP server runs.
    pub fn server_config(&self) -> ServerConfig {
        ServerConfig { bind: self.bind, max_body_bytes: self.max_body_bytes, ..ServerConfig::default() }
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
