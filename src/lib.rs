//! Posturio: an LLM gateway that runs inside Envoy as a proxy-wasm HTTP filter.
//!
//! Layers: `policy` (pure Rust: the compiled configuration and its decisions), `pipeline`
//! (pure Rust: a request's whole life as steps over a small host trait), `wasm` (the
//! proxy-wasm adapter: host I/O only) and `cli` (the `posturio` command). The Wasm entry point
//! below only registers the root context.

pub mod policy;

pub mod pipeline;

#[cfg(target_arch = "wasm32")]
pub mod wasm;

#[cfg(not(target_arch = "wasm32"))]
pub mod cli;

#[cfg(target_arch = "wasm32")]
proxy_wasm::main! {{
    proxy_wasm::set_log_level(proxy_wasm::types::LogLevel::Info);
    proxy_wasm::set_root_context(|_| Box::new(wasm::root::PosturioRoot::default()));
}}
