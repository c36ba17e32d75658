//! Each stream's filter: Envoy's callbacks handed to the pipeline's driver (the request
//! filter) or to one attempt (the upstream filter of a pool cluster), and its flow mapped to
//! Envoy's statuses as proxy-wasm maps `Action`: `Pause` holds headers (`StopIteration`) and
//! holds and keeps body chunks (`StopIterationAndBuffer`).

use envoy_abi::{
    Action, BodyStatus, CalloutAnswer, Direction, EnvoyFilter, HeadersStatus, HttpFilter,
    TrailersStatus,
};
use posturio::pipeline::{Attempt, Flow, Request};

use std::rc::Rc;

use crate::host::{NativeHost, StreamState};

pub struct PosturioFilter {
    role: Role,
    /// Shared with the pipeline's host.
    stream: Rc<StreamState>,
    /// The attempt's end was handed over (`on_done`).
    attempt_done: bool,
    /// Set by the panic probe's header (test builds only).
    #[cfg(feature = "panic-probe")]
    probe: bool,
}

// The hooks box each stream's filter whole: one allocation either way.
#[allow(clippy::large_enum_variant)]
enum Role {
    Request(Request<NativeHost>),
    Attempt(Attempt<NativeHost>),
}

impl PosturioFilter {
    pub fn request(request: Request<NativeHost>, stream: Rc<StreamState>) -> Self {
        PosturioFilter::new(Role::Request(request), stream)
    }

    pub fn attempt(attempt: Attempt<NativeHost>, stream: Rc<StreamState>) -> Self {
        PosturioFilter::new(Role::Attempt(attempt), stream)
    }

    fn new(role: Role, stream: Rc<StreamState>) -> Self {
        PosturioFilter {
            role,
            stream,
            attempt_done: false,
            #[cfg(feature = "panic-probe")]
            probe: false,
        }
    }

    /// Runs a body step with the callback's chunk counted as part of the body.
    fn in_body<T>(
        &mut self,
        envoy: &EnvoyFilter,
        direction: Direction,
        step: impl FnOnce(&mut Role, usize) -> T,
    ) -> T {
        self.stream.in_body_callback(Some(direction));
        let size = self.stream.body_size(envoy, direction);
        let result = step(&mut self.role, size);
        self.stream.in_body_callback(None);
        result
    }
}

fn headers(flow: Flow) -> HeadersStatus {
    match flow {
        Flow::Continue => HeadersStatus::Continue,
        Flow::Pause => HeadersStatus::StopIteration,
    }
}

fn body(flow: Flow) -> BodyStatus {
    match flow {
        Flow::Continue => BodyStatus::Continue,
        Flow::Pause => BodyStatus::StopIterationAndBuffer,
    }
}

fn trailers(flow: Flow) -> TrailersStatus {
    match flow {
        Flow::Continue => TrailersStatus::Continue,
        Flow::Pause => TrailersStatus::StopIteration,
    }
}

/// Envoy does not complete an upstream filter's stream when its attempt is reset: the
/// attempt ends when its filter is destroyed, as proxy-wasm's `on_done` does. Its end only
/// counts the attempt, in the request filter configuration's metrics (see `series.rs`),
/// which needs nothing of the stream Envoy is destroying.
impl Drop for PosturioFilter {
    fn drop(&mut self) {
        if let Role::Attempt(attempt) = &mut self.role {
            if !self.attempt_done {
                attempt.on_done();
            }
        }
    }
}

impl HttpFilter for PosturioFilter {
    fn on_request_headers(&mut self, _envoy: &EnvoyFilter, end_of_stream: bool) -> HeadersStatus {
        match &mut self.role {
            Role::Request(request) => {
                #[cfg(feature = "panic-probe")]
                {
                    self.probe = crate::probe::asked(_envoy);
                    if end_of_stream {
                        crate::probe::panic_if(self.probe);
                    }
                }
                headers(request.on_request_headers(end_of_stream))
            }
            Role::Attempt(attempt) => headers(attempt.on_request_headers(end_of_stream)),
        }
    }

    fn on_request_body(&mut self, envoy: &EnvoyFilter, end_of_stream: bool) -> BodyStatus {
        #[cfg(feature = "panic-probe")]
        crate::probe::panic_if(self.probe);
        body(
            self.in_body(envoy, Direction::Request, |role, size| match role {
                Role::Request(request) => request.on_request_body(size, end_of_stream),
                Role::Attempt(attempt) => attempt.on_request_body(size, end_of_stream),
            }),
        )
    }

    fn on_request_trailers(&mut self, _envoy: &EnvoyFilter) -> TrailersStatus {
        match &mut self.role {
            Role::Request(request) => trailers(request.on_request_trailers()),
            Role::Attempt(attempt) => trailers(attempt.on_request_trailers()),
        }
    }

    fn on_response_headers(&mut self, _envoy: &EnvoyFilter, end_of_stream: bool) -> HeadersStatus {
        match &mut self.role {
            Role::Request(request) => headers(request.on_response_headers(end_of_stream)),
            Role::Attempt(attempt) => headers(attempt.on_response_headers()),
        }
    }

    fn on_response_body(&mut self, envoy: &EnvoyFilter, end_of_stream: bool) -> BodyStatus {
        body(
            self.in_body(envoy, Direction::Response, |role, size| match role {
                Role::Request(request) => request.on_response_body(size, end_of_stream),
                Role::Attempt(_) => Flow::Continue,
            }),
        )
    }

    fn on_response_trailers(&mut self, _envoy: &EnvoyFilter) -> TrailersStatus {
        match &mut self.role {
            Role::Request(request) => trailers(request.on_response_trailers()),
            Role::Attempt(_) => TrailersStatus::Continue,
        }
    }

    fn on_stream_complete(&mut self, _envoy: &EnvoyFilter) {
        match &mut self.role {
            Role::Request(request) => request.on_log(),
            Role::Attempt(attempt) => {
                self.attempt_done = true;
                attempt.on_done();
            }
        }
    }

    fn on_callout_done(&mut self, _envoy: &EnvoyFilter, callout_id: u64, answer: &CalloutAnswer) {
        let Role::Request(request) = &mut self.role else {
            return;
        };
        let Ok(token) = u32::try_from(callout_id) else {
            return;
        };
        // A call that failed without an answer arrives as proxy-wasm's does: no headers.
        let num_headers = if answer.success {
            answer.headers.len()
        } else {
            0
        };
        let body_size = answer.body.len();
        self.stream.hold_call_answer(Some(answer.clone()));
        request.on_guard_answer(token, num_headers, body_size);
        self.stream.hold_call_answer(None);
    }

    fn take_actions(&mut self) -> Vec<Action> {
        // Envoy does not run this filter's response callbacks for a reply it sent itself,
        // where proxy-wasm does: the pipeline's response-headers step (the debug header) is
        // run here, on the queued reply, before it goes.
        if let Role::Request(request) = &mut self.role {
            if self.stream.reply_queued() {
                request.on_response_headers(false);
            }
        }
        self.stream.take_actions()
    }
}
