//! Safe handles over Envoy's per-stream filter (`EnvoyFilter`) and per-configuration filter
//! config (`EnvoyFilterConfig`). Each method is one ABI callback: what Envoy lends is copied
//! out before the method returns, so no borrowed Envoy memory outlives the call.

use std::ptr;
use std::sync::{Mutex, PoisonError};

use crate::ffi::{self, EnvoyBuffer, EnvoyHttpHeader, ModuleBuffer, ModuleHttpHeader};

/// A header or body direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Request,
    Response,
}

/// Where a metadata lookup reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetadataSource {
    /// The stream's dynamic metadata (what other filters wrote).
    Dynamic,
    /// The selected upstream host's (`LbEndpoint`) metadata.
    Host,
}

/// The attributes Posturio reads (Envoy's attribute names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attribute {
    /// `response.code_details`
    ResponseCodeDetails,
    /// `connection.uri_san_peer_certificate`
    ConnectionUriSanPeerCertificate,
    /// `upstream.address`
    UpstreamAddress,
}

impl Attribute {
    /// The position in the header's `envoy_dynamic_module_type_attribute_id`.
    fn id(self) -> ffi::AttributeId {
        match self {
            Attribute::ResponseCodeDetails => 16,
            Attribute::ConnectionUriSanPeerCertificate => 37,
            Attribute::UpstreamAddress => 41,
        }
    }
}

fn module_buffer(bytes: &[u8]) -> ModuleBuffer {
    ModuleBuffer {
        ptr: bytes.as_ptr(),
        length: bytes.len(),
    }
}

/// Most label values a metric of ours has; more go through a heap buffer.
const LABELS_ON_STACK: usize = 8;

/// Runs `call` with `labels` as the ABI's buffers (pointer and count), built on the stack:
/// a labelled increment happens several times per request, and a heap buffer per increment
/// was pure overhead.
fn with_label_buffers<R>(labels: &[&str], call: impl FnOnce(*const ModuleBuffer, usize) -> R) -> R {
    let mut on_stack = [module_buffer(&[]); LABELS_ON_STACK];
    if labels.len() > LABELS_ON_STACK {
        let on_heap: Vec<ModuleBuffer> =
            labels.iter().map(|v| module_buffer(v.as_bytes())).collect();
        return call(on_heap.as_ptr(), on_heap.len());
    }
    for (slot, value) in on_stack.iter_mut().zip(labels) {
        *slot = module_buffer(value.as_bytes());
    }
    call(on_stack.as_ptr(), labels.len())
}

/// Copies bytes Envoy lent; a null pointer is empty.
///
/// # Safety
/// `buffer` must come from Envoy in the current hook, pointing at `length` readable bytes.
unsafe fn copy_envoy(ptr: *const u8, length: usize) -> Vec<u8> {
    if ptr.is_null() || length == 0 {
        return Vec::new();
    }
    // SAFETY: the caller's contract: Envoy lent `length` bytes at `ptr`, valid for this hook.
    unsafe { std::slice::from_raw_parts(ptr, length) }.to_vec()
}

/// Envoy's filter for one HTTP stream. Valid from `on_http_filter_new` until
/// `on_http_filter_destroy`: the module keeps it only inside its filter object, which Envoy
/// destroys first. Not `Send`: every call happens on the stream's worker thread.
#[derive(Debug)]
pub struct EnvoyFilter {
    raw: ffi::FilterEnvoyPtr,
}

impl EnvoyFilter {
    /// # Safety
    /// `raw` must be the filter pointer Envoy passed to a hook of this stream.
    pub(crate) unsafe fn from_raw(raw: ffi::FilterEnvoyPtr) -> Self {
        EnvoyFilter { raw }
    }

    /// Another handle to the same stream, for the filter object to keep.
    pub fn handle(&self) -> EnvoyFilter {
        EnvoyFilter { raw: self.raw }
    }

    /// Every header of the request or response, pseudo-headers included, in order.
    pub fn headers(&self, direction: Direction) -> Option<Vec<(Vec<u8>, Vec<u8>)>> {
        let kind = header_type(direction);
        // SAFETY: `raw` is this stream's filter pointer (see `from_raw`).
        let count =
            unsafe { ffi::envoy_dynamic_module_callback_http_get_headers_size(self.raw, kind) };
        let empty = EnvoyHttpHeader {
            key_ptr: ptr::null(),
            key_length: 0,
            value_ptr: ptr::null(),
            value_length: 0,
        };
        let mut raw_headers = vec![empty; count];
        // SAFETY: `raw_headers` holds `count` entries, the size Envoy reported for this map.
        let ok = unsafe {
            ffi::envoy_dynamic_module_callback_http_get_headers(
                self.raw,
                kind,
                raw_headers.as_mut_ptr(),
            )
        };
        if !ok && count > 0 {
            return None;
        }
        let headers = raw_headers
            .iter()
            .map(|header| {
                // SAFETY: Envoy filled each entry with pointers into its header map, valid
                // until the end of this hook; they are copied here.
                unsafe {
                    (
                        copy_envoy(header.key_ptr, header.key_length),
                        copy_envoy(header.value_ptr, header.value_length),
                    )
                }
            })
            .collect();
        Some(headers)
    }

    /// Sets a header, replacing every value it had; `None` removes it.
    pub fn set_header(&self, direction: Direction, name: &str, value: Option<&[u8]>) -> bool {
        let value = match value {
            Some(value) => module_buffer(value),
            None => ModuleBuffer {
                ptr: ptr::null(),
                length: 0,
            },
        };
        // SAFETY: the buffers point at live module memory for the duration of the call.
        unsafe {
            ffi::envoy_dynamic_module_callback_http_set_header(
                self.raw,
                header_type(direction),
                module_buffer(name.as_bytes()),
                value,
            )
        }
    }

    /// Answers the stream locally: status, headers, body, and Envoy's response code details.
    pub fn send_response(
        &self,
        status: u32,
        headers: &[(&str, &[u8])],
        body: &[u8],
        details: &str,
    ) {
        let raw_headers: Vec<ModuleHttpHeader> = headers
            .iter()
            .map(|(name, value)| ModuleHttpHeader {
                key_ptr: name.as_ptr(),
                key_length: name.len(),
                value_ptr: value.as_ptr(),
                value_length: value.len(),
            })
            .collect();
        // SAFETY: every pointer refers to memory borrowed for the duration of the call.
        unsafe {
            ffi::envoy_dynamic_module_callback_http_send_response(
                self.raw,
                status,
                raw_headers.as_ptr(),
                raw_headers.len(),
                module_buffer(body),
                module_buffer(details.as_bytes()),
            )
        }
    }

    /// The size of a body: the bytes buffered so far, or those of the current callback.
    pub fn body_size(&self, body: Body) -> usize {
        // SAFETY: `raw` is this stream's filter pointer.
        unsafe { ffi::envoy_dynamic_module_callback_http_get_body_size(self.raw, body.raw()) }
    }

    /// Appends up to `limit` bytes of a body to `out`; returns how many were appended.
    pub fn read_body(&self, body: Body, out: &mut Vec<u8>, limit: usize) -> usize {
        let kind = body.raw();
        // SAFETY: `raw` is this stream's filter pointer.
        let count =
            unsafe { ffi::envoy_dynamic_module_callback_http_get_body_chunks_size(self.raw, kind) };
        if count == 0 {
            return 0;
        }
        let mut chunks = vec![
            EnvoyBuffer {
                ptr: ptr::null(),
                length: 0,
            };
            count
        ];
        // SAFETY: `chunks` holds `count` entries, the number Envoy reported.
        let ok = unsafe {
            ffi::envoy_dynamic_module_callback_http_get_body_chunks(
                self.raw,
                kind,
                chunks.as_mut_ptr(),
            )
        };
        if !ok {
            return 0;
        }
        let mut appended = 0usize;
        for chunk in &chunks {
            let room = limit.saturating_sub(appended);
            if room == 0 {
                break;
            }
            if chunk.ptr.is_null() {
                continue;
            }
            let take = chunk.length.min(room);
            // SAFETY: Envoy lent `chunk.length` bytes at `chunk.ptr` for this hook; `take`
            // is no more than that.
            let bytes = unsafe { std::slice::from_raw_parts(chunk.ptr, take) };
            out.extend_from_slice(bytes);
            appended = appended.saturating_add(take);
        }
        appended
    }

    /// Appends bytes to a body.
    pub fn append_body(&self, body: Body, data: &[u8]) -> bool {
        // SAFETY: `data` is live module memory for the duration of the call.
        unsafe {
            ffi::envoy_dynamic_module_callback_http_append_body(
                self.raw,
                body.raw(),
                module_buffer(data),
            )
        }
    }

    /// Removes the first `bytes` bytes of a body (all of it when it is shorter).
    pub fn drain_body(&self, body: Body, bytes: usize) -> bool {
        // SAFETY: `raw` is this stream's filter pointer.
        unsafe { ffi::envoy_dynamic_module_callback_http_drain_body(self.raw, body.raw(), bytes) }
    }

    /// Whether the body of this callback is the body an earlier filter buffered (so it is not
    /// to be counted twice).
    pub fn received_is_buffered(&self, direction: Direction) -> bool {
        // SAFETY: `raw` is this stream's filter pointer.
        unsafe {
            match direction {
                Direction::Request => {
                    ffi::envoy_dynamic_module_callback_http_received_buffered_request_body(self.raw)
                }
                Direction::Response => {
                    ffi::envoy_dynamic_module_callback_http_received_buffered_response_body(
                        self.raw,
                    )
                }
            }
        }
    }

    /// A string metadata value; `None` when absent or not a string.
    pub fn metadata_string(
        &self,
        source: MetadataSource,
        namespace: &str,
        key: &str,
    ) -> Option<Vec<u8>> {
        let mut result = EnvoyBuffer {
            ptr: ptr::null(),
            length: 0,
        };
        // SAFETY: the buffers are live for the call; `result` is a valid out pointer.
        let found = unsafe {
            ffi::envoy_dynamic_module_callback_http_get_metadata_string(
                self.raw,
                metadata_source(source),
                module_buffer(namespace.as_bytes()),
                module_buffer(key.as_bytes()),
                &mut result,
            )
        };
        // SAFETY: on success Envoy lent `result.length` bytes at `result.ptr` for this hook.
        found.then(|| unsafe { copy_envoy(result.ptr, result.length) })
    }

    /// Whether a metadata namespace holds `key` at all, whatever its type.
    pub fn metadata_has_key(&self, source: MetadataSource, namespace: &str, key: &str) -> bool {
        let source = metadata_source(source);
        let namespace = module_buffer(namespace.as_bytes());
        // SAFETY: `namespace` is live for the call.
        let count = unsafe {
            ffi::envoy_dynamic_module_callback_http_get_metadata_keys_count(
                self.raw, source, namespace,
            )
        };
        if count == 0 {
            return false;
        }
        let mut keys = vec![
            EnvoyBuffer {
                ptr: ptr::null(),
                length: 0,
            };
            count
        ];
        // SAFETY: `keys` holds `count` entries, the number Envoy reported.
        let ok = unsafe {
            ffi::envoy_dynamic_module_callback_http_get_metadata_keys(
                self.raw,
                source,
                namespace,
                keys.as_mut_ptr(),
            )
        };
        ok && keys.iter().any(|found| {
            // SAFETY: Envoy lent each key for this hook.
            let found = unsafe { copy_envoy(found.ptr, found.length) };
            found == key.as_bytes()
        })
    }

    /// A filter state value stored as bytes; `None` when absent.
    pub fn filter_state(&self, key: &str) -> Option<Vec<u8>> {
        let mut result = EnvoyBuffer {
            ptr: ptr::null(),
            length: 0,
        };
        // SAFETY: the key is live for the call; `result` is a valid out pointer.
        let found = unsafe {
            ffi::envoy_dynamic_module_callback_http_get_filter_state_bytes(
                self.raw,
                module_buffer(key.as_bytes()),
                &mut result,
            )
        };
        // SAFETY: on success Envoy lent `result.length` bytes at `result.ptr` for this hook.
        found.then(|| unsafe { copy_envoy(result.ptr, result.length) })
    }

    /// Stores bytes in the stream's filter state (printable in the access log).
    pub fn set_filter_state(&self, key: &str, value: &[u8]) -> bool {
        // SAFETY: both buffers are live for the call.
        unsafe {
            ffi::envoy_dynamic_module_callback_http_set_filter_state_bytes(
                self.raw,
                module_buffer(key.as_bytes()),
                module_buffer(value),
            )
        }
    }

    /// A string attribute; `None` when absent.
    pub fn attribute_string(&self, attribute: Attribute) -> Option<Vec<u8>> {
        let mut result = EnvoyBuffer {
            ptr: ptr::null(),
            length: 0,
        };
        // SAFETY: `result` is a valid out pointer.
        let found = unsafe {
            ffi::envoy_dynamic_module_callback_http_filter_get_attribute_string(
                self.raw,
                attribute.id(),
                &mut result,
            )
        };
        // SAFETY: on success Envoy lent `result.length` bytes at `result.ptr` for this hook.
        found.then(|| unsafe { copy_envoy(result.ptr, result.length) })
    }

    /// Starts an HTTP call to a cluster; its answer arrives in `HttpFilter::on_callout_done`
    /// with the id returned here. `Err` carries Envoy's init result code.
    pub fn http_callout(
        &self,
        cluster: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        timeout_ms: u64,
    ) -> Result<u64, u32> {
        let raw_headers: Vec<ModuleHttpHeader> = headers
            .iter()
            .map(|(name, value)| ModuleHttpHeader {
                key_ptr: name.as_ptr(),
                key_length: name.len(),
                value_ptr: value.as_ptr(),
                value_length: value.len(),
            })
            .collect();
        let mut id = 0u64;
        // SAFETY: every pointer refers to memory borrowed for the call; `id` is a valid out
        // pointer.
        let result = unsafe {
            ffi::envoy_dynamic_module_callback_http_filter_http_callout(
                self.raw,
                &mut id,
                module_buffer(cluster.as_bytes()),
                raw_headers.as_ptr(),
                raw_headers.len(),
                module_buffer(body),
                timeout_ms,
            )
        };
        if result == ffi::CALLOUT_INIT_SUCCESS {
            Ok(id)
        } else {
            Err(result)
        }
    }

    /// Makes Envoy pick the request's route again (after a header it routes on changed).
    pub fn clear_route_cache(&self) {
        // SAFETY: `raw` is this stream's filter pointer.
        unsafe { ffi::envoy_dynamic_module_callback_http_clear_route_cache(self.raw) }
    }

    /// Resumes a request the filter held.
    pub fn continue_decoding(&self) {
        // SAFETY: `raw` is this stream's filter pointer.
        unsafe { ffi::envoy_dynamic_module_callback_http_filter_continue_decoding(self.raw) }
    }

    /// Resumes a response the filter held.
    pub fn continue_encoding(&self) {
        // SAFETY: `raw` is this stream's filter pointer.
        unsafe { ffi::envoy_dynamic_module_callback_http_filter_continue_encoding(self.raw) }
    }

    /// Adds to a counter defined in the configuration, with its label values.
    pub fn increment_counter(&self, id: usize, labels: &[&str], by: u64) -> bool {
        let result = with_label_buffers(labels, |values, count| {
            // SAFETY: the label buffers and what they point at are live for the call.
            unsafe {
                ffi::envoy_dynamic_module_callback_http_filter_increment_counter(
                    self.raw, id, values, count, by,
                )
            }
        });
        result == ffi::METRICS_SUCCESS
    }

    /// Records a value in a histogram defined in the configuration.
    pub fn record_histogram(&self, id: usize, labels: &[&str], value: u64) -> bool {
        let result = with_label_buffers(labels, |values, count| {
            // SAFETY: the label buffers and what they point at are live for the call.
            unsafe {
                ffi::envoy_dynamic_module_callback_http_filter_record_histogram_value(
                    self.raw, id, values, count, value,
                )
            }
        });
        result == ffi::METRICS_SUCCESS
    }
}

/// Which body a read or write touches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    /// What this callback brought.
    Received(Direction),
    /// What earlier callbacks left buffered.
    Buffered(Direction),
}

impl Body {
    fn raw(self) -> ffi::BodyType {
        match self {
            Body::Received(Direction::Request) => ffi::RECEIVED_REQUEST_BODY,
            Body::Buffered(Direction::Request) => ffi::BUFFERED_REQUEST_BODY,
            Body::Received(Direction::Response) => ffi::RECEIVED_RESPONSE_BODY,
            Body::Buffered(Direction::Response) => ffi::BUFFERED_RESPONSE_BODY,
        }
    }
}

fn header_type(direction: Direction) -> ffi::HeaderType {
    match direction {
        Direction::Request => ffi::REQUEST_HEADER,
        Direction::Response => ffi::RESPONSE_HEADER,
    }
}

fn metadata_source(source: MetadataSource) -> ffi::MetadataSource {
    match source {
        MetadataSource::Dynamic => 0,
        MetadataSource::Host => 3,
    }
}

/// Envoy's configuration object for one filter configuration, during
/// `HttpFilterConfig::new` only: Envoy accepts metric definitions there and nowhere later.
#[derive(Debug)]
pub struct EnvoyFilterConfig {
    raw: ffi::FilterConfigEnvoyPtr,
}

/// What a metric definition makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricType {
    Counter,
    Histogram,
}

impl EnvoyFilterConfig {
    /// # Safety
    /// `raw` must be the config pointer Envoy passed to `on_http_filter_config_new`.
    pub(crate) unsafe fn from_raw(raw: ffi::FilterConfigEnvoyPtr) -> Self {
        EnvoyFilterConfig { raw }
    }

    /// Names this configuration for `with_config_metrics` once it is accepted.
    pub fn id(&self) -> usize {
        self.raw as usize
    }

    /// Adds to a counter this configuration defined, while Envoy creates the configuration.
    pub fn increment_counter(&self, id: usize, labels: &[&str], by: u64) -> bool {
        // `raw` is the configuration Envoy lent this hook, live for as long as `self` is.
        ConfigMetrics { raw: self.raw }.increment_counter(id, labels, by)
    }

    /// Defines a metric with its label names; the id is what the stream handle's
    /// `increment_counter` / `record_histogram` take. `None` when Envoy refuses it.
    pub fn define_metric(&self, kind: MetricType, name: &str, labels: &[&str]) -> Option<usize> {
        let names: Vec<ModuleBuffer> = labels.iter().map(|l| module_buffer(l.as_bytes())).collect();
        let mut id = 0usize;
        // SAFETY: `name`, `names` and what they point at are live for the call; `id` is a
        // valid out pointer.
        let result = unsafe {
            match kind {
                MetricType::Counter => {
                    ffi::envoy_dynamic_module_callback_http_filter_config_define_counter(
                        self.raw,
                        module_buffer(name.as_bytes()),
                        names.as_ptr(),
                        names.len(),
                        &mut id,
                    )
                }
                MetricType::Histogram => {
                    ffi::envoy_dynamic_module_callback_http_filter_config_define_histogram(
                        self.raw,
                        module_buffer(name.as_bytes()),
                        names.as_ptr(),
                        names.len(),
                        &mut id,
                    )
                }
            }
        };
        (result == ffi::METRICS_SUCCESS).then_some(id)
    }
}

/// The configurations Envoy has accepted and not yet destroyed, by `EnvoyFilterConfig::id`:
/// their metrics can be updated from any stream (see `with_config_metrics`).
static LIVE_CONFIGS: Mutex<Vec<usize>> = Mutex::new(Vec::new());

pub(crate) fn config_accepted(raw: ffi::FilterConfigEnvoyPtr) {
    LIVE_CONFIGS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(raw as usize);
}

pub(crate) fn config_destroyed(raw: ffi::FilterConfigEnvoyPtr) {
    LIVE_CONFIGS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .retain(|id| *id != raw as usize);
}

/// The metrics of a live configuration, usable from any stream: a filter whose own
/// configuration's metrics land in another stats scope (an upstream filter's are under its
/// cluster's) records them in this one's.
pub struct ConfigMetrics {
    raw: ffi::FilterConfigEnvoyPtr,
}

impl ConfigMetrics {
    /// Adds to a counter this configuration defined.
    pub fn increment_counter(&self, id: usize, labels: &[&str], by: u64) -> bool {
        let result = with_label_buffers(labels, |values, count| {
            // SAFETY: `raw` is a live configuration (`with_config_metrics` holds the lock that
            // its destruction takes); the label buffers are live for the call.
            unsafe {
                ffi::envoy_dynamic_module_callback_http_filter_config_increment_counter(
                    self.raw, id, values, count, by,
                )
            }
        });
        result == ffi::METRICS_SUCCESS
    }

    /// Records a value in a histogram this configuration defined.
    pub fn record_histogram(&self, id: usize, labels: &[&str], value: u64) -> bool {
        let result = with_label_buffers(labels, |values, count| {
            // SAFETY: as in `increment_counter`.
            unsafe {
                ffi::envoy_dynamic_module_callback_http_filter_config_record_histogram_value(
                    self.raw, id, values, count, value,
                )
            }
        });
        result == ffi::METRICS_SUCCESS
    }
}

/// Runs `f` with the metrics of configuration `id`, if Envoy has not destroyed it; the
/// configuration cannot be destroyed while `f` runs.
pub fn with_config_metrics<R>(id: usize, f: impl FnOnce(&ConfigMetrics) -> R) -> Option<R> {
    let live = LIVE_CONFIGS.lock().unwrap_or_else(PoisonError::into_inner);
    let raw = live.iter().find(|live| **live == id)?;
    let metrics = ConfigMetrics {
        raw: *raw as ffi::FilterConfigEnvoyPtr,
    };
    Some(f(&metrics))
}
