//! The policy layer: pure Rust, no proxy-wasm. It compiles the configuration once and decides
//! each request from plain data, so it runs and is tested on the host.

pub mod budget;
pub mod classify;
pub mod compile;
pub mod compiled;
pub mod config;
pub mod detect;
pub mod extract;
pub mod glob;
pub mod identity;
pub mod inspect;
pub mod json_reader;
pub mod limits;
mod limits_keys;
pub mod limits_usage;
mod parts;
pub mod redact;
pub mod reply;
pub mod request;
pub(crate) mod rules;
mod sse;
pub mod strict_json;
pub mod usage;
pub mod usage_chunk;
pub mod walk;

pub use classify::ApiFamily;
pub use compiled::Policy;
pub use config::{ConfigError, Mode};
pub use reply::{Code, Reply};
