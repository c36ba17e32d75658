//! The decision on a request, once its body is read (empty for a request that ended with its
//! headers): forward (where and how), answer locally, or refuse, and the facts the record
//! shows. An endpoint request is decided by `endpoint.rs`, a model list by `model_list.rs`; a
//! passthrough call here.

use super::classification::passthrough_for;
use super::endpoint;
use super::model_list::decide_model_list;
use super::refusals::{audit_or_refuse, no_consumer};
use super::rewrite::rebase;
use super::state::{Decision, Facts, Forward, Pending, RequestKind};
use crate::policy::{Code, Policy, Reply};

/// Decides with the whole body (empty for a request that ended with its headers).
pub fn decide_body(policy: &Policy, pending: &Pending, body: &[u8]) -> (Decision, Facts) {
    let mut facts = Facts {
        consumer: pending.consumer.clone(),
        ..Facts::default()
    };
    let decision = match &pending.kind {
        RequestKind::Endpoint(classified) => {
            endpoint::decide_endpoint(policy, pending, classified, body, &mut facts)
        }
        RequestKind::Passthrough(index) => {
            decide_passthrough(policy, pending, *index, body, &mut facts)
        }
        RequestKind::ModelList(list) if body.is_empty() => {
            decide_model_list(policy, pending, list, &mut facts)
        }
        // A body makes it no model list: it is what it would be without them.
        RequestKind::ModelList(_) => passthrough_for(policy, "GET", &pending.path, pending.shape)
            .and_then(|index| decide_passthrough(policy, pending, index, body, &mut facts)),
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
        path: pending.forward_path(rebase(&pending.path, provider.base_path.as_deref())),
        body: None,
        audited,
        usage: None,
        plan: None,
        guards: None,
    }))
}

#[cfg(test)]
#[path = "decision_tests.rs"]
mod tests;
