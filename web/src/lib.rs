//! cascade-web.
