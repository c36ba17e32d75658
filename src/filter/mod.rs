//! The proxy-wasm adapter: it moves bytes between Envoy and the policy and applies the
//! policy's decisions. No policy logic lives here.

pub mod host;
pub mod http;
pub mod metrics;
mod response;
#[cfg(target_arch = "wasm32")]
pub mod root;
