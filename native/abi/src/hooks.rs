//! The event hooks' bodies, generic over the module's `HttpFilterConfig`. The
//! `export_http_filter!` macro defines each `#[no_mangle]` symbol as a one-line call to the
//! function of the same name here.
//!
//! Every hook runs the module's code inside `catch_unwind`: nothing unwinds into Envoy. A panic
//! on a stream answers it 500 (fail closed: nothing held is forwarded) and marks the filter
//! failed, after which each hook lets the stream (now carrying that answer) pass untouched. A
//! panic where no answer is possible (configuration, destruction, completion) is logged; a
//! configuration that panics is rejected.
//!
//! Envoy runs a local reply's response hooks (and may deliver a callout that fails at once)
//! inside the call that caused it. So the module never makes such calls from its hooks: it
//! queues them (`HttpFilter::take_actions`), and they run here once its hook has returned, as
//! proxy-wasm defers a local reply to the end of the callback. A hook Envoy re-enters while
//! the module's code runs is not handed to it: a callout's answer waits its turn, anything
//! else passes.

use std::any::Any;
use std::cell::{Cell, RefCell, UnsafeCell};
use std::collections::VecDeque;
use std::ffi::c_char;
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::ffi;
use crate::filter::{EnvoyFilter, EnvoyFilterConfig};
use crate::log::{log, Level};
use crate::{
    Action, BodyStatus, CalloutAnswer, HeadersStatus, HttpFilter, HttpFilterConfig, TrailersStatus,
};

/// What the module returns from `on_program_init`: the ABI version it was written against.
static ABI_VERSION: &[u8] = b"v0.2.0\0";

/// The reply a stream gets when the module panicked on it.
const PANIC_BODY: &[u8] = br#"{"error":{"type":"internal_error","code":"internal_error","message":"the gateway failed while handling this request; it was not forwarded"}}"#;

/// The module's configuration and Envoy's, for unregistering it on destruction.
struct ConfigSlot<C> {
    envoy: ffi::FilterConfigEnvoyPtr,
    config: C,
}

/// The hook after which no reply is possible.
const STREAM_COMPLETE: &str = "on_stream_complete";

/// The module's filter and the hooks' bookkeeping for it. Reached through a shared
/// reference: Envoy may re-enter a hook while another runs (see the module header), and
/// `busy` keeps the filter itself to one caller at a time.
struct Slot<F> {
    filter: UnsafeCell<F>,
    /// A panic ended the filter's part in the stream.
    failed: Cell<bool>,
    /// The module's code is running.
    busy: Cell<bool>,
    /// Callout answers that arrived while the module's code ran.
    deferred: RefCell<VecDeque<(u64, CalloutAnswer)>>,
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
        Ok(Some(config)) => {
            crate::filter::config_accepted(envoy_config);
            Box::into_raw(Box::new(ConfigSlot {
                envoy: envoy_config,
                config,
            }))
            .cast_const()
            .cast()
        }
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
    let slot = unsafe { Box::from_raw(config.cast_mut().cast::<ConfigSlot<C>>()) };
    // First, so that no stream uses its metrics once Envoy goes on to free it.
    crate::filter::config_destroyed(slot.envoy);
    if let Err(payload) = catch_unwind(AssertUnwindSafe(|| drop(slot))) {
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
    let config = unsafe { &(*config.cast::<ConfigSlot<C>>()).config };
    // SAFETY: `envoy_filter` is the stream pointer Envoy passed to this hook.
    let envoy = unsafe { EnvoyFilter::from_raw(envoy_filter) };
    match catch_unwind(AssertUnwindSafe(|| config.new_filter(&envoy))) {
        Ok(Some(filter)) => Box::into_raw(Box::new(Slot {
            filter: UnsafeCell::new(filter),
            failed: Cell::new(false),
            busy: Cell::new(false),
            deferred: RefCell::new(VecDeque::new()),
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

/// The stream's slot, unless a panic ended the filter's part.
///
/// # Safety
/// `filter` must be a live pointer from `filter_new::<C>` (or null).
unsafe fn slot<'a, C: HttpFilterConfig>(
    filter: ffi::FilterModulePtr,
) -> Option<&'a Slot<C::Filter>> {
    if filter.is_null() {
        return None;
    }
    // SAFETY: `filter` came from `filter_new::<C>` and lives until `filter_destroy`, which
    // Envoy calls after every other hook of the stream.
    let slot = unsafe { &*filter.cast::<Slot<C::Filter>>() };
    (!slot.failed.get()).then_some(slot)
}

/// Runs the module's code for one hook inside `catch_unwind`, with `busy` set. After a
/// panic: the filter is failed, the panic logged, the stream answered 500 unless it is
/// complete (`hook` is then `on_stream_complete`: nobody is left to answer); `None`.
fn guarded<C: HttpFilterConfig, R>(
    hook: &str,
    slot: &Slot<C::Filter>,
    envoy: &EnvoyFilter,
    run: impl FnOnce(&mut C::Filter, &EnvoyFilter) -> R,
) -> Option<R> {
    slot.busy.set(true);
    let result = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: `busy` was clear (every caller checks), so no other reference to the
        // filter exists; this one ends with the closure.
        let filter = unsafe { &mut *slot.filter.get() };
        run(filter, envoy)
    }));
    slot.busy.set(false);
    match result {
        Ok(result) => Some(result),
        Err(payload) => {
            slot.failed.set(true);
            slot.deferred.borrow_mut().clear();
            let complete = hook == STREAM_COMPLETE;
            log(
                Level::Error,
                &format!(
                    "{}panic in {hook}: {}; {}",
                    C::LOG_PREFIX,
                    panic_message(payload.as_ref()),
                    if complete {
                        "the stream was already complete"
                    } else {
                        "the request is answered 500 and not forwarded"
                    }
                ),
            );
            if !complete {
                envoy.send_response(
                    500,
                    &[("content-type", b"application/json")],
                    PANIC_BODY,
                    "posturio_panic",
                );
            }
            None
        }
    }
}

/// Once the module's hook has returned: the calls it queued, then any callout answer that
/// arrived meanwhile (and what that queued), until none is left.
fn settle<C: HttpFilterConfig>(slot: &Slot<C::Filter>, envoy: &EnvoyFilter) {
    loop {
        let Some(actions) = guarded::<C, _>("take_actions", slot, envoy, |f, _| f.take_actions())
        else {
            return;
        };
        for action in actions {
            match action {
                Action::SendResponse {
                    status,
                    headers,
                    body,
                    details,
                } => {
                    let headers: Vec<(&str, &[u8])> = headers
                        .iter()
                        .map(|(name, value)| (name.as_str(), value.as_slice()))
                        .collect();
                    envoy.send_response(status, &headers, &body, &details);
                }
                Action::ContinueDecoding => envoy.continue_decoding(),
            }
        }
        let next = slot.deferred.borrow_mut().pop_front();
        let Some((callout_id, answer)) = next else {
            return;
        };
        if slot.failed.get() {
            return;
        }
        guarded::<C, _>("on_http_callout_done", slot, envoy, |f, envoy| {
            f.on_callout_done(envoy, callout_id, &answer)
        });
    }
}

/// Runs one stream hook: `passed` when the filter is failed or busy, `answered` after a
/// panic, else the module's answer (with its queued calls made).
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
    // SAFETY: the caller's contract.
    let Some(slot) = (unsafe { slot::<C>(filter) }) else {
        return passed;
    };
    if slot.busy.get() {
        // Envoy re-entered the stream from a call the module made: a reply it queued is
        // being sent, and passes untouched.
        return passed;
    }
    // SAFETY: `envoy_filter` is the stream pointer Envoy passed to this hook.
    let envoy = unsafe { EnvoyFilter::from_raw(envoy_filter) };
    match guarded::<C, _>(hook, slot, &envoy, run) {
        Some(result) => {
            settle::<C>(slot, &envoy);
            if slot.failed.get() {
                answered
            } else {
                result
            }
        }
        None => answered,
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
/// As `on_stream`. The stream is over: a panic here is logged (the 500 sent then reaches
/// nobody).
pub unsafe fn stream_complete<C: HttpFilterConfig>(
    envoy_filter: ffi::FilterEnvoyPtr,
    filter: ffi::FilterModulePtr,
) {
    // SAFETY: forwarded from Envoy's call.
    unsafe {
        on_stream::<C, _>(STREAM_COMPLETE, envoy_filter, filter, (), (), |f, envoy| {
            f.on_stream_complete(envoy)
        })
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
