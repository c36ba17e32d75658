//! One channel of a streamed answer (a choice's content, a tool call's arguments, a content
//! block): its text as it arrives, and the decision of how much of it can be sent.
//!
//! Text is sent once no match can still reach it. Everything but the last `window` bytes is
//! sendable (no match is longer than the window, so a match that starts before that point is
//! already seen whole); a redact or block match that starts before it but still reaches into
//! the unsent tail is held whole, from its start, until the text shows where it ends. A held
//! channel grows at most `HOLD_CAP` bytes past the window; a match still growing there cuts
//! the stream. A little sent text is kept before the unsent text, so detectors see the
//! characters before a match (their boundary checks). The text is decided again once what is
//! held has grown by a sixteenth (sending later is always safe), so a long held match costs a
//! few scans, not one per delta.

use super::hits::{redact, scan_text, Hit};
use super::{AnswerScan, AnswerText, Effect, Findings};

/// How far past the window a match may keep a channel's text held.
pub const HOLD_CAP: usize = 64 * 1024;

/// Tool arguments are JSON text: a match in its decoded escapes can take up to six bytes of
/// the text per byte it matched (`\u0041` for `A`), so those channels look that much further.
const ESCAPED_BYTES_PER_BYTE: usize = 6;

/// The last delta event of a channel, from which a copy carrying held text is made.
#[derive(Debug, Clone, Default)]
pub(super) struct Template {
    pub payload: String,
}

#[derive(Debug)]
pub(super) struct Channel {
    pub kind: AnswerText,
    /// Sent text kept before the unsent text, for detectors' boundary checks.
    context: String,
    /// Text received and not sent yet.
    pending: String,
    /// Everything sent, for shapes that repeat a channel's whole text at its end.
    pub sent: Option<String>,
    pub template: Template,
    pub open: bool,
    /// What was held after the last decision: the text is decided again once it has grown by
    /// a sixteenth, so a long held match is not scanned again for every small delta.
    held_after: usize,
}

/// What a channel may send now.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Release {
    /// This text (redacted where it matched), possibly empty.
    Send(String),
    /// `rule` blocks the answer: `before` is the text before the match, sendable.
    Block { rule: usize, before: String },
}

impl Channel {
    pub(super) fn new(kind: AnswerText, keep_sent: bool) -> Self {
        Channel {
            kind,
            context: String::new(),
            pending: String::new(),
            sent: keep_sent.then(String::new),
            template: Template::default(),
            open: true,
            held_after: 0,
        }
    }

    pub(super) fn push(&mut self, text: &str) {
        self.pending.push_str(text);
    }

    /// Takes the unsent text, and the sent text kept before it, for the channel that
    /// continues this one's text (the next text part of the same message).
    pub(super) fn take_unsent(&mut self) -> (String, String) {
        self.held_after = 0;
        (
            std::mem::take(&mut self.context),
            std::mem::take(&mut self.pending),
        )
    }

    /// Continues the text a previous channel left unsent: it comes before this one's.
    pub(super) fn continue_from(&mut self, context: String, mut unsent: String) {
        unsent.push_str(&self.pending);
        self.pending = unsent;
        self.context = context;
    }

    /// Bytes received and not yet sent.
    pub(super) fn held(&self) -> usize {
        self.pending.len()
    }

    /// The window this channel looks back and holds back.
    pub(super) fn window(&self, window: usize) -> usize {
        match self.kind {
            AnswerText::ToolArguments => window.saturating_mul(ESCAPED_BYTES_PER_BYTE),
            _ => window,
        }
    }

    /// Decides what can be sent now; `last` when the channel ends (everything is decided).
    pub(super) fn release(
        &mut self,
        scan: &dyn AnswerScan,
        last: bool,
        findings: &mut Findings,
    ) -> Release {
        let grown_enough = self.held_after.saturating_add(self.held_after / 16);
        if !last && self.pending.len() < grown_enough {
            return Release::Send(String::new());
        }
        let window = self.window(scan.window());
        let mut text = std::mem::take(&mut self.context);
        let sent_before = text.len();
        text.push_str(&self.pending);
        let mut hits = Vec::new();
        scan_text(scan, &text, self.kind, &mut hits);
        hits.retain(|hit| hit.range.end > sent_before || hit.range.start >= sent_before);
        let sendable = if last {
            text.len()
        } else {
            floor_char(&text, text.len().saturating_sub(window)).max(sent_before)
        };
        let mut until = sendable;
        // A match with no length bound that may still be growing is held from its start.
        let open = scan
            .open_match(&text, self.kind)
            .filter(|(start, _)| !last && *start >= sent_before && *start < until);
        if let Some((start, _)) = open {
            until = floor_char(&text, start).max(sent_before);
        }
        // Hold each redact or block match that reaches past the point from its start; a
        // match held that way may move the point into another one, so until none does.
        let mut moved = !last;
        while moved {
            moved = false;
            for hit in &hits {
                let edits = hit.effect_given(true) != Effect::Record;
                let reaches_on = hit.range.start < until && hit.range.end > until;
                if edits && reaches_on && hit.range.start >= sent_before {
                    until = hit.range.start;
                    moved = true;
                }
            }
        }
        let decided: Vec<&Hit> = hits
            .iter()
            .filter(|hit| hit.range.start < until || (last && hit.range.start <= until))
            .collect();
        for hit in &decided {
            if hit.effect_given(true) == Effect::Record {
                findings.fire(hit.rule, Effect::Record);
            }
        }
        let blocking = decided
            .iter()
            .filter(|hit| hit.effect_given(true) == Effect::Block)
            .min_by_key(|hit| hit.range.start);
        if let Some(block) = blocking {
            let stop = block.range.start.max(sent_before);
            findings.fire(block.rule, Effect::Block);
            findings.blocked_by.get_or_insert(block.rule);
            let before = self.redacted(&text, sent_before, stop, &decided, scan, None);
            return Release::Block {
                rule: block.rule,
                before,
            };
        }
        let held_past = text.len().saturating_sub(until);
        if held_past > window.saturating_add(HOLD_CAP) {
            // A match keeps growing past what a stream may hold: it cannot be seen whole.
            let rule = hits
                .iter()
                .find(|hit| hit.range.start == until)
                .map(|hit| hit.rule)
                .or(open.map(|(_, rule)| rule))
                .unwrap_or(0);
            findings.fire(rule, Effect::Block);
            findings.blocked_by.get_or_insert(rule);
            let before = self.redacted(&text, sent_before, until, &decided, scan, None);
            return Release::Block { rule, before };
        }
        let released = self.redacted(&text, sent_before, until, &decided, scan, Some(findings));
        if let Some(sent) = &mut self.sent {
            sent.push_str(&released);
        }
        let keep_from = ceil_char(&text, until.saturating_sub(window));
        self.context = text.get(keep_from..until).unwrap_or_default().to_owned();
        self.pending = text.get(until..).unwrap_or_default().to_owned();
        self.held_after = self.pending.len();
        if last {
            self.open = false;
            self.context.clear();
        }
        Release::Send(released)
    }

    /// `text[from..to]` with the decided redactions in it; counted in `findings` if given.
    fn redacted(
        &self,
        text: &str,
        from: usize,
        to: usize,
        decided: &[&Hit],
        scan: &dyn AnswerScan,
        findings: Option<&mut Findings>,
    ) -> String {
        let ranges: Vec<_> = decided
            .iter()
            .filter(|hit| hit.effect_given(true) == Effect::Redact)
            .filter_map(|hit| {
                let start = hit.range.start.clamp(from, to);
                let end = hit.range.end.clamp(from, to);
                (start < end).then(|| {
                    (
                        start.saturating_sub(from)..end.saturating_sub(from),
                        hit.rule,
                    )
                })
            })
            .collect();
        if let Some(findings) = findings {
            for (_, rule) in &ranges {
                findings.fire(*rule, Effect::Redact);
            }
            findings.redactions = findings.redactions.saturating_add(ranges.len());
        }
        let part = text.get(from..to).unwrap_or_default();
        // Ranges come from the scanner on character boundaries; one that is not would leave
        // text unredacted, so the whole part is withheld instead.
        redact(part, &ranges, scan).unwrap_or_default()
    }
}

/// The largest character boundary of `text` at or before `at`.
fn floor_char(text: &str, mut at: usize) -> usize {
    at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at = at.saturating_sub(1);
    }
    at
}

/// The smallest character boundary of `text` at or after `at`.
fn ceil_char(text: &str, mut at: usize) -> usize {
    while at < text.len() && !text.is_char_boundary(at) {
        at = at.saturating_add(1);
    }
    at.min(text.len())
}

#[cfg(test)]
#[path = "channel_tests.rs"]
mod tests;
