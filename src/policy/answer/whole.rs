//! Whole answers: every string of the answer scanned on its own, matches redacted in place
//! (only the matched strings' bytes change), or the answer blocked.

use super::hits::{redact, scan_text, Hit};
use super::json_strings;
use super::kinds::kind;
use super::{AnswerScan, AnswerShape, AnswerText, Effect, Findings, WholeAnswer};
use crate::policy::redact::{apply, Edit};

pub(super) fn inspect(
    shape: AnswerShape,
    body: &[u8],
    scan: &dyn AnswerScan,
    findings: &mut Findings,
) -> WholeAnswer {
    let Some(read) = json_strings::read(body) else {
        findings.unreadable = true;
        return WholeAnswer::Unreadable;
    };
    // A Gemini stream without `alt=sse` is an array of answers; every other answer is one
    // object.
    let shaped = read.is_object
        || (shape == AnswerShape::Gemini && body.trim_ascii_start().first() == Some(&b'['));
    if !shaped {
        findings.unreadable = true;
        return WholeAnswer::Unreadable;
    }
    let mut edits = Vec::new();
    let mut hits: Vec<Hit> = Vec::new();
    for string in &read.strings {
        let text_kind = if string.is_key {
            AnswerText::Other
        } else {
            kind(shape, &string.path)
        };
        hits.clear();
        scan_text(scan, &string.text, text_kind, &mut hits);
        let can_redact = !string.is_key && !read.logprobs;
        let mut ranges = Vec::new();
        for hit in &hits {
            let effect = hit.effect_given(can_redact);
            findings.fire(hit.rule, effect);
            match effect {
                Effect::Block => {
                    findings.blocked_by.get_or_insert(hit.rule);
                }
                Effect::Redact => ranges.push((hit.range.clone(), hit.rule)),
                Effect::Record => {}
            }
        }
        if ranges.is_empty() || findings.blocked_by.is_some() {
            continue;
        }
        let Some(redacted) =
            redact(&string.text, &ranges, scan).and_then(|text| serde_json::to_string(&text).ok())
        else {
            // A range off the text's characters: the scanner misspoke; never send it unedited.
            findings
                .blocked_by
                .get_or_insert(hits.first().map_or(0, |hit| hit.rule));
            continue;
        };
        findings.redactions = findings.redactions.saturating_add(ranges.len());
        edits.push(Edit {
            span: string.span.clone(),
            text: redacted,
        });
    }
    if let Some(rule) = findings.blocked_by {
        return WholeAnswer::Blocked { rule };
    }
    if edits.is_empty() {
        return WholeAnswer::Unchanged;
    }
    match apply(body, edits) {
        Some(edited) => WholeAnswer::Edited(edited),
        None => {
            findings.unreadable = true;
            WholeAnswer::Unreadable
        }
    }
}

#[cfg(test)]
#[path = "whole_tests.rs"]
mod tests;
