//! Built-in detectors for prompt inspection, and the scanner that runs them next to the
//! policy's own patterns.
//!
//! A detector finds candidates cheaply, then checks in code what a regex cannot say: that the
//! candidate is not part of a longer token, and that its checksum (Luhn, ISO 7064 mod 97),
//! ranges or shape hold. A candidate the check refuses is never reported. Secrets and email
//! are found by regular expressions that start with (or, for email, contain) a literal such as
//! `AKIA`, `ghp_` or `@`, which the regex engine skips to with a prefilter before it runs an
//! automaton; numbers have no such literal, so they are found by hand, skipping from digit to
//! digit. A prompt with no secret costs little more than a memchr per detector.
//!
//! Boundaries are ASCII on purpose: a letter outside ASCII next to a token does not make it part
//! of a longer word, so a key pasted into Chinese or Japanese text with no space around it is
//! still found. Matching is on decoded text: the caller unescapes JSON strings first.

mod card;
mod checksum;
mod email;
mod iban;
mod numbers;
mod phone;
mod secrets;
mod ssn;

use std::fmt;
use std::ops::Range;

use regex::{Regex, RegexBuilder};

/// One built-in detector. Its name (`secrets.aws_access_key`, `email`) is what rules write in
/// `detect`; a group name (`secrets`) selects every member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Detector {
    AwsAccessKey,
    PrivateKey,
    GithubToken,
    GitlabToken,
    SlackToken,
    StripeKey,
    GoogleApiKey,
    OpenaiKey,
    AnthropicKey,
    Jwt,
    Email,
    CreditCard,
    Iban,
    UsSsn,
    Phone,
}

impl Detector {
    pub const ALL: &'static [Detector] = &[
        Detector::AwsAccessKey,
        Detector::PrivateKey,
        Detector::GithubToken,
        Detector::GitlabToken,
        Detector::SlackToken,
        Detector::StripeKey,
        Detector::GoogleApiKey,
        Detector::OpenaiKey,
        Detector::AnthropicKey,
        Detector::Jwt,
        Detector::Email,
        Detector::CreditCard,
        Detector::Iban,
        Detector::UsSsn,
        Detector::Phone,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Detector::AwsAccessKey => "secrets.aws_access_key",
            Detector::PrivateKey => "secrets.private_key",
            Detector::GithubToken => "secrets.github_token",
            Detector::GitlabToken => "secrets.gitlab_token",
            Detector::SlackToken => "secrets.slack_token",
            Detector::StripeKey => "secrets.stripe_key",
            Detector::GoogleApiKey => "secrets.google_api_key",
            Detector::OpenaiKey => "secrets.openai_key",
            Detector::AnthropicKey => "secrets.anthropic_key",
            Detector::Jwt => "secrets.jwt",
            Detector::Email => "email",
            Detector::CreditCard => "credit_card",
            Detector::Iban => "iban",
            Detector::UsSsn => "us_ssn",
            Detector::Phone => "phone",
        }
    }

    /// The detectors a rule's `detect` value selects: one member by its full name, or every
    /// member of a group (`secrets`). Names are exact; an unknown one is `None`, so a typo is a
    /// config error rather than a rule that finds nothing.
    pub fn lookup(name: &str) -> Option<Vec<Detector>> {
        let found: Vec<Detector> = Detector::ALL
            .iter()
            .copied()
            .filter(|detector| {
                let full = detector.name();
                full == name || full.split_once('.').is_some_and(|(group, _)| group == name)
            })
            .collect();
        (!found.is_empty()).then_some(found)
    }

    fn spec(self) -> &'static Spec {
        match self {
            Detector::AwsAccessKey => &secrets::AWS_ACCESS_KEY,
            Detector::PrivateKey => &secrets::PRIVATE_KEY,
            Detector::GithubToken => &secrets::GITHUB_TOKEN,
            Detector::GitlabToken => &secrets::GITLAB_TOKEN,
            Detector::SlackToken => &secrets::SLACK_TOKEN,
            Detector::StripeKey => &secrets::STRIPE_KEY,
            Detector::GoogleApiKey => &secrets::GOOGLE_API_KEY,
            Detector::OpenaiKey => &secrets::OPENAI_KEY,
            Detector::AnthropicKey => &secrets::ANTHROPIC_KEY,
            Detector::Jwt => &secrets::JWT,
            Detector::Email => &email::EMAIL,
            Detector::CreditCard => &card::CREDIT_CARD,
            Detector::Iban => &iban::IBAN,
            Detector::UsSsn => &ssn::US_SSN,
            Detector::Phone => &phone::PHONE,
        }
    }
}

impl fmt::Display for Detector {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How a built-in detector finds and confirms its matches.
#[derive(Debug)]
struct Spec {
    /// Find candidates, one pass each. Detectors with the same finder (the number detectors)
    /// share its pass. A detector whose shapes have unrelated prefixes (GitHub's `ghp_` and
    /// `github_pat_`) gets one regex per prefix: an alternation of them leaves the regex engine
    /// without a single fast prefilter, which in Wasm (no Teddy) costs ten times as much.
    finders: &'static [Finder],
    /// Bytes that continue a token: a candidate with one on either side is part of a longer
    /// token and is dropped before `verify` runs.
    boundary: Boundary,
    /// Reports the matches within (or, for a key block, from) a candidate.
    verify: fn(&str, Range<usize>, &mut Found),
}

/// How a built-in detector finds its candidates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Finder {
    /// A regular expression. Each has a literal (`AKIA`, `@`) the regex engine skips to.
    Regex(&'static str),
    /// Runs of digits and separators, found by hand: a regex with no literal to skip to reads
    /// every byte through its automaton and costs a call per number in the text.
    Numbers,
    /// Two capitals, two check digits and a BBAN, found by hand for the same reason.
    Iban,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Boundary {
    /// `verify` looks at the neighbours itself.
    Checked,
    /// ASCII letters and digits.
    Alnum,
    /// ASCII letters, digits and `_`.
    Word,
    /// The base64url alphabet: ASCII letters, digits, `_` and `-`.
    Base64Url,
}

impl Boundary {
    fn continues(self, byte: u8) -> bool {
        match self {
            Boundary::Checked => false,
            Boundary::Alnum => byte.is_ascii_alphanumeric(),
            Boundary::Word => byte.is_ascii_alphanumeric() || byte == b'_',
            Boundary::Base64Url => byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-',
        }
    }

    fn isolates(self, text: &str, range: &Range<usize>) -> bool {
        let bytes = text.as_bytes();
        let before = range.start.checked_sub(1).and_then(|at| bytes.get(at));
        let after = bytes.get(range.end);
        !before.is_some_and(|&byte| self.continues(byte))
            && !after.is_some_and(|&byte| self.continues(byte))
    }
}

/// Where a detector's `verify` reports its matches. `verify` sees one string alone; its ranges
/// are moved by `offset` to where that string sits in the scanned text.
struct Found<'o> {
    index: usize,
    out: &'o mut Vec<(usize, Range<usize>)>,
    /// Where the string `verify` reads starts in the scanned text.
    offset: usize,
    /// The end of the last candidate or match, in the string: the next search starts there, so
    /// one detector's matches never overlap.
    end: usize,
    reported: bool,
}

impl Found<'_> {
    fn push(&mut self, range: Range<usize>) {
        self.end = self.end.max(range.end);
        self.reported = true;
        let start = range.start.saturating_add(self.offset);
        let end = range.end.saturating_add(self.offset);
        self.out.push((self.index, start..end));
    }
}

/// What a scanner looks for: a built-in detector, or a regular expression from the policy
/// (Rust `regex` syntax).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source<'p> {
    Builtin(Detector),
    Pattern(&'p str),
}

impl From<Detector> for Source<'_> {
    fn from(detector: Detector) -> Self {
        Source::Builtin(detector)
    }
}

/// A policy pattern that does not compile: which source, and the regex library's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatternError {
    pub index: usize,
    pub message: String,
}

impl fmt::Display for PatternError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "invalid regular expression: {}", self.message)
    }
}

/// A policy pattern's compiled program may take this much memory; a larger one (a long
/// Unicode-aware counted repetition, say) is refused at load rather than paid for in every
/// worker.
const PATTERN_SIZE_LIMIT: usize = 1 << 20;

/// Every source of one scan, compiled once at config load.
#[derive(Debug, Clone)]
pub struct SourceSet {
    passes: Vec<Pass>,
}

/// One search over the text, and the sources that read what it finds.
#[derive(Debug, Clone)]
enum Pass {
    /// A policy pattern: every non-empty match is reported as it is. `alone` when the pattern
    /// has an anchor (`^`, `$`, `\A`, `\z`), whose meaning depends on where a string starts and
    /// ends: it then runs on each string by itself.
    Pattern {
        index: usize,
        regex: Regex,
        alone: bool,
    },
    /// Built-in detectors that share a finder, each with its index in the sources.
    Builtin {
        finder: Finder,
        search: Search,
        specs: Vec<(usize, &'static Spec)>,
    },
}

#[derive(Debug, Clone)]
enum Search {
    Regex(Regex),
    Numbers,
    Iban,
}

impl Search {
    fn new(finder: Finder, index: usize) -> Result<Search, PatternError> {
        Ok(match finder {
            Finder::Regex(pattern) => Search::Regex(compile(pattern, index)?),
            Finder::Numbers => Search::Numbers,
            Finder::Iban => Search::Iban,
        })
    }

    /// The leftmost candidate at or after `at`.
    fn next(&self, text: &str, at: usize) -> Option<Range<usize>> {
        match self {
            Search::Regex(regex) => regex.find_at(text, at).map(|found| found.range()),
            Search::Numbers => numbers::next_candidate(text, at),
            Search::Iban => iban::next_candidate(text, at),
        }
    }
}

impl SourceSet {
    pub fn new(sources: &[Source]) -> Result<SourceSet, PatternError> {
        let mut passes: Vec<Pass> = Vec::new();
        for (index, source) in sources.iter().enumerate() {
            let detector = match *source {
                Source::Builtin(detector) => detector,
                Source::Pattern(pattern) => {
                    let regex = compile(pattern, index)?;
                    passes.push(Pass::Pattern {
                        index,
                        regex,
                        alone: has_anchor(pattern),
                    });
                    continue;
                }
            };
            let spec = detector.spec();
            for &finder in spec.finders {
                let shared = passes.iter_mut().find_map(|pass| match pass {
                    Pass::Builtin {
                        finder: existing,
                        specs,
                        ..
                    } if *existing == finder => Some(specs),
                    _ => None,
                });
                match shared {
                    Some(specs) => specs.push((index, spec)),
                    None => passes.push(Pass::Builtin {
                        finder,
                        search: Search::new(finder, index)?,
                        specs: vec![(index, spec)],
                    }),
                }
            }
        }
        Ok(SourceSet { passes })
    }

    /// Appends every match in `text` as (index of its source in `new`, byte range), sorted by
    /// source, then by position. Ranges lie on char boundaries and are never empty; one
    /// source's matches do not overlap, while different sources' may. Built-in matches are
    /// validated before they are reported.
    pub fn scan(&self, text: &str, out: &mut Vec<(usize, Range<usize>)>) {
        let whole = 0..text.len();
        self.scan_pieces(text, std::slice::from_ref(&whole), out);
    }

    /// As `scan`, for a text made of pieces (strings joined by a separator byte): every match
    /// lies inside one piece and is exactly what scanning that piece alone would report. A
    /// detector never reads past its piece, so a match that would run on into the next piece
    /// (a key block whose END line is elsewhere) reports what lies inside its own. The text is
    /// still searched in one pass; a piece is searched again alone only where a candidate ran
    /// across its end. `pieces` are sorted, disjoint, non-empty ranges on char boundaries.
    pub fn scan_pieces(
        &self,
        text: &str,
        pieces: &[Range<usize>],
        out: &mut Vec<(usize, Range<usize>)>,
    ) {
        let before = out.len();
        for pass in &self.passes {
            pass.run(text, pieces, out, false);
        }
        if let Some(appended) = out.get_mut(before..) {
            appended.sort_unstable_by_key(|(index, range)| (*index, range.start));
        }
    }

    /// Whether `scan` would report anything; stops at the first match.
    pub fn any(&self, text: &str) -> bool {
        let mut out = Vec::new();
        let whole = 0..text.len();
        self.passes.iter().any(|pass| {
            pass.run(text, std::slice::from_ref(&whole), &mut out, true);
            !out.is_empty()
        })
    }
}

/// Whether a pattern may hold an anchor to the start or end of the text (or of a line, which
/// with `\r` in CRLF mode also depends on what follows). Conservative: a `^` that negates a
/// class, or an escaped one, counts too; such a pattern is only searched string by string.
fn has_anchor(pattern: &str) -> bool {
    pattern.contains(['^', '$']) || pattern.contains("\\A") || pattern.contains("\\z")
}

/// The index of the piece holding `at`, or of the first piece after it.
fn piece_at(pieces: &[Range<usize>], at: usize) -> usize {
    pieces.partition_point(|piece| piece.end <= at)
}

fn compile(pattern: &str, index: usize) -> Result<Regex, PatternError> {
    RegexBuilder::new(pattern)
        .size_limit(PATTERN_SIZE_LIMIT)
        .build()
        .map_err(|error| PatternError {
            index,
            message: describe(&error),
        })
}

/// The regex library's message on one line: its syntax errors span three (the pattern, a
/// caret, the reason), which reads badly in a log.
fn describe(error: &regex::Error) -> String {
    match error {
        regex::Error::CompiledTooBig(limit) => format!(
            "it compiles to more than {limit} bytes (a long counted repetition of a Unicode \
             class, such as \\w{{1000}}, is the usual cause)"
        ),
        other => {
            let text = other.to_string();
            let reason = text
                .lines()
                .rev()
                .map(str::trim)
                .find(|line| !line.is_empty());
            let reason = reason.unwrap_or_default();
            reason.strip_prefix("error: ").unwrap_or(reason).to_owned()
        }
    }
}

impl Pass {
    fn run(
        &self,
        text: &str,
        pieces: &[Range<usize>],
        out: &mut Vec<(usize, Range<usize>)>,
        first_only: bool,
    ) {
        match self {
            Pass::Pattern {
                index,
                regex,
                alone,
            } => {
                if *alone || pieces.len() < 2 {
                    for piece in pieces {
                        if pattern_in(*index, regex, text, piece, out, first_only) {
                            return;
                        }
                    }
                } else {
                    pattern_joined(*index, regex, text, pieces, out);
                }
            }
            Pass::Builtin { search, specs, .. } => {
                builtin(search, specs, text, pieces, out, first_only);
            }
        }
    }
}

/// A pattern's non-empty matches in one piece alone. True when `first_only` found one.
fn pattern_in(
    index: usize,
    regex: &Regex,
    text: &str,
    piece: &Range<usize>,
    out: &mut Vec<(usize, Range<usize>)>,
    first_only: bool,
) -> bool {
    let Some(alone) = text.get(piece.clone()) else {
        return false;
    };
    for found in regex.find_iter(alone) {
        if !found.is_empty() {
            let start = found.start().saturating_add(piece.start);
            let end = found.end().saturating_add(piece.start);
            out.push((index, start..end));
            if first_only {
                return true;
            }
        }
    }
    false
}

/// A pattern over the joined text. A match that lies in one piece is what that piece alone
/// gives: without anchors a regex match does not depend on the text around it, and the
/// separator is no word character, as the edge of a string is not. A match that runs across
/// a separator belongs to no piece; every piece it touches is searched again alone, and the
/// joined matches in those pieces are dropped.
fn pattern_joined(
    index: usize,
    regex: &Regex,
    text: &str,
    pieces: &[Range<usize>],
    out: &mut Vec<(usize, Range<usize>)>,
) {
    let before = out.len();
    let mut again: Vec<usize> = Vec::new();
    for found in regex.find_iter(text) {
        if found.is_empty() {
            continue;
        }
        let first = piece_at(pieces, found.start());
        let inside = pieces
            .get(first)
            .is_some_and(|piece| piece.start <= found.start() && found.end() <= piece.end);
        if inside {
            out.push((index, found.range()));
            continue;
        }
        // Every piece the match overlaps (none when it lies in a separator).
        let mut touched = first;
        while let Some(piece) = pieces.get(touched) {
            if piece.start >= found.end() {
                break;
            }
            if again.last() != Some(&touched) {
                again.push(touched);
            }
            touched = touched.saturating_add(1);
        }
    }
    if again.is_empty() {
        return;
    }
    let mut kept = before;
    let mut read = before;
    while let Some((_, range)) = out.get(read) {
        let piece = piece_at(pieces, range.start);
        if again.binary_search(&piece).is_err() {
            out.swap(kept, read);
            kept = kept.saturating_add(1);
        }
        read = read.saturating_add(1);
    }
    out.truncate(kept);
    for piece in again {
        if let Some(piece) = pieces.get(piece) {
            pattern_in(index, regex, text, piece, out, false);
        }
    }
}

/// Built-in detectors sharing a finder, over the joined text. Each candidate is judged within
/// its own piece: the boundary check and `verify` see that piece alone. A candidate that runs
/// across the end of its piece (or starts in a separator) is searched for again in the piece
/// alone: the joined search starts no later than the piece's own would, since a candidate in a
/// piece is a candidate in the joined text too.
fn builtin(
    search: &Search,
    specs: &[(usize, &'static Spec)],
    text: &str,
    pieces: &[Range<usize>],
    out: &mut Vec<(usize, Range<usize>)>,
    first_only: bool,
) {
    // Candidates are searched from the end of the last one; each detector also skips
    // candidates that start inside its own last match, so one that reaches past its
    // candidate (a key block) never reports twice while the others still see the text.
    let mut inline = [0usize; 8];
    let mut spilled = Vec::new();
    let resume: &mut [usize] = match inline.get_mut(..specs.len()) {
        Some(inline) => inline,
        None => {
            spilled.resize(specs.len(), 0);
            &mut spilled
        }
    };
    let mut at = 0;
    while let Some(found) = search.next(text, at) {
        let index = piece_at(pieces, found.start);
        let Some(piece) = pieces.get(index) else {
            break;
        };
        let Some(alone) = text.get(piece.clone()) else {
            break;
        };
        let from = at.max(piece.start);
        let local = if piece.start <= found.start && found.end <= piece.end {
            Some(found.start.saturating_sub(piece.start)..found.end.saturating_sub(piece.start))
        } else {
            search.next(alone, from.saturating_sub(piece.start))
        };
        let Some(local) = local else {
            // Nothing more in this piece: go on from the next one.
            match pieces.get(index.saturating_add(1)) {
                Some(next) => {
                    at = next.start;
                    continue;
                }
                None => break,
            }
        };
        let start = local.start.saturating_add(piece.start);
        for ((index, spec), resume) in specs.iter().zip(resume.iter_mut()) {
            if start < *resume || !spec.boundary.isolates(alone, &local) {
                continue;
            }
            let mut found = Found {
                index: *index,
                out: &mut *out,
                offset: piece.start,
                end: local.end,
                reported: false,
            };
            (spec.verify)(alone, local.clone(), &mut found);
            *resume = found.end.saturating_add(piece.start);
            if found.reported && first_only {
                return;
            }
        }
        // Built-in patterns never match the empty string, so this always moves on.
        let end = local.end.saturating_add(piece.start);
        if end <= at {
            break;
        }
        at = end;
    }
}

#[cfg(test)]
mod tests;
