//! The panic probe (cargo feature `panic-probe`, test builds only): a request carrying
//! `x-posturio-panic-probe` panics where its policy would run, so the real-Envoy test can
//! check that a panic fails closed (500, nothing forwarded) and that Envoy keeps serving.

use envoy_abi::{Direction, EnvoyFilter};

/// The header that asks for the panic.
pub const HEADER: &str = "x-posturio-panic-probe";

/// Whether the request asks for the panic.
pub fn asked(envoy: &EnvoyFilter) -> bool {
    envoy
        .headers(Direction::Request)
        .is_some_and(|headers| headers.iter().any(|(name, _)| name == HEADER.as_bytes()))
}

/// Panics, on purpose, when asked.
#[allow(clippy::panic)]
pub fn panic_if(asked: bool) {
    if asked {
        panic!("the panic probe ({HEADER}) fired");
    }
}
