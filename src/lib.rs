//! Posturio: an LLM gateway that runs inside Envoy as a proxy-wasm HTTP filter.
//!
//! `policy` is pure Rust (no proxy-wasm) and decides; `filter` moves bytes between Envoy and the
//! policy and applies its decisions. The Wasm entry point below only registers the root context.

pub mod policy;

pub mod filter;

#[cfg(not(target_arch = "wasm32"))]
pub mod cli;

#[cfg(target_arch = "wasm32")]
proxy_wasm::main! {{
    proxy_wasm::set_log_level(proxy_wasm::types::LogLevel::Info);
    proxy_wasm::set_root_context(|_| Box::new(filter::root::PosturioRoot::default()));
}}
