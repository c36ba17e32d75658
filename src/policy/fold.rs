//! Text folded as a reader sees it, for inspection: Unicode format characters removed and
//! compatibility forms folded (NFKC), so that a secret or a forbidden phrase written with
//! invisible characters or full-width letters is still found. A match in folded text is led
//! back to the bytes it came from, or, where it cannot be exactly, reported as such so the
//! caller blocks rather than redact a part of it.
//!
//! Four steps, in this order: each Unicode tag character that mirrors a printable ASCII one
//! is read as that ASCII character (`tag_ascii`: models read "ASCII smuggling" as text); the
//! characters a reader does not see are removed (`is_removed`: format and other
//! default-ignorable characters, control characters); the rest is normalised to NFKC; each
//! normalised character that is a letter of another script drawn like a Latin one is read as
//! that Latin letter (`latin_lookalike`). The text as written is always scanned too, so
//! folding only ever adds matches.
//!
//! Folding can make text longer (NFKC turns U+FDFA into 18 letters), so a caller with a
//! budget folds with `fold_within`, which stops once the folded text and its map would pass
//! it.
//!
//! The way back: NFKC works on segments that start at a character nothing before it can
//! combine with, so the text is folded one segment at a time and each segment remembers the
//! source bytes it came from. Most segments are one character left as it was; runs of those
//! are kept as one entry, so mostly-ASCII text costs a few entries.

use std::iter;
use std::ops::Range;

use unicode_normalization::char::{canonical_combining_class, decompose_compatible};
use unicode_normalization::{is_nfkc_quick, IsNormalized, UnicodeNormalization};

/// A string as a reader sees it, with the way back to the string it was folded from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Folded {
    pub text: String,
    /// Where the folded text came from, in order: each run starts at `folded` in `text` and
    /// at `source` in the source. A copied run maps byte for byte; any other run is one
    /// segment, whose ends alone map. The last run is at the end of both texts.
    runs: Vec<Run>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Run {
    folded: usize,
    source: usize,
    copied: bool,
}

impl Folded {
    /// The range of the source string that `folded` (a range of `self.text`) came from, when
    /// both ends fall on the boundary of a folded character; `None` when a match starts or
    /// ends inside what one source character folded to (`ﬁ` → `fi`, a match from `i`).
    ///
    /// Removed characters go with the text after them: a match from `K` in `A\u{200B}K`
    /// starts at the zero-width space, one that ends at `A` ends before it.
    pub fn source_range(&self, folded: Range<usize>) -> Option<Range<usize>> {
        if !self.is_range(&folded) {
            return None;
        }
        Some(self.exact(folded.start)?..self.exact(folded.end)?)
    }

    /// The smallest range of the source that holds all that `folded` came from, even when its
    /// ends fall inside what one source character folded to; `None` only for a range that is
    /// not one of `self.text`. For judging whether a match is already covered, never for
    /// redacting.
    pub fn source_cover(&self, folded: Range<usize>) -> Option<Range<usize>> {
        if !self.is_range(&folded) {
            return None;
        }
        let (start_run, _) = self.run_at(folded.start)?;
        let start = match start_run.copied {
            true => start_run
                .source
                .checked_add(folded.start.checked_sub(start_run.folded)?)?,
            false => start_run.source,
        };
        let (end_run, next) = self.run_at(folded.end)?;
        let end = if folded.end == end_run.folded {
            end_run.source
        } else if end_run.copied {
            end_run
                .source
                .checked_add(folded.end.checked_sub(end_run.folded)?)?
        } else {
            next?.source
        };
        Some(start..end.max(start))
    }

    fn is_range(&self, folded: &Range<usize>) -> bool {
        folded.start <= folded.end
            && self.text.is_char_boundary(folded.start)
            && self.text.is_char_boundary(folded.end)
    }

    /// Where the folded offset `at` maps in the source, if it is a segment's boundary.
    fn exact(&self, at: usize) -> Option<usize> {
        let (run, _) = self.run_at(at)?;
        if at == run.folded {
            Some(run.source)
        } else if run.copied {
            run.source.checked_add(at.checked_sub(run.folded)?)
        } else {
            None
        }
    }

    /// The last run that starts at or before `at`, and the run after it.
    fn run_at(&self, at: usize) -> Option<(Run, Option<Run>)> {
        let index = self
            .runs
            .partition_point(|run| run.folded <= at)
            .checked_sub(1)?;
        let run = *self.runs.get(index)?;
        Some((run, self.runs.get(index.checked_add(1)?).copied()))
    }
}

/// The bytes one entry of the map back takes in the Wasm module (three 4-byte fields), used
/// on every target so that a budget means the same in tests as in Envoy.
const RUN_BYTES: usize = 12;

impl Folded {
    /// The bytes this fold holds in the Wasm module: its text and its map back.
    pub fn cost(&self) -> usize {
        let map = self.runs.len().saturating_mul(RUN_BYTES);
        self.text.len().saturating_add(map)
    }
}

/// Folding stopped: the folded text and its map would pass the caller's budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FoldTooLarge;

/// `text` folded, or `None` when folding changes nothing (every ASCII string without control
/// characters, for one).
pub fn fold(text: &str) -> Option<Folded> {
    fold_within(text, usize::MAX).ok().flatten()
}

/// As `fold`, stopping with `FoldTooLarge` as soon as the folded text and its map
/// (`Folded::cost`) would pass `budget` bytes: the work and the memory stay bounded by the
/// budget, however much the text expands.
pub fn fold_within(text: &str, budget: usize) -> Result<Option<Folded>, FoldTooLarge> {
    if text.bytes().all(is_plain_ascii) || unchanged(text) {
        return Ok(None);
    }
    let mut folder = Folder {
        text: String::with_capacity(text.len().min(budget)),
        runs: Vec::new(),
        carried: None,
        budget,
    };
    // The segment being read: where it starts in the source (the removed characters before
    // its first one included), its characters, and the end of its last one.
    let mut start = 0;
    let mut segment = String::new();
    let mut kept_end = 0;
    let mut at = 0;
    while let Some(rest) = text.get(at..).filter(|rest| !rest.is_empty()) {
        if folder.over_budget() {
            return Err(FoldTooLarge);
        }
        let ascii = rest
            .bytes()
            .position(|b| !is_plain_ascii(b))
            .unwrap_or(rest.len());
        if let Some(last) = ascii.checked_sub(1).and_then(|run| at.checked_add(run)) {
            // A run of ASCII: each character but the last is a segment of its own, left as
            // it is; the last may take combining marks after it.
            if !segment.is_empty() {
                folder.segment(text, start..kept_end, &segment);
                segment.clear();
                start = kept_end;
            }
            let mut from = at;
            if last > at && (start < at || folder.carried.is_some()) {
                let first = at.saturating_add(1);
                folder.segment(text, start..first, text.get(at..first).unwrap_or_default());
                (start, from) = (first, first);
            }
            if last > from {
                folder.copied(text.get(from..last).unwrap_or_default(), from);
                start = last;
            }
            segment.push_str(text.get(last..last.saturating_add(1)).unwrap_or_default());
            kept_end = last.saturating_add(1);
            at = kept_end;
            continue;
        }
        let Some(c) = rest.chars().next() else {
            break;
        };
        let next = at.saturating_add(c.len_utf8());
        let c = tag_ascii(c).unwrap_or(c);
        if !is_removed(c) {
            if !segment.is_empty() && starts_segment(c) {
                folder.segment(text, start..kept_end, &segment);
                segment.clear();
                start = kept_end;
            }
            segment.push(c);
            kept_end = next;
        }
        at = next;
    }
    if !segment.is_empty() {
        folder.segment(text, start..kept_end, &segment);
    }
    if folder.over_budget() {
        return Err(FoldTooLarge);
    }
    Ok(folder.finish(text))
}

/// Builds a `Folded` one segment at a time.
struct Folder {
    text: String,
    runs: Vec<Run>,
    /// The source start of segments that folded to nothing: they go with the next one.
    carried: Option<usize>,
    /// The bytes the text and the map may take (`Folded::cost`).
    budget: usize,
}

impl Folder {
    fn over_budget(&self) -> bool {
        let map = self.runs.len().saturating_mul(RUN_BYTES);
        self.text.len().saturating_add(map) > self.budget
    }

    /// Folds one segment: `chars`, the characters kept of `text[source]`.
    fn segment(&mut self, text: &str, source: Range<usize>, chars: &str) {
        let folded_start = self.text.len();
        let mut single = chars.chars();
        match (single.next(), single.next()) {
            (Some(c), None) if c.is_ascii() => self.text.push(c),
            // A character alone that NFKC keeps (most letters of most scripts): no
            // normaliser needed.
            (Some(c), None) if is_nfkc_quick(iter::once(c)) == IsNormalized::Yes => {
                self.text.push(latin_lookalike(c).unwrap_or(c));
            }
            _ => {
                for c in chars.chars().nfkc() {
                    let c = latin_lookalike(c).unwrap_or(c);
                    if !is_removed(c) {
                        self.text.push(c);
                    }
                }
            }
        }
        let folded = self.text.get(folded_start..).unwrap_or_default();
        if folded.is_empty() {
            self.carried.get_or_insert(source.start);
            return;
        }
        let source_start = self.carried.take().unwrap_or(source.start);
        let copied = source_start == source.start && text.get(source) == Some(folded);
        if copied && self.runs.last().is_some_and(|run| run.copied) {
            return;
        }
        self.runs.push(Run {
            folded: folded_start,
            source: source_start,
            copied,
        });
    }

    /// Adds ASCII text, each character a segment left as it was, read at `at` in the
    /// source. Nothing is carried (see `fold`).
    fn copied(&mut self, ascii: &str, at: usize) {
        if ascii.is_empty() {
            return;
        }
        let folded = self.text.len();
        self.text.push_str(ascii);
        // A copied run before this one ends where this starts: segments are contiguous.
        if !self.runs.last().is_some_and(|run| run.copied) {
            self.runs.push(Run {
                folded,
                source: at,
                copied: true,
            });
        }
    }

    fn finish(mut self, source: &str) -> Option<Folded> {
        if self.text == source {
            return None;
        }
        self.runs.push(Run {
            folded: self.text.len(),
            source: source.len(),
            copied: false,
        });
        Some(Folded {
            text: self.text,
            runs: self.runs,
        })
    }
}

/// Whether folding leaves `text` as it is: no character it removes or reads as another, and
/// already in NFKC. One pass without allocating for the common case.
fn unchanged(text: &str) -> bool {
    let foldable = text
        .chars()
        .any(|c| is_removed(c) || latin_lookalike(c).is_some());
    !foldable && is_nfkc_quick(text.chars()) == IsNormalized::Yes
}

/// Whether NFKC of the text before `c` and of the text from `c` on, joined, is NFKC of the
/// whole: `c` (or the first character it decomposes to) is a starter that nothing before it
/// combines with (Unicode's NFKC quick check says Yes, UAX #15).
fn starts_segment(c: char) -> bool {
    if c.is_ascii() {
        return true;
    }
    let mut first = None;
    decompose_compatible(c, |part| {
        first.get_or_insert(part);
    });
    let first = first.unwrap_or(c);
    canonical_combining_class(first) == 0 && is_nfkc_quick(iter::once(first)) == IsNormalized::Yes
}

/// An ASCII byte that folding leaves as it is: printable, or white space (tab, line feed,
/// carriage return, and the vertical tab and form feed, which read as line breaks and which
/// patterns' `\s` matches).
fn is_plain_ascii(b: u8) -> bool {
    matches!(b, b' '..=b'~' | b'\t' | b'\n' | b'\r' | 0x0B | 0x0C)
}

/// The printable ASCII character a Unicode tag character mirrors (U+E0041 is `A`): tag
/// characters render as nothing, but models read them as the text they spell, so a secret
/// or a phrase spelled in them is scanned as that text. The other tag characters (U+E0001
/// language tag, U+E007F cancel tag, U+E0020 aside) stay removed as invisible.
fn tag_ascii(c: char) -> Option<char> {
    let code = u32::from(c);
    if (0xE0020..=0xE007E).contains(&code) {
        char::from_u32(code.checked_sub(0xE0000)?)
    } else {
        None
    }
}

/// Characters folding removes: those a reader does not see (`is_invisible`), and control
/// characters (C0, DEL, C1) but for the white space of `is_plain_ascii`. NEL (U+0085) is
/// removed too: models and tokenisers read it, if at all, as nothing.
pub(crate) fn is_removed(c: char) -> bool {
    (c.is_control() && !matches!(c, '\t' | '\n' | '\r' | '\u{B}' | '\u{C}')) || is_invisible(c)
}

/// Characters a reader does not see, removed before anything else: every format character
/// (general category Cf) and the other default-ignorable code points (Unicode's
/// `Default_Ignorable_Code_Point`: variation selectors, the combining grapheme joiner, Hangul
/// fillers, Khmer inherent vowels, Mongolian free variation selectors). A unit test checks
/// the table against Unicode's general categories.
pub(crate) fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{AD}'
            | '\u{34F}'
            | '\u{600}'..='\u{605}'
            | '\u{61C}'
            | '\u{6DD}'
            | '\u{70F}'
            | '\u{890}'..='\u{891}'
            | '\u{8E2}'
            | '\u{115F}'..='\u{1160}'
            | '\u{17B4}'..='\u{17B5}'
            | '\u{180B}'..='\u{180F}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}'
            | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FEFF}'
            | '\u{FFA0}'
            | '\u{FFF0}'..='\u{FFFB}'
            | '\u{110BD}'
            | '\u{110CD}'
            | '\u{13430}'..='\u{1343F}'
            | '\u{1BCA0}'..='\u{1BCA3}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0000}'..='\u{E0FFF}'
    )
}

/// The Latin letter a letter of another script (Cyrillic, Greek, Lisu, Coptic) or a Latin
/// letter variant (ɑ, ɡ, ı, ɪ) is drawn as, in the common fonts: the letters a mixed-script
/// spelling of an ASCII secret or phrase uses. A small, fixed set, listed here and in the
/// docs, not Unicode's whole confusables table (thousands of entries, many of them symbols
/// that would make matches no reader sees).
pub(crate) fn latin_lookalike(c: char) -> Option<char> {
    let latin = match c {
        // Latin variants.
        'ɑ' => 'a',
        'ɡ' => 'g',
        'ı' => 'i',
        'ɪ' => 'i',
        // Cyrillic.
        'а' => 'a',
        'ѵ' => 'v',
        'е' => 'e',
        'о' => 'o',
        'р' => 'p',
        'с' => 'c',
        'у' => 'y',
        'х' => 'x',
        'і' => 'i',
        'ј' => 'j',
        'ѕ' => 's',
        'ԁ' => 'd',
        'һ' => 'h',
        'ԛ' => 'q',
        'ԝ' => 'w',
        'ӏ' => 'l',
        'А' => 'A',
        'В' => 'B',
        'Е' => 'E',
        'К' => 'K',
        'М' => 'M',
        'Н' => 'H',
        'О' => 'O',
        'Р' => 'P',
        'С' => 'C',
        'Т' => 'T',
        'У' => 'Y',
        'Х' => 'X',
        'І' => 'I',
        'Ј' => 'J',
        'Ѕ' => 'S',
        'Ԛ' => 'Q',
        'Ԝ' => 'W',
        // Greek.
        'Α' => 'A',
        'Β' => 'B',
        'Ε' => 'E',
        'Ζ' => 'Z',
        'Η' => 'H',
        'Ι' => 'I',
        'Κ' => 'K',
        'Μ' => 'M',
        'Ν' => 'N',
        'Ο' => 'O',
        'Ρ' => 'P',
        'Τ' => 'T',
        'Υ' => 'Y',
        'Χ' => 'X',
        'ο' => 'o',
        'ϳ' => 'j',
        'α' => 'a',
        'ι' => 'i',
        'ν' => 'v',
        'ρ' => 'p',
        // Lunate sigma `ϲ` is final sigma once NFKC has read it.
        'ς' => 'c',
        // Lisu capitals.
        'ꓮ' => 'A',
        'ꓐ' => 'B',
        'ꓚ' => 'C',
        'ꓓ' => 'D',
        'ꓰ' => 'E',
        'ꓝ' => 'F',
        'ꓖ' => 'G',
        'ꓧ' => 'H',
        'ꓲ' => 'I',
        'ꓙ' => 'J',
        'ꓗ' => 'K',
        'ꓡ' => 'L',
        'ꓟ' => 'M',
        'ꓠ' => 'N',
        'ꓳ' => 'O',
        'ꓑ' => 'P',
        'ꓣ' => 'R',
        'ꓢ' => 'S',
        'ꓔ' => 'T',
        'ꓴ' => 'U',
        'ꓦ' => 'V',
        'ꓪ' => 'W',
        'ꓫ' => 'X',
        'ꓬ' => 'Y',
        'ꓜ' => 'Z',
        // Coptic.
        'Ⲁ' => 'A',
        'Ⲃ' => 'B',
        'Ⲉ' => 'E',
        'Ⲏ' => 'H',
        'Ⲓ' => 'I',
        'Ⲕ' => 'K',
        'Ⲙ' => 'M',
        'Ⲛ' => 'N',
        'Ⲟ' => 'O',
        'Ⲣ' => 'P',
        'Ⲥ' => 'C',
        'Ⲧ' => 'T',
        'Ⲩ' => 'Y',
        'Ⲭ' => 'X',
        'ⲟ' => 'o',
        'ⲣ' => 'p',
        'ⲥ' => 'c',
        _ => return None,
    };
    Some(latin)
}

#[cfg(test)]
#[path = "fold_tests.rs"]
mod tests;
