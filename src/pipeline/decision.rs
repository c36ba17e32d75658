//! The decision on a request, once its body is read (empty for a request that ended with its
//! headers): forward (where and how) or refuse, and the facts the record shows. An endpoint
//! request is decided by `endpoint.rs`; a passthrough call here.

use super::classification::{no_consumer, Pending, Target};
use super::endpoint;
use crate::policy::classify::API_ROOT;
use crate::policy::config::Mode;
use crate::policy::inspect::Fired;
use crate::policy::usage::UsageFormat;
use crate::policy::{Code, Policy, Reply};

/// The decision on a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Refuse(Reply),
    Forward(Forward),
}

/// How to forward an allowed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forward {
    pub cluster: String,
    /// The new `:path`, when the model is in the path or the provider's `base_path` applies.
    pub path: Option<String>,
    /// The new body, when the model is rewritten, text redacted, the output-token cap applied
    /// or stream usage asked for. Every other byte is the client's.
    pub body: Option<Vec<u8>>,
    /// Set when the policy would have refused the request but audit mode let it through.
    pub audited: Option<Reply>,
    /// The format the response reports its token usage in; `None` when it reports none
    /// (token counts, passthrough calls).
    pub usage: Option<UsageFormat>,
}

/// What a decision was about, for the log and the access log. Never prompt text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    pub consumer: Option<String>,
    pub family: Option<&'static str>,
    pub model: Option<String>,
    pub upstream_model: Option<String>,
    pub provider: Option<String>,
    pub rules: Vec<Fired>,
    pub redactions: usize,
    /// An output-token value over the consumer's cap was lowered to it.
    pub output_cap_clamped: bool,
    /// The request asked for no output-token limit and was given the consumer's cap.
    pub output_cap_added: bool,
    /// `stream_options.include_usage: true` was set so the stream reports its usage.
    pub stream_usage_added: bool,
}

/// Decides with the whole body (empty for a request that ended with its headers).
pub fn decide_body(policy: &Policy, pending: &Pending, body: &[u8]) -> (Decision, Facts) {
    let mut facts = Facts {
        consumer: pending.consumer.clone(),
        ..Facts::default()
    };
    let decision = match &pending.target {
        Target::Endpoint(classified) => {
            endpoint::decide_endpoint(policy, pending, classified, body, &mut facts)
        }
        Target::Passthrough(index) => decide_passthrough(policy, pending, *index, body, &mut facts),
    };
    (decision.unwrap_or_else(Decision::Refuse), facts)
}

fn decide_passthrough(
    policy: &Policy,
    pending: &Pending,
    index: usize,
    body: &[u8],
    facts: &mut Facts,
) -> Result<Decision, Reply> {
    if !body.is_empty() {
        return Err(Reply::new(
            Code::InvalidRequest,
            pending.shape,
            "this endpoint is forwarded uninspected and so must have no body",
        ));
    }
    let provider = policy
        .passthrough
        .get(index)
        .and_then(|entry| policy.providers.get(entry.provider))
        .ok_or_else(|| {
            Reply::new(
                Code::InternalError,
                pending.shape,
                "the policy is inconsistent",
            )
        })?;
    facts.provider = Some(provider.name.clone());
    let audited = match pending.consumer {
        None => audit_or_refuse(policy.mode, no_consumer(pending.shape))?,
        Some(_) => None,
    };
    Ok(Decision::Forward(Forward {
        cluster: provider.cluster.clone(),
        path: rebase(&pending.path, provider.base_path.as_deref()),
        body: None,
        audited,
        usage: None,
    }))
}

/// In audit mode a policy denial is recorded and the request goes on; in enforce mode it is
/// the reply.
pub(crate) fn audit_or_refuse(mode: Mode, reply: Reply) -> Result<Option<Reply>, Reply> {
    match mode {
        Mode::Audit => Ok(Some(reply)),
        Mode::Enforce => Err(reply),
    }
}

/// The path with its leading `/v1` replaced by `base_path`, or `None` when unchanged.
pub(crate) fn rebase(path: &str, base_path: Option<&str>) -> Option<String> {
    let base_path = base_path?;
    let rest = path.strip_prefix(API_ROOT)?;
    if !(rest.is_empty() || rest.starts_with('/') || rest.starts_with('?')) {
        return None;
    }
    Some(format!("{base_path}{rest}"))
}

/// The request pipeline's decisions, as methods of the policy for the callers that evaluate
/// requests without a host (benchmarks, fuzzing, the policy's own tests).
impl Policy {
    /// The classification step (see `classification::classify_request`).
    pub fn on_headers(
        &self,
        headers: &crate::policy::request::Headers,
        metadata_identity: Option<&[u8]>,
    ) -> Result<Pending, Reply> {
        super::classification::classify_request(self, headers, metadata_identity)
    }

    /// The decision with the whole body (see `decide_body`).
    pub fn on_body(&self, pending: &Pending, body: &[u8]) -> (Decision, Facts) {
        decide_body(self, pending, body)
    }
}

#[cfg(test)]
#[path = "decision_tests.rs"]
mod tests;
