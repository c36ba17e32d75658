//! Prompt inspection: every rule's detectors and patterns compiled into one scanner at config
//! load; each piece of text the walk hands out scanned once; the matches judged against the
//! consumer's rules, their roles and fields, and their modes.

use std::collections::BTreeSet;
use std::ops::Range;

use super::body::text::decoded_layers;
use super::body::{Offsets, Span, TextAt, TextField, TextSink, Walked};
use super::config::{Field, RuleAction};
use super::detect::{self, Detector};
use super::fold;
use origin::{Located, Origin, Quotes};

/// What a rule looks for.
#[derive(Debug, Clone)]
pub enum RuleSource {
    Detector(Detector),
    Pattern(String),
}

/// The detectors a `detect` name selects: one, or every member of a group.
pub fn detectors(name: &str) -> Option<Vec<Detector>> {
    Detector::lookup(name)
}

/// Every name `detect` accepts, for error messages.
pub fn detector_names() -> Vec<&'static str> {
    let mut names: Vec<&'static str> = Detector::ALL.iter().map(|d| d.name()).collect();
    names.insert(0, "secrets");
    names
}

/// Scans text for every rule at once: the built-in detectors and patterns of all rules in one
/// `detect::SourceSet`, each source remembered with its rule.
#[derive(Debug)]
pub struct Scanner {
    sources: detect::SourceSet,
    /// The rule of each source, by the source's index.
    rules: Vec<usize>,
}

impl Scanner {
    /// Builds the scanner from `(rule index, source)` pairs. A bad pattern is reported with
    /// its rule's index and the regex error.
    pub fn new(sources: Vec<(usize, RuleSource)>) -> Result<Scanner, (usize, String)> {
        let rules: Vec<usize> = sources.iter().map(|(rule, _)| *rule).collect();
        let compiled: Vec<detect::Source> = sources
            .iter()
            .map(|(_, source)| match source {
                RuleSource::Detector(detector) => detect::Source::Builtin(*detector),
                RuleSource::Pattern(pattern) => detect::Source::Pattern(pattern),
            })
            .collect();
        let sources = detect::SourceSet::new(&compiled).map_err(|error| {
            let rule = rules.get(error.index).copied().unwrap_or_default();
            (rule, error.to_string())
        })?;
        Ok(Scanner { sources, rules })
    }

    /// Appends `(rule index, byte range)` for every match in `text`, made of `pieces` (see
    /// `detect::SourceSet::scan_pieces`): each match lies in one piece.
    pub fn scan(
        &self,
        text: &str,
        pieces: &[Range<usize>],
        scratch: &mut Vec<(usize, Range<usize>)>,
        out: &mut Vec<(usize, Range<usize>)>,
    ) {
        scratch.clear();
        self.sources.scan_pieces(text, pieces, scratch);
        out.extend(
            scratch
                .drain(..)
                .filter_map(|(source, range)| Some((*self.rules.get(source)?, range))),
        );
    }
}

/// A match, before roles are known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    pub rule: usize,
    pub at: TextAt,
    /// In the decoded text.
    pub range: Range<usize>,
}

/// Text made from the strings as read (folded, escapes decoded, parts joined) and the maps
/// that lead it back may take at most this many bytes per byte of body, with the floor and
/// ceiling below: NFKC alone can make a character 11 times longer in bytes (U+FDFA), and
/// each string can be decoded, folded and joined, so without a bound one body of a few MiB
/// grows to hundreds of MiB of Wasm memory (which never shrinks) and seconds of scanning.
/// Ordinary text stays under: full-width letters in JSON text, folded as a part, decoded,
/// and again joined, cost about 24 bytes a byte (a 12-byte map entry for each folded
/// character, four times), while U+FDFA costs 26 bytes a byte in each of those forms. The
/// ceiling, not the ratio, bounds large bodies. Past the budget the request is refused
/// (`TextTooLarge`), never forwarded unscanned.
const DERIVED_PER_BODY_BYTE: usize = 32;
/// Small bodies may always expand this much: short texts of ligatures and full-width
/// letters are ordinary.
const DERIVED_FLOOR: usize = 1 << 20;
/// However large `max_body_bytes` is, derived text stays under this.
const DERIVED_CEILING: usize = 64 << 20;

/// The bytes of derived text (and the maps that lead it back) a body of `body_len` bytes may
/// make.
pub fn derived_budget(body_len: usize) -> usize {
    body_len
        .saturating_mul(DERIVED_PER_BODY_BYTE)
        .clamp(DERIVED_FLOOR, DERIVED_CEILING)
}

/// The body's text, read as the model reads it, would pass `derived_budget`: the request
/// cannot be inspected within bounds and is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextTooLarge {
    /// The budget it passed, in bytes.
    pub budget: usize,
}

/// The sink the walk feeds. Each scan has a fixed cost per detector pass, and a body holds
/// hundreds of short strings and keys, so the text is gathered into one buffer, joined by
/// newlines, and searched in one pass; yet every detector and pattern decides on one string
/// alone (`detect::SourceSet::scan_pieces`), so what follows a string never hides, nor makes, a
/// match in it.
///
/// Besides each string as read, the buffer holds what a model reads of it (see `Origin`): its
/// JSON escapes decoded, its folded form (`fold`), and the text of consecutive text parts
/// joined. A match in any of these is led back to the strings it came from.
pub struct ScanSink<'p> {
    scanner: &'p Scanner,
    text: String,
    /// Each piece's place in `text`, in order.
    pieces: Vec<Range<usize>>,
    /// Where each piece sits in the body: for a piece made from others, where what it was
    /// made from sits (a decoded or joined piece has no span of its own).
    at: Vec<TextAt>,
    /// What each piece is: a string as read, or made from earlier pieces.
    origins: Vec<Origin>,
    /// The bytes derived text may still take (see `derived_budget`), and whether some text
    /// was left out for passing it.
    budget: usize,
    left: usize,
    over: bool,
}

impl<'p> ScanSink<'p> {
    /// A sink for a body of `capacity` bytes; its derived text gets `derived_budget`.
    pub fn new(scanner: &'p Scanner, capacity: usize) -> Self {
        let budget = derived_budget(capacity);
        ScanSink {
            scanner,
            text: String::with_capacity(capacity),
            pieces: Vec::new(),
            at: Vec::new(),
            origins: Vec::new(),
            budget,
            left: budget,
            over: false,
        }
    }

    /// Takes `bytes` from the budget; false (and the sink marked over) when they do not fit.
    fn spend(&mut self, bytes: usize) -> bool {
        match self.left.checked_sub(bytes).filter(|_| !self.over) {
            Some(left) => {
                self.left = left;
                true
            }
            None => {
                self.over = true;
                false
            }
        }
    }

    /// Scans everything gathered; the matches with ranges relative to their own piece.
    ///
    /// A match in a piece made from others (decoded, folded, joined) is dropped when a match of
    /// the same rule in what it was made from covers the place it came from: that match is
    /// the one to act on, and its redaction removes all of it. Judged by place, not by text:
    /// the same text written plainly elsewhere in the string hides nothing. What is left is
    /// what the escapes, the invisible characters or the split hid. A redaction there is led
    /// back to the strings as read and made in place; where it cannot be exactly (a decoded
    /// form, a match from inside what one character folded to), the hit has no span, and a
    /// `redact` rule blocks.
    ///
    /// `TextTooLarge` when the derived text passed its budget: some of what the model reads
    /// was not scanned, so nothing found here can clear the request.
    pub fn finish(self) -> Result<Vec<Hit>, TextTooLarge> {
        if self.over {
            return Err(TextTooLarge {
                budget: self.budget,
            });
        }
        let mut scratch = Vec::new();
        let mut found = Vec::new();
        self.scanner
            .scan(&self.text, &self.pieces, &mut scratch, &mut found);
        let located = Located::new(found, &self.pieces);
        let buffer = (self.text.as_str(), self.pieces.as_slice());
        let made = (self.origins.as_slice(), self.pieces.as_slice());
        let mut quotes = Quotes::default();
        let mut hits = Vec::new();
        let mut derived: Vec<Hit> = Vec::new();
        // A derived match led back to a place a hit already names adds nothing.
        let mut named: BTreeSet<(usize, TextAt, usize, usize)> = BTreeSet::new();
        for (rule, index, range) in located.iter() {
            let Some(origin) = self.origins.get(index) else {
                continue;
            };
            match origin {
                Origin::Read => {
                    let Some(mut at) = self.at.get(index).copied() else {
                        continue;
                    };
                    // Rewriting a key of JSON text in a string could make a duplicate key, as
                    // rewriting a key of the body could: without a span, a redaction blocks.
                    if quotes.in_key(buffer, index, range) {
                        at.span = None;
                    }
                    named.insert((rule, at, range.start, range.end));
                    hits.push(Hit {
                        rule,
                        at,
                        range: range.clone(),
                    });
                }
                Origin::Decoded { .. } => {
                    if quotes.in_key(buffer, index, range)
                        || !located.covered(made, rule, index, range)
                    {
                        if let Some(at) = self.at.get(index) {
                            hits.push(Hit {
                                rule,
                                at: *at,
                                range: range.clone(),
                            });
                        }
                    }
                }
                Origin::Folded { .. } | Origin::Joined { .. } => {
                    if located.covered(made, rule, index, range) {
                        continue;
                    }
                    for (root, mapped) in origin::roots(made, index, Some(range.clone())) {
                        let Some(mut at) = self.at.get(root).copied() else {
                            continue;
                        };
                        let range = match mapped {
                            Some(mapped) => {
                                if quotes.in_key(buffer, root, &mapped) {
                                    at.span = None;
                                }
                                mapped
                            }
                            None => {
                                at.span = None;
                                range.clone()
                            }
                        };
                        if named.insert((rule, at, range.start, range.end)) {
                            derived.push(Hit { rule, at, range });
                        }
                    }
                }
            }
        }
        hits.append(&mut derived);
        Ok(hits)
    }

    /// Adds a piece, and its folded form when folding changes it. A piece made from others
    /// (`cost` its map's bytes) and every folded form are paid from the budget.
    fn push(&mut self, text: &str, at: TextAt, origin: Origin, cost: usize) {
        // An empty string holds no match; the pieces stay non-empty.
        if text.is_empty() || self.over {
            return;
        }
        let derived = !matches!(origin, Origin::Read);
        if derived && !self.spend(text.len().saturating_add(cost)) {
            return;
        }
        let from = self.pieces.len();
        self.push_piece(text, at, origin);
        // Half the budget left: the folded text is paid twice (below), so a fold that would
        // not fit stops as soon as that shows, not once all of it is made.
        let folded = match fold::fold_within(text, self.left / 2) {
            Ok(folded) => folded,
            Err(fold::FoldTooLarge) => {
                self.over = true;
                return;
            }
        };
        // The folded text is held twice: in the buffer, and with its map.
        if let Some(folded) =
            folded.filter(|folded| self.spend(folded.cost().saturating_add(folded.text.len())))
        {
            let start = self.text.len();
            self.text.push_str(&folded.text);
            let end = self.text.len();
            if start < end {
                self.pieces.push(start..end);
                self.at.push(at);
                self.origins.push(Origin::Folded { from, folded });
                self.text.push('\n');
            }
        }
    }

    fn push_piece(&mut self, text: &str, at: TextAt, origin: Origin) {
        let start = self.text.len();
        self.text.push_str(text);
        self.pieces.push(start..self.text.len());
        self.at.push(at);
        self.origins.push(origin);
        self.text.push('\n');
    }
}

impl TextSink for ScanSink<'_> {
    fn text(&mut self, text: &str, at: TextAt) {
        self.push(text, at, Origin::Read, 0);
    }

    fn decoded(&mut self, text: &str, layers: &[Offsets], at: TextAt) {
        // What was decoded is the last piece that is a string as read, or joined text.
        let from = self
            .origins
            .iter()
            .rposition(|origin| matches!(origin, Origin::Read | Origin::Joined { .. }));
        let at = TextAt { span: None, ..at };
        if let (Some(from), false) = (from, self.over) {
            let cost = layers
                .iter()
                .map(Offsets::cost)
                .fold(0, usize::saturating_add);
            let layers = layers.to_vec();
            self.push(text, at, Origin::Decoded { from, layers }, cost);
        }
    }

    fn text_parts(&mut self, spans: &[Span]) {
        if self.over {
            return;
        }
        let Some((parts, joined)) =
            origin::join((&self.text, &self.pieces, &self.at, &self.origins), spans)
        else {
            return;
        };
        let Some(first) = parts.first().and_then(|(index, _)| self.at.get(*index)) else {
            return;
        };
        let at = TextAt {
            span: None,
            ..*first
        };
        // Two 4-byte offsets a part in the Wasm module.
        let cost = parts.len().saturating_mul(8);
        self.push(&joined, at, Origin::Joined { parts }, cost);
        decoded_layers(&joined, at, self);
    }
}

/// The quotes of `text` read as JSON text (a tool call's `arguments`), those escaped by a
/// backslash aside, in order: each with whether it closes a key (a colon follows it, white
/// space aside). Read leniently, whether or not the whole is valid JSON.
fn json_quotes(text: &str) -> Vec<(usize, bool)> {
    let bytes = text.as_bytes();
    let mut quotes = Vec::new();
    let mut at = 0;
    while let Some(byte) = bytes.get(at) {
        match byte {
            b'\\' => at = at.saturating_add(1),
            b'"' => {
                let after = bytes
                    .get(at.saturating_add(1)..)
                    .and_then(|rest| rest.iter().find(|b| !b.is_ascii_whitespace()));
                quotes.push((at, after == Some(&b':')));
            }
            _ => {}
        }
        at = at.saturating_add(1);
    }
    quotes
}

/// Whether a match at `range` lies in, or reaches into, a key of JSON text whose quotes are
/// `quotes` (`json_quotes`): a quote closing a key lies within it, or is the first quote after
/// it. Prose such as `"x@y.com": hi` counts too: a redaction there blocks rather than risk a
/// duplicate key.
fn in_json_key(quotes: &[(usize, bool)], range: &Range<usize>) -> bool {
    let first = quotes.partition_point(|(at, _)| *at < range.start);
    let mut rest = quotes.get(first..).unwrap_or_default().iter();
    for (at, closes_key) in rest.by_ref() {
        if *closes_key {
            return true;
        }
        if *at >= range.end {
            return false;
        }
    }
    false
}

/// A rule that fired, for the log and the debug header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fired {
    pub rule: String,
    pub action: RuleAction,
    /// False when audit mode turned the action into a record.
    pub enforced: bool,
}

/// What inspection decided.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// The first enforced blocking rule, by index.
    pub blocked_by: Option<usize>,
    /// Enforced redactions: `(span of the string in the body, range in its decoded text, rule
    /// index)`.
    pub redactions: Vec<(Span, Range<usize>, usize)>,
    pub fired: Vec<Fired>,
    /// Set when an opaque part is refused (enforced) or recorded (audit).
    pub opaque: Option<(&'static str, bool)>,
}

/// The field a piece of text counts as, now that its message's role is known.
pub(crate) fn field_of(field: TextField, role: Option<&str>) -> Field {
    match field {
        TextField::MessageContent => match role {
            Some("system" | "developer") => Field::System,
            Some("tool" | "function") => Field::ToolResults,
            _ => Field::Prompt,
        },
        TextField::Prompt => Field::Prompt,
        TextField::System => Field::System,
        TextField::ToolArguments => Field::ToolArguments,
        TextField::ToolResults => Field::ToolResults,
        TextField::Other => Field::Other,
    }
}

/// The role a piece of text is judged under: its message's, or `system` for system text, or
/// `user` for bare prompts.
pub(crate) fn role_of<'w>(at: &TextAt, walked: &'w Walked) -> Option<&'w str> {
    match at.message {
        Some(index) => walked
            .roles
            .get(index as usize)
            .and_then(|role| role.as_deref()),
        None => match at.field {
            TextField::System => Some("system"),
            TextField::Prompt => Some("user"),
            _ => None,
        },
    }
}

#[path = "inspect_origin.rs"]
mod origin;

#[cfg(test)]
#[path = "inspect_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "inspect_family_tests.rs"]
mod family_tests;

#[cfg(test)]
#[path = "inspect_differential_tests.rs"]
mod differential_tests;

#[cfg(test)]
#[path = "inspect_fold_tests.rs"]
mod fold_tests;
