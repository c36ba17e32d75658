//! The request pipeline: a request's whole life — headers, body, forward or answer, response,
//! settlement — as named steps over the small `Host` trait, in pure Rust. Adapters (the
//! proxy-wasm filter in `crate::wasm`) only move bytes and call the driver; `posturio eval`
//! runs the same driver over `FakeHost`.
//!
//! The order of the steps is in `driver.rs`. A refusal can only reach the client through
//! `answer::answer`, which records it first (see `answer.rs`).

pub mod answer;
mod answer_array;
mod answer_inspection;
mod approval;
pub mod attempt;
mod budget;
pub mod classification;
pub mod configure;
pub mod decision;
pub mod driver;
mod endpoint;
#[cfg(not(target_arch = "wasm32"))]
pub mod fake_host;
mod forward;
mod guards;
pub mod host;
mod identity;
mod inspection;
pub mod metrics;
mod model_list;
mod record;
mod refusals;
mod request_limits;
mod response;
mod rewrite;
mod served;
mod settle;
pub mod state;

pub use answer::{Answer, Refusal};
pub use attempt::Attempt;
/// What a budgeted request reserves, as `posturio replay` simulates budgets over a log.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) use budget::estimate as reservation_estimate;
pub use configure::{configure, configure_role, Configured};
pub use driver::Request;
#[cfg(not(target_arch = "wasm32"))]
pub use fake_host::FakeHost;
pub use host::{Host, HostError, MetricKind};
pub use state::{Decision, Facts, Forward, Pending};

/// What the adapter tells its host once a callback is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Pass the request or response on.
    Continue,
    /// Hold it: the body is still being buffered, or the request was answered locally.
    Pause,
}
