//! The rewrite step's redactions: each redacted string re-encoded, as an edit of the body.
//! The model's rewrite and the limits' changes join these edits in `endpoint.rs`, and the body
//! is copied once.

use std::collections::BTreeMap;

use crate::policy::compile::Policy;
use crate::policy::inspect::Verdict;
use crate::policy::redact::{redact_string, string_value_spans, Edit};

/// One edit per redacted string: its span in the body, and its redacted re-encoding.
pub(super) fn redaction_edits(
    policy: &Policy,
    body: &[u8],
    verdict: &Verdict,
) -> Option<Vec<Edit>> {
    if verdict.redactions.is_empty() {
        return Some(Vec::new());
    }
    let mut by_string: BTreeMap<u32, Vec<(std::ops::Range<usize>, &str)>> = BTreeMap::new();
    for (ordinal, range, rule) in &verdict.redactions {
        by_string
            .entry(*ordinal)
            .or_default()
            .push((range.clone(), policy.rule_id(*rule)));
    }
    let wanted = by_string.keys().map(|ordinal| (*ordinal, ())).collect();
    let spans = string_value_spans(body, &wanted);
    by_string
        .iter()
        .map(|(ordinal, ranges)| {
            let span = spans.get(ordinal)?.clone();
            let text = redact_string(body.get(span.clone())?, ranges)?;
            Some(Edit { span, text })
        })
        .collect()
}
