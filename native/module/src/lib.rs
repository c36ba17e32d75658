//! Posturio as an Envoy dynamic module (`libposturio.so`).

use envoy_abi::{EnvoyFilter, EnvoyFilterConfig, HttpFilter, HttpFilterConfig};

pub struct PassThrough;

impl HttpFilterConfig for PassThrough {
    type Filter = PassThroughFilter;
    fn new(_envoy: &EnvoyFilterConfig, _name: &[u8], _config: &[u8]) -> Option<Self> {
        Some(PassThrough)
    }
    fn new_filter(&self, _envoy: &EnvoyFilter) -> Option<PassThroughFilter> {
        Some(PassThroughFilter)
    }
}

pub struct PassThroughFilter;
impl HttpFilter for PassThroughFilter {}

envoy_abi::export_http_filter!(PassThrough);
