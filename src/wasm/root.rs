//! The root context reads the plugin configuration and hands it to the pipeline; each HTTP
//! context forwards Envoy's callbacks to the pipeline's driver and maps its flow to
//! proxy-wasm's `Action`. The configuration picks the role: the request filter (a policy)
//! or the upstream filter of a pool cluster (`{"role": "upstream"}`).

use std::cell::RefCell;
use std::rc::Rc;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType};

use super::host::WasmHost;
use crate::pipeline::metrics::MetricIds;
use crate::pipeline::{configure_role, Attempt, Configured, Flow, Request};
use crate::policy::Policy;

/// One root per filter. The same module in two filters with the same `vm_config` shares one
/// VM, so each role's state lives here, never in statics.
#[derive(Default)]
pub struct PosturioRoot {
    policy: Option<Rc<Policy>>,
    /// Configured as `{"role": "upstream"}`: each HTTP context is one attempt.
    upstream: bool,
    /// Metric ids of this VM, shared by its HTTP contexts.
    metrics: Rc<RefCell<MetricIds>>,
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
        match configure_role(&WasmHost, &bytes) {
            Some(Configured::Request(policy)) => {
                self.policy = Some(Rc::from(policy));
                self.upstream = false;
                true
            }
            Some(Configured::Upstream) => {
                self.policy = None;
                self.upstream = true;
                true
            }
            None => false,
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        if self.upstream {
            return Some(Box::new(PosturioAttempt(Attempt::new(
                WasmHost,
                Rc::clone(&self.metrics),
            ))));
        }
        Some(Box::new(PosturioHttp(Request::new(
            WasmHost,
            self.policy.clone(),
            Rc::clone(&self.metrics),
        ))))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct PosturioHttp(Request<WasmHost>);

fn action(flow: Flow) -> Action {
    match flow {
        Flow::Continue => Action::Continue,
        Flow::Pause => Action::Pause,
    }
}

impl Context for PosturioHttp {
    /// A guard's answer, in this request's context (the SDK routes it by token); the
    /// pipeline resumes the request or answers it once every guard has answered. A request
    /// whose client left is gone: Envoy cancels its calls and no answer comes.
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        self.0.on_guard_answer(token_id, num_headers, body_size);
    }
}

impl HttpContext for PosturioHttp {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        action(self.0.on_request_headers(end_of_stream))
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        action(self.0.on_request_body(body_size, end_of_stream))
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        action(self.0.on_request_trailers())
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        action(self.0.on_response_headers(end_of_stream))
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        action(self.0.on_response_body(body_size, end_of_stream))
    }

    fn on_http_response_trailers(&mut self, _num_trailers: usize) -> Action {
        action(self.0.on_response_trailers())
    }

    fn on_log(&mut self) {
        self.0.on_log();
    }
}

/// One attempt at a pool cluster's target (the upstream role).
struct PosturioAttempt(Attempt<WasmHost>);

impl Context for PosturioAttempt {
    fn on_done(&mut self) -> bool {
        self.0.on_done();
        true
    }
}

impl HttpContext for PosturioAttempt {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        action(self.0.on_request_headers(end_of_stream))
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        action(self.0.on_request_body(body_size, end_of_stream))
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        action(self.0.on_request_trailers())
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        action(self.0.on_response_headers())
    }

    fn on_log(&mut self) {
        self.0.on_done();
    }
}
