//! The event hooks' bodies, generic over the module's `HttpFilterConfig`. The
//! `export_http_filter!` macro defines each `#[no_mangle]` symbol as a one-line call to the
//! function of the same name here.
//!
//! Every hook runs the module's code inside `catch_unwind`: nothing unwinds into Envoy. A panic
//! on a stream answers it 500 (fail closed: nothing held is forwarded) and marks the filter
//! failed, after which each hook lets the stream (now carrying that answer) pass untouched. A
//! panic where no answer is possible (configuration, destruction, completion) is logged; a
//! configuration that panics is rejected.

use std::any::Any;
use std::ffi::c_char;
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::ffi;
use crate::filter::{EnvoyFilter, EnvoyFilterConfig};
use crate::log::{log, Level};
use crate::{
    BodyStatus, CalloutAnswer, HeadersStatus, HttpFilter, HttpFilterConfig, TrailersStatus,
};

/// What the module returns from `on_program_init`: the ABI version it was written against.
static ABI_VERSION: &[u8] = b"v0.2.0\0";

/// The reply a stream gets when the module panicked on it.
const PANIC_BODY: &[u8] = br#"{"error":{"type":"internal_error","code":"internal_error","message":"the gateway failed while handling this request; it was not forwarded"}}"#;

/// The module's filter and whether a panic ended its part in the stream.
struct Slot<F> {
    filter: F,
    failed: bool,
}

fn panic_message(payload: &(dyn Any + Send)) -> &str {
    if let Some(message) = payload.downcast_ref::<&str>() {
        message
    } else if let Some(message) = payload.downcast_ref::<String>() {
        message
    } else {
        "a panic without a message"
    }
}

pub fn program_init() -> *const c_char {
    ABI_VERSION.as_ptr().cast()
}

/// # Safety
/// Called by Envoy only, with its own pointers and buffers.
pub unsafe fn config_new<C: HttpFilterConfig>(
    envoy_config: ffi::FilterConfigEnvoyPtr,
    name: ffi::EnvoyBuffer,
    config: ffi::EnvoyBuffer,
) -> ffi::FilterConfigModulePtr {
    // SAFETY: Envoy lends `name` and `config` for the duration of this hook.
    let (name, config) = unsafe { (envoy_slice(name), envoy_slice(config)) };
    // SAFETY: `envoy_config` is the pointer Envoy passed to this hook.
    let handle = unsafe { EnvoyFilterConfig::from_raw(envoy_config) };
    match catch_unwind(AssertUnwindSafe(|| C::new(&handle, name, config))) {
        Ok(Some(config)) => Box::into_raw(Box::new(config)).cast_const().cast(),
        Ok(None) => std::ptr::null(),
        Err(payload) => {
            log(
                Level::Error,
                &format!(
                    "{}panic in on_http_filter_config_new: {}; the configuration is rejected",
                    C::LOG_PREFIX,
                    panic_message(payload.as_ref())
                ),
            );
            std::ptr::null()
        }
    }
}

/// # Safety
/// `config` must be a pointer `config_new::<C>` returned, not yet destroyed.
pub unsafe fn config_destroy<C: HttpFilterConfig>(config: ffi::FilterConfigModulePtr) {
    if config.is_null() {
        return;
    }
    // SAFETY: `config` came from `Box::into_raw` in `config_new::<C>` and Envoy destroys it
    // once.
    let config = unsafe { Box::from_raw(config.cast_mut().cast::<C>()) };
    if let Err(payload) = catch_unwind(AssertUnwindSafe(|| drop(config))) {
        log(
            Level::Error,
            &format!(
                "{}panic in on_http_filter_config_destroy: {}",
                C::LOG_PREFIX,
                panic_message(payload.as_ref())
            ),
        );
    }
}

/// # Safety
/// `config` must be a live pointer from `config_new::<C>`; `envoy_filter` Envoy's stream.
pub unsafe fn filter_new<C: HttpFilterConfig>(
    config: ffi::FilterConfigModulePtr,
    envoy_filter: ffi::FilterEnvoyPtr,
) -> ffi::FilterModulePtr {
    if config.is_null() {
        return std::ptr::null();
    }
    // SAFETY: `config` came from `config_new::<C>` and outlives every stream Envoy creates
    // from it; `C: Sync` makes the shared reference safe across workers.
    let config = unsafe { &*config.cast::<C>() };
    // SAFETY: `envoy_filter` is the stream pointer Envoy passed to this hook.
    let envoy = unsafe { EnvoyFilter::from_raw(envoy_filter) };
    match catch_unwind(AssertUnwindSafe(|| config.new_filter(&envoy))) {
        Ok(Some(filter)) => Box::into_raw(Box::new(Slot {
            filter,
            failed: false,
        }))
        .cast_const()
        .cast(),
        Ok(None) => std::ptr::null(),
        Err(payload) => {
            log(
                Level::Error,
                &format!(
                    "{}panic in on_http_filter_new: {}; the stream is closed",
                    C::LOG_PREFIX,
                    panic_message(payload.as_ref())
                ),
            );
            std::ptr::null()
        }
    }
}

/// # Safety
/// `filter` must be a pointer `filter_new::<C>` returned, not yet destroyed.
pub unsafe fn filter_destroy<C: HttpFilterConfig>(filter: ffi::FilterModulePtr) {
    if filter.is_null() {
        return;
    }
    // SAFETY: `filter` came from `Box::into_raw` in `filter_new::<C>`; Envoy destroys once.
    let slot = unsafe { Box::from_raw(filter.cast_mut().cast::<Slot<C::Filter>>()) };
    if let Err(payload) = catch_unwind(AssertUnwindSafe(|| drop(slot))) {
        log(
            Level::Error,
            &format!(
                "{}panic in on_http_filter_destroy: {}",
                C::LOG_PREFIX,
                panic_message(payload.as_ref())
            ),
        );
    }
}

/// Runs one stream hook: the filter's code inside `catch_unwind`; after a panic, the 500
/// answer (when `answer` is set) and `failed`, which later hooks honour with `passed`.
///
/// # Safety
/// `filter` must be a live pointer from `filter_new::<C>` (or null); `envoy_filter` the
/// stream's Envoy pointer.
unsafe fn on_stream<C: HttpFilterConfig, R>(
    hook: &str,
    envoy_filter: ffi::FilterEnvoyPtr,
    filter: ffi::FilterModulePtr,
    passed: R,
    answered: R,
    run: impl FnOnce(&mut C::Filter, &EnvoyFilter) -> R,
) -> R {
    if filter.is_null() {
        return passed;
    }
    // SAFETY: `filter` came from `filter_new::<C>`; Envoy calls one hook of a stream at a
    // time, on its worker thread, so this is the only reference.
    let slot = unsafe { &mut *filter.cast_mut().cast::<Slot<C::Filter>>() };
    if slot.failed {
        return passed;
    }
    // SAFETY: `envoy_filter` is the stream pointer Envoy passed to this hook.
    let envoy = unsafe { EnvoyFilter::from_raw(envoy_filter) };
    match catch_unwind(AssertUnwindSafe(|| run(&mut slot.filter, &envoy))) {
        Ok(result) => result,
        Err(payload) => {
            slot.failed = true;
            log(
                Level::Error,
                &format!(
                    "{}panic in {hook}: {}; the request is answered 500 and not forwarded",
                    C::LOG_PREFIX,
                    panic_message(payload.as_ref())
                ),
            );
            envoy.send_response(
                500,
                &[("content-type", b"application/json")],
                PANIC_BODY,
                "posturio_panic",
            );
            answered
        }
    }
}

fn headers_status(status: HeadersStatus) -> ffi::HeadersStatus {
    match status {
        HeadersStatus::Continue => ffi::HEADERS_CONTINUE,
        HeadersStatus::StopIteration => ffi::HEADERS_STOP_ITERATION,
    }
}

fn body_status(status: BodyStatus) -> ffi::BodyStatus {
    match status {
        BodyStatus::Continue => ffi::BODY_CONTINUE,
        BodyStatus::StopIterationAndBuffer => ffi::BODY_STOP_ITERATION_AND_BUFFER,
        BodyStatus::StopIterationNoBuffer => ffi::BODY_STOP_ITERATION_NO_BUFFER,
    }
}

fn trailers_status(status: TrailersStatus) -> ffi::TrailersStatus {
    match status {
        TrailersStatus::Continue => ffi::TRAILERS_CONTINUE,
        TrailersStatus::StopIteration => ffi::TRAILERS_STOP_ITERATION,
    }
}

/// # Safety
/// As `on_stream`.
pub unsafe fn request_headers<C: HttpFilterConfig>(
    envoy_filter: ffi::FilterEnvoyPtr,
    filter: ffi::FilterModulePtr,
    end_of_stream: bool,
) -> ffi::HeadersStatus {
    // SAFETY: forwarded from Envoy's call.
    unsafe {
        on_stream::<C, _>(
            "on_request_headers",
            envoy_filter,
            filter,
            ffi::HEADERS_CONTINUE,
            ffi::HEADERS_STOP_ITERATION,
            |f, envoy| headers_status(f.on_request_headers(envoy, end_of_stream)),
        )
    }
}

/// # Safety
/// As `on_stream`.
pub unsafe fn request_body<C: HttpFilterConfig>(
    envoy_filter: ffi::FilterEnvoyPtr,
    filter: ffi::FilterModulePtr,
    end_of_stream: bool,
) -> ffi::BodyStatus {
    // SAFETY: forwarded from Envoy's call.
    unsafe {
        on_stream::<C, _>(
            "on_request_body",
            envoy_filter,
            filter,
            ffi::BODY_CONTINUE,
            ffi::BODY_STOP_ITERATION_NO_BUFFER,
            |f, envoy| body_status(f.on_request_body(envoy, end_of_stream)),
        )
    }
}

/// # Safety
/// As `on_stream`.
pub unsafe fn request_trailers<C: HttpFilterConfig>(
    envoy_filter: ffi::FilterEnvoyPtr,
    filter: ffi::FilterModulePtr,
) -> ffi::TrailersStatus {
    // SAFETY: forwarded from Envoy's call.
    unsafe {
        on_stream::<C, _>(
            "on_request_trailers",
            envoy_filter,
            filter,
            ffi::TRAILERS_CONTINUE,
            ffi::TRAILERS_STOP_ITERATION,
            |f, envoy| trailers_status(f.on_request_trailers(envoy)),
        )
    }
}

/// # Safety
/// As `on_stream`.
pub unsafe fn response_headers<C: HttpFilterConfig>(
    envoy_filter: ffi::FilterEnvoyPtr,
    filter: ffi::FilterModulePtr,
    end_of_stream: bool,
) -> ffi::HeadersStatus {
    // SAFETY: forwarded from Envoy's call.
    unsafe {
        on_stream::<C, _>(
            "on_response_headers",
            envoy_filter,
            filter,
            ffi::HEADERS_CONTINUE,
            ffi::HEADERS_STOP_ITERATION,
            |f, envoy| headers_status(f.on_response_headers(envoy, end_of_stream)),
        )
    }
}

/// # Safety
/// As `on_stream`.
pub unsafe fn response_body<C: HttpFilterConfig>(
    envoy_filter: ffi::FilterEnvoyPtr,
    filter: ffi::FilterModulePtr,
    end_of_stream: bool,
) -> ffi::BodyStatus {
    // SAFETY: forwarded from Envoy's call.
    unsafe {
        on_stream::<C, _>(
            "on_response_body",
            envoy_filter,
            filter,
            ffi::BODY_CONTINUE,
            ffi::BODY_STOP_ITERATION_NO_BUFFER,
            |f, envoy| body_status(f.on_response_body(envoy, end_of_stream)),
        )
    }
}

/// # Safety
/// As `on_stream`.
pub unsafe fn response_trailers<C: HttpFilterConfig>(
    envoy_filter: ffi::FilterEnvoyPtr,
    filter: ffi::FilterModulePtr,
) -> ffi::TrailersStatus {
    // SAFETY: forwarded from Envoy's call.
    unsafe {
        on_stream::<C, _>(
            "on_response_trailers",
            envoy_filter,
            filter,
            ffi::TRAILERS_CONTINUE,
            ffi::TRAILERS_STOP_ITERATION,
            |f, envoy| trailers_status(f.on_response_trailers(envoy)),
        )
    }
}

/// # Safety
/// As `on_stream`. No answer is possible once the stream is complete: a panic is logged.
pub unsafe fn stream_complete<C: HttpFilterConfig>(
    envoy_filter: ffi::FilterEnvoyPtr,
    filter: ffi::FilterModulePtr,
) {
    if filter.is_null() {
        return;
    }
    // SAFETY: as in `on_stream`: one hook at a time on the stream's worker.
    let slot = unsafe { &mut *filter.cast_mut().cast::<Slot<C::Filter>>() };
    if slot.failed {
        return;
    }
    // SAFETY: `envoy_filter` is the stream pointer Envoy passed to this hook.
    let envoy = unsafe { EnvoyFilter::from_raw(envoy_filter) };
    if let Err(payload) = catch_unwind(AssertUnwindSafe(|| slot.filter.on_stream_complete(&envoy)))
    {
        slot.failed = true;
        log(
            Level::Error,
            &format!(
                "{}panic in on_stream_complete: {}",
                C::LOG_PREFIX,
                panic_message(payload.as_ref())
            ),
        );
    }
}

/// # Safety
/// As `on_stream`; `headers` and `body_chunks` as Envoy passed them (possibly null).
#[allow(clippy::too_many_arguments)]
pub unsafe fn callout_done<C: HttpFilterConfig>(
    envoy_filter: ffi::FilterEnvoyPtr,
    filter: ffi::FilterModulePtr,
    callout_id: u64,
    result: ffi::CalloutResult,
    headers: *const ffi::EnvoyHttpHeader,
    headers_size: usize,
    body_chunks: *const ffi::EnvoyBuffer,
    body_chunks_size: usize,
) {
    // SAFETY: Envoy lends both arrays for the duration of this hook.
    let answer =
        unsafe { callout_answer(result, headers, headers_size, body_chunks, body_chunks_size) };
    // SAFETY: forwarded from Envoy's call.
    unsafe {
        on_stream::<C, _>(
            "on_http_callout_done",
            envoy_filter,
            filter,
            (),
            (),
            |f, envoy| f.on_callout_done(envoy, callout_id, &answer),
        )
    }
}

/// Copies a callout's answer out of Envoy's memory.
///
/// # Safety
/// `headers` / `body_chunks` must point at `headers_size` / `body_chunks_size` entries
/// Envoy lent for this hook, or be null.
unsafe fn callout_answer(
    result: ffi::CalloutResult,
    headers: *const ffi::EnvoyHttpHeader,
    headers_size: usize,
    body_chunks: *const ffi::EnvoyBuffer,
    body_chunks_size: usize,
) -> CalloutAnswer {
    let mut answer = CalloutAnswer {
        success: result == ffi::CALLOUT_SUCCESS,
        headers: Vec::new(),
        body: Vec::new(),
    };
    if !headers.is_null() {
        // SAFETY: the caller's contract: `headers_size` entries at `headers`.
        let headers = unsafe { std::slice::from_raw_parts(headers, headers_size) };
        for header in headers {
            // SAFETY: each entry points into Envoy's answer, valid for this hook.
            let pair = unsafe {
                (
                    envoy_bytes(header.key_ptr, header.key_length),
                    envoy_bytes(header.value_ptr, header.value_length),
                )
            };
            answer.headers.push(pair);
        }
    }
    if !body_chunks.is_null() {
        // SAFETY: the caller's contract: `body_chunks_size` entries at `body_chunks`.
        let chunks = unsafe { std::slice::from_raw_parts(body_chunks, body_chunks_size) };
        for chunk in chunks {
            // SAFETY: each chunk points into Envoy's answer, valid for this hook.
            answer
                .body
                .extend_from_slice(&unsafe { envoy_bytes(chunk.ptr, chunk.length) });
        }
    }
    answer
}

/// # Safety
/// `ptr` must point at `length` bytes Envoy lent for this hook, or be null.
unsafe fn envoy_bytes(ptr: *const u8, length: usize) -> Vec<u8> {
    if ptr.is_null() || length == 0 {
        return Vec::new();
    }
    // SAFETY: the caller's contract.
    unsafe { std::slice::from_raw_parts(ptr, length) }.to_vec()
}

/// # Safety
/// `buffer` must be a buffer Envoy lent for this hook.
unsafe fn envoy_slice<'a>(buffer: ffi::EnvoyBuffer) -> &'a [u8] {
    if buffer.ptr.is_null() || buffer.length == 0 {
        return &[];
    }
    // SAFETY: the caller's contract; the slice is used only within the hook.
    unsafe { std::slice::from_raw_parts(buffer.ptr, buffer.length) }
}

/// A local reply passes through untouched.
pub fn local_reply() -> ffi::LocalReplyStatus {
    ffi::LOCAL_REPLY_CONTINUE
}
