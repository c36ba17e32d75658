//! Envoy's log, through the ABI: lines go to Envoy's `dynamic_modules` logger at Envoy's level.

use crate::ffi::{self, ModuleBuffer};

/// Envoy's log levels, in the header's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
    Critical,
}

impl Level {
    fn raw(self) -> ffi::LogLevel {
        match self {
            Level::Trace => 0,
            Level::Debug => 1,
            Level::Info => 2,
            Level::Warn => 3,
            Level::Error => 4,
            Level::Critical => 5,
        }
    }
}

/// Writes one line to Envoy's log.
pub fn log(level: Level, message: &str) {
    let buffer = ModuleBuffer {
        ptr: message.as_ptr(),
        length: message.len(),
    };
    // SAFETY: `buffer` points at `message`, live for the call; Envoy copies it.
    unsafe { ffi::envoy_dynamic_module_callback_log(level.raw(), buffer) }
}

/// Whether Envoy would write a line at `level` (so a message need not be formatted).
pub fn log_enabled(level: Level) -> bool {
    // SAFETY: a plain query with no pointers.
    unsafe { ffi::envoy_dynamic_module_callback_log_enabled(level.raw()) }
}
