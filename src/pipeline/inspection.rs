//! The inspection step: the scanner's hits judged for one consumer — which rules apply, block,
//! redact or only record — and the reply for content that cannot be inspected.

use super::state::Facts;
use crate::policy::body::Walked;
use crate::policy::compiled::{Consumer, Policy};
use crate::policy::config::{Mode, OpaqueContent, RuleAction};
use crate::policy::inspect::{field_of, role_of, Fired, Hit, Verdict};
use crate::policy::{ApiFamily, Code, Reply};

/// Judges the scanner's hits and applies the verdict: a rule that blocks, or content that
/// cannot be inspected, refuses; a block or redaction that audit mode turned into a record
/// makes the decision an audit. The redactions are left to the rewrite step.
pub(super) fn inspect(
    policy: &Policy,
    consumer: Option<&Consumer>,
    (walked, hits): (&Walked, &[Hit]),
    shape: ApiFamily,
    facts: &mut Facts,
    audited: &mut Option<Reply>,
) -> Result<Verdict, Reply> {
    let verdict = judge(policy, consumer, walked, hits);
    facts.rules.clone_from(&verdict.fired);
    facts.redactions = verdict.redactions.len();
    if let Some(rule) = verdict.blocked_by {
        let id = policy.rule_id(rule);
        return Err(Reply::new(
            Code::PromptBlocked,
            shape,
            format!(
                "the request was blocked by rule \"{id}\": its text matched what the rule forbids"
            ),
        )
        .with_rule(id));
    }
    // A block or redaction that audit mode turned into a record makes the decision an audit.
    if let Some(trial) = verdict
        .fired
        .iter()
        .find(|fired| !fired.enforced && fired.action != RuleAction::Audit)
    {
        audited.get_or_insert_with(|| {
            Reply::new(
                Code::PromptBlocked,
                shape,
                format!("rule \"{}\" matched (audit mode)", trial.rule),
            )
            .with_rule(&trial.rule)
        });
    }
    if let Some((kind, enforced)) = verdict.opaque {
        let reply = opaque_reply(kind, shape);
        if enforced {
            return Err(reply);
        }
        audited.get_or_insert(reply);
    }
    Ok(verdict)
}

/// Judges the hits of one request for one consumer (`None`: no consumer, every rule).
pub(super) fn judge(
    policy: &Policy,
    consumer: Option<&Consumer>,
    walked: &Walked,
    hits: &[Hit],
) -> Verdict {
    let mut verdict = Verdict::default();
    let consumer_mode = consumer.map_or(policy.mode, |consumer| consumer.mode);
    let applies = |rule: usize| {
        consumer.is_none_or(|consumer| consumer.rules.get(rule).copied().unwrap_or(false))
    };
    for hit in hits {
        let Some(rule) = policy.rules.get(hit.rule) else {
            continue;
        };
        let role = role_of(&hit.at, walked);
        if !applies(hit.rule) || !rule.looks_at(field_of(hit.at.field, role), role) {
            continue;
        }
        // Audit anywhere (rule or consumer) turns the action into a record.
        let enforced = rule.enforced(consumer_mode);
        let mut action = rule.action;
        match (action, enforced, hit.at.span) {
            (RuleAction::Block, true, _) => {
                verdict.blocked_by.get_or_insert(hit.rule);
            }
            (RuleAction::Redact, true, Some(span)) => {
                verdict.redactions.push((span, hit.range.clone(), hit.rule));
            }
            // A key cannot be redacted without risking a duplicate key: block instead.
            (RuleAction::Redact, true, None) => {
                action = RuleAction::Block;
                verdict.blocked_by.get_or_insert(hit.rule);
            }
            _ => {}
        }
        let fired = Fired {
            rule: rule.id.clone(),
            action,
            enforced: enforced && action != RuleAction::Audit,
        };
        if !verdict.fired.contains(&fired) {
            verdict.fired.push(fired);
        }
    }
    // A guard cannot see an image any more than a rule can: opaque content is judged
    // whenever either reads the request.
    let guarded = consumer.map_or(!policy.guards.is_empty(), |consumer| {
        !consumer.guards.is_empty()
    });
    let inspected = policy.inspects_requests(consumer) || guarded;
    let opaque_policy = consumer.map_or(OpaqueContent::Block, |consumer| consumer.opaque_content);
    if let (true, OpaqueContent::Block, Some(kind)) = (inspected, opaque_policy, walked.opaque) {
        verdict.opaque = Some((kind, consumer_mode == Mode::Enforce));
    }
    verdict
}

fn opaque_reply(kind: &str, shape: ApiFamily) -> Reply {
    Reply::new(
        Code::OpaqueContent,
        shape,
        format!(
            "the request has {kind} content, which the gateway cannot inspect, and inspection \
             rules or guards apply; send text only, or ask for \"opaque_content\": \"allow\""
        ),
    )
}
