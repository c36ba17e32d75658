//! What the pipeline needs from its host (Envoy, through an adapter), as one small trait:
//! headers and bodies, a local reply, stream properties, shared counters, metrics, the clock
//! and calls to guard services. The proxy-wasm adapter implements it in `crate::wasm::host`; `fake_host` implements
//! it for tests and `posturio eval`.

use std::fmt;

use super::answer::Answer;

/// A host call that failed, named for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostError {
    pub call: &'static str,
    pub status: String,
}

impl fmt::Display for HostError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "host call {} failed: {}", self.call, self.status)
    }
}

pub trait Host {
    /// Every request header, pseudo-headers included, in order, duplicates kept.
    fn request_headers(&self) -> Result<Vec<(String, Vec<u8>)>, HostError>;
    /// Sets a request header, replacing every value it had; `None` removes it.
    fn set_request_header(&self, name: &str, value: Option<&str>) -> Result<(), HostError>;
    /// The first `size` bytes of the buffered request body.
    fn request_body(&self, size: usize) -> Result<Vec<u8>, HostError>;
    /// Replaces the first `size` bytes of the buffered request body (all of it) with `body`.
    fn replace_request_body(&self, size: usize, body: &[u8]) -> Result<(), HostError>;
    /// Answers the request locally with a recorded answer (see `answer`): its status,
    /// headers and body, nothing else.
    fn send_reply(&self, answer: &Answer) -> Result<(), HostError>;
    /// A stream property, such as dynamic metadata another filter wrote; `None` when absent.
    fn property(&self, path: &[&str]) -> Result<Option<Vec<u8>>, HostError>;
    /// Stores a value in the stream's filter state, for Envoy's access log.
    fn set_property(&self, path: &[&str], value: &[u8]) -> Result<(), HostError>;
    /// Sets a response header, replacing any value the upstream sent.
    fn set_response_header(&self, name: &str, value: &str) -> Result<(), HostError>;
    /// Every response header, in order: one host call for all of them.
    fn response_headers(&self) -> Result<Vec<(String, Vec<u8>)>, HostError>;
    /// The response body chunk Envoy is passing through (`size` bytes).
    fn response_body(&self, size: usize) -> Result<Vec<u8>, HostError>;
    /// Replaces the response body chunk Envoy is passing through (`size` bytes).
    fn replace_response_body(&self, size: usize, body: &[u8]) -> Result<(), HostError>;
    /// Removes a response header.
    fn remove_response_header(&self, name: &str) -> Result<(), HostError>;
    /// Wall-clock time, in nanoseconds since the Unix epoch.
    fn now_nanos(&self) -> Result<u64, HostError>;
    /// A value shared by every worker of this Envoy, with its compare-and-swap token.
    fn shared_data(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), HostError>;
    /// Stores a shared value if it was not changed since `cas` was read; `Ok(false)` when it
    /// was, so the caller can read again and retry.
    fn set_shared_data(&self, key: &str, value: &[u8], cas: Option<u32>)
        -> Result<bool, HostError>;
    /// Defines (or finds) a metric by its full name.
    fn define_metric(&self, kind: MetricKind, name: &str) -> Result<u32, HostError>;
    /// Adds to a counter.
    fn increment_metric(&self, id: u32, by: u64) -> Result<(), HostError>;
    /// Records one value in a histogram.
    fn record_metric(&self, id: u32, value: u64) -> Result<(), HostError>;
    /// Starts an HTTP call to an Envoy cluster (a guard) while the request stays paused; its
    /// answer arrives as `Request::on_guard_answer` with the token returned here.
    fn dispatch_http_call(
        &self,
        cluster: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        timeout_ms: u32,
    ) -> Result<u32, HostError>;
    /// The headers of the call answer being delivered, `:status` included; empty when the
    /// call failed without an answer.
    fn http_call_response_headers(&self) -> Result<Vec<(String, Vec<u8>)>, HostError>;
    /// The first `size` bytes of the body of the call answer being delivered.
    fn http_call_response_body(&self, size: usize) -> Result<Vec<u8>, HostError>;
    /// Lets a request paused on its guard calls go on to its upstream.
    fn resume_request(&self) -> Result<(), HostError>;
}

/// The metric types the pipeline uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MetricKind {
    Counter,
    Histogram,
}
