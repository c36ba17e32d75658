//! The root context: compiles the plugin configuration into a `Policy` and hands it to every
//! HTTP context. Wasm only.

use std::cell::RefCell;
use std::rc::Rc;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType};

use super::host::WasmHost;
use super::http::HttpFilter;
use super::metrics::MetricIds;
use crate::policy::budget::{self, Counter};
use crate::policy::Policy;

#[derive(Default)]
pub struct PosturioRoot {
    policy: Option<Rc<Policy>>,
    /// Metric ids of this VM, shared by its HTTP contexts.
    metrics: Rc<RefCell<MetricIds>>,
}

/// Creates every budget counter that does not exist yet, so that later updates always carry a
/// compare-and-swap token: two workers can then never both write the first value of a key.
fn create_budget_counters(policy: &Policy) {
    for consumer in policy.consumers.values() {
        let Some(limits) = &consumer.budget else {
            continue;
        };
        for limit in &limits.limits {
            let key = budget::shared_key(&consumer.name, limit.window);
            if let Ok((None, _)) = hostcalls::get_shared_data(&key) {
                let empty = Counter::default().encode();
                if let Err(status) = hostcalls::set_shared_data(&key, Some(&empty), None) {
                    log::warn!("budget counter {key} could not be created: {status:?}");
                }
            }
        }
    }
}

impl Context for PosturioRoot {}

impl RootContext for PosturioRoot {
    /// Returning false makes Envoy reject the configuration; the errors are in its log, each
    /// with the JSON path of the mistake.
    fn on_configure(&mut self, plugin_configuration_size: usize) -> bool {
        // Follow Envoy's level for the wasm component (`--component-log-level wasm:debug`),
        // so that debug lines can be switched on without a rebuild.
        if let Ok(level) = hostcalls::get_log_level() {
            proxy_wasm::set_log_level(level);
        }
        let bytes = match hostcalls::get_buffer(
            BufferType::PluginConfiguration,
            0,
            plugin_configuration_size,
        ) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => {
                log::error!("invalid configuration: the plugin configuration is empty");
                return false;
            }
            Err(status) => {
                log::error!("the plugin configuration could not be read: {status:?}");
                return false;
            }
        };
        match Policy::from_json(&bytes) {
            Ok(policy) => {
                log::info!(
                    "policy loaded: {} providers, {} models, {} consumers, mode {}",
                    policy.provider_count(),
                    policy.model_count(),
                    policy.consumer_count(),
                    policy.mode.as_str()
                );
                create_budget_counters(&policy);
                self.policy = Some(Rc::new(policy));
                true
            }
            Err(errors) => {
                for error in &errors {
                    log::error!("invalid configuration: {error}");
                }
                false
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(PosturioHttp(HttpFilter::new(
            WasmHost,
            self.policy.clone(),
            Rc::clone(&self.metrics),
        ))))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct PosturioHttp(HttpFilter<WasmHost>);

impl Context for PosturioHttp {}

impl HttpContext for PosturioHttp {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        self.0.on_request_headers(end_of_stream)
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.0.on_request_body(body_size, end_of_stream)
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        self.0.on_request_trailers()
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        self.0.on_response_headers(end_of_stream)
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.0.on_response_body(body_size, end_of_stream);
        Action::Continue
    }

    fn on_log(&mut self) {
        self.0.on_log();
    }
}
