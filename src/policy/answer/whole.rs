//! Whole answers: every string of the answer scanned on its own, and the text parts of each
//! message scanned joined as clients join them (`parts`); matches redacted in place (only the
//! matched strings' bytes change), or the answer blocked.

use std::ops::Range;

use super::hits::{redact, scan_text, Hit};
use super::json_strings::{self, JsonString};
use super::kinds::kind;
use super::parts;
use super::{AnswerScan, AnswerShape, AnswerText, Effect, Findings, WholeAnswer};
use crate::policy::redact::{apply, escapes_of, widen, Edit};

/// Each string's redactions so far, by string index.
type Redactions = Vec<Vec<(Range<usize>, usize)>>;

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
    let mut redactions: Redactions = vec![Vec::new(); read.strings.len()];
    let mut hits: Vec<Hit> = Vec::new();
    for (index, string) in read.strings.iter().enumerate() {
        let text_kind = if string.is_key {
            AnswerText::Other
        } else {
            kind(shape, &string.path)
        };
        hits.clear();
        scan_text(scan, &string.text, text_kind, &mut hits);
        let can_redact = !string.is_key && !read.logprobs;
        for hit in &hits {
            if let Some(ranges) = redactions.get_mut(index) {
                decide(hit, can_redact, hit.range.clone(), ranges, findings);
            }
        }
    }
    for run in parts::runs(shape, &read.strings) {
        joined_run(
            &read.strings,
            &run,
            read.logprobs,
            scan,
            &mut redactions,
            findings,
        );
    }
    if let Some(rule) = findings.blocked_by {
        return WholeAnswer::Blocked { rule };
    }
    let mut edits = Vec::new();
    for (string, ranges) in read.strings.iter().zip(&redactions) {
        if ranges.is_empty() {
            continue;
        }
        // The string may be JSON text (a tool call's arguments): a redaction that starts or
        // ends inside one of its escapes takes in the whole escape, so that no backslash is
        // left to escape the marker (as requests are redacted, `redact::redact_string`).
        let escapes = escapes_of(&string.text);
        let widened: Vec<(Range<usize>, usize)> = ranges
            .iter()
            .map(|(range, rule)| (widen(range, &escapes), *rule))
            .collect();
        let Some(redacted) =
            redact(&string.text, &widened, scan).and_then(|text| serde_json::to_string(&text).ok())
        else {
            // A range off the text's characters: the scanner misspoke; never send it unedited.
            let rule = ranges.first().map_or(0, |(_, rule)| *rule);
            return WholeAnswer::Blocked { rule };
        };
        findings.redactions = findings.redactions.saturating_add(ranges.len());
        edits.push(Edit {
            span: string.span.clone(),
            text: redacted,
        });
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

/// Notes what `hit` does; a redaction of `range` (in the string's own text) joins `ranges`
/// unless it is there already.
fn decide(
    hit: &Hit,
    can_redact: bool,
    range: Range<usize>,
    ranges: &mut Vec<(Range<usize>, usize)>,
    findings: &mut Findings,
) {
    let effect = hit.effect_given(can_redact);
    findings.fire(hit.rule, effect);
    match effect {
        Effect::Block => {
            findings.blocked_by.get_or_insert(hit.rule);
        }
        Effect::Redact => {
            let entry = (range, hit.rule);
            if !ranges.contains(&entry) {
                ranges.push(entry);
            }
        }
        Effect::Record => {}
    }
}

/// Scans a run of text parts joined; a match redacts its portion in each part it touches.
fn joined_run(
    strings: &[JsonString],
    run: &[usize],
    logprobs: bool,
    scan: &dyn AnswerScan,
    redactions: &mut Redactions,
    findings: &mut Findings,
) {
    let (text, starts) = parts::joined(strings, run);
    let mut hits = Vec::new();
    scan_text(scan, &text, AnswerText::Output, &mut hits);
    for hit in &hits {
        for (at, range) in parts::portions(&hit.range, &starts, text.len()) {
            let Some(index) = run.get(at) else {
                continue;
            };
            if let Some(ranges) = redactions.get_mut(*index) {
                decide(hit, !logprobs, range, ranges, findings);
            }
        }
    }
}

#[cfg(test)]
#[path = "whole_tests.rs"]
mod tests;
