//! International bank account numbers (ISO 13616).

use std::ops::Range;

use super::checksum::iban_mod97;
use super::numbers::next_digit;
use super::{Boundary, Finder, Found, Spec};

/// IBANs in capitals: a country code, two check digits and the BBAN, written solid or in
/// groups of four separated by single spaces (the print format). The country must be in the
/// IBAN registry, the length must be that country's, the check digits 02 to 98, and the ISO
/// 7064 mod 97 check must hold: it catches every single wrong character and almost every
/// swap of two. False positives: about one in a hundred strings that already start with a
/// registry country and check digits and have its length, such as an upper-case id that
/// happens to be shaped so. Misses: lower-case IBANs, other groupings (dashes, groups of
/// three), and an IBAN glued to a following letter or digit. Candidates are found by hand
/// (see `next_candidate`): a regex for them has no literal to skip to.
pub(super) const IBAN: Spec = Spec {
    finders: &[Finder::Iban],
    boundary: Boundary::Checked,
    verify: iban,
};

/// IBAN lengths by country, from the SWIFT IBAN registry.
#[rustfmt::skip]
const LENGTHS: &[(&str, usize)] = &[
    ("AD", 24), ("AE", 23), ("AL", 28), ("AT", 20), ("AZ", 28), ("BA", 20), ("BE", 16),
    ("BG", 22), ("BH", 22), ("BI", 27), ("BR", 29), ("BY", 28), ("CH", 21), ("CR", 22),
    ("CY", 28), ("CZ", 24), ("DE", 22), ("DJ", 27), ("DK", 18), ("DO", 28), ("EE", 20),
    ("EG", 29), ("ES", 24), ("FI", 18), ("FK", 18), ("FO", 18), ("FR", 27), ("GB", 22),
    ("GE", 22), ("GI", 23), ("GL", 18), ("GR", 27), ("GT", 28), ("HN", 28), ("HR", 21),
    ("HU", 28), ("IE", 22), ("IL", 23), ("IQ", 23), ("IS", 26), ("IT", 27), ("JO", 30),
    ("KW", 30), ("KZ", 20), ("LB", 28), ("LC", 32), ("LI", 21), ("LT", 20), ("LU", 20),
    ("LV", 21), ("LY", 25), ("MC", 27), ("MD", 24), ("ME", 22), ("MK", 19), ("MN", 20),
    ("MR", 27), ("MT", 31), ("MU", 30), ("NI", 28), ("NL", 18), ("NO", 15), ("OM", 23),
    ("PK", 24), ("PL", 28), ("PS", 29), ("PT", 25), ("QA", 29), ("RO", 24), ("RS", 22),
    ("RU", 33), ("SA", 24), ("SC", 31), ("SD", 18), ("SE", 24), ("SI", 19), ("SK", 24),
    ("SM", 27), ("SO", 23), ("ST", 25), ("SV", 28), ("TL", 23), ("TN", 24), ("TR", 26),
    ("UA", 29), ("VA", 22), ("VG", 24), ("XK", 20), ("YE", 30),
];

/// The IBAN standard's bounds (Norway has the shortest, 15).
const MIN_LENGTH: usize = 15;
const MAX_LENGTH: usize = 34;

/// The leftmost candidate at or after `at`: two capitals, two digits, then capitals and
/// digits with a single space allowed after every fourth character, at least `MIN_LENGTH`
/// and at most `MAX_LENGTH` of them. It skips from digit to digit, since every IBAN has its
/// check digits third and fourth.
pub(super) fn next_candidate(text: &str, at: usize) -> Option<Range<usize>> {
    let bytes = text.as_bytes();
    let is_char = |at: usize| {
        bytes
            .get(at)
            .is_some_and(|byte| byte.is_ascii_uppercase() || byte.is_ascii_digit())
    };
    let mut from = at;
    loop {
        let digit = next_digit(bytes, from)?;
        let start = digit.checked_sub(2).filter(|&start| start >= at);
        let prefix = start.and_then(|start| bytes.get(start..digit.saturating_add(2)));
        let Some(start) = start.filter(|_| {
            matches!(
                prefix,
                Some([b'A'..=b'Z', b'A'..=b'Z', b'0'..=b'9', b'0'..=b'9'])
            )
        }) else {
            // Check digits follow capitals, so no digit in the rest of this run can be one.
            from = digit.saturating_add(1);
            while bytes.get(from).is_some_and(u8::is_ascii_digit) {
                from = from.saturating_add(1);
            }
            continue;
        };
        let mut end = digit.saturating_add(2);
        let mut count = 4usize;
        let mut since_space = 4usize;
        while count < MAX_LENGTH {
            if is_char(end) {
                count = count.saturating_add(1);
                since_space = since_space.saturating_add(1);
                end = end.saturating_add(1);
            } else if bytes.get(end) == Some(&b' ')
                && since_space % 4 == 0
                && is_char(end.saturating_add(1))
            {
                since_space = 0;
                end = end.saturating_add(1);
            } else {
                break;
            }
        }
        if count >= MIN_LENGTH {
            return Some(start..end);
        }
        from = end;
    }
}

fn iban(text: &str, candidate: Range<usize>, found: &mut Found) {
    let bytes = text.as_bytes();
    let glued_before = candidate
        .start
        .checked_sub(1)
        .and_then(|at| bytes.get(at))
        .is_some_and(u8::is_ascii_alphanumeric);
    let written = text.get(candidate.clone()).unwrap_or_default();
    let country = written.get(..2).unwrap_or_default();
    let Some(&(_, length)) = LENGTHS.iter().find(|(code, _)| *code == country) else {
        return;
    };
    if glued_before {
        return;
    }
    // The regex may take a following group of four (`BE68 5390 0754 7034 DATA`): cut at the
    // country's length, then require that nothing glued follows the cut.
    let mut compact = [0u8; MAX_LENGTH];
    let mut count = 0usize;
    let mut end = candidate.start;
    for (offset, &byte) in written.as_bytes().iter().enumerate() {
        if count == length {
            break;
        }
        if byte != b' ' {
            if let Some(slot) = compact.get_mut(count) {
                *slot = byte;
            }
            count = count.saturating_add(1);
            end = candidate.start.saturating_add(offset).saturating_add(1);
        }
    }
    let glued_after = bytes.get(end).is_some_and(u8::is_ascii_alphanumeric);
    let compact = compact
        .get(..count)
        .and_then(|compact| std::str::from_utf8(compact).ok())
        .unwrap_or_default();
    let check_digits = compact
        .get(2..4)
        .and_then(|digits| digits.parse::<u8>().ok());
    if count == length
        && !glued_after
        && check_digits.is_some_and(|check| (2..=98).contains(&check))
        && iban_mod97(compact)
    {
        found.push(candidate.start..end);
    }
}

#[cfg(test)]
mod tests {
    use crate::policy::detect::tests::detector_cases;
    use crate::policy::detect::Detector::Iban;

    detector_cases! {
        Iban;
        gb_spaced: "IBAN: GB29 NWBK 6016 1331 9268 19." => ["GB29 NWBK 6016 1331 9268 19"];
        gb_solid: "GB29NWBK60161331926819" => ["GB29NWBK60161331926819"];
        de_spaced: "DE89 3704 0044 0532 0130 00" => ["DE89 3704 0044 0532 0130 00"];
        fr_letters_in_bban: "FR14 2004 1010 0505 0001 3M02 606" => ["FR14 2004 1010 0505 0001 3M02 606"];
        no_shortest: "NO93 8601 1117 947" => ["NO93 8601 1117 947"];
        mt_long: "MT84 MALT 0110 0001 2345 MTLC AST0 01S" => ["MT84 MALT 0110 0001 2345 MTLC AST0 01S"];
        nl_then_word: "NL91 ABNA 0417 1643 00 THEN" => ["NL91 ABNA 0417 1643 00"];
        be_then_group: "BE68 5390 0754 7034 DATA" => ["BE68 5390 0754 7034"];
        cjk_around: "账户DE89370400440532013000。" => ["DE89370400440532013000"];
        two: "GB29NWBK60161331926819 and DE89370400440532013000" => ["GB29NWBK60161331926819", "DE89370400440532013000"];
        bad_checksum: "GB29 NWBK 6016 1331 9268 18" => [];
        transposed_check_digits: "DE98 3704 0044 0532 0130 00" => [];
        wrong_length_for_country: "GB29 NWBK 6016 1331 9268 1" => [];
        unknown_country: "ZZ29 NWBK 6016 1331 9268 19" => [];
        lowercase: "gb29 nwbk 6016 1331 9268 19" => [];
        glued_before: "XGB29NWBK60161331926819" => [];
        glued_after: "GB29NWBK60161331926819X" => [];
        double_space: "GB29  NWBK 6016 1331 9268 19" => [];
    }
}
