//! The rewrite step: the model renamed (in the path or the body), the redactions and the
//! limits' changes made as edits of the body in one copy, and the path moved under the
//! provider's `base_path`.

use std::collections::BTreeMap;

use super::approval::Approved;
use super::state::Pending;
use crate::policy::body::{Span, Walked};
use crate::policy::classify::{encode_segment, Classified, API_ROOT};
use crate::policy::compiled::Policy;
use crate::policy::inspect::Verdict;
use crate::policy::limits::{self, Change};
use crate::policy::redact::{apply, redact_string, Edit};
use crate::policy::{Code, Reply};

/// The new path and body; `None` where they stay the client's.
pub(super) struct Rewritten {
    pub path: Option<String>,
    pub body: Option<Vec<u8>>,
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
    let Approved {
        name,
        upstream,
        provider,
    } = *approved;
    // Edits: the model (in the path or the body), the redactions and the limits' changes,
    // in one copy.
    let mut path = None;
    let mut edits = limits::into_edits(changes);
    if upstream != name {
        // A rewrite that cannot be made is refused: never forward the client's name.
        let failed = || {
            Reply::new(
                Code::InternalError,
                shape,
                "the model could not be rewritten",
            )
        };
        match (&classified.path_model, &walked.model) {
            (Some(path_model), _) => {
                let before = pending.path.get(..path_model.segment.start);
                let after = pending.path.get(path_model.segment.end..);
                let (Some(before), Some(after)) = (before, after) else {
                    return Err(failed());
                };
                path = Some(format!("{before}{}{after}", encode_segment(upstream)));
                // The body's copies of the model follow the path's, in the form they had.
                for body_model in walked.model.iter().chain(&walked.inner_models) {
                    let text = match body_model.name.strip_prefix("models/") {
                        Some(_) => format!("models/{upstream}"),
                        None => upstream.to_owned(),
                    };
                    edits.push(Edit {
                        span: body_model.span.clone(),
                        text: serde_json::to_string(&text).map_err(|_| failed())?,
                    });
                }
            }
            (None, Some(body_model)) => edits.push(Edit {
                span: body_model.span.clone(),
                text: serde_json::to_string(upstream).map_err(|_| failed())?,
            }),
            (None, None) => {}
        }
    }
    edits.extend(
        redaction_edits(policy, body, verdict).ok_or_else(|| {
            Reply::new(Code::InternalError, shape, "the body could not be redacted")
        })?,
    );
    let body = if edits.is_empty() {
        None
    } else {
        Some(apply(body, edits).ok_or_else(|| {
            Reply::new(
                Code::InternalError,
                shape,
                "the body could not be rewritten",
            )
        })?)
    };
    let current = path.as_deref().unwrap_or(&pending.path);
    let path = rebase(current, provider.base_path.as_deref()).or(path);
    Ok(Rewritten { path, body })
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
