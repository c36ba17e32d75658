//! The forward step: an allowed request is sent on as the policy decided — the new body with
//! its length, the new path, the provider's (or the pool's) cluster in the route header, and
//! for a pool the plan in filter state.

use super::host::{Host, HostError};
use super::state::Forward;
use crate::policy::plan::PLAN_PROPERTY;

/// What the forward step needs besides the decision.
pub(super) struct Route<'a> {
    /// The header the Envoy route reads its cluster from.
    pub header: &'a str,
    /// The size of the buffered body, replaced whole when the body changes.
    pub body_size: usize,
    /// The client sent `accept-encoding`, which must go when the response is read for usage.
    pub accept_encoding_sent: bool,
}

/// Applies the forward decision to the request Envoy holds.
pub(super) fn forward<H: Host>(
    host: &H,
    forward: &Forward,
    route: &Route,
) -> Result<(), HostError> {
    if let Some(body) = &forward.body {
        host.replace_request_body(route.body_size, body)?;
        // The length changed: say the new one, and drop any chunked framing so the upstream
        // request can never carry two conflicting lengths.
        host.set_request_header("transfer-encoding", None)?;
        host.set_request_header("content-length", Some(&body.len().to_string()))?;
    }
    if let Some(path) = &forward.path {
        host.set_request_header(":path", Some(path))?;
    }
    if forward.usage.is_some() && route.accept_encoding_sent {
        // Usage is read from the response, which a compressed body would hide.
        host.set_request_header("accept-encoding", None)?;
    }
    if let Some(plan) = &forward.plan {
        // Filter state, read by the upstream filter of every attempt; never on the wire.
        let Some(json) = plan.to_json() else {
            return Err(HostError {
                call: "set_property(posturio_plan)",
                status: "the plan could not be written".to_owned(),
            });
        };
        host.set_property(&[PLAN_PROPERTY], &json)?;
    }
    host.set_request_header(route.header, Some(&forward.cluster))
}
