//! US social security numbers.

use std::ops::Range;

use super::numbers::{bare, closes, each_shape, first_digit, opens, value, Group, Shape};
use super::{Boundary, Finder, Found, Spec};

/// US social security numbers written AAA-GG-SSSS or AAA GG SSSS (one separator, used twice),
/// not next to more groups joined the same way (`123-45-6789-0` is a part number). Numbers
/// never issued are refused: area 000, 666 or 900-999, group 00, serial 0000, and the
/// well-known specimens 078-05-1120, 219-09-9999 and 123-45-6789, and any of one repeated
/// digit. Without separators nine digits are not matched at all: ids, ZIP+4 codes and order
/// numbers would match far more often than SSNs do. False positives: any other 3-2-4 dashed
/// number in the valid ranges.
pub(super) const US_SSN: Spec = Spec {
    finders: &[Finder::Numbers],
    boundary: Boundary::Checked,
    verify: us_ssn,
};

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

#[cfg(test)]
mod tests {
    use crate::policy::detect::tests::detector_cases;
    use crate::policy::detect::Detector::UsSsn;

    detector_cases! {
        UsSsn;
        ssn_dashed: "SSN: 536-22-1842." => ["536-22-1842"];
        ssn_spaced: "ssn 536 22 1842" => ["536 22 1842"];
        ssn_cjk_around: "号码536-22-1842号" => ["536-22-1842"];
        ssn_in_parens: "(536-22-1842)" => ["536-22-1842"];
        ssn_then_other_number: "536-22-1842 2024" => ["536-22-1842"];
        ssn_area_000: "000-22-1842" => [];
        ssn_area_666: "666-22-1842" => [];
        ssn_area_9xx: "912-22-1842" => [];
        ssn_group_00: "536-00-1842" => [];
        ssn_serial_0000: "536-22-0000" => [];
        ssn_specimen: "078-05-1120" => [];
        ssn_placeholder: "123-45-6789" => [];
        ssn_repeated: "555-55-5555" => [];
        ssn_bare_digits: "536221842" => [];
        ssn_mixed_separators: "536-22 1842" => [];
        ssn_longer_dashed: "536-22-1842-7" => [];
        ssn_prefixed_dashed: "12-536-22-1842" => [];
        ssn_wrong_shape: "5362-21-842" => [];
        ssn_glued: "A536-22-1842" => [];
        ssn_decimal: "1.536-22-1842" => [];
    }
}
