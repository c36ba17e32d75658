//! `WasmHost`: the pipeline's host trait over proxy-wasm's host calls.
//!
//! It calls `proxy_wasm::hostcalls` directly and reads headers as bytes: the SDK's trait
//! helpers unwrap the host's answers and its string reads unwrap UTF-8 decoding, and a panic
//! would trap the VM. Every failed call becomes a `HostError` naming it.

use std::time::{Duration, UNIX_EPOCH};

use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, MapType, MetricType, Status};

use crate::pipeline::{Answer, Host, HostError, MetricKind};

pub struct WasmHost;

fn failed(call: &'static str) -> impl Fn(Status) -> HostError {
    move |status| HostError {
        call,
        status: format!("{status:?}"),
    }
}

impl Host for WasmHost {
    fn dispatch_http_call(
        &self,
        cluster: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        timeout_ms: u32,
    ) -> Result<u32, HostError> {
        // Through `hostcalls`, which registers the token with the SDK's dispatcher so the
        // answer reaches this HTTP context's `on_http_call_response`.
        hostcalls::dispatch_http_call(
            cluster,
            headers.to_vec(),
            Some(body),
            Vec::new(),
            Duration::from_millis(u64::from(timeout_ms)),
        )
        .map_err(failed("dispatch_http_call"))
    }

    fn http_call_response_headers(&self) -> Result<Vec<(String, Vec<u8>)>, HostError> {
        hostcalls::get_map_bytes(MapType::HttpCallResponseHeaders)
            .map_err(failed("get_map_bytes(call response headers)"))
    }

    fn http_call_response_body(&self, size: usize) -> Result<Vec<u8>, HostError> {
        hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, size)
            .map(Option::unwrap_or_default)
            .map_err(failed("get_buffer(call response body)"))
    }

    fn resume_request(&self) -> Result<(), HostError> {
        hostcalls::resume_http_request().map_err(failed("resume_http_request"))
    }

    fn request_headers(&self) -> Result<Vec<(String, Vec<u8>)>, HostError> {
        hostcalls::get_map_bytes(MapType::HttpRequestHeaders)
            .map_err(failed("get_map_bytes(request headers)"))
    }

    fn set_request_header(&self, name: &str, value: Option<&str>) -> Result<(), HostError> {
        hostcalls::set_map_value_bytes(MapType::HttpRequestHeaders, name, value.map(str::as_bytes))
            .map_err(failed("set_map_value_bytes(request header)"))
    }

    fn request_body(&self, size: usize) -> Result<Vec<u8>, HostError> {
        hostcalls::get_buffer(BufferType::HttpRequestBody, 0, size)
            .map(Option::unwrap_or_default)
            .map_err(failed("get_buffer(request body)"))
    }

    fn replace_request_body(&self, size: usize, body: &[u8]) -> Result<(), HostError> {
        hostcalls::set_buffer(BufferType::HttpRequestBody, 0, size, body)
            .map_err(failed("set_buffer(request body)"))
    }

    fn send_reply(&self, answer: &Answer) -> Result<(), HostError> {
        let headers = answer
            .headers()
            .iter()
            .map(|(name, value)| (*name, value.as_str()))
            .collect();
        hostcalls::send_http_response(u32::from(answer.status()), headers, Some(answer.body()))
            .map_err(failed("send_http_response"))
    }

    fn property(&self, path: &[&str]) -> Result<Option<Vec<u8>>, HostError> {
        hostcalls::get_property(path.to_vec()).map_err(failed("get_property"))
    }

    fn set_property(&self, path: &[&str], value: &[u8]) -> Result<(), HostError> {
        hostcalls::set_property(path.to_vec(), Some(value)).map_err(failed("set_property"))
    }

    fn set_response_header(&self, name: &str, value: &str) -> Result<(), HostError> {
        hostcalls::set_map_value(MapType::HttpResponseHeaders, name, Some(value))
            .map_err(failed("set_map_value(response header)"))
    }

    fn response_headers(&self) -> Result<Vec<(String, Vec<u8>)>, HostError> {
        hostcalls::get_map_bytes(MapType::HttpResponseHeaders)
            .map_err(failed("get_map_bytes(response headers)"))
    }

    fn response_body(&self, size: usize) -> Result<Vec<u8>, HostError> {
        hostcalls::get_buffer(BufferType::HttpResponseBody, 0, size)
            .map(Option::unwrap_or_default)
            .map_err(failed("get_buffer(response body)"))
    }

    fn replace_response_body(&self, size: usize, body: &[u8]) -> Result<(), HostError> {
        hostcalls::set_buffer(BufferType::HttpResponseBody, 0, size, body)
            .map_err(failed("set_buffer(response body)"))
    }

    fn remove_response_header(&self, name: &str) -> Result<(), HostError> {
        hostcalls::set_map_value(MapType::HttpResponseHeaders, name, None)
            .map_err(failed("set_map_value(response header)"))
    }

    fn now_nanos(&self) -> Result<u64, HostError> {
        let since_epoch = hostcalls::get_current_time()
            .map_err(failed("get_current_time"))?
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Ok(u64::try_from(since_epoch.as_nanos()).unwrap_or(u64::MAX))
    }

    fn shared_data(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), HostError> {
        hostcalls::get_shared_data(key).map_err(failed("get_shared_data"))
    }

    fn set_shared_data(
        &self,
        key: &str,
        value: &[u8],
        cas: Option<u32>,
    ) -> Result<bool, HostError> {
        match hostcalls::set_shared_data(key, Some(value), cas) {
            Ok(()) => Ok(true),
            Err(Status::CasMismatch) => Ok(false),
            Err(status) => Err(failed("set_shared_data")(status)),
        }
    }

    fn define_metric(&self, kind: MetricKind, name: &str) -> Result<u32, HostError> {
        let kind = match kind {
            MetricKind::Counter => MetricType::Counter,
            MetricKind::Histogram => MetricType::Histogram,
        };
        hostcalls::define_metric(kind, name).map_err(failed("define_metric"))
    }

    fn increment_metric(&self, id: u32, by: u64) -> Result<(), HostError> {
        let by = i64::try_from(by).unwrap_or(i64::MAX);
        hostcalls::increment_metric(id, by).map_err(failed("increment_metric"))
    }

    fn record_metric(&self, id: u32, value: u64) -> Result<(), HostError> {
        hostcalls::record_metric(id, value).map_err(failed("record_metric"))
    }
}
