//! The policy layer: pure Rust, no proxy-wasm. It compiles the configuration once and decides
//! each request from plain data, so it runs and is tested on the host.

pub mod answer;
pub mod answer_scan;
pub mod api_keys;
pub mod body;
pub mod budget;
pub mod classify;
pub mod compile;
mod compile_guards;
mod compile_identity;
mod compile_models;
pub mod compiled;
pub mod config;
pub mod detect;
pub mod extract;
pub mod fold;
pub mod glob;
pub mod guards;
pub mod identity;
pub mod inspect;
pub mod limits;
pub mod model_list;
mod parts;
pub mod plan;
pub mod price;
pub mod principals;
pub mod redact;
pub mod reply;
pub mod request;
pub mod rfc3339;
pub(crate) mod rules;
pub mod shorten;
mod sse;
pub mod usage;
pub mod usage_chunk;

pub use classify::ApiFamily;
pub use compiled::Policy;
pub use config::{ConfigError, Mode};
pub use reply::{Code, Reply};
