//! Shared harness for the integration tests: a real Envoy running the Posturio module
//! (`envoy`) of the build under test, Wasm or native (`build`, `POSTURIO_BUILD`), the mock LLM provider (`mock`), a byte-exact HTTP/1.1 client (`http`), the
//! official SDK client scripts of `tests/sdk/` (`sdk`), and a real Prometheus scraping Envoy
//! (`prometheus`).
//!
//! Each test binary declares `mod common;` and uses only part of this module.
#![allow(dead_code, unused_imports)]
// each test binary uses a different part of the harness
// Test support code: failing loudly (unwrap/panic) is how it reports a broken test setup.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::string_slice
)]

pub mod build;
pub mod envoy;
pub mod http;
pub mod mock;
pub mod platform;
pub mod platform_cases;
pub mod prometheus;
pub mod rollout;
pub mod sdk;

use std::path::{Path, PathBuf};

pub use envoy::{embedded_policy, Envoy, EnvoyOptions};
pub use http::{Connection, Response};
pub use mock::{MockProvider, Recorded};

/// The repository root (where `Cargo.toml` is).
pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A path inside the repository.
pub fn repo_path(relative: &str) -> PathBuf {
    repo_root().join(relative)
}

/// The text of a file inside the repository; panics with the path if it cannot be read.
pub fn read_repo_file(relative: &str) -> String {
    let path = repo_path(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// The shipped example policy, `envoy/policy.json`.
pub fn example_policy() -> String {
    read_repo_file("envoy/policy.json")
}

/// The last `n` lines of `text`.
pub(crate) fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(n);
    lines[start..].join("\n")
}
