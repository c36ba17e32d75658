//! Numbers people write in groups: payment cards, US social security numbers, phone numbers.
//!
//! The three share one pass: a hand-written search for a run of digits, spaces, dashes, dots
//! and parentheses, optionally after a `+` (as the regex `[+(]?[0-9][0-9() .-]*` would find
//! it) that holds at least eight digits. It skips to the next digit eight bytes at a time, so
//! prose costs a fraction of a regex pass and a short number costs no call. The code splits each
//! candidate into groups (`4111`, `(415)`) with the single separator before each, and looks
//! for each detector's shapes among consecutive groups. A shape must not be glued to the text
//! around it: a letter, digit or `_` right before or after, or a decimal point or comma with a
//! digit beyond it (`3.4111…`), makes it part of something longer. Bare runs of digits with no
//! separator are only read as cards (which carry a Luhn digit) and `+` phone numbers; a bare
//! nine- or ten-digit run is too often an id to call it an SSN or a phone number.

use std::ops::Range;

use super::checksum::{known_issuer, luhn};
use super::{Boundary, Finder, Found, Spec};

/// Payment card numbers: 13 to 19 digits, solid or grouped by single spaces or dashes as
/// cards print them (4-4-4-4, 4-4-4-4-3, Amex 4-6-5, Diners 4-6-4), with a valid Luhn digit
/// and the prefix and length of a major network (see `checksum::ISSUERS`). A shape followed by
/// more digits in the same run (a CVV, `4111 1111 1111 1111 123`) still matches. False
/// positives: about one in ten numbers that happen to start like a card and have its length
/// pass Luhn, so a 16-digit id starting with 4 or 5 is reported one time in ten. Misses: other
/// groupings (4-4-4-4 written with dots, or irregular splits).
pub(super) const CREDIT_CARD: Spec = Spec {
    finder: Finder::Numbers,
    boundary: Boundary::Checked,
    verify: credit_card,
};

/// US social security numbers written AAA-GG-SSSS or AAA GG SSSS (one separator, used twice),
/// not next to more groups joined the same way (`123-45-6789-0` is a part number). Numbers
/// never issued are refused: area 000, 666 or 900-999, group 00, serial 0000, and the
/// well-known specimens 078-05-1120, 219-09-9999 and 123-45-6789, and any of one repeated
/// digit. Without separators nine digits are not matched at all: ids, ZIP+4 codes and order
/// numbers would match far more often than SSNs do. False positives: any other 3-2-4 dashed
/// number in the valid ranges.
pub(super) const US_SSN: Spec = Spec {
    finder: Finder::Numbers,
    boundary: Boundary::Checked,
    verify: us_ssn,
};

/// Phone numbers in three forms:
/// - international: `+`, a country code not starting with 0, 8 to 15 digits in all (E.164),
///   solid or grouped by spaces, dashes or dots, with parenthesised groups allowed
///   (`+14155552671`, `+44 20 7946 0958`, `+44 (0)20 7946 0958`, `+1 (415) 555-2671`);
/// - North American: `(415) 555-2671`, `415-555-2671`, `415.555.2671`, `415 555 2671`,
///   optionally after `1` (`1-800-555-0199`), area code and exchange starting 2 to 9;
/// - national with a trunk 0: 9 to 12 digits in two to five groups with one separator, the
///   first group 2 to 5 digits starting with 0 (`020 7946 0958`, `06 12 34 56 78`,
///   `030-12345678`, `(020) 7946 0958`).
///
/// Not matched: bare national digits (`4155552671`), local numbers without area code,
/// vanity numbers (`1-800-FLOWERS`), `00` international prefixes, and extensions (the
/// `x123` is left out of the match). False positives: other numbers in these shapes, for
/// example a `0`-led dotted number such as `010.203.040.050`.
pub(super) const PHONE: Spec = Spec {
    finder: Finder::Numbers,
    boundary: Boundary::Checked,
    verify: phone,
};

/// The fewest digits any shape here has (an international phone number); shorter runs are
/// not candidates.
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
struct Group {
    /// The bytes of the group, its parentheses (and for the first group its `+`) included.
    start: usize,
    end: usize,
    digits: usize,
    paren: bool,
    plus: bool,
    /// The separator before the group: a space, `-`, `.`, or 0 for none (the first group, or
    /// a group next to a parenthesis).
    sep: u8,
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
type Shape = Option<(usize, Range<usize>)>;

/// Splits the candidate into runs and slides `shape` along each, reporting what it finds and
/// moving past the groups it used.
fn each_shape(
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
fn glued_before(bytes: &[u8], at: usize) -> bool {
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
fn opens(text: &str, prev: Option<&Group>, first: &Group) -> bool {
    match prev {
        Some(_) => matches!(first.sep, b' ' | b'-'),
        None => !glued_before(text.as_bytes(), first.start),
    }
}

/// Whether a shape may end at `end`, with `next` the group after it in the run, if any.
fn closes(text: &str, next: Option<&Group>, end: usize) -> bool {
    match next {
        Some(next) => matches!(next.sep, b' ' | b'-'),
        None => !glued_after(text.as_bytes(), end),
    }
}

/// The digits of a group as a number (groups checked here have at most four).
fn value(text: &str, group: &Group) -> u32 {
    text.get(group.start..group.end)
        .unwrap_or_default()
        .bytes()
        .filter(u8::is_ascii_digit)
        .fold(0u32, |sum, byte| {
            sum.saturating_mul(10)
                .saturating_add(u32::from(byte.wrapping_sub(b'0')))
        })
}

fn first_digit(text: &str, group: &Group) -> Option<u8> {
    text.get(group.start..group.end)
        .unwrap_or_default()
        .bytes()
        .find(u8::is_ascii_digit)
}

fn bare(group: &Group) -> bool {
    !group.paren && !group.plus
}

fn credit_card(text: &str, candidate: Range<usize>, found: &mut Found) {
    each_shape(text, candidate, found, card_shape);
}

const CARD_SHAPES: &[&[usize]] = &[&[4, 4, 4, 4, 3], &[4, 4, 4, 4], &[4, 6, 5], &[4, 6, 4]];

fn card_shape(text: &str, prev: Option<&Group>, window: &[Group]) -> Shape {
    let first = window.first()?;
    if !bare(first) || !opens(text, prev, first) {
        return None;
    }
    let is_card = |range: &Range<usize>| {
        let number = text.get(range.clone()).unwrap_or_default();
        luhn(number) && known_issuer(number)
    };
    if (13..=19).contains(&first.digits) {
        let range = first.start..first.end;
        return (closes(text, window.get(1), first.end) && is_card(&range)).then_some((1, range));
    }
    CARD_SHAPES.iter().find_map(|shape| {
        let groups = window.get(..shape.len())?;
        let last = groups.last()?;
        let sep = groups.get(1)?.sep;
        let fits = matches!(sep, b' ' | b'-')
            && groups
                .iter()
                .zip(shape.iter())
                .enumerate()
                .all(|(i, (group, &digits))| {
                    group.digits == digits && bare(group) && (i == 0 || group.sep == sep)
                });
        let range = first.start..last.end;
        (fits && closes(text, window.get(shape.len()), last.end) && is_card(&range))
            .then_some((shape.len(), range))
    })
}

fn us_ssn(text: &str, candidate: Range<usize>, found: &mut Found) {
    each_shape(text, candidate, found, ssn_shape);
}

/// Never issued, or printed on specimen cards and in advertising.
const SPECIMEN_SSNS: &[(u32, u32, u32)] = &[(78, 5, 1120), (219, 9, 9999), (123, 45, 6789)];

fn ssn_shape(text: &str, prev: Option<&Group>, window: &[Group]) -> Shape {
    let (Some(area), Some(group), Some(serial)) = (window.first(), window.get(1), window.get(2))
    else {
        return None;
    };
    let sep = group.sep;
    let next = window.get(3);
    let shaped = (area.digits, group.digits, serial.digits) == (3, 2, 4)
        && [area, group, serial].iter().all(|g| bare(g))
        && matches!(sep, b'-' | b' ')
        && serial.sep == sep
        && opens(text, prev, area)
        && (prev.is_none() || area.sep != sep)
        && closes(text, next, serial.end)
        && next.is_none_or(|next| next.sep != sep);
    if !shaped {
        return None;
    }
    let (a, g, s) = (value(text, area), value(text, group), value(text, serial));
    let issued = a != 0 && a != 666 && a < 900 && g != 0 && s != 0;
    let specimen = SPECIMEN_SSNS.contains(&(a, g, s));
    let digits = text.get(area.start..serial.end).unwrap_or_default();
    let repeated = digits
        .bytes()
        .filter(u8::is_ascii_digit)
        .all(|digit| Some(digit) == first_digit(text, area));
    (issued && !specimen && !repeated).then_some((3, area.start..serial.end))
}

fn phone(text: &str, candidate: Range<usize>, found: &mut Found) {
    each_shape(text, candidate, found, phone_shape);
}

fn phone_shape(text: &str, prev: Option<&Group>, window: &[Group]) -> Shape {
    international(text, window)
        .or_else(|| north_american(text, prev, window))
        .or_else(|| trunk_national(text, prev, window))
}

/// E.164 allows at most 15 digits; fewer than 8 is a short code or an arithmetic `+`.
const E164_DIGITS: Range<usize> = 8..16;

fn international(text: &str, window: &[Group]) -> Shape {
    let first = window.first()?;
    if !first.plus || glued_before(text.as_bytes(), first.start) {
        return None;
    }
    if first_digit(text, first)? == b'0' {
        return None;
    }
    let mut total = 0usize;
    let mut used = 0usize;
    for group in window {
        let more = total.saturating_add(group.digits);
        if more >= E164_DIGITS.end {
            break;
        }
        total = more;
        used = used.saturating_add(1);
    }
    let last = window.get(used.checked_sub(1)?)?;
    (E164_DIGITS.contains(&total) && closes(text, window.get(used), last.end))
        .then_some((used, first.start..last.end))
}

fn north_american(text: &str, prev: Option<&Group>, window: &[Group]) -> Shape {
    let first = window.first()?;
    if first.plus || !opens(text, prev, first) {
        return None;
    }
    let country = first.digits == 1 && !first.paren && first_digit(text, first) == Some(b'1');
    let skip = usize::from(country);
    let core = window.get(skip..skip.checked_add(3)?)?;
    let (Some(area), Some(exchange), Some(line)) = (core.first(), core.get(1), core.get(2)) else {
        return None;
    };
    let sep = line.sep;
    let seps = if area.paren {
        matches!(exchange.sep, 0 | b' ' | b'-' | b'.') && matches!(sep, b' ' | b'-' | b'.')
    } else {
        matches!(sep, b' ' | b'-' | b'.')
            && exchange.sep == sep
            && (!country || area.sep == sep)
            && (prev.is_none() || first.sep != sep)
    };
    let digits_ok = (area.digits, exchange.digits, line.digits) == (3, 3, 4)
        && bare(exchange)
        && bare(line)
        && !area.plus
        && matches!(first_digit(text, area), Some(b'2'..=b'9'))
        && matches!(first_digit(text, exchange), Some(b'2'..=b'9'));
    let used = skip.saturating_add(3);
    let next = window.get(used);
    (seps && digits_ok && closes(text, next, line.end) && next.is_none_or(|n| n.sep != sep))
        .then_some((used, first.start..line.end))
}

fn trunk_national(text: &str, prev: Option<&Group>, window: &[Group]) -> Shape {
    let first = window.first()?;
    if first.plus
        || !(2..=5).contains(&first.digits)
        || first_digit(text, first) != Some(b'0')
        || !opens(text, prev, first)
    {
        return None;
    }
    (2..=5usize).rev().find_map(|used| {
        let groups = window.get(..used)?;
        let rest = groups.get(1..)?;
        let last = groups.last()?;
        let sep = rest.last()?.sep;
        let joined = rest.iter().enumerate().all(|(i, group)| {
            bare(group)
                && (2..=8).contains(&group.digits)
                && (group.sep == sep || (i == 0 && first.paren && matches!(group.sep, 0 | b' ')))
        });
        let total: usize = groups.iter().map(|group| group.digits).sum();
        let next = window.get(used);
        let fits = matches!(sep, b' ' | b'-' | b'.')
            && joined
            && (9..=12).contains(&total)
            && (prev.is_none() || first.sep != sep)
            && closes(text, next, last.end)
            && next.is_none_or(|n| n.sep != sep);
        fits.then_some((used, first.start..last.end))
    })
}

#[cfg(test)]
mod tests {
    use crate::policy::detect::tests::matches;
    use crate::policy::detect::Detector::{CreditCard, Phone, UsSsn};

    macro_rules! cases {
        ($($name:ident: $detector:expr, $text:expr => [$($expected:expr),*];)*) => {$(
            #[test]
            fn $name() {
                let expected: Vec<&str> = vec![$($expected),*];
                assert_eq!(matches($detector, $text), expected);
            }
        )*};
    }

    cases! {
        card_visa_solid: CreditCard, "card 4111111111111111 exp" => ["4111111111111111"];
        card_visa_spaced: CreditCard, "4111 1111 1111 1111" => ["4111 1111 1111 1111"];
        card_visa_dashed: CreditCard, "4111-1111-1111-1111" => ["4111-1111-1111-1111"];
        card_mastercard: CreditCard, "5555 5555 5555 4444" => ["5555 5555 5555 4444"];
        card_mastercard_2_series: CreditCard, "2223 0031 2200 3222" => ["2223 0031 2200 3222"];
        card_amex_4_6_5: CreditCard, "3782 822463 10005" => ["3782 822463 10005"];
        card_amex_solid: CreditCard, "378282246310005" => ["378282246310005"];
        card_diners_4_6_4: CreditCard, "3056 930902 5904" => ["3056 930902 5904"];
        card_discover: CreditCard, "6011 1111 1111 1117" => ["6011 1111 1111 1117"];
        card_jcb: CreditCard, "3530-1113-3330-0000" => ["3530-1113-3330-0000"];
        card_unionpay_19: CreditCard, "6205 5000 0000 0000 004" => ["6205 5000 0000 0000 004"];
        card_visa_13: CreditCard, "4222222222222" => ["4222222222222"];
        card_then_cvv: CreditCard, "4111 1111 1111 1111 123" => ["4111 1111 1111 1111"];
        card_then_expiry: CreditCard, "4111 1111 1111 1111 12/27" => ["4111 1111 1111 1111"];
        card_after_label_number: CreditCard, "item 12 4111 1111 1111 1111" => ["4111 1111 1111 1111"];
        card_in_parens: CreditCard, "(4111 1111 1111 1111)" => ["4111 1111 1111 1111"];
        card_cjk_around: CreditCard, "卡号4111111111111111。" => ["4111111111111111"];
        card_two: CreditCard, "4111111111111111, 5555555555554444" => ["4111111111111111", "5555555555554444"];
        card_two_in_one_run: CreditCard, "4111 1111 1111 1111 5555 5555 5555 4444" => ["4111 1111 1111 1111", "5555 5555 5555 4444"];
        card_luhn_fails: CreditCard, "4111 1111 1111 1112" => [];
        card_unknown_issuer: CreditCard, "1234 5678 9012 3452" => [];
        card_amex_wrong_length: CreditCard, "3782822463100050" => [];
        card_too_long: CreditCard, "41111111111111111111" => [];
        card_glued_letter: CreditCard, "id4111111111111111" => [];
        card_glued_after: CreditCard, "4111111111111111abc" => [];
        card_decimal: CreditCard, "0.4111111111111111" => [];
        card_mixed_separators: CreditCard, "4111 1111-1111 1111" => [];
        card_dots: CreditCard, "4111.1111.1111.1111" => [];
        card_odd_grouping: CreditCard, "41111 11111 11111 1" => [];
        card_double_space: CreditCard, "4111  1111  1111  1111" => [];
        ssn_dashed: UsSsn, "SSN: 536-22-1842." => ["536-22-1842"];
        ssn_spaced: UsSsn, "ssn 536 22 1842" => ["536 22 1842"];
        ssn_cjk_around: UsSsn, "号码536-22-1842号" => ["536-22-1842"];
        ssn_in_parens: UsSsn, "(536-22-1842)" => ["536-22-1842"];
        ssn_then_other_number: UsSsn, "536-22-1842 2024" => ["536-22-1842"];
        ssn_area_000: UsSsn, "000-22-1842" => [];
        ssn_area_666: UsSsn, "666-22-1842" => [];
        ssn_area_9xx: UsSsn, "912-22-1842" => [];
        ssn_group_00: UsSsn, "536-00-1842" => [];
        ssn_serial_0000: UsSsn, "536-22-0000" => [];
        ssn_specimen: UsSsn, "078-05-1120" => [];
        ssn_placeholder: UsSsn, "123-45-6789" => [];
        ssn_repeated: UsSsn, "555-55-5555" => [];
        ssn_bare_digits: UsSsn, "536221842" => [];
        ssn_mixed_separators: UsSsn, "536-22 1842" => [];
        ssn_longer_dashed: UsSsn, "536-22-1842-7" => [];
        ssn_prefixed_dashed: UsSsn, "12-536-22-1842" => [];
        ssn_wrong_shape: UsSsn, "5362-21-842" => [];
        ssn_glued: UsSsn, "A536-22-1842" => [];
        ssn_decimal: UsSsn, "1.536-22-1842" => [];
        phone_e164: Phone, "call +14155552671 now" => ["+14155552671"];
        phone_intl_spaced: Phone, "+44 20 7946 0958" => ["+44 20 7946 0958"];
        phone_intl_trunk_in_parens: Phone, "+44 (0)20 7946 0958" => ["+44 (0)20 7946 0958"];
        phone_intl_us_parens: Phone, "+1 (415) 555-2671" => ["+1 (415) 555-2671"];
        phone_intl_dashed: Phone, "+1-415-555-2671" => ["+1-415-555-2671"];
        phone_intl_french: Phone, "+33 6 12 34 56 78" => ["+33 6 12 34 56 78"];
        phone_intl_dots: Phone, "+49.30.1234.5678" => ["+49.30.1234.5678"];
        phone_nanp_parens: Phone, "(415) 555-2671" => ["(415) 555-2671"];
        phone_nanp_parens_tight: Phone, "(415)555-2671" => ["(415)555-2671"];
        phone_nanp_dashed: Phone, "tel 415-555-2671." => ["415-555-2671"];
        phone_nanp_dotted: Phone, "415.555.2671" => ["415.555.2671"];
        phone_nanp_spaced: Phone, "415 555 2671" => ["415 555 2671"];
        phone_nanp_with_1: Phone, "1-800-555-0199" => ["1-800-555-0199"];
        phone_nanp_with_1_parens: Phone, "1 (800) 555-0199" => ["1 (800) 555-0199"];
        phone_nanp_after_number: Phone, "room 12 (415) 555-2671" => ["(415) 555-2671"];
        phone_nanp_extension: Phone, "415-555-2671 x123" => ["415-555-2671"];
        phone_uk_national: Phone, "020 7946 0958" => ["020 7946 0958"];
        phone_uk_mobile: Phone, "07700 900123" => ["07700 900123"];
        phone_french_national: Phone, "06 12 34 56 78" => ["06 12 34 56 78"];
        phone_french_dots: Phone, "06.12.34.56.78" => ["06.12.34.56.78"];
        phone_german_dashed: Phone, "030-12345678" => ["030-12345678"];
        phone_national_parens: Phone, "(020) 7946 0958" => ["(020) 7946 0958"];
        phone_cjk_around: Phone, "电话+8613812345678。" => ["+8613812345678"];
        phone_two: Phone, "+14155552671 / (415) 555-2671" => ["+14155552671", "(415) 555-2671"];
        phone_bare_national: Phone, "4155552671" => [];
        phone_intl_too_long: Phone, "+1234567890123456" => [];
        phone_intl_too_short: Phone, "+1 555 12" => [];
        phone_intl_zero: Phone, "+0 415 555 2671" => [];
        phone_arithmetic: Phone, "2+14155552671" => [];
        phone_timezone: Phone, "UTC+0530" => [];
        phone_area_starts_1: Phone, "115-555-2671" => [];
        phone_exchange_starts_0: Phone, "415-055-2671" => [];
        phone_mixed_separators: Phone, "415-555.2671" => [];
        phone_longer_dashed: Phone, "2024-415-555-2671" => [];
        phone_date: Phone, "2024-01-15" => [];
        phone_date_dotted: Phone, "01.02.2024" => [];
        phone_version: Phone, "v1.2.3 and 0.10.2" => [];
        phone_glued: Phone, "id415-555-2671" => [];
        phone_national_too_short: Phone, "020 7946" => [];
        phone_vanity: Phone, "1-800-FLOWERS" => [];
    }
}
