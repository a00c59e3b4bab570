//! [`StageRegistry`]: stage kinds by name, each built from its settings.
//!
//! A pipeline's `cascade.toml` names a kind per stage (`kind = "wat"`) and gives its settings
//! (`[stages.a.settings]`); the engine asks the registry for one stage value per worker.
//! Pipeline authors add their own kinds and start the engine with the extended registry.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::de::DeserializeOwned;

use super::{Stage, WireStage};

/// Builds one stage value from the stage's settings (a JSON object; empty when none given).
pub type StageFactory = Arc<dyn Fn(&serde_json::Value) -> Result<Box<dyn WireStage>, String> + Send + Sync>;

/// Why a stage could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[must_use]
pub enum RegistryError {
    /// No kind of that name is registered.
    #[error("unknown stage kind '{kind}' (known kinds: {})", known.join(", "))]
    UnknownKind {
        /// The kind asked for.
        kind: String,
        /// The registered kinds.
        known: Vec<String>,
    },
    /// The kind rejected its settings.
    #[error("invalid settings for stage kind '{kind}': {message}")]
    InvalidSettings {
        /// The kind.
        kind: String,
        /// Why.
        message: String,
    },
}

/// Stage kinds by name.
#[derive(Clone, Default)]
pub struct StageRegistry {
    kinds: BTreeMap<String, StageFactory>,
}

impl std::fmt::Debug for StageRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.kinds.keys()).finish()
    }
}

impl StageRegistry {
    /// A registry with no kinds.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The kinds this crate was compiled with: `wat` with the `wat` feature, `download` with
    /// the `download` feature, `clip` with the `clip` feature.
    #[must_use]
    pub fn builtin() -> Self {
        #[allow(unused_mut)]
        let mut registry = Self::new();
        #[cfg(feature = "wat")]
        registry.register_settings::<crate::wat::WatStage>("wat");
        #[cfg(feature = "download")]
        registry.register_settings::<crate::download::DownloadStage>("download");
        #[cfg(feature = "clip")]
        registry.register_settings::<crate::clip::ClipStage>("clip");
        registry
    }

    /// Registers `kind`, built by `factory` from the stage's settings. A kind registered twice
    /// keeps the last factory.
    pub fn register<S, F>(&mut self, kind: &str, factory: F) -> &mut Self
    where
        S: Stage,
        F: Fn(&serde_json::Value) -> Result<S, String> + Send + Sync + 'static,
    {
        let factory: StageFactory = Arc::new(move |settings| Ok(Box::new(factory(settings)?) as Box<dyn WireStage>));
        self.kinds.insert(kind.to_owned(), factory);
        self
    }

    /// Registers `kind` for a stage that is its own settings: the stage value is deserialised
    /// from `[stages.X.settings]` (so unknown keys and wrong types are reported by serde).
    pub fn register_settings<S: Stage + DeserializeOwned>(&mut self, kind: &str) -> &mut Self {
        self.register(kind, |settings| S::deserialize(settings).map_err(|e| e.to_string()))
    }

    /// Whether `kind` is registered.
    pub fn contains(&self, kind: &str) -> bool {
        self.kinds.contains_key(kind)
    }

    /// The registered kinds, sorted.
    pub fn kinds(&self) -> impl Iterator<Item = &str> {
        self.kinds.keys().map(String::as_str)
    }

    /// Builds a stage of `kind` from `settings`.
    ///
    /// # Errors
    /// [`RegistryError::UnknownKind`], [`RegistryError::InvalidSettings`].
    pub fn create(&self, kind: &str, settings: &serde_json::Value) -> Result<Box<dyn WireStage>, RegistryError> {
        let factory = self.kinds.get(kind).ok_or_else(|| RegistryError::UnknownKind {
            kind: kind.to_owned(),
            known: self.kinds.keys().cloned().collect(),
        })?;
        factory(settings).map_err(|message| RegistryError::InvalidSettings { kind: kind.to_owned(), message })
    }
}
