//! What the HTTP filter needs from Envoy, behind a small trait so the state machine can be
//! tested on the host with a fake.
//!
//! The Wasm implementation calls `proxy_wasm::hostcalls` directly and reads headers as bytes:
//! the SDK's trait helpers unwrap the host's answers and its string reads unwrap UTF-8
//! decoding, and a panic would trap the VM.

use std::fmt;

use crate::policy::Reply;

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
    /// Answers the request locally.
    fn send_reply(&self, reply: &Reply) -> Result<(), HostError>;
    /// A stream property, such as dynamic metadata another filter wrote; `None` when absent.
    fn property(&self, path: &[&str]) -> Result<Option<Vec<u8>>, HostError>;
    /// Stores a value in the stream's filter state, for Envoy's access log.
    fn set_property(&self, path: &[&str], value: &[u8]) -> Result<(), HostError>;
    /// Sets a response header, replacing any value the upstream sent.
    fn set_response_header(&self, name: &str, value: &str) -> Result<(), HostError>;
}

#[cfg(target_arch = "wasm32")]
pub use wasm::WasmHost;

#[cfg(target_arch = "wasm32")]
mod wasm {
    use proxy_wasm::hostcalls;
    use proxy_wasm::types::{BufferType, MapType, Status};

    use super::{Host, HostError};
    use crate::policy::Reply;

    pub struct WasmHost;

    fn failed(call: &'static str) -> impl Fn(Status) -> HostError {
        move |status| HostError {
            call,
            status: format!("{status:?}"),
        }
    }

    impl Host for WasmHost {
        fn request_headers(&self) -> Result<Vec<(String, Vec<u8>)>, HostError> {
            hostcalls::get_map_bytes(MapType::HttpRequestHeaders)
                .map_err(failed("get_map_bytes(request headers)"))
        }

        fn set_request_header(&self, name: &str, value: Option<&str>) -> Result<(), HostError> {
            hostcalls::set_map_value_bytes(
                MapType::HttpRequestHeaders,
                name,
                value.map(str::as_bytes),
            )
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

        fn send_reply(&self, reply: &Reply) -> Result<(), HostError> {
            let body = reply.body();
            let headers = reply.headers();
            let headers = headers
                .iter()
                .map(|(name, value)| (*name, value.as_str()))
                .collect();
            hostcalls::send_http_response(u32::from(reply.status()), headers, Some(&body))
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
    }
}
