//! The proxy-wasm adapter: host I/O only. `host.rs` implements the pipeline's host trait over
//! proxy-wasm's host calls; `root.rs` hands the plugin configuration and each HTTP callback
//! to the pipeline and maps its flow to proxy-wasm's `Action`. No policy logic lives here.

pub mod host;
pub mod root;
