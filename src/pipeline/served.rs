//! Who answered a forwarded request. For a model served through a pool cluster the upstream
//! filter of the last attempt names the serving provider in filter state (`posturio_served`),
//! with the number of attempts (`posturio_attempts`); the record, the metric labels and the
//! settlement then name that provider. An answer Envoy made itself (every target failed to
//! connect, no healthy upstream, a timeout) is replaced, for every forwarded request, by one
//! error in the caller's shape with Envoy's status.

use super::host::Host;
use crate::policy::plan::{ATTEMPTS_PROPERTY, SERVED_PROPERTY};
use crate::policy::shorten::loggable;
use crate::policy::{ApiFamily, Code, Policy, Reply};

/// `response.code_details` of an answer a provider sent (Envoy's `via_upstream`).
pub(super) const VIA_UPSTREAM: &[u8] = b"via_upstream";

/// A forwarded request for a pooled model: what its response side needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Pooled {
    pub model: String,
    pub cluster: String,
}

/// The serving target, as the upstream filter wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ServedBy {
    pub provider: String,
    /// The provider's name for the model.
    pub upstream_model: Option<String>,
    pub attempts: u32,
}

/// The target the upstream filter names, or `None` when no upstream filter ran (or it named
/// a provider that is not one of the model's targets, which it never does).
pub(super) fn served_by<H: Host>(
    host: &H,
    policy: Option<&Policy>,
    pooled: &Pooled,
) -> Option<ServedBy> {
    let provider = host.property(&[SERVED_PROPERTY]).ok().flatten()?;
    let provider = String::from_utf8(provider).ok()?;
    let policy = policy?;
    let model = policy.models.get(&pooled.model)?;
    let target = model.pool.as_ref()?.targets.iter().find(|target| {
        policy
            .providers
            .get(target.provider)
            .is_some_and(|known| known.name == provider)
    })?;
    let attempts = host
        .property(&[ATTEMPTS_PROPERTY])
        .ok()
        .flatten()
        .and_then(|bytes| std::str::from_utf8(&bytes).ok()?.parse::<u32>().ok())
        .unwrap_or(1);
    Some(ServedBy {
        upstream_model: Some(
            target
                .upstream_model
                .clone()
                .unwrap_or_else(|| pooled.model.clone()),
        ),
        provider,
        attempts,
    })
}

/// A pool cluster answered, but no Posturio upstream filter ran: the answer came from a
/// target the plan never prepared, so it does not reach the client.
pub(super) fn no_upstream_filter(shape: ApiFamily, pooled: &Pooled) -> Reply {
    Reply::new(
        Code::InternalError,
        shape,
        format!(
            "the pool cluster {} has no Posturio upstream filter; add the filter with \
             {{\"role\": \"upstream\"}} to the cluster's http_filters",
            loggable(&pooled.cluster)
        ),
    )
    .with_status(502)
}

/// Envoy answered in the provider's stead: one error in the caller's shape, Envoy's status
/// kept.
pub(super) fn upstream_unavailable(
    shape: ApiFamily,
    model: Option<&str>,
    details: Option<&[u8]>,
    status: u16,
) -> Reply {
    let details = details.map_or("unknown".to_owned(), |details| {
        loggable(&String::from_utf8_lossy(details))
    });
    let model = model.map_or("(none)".to_owned(), loggable);
    let status = if (400..=599).contains(&status) {
        status
    } else {
        503
    };
    Reply::new(
        Code::UpstreamUnavailable,
        shape,
        format!("no provider could answer for model {model}: {details}"),
    )
    .with_status(status)
}
