//! The rewrite step: the model renamed (in the path or the body), the redactions and the
//! limits' changes made as edits of the body in one copy, and the path moved under the
//! provider's `base_path`. For a model served through a pool cluster, the same for every
//! target, gathered in the plan the upstream filter applies per attempt; a pooled request's
//! paths never carry the client's credential parameters. What is forwarded is never larger
//! than `max_body_bytes`, for any target: a rewrite that would grow it past the limit is
//! refused.

use std::collections::BTreeMap;

use super::approval::Approved;
use super::refusals::rewritten_too_large;
use super::state::Pending;
use crate::policy::api_keys::without_credential_parameters;
use crate::policy::body::{Span, Walked};
use crate::policy::classify::{encode_segment, Classified, API_ROOT};
use crate::policy::compiled::{Policy, Pool};
use crate::policy::inspect::Verdict;
use crate::policy::limits::{self, Change};
use crate::policy::plan::{Plan, PlanTarget, Targets, PLAN_VERSION};
use crate::policy::redact::{apply, apply_tracked, redact_string, Edit};
use crate::policy::{Code, Reply};

/// The new path and body; `None` where they stay the client's. For a pool, the plan too.
pub(super) struct Rewritten {
    pub path: Option<String>,
    pub body: Option<Vec<u8>>,
    pub plan: Option<Plan>,
}

/// Makes every edit the decision calls for.
pub(super) fn rewrite(
    policy: &Policy,
    (classified, pending, body): (&Classified, &Pending, &[u8]),
    (walked, verdict): (&Walked, &Verdict),
    approved: &Approved,
    changes: Vec<Change>,
) -> Result<Rewritten, Reply> {
    let shape = pending.shape;
    let failed = |what: &str| Reply::new(Code::InternalError, shape, format!("the {what}"));
    // Edits: the redactions and the limits' changes, then the model (in the path or the
    // body), in one copy.
    let mut edits = limits::into_edits(changes);
    edits.extend(
        redaction_edits(policy, body, verdict)
            .ok_or_else(|| failed("body could not be redacted"))?,
    );
    let renamed = |upstream: &str| {
        // A rewrite that cannot be made is refused: never forward the client's name.
        renamed_model(classified, pending, walked, upstream)
            .ok_or_else(|| failed("model could not be rewritten"))
    };
    if let Some(pool) = approved.pool {
        return rewrite_for_pool(
            policy,
            (classified, pending, body),
            approved,
            pool,
            edits,
            renamed,
        );
    }
    let Approved {
        name,
        upstream,
        provider,
        ..
    } = *approved;
    let mut path = None;
    if upstream != name {
        let model = renamed(upstream)?;
        path = model.path;
        edits.extend(model.edits);
    }
    let body = if edits.is_empty() {
        None
    } else {
        Some(apply(body, edits).ok_or_else(|| failed("body could not be rewritten"))?)
    };
    if body
        .as_ref()
        .is_some_and(|body| body.len() > policy.max_body_bytes)
    {
        return Err(rewritten_too_large(policy, shape));
    }
    let current = path.as_deref().unwrap_or(&pending.path);
    let path = rebase(current, provider.base_path.as_deref()).or(path);
    Ok(Rewritten {
        path,
        body,
        plan: None,
    })
}

/// The model renamed for one provider: the new path, when the path names the model, and the
/// body's copies of the model.
struct Renamed {
    path: Option<String>,
    edits: Vec<Edit>,
}

fn renamed_model(
    classified: &Classified,
    pending: &Pending,
    walked: &Walked,
    upstream: &str,
) -> Option<Renamed> {
    match (&classified.path_model, &walked.model) {
        (Some(path_model), _) => {
            let before = pending.path.get(..path_model.segment.start)?;
            let after = pending.path.get(path_model.segment.end..)?;
            let path = Some(format!("{before}{}{after}", encode_segment(upstream)));
            // The body's copies of the model follow the path's, in the form they had.
            let edits = walked
                .model
                .iter()
                .chain(&walked.inner_models)
                .map(|body_model| {
                    let text = match body_model.name.strip_prefix("models/") {
                        Some(_) => format!("models/{upstream}"),
                        None => upstream.to_owned(),
                    };
                    Some(Edit {
                        span: body_model.span.clone(),
                        text: serde_json::to_string(&text).ok()?,
                    })
                })
                .collect::<Option<Vec<_>>>()?;
            Some(Renamed { path, edits })
        }
        (None, Some(body_model)) => Some(Renamed {
            path: None,
            edits: vec![Edit {
                span: body_model.span.clone(),
                text: serde_json::to_string(upstream).ok()?,
            }],
        }),
        (None, None) => Some(Renamed {
            path: None,
            edits: Vec::new(),
        }),
    }
}

/// For a pool: the body forwarded with the first target's model, and the plan saying where
/// the model's text landed in it and what every target puts there instead. Each target's
/// path and texts are what `rewrite` would make for that provider alone.
fn rewrite_for_pool(
    policy: &Policy,
    (classified, pending, body): (&Classified, &Pending, &[u8]),
    approved: &Approved,
    pool: &Pool,
    mut edits: Vec<Edit>,
    renamed: impl Fn(&str) -> Result<Renamed, Reply>,
) -> Result<Rewritten, Reply> {
    let shape = pending.shape;
    let failed = || {
        Reply::new(
            Code::InternalError,
            shape,
            "the body could not be rewritten",
        )
    };
    let mut targets = Vec::with_capacity(pool.targets.len());
    for target in &pool.targets {
        let provider = policy.providers.get(target.provider).ok_or_else(failed)?;
        let upstream = target.upstream_model.as_deref().unwrap_or(approved.name);
        let model = renamed(upstream)?;
        let current = model.path.as_deref().unwrap_or(&pending.path);
        let path = rebase(current, provider.base_path.as_deref())
            .or(model.path.clone())
            .unwrap_or_else(|| pending.path.clone());
        // A pool's targets never get the client's own credential, in the query either: the
        // parameters `identity.api_keys` strips are stripped for every pooled request.
        let path = without_credential_parameters(&path).unwrap_or(path);
        targets.push((provider.name.clone(), path, model.edits));
    }
    let Some((_, first_path, first_edits)) = targets.first() else {
        return Err(failed());
    };
    let others = edits.len();
    edits.extend(first_edits.iter().cloned());
    let (forwarded, landed) = if edits.is_empty() {
        (None, Vec::new())
    } else {
        let (out, landed) = apply_tracked(body, &edits).ok_or_else(failed)?;
        (Some(out), landed)
    };
    let spans: Vec<[usize; 2]> = landed
        .get(others..)
        .unwrap_or_default()
        .iter()
        .map(|range| [range.start, range.end])
        .collect();
    let length = forwarded.as_ref().map_or(body.len(), Vec::len);
    let first_texts: usize = first_edits.iter().map(|edit| edit.text.len()).sum();
    let has_body = !body.is_empty();
    let path = (first_path != &pending.path || pending.path_rewritten).then(|| first_path.clone());
    let mut plan_targets = Vec::with_capacity(targets.len());
    for (name, path, edits) in targets {
        let texts: Vec<String> = edits.into_iter().map(|edit| edit.text).collect();
        let own: usize = texts.iter().map(String::len).sum();
        let body_length = length
            .checked_sub(first_texts)
            .and_then(|rest| rest.checked_add(own))
            .ok_or_else(failed)?;
        // Every target's body, the forwarded one included, stays within the limit.
        if body_length > policy.max_body_bytes {
            return Err(rewritten_too_large(policy, shape));
        }
        let target = PlanTarget {
            path,
            texts,
            body_length: has_body.then_some(body_length),
        };
        plan_targets.push((name, target));
    }
    let plan = Plan {
        v: PLAN_VERSION,
        model: approved.name.to_owned(),
        family: classified.endpoint.family(),
        shape,
        body_length: has_body.then_some(length),
        spans,
        targets: Targets(plan_targets),
    };
    Ok(Rewritten {
        path,
        body: forwarded,
        plan: Some(plan),
    })
}

/// One edit per redacted string: its span in the body, and its redacted re-encoding.
pub(super) fn redaction_edits(
    policy: &Policy,
    body: &[u8],
    verdict: &Verdict,
) -> Option<Vec<Edit>> {
    if verdict.redactions.is_empty() {
        return Some(Vec::new());
    }
    let mut by_string: BTreeMap<Span, Vec<(std::ops::Range<usize>, &str)>> = BTreeMap::new();
    for (span, range, rule) in &verdict.redactions {
        by_string
            .entry(*span)
            .or_default()
            .push((range.clone(), policy.rule_id(*rule)));
    }
    by_string
        .iter()
        .map(|(span, ranges)| {
            let text = redact_string(body.get(span.range())?, ranges)?;
            Some(Edit {
                span: span.range(),
                text,
            })
        })
        .collect()
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
