//! cascade-tracker.
