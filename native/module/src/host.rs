//! `NativeHost`: the pipeline's host trait over Envoy's dynamic module ABI, mirroring what
//! `posturio::wasm::host::WasmHost` gets from proxy-wasm, including what proxy-wasm does
//! implicitly:
//!
//! - A body is the whole body held so far: Envoy's buffered body and the chunk of the current
//!   callback (proxy-wasm's `HttpRequestBody` / `HttpResponseBody` while the filter holds it).
//!   Replacing it replaces both, so the provider (or the client) gets exactly the pipeline's
//!   bytes.
//! - `set_property(["k"])` stores filter state `wasm.k`, as proxy-wasm does, so the access log
//!   formats serve both builds.
//! - A guard call's answer is held here while the pipeline reads it.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{SystemTime, UNIX_EPOCH};

use envoy_abi::{Action, Attribute, Body, CalloutAnswer, Direction, EnvoyFilter, MetadataSource};
use posturio::pipeline::{Answer, Host, HostError, MetricKind};

use crate::metrics;
use crate::series::Series;
use crate::shared_data;

/// Filter state keys carry this prefix, as proxy-wasm's `set_property` does.
const FILTER_STATE_PREFIX: &str = "wasm.";

/// Envoy's response code details for the module's own replies.
const REPLY_DETAILS: &str = "posturio";

pub struct NativeHost {
    /// The stream; `None` while a configuration is read (no stream exists then).
    envoy: Option<EnvoyFilter>,
    /// This worker's metric series for this configuration.
    series: Rc<Series>,
    /// What the filter tells the host about the callback running now.
    stream: Rc<StreamState>,
}

/// What the stream's filter shares with its host (the pipeline owns the host): which body
/// callback runs, and the guard answer being delivered.
#[derive(Default)]
pub struct StreamState {
    /// The body callback running now, whose chunk is part of the body (outside a body
    /// callback only Envoy's buffered body is).
    body_callback: Cell<Option<Direction>>,
    /// The guard answer being delivered.
    call_answer: RefCell<Option<CalloutAnswer>>,
    /// Calls made once the callback has returned (a local reply, resuming the request), as
    /// proxy-wasm defers them; see `envoy_abi::Action`.
    actions: RefCell<Vec<Action>>,
}

impl StreamState {
    /// The calls queued during the callback that just returned.
    pub fn take_actions(&self) -> Vec<Action> {
        std::mem::take(&mut *self.actions.borrow_mut())
    }

    /// Whether a local reply is queued (not yet sent).
    pub fn reply_queued(&self) -> bool {
        self.actions
            .borrow()
            .iter()
            .any(|action| matches!(action, Action::SendResponse { .. }))
    }

    /// Sets (`Some`) or removes a header of the queued local reply; false when none is queued.
    fn edit_queued_reply(&self, name: &str, value: Option<&str>) -> bool {
        let mut actions = self.actions.borrow_mut();
        let Some(headers) = actions.iter_mut().rev().find_map(|action| match action {
            Action::SendResponse { headers, .. } => Some(headers),
            Action::ContinueDecoding => None,
        }) else {
            return false;
        };
        headers.retain(|(existing, _)| !existing.eq_ignore_ascii_case(name));
        if let Some(value) = value {
            headers.push((name.to_owned(), value.as_bytes().to_vec()));
        }
        true
    }

    /// Marks the body callback of `direction` as running (its chunk is then part of the
    /// body), or none.
    pub fn in_body_callback(&self, direction: Option<Direction>) {
        self.body_callback.set(direction);
    }

    /// Holds a guard's answer while the pipeline reads it; `None` clears it.
    pub fn hold_call_answer(&self, answer: Option<CalloutAnswer>) {
        *self.call_answer.borrow_mut() = answer;
    }

    /// The size of the whole body held so far: buffered, and this callback's chunk.
    pub fn body_size(&self, envoy: &EnvoyFilter, direction: Direction) -> usize {
        let buffered = envoy.body_size(Body::Buffered(direction));
        if self.body_callback.get() != Some(direction) {
            // Outside its callback there is no chunk.
            return buffered;
        }
        let received = envoy.body_size(Body::Received(direction));
        if envoy.received_is_buffered(direction) {
            // The chunk is the body an earlier filter held: not counted twice.
            return received;
        }
        buffered.saturating_add(received)
    }
}

/// The filter state key of `name`: `wasm.<name>`, as proxy-wasm stores a property.
fn filter_state_key(name: &str) -> String {
    format!("{FILTER_STATE_PREFIX}{name}")
}

fn failed(call: &'static str, status: &str) -> HostError {
    HostError {
        call,
        status: status.to_owned(),
    }
}

fn text(bytes: Vec<u8>, call: &'static str) -> Result<String, HostError> {
    String::from_utf8(bytes).map_err(|_| failed(call, "a header name that is not UTF-8"))
}

fn named(
    pairs: Vec<(Vec<u8>, Vec<u8>)>,
    call: &'static str,
) -> Result<Vec<(String, Vec<u8>)>, HostError> {
    pairs
        .into_iter()
        .map(|(name, value)| Ok((text(name, call)?, value)))
        .collect()
}

impl NativeHost {
    pub fn new(envoy: EnvoyFilter, series: Rc<Series>, stream: Rc<StreamState>) -> Self {
        NativeHost {
            envoy: Some(envoy),
            series,
            stream,
        }
    }

    /// A host with no stream, for reading a configuration: shared data and logging work,
    /// stream calls fail.
    pub fn detached(series: Rc<Series>) -> Self {
        NativeHost {
            envoy: None,
            series,
            stream: Rc::default(),
        }
    }

    fn envoy(&self, call: &'static str) -> Result<&EnvoyFilter, HostError> {
        self.envoy
            .as_ref()
            .ok_or_else(|| failed(call, "no stream while the configuration is read"))
    }

    fn body_size(&self, direction: Direction) -> usize {
        self.envoy
            .as_ref()
            .map_or(0, |envoy| self.stream.body_size(envoy, direction))
    }

    fn body(
        &self,
        direction: Direction,
        size: usize,
        call: &'static str,
    ) -> Result<Vec<u8>, HostError> {
        let envoy = self.envoy(call)?;
        let mut body = Vec::with_capacity(size.min(self.body_size(direction)));
        let in_callback = self.stream.body_callback.get() == Some(direction);
        if !(in_callback && envoy.received_is_buffered(direction)) {
            envoy.read_body(Body::Buffered(direction), &mut body, size);
        }
        if in_callback {
            let room = size.saturating_sub(body.len());
            envoy.read_body(Body::Received(direction), &mut body, room);
        }
        Ok(body)
    }

    fn replace_body(
        &self,
        direction: Direction,
        size: usize,
        replacement: &[u8],
        call: &'static str,
    ) -> Result<(), HostError> {
        let envoy = self.envoy(call)?;
        let total = self.body_size(direction);
        // Bytes past `size` stay after the replacement, as proxy-wasm's `set_buffer` keeps them.
        let mut new_body = replacement.to_vec();
        if size < total {
            let whole = self.body(direction, total, call)?;
            new_body.extend_from_slice(whole.get(size..).unwrap_or_default());
        }
        let in_callback = self.stream.body_callback.get() == Some(direction);
        let buffered = envoy.body_size(Body::Buffered(direction));
        if buffered > 0 && !envoy.drain_body(Body::Buffered(direction), buffered) {
            return Err(failed(call, "the buffered body could not be drained"));
        }
        if in_callback {
            let received = envoy.body_size(Body::Received(direction));
            if received > 0 && !envoy.drain_body(Body::Received(direction), received) {
                return Err(failed(call, "the received body could not be drained"));
            }
        }
        // In its callback the new body goes out as this chunk (Envoy joins it to what it
        // holds, now nothing); outside it, it becomes the held body.
        let target = if in_callback {
            Body::Received(direction)
        } else {
            Body::Buffered(direction)
        };
        if !new_body.is_empty() && !envoy.append_body(target, &new_body) {
            return Err(failed(call, "the new body could not be appended"));
        }
        Ok(())
    }

    fn metadata(&self, namespace: &str, keys: &[&str]) -> Result<Option<Vec<u8>>, HostError> {
        let envoy = self.envoy("get_metadata_string")?;
        let [key] = keys else {
            // The ABI reads one key of a namespace; a nested value cannot be reached. The
            // configuration refuses such a path (see root.rs), so this is only a safeguard.
            return Err(failed(
                "get_metadata_string",
                "a nested metadata path cannot be read by the native module",
            ));
        };
        if let Some(value) = envoy.metadata_string(MetadataSource::Dynamic, namespace, key) {
            return Ok(Some(value));
        }
        if envoy.metadata_has_key(MetadataSource::Dynamic, namespace, key) {
            // There, but not a string (a number, a list, null): what proxy-wasm reports for a
            // value it cannot hand over, and the pipeline reads as naming nobody.
            return Err(failed("get_metadata_string", "SerializationFailure"));
        }
        Ok(None)
    }
}

impl Host for NativeHost {
    fn request_headers(&self) -> Result<Vec<(String, Vec<u8>)>, HostError> {
        const CALL: &str = "get_headers(request)";
        let headers = self
            .envoy(CALL)?
            .headers(Direction::Request)
            .ok_or_else(|| failed(CALL, "the request headers are not available"))?;
        named(headers, CALL)
    }

    fn set_request_header(&self, name: &str, value: Option<&str>) -> Result<(), HostError> {
        const CALL: &str = "set_header(request)";
        let envoy = self.envoy(CALL)?;
        if envoy.set_header(Direction::Request, name, value.map(str::as_bytes)) {
            // Proxy-wasm has Envoy pick the route again after any request header changes;
            // the route header is one, so the same is asked here.
            envoy.clear_route_cache();
            Ok(())
        } else {
            Err(failed(CALL, "the request headers are not available"))
        }
    }

    fn request_body(&self, size: usize) -> Result<Vec<u8>, HostError> {
        self.body(Direction::Request, size, "get_body(request)")
    }

    fn replace_request_body(&self, size: usize, body: &[u8]) -> Result<(), HostError> {
        self.replace_body(Direction::Request, size, body, "replace_body(request)")
    }

    fn send_reply(&self, answer: &Answer) -> Result<(), HostError> {
        self.envoy("send_response")?;
        let headers = answer
            .headers()
            .iter()
            .map(|(name, value)| ((*name).to_owned(), value.as_bytes().to_vec()))
            .collect();
        self.stream.actions.borrow_mut().push(Action::SendResponse {
            status: u32::from(answer.status()),
            headers,
            body: answer.body().to_vec(),
            details: REPLY_DETAILS.to_owned(),
        });
        Ok(())
    }

    fn property(&self, path: &[&str]) -> Result<Option<Vec<u8>>, HostError> {
        let attribute = |attribute| {
            Ok(self
                .envoy("get_attribute_string")?
                .attribute_string(attribute))
        };
        match path {
            [name] => {
                let envoy = self.envoy("get_filter_state")?;
                Ok(envoy.filter_state(&filter_state_key(name)))
            }
            ["metadata", "filter_metadata", namespace, keys @ ..] => self.metadata(namespace, keys),
            ["response", "code_details"] => attribute(Attribute::ResponseCodeDetails),
            ["connection", "uri_san_peer_certificate"] => {
                attribute(Attribute::ConnectionUriSanPeerCertificate)
            }
            ["upstream", "address"] => attribute(Attribute::UpstreamAddress),
            ["xds", "upstream_host_metadata", "filter_metadata", namespace, key] => Ok(self
                .envoy("get_metadata_string")?
                .metadata_string(MetadataSource::Host, namespace, key)),
            _ => Err(failed(
                "get_property",
                &format!("the native module does not read {}", path.join(".")),
            )),
        }
    }

    fn set_property(&self, path: &[&str], value: &[u8]) -> Result<(), HostError> {
        const CALL: &str = "set_filter_state";
        let [name] = path else {
            return Err(failed(CALL, "only a single-segment name is stored"));
        };
        let envoy = self.envoy(CALL)?;
        if envoy.set_filter_state(&filter_state_key(name), value) {
            Ok(())
        } else {
            Err(failed(CALL, "Envoy refused the value"))
        }
    }

    fn set_response_header(&self, name: &str, value: &str) -> Result<(), HostError> {
        const CALL: &str = "set_header(response)";
        if self.stream.edit_queued_reply(name, Some(value)) {
            return Ok(());
        }
        if self
            .envoy(CALL)?
            .set_header(Direction::Response, name, Some(value.as_bytes()))
        {
            Ok(())
        } else {
            Err(failed(CALL, "the response headers are not available"))
        }
    }

    fn response_headers(&self) -> Result<Vec<(String, Vec<u8>)>, HostError> {
        const CALL: &str = "get_headers(response)";
        let headers = self
            .envoy(CALL)?
            .headers(Direction::Response)
            .ok_or_else(|| failed(CALL, "the response headers are not available"))?;
        named(headers, CALL)
    }

    fn response_body(&self, size: usize) -> Result<Vec<u8>, HostError> {
        self.body(Direction::Response, size, "get_body(response)")
    }

    fn replace_response_body(&self, size: usize, body: &[u8]) -> Result<(), HostError> {
        self.replace_body(Direction::Response, size, body, "replace_body(response)")
    }

    fn remove_response_header(&self, name: &str) -> Result<(), HostError> {
        const CALL: &str = "set_header(response)";
        if self.stream.edit_queued_reply(name, None) {
            return Ok(());
        }
        if self
            .envoy(CALL)?
            .set_header(Direction::Response, name, None)
        {
            Ok(())
        } else {
            Err(failed(CALL, "the response headers are not available"))
        }
    }

    fn now_nanos(&self) -> Result<u64, HostError> {
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Ok(u64::try_from(since_epoch.as_nanos()).unwrap_or(u64::MAX))
    }

    fn shared_data(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), HostError> {
        Ok(shared_data::get(key))
    }

    fn set_shared_data(
        &self,
        key: &str,
        value: &[u8],
        cas: Option<u32>,
    ) -> Result<bool, HostError> {
        Ok(shared_data::set(key, value, cas))
    }

    fn define_metric(&self, kind: MetricKind, name: &str) -> Result<u32, HostError> {
        const CALL: &str = "define_metric";
        let (base, labels) = metrics::split(name)
            .ok_or_else(|| failed(CALL, "the name is not base(.label=value;)*"))?;
        let (template, values) = metrics::template(kind, base, &labels)
            .ok_or_else(|| failed(CALL, "no such metric was defined with the configuration"))?;
        let id = self
            .series
            .define(template, values.into_iter())
            .ok_or_else(|| failed(CALL, "too many series"))?;
        if kind == MetricKind::Counter {
            // Envoy makes a labelled series on its first increment; proxy-wasm's definition
            // makes it at once, so a counter shows 0 until counted. Adding 0 does the same.
            if let Some(envoy) = self.envoy.as_ref() {
                self.series.increment(envoy, id, 0);
            }
        }
        Ok(id)
    }

    fn increment_metric(&self, id: u32, by: u64) -> Result<(), HostError> {
        const CALL: &str = "increment_counter";
        let envoy = self.envoy(CALL)?;
        if self.series.increment(envoy, id, by) {
            Ok(())
        } else {
            Err(failed(CALL, "Envoy refused it"))
        }
    }

    fn record_metric(&self, id: u32, value: u64) -> Result<(), HostError> {
        const CALL: &str = "record_histogram_value";
        let envoy = self.envoy(CALL)?;
        if self.series.record(envoy, id, value) {
            Ok(())
        } else {
            Err(failed(CALL, "Envoy refused it"))
        }
    }

    fn dispatch_http_call(
        &self,
        cluster: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        timeout_ms: u32,
    ) -> Result<u32, HostError> {
        const CALL: &str = "http_callout";
        let id = self
            .envoy(CALL)?
            .http_callout(cluster, headers, body, u64::from(timeout_ms))
            .map_err(|code| failed(CALL, callout_failure(code)))?;
        u32::try_from(id).map_err(|_| failed(CALL, "the call id is out of range"))
    }

    fn http_call_response_headers(&self) -> Result<Vec<(String, Vec<u8>)>, HostError> {
        let held = self.stream.call_answer.borrow();
        match held.as_ref() {
            Some(answer) if answer.success => {
                named(answer.headers.clone(), "http_callout_done(headers)")
            }
            _ => Ok(Vec::new()),
        }
    }

    fn http_call_response_body(&self, size: usize) -> Result<Vec<u8>, HostError> {
        let held = self.stream.call_answer.borrow();
        Ok(held
            .as_ref()
            .filter(|answer| answer.success)
            .map(|answer| answer.body.iter().take(size).copied().collect())
            .unwrap_or_default())
    }

    fn resume_request(&self) -> Result<(), HostError> {
        self.envoy("continue_decoding")?;
        self.stream
            .actions
            .borrow_mut()
            .push(Action::ContinueDecoding);
        Ok(())
    }
}

/// Envoy's reason for a callout it would not start, in words.
fn callout_failure(code: u32) -> &'static str {
    match code {
        1 => "MissingRequiredHeaders",
        2 => "ClusterNotFound",
        3 => "DuplicateCalloutId",
        4 => "CannotCreateRequest",
        _ => "the callout could not be started",
    }
}
