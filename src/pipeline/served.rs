//! Who answered a forwarded request. For a model served through a pool cluster the upstream
//! filter of the last attempt names the serving provider in filter state (`posturio_served`),
//! with the number of attempts (`posturio_attempts`); the record, the metric labels and the
//! settlement then name that provider. An answer Envoy made itself (every target failed to
//! connect, no healthy upstream, a timeout) is replaced, for every forwarded request, by one
//! error in the caller's shape with Envoy's status. An answer the upstream filter made when
//! it refused an attempt (`posturio_refused`: nothing reached a provider) is recorded as that
//! refusal, answered in the caller's shape, and charged nothing.

use super::host::Host;
use super::record::{Recorder, ServedBy};
use crate::policy::plan::{misconfigured, ATTEMPTS_PROPERTY, REFUSED_PROPERTY, SERVED_PROPERTY};
use crate::policy::shorten::loggable;
use crate::policy::{ApiFamily, Code, Policy, Reply};

/// `response.code_details` of an answer a provider sent (Envoy's `via_upstream`).
pub(super) const VIA_UPSTREAM: &[u8] = b"via_upstream";

/// Whether Envoy's own answer says no provider answered: a connection that failed or reset
/// before a response, no healthy host, a timeout, an overflow (Envoy's
/// `StreamInfo::ResponseCodeDetails`, such as `upstream_reset_before_response_started{..}`,
/// `no_healthy_upstream`, `upstream_response_timeout`). Another filter's own answer (a rate
/// limit's 429, an authorization denial) is that filter's decision, and passes as it is.
fn no_provider_answered(details: &[u8]) -> bool {
    const EXACT: [&[u8]; 5] = [
        b"no_healthy_upstream",
        b"cluster_not_found",
        b"maintenance_mode",
        b"overflow",
        b"upstream_overflow",
    ];
    details.starts_with(b"upstream_") || EXACT.contains(&details)
}

/// A forwarded request for a pooled model: what its response side needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Pooled {
    pub model: String,
    pub cluster: String,
}

/// The target the upstream filter names, or `None` when no upstream filter ran (or it named
/// a provider that is not one of the model's targets, which it never does).
fn served_by<H: Host>(host: &H, policy: Option<&Policy>, pooled: &Pooled) -> Option<ServedBy> {
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
    let attempts = attempts_so_far(host).max(1);
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

/// What the response headers say of who answered a forwarded request.
pub(super) struct Answered<'a> {
    /// `response.code_details`, when Envoy gave it.
    pub details: Option<&'a [u8]>,
    pub shape: ApiFamily,
    pub model: Option<&'a str>,
    pub pooled: Option<&'a Pooled>,
}

/// The attempts the upstream filter counted (`posturio_attempts`), 0 when none.
fn attempts_so_far<H: Host>(host: &H) -> u32 {
    host.property(&[ATTEMPTS_PROPERTY])
        .ok()
        .flatten()
        .and_then(|bytes| std::str::from_utf8(&bytes).ok()?.parse::<u32>().ok())
        .unwrap_or(0)
}

/// The gateway's answer in the stead of a forwarded request's response.
pub(super) struct Replacement {
    pub reply: Reply,
    /// The upstream filter refused the first attempt: no provider got the request, so
    /// nothing is charged.
    pub reached_no_provider: bool,
}

impl Answered<'_> {
    /// The gateway's answer that replaces the response, if one must: `upstream_unavailable`
    /// when Envoy answered because no provider did, the upstream filter's refusal in the
    /// caller's shape, 502 when a pool answered without its upstream filter. For a pool's
    /// provider answer, the serving provider is recorded.
    pub(super) fn replacement<H: Host>(
        &self,
        host: &H,
        policy: Option<&Policy>,
        recorder: &mut Recorder,
    ) -> Option<Replacement> {
        let replaced = |reply| {
            Some(Replacement {
                reply,
                reached_no_provider: false,
            })
        };
        if let Some(details) = self.details.filter(|details| no_provider_answered(details)) {
            return replaced(upstream_unavailable(
                self.shape,
                self.model,
                Some(details),
                response_status(host),
            ));
        }
        if self.details != Some(VIA_UPSTREAM) {
            // A local answer: the upstream filter's when it refused the attempt (Envoy 1.40
            // gives no code details for it), or another filter's, which is that filter's
            // decision and is kept. Read only here: a provider's answer costs no host call.
            let refused = host.property(&[REFUSED_PROPERTY]).ok().flatten()?;
            log::debug!(
                "the upstream filter refused the request ({})",
                loggable(&String::from_utf8_lossy(&refused))
            );
            let status = match response_status(host) {
                status @ 400..=599 => status,
                _ => 500,
            };
            return Some(Replacement {
                reply: Reply::new(
                    Code::InternalError,
                    self.shape,
                    misconfigured(self.model, recorder.request_id.as_deref()),
                )
                .with_status(status),
                // A refusal on a retry follows an attempt that reached a provider: that one
                // may cost, and is charged as any answer whose usage is unknown.
                reached_no_provider: attempts_so_far(host) <= 1,
            });
        }
        let pooled = self.pooled?;
        match served_by(host, policy, pooled) {
            Some(served) => {
                recorder.served(host, &served);
                None
            }
            None => {
                log::error!(
                    "request id {}: the pool cluster {} answered without Posturio's upstream \
                     filter; add the filter with {{\"role\": \"upstream\"}} to the cluster's \
                     http_filters",
                    recorder.request_id.as_deref().unwrap_or("none"),
                    loggable(&pooled.cluster)
                );
                replaced(no_upstream_filter(self.shape, pooled, recorder))
            }
        }
    }
}

/// The response's status, for an answer Envoy made itself; 0 when unreadable.
fn response_status<H: Host>(host: &H) -> u16 {
    host.response_headers()
        .ok()
        .and_then(|headers| {
            let (_, value) = headers.iter().find(|(name, _)| name == ":status")?;
            std::str::from_utf8(value).ok()?.parse::<u16>().ok()
        })
        .unwrap_or(0)
}

/// A pool cluster answered, but no Posturio upstream filter ran: the answer came from a
/// target the plan never prepared, so it does not reach the client. The cluster is named in
/// the log only.
fn no_upstream_filter(shape: ApiFamily, pooled: &Pooled, recorder: &Recorder) -> Reply {
    Reply::new(
        Code::InternalError,
        shape,
        misconfigured(Some(&pooled.model), recorder.request_id.as_deref()),
    )
    .with_status(502)
}

/// Why no provider answered, in plain words for the client, from Envoy's code details
/// (`upstream_reset_before_response_started{remote_connection_failure|TLS_error:...}`,
/// `upstream_per_try_idle_timeout`, ...). The details themselves, which can name Envoy's
/// internals (TLS errors, addresses), go only to the log.
fn plain_reason(details: &[u8]) -> &'static str {
    let has = |part: &[u8]| details.windows(part.len()).any(|window| window == part);
    if has(b"overflow") {
        "too many requests in flight"
    } else if has(b"timeout") {
        "timeout"
    } else if has(b"connection_failure") || has(b"connect_error") {
        "connection failure"
    } else if has(b"reset") || has(b"termination") {
        "connection reset"
    } else if has(b"no_healthy_upstream") || has(b"cluster_not_found") || has(b"maintenance_mode") {
        "no healthy provider"
    } else {
        "no answer"
    }
}

/// Envoy answered in the provider's stead: one error in the caller's shape, Envoy's status
/// kept.
fn upstream_unavailable(
    shape: ApiFamily,
    model: Option<&str>,
    details: Option<&[u8]>,
    status: u16,
) -> Reply {
    let model = model.map_or("(none)".to_owned(), loggable);
    log::warn!(
        "no provider answered for model {model}: {}",
        details.map_or("unknown".to_owned(), |details| loggable(
            &String::from_utf8_lossy(details)
        ))
    );
    let details = details.map_or("no answer", plain_reason);
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
