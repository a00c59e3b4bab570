//! cascade-engine.
