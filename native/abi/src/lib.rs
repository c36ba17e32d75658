//! `envoy_abi`: a small, audited Rust layer over Envoy's dynamic module ABI for HTTP filters.
//!
//! Written against Envoy's `source/extensions/dynamic_modules/abi/abi.h` as shipped in Envoy
//! 1.40.0 (ABI `v0.2.0`, commit 9e5580933739775e8bce696a57a2e1bc99368f23). A module built
//! with it loads in the Envoy minor it was built for (and the next, as Envoy promises).
//!
//! The only `unsafe` code of the project lives here: the raw declarations (`ffi`), the safe
//! handles that copy what Envoy lends (`filter`), the log callback (`log`) and the hook
//! bodies (`hooks`), each block with its `// SAFETY:` reason. A module implements the safe
//! traits below and exports them with `export_http_filter!`; every hook catches panics, so
//! nothing unwinds into Envoy.

mod ffi;
pub mod filter;
#[doc(hidden)]
pub mod hooks;
pub mod log;

pub use filter::{
    with_config_metrics, Attribute, Body, ConfigMetrics, Direction, EnvoyFilter, EnvoyFilterConfig,
    MetadataSource, MetricType,
};
pub use log::{log, log_enabled, Level};

#[doc(hidden)]
pub mod __raw {
    //! The types the exported hook signatures name; for `export_http_filter!` only.
    pub use crate::ffi::{
        BodyStatus, CalloutResult, EnvoyBuffer, EnvoyHttpHeader, FilterConfigEnvoyPtr,
        FilterConfigModulePtr, FilterEnvoyPtr, FilterModulePtr, HeadersStatus, LocalReplyStatus,
        PerRouteConfigModulePtr, StreamResetReason, TrailersStatus,
    };
}

/// What a headers hook tells Envoy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadersStatus {
    Continue,
    /// Hold the headers (the body is still buffered, or the filter answered).
    StopIteration,
}

/// What a body hook tells Envoy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyStatus {
    Continue,
    /// Hold and keep this chunk with the ones before it.
    StopIterationAndBuffer,
    /// Hold without buffering (the filter answered).
    StopIterationNoBuffer,
}

/// What a trailers hook tells Envoy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrailersStatus {
    Continue,
    StopIteration,
}

/// The answer to an HTTP callout, copied out of Envoy.
#[derive(Debug, Clone, Default)]
pub struct CalloutAnswer {
    /// False when the call failed without an answer (reset, or an answer over the limit).
    pub success: bool,
    /// Its headers, `:status` included.
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
    pub body: Vec<u8>,
}

/// A call the module queues during a hook; made once the hook has returned (see `hooks`).
#[derive(Debug, Clone)]
pub enum Action {
    /// Answers the stream locally.
    SendResponse {
        status: u32,
        headers: Vec<(String, Vec<u8>)>,
        body: Vec<u8>,
        /// Envoy's response code details.
        details: String,
    },
    /// Lets a request the filter held go on.
    ContinueDecoding,
}

/// One filter configuration: made on Envoy's main thread, shared by every worker.
pub trait HttpFilterConfig: Sized + Send + Sync + 'static {
    type Filter: HttpFilter;
    /// Prefixes the lines this crate logs for the module (a panic report).
    const LOG_PREFIX: &'static str = "";
    /// Reads the filter's name and configuration; `None` makes Envoy reject it.
    fn new(envoy: &EnvoyFilterConfig, name: &[u8], config: &[u8]) -> Option<Self>;
    /// The filter of one stream; `None` makes Envoy close the stream.
    fn new_filter(&self, envoy: &EnvoyFilter) -> Option<Self::Filter>;
}

/// One stream's filter. Each hook defaults to letting the stream through.
pub trait HttpFilter: 'static {
    fn on_request_headers(&mut self, _envoy: &EnvoyFilter, _end_of_stream: bool) -> HeadersStatus {
        HeadersStatus::Continue
    }
    fn on_request_body(&mut self, _envoy: &EnvoyFilter, _end_of_stream: bool) -> BodyStatus {
        BodyStatus::Continue
    }
    fn on_request_trailers(&mut self, _envoy: &EnvoyFilter) -> TrailersStatus {
        TrailersStatus::Continue
    }
    fn on_response_headers(&mut self, _envoy: &EnvoyFilter, _end_of_stream: bool) -> HeadersStatus {
        HeadersStatus::Continue
    }
    fn on_response_body(&mut self, _envoy: &EnvoyFilter, _end_of_stream: bool) -> BodyStatus {
        BodyStatus::Continue
    }
    fn on_response_trailers(&mut self, _envoy: &EnvoyFilter) -> TrailersStatus {
        TrailersStatus::Continue
    }
    /// The stream is done, before the access log is written.
    fn on_stream_complete(&mut self, _envoy: &EnvoyFilter) {}
    /// An HTTP callout this stream started has its answer (or failed).
    fn on_callout_done(&mut self, _envoy: &EnvoyFilter, _callout_id: u64, _answer: &CalloutAnswer) {
    }
    /// The calls queued during the hook that just returned, in order. The module makes no
    /// call from a hook that makes Envoy re-enter the stream (a local reply, resuming it):
    /// it queues them here.
    fn take_actions(&mut self) -> Vec<Action> {
        Vec::new()
    }
}

/// Defines every event hook Envoy looks up for an HTTP filter module, dispatching to the
/// given `HttpFilterConfig` type. Use it once per module, at the crate root.
#[macro_export]
macro_rules! export_http_filter {
    ($config:ty) => {
        const _: () = {
            use $crate::__raw::*;
            use $crate::hooks;

            #[no_mangle]
            extern "C" fn envoy_dynamic_module_on_program_init() -> *const ::std::ffi::c_char {
                hooks::program_init()
            }

            #[no_mangle]
            unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_new(
                envoy: FilterConfigEnvoyPtr,
                name: EnvoyBuffer,
                config: EnvoyBuffer,
            ) -> FilterConfigModulePtr {
                hooks::config_new::<$config>(envoy, name, config)
            }

            #[no_mangle]
            unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_destroy(
                config: FilterConfigModulePtr,
            ) {
                hooks::config_destroy::<$config>(config)
            }

            #[no_mangle]
            extern "C" fn envoy_dynamic_module_on_http_filter_per_route_config_new(
                _name: EnvoyBuffer,
                _config: EnvoyBuffer,
            ) -> PerRouteConfigModulePtr {
                // No per-route configuration: Envoy rejects one.
                ::std::ptr::null()
            }

            #[no_mangle]
            extern "C" fn envoy_dynamic_module_on_http_filter_per_route_config_destroy(
                _config: PerRouteConfigModulePtr,
            ) {
            }

            #[no_mangle]
            unsafe extern "C" fn envoy_dynamic_module_on_http_filter_new(
                config: FilterConfigModulePtr,
                envoy: FilterEnvoyPtr,
            ) -> FilterModulePtr {
                hooks::filter_new::<$config>(config, envoy)
            }

            #[no_mangle]
            unsafe extern "C" fn envoy_dynamic_module_on_http_filter_request_headers(
                envoy: FilterEnvoyPtr,
                filter: FilterModulePtr,
                end_of_stream: bool,
            ) -> HeadersStatus {
                hooks::request_headers::<$config>(envoy, filter, end_of_stream)
            }

            #[no_mangle]
            unsafe extern "C" fn envoy_dynamic_module_on_http_filter_request_body(
                envoy: FilterEnvoyPtr,
                filter: FilterModulePtr,
                end_of_stream: bool,
            ) -> BodyStatus {
                hooks::request_body::<$config>(envoy, filter, end_of_stream)
            }

            #[no_mangle]
            unsafe extern "C" fn envoy_dynamic_module_on_http_filter_request_trailers(
                envoy: FilterEnvoyPtr,
                filter: FilterModulePtr,
            ) -> TrailersStatus {
                hooks::request_trailers::<$config>(envoy, filter)
            }

            #[no_mangle]
            unsafe extern "C" fn envoy_dynamic_module_on_http_filter_response_headers(
                envoy: FilterEnvoyPtr,
                filter: FilterModulePtr,
                end_of_stream: bool,
            ) -> HeadersStatus {
                hooks::response_headers::<$config>(envoy, filter, end_of_stream)
            }

            #[no_mangle]
            unsafe extern "C" fn envoy_dynamic_module_on_http_filter_response_body(
                envoy: FilterEnvoyPtr,
                filter: FilterModulePtr,
                end_of_stream: bool,
            ) -> BodyStatus {
                hooks::response_body::<$config>(envoy, filter, end_of_stream)
            }

            #[no_mangle]
            unsafe extern "C" fn envoy_dynamic_module_on_http_filter_response_trailers(
                envoy: FilterEnvoyPtr,
                filter: FilterModulePtr,
            ) -> TrailersStatus {
                hooks::response_trailers::<$config>(envoy, filter)
            }

            #[no_mangle]
            unsafe extern "C" fn envoy_dynamic_module_on_http_filter_stream_complete(
                envoy: FilterEnvoyPtr,
                filter: FilterModulePtr,
            ) {
                hooks::stream_complete::<$config>(envoy, filter)
            }

            #[no_mangle]
            unsafe extern "C" fn envoy_dynamic_module_on_http_filter_destroy(filter: FilterModulePtr) {
                hooks::filter_destroy::<$config>(filter)
            }

            #[no_mangle]
            unsafe extern "C" fn envoy_dynamic_module_on_http_filter_http_callout_done(
                envoy: FilterEnvoyPtr,
                filter: FilterModulePtr,
                callout_id: u64,
                result: CalloutResult,
                headers: *const EnvoyHttpHeader,
                headers_size: usize,
                body_chunks: *const EnvoyBuffer,
                body_chunks_size: usize,
            ) {
                hooks::callout_done::<$config>(
                    envoy,
                    filter,
                    callout_id,
                    result,
                    headers,
                    headers_size,
                    body_chunks,
                    body_chunks_size,
                )
            }

            #[no_mangle]
            extern "C" fn envoy_dynamic_module_on_http_filter_local_reply(
                _envoy: FilterEnvoyPtr,
                _filter: FilterModulePtr,
                _response_code: u32,
                _details: EnvoyBuffer,
                _reset_imminent: bool,
            ) -> LocalReplyStatus {
                hooks::local_reply()
            }

            // Hooks Envoy resolves for every HTTP filter module, unused here: streamed
            // callouts, scheduling and watermarks.
            #[no_mangle]
            extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_headers(
                _envoy: FilterEnvoyPtr,
                _filter: FilterModulePtr,
                _stream_id: u64,
                _headers: *const EnvoyHttpHeader,
                _headers_size: usize,
                _end_stream: bool,
            ) {
            }
            #[no_mangle]
            extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_data(
                _envoy: FilterEnvoyPtr,
                _filter: FilterModulePtr,
                _stream_id: u64,
                _data: *const EnvoyBuffer,
                _data_count: usize,
                _end_stream: bool,
            ) {
            }
            #[no_mangle]
            extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_trailers(
                _envoy: FilterEnvoyPtr,
                _filter: FilterModulePtr,
                _stream_id: u64,
                _trailers: *const EnvoyHttpHeader,
                _trailers_size: usize,
            ) {
            }
            #[no_mangle]
            extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_complete(
                _envoy: FilterEnvoyPtr,
                _filter: FilterModulePtr,
                _stream_id: u64,
            ) {
            }
            #[no_mangle]
            extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_reset(
                _envoy: FilterEnvoyPtr,
                _filter: FilterModulePtr,
                _stream_id: u64,
                _reason: StreamResetReason,
            ) {
            }
            #[no_mangle]
            extern "C" fn envoy_dynamic_module_on_http_filter_scheduled(
                _envoy: FilterEnvoyPtr,
                _filter: FilterModulePtr,
                _event_id: u64,
            ) {
            }
            #[no_mangle]
            extern "C" fn envoy_dynamic_module_on_http_filter_downstream_above_write_buffer_high_watermark(
                _envoy: FilterEnvoyPtr,
                _filter: FilterModulePtr,
            ) {
            }
            #[no_mangle]
            extern "C" fn envoy_dynamic_module_on_http_filter_downstream_below_write_buffer_low_watermark(
                _envoy: FilterEnvoyPtr,
                _filter: FilterModulePtr,
            ) {
            }
            #[no_mangle]
            extern "C" fn envoy_dynamic_module_on_http_filter_config_scheduled(
                _envoy: FilterConfigEnvoyPtr,
                _config: FilterConfigModulePtr,
                _event_id: u64,
            ) {
            }
            #[no_mangle]
            extern "C" fn envoy_dynamic_module_on_http_filter_config_http_callout_done(
                _envoy: FilterConfigEnvoyPtr,
                _config: FilterConfigModulePtr,
                _callout_id: u64,
                _result: CalloutResult,
                _headers: *const EnvoyHttpHeader,
                _headers_size: usize,
                _body_chunks: *const EnvoyBuffer,
                _body_chunks_size: usize,
            ) {
            }
            #[no_mangle]
            extern "C" fn envoy_dynamic_module_on_http_filter_config_http_stream_headers(
                _envoy: FilterConfigEnvoyPtr,
                _config: FilterConfigModulePtr,
                _stream_id: u64,
                _headers: *const EnvoyHttpHeader,
                _headers_size: usize,
                _end_stream: bool,
            ) {
            }
            #[no_mangle]
            extern "C" fn envoy_dynamic_module_on_http_filter_config_http_stream_data(
                _envoy: FilterConfigEnvoyPtr,
                _config: FilterConfigModulePtr,
                _stream_id: u64,
                _data: *const EnvoyBuffer,
                _data_count: usize,
                _end_stream: bool,
            ) {
            }
            #[no_mangle]
            extern "C" fn envoy_dynamic_module_on_http_filter_config_http_stream_trailers(
                _envoy: FilterConfigEnvoyPtr,
                _config: FilterConfigModulePtr,
                _stream_id: u64,
                _trailers: *const EnvoyHttpHeader,
                _trailers_size: usize,
            ) {
            }
            #[no_mangle]
            extern "C" fn envoy_dynamic_module_on_http_filter_config_http_stream_complete(
                _envoy: FilterConfigEnvoyPtr,
                _config: FilterConfigModulePtr,
                _stream_id: u64,
            ) {
            }
            #[no_mangle]
            extern "C" fn envoy_dynamic_module_on_http_filter_config_http_stream_reset(
                _envoy: FilterConfigEnvoyPtr,
                _config: FilterConfigModulePtr,
                _stream_id: u64,
                _reason: StreamResetReason,
            ) {
            }
        };
    };
}
