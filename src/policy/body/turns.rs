//! Consecutive turns of the same role, read as one text where the provider merges them:
//! Anthropic documents that consecutive user (or assistant) turns are combined into one, so
//! the text at the end of one turn and at the start of the next is read on continuously, and
//! a secret or phrase split over the two must be scanned joined. Other families keep each
//! turn apart (see docs/inspection.md), and are not joined.

use std::mem;

use super::span::Span;

/// The text parts at the two ends of one turn's content: its leading and trailing runs of
/// consecutive text parts, and whether every part is text (then both are all of them). A
/// string content is one text part.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct ContentRuns {
    pub leading: Vec<Span>,
    pub trailing: Vec<Span>,
    pub all_text: bool,
}

/// Follows the turns of one message list, and gives out each run of text parts that spans
/// two or more consecutive turns of the same role.
#[derive(Debug, Default)]
pub(super) struct SameRoleTurns {
    /// The text parts read on so far: the trailing run of the last turn, and before it the
    /// runs of earlier turns of the same role that were text all through.
    run: Vec<Span>,
    role: Option<String>,
    /// Whether `run` already reaches over a turn boundary.
    crossed: bool,
}

impl SameRoleTurns {
    /// Takes in the next turn, its role and its content's runs (`None` when it has no
    /// content that is text); returns a run to hand out when one spanning turns is complete.
    pub(super) fn turn(
        &mut self,
        role: Option<&str>,
        runs: Option<ContentRuns>,
    ) -> Option<Vec<Span>> {
        let Some(runs) = runs else {
            return self.finish();
        };
        let continues = role.is_some()
            && role == self.role.as_deref()
            && !self.run.is_empty()
            && !runs.leading.is_empty();
        if continues {
            self.run.extend(runs.leading);
            self.crossed = true;
            if runs.all_text {
                return None;
            }
            let done = self.finish();
            self.run = runs.trailing;
            self.role = role.map(str::to_owned);
            return done;
        }
        let done = self.finish();
        self.run = runs.trailing;
        self.role = role.map(str::to_owned);
        done
    }

    /// The run spanning turns, if any, once the list ends or a turn breaks it.
    pub(super) fn finish(&mut self) -> Option<Vec<Span>> {
        let run = mem::take(&mut self.run);
        let crossed = mem::replace(&mut self.crossed, false);
        self.role = None;
        (crossed && run.len() > 1).then_some(run)
    }
}
