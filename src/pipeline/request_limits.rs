//! The limits step: what the request limits change or refuse — usage asked of a stream, a
//! budget's need to read the answer's usage and the output it asks for, and the consumer's
//! output-token cap.

use super::refusals::audit_or_refuse;
use super::state::{Facts, Pending};
use crate::policy::body::Walked;
use crate::policy::classify::Classified;
use crate::policy::compiled::{Consumer, Policy};
use crate::policy::config::Mode;
use crate::policy::limits::{self, stream_usage, CapOutcome, CapRequest, Change};
use crate::policy::reply::{Code, Reply};

/// The changes the request limits make: usage asked of a stream, and the consumer's
/// output-token cap. In audit mode the cap changes nothing and what it would have done is
/// recorded; a refusal is a policy denial.
pub(super) fn limit_changes(
    policy: &Policy,
    (classified, pending, body): (&Classified, &Pending, &[u8]),
    consumer: Option<&Consumer>,
    walked: &Walked,
    facts: &mut Facts,
    audited: &mut Option<Reply>,
) -> Result<Vec<Change>, Reply> {
    let shape = classified.endpoint.family();
    let flags = stream_usage::flags(body, &walked.located, shape)?;
    let mut changes = Vec::new();
    if policy.inject_stream_usage && limits::reports_stream_usage(classified.endpoint) {
        if let Some(change) = limits::include_usage(body, &walked.located) {
            changes.push(change);
            facts.stream_usage_added = true;
        }
    }
    // A budget is charged with the usage the response reports: a request whose usage will
    // not be read would never be charged.
    if let Some(consumer) = consumer.filter(|consumer| policy.budget_for(&consumer.name).is_some())
    {
        // Read before the cap changes anything: the cap's effect is applied to what was asked
        // when the reservation is made (`budget::estimate`).
        facts.asked_output = Some(limits::asked_output(
            classified,
            body,
            &walked.located,
            &consumer.name,
            shape,
        )?);
        let unread =
            stream_usage::unread_usage(classified, &pending.path, flags, facts.stream_usage_added)
                .or_else(|| pending.unread_headers.clone());
        if let Some(reason) = unread {
            let reply = Reply::new(
                Code::UsageUnreadable,
                shape,
                format!(
                    "consumer \"{}\" has a token budget, which is charged with the usage \
                     each answer reports, and {reason}",
                    consumer.name
                ),
            );
            if let Some(reply) = audit_or_refuse(consumer.mode, reply)? {
                audited.get_or_insert(reply);
            }
        }
        // A dollar budget counts the standard price: a tier billed above it is refused.
        if policy
            .budget_for(&consumer.name)
            .is_some_and(|budget| budget.has_usd())
        {
            if let Err(reply) = limits::premium_service_tier(body, &consumer.name, shape) {
                if let Some(reply) = audit_or_refuse(consumer.mode, reply)? {
                    audited.get_or_insert(reply);
                }
            }
        }
    }
    let Some((consumer, cap)) =
        consumer.and_then(|consumer| Some((consumer, consumer.output_cap?)))
    else {
        return Ok(changes);
    };
    let request = CapRequest {
        cap,
        consumer: &consumer.name,
        shape: classified.endpoint.family(),
    };
    let outcome = limits::output_cap(classified, body, &walked.located, request)?;
    match (consumer.mode, outcome) {
        (Mode::Enforce, CapOutcome::Refused(reply)) => Err(reply),
        (Mode::Enforce, CapOutcome::Enforced(enforcement)) => {
            changes.extend(enforcement.changes);
            facts.output_cap_clamped = enforcement.clamped;
            facts.output_cap_added = enforcement.added;
            Ok(changes)
        }
        (Mode::Audit, outcome) => {
            if let Some(over) = outcome.over() {
                audited.get_or_insert(over);
            }
            Ok(changes)
        }
    }
}
