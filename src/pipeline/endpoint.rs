//! The decision on an endpoint request, its steps in order: the body walked once (validated,
//! model taken out, text scanned, the limits' fields located), the model approved
//! (`approval.rs`), the inspection judged (`inspection.rs`), the limits applied
//! (`request_limits.rs`), the edits made in one copy (`rewrite.rs`).

use super::approval::approve;
use super::inspection::inspect;
use super::refusals::{body_reply, text_too_large, too_large};
use super::request_limits::limit_changes;
use super::rewrite::rewrite;
use super::state::{Decision, Facts, Forward, Pending};
use crate::policy::body::{walk_watching, NoText, Walked, Watch};
use crate::policy::classify::{Classified, Endpoint};
use crate::policy::compiled::Policy;
use crate::policy::guards::{GuardRequest, GuardText, KeptText};
use crate::policy::inspect::{derived_budget, ScanSink, TextTooLarge, Verdict};
use crate::policy::limits;
use crate::policy::reply::Reply;

/// Decides an endpoint request with its whole body.
pub(super) fn decide_endpoint(
    policy: &Policy,
    pending: &Pending,
    classified: &Classified,
    body: &[u8],
    facts: &mut Facts,
) -> Result<Decision, Reply> {
    let shape = pending.shape;
    let endpoint = classified.endpoint;
    facts.family = Some(endpoint.family().as_str());
    if body.len() > policy.max_body_bytes {
        return Err(too_large(policy, shape));
    }
    let consumer = pending
        .consumer
        .as_deref()
        .and_then(|consumer| policy.consumers.get(consumer));

    // One pass: scan only when some rule applies to this consumer; locate the limits'
    // fields only when a limit applies (a cap, or a budget, which reserves what is asked).
    let inspected = policy.inspects_requests(consumer);
    let watch = Watch {
        stream: limits::has_stream_flag(endpoint),
        output_tokens: consumer
            .is_some_and(|consumer| consumer.output_cap.is_some() || consumer.budget.is_some())
            && limits::has_cap_fields(classified),
    };
    // The guards' text is kept from the same walk, only when a guard applies.
    let guards = policy.guards_for(pending.consumer.as_deref());
    let keep = !guards.is_empty();
    let (walked, hits, kept) = match policy.scanner.as_ref().filter(|_| inspected) {
        Some(scanner) => {
            let mut sink = ScanSink::new(scanner, body.len());
            let mut text = GuardText::new(&mut sink, keep);
            let walked = walk_watching(body, endpoint, watch, &mut text);
            let kept = text.into_kept();
            (walked, sink.finish(), kept)
        }
        None => {
            let mut none = NoText;
            let mut text = GuardText::new(&mut none, keep);
            let walked = walk_watching(body, endpoint, watch, &mut text);
            (walked, Ok(Vec::new()), text.into_kept())
        }
    };
    let walked = walked.map_err(|error| body_reply(error, shape))?;
    let hits = hits.map_err(|too_large| text_too_large(too_large, shape))?;

    let (approved, mut audited) = approve(policy, classified, &walked, consumer, shape, facts)?;
    let verdict = inspect(
        policy,
        consumer,
        (&walked, &hits),
        shape,
        facts,
        &mut audited,
    )?;
    let request = (classified, pending, body);
    let changes = limit_changes(policy, request, consumer, &walked, facts, &mut audited)?;
    let rewritten = rewrite(policy, request, (&walked, &verdict), &approved, changes)?;
    let cluster = match approved.pool {
        Some(pool) => &pool.cluster,
        None => &approved.provider.cluster,
    };
    Ok(Decision::Forward(Forward {
        cluster: cluster.clone(),
        path: pending.forward_path(rewritten.path),
        body: rewritten.body,
        audited,
        usage: limits::usage_format(classified),
        plan: rewritten.plan,
        guards: match kept {
            Some(kept) => {
                let budget = derived_budget(body.len());
                guard_request(
                    policy,
                    (&guards, kept),
                    (&walked, &verdict),
                    (endpoint, budget),
                )
                .map_err(|too_large| text_too_large(too_large, shape))?
            }
            None => None,
        },
    }))
}

/// What the guards are asked: each one's text from what the walk kept; `None` when none has
/// any text to judge.
fn guard_request(
    policy: &Policy,
    (guards, kept): (&[usize], KeptText),
    (walked, verdict): (&Walked, &Verdict),
    (endpoint, budget): (Endpoint, usize),
) -> Result<Option<Box<GuardRequest>>, TextTooLarge> {
    let guards: Vec<_> = guards
        .iter()
        .filter_map(|index| Some((*index, policy.guards.get(*index)?)))
        .collect();
    let redactions: Vec<_> = verdict
        .redactions
        .iter()
        .map(|(span, range, rule)| (*span, range.clone(), policy.rule_id(*rule)))
        .collect();
    let texts = kept.texts(&guards, walked, &redactions, budget)?;
    Ok((!texts.is_empty()).then(|| Box::new(GuardRequest { endpoint, texts })))
}
