//! One recorded request judged under a policy, from the facts the access log keeps: the
//! consumer it was evaluated as, the model, the API, the rules and guards that fired. Each
//! step reads the policy's own tables in the pipeline's order (approval, inspection, output
//! cap, guards; budgets are simulated by `replay.rs` in time order). What the facts cannot
//! show — a rule or guard NEW adds, a changed pattern, the output a request asked for, what
//! the client presented as its identity — is listed by `unreplayable`.

use crate::pipeline::classification::passthrough_for;
use crate::policy::compiled::Consumer;
use crate::policy::config::{
    CapAction, GuardAction, GuardOnError, Mode, OpaqueContent, RuleAction,
};
use crate::policy::guards::Guard;
use crate::policy::{ApiFamily, Policy};

use super::access_log::{Decision, Record};
use super::report::REPLACED_CODES;

/// Whether a request reaches a provider, and if not, the code it is refused with.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Fate {
    Forwarded,
    Refused(String),
}

/// A record as replay takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// Judged again: what was recorded for the policy's decision.
    Judged(Fate),
    /// Refused for the request itself or its identity before the policy's tables were read:
    /// kept as recorded, under this code.
    Kept(String),
}

/// Codes that refuse the request for what it is (unreadable, malformed, unknown endpoint) or
/// for the identity it presented: the log does not have what NEW would need to judge them.
const KEPT_CODES: &[&str] = &[
    "invalid_request",
    "invalid_json",
    "duplicate_key",
    "invalid_model",
    "unsupported_endpoint",
    "unsupported_media_type",
    "internal_error",
    "invalid_identity",
    "identity_unusable",
    "missing_api_key",
    "invalid_api_key",
    "missing_peer_identity",
    "unknown_peer_identity",
    "identity_conflict",
    "usage_unreadable",
];

/// Codes of a request the policy forwarded that failed after, no provider answering:
/// forwarded, as far as the policy goes.
const AFTER_FORWARD_CODES: &[&str] = &["upstream_unavailable"];

/// Codes of the steps before inspection: a request refused with one never met the rules,
/// guards and caps after, so the log has no facts for them.
pub const EARLY_CODES: &[&str] = &[
    "unknown_consumer",
    "consumer_not_allowed",
    "model_not_found",
    "model_not_approved",
    "provider_api_mismatch",
];

/// The recorded fate, or why the record is kept as it is.
pub fn recorded_fate(record: &Record) -> Recorded {
    let code = record.code.as_deref().unwrap_or("");
    match record.decision {
        None => Recorded::Kept("not_decided_by_posturio".to_owned()),
        // Forwarded, then the answer withheld: the client got this refusal.
        Some(_) if REPLACED_CODES.contains(&code) => {
            Recorded::Judged(Fate::Refused(code.to_owned()))
        }
        Some(Decision::Allow | Decision::Audit) => Recorded::Judged(Fate::Forwarded),
        Some(Decision::Deny) if AFTER_FORWARD_CODES.contains(&code) => {
            Recorded::Judged(Fate::Forwarded)
        }
        Some(Decision::Deny) if KEPT_CODES.contains(&code) || code.is_empty() => {
            Recorded::Kept(if code.is_empty() { "-" } else { code }.to_owned())
        }
        // A body too large for the gateway, rather than for a guard.
        Some(Decision::Deny)
            if code == "body_too_large"
                && !record.guards.iter().any(|guard| guard.value == "too_large") =>
        {
            Recorded::Kept(code.to_owned())
        }
        // Without a consumer the log cannot say what the client presented.
        Some(Decision::Deny) if record.consumer.is_none() => Recorded::Kept(code.to_owned()),
        Some(Decision::Deny) => Recorded::Judged(Fate::Refused(code.to_owned())),
    }
}

/// A refusal, unless the consumer's mode only records it.
fn refuse(mode: Mode, code: &str) -> Result<(), String> {
    match mode {
        Mode::Enforce => Err(code.to_owned()),
        Mode::Audit => Ok(()),
    }
}

/// What `policy` does with the recorded request, budgets aside. `logged` is the policy the
/// log was written under, which says what a logged rule action meant.
pub fn judge(policy: &Policy, logged: &Policy, record: &Record) -> Fate {
    match judge_steps(policy, logged, record) {
        Ok(()) => Fate::Forwarded,
        Err(code) => Fate::Refused(code),
    }
}

fn judge_steps(policy: &Policy, logged: &Policy, record: &Record) -> Result<(), String> {
    let Some(name) = record.consumer.as_deref() else {
        // Forwarded without a consumer: audit mode let it go; the policy's mode decides.
        return refuse(policy.mode, "consumer_not_allowed");
    };
    let consumer = consumer_for(policy, name).ok_or_else(|| "unknown_consumer".to_owned())?;
    let mode = consumer.mode;
    let code = record.code.as_deref().unwrap_or("");
    if let Some(model) = record.model.as_deref() {
        approve(policy, consumer, model, record.api.as_deref())?;
    } else if let (Some(path), Some(_)) = (record.path.as_deref(), record.provider.as_deref()) {
        // Forwarded without a model: a passthrough, found with the policy's own lookup.
        let method = record.method.as_deref().unwrap_or("GET");
        passthrough_for(policy, method, path, ApiFamily::OpenAi)
            .map_err(|_| "unsupported_endpoint".to_owned())?;
    }
    inspect(policy, logged, consumer, record)?;
    if code == "opaque_content" {
        let inspected = policy.inspects_requests(Some(consumer)) || !consumer.guards.is_empty();
        if inspected && consumer.opaque_content == OpaqueContent::Block {
            refuse(mode, code)?;
        }
    }
    if code == "max_output_tokens_exceeded" {
        // The output the request asked for is not logged: a cap that still refuses is taken
        // to refuse it again (listed as not replayable when NEW's cap differs).
        if let Some(cap) = &consumer.output_cap {
            if cap.action == CapAction::Refuse {
                refuse(mode, code)?;
            }
        }
    }
    guards(policy, consumer, record)?;
    answer(policy, consumer, record)
}

/// The consumer a request evaluated as `name` is evaluated as under `policy`: itself, or,
/// where the identity can fall back, `default`.
pub(super) fn consumer_for<'p>(policy: &'p Policy, name: &str) -> Option<&'p Consumer> {
    policy.consumer(name).or_else(|| {
        let falls_back = !matches!(
            policy.identity,
            crate::policy::compiled::Identity::Verified(_)
        );
        if falls_back {
            policy.consumer(crate::policy::compiled::DEFAULT_CONSUMER)
        } else {
            None
        }
    })
}

/// The approval step: the catalogue, the consumer's models, the provider's API.
fn approve(
    policy: &Policy,
    consumer: &Consumer,
    model: &str,
    api: Option<&str>,
) -> Result<(), String> {
    if !policy.models.contains_key(model) {
        return Err("model_not_found".to_owned());
    }
    let Some(accepts) = api.map_or(Some(true), |api| policy.model_accepts(model, api)) else {
        return Err("model_not_found".to_owned());
    };
    if !consumer.approved.contains(model) {
        refuse(consumer.mode, "model_not_approved")?;
    }
    if !accepts {
        return Err("provider_api_mismatch".to_owned());
    }
    Ok(())
}

/// The request rules that fired, under the policy's rule actions and the consumer's list.
fn inspect(
    policy: &Policy,
    logged: &Policy,
    consumer: &Consumer,
    record: &Record,
) -> Result<(), String> {
    for hit in &record.rules {
        let Some((index, rule)) = policy
            .rules
            .iter()
            .enumerate()
            .find(|(_, rule)| rule.id == hit.id)
        else {
            continue;
        };
        if !policy.rule_applies(Some(consumer), index) || !rule.direction.reads_requests() {
            continue;
        }
        // A redacting rule logged as `block` matched in a key, which cannot be redacted:
        // blocked again. (A rule that blocked then and redacts now is taken to redact: where
        // it matched is not logged.)
        let redacted_key = hit.value == "block"
            && logged
                .rules
                .iter()
                .any(|before| before.id == hit.id && before.action == RuleAction::Redact);
        let blocks =
            rule.action == RuleAction::Block || (rule.action == RuleAction::Redact && redacted_key);
        if blocks && rule.enforced(consumer.mode) {
            return Err("prompt_blocked".to_owned());
        }
    }
    Ok(())
}

/// The guards asked and their outcomes, under the policy's guards, actions and `on_error`;
/// a flag outranks a text too large, which outranks a failure, as in the pipeline.
fn guards(policy: &Policy, consumer: &Consumer, record: &Record) -> Result<(), String> {
    let mut refusal: Option<(u8, &str)> = None;
    for asked in &record.guards {
        let Some(guard) = consumer
            .guards
            .iter()
            .filter_map(|index| policy.guards.get(*index))
            .find(|guard| guard.id == asked.id)
        else {
            continue;
        };
        let found = match asked.value.as_str() {
            "flagged" if guard.action == GuardAction::Block => Some((2, "guard_blocked")),
            "too_large" if guard.action == GuardAction::Block => Some((1, "body_too_large")),
            "error" | "timeout" if guard.on_error == GuardOnError::Block => {
                Some((0, "guard_unavailable"))
            }
            _ => None,
        };
        if let Some(found) = found {
            if refusal.is_none_or(|first| found.0 > first.0) {
                refusal = Some(found);
            }
        }
    }
    match refusal {
        Some((_, code)) => refuse(consumer.mode, code),
        None => Ok(()),
    }
}

/// The answer rules that fired: one that blocks withholds the answer (`response_blocked`).
/// An answer that could not be read is taken to be unreadable again.
fn answer(policy: &Policy, consumer: &Consumer, record: &Record) -> Result<(), String> {
    if record.code.as_deref() == Some("response_unreadable") {
        return Err("response_unreadable".to_owned());
    }
    let answer_rules = policy.answer_rules(Some(consumer));
    for hit in &record.response_rules {
        let found = answer_rules
            .iter()
            .find_map(|index| policy.rules.get(*index).filter(|rule| rule.id == hit.id));
        if let Some(rule) = found {
            if rule.action == RuleAction::Block && rule.enforced(consumer.mode) {
                return Err("response_blocked".to_owned());
            }
        }
    }
    Ok(())
}

/// Whether NEW checks anything after approval for the consumer a record was logged as
/// (request rules, guards, a refusing output cap): facts a request refused at approval
/// never recorded.
pub fn later_checks(policy: &Policy, name: &str) -> bool {
    consumer_for(policy, name).is_some_and(|consumer| {
        policy.inspects_requests(Some(consumer))
            || !consumer.guards.is_empty()
            || !policy.answer_rules(Some(consumer)).is_empty()
            || consumer
                .output_cap
                .is_some_and(|cap| cap.action == CapAction::Refuse)
    })
}

/// What a consumer's records cannot show under `new`, against `old`: each line one thing
/// NEW looks at that the log does not keep.
pub fn unreplayable(old: &Policy, new: &Policy, name: &str) -> Vec<String> {
    let mut notes = Vec::new();
    let falls_back = |policy: &Policy| {
        !matches!(
            policy.identity,
            crate::policy::compiled::Identity::Verified(_)
        )
    };
    if name == crate::policy::compiled::DEFAULT_CONSUMER && falls_back(new) {
        let mut added: Vec<&String> = new
            .consumers
            .keys()
            .filter(|added| !old.consumers.contains_key(*added))
            .collect();
        added.sort();
        for added in added {
            notes.push(format!(
                "consumer \"{added}\" is new: a request logged as default may have named it \
                 (an unknown name is logged as default), and NEW would judge it as \"{added}\""
            ));
        }
    }
    let entries = |policy: &Policy| -> Vec<(String, String)> {
        policy
            .passthrough
            .iter()
            .map(|entry| (entry.method.clone(), entry.path_prefix.clone()))
            .collect()
    };
    if entries(old) != entries(new) {
        notes.push(
            "the passthrough entries changed: records are judged with NEW's entries by their \
             logged path; one logged without its path is judged as forwarded"
                .to_owned(),
        );
    }
    if old.identity != new.identity {
        notes.push(
            "the identity sources changed: the log has the consumer each request was \
             evaluated as, not the key, header or certificate it presented"
                .to_owned(),
        );
    }
    let (Some(new_consumer), old_consumer) = (consumer_for(new, name), consumer_for(old, name))
    else {
        return notes;
    };
    for (index, rule) in new.rules.iter().enumerate() {
        if !new.rule_applies(Some(new_consumer), index) {
            continue;
        }
        let before = old_consumer.and_then(|old_consumer| {
            old.rules
                .iter()
                .enumerate()
                .find(|(old_index, old_rule)| {
                    old_rule.id == rule.id && old.rule_applies(Some(old_consumer), *old_index)
                })
                .map(|(_, old_rule)| old_rule)
        });
        match before {
            None => notes.push(format!(
                "rule \"{}\" applies under NEW and did not: what it would match needs the prompt",
                rule.id
            )),
            Some(old_rule)
                if old_rule.detection != rule.detection
                    || old_rule.roles != rule.roles
                    || old_rule.fields != rule.fields
                    || old_rule.direction != rule.direction =>
            {
                notes.push(format!(
                    "rule \"{}\" looks for something else, or elsewhere: what it would match \
                     needs the prompt",
                    rule.id
                ));
            }
            Some(_) => {}
        }
    }
    let old_guards: Vec<&Guard> = old_consumer.map_or_else(Vec::new, |consumer| {
        consumer
            .guards
            .iter()
            .filter_map(|index| old.guards.get(*index))
            .collect()
    });
    for guard in new_consumer
        .guards
        .iter()
        .filter_map(|index| new.guards.get(*index))
    {
        let same_judge = |old_guard: &&Guard| {
            old_guard.id == guard.id
                && Guard {
                    action: guard.action,
                    on_error: guard.on_error,
                    ..(*old_guard).clone()
                } == *guard
        };
        if !old_guards.iter().any(same_judge) {
            notes.push(format!(
                "guard \"{}\" is new to this consumer or asks differently: its verdicts need \
                 the prompt",
                guard.id
            ));
        }
    }
    let old_cap = old_consumer.and_then(|consumer| consumer.output_cap);
    if new_consumer.output_cap != old_cap
        && new_consumer
            .output_cap
            .is_some_and(|cap| cap.action == CapAction::Refuse)
    {
        notes.push(
            "the output-token cap changed: the output each request asked for is not logged"
                .to_owned(),
        );
    }
    let blocks_opaque = |policy: &Policy, consumer: &Consumer| {
        consumer.opaque_content == OpaqueContent::Block
            && (policy.inspects_requests(Some(consumer)) || !consumer.guards.is_empty())
    };
    if blocks_opaque(new, new_consumer)
        && !old_consumer.is_some_and(|consumer| blocks_opaque(old, consumer))
    {
        notes.push(
            "opaque content (images, files) is now refused: the log does not say which \
             requests carried it"
                .to_owned(),
        );
    }
    if old.max_body_bytes != new.max_body_bytes {
        notes.push(
            "max_body_bytes changed: bodies near the limit are judged as recorded".to_owned(),
        );
    }
    notes
}

#[cfg(test)]
#[path = "replay_judge_tests.rs"]
mod tests;
