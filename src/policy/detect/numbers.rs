//! Numbers people write in groups, as the card, SSN and phone detectors read them.
//!
//! The three (`card`, `ssn`, `phone`) share one pass: a hand-written search for a run of
//! digits, spaces, dashes, dots and parentheses, optionally after a `+` (as the regex
//! `[+(]?[0-9][0-9() .-]*` would find it) that holds at least eight digits. It skips to the
//! next digit eight bytes at a time, so prose costs a fraction of a regex pass and a short
//! number costs no call. The code splits each candidate into groups (`4111`, `(415)`) with the
//! single separator before each, and each detector looks for its shapes among consecutive
//! groups. A shape must not be glued to the text around it: a letter, digit or `_` right
//! before or after, or a decimal point or comma with a digit beyond it (`3.4111…`), makes it
//! part of something longer. Bare runs of digits with no separator are only read as cards
//! (which carry a Luhn digit) and `+` phone numbers; a bare nine- or ten-digit run is too
//! often an id to call it an SSN or a phone number. None of the three reads digits outside
//! ASCII or separators other than the ASCII space, `-` and `.` (a no-break space between
//! groups ends the number).

use std::ops::Range;

use super::Found;

/// The fewest digits any of the three shapes has (an international phone number); shorter
/// runs are not candidates.
const MIN_DIGITS: usize = 8;

/// The leftmost run at or after `at` of digits, spaces, dashes, dots and parentheses that
/// starts with a digit, or a `+` or `(` and a digit, and holds at least `MIN_DIGITS` digits.
pub(super) fn next_candidate(text: &str, at: usize) -> Option<Range<usize>> {
    let bytes = text.as_bytes();
    let mut from = at;
    loop {
        let digit = next_digit(bytes, from)?;
        let start = match digit.checked_sub(1) {
            Some(before) if before >= at && matches!(bytes.get(before), Some(b'+' | b'(')) => {
                before
            }
            _ => digit,
        };
        let mut end = digit;
        let mut digits = 0usize;
        while let Some(&byte) = bytes.get(end) {
            if byte.is_ascii_digit() {
                digits = digits.saturating_add(1);
            } else if !matches!(byte, b' ' | b'-' | b'.' | b'(' | b')') {
                break;
            }
            end = end.saturating_add(1);
        }
        if digits >= MIN_DIGITS {
            return Some(start..end);
        }
        from = end;
    }
}

/// The position of the first ASCII digit at or after `from`, looking at eight bytes at a time.
pub(super) fn next_digit(bytes: &[u8], from: usize) -> Option<usize> {
    let rest = bytes.get(from..)?;
    let mut skipped = 0usize;
    for chunk in rest.chunks_exact(8) {
        let Ok(word) = <[u8; 8]>::try_from(chunk) else {
            break;
        };
        // After the xor, digits are the bytes below 10. A byte below 10 borrows in the
        // subtraction, setting its top bit while its own top bit was clear; no other byte
        // can (the classic "has a byte less than n" test, exact for n <= 128).
        let word = u64::from_le_bytes(word) ^ 0x3030_3030_3030_3030;
        if word.wrapping_sub(0x0a0a_0a0a_0a0a_0a0a) & !word & 0x8080_8080_8080_8080 != 0 {
            break;
        }
        skipped = skipped.saturating_add(8);
    }
    let found = rest.get(skipped..)?.iter().position(u8::is_ascii_digit)?;
    Some(from.saturating_add(skipped).saturating_add(found))
}

/// One group of digits as written, with what joins it to the one before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Group {
    /// The bytes of the group, its parentheses (and for the first group its `+`) included.
    pub(super) start: usize,
    pub(super) end: usize,
    pub(super) digits: usize,
    pub(super) paren: bool,
    pub(super) plus: bool,
    /// The separator before the group: a space, `-`, `.`, or 0 for none (the first group, or
    /// a group next to a parenthesis).
    pub(super) sep: u8,
}

/// The groups of one run, read lazily so a number costs no allocation.
#[derive(Clone)]
struct Groups<'t> {
    bytes: &'t [u8],
    pos: usize,
    end: usize,
    first: bool,
    after_paren: bool,
}

impl<'t> Groups<'t> {
    fn new(bytes: &'t [u8], pos: usize, end: usize) -> Self {
        Groups {
            bytes,
            pos,
            end,
            first: true,
            after_paren: false,
        }
    }

    fn byte(&self, at: usize) -> Option<u8> {
        if at < self.end {
            self.bytes.get(at).copied()
        } else {
            None
        }
    }

    fn digits_from(&self, at: usize) -> usize {
        let mut end = at;
        while self.byte(end).is_some_and(|byte| byte.is_ascii_digit()) {
            end = end.saturating_add(1);
        }
        end
    }
}

impl Iterator for Groups<'_> {
    type Item = Group;

    fn next(&mut self) -> Option<Group> {
        let start = self.pos;
        let mut at = start;
        let mut sep = 0;
        let mut plus = false;
        if self.first {
            if self.byte(at) == Some(b'+') {
                plus = true;
                at = at.saturating_add(1);
            }
        } else if let Some(byte @ (b' ' | b'-' | b'.')) = self.byte(at) {
            sep = byte;
            at = at.saturating_add(1);
        }
        let paren = self.byte(at) == Some(b'(');
        let digits_start = if paren { at.saturating_add(1) } else { at };
        let digits_end = self.digits_from(digits_start);
        let digits = digits_end.saturating_sub(digits_start);
        if digits == 0 {
            return None;
        }
        let end = if paren {
            if self.byte(digits_end) != Some(b')') {
                return None;
            }
            digits_end.saturating_add(1)
        } else {
            digits_end
        };
        // Two bare groups need a separator between them; without one they are one group.
        if !self.first && sep == 0 && !paren && !self.after_paren {
            return None;
        }
        self.first = false;
        self.after_paren = paren;
        self.pos = end;
        Some(Group {
            start: if sep == 0 { start } else { at },
            end,
            digits,
            paren,
            plus,
            sep,
        })
    }
}

/// The groups a shape may look at from one position, in a fixed array.
const WINDOW: usize = 9;

/// A shape found: how many groups it used, and its bytes.
pub(super) type Shape = Option<(usize, Range<usize>)>;

/// Splits the candidate into runs and slides `shape` along each, reporting what it finds and
/// moving past the groups it used.
pub(super) fn each_shape(
    text: &str,
    candidate: Range<usize>,
    found: &mut Found,
    shape: fn(&str, Option<&Group>, &[Group]) -> Shape,
) {
    let bytes = text.as_bytes();
    let mut pos = candidate.start;
    while pos < candidate.end {
        let run = Groups::new(bytes, pos, candidate.end);
        let Some(last) = run.clone().last() else {
            pos = pos.saturating_add(1);
            continue;
        };
        let mut cursor = run;
        let mut prev: Option<Group> = None;
        loop {
            let mut window = [EMPTY; WINDOW];
            let mut filled = 0usize;
            for (slot, group) in window.iter_mut().zip(cursor.clone()) {
                *slot = group;
                filled = filled.saturating_add(1);
            }
            let view = window.get(..filled).unwrap_or_default();
            if view.is_empty() {
                break;
            }
            let step = match shape(text, prev.as_ref(), view) {
                Some((used, range)) => {
                    found.push(range);
                    used.max(1)
                }
                None => 1,
            };
            for _ in 0..step {
                prev = cursor.next();
            }
        }
        pos = last.end.max(pos.saturating_add(1));
    }
}

const EMPTY: Group = Group {
    start: 0,
    end: 0,
    digits: 0,
    paren: false,
    plus: false,
    sep: 0,
};

/// Whether a letter, digit or `_`, or a decimal point or comma followed by a digit, is right
/// before `at`.
pub(super) fn glued_before(bytes: &[u8], at: usize) -> bool {
    let before = at.checked_sub(1).and_then(|i| bytes.get(i)).copied();
    let further = at.checked_sub(2).and_then(|i| bytes.get(i)).copied();
    glues(before, further)
}

/// The same, right after `at`.
fn glued_after(bytes: &[u8], at: usize) -> bool {
    let after = bytes.get(at).copied();
    let further = bytes.get(at.saturating_add(1)).copied();
    glues(after, further)
}

fn glues(next: Option<u8>, further: Option<u8>) -> bool {
    match next {
        Some(byte) if byte.is_ascii_alphanumeric() || byte == b'_' => true,
        Some(b'.' | b',') => further.is_some_and(|byte| byte.is_ascii_digit()),
        _ => false,
    }
}

/// Whether a shape may start at `first`: at the start of a run, nothing glued before it;
/// inside a run, a space or dash before it (a dot or a parenthesis makes it a continuation).
pub(super) fn opens(text: &str, prev: Option<&Group>, first: &Group) -> bool {
    match prev {
        Some(_) => matches!(first.sep, b' ' | b'-'),
        None => !glued_before(text.as_bytes(), first.start),
    }
}

/// Whether a shape may end at `end`, with `next` the group after it in the run, if any.
pub(super) fn closes(text: &str, next: Option<&Group>, end: usize) -> bool {
    match next {
        Some(next) => matches!(next.sep, b' ' | b'-'),
        None => !glued_after(text.as_bytes(), end),
    }
}

/// The digits of a group as a number (groups checked here have at most four).
pub(super) fn value(text: &str, group: &Group) -> u32 {
    text.get(group.start..group.end)
        .unwrap_or_default()
        .bytes()
        .filter(u8::is_ascii_digit)
        .fold(0u32, |sum, byte| {
            sum.saturating_mul(10)
                .saturating_add(u32::from(byte.wrapping_sub(b'0')))
        })
}

pub(super) fn first_digit(text: &str, group: &Group) -> Option<u8> {
    text.get(group.start..group.end)
        .unwrap_or_default()
        .bytes()
        .find(u8::is_ascii_digit)
}

pub(super) fn bare(group: &Group) -> bool {
    !group.paren && !group.plus
}
