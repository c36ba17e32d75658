//! Payment card numbers.

use std::ops::Range;

use super::checksum::{known_issuer, luhn};
use super::numbers::{bare, closes, each_shape, opens, Group, Shape};
use super::{Boundary, Finder, Found, Spec};

/// Payment card numbers: 13 to 19 digits, solid or grouped by single spaces or dashes as
/// cards print them (4-4-4-4, 4-4-4-4-3, Amex 4-6-5, Diners 4-6-4), with a valid Luhn digit
/// and the prefix and length of a major network (see `checksum::ISSUERS`). A shape followed by
/// more digits in the same run (a CVV, `4111 1111 1111 1111 123`) still matches. False
/// positives: one number in ten with a card's prefix and length passes Luhn by chance, so a
/// 16-digit id starting with 4 or 5 is reported one time in ten. Misses: other groupings
/// (4-4-4-4 written with dots, or irregular splits).
pub(super) const CREDIT_CARD: Spec = Spec {
    finders: &[Finder::Numbers],
    boundary: Boundary::Checked,
    verify: credit_card,
};

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

#[cfg(test)]
mod tests {
    use crate::policy::detect::tests::detector_cases;
    use crate::policy::detect::Detector::CreditCard;

    detector_cases! {
        CreditCard;
        card_visa_solid: "card 4111111111111111 exp" => ["4111111111111111"];
        card_visa_spaced: "4111 1111 1111 1111" => ["4111 1111 1111 1111"];
        card_visa_dashed: "4111-1111-1111-1111" => ["4111-1111-1111-1111"];
        card_mastercard: "5555 5555 5555 4444" => ["5555 5555 5555 4444"];
        card_mastercard_2_series: "2223 0031 2200 3222" => ["2223 0031 2200 3222"];
        card_amex_4_6_5: "3782 822463 10005" => ["3782 822463 10005"];
        card_amex_solid: "378282246310005" => ["378282246310005"];
        card_diners_4_6_4: "3056 930902 5904" => ["3056 930902 5904"];
        card_discover: "6011 1111 1111 1117" => ["6011 1111 1111 1117"];
        card_jcb: "3530-1113-3330-0000" => ["3530-1113-3330-0000"];
        card_unionpay_19: "6205 5000 0000 0000 004" => ["6205 5000 0000 0000 004"];
        card_visa_13: "4222222222222" => ["4222222222222"];
        card_then_cvv: "4111 1111 1111 1111 123" => ["4111 1111 1111 1111"];
        card_then_expiry: "4111 1111 1111 1111 12/27" => ["4111 1111 1111 1111"];
        card_after_label_number: "item 12 4111 1111 1111 1111" => ["4111 1111 1111 1111"];
        card_in_parens: "(4111 1111 1111 1111)" => ["4111 1111 1111 1111"];
        card_cjk_around: "卡号4111111111111111。" => ["4111111111111111"];
        card_two: "4111111111111111, 5555555555554444" => ["4111111111111111", "5555555555554444"];
        card_two_in_one_run: "4111 1111 1111 1111 5555 5555 5555 4444" => ["4111 1111 1111 1111", "5555 5555 5555 4444"];
        card_luhn_fails: "4111 1111 1111 1112" => [];
        card_unknown_issuer: "1234 5678 9012 3452" => [];
        card_amex_wrong_length: "3782822463100050" => [];
        card_too_long: "41111111111111111111" => [];
        card_glued_letter: "id4111111111111111" => [];
        card_glued_after: "4111111111111111abc" => [];
        card_decimal: "0.4111111111111111" => [];
        card_mixed_separators: "4111 1111-1111 1111" => [];
        card_dots: "4111.1111.1111.1111" => [];
        card_odd_grouping: "41111 11111 11111 1" => [];
        card_double_space: "4111  1111  1111  1111" => [];
    }
}
