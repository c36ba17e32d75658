//! A scanner for tests: literal needles, each a rule with its effect, optionally only for
//! some kinds of text; it notes the kinds it was asked about.

use std::cell::RefCell;

use super::{AnswerMatch, AnswerScan, AnswerText, Effect};

pub(super) struct Needles {
    pub needles: Vec<(&'static str, Effect)>,
    pub window: usize,
    /// Only these kinds are scanned (all when empty).
    pub kinds: Vec<AnswerText>,
    /// Every (text, kind) scanned that held a needle.
    pub seen: RefCell<Vec<(String, AnswerText)>>,
}

impl Needles {
    pub(super) fn new(needles: &[(&'static str, Effect)]) -> Self {
        Needles {
            needles: needles.to_vec(),
            window: 32,
            kinds: Vec::new(),
            seen: RefCell::new(Vec::new()),
        }
    }

    pub(super) fn one(needle: &'static str, effect: Effect) -> Self {
        Needles::new(&[(needle, effect)])
    }
}

impl AnswerScan for Needles {
    fn scan(&self, text: &str, kind: AnswerText, out: &mut Vec<AnswerMatch>) {
        if !self.kinds.is_empty() && !self.kinds.contains(&kind) {
            return;
        }
        for (rule, (needle, effect)) in self.needles.iter().enumerate() {
            for (at, _) in text.match_indices(needle) {
                self.seen.borrow_mut().push((text.to_owned(), kind));
                out.push(AnswerMatch {
                    rule,
                    range: at..at + needle.len(),
                    effect: *effect,
                });
            }
        }
    }

    fn marker(&self, rule: usize) -> String {
        format!("[REDACTED:r{rule}]")
    }

    fn window(&self) -> usize {
        self.window
    }
}
