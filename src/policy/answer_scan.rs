//! The policy's side of answer inspection: `AnswerRules`, the `AnswerScan` for one request's
//! consumer — the rules that read answers and apply to it, their fields and modes, each text
//! scanned as written and as folded — and the longest match a rule can make, which sizes what
//! a streamed answer holds back.

use std::ops::Range;

use super::answer::{AnswerMatch, AnswerScan, AnswerText, Effect};
use super::compiled::Policy;
use super::config::{Field, Mode, RuleAction};
use super::detect::Detector;
use super::fold;
use super::inspect::derived_budget;
use super::rules::Detection;
use super::rules::LONGEST_MATCH_CAP;

/// What a stream holds back at least, so that short rules still see a little context.
const MIN_WINDOW: usize = 256;
/// What a stream holds back at most: a longer match is held whole as it grows (up to the
/// engine's cap), so a smaller window only delays less.
const MAX_WINDOW: usize = LONGEST_MATCH_CAP;

/// The answer rules of one request: the policy's one scanner, read through the rules that
/// apply to the consumer.
#[derive(Debug)]
pub struct AnswerRules<'p> {
    policy: &'p Policy,
    /// Each applying rule with whether it is enforced, by index into the policy's rules.
    rules: Vec<(usize, bool)>,
}

impl<'p> AnswerRules<'p> {
    /// `rules`: the indexes `Policy::answer_rules` gave for the consumer; `consumer_mode`
    /// its mode (audit turns every action into a record).
    pub fn new(policy: &'p Policy, rules: &[usize], consumer_mode: Mode) -> Self {
        let rules = rules
            .iter()
            .filter_map(|index| {
                let rule = policy.rules.get(*index)?;
                let enforced = rule.enforced(consumer_mode);
                Some((*index, enforced))
            })
            .collect();
        AnswerRules { policy, rules }
    }

    /// Whether any applying rule would block or redact (rather than only record).
    pub fn enforces(&self) -> bool {
        self.rules.iter().any(|(index, enforced)| {
            *enforced
                && self
                    .policy
                    .rules
                    .get(*index)
                    .is_some_and(|rule| rule.action != RuleAction::Audit)
        })
    }

    /// What a match of rule `index` does, when the rule applies to this text kind.
    fn effect(&self, index: usize, field: Field) -> Option<Effect> {
        let (_, enforced) = self.rules.iter().find(|(rule, _)| *rule == index)?;
        let rule = self.policy.rules.get(index)?;
        if !rule.reads_answer_field(field) {
            return None;
        }
        Some(match (rule.action, enforced) {
            (RuleAction::Block, true) => Effect::Block,
            (RuleAction::Redact, true) => Effect::Redact,
            _ => Effect::Record,
        })
    }

    /// The applying matches in `text`, as `(rule, range)`.
    fn raw_matches(&self, text: &str, field: Field) -> Vec<(usize, Range<usize>, Effect)> {
        let Some(scanner) = self.policy.scanner.as_ref() else {
            return Vec::new();
        };
        let mut scratch = Vec::new();
        let mut found = Vec::new();
        let whole = 0..text.len();
        scanner.scan(text, std::slice::from_ref(&whole), &mut scratch, &mut found);
        found
            .into_iter()
            .filter_map(|(rule, range)| Some((rule, range, self.effect(rule, field)?)))
            .collect()
    }
}

fn field_of(kind: AnswerText) -> Field {
    match kind {
        AnswerText::Output => Field::Output,
        AnswerText::ToolArguments => Field::ToolArguments,
        AnswerText::Other => Field::Other,
    }
}

impl AnswerScan for AnswerRules<'_> {
    fn scan(&self, text: &str, kind: AnswerText, out: &mut Vec<AnswerMatch>) {
        if self.rules.is_empty() || text.is_empty() {
            return;
        }
        let field = field_of(kind);
        let first = out.len();
        let written = self.raw_matches(text, field);
        // Folding can expand text many times over (one character to eighteen): a text whose
        // folded form would pass the budget cannot be inspected within bounds, and an answer
        // rule that applies to it blocks it (or records it, when every such rule only
        // records) rather than let the module run out of memory.
        let folded = match fold::fold_within(text, derived_budget(text.len())) {
            Ok(folded) => folded,
            Err(_) => {
                let applying = || {
                    self.rules
                        .iter()
                        .filter_map(|(rule, _)| Some((*rule, self.effect(*rule, field)?)))
                };
                let chosen = applying()
                    .find(|(_, effect)| *effect != Effect::Record)
                    .or_else(|| applying().next());
                if let Some((rule, effect)) = chosen {
                    let effect = match effect {
                        Effect::Record => Effect::Record,
                        Effect::Block | Effect::Redact => Effect::Block,
                    };
                    out.push(AnswerMatch {
                        rule,
                        range: 0..text.len(),
                        effect,
                    });
                }
                None
            }
        };
        if let Some(folded) = folded {
            for (rule, range, effect) in self.raw_matches(&folded.text, field) {
                let source = folded.source_range(range);
                let covered = source.as_ref().is_some_and(|source| {
                    written.iter().any(|(seen, at, _)| {
                        *seen == rule && at.start <= source.start && source.end <= at.end
                    })
                });
                if covered {
                    continue;
                }
                // A match that cannot be led back to the bytes it came from cannot be
                // redacted exactly: it blocks, and is placed over the whole text so that a
                // stream sends none of it.
                let (range, effect) = match (source, effect) {
                    (Some(source), effect) => (source, effect),
                    (None, Effect::Redact) => (0..text.len(), Effect::Block),
                    (None, effect) => (0..text.len(), effect),
                };
                out.push(AnswerMatch {
                    rule,
                    range,
                    effect,
                });
            }
        }
        out.extend(
            written
                .into_iter()
                .map(|(rule, range, effect)| AnswerMatch {
                    rule,
                    range,
                    effect,
                }),
        );
        // In the order of the text; matches already in `out` are left where they are.
        if let Some(appended) = out.get_mut(first..) {
            appended.sort_by_key(|found| (found.range.start, found.range.end));
        }
    }

    fn open_match(&self, text: &str, kind: AnswerText) -> Option<(usize, usize)> {
        let field = field_of(kind);
        let mut earliest: Option<(usize, usize)> = None;
        for (index, _) in &self.rules {
            let Some(rule) = self.policy.rules.get(*index) else {
                continue;
            };
            let edits = matches!(
                self.effect(*index, field),
                Some(Effect::Redact | Effect::Block)
            );
            let Detection::Detector(name) = &rule.detection else {
                continue;
            };
            if !edits {
                continue;
            }
            for detector in Detector::lookup(name).unwrap_or_default() {
                let start = match detector {
                    Detector::Jwt => open_jwt(text),
                    Detector::PrivateKey => open_private_key(text),
                    _ => None,
                };
                if let Some(start) = start {
                    if earliest.is_none_or(|(at, _)| start < at) {
                        earliest = Some((start, *index));
                    }
                }
            }
        }
        earliest
    }

    fn marker(&self, rule: usize) -> String {
        format!("[REDACTED:{}]", self.policy.rule_id(rule))
    }

    fn window(&self) -> usize {
        self.rules
            .iter()
            .filter_map(|(index, _)| self.policy.rules.get(*index))
            .map(|rule| rule.longest_match)
            .max()
            .unwrap_or(MIN_WINDOW)
            .clamp(MIN_WINDOW, MAX_WINDOW)
    }
}

/// Where a JWT may begin that runs to the end of `text`: the first `eyJ` in the trailing run
/// of characters a token is made of (base64url, dots).
fn open_jwt(text: &str) -> Option<usize> {
    let token_char = |byte: &u8| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.');
    let run = text
        .as_bytes()
        .iter()
        .rev()
        .take_while(|byte| token_char(byte))
        .count();
    let from = text.len().checked_sub(run)?;
    text.get(from..)?
        .find("eyJ")
        .map(|at| from.saturating_add(at))
}

/// Where a private key may begin that has not ended: the last BEGIN line with no END line
/// after it.
fn open_private_key(text: &str) -> Option<usize> {
    let begin = text.rfind("-----BEGIN")?;
    let rest = text.get(begin..)?;
    (!rest.contains("-----END")).then_some(begin)
}

#[cfg(test)]
#[path = "answer_scan_tests.rs"]
mod tests;
