//! One text scanned as the answer shows it: the scanner's matches, plus the matches its
//! decoded escapes show (JSON text inside a string, up to three layers deep, as in requests); and redaction of the
//! matched ranges with the rules' markers.

use std::borrow::Cow;
use std::ops::Range;

use super::{AnswerMatch, AnswerScan, AnswerText, Effect};

use crate::policy::body::text::{read_offset, unescape_mapped, Offsets};

/// How many layers of JSON text inside a string are decoded: as many as for requests.
const DECODED_LAYERS: usize = 3;

/// A match, and whether its range is exact in the text as read: a match only the decoded
/// escapes show covers escapes, so it cannot be redacted in place and blocks instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Hit {
    pub rule: usize,
    pub range: Range<usize>,
    pub effect: Effect,
    pub exact: bool,
}

impl Hit {
    /// What the hit does once the answer's circumstances are known: a redaction that cannot
    /// be made exactly (a decoded layer, a key, an answer that repeats its tokens as log
    /// probabilities) blocks.
    pub(super) fn effect_given(&self, can_redact: bool) -> Effect {
        match self.effect {
            Effect::Redact if !(self.exact && can_redact) => Effect::Block,
            effect => effect,
        }
    }
}

/// Appends the hits in `text`, of kind `kind`.
pub(super) fn scan_text(scan: &dyn AnswerScan, text: &str, kind: AnswerText, out: &mut Vec<Hit>) {
    let first = out.len();
    let mut plain: Vec<AnswerMatch> = Vec::new();
    scan.scan(text, kind, &mut plain);
    out.extend(plain.iter().map(|found| Hit {
        rule: found.rule,
        range: found.range.clone(),
        effect: found.effect,
        exact: true,
    }));
    // JSON text inside a string (tool arguments, structured output) is read by whoever parses
    // it: its escapes are decoded as deep as a request's are, each layer scanned too.
    let mut layer = Cow::Borrowed(text);
    let mut layers: Vec<Offsets> = Vec::new();
    let mut found = Vec::new();
    for _ in 0..DECODED_LAYERS {
        if !layer.contains('\\') {
            return;
        }
        let Some((next, offsets)) = unescape_mapped(&layer) else {
            return;
        };
        layers.push(offsets);
        found.clear();
        scan.scan(&next, kind, &mut found);
        for each in &found {
            let start = read_offset(&layers, each.range.start).unwrap_or(0);
            let end = read_offset(&layers, each.range.end)
                .unwrap_or(text.len())
                .max(start);
            let covered = out.get(first..).unwrap_or_default().iter().any(|known| {
                known.rule == each.rule && known.range.start <= start && known.range.end >= end
            });
            if !covered {
                out.push(Hit {
                    rule: each.rule,
                    range: start..end,
                    effect: each.effect,
                    exact: false,
                });
            }
        }
        layer = Cow::Owned(next);
    }
}

/// `text` with each range replaced by its rule's marker. Overlapping ranges merge: a later one
/// covers only what an earlier one left. `None` if a range is not on the text's characters.
pub(super) fn redact(
    text: &str,
    ranges: &[(Range<usize>, usize)],
    scan: &dyn AnswerScan,
) -> Option<String> {
    let mut sorted: Vec<&(Range<usize>, usize)> = ranges.iter().collect();
    sorted.sort_by_key(|(range, _)| range.start);
    let mut out = String::with_capacity(text.len());
    let mut at = 0usize;
    for (range, rule) in sorted {
        if range.end <= at {
            continue;
        }
        let start = range.start.max(at);
        out.push_str(text.get(at..start)?);
        out.push_str(&scan.marker(*rule));
        at = range.end.min(text.len());
    }
    out.push_str(text.get(at..)?);
    Some(out)
}
