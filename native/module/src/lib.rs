//! Posturio as an Envoy dynamic module (`libposturio.so`, `make native`): the same request
//! pipeline and policy JSON as the Wasm filter, through a second adapter.
//!
//! - `root.rs`: the filter configuration (role and policy), per-worker policy and metrics;
//! - `filter.rs`: each stream's callbacks handed to the pipeline, its flow mapped to Envoy's;
//! - `host.rs`: `NativeHost`, the pipeline's host trait over Envoy's ABI;
//! - `metrics.rs`, `series.rs`: the pipeline's metrics as Envoy's labelled metrics;
//! - `shared_data.rs`: values shared by every worker (budgets), with compare-and-swap;
//! - `logger.rs`: the `log` backend.
//!
//! No unsafe code here: `envoy_abi` holds all of it, including the hooks the export below
//! defines, each of which catches panics.

mod filter;
mod host;
mod logger;
mod metrics;
#[cfg(feature = "panic-probe")]
mod probe;
mod root;
mod series;
mod shared_data;

pub use host::NativeHost;
pub use root::PosturioConfig;

envoy_abi::export_http_filter!(PosturioConfig);
