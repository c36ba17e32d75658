//! Phone numbers.

use std::ops::Range;

use super::numbers::{bare, closes, each_shape, first_digit, glued_before, opens, Group, Shape};
use super::{Boundary, Finder, Found, Spec};

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
/// An international number takes the groups that follow its `+` while they keep it within 15
/// digits, so a number written right after it with the same separator can be taken in.
/// Not matched: bare national digits (`4155552671`), local numbers without area code,
/// vanity numbers (`1-800-FLOWERS`), `00` international prefixes, and extensions (the
/// `x123` is left out of the match). False positives: other numbers in these shapes, for
/// example a `0`-led dotted number such as `010.203.040.050`.
pub(super) const PHONE: Spec = Spec {
    finders: &[Finder::Numbers],
    boundary: Boundary::Checked,
    verify: phone,
};

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
    use crate::policy::detect::tests::detector_cases;
    use crate::policy::detect::Detector::Phone;

    detector_cases! {
        Phone;
        phone_e164: "call +14155552671 now" => ["+14155552671"];
        phone_intl_spaced: "+44 20 7946 0958" => ["+44 20 7946 0958"];
        phone_intl_trunk_in_parens: "+44 (0)20 7946 0958" => ["+44 (0)20 7946 0958"];
        phone_intl_us_parens: "+1 (415) 555-2671" => ["+1 (415) 555-2671"];
        phone_intl_dashed: "+1-415-555-2671" => ["+1-415-555-2671"];
        phone_intl_french: "+33 6 12 34 56 78" => ["+33 6 12 34 56 78"];
        phone_intl_dots: "+49.30.1234.5678" => ["+49.30.1234.5678"];
        phone_nanp_parens: "(415) 555-2671" => ["(415) 555-2671"];
        phone_nanp_parens_tight: "(415)555-2671" => ["(415)555-2671"];
        phone_nanp_dashed: "tel 415-555-2671." => ["415-555-2671"];
        phone_nanp_dotted: "415.555.2671" => ["415.555.2671"];
        phone_nanp_spaced: "415 555 2671" => ["415 555 2671"];
        phone_nanp_with_1: "1-800-555-0199" => ["1-800-555-0199"];
        phone_nanp_with_1_parens: "1 (800) 555-0199" => ["1 (800) 555-0199"];
        phone_nanp_after_number: "room 12 (415) 555-2671" => ["(415) 555-2671"];
        phone_nanp_extension: "415-555-2671 x123" => ["415-555-2671"];
        phone_uk_national: "020 7946 0958" => ["020 7946 0958"];
        phone_uk_mobile: "07700 900123" => ["07700 900123"];
        phone_french_national: "06 12 34 56 78" => ["06 12 34 56 78"];
        phone_french_dots: "06.12.34.56.78" => ["06.12.34.56.78"];
        phone_german_dashed: "030-12345678" => ["030-12345678"];
        phone_national_parens: "(020) 7946 0958" => ["(020) 7946 0958"];
        phone_cjk_around: "电话+8613812345678。" => ["+8613812345678"];
        phone_two: "+14155552671 / (415) 555-2671" => ["+14155552671", "(415) 555-2671"];
        phone_bare_national: "4155552671" => [];
        phone_intl_too_long: "+1234567890123456" => [];
        phone_intl_too_short: "+1 555 12" => [];
        phone_intl_zero: "+0 415 555 2671" => [];
        phone_arithmetic: "2+14155552671" => [];
        phone_timezone: "UTC+0530" => [];
        phone_area_starts_1: "115-555-2671" => [];
        phone_exchange_starts_0: "415-055-2671" => [];
        phone_mixed_separators: "415-555.2671" => [];
        phone_longer_dashed: "2024-415-555-2671" => [];
        phone_date: "2024-01-15" => [];
        phone_date_dotted: "01.02.2024" => [];
        phone_version: "v1.2.3 and 0.10.2" => [];
        phone_glued: "id415-555-2671" => [];
        phone_national_too_short: "020 7946" => [];
        phone_vanity: "1-800-FLOWERS" => [];
    }
}
