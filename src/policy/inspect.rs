//! Prompt inspection: every rule's detectors and patterns compiled into one scanner at config
//! load; each piece of text the walk hands out scanned once; the matches judged against the
//! consumer's rules, their roles and fields, and their modes.

use std::collections::btree_map::{BTreeMap, Entry};
use std::ops::Range;

use super::body::{read_offset, Offsets, Span, TextAt, TextField, TextSink, Walked};
use super::config::{Field, RuleAction};
use super::detect::{self, Detector};

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

/// The sink the walk feeds. Each scan has a fixed cost per detector pass, and a body holds
/// hundreds of short strings and keys, so the text is gathered into one buffer, joined by
/// newlines, and searched in one pass; yet every detector and pattern decides on one string
/// alone (`detect::SourceSet::scan_pieces`), so what follows a string never hides, nor makes, a
/// match in it.
pub struct ScanSink<'p> {
    scanner: &'p Scanner,
    text: String,
    /// Each piece's place in `text`, in order.
    pieces: Vec<Range<usize>>,
    /// Where each piece sits in the body.
    at: Vec<TextAt>,
    /// For a piece that is the decoded form of a string (`TextSink::decoded`), the piece of
    /// that string as it was read, and where each byte of the decoded piece sits in it.
    decoded_from: Vec<Option<(usize, Vec<Offsets>)>>,
}

impl<'p> ScanSink<'p> {
    pub fn new(scanner: &'p Scanner, capacity: usize) -> Self {
        ScanSink {
            scanner,
            text: String::with_capacity(capacity),
            pieces: Vec::new(),
            at: Vec::new(),
            decoded_from: Vec::new(),
        }
    }

    /// Scans everything gathered; the matches with ranges relative to their own piece.
    ///
    /// A match in the decoded form of a string is dropped when a match of the same rule in
    /// the string as read covers the place it was decoded from: that match is the one to act
    /// on, and its redaction removes all of it. Judged by place, not by text: the same text
    /// written plainly elsewhere in the string hides nothing. What is left to the decoded form
    /// is what the escapes hid, and a `redact` rule there blocks.
    pub fn finish(self) -> Vec<Hit> {
        let mut scratch = Vec::new();
        let mut found = Vec::new();
        self.scanner
            .scan(&self.text, &self.pieces, &mut scratch, &mut found);
        // Each match with its piece and its range relative to the piece.
        let located: Vec<(usize, usize, Range<usize>)> = found
            .into_iter()
            .filter_map(|(rule, range)| {
                let index = self
                    .pieces
                    .partition_point(|piece| piece.start <= range.start)
                    .checked_sub(1)?;
                let piece = self.pieces.get(index)?;
                (range.end <= piece.end).then_some((
                    rule,
                    index,
                    range.start.checked_sub(piece.start)?..range.end.checked_sub(piece.start)?,
                ))
            })
            .collect();
        let covered_as_read = |rule: usize, index: usize, range: &Range<usize>| {
            let Some(Some((read, layers))) = self.decoded_from.get(index) else {
                return false;
            };
            let (Some(start), Some(end)) = (
                read_offset(layers, range.start),
                read_offset(layers, range.end),
            ) else {
                return false;
            };
            located.iter().any(|(r, i, seen)| {
                *r == rule && i == read && seen.start <= start && end <= seen.end
            })
        };
        // The quotes of the JSON text each piece with a match may hold, found once per piece.
        let mut keys: BTreeMap<usize, Vec<(usize, bool)>> = BTreeMap::new();
        for (_, index, _) in &located {
            if let (Entry::Vacant(slot), Some(piece)) =
                (keys.entry(*index), self.pieces.get(*index))
            {
                slot.insert(json_quotes(
                    self.text.get(piece.clone()).unwrap_or_default(),
                ));
            }
        }
        let in_key = |index: usize, range: &Range<usize>| {
            keys.get(&index)
                .is_some_and(|quotes| in_json_key(quotes, range))
        };
        located
            .iter()
            .filter(|(rule, index, range)| {
                in_key(*index, range) || !covered_as_read(*rule, *index, range)
            })
            .filter_map(|(rule, index, range)| {
                let mut at = *self.at.get(*index)?;
                // Rewriting a key of JSON text in a string could make a duplicate key, as
                // rewriting a key of the body could: without a span, a redaction blocks.
                if in_key(*index, range) {
                    at.span = None;
                }
                Some(Hit {
                    rule: *rule,
                    at,
                    range: range.clone(),
                })
            })
            .collect()
    }

    fn push(&mut self, text: &str, at: TextAt, decoded_from: Option<(usize, Vec<Offsets>)>) {
        // An empty string holds no match; the pieces stay non-empty.
        if text.is_empty() {
            return;
        }
        let start = self.text.len();
        self.text.push_str(text);
        self.pieces.push(start..self.text.len());
        self.at.push(at);
        self.decoded_from.push(decoded_from);
        self.text.push('\n');
    }
}

impl TextSink for ScanSink<'_> {
    fn text(&mut self, text: &str, at: TextAt) {
        self.push(text, at, None);
    }

    fn decoded(&mut self, text: &str, layers: &[Offsets], at: TextAt) {
        // The string as read is the last piece that is not itself a decoded form.
        let from = self
            .decoded_from
            .iter()
            .enumerate()
            .rev()
            .find_map(|(index, from)| from.is_none().then_some(index));
        let at = TextAt { span: None, ..at };
        self.push(text, at, from.map(|from| (from, layers.to_vec())));
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

#[cfg(test)]
#[path = "inspect_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "inspect_family_tests.rs"]
mod family_tests;

#[cfg(test)]
#[path = "inspect_differential_tests.rs"]
mod differential_tests;
