//! Check digits and issuer prefixes: what tells a card or account number from any run of
//! digits that happens to have the right shape.

/// The Luhn (mod 10) check over the ASCII digits of `text`; other bytes (group separators)
/// are skipped, so a number can be checked as it was written.
pub fn luhn(text: &str) -> bool {
    let mut sum: u32 = 0;
    let mut double = false;
    for byte in text.bytes().rev().filter(u8::is_ascii_digit) {
        let digit = u32::from(byte.wrapping_sub(b'0'));
        let value = if double {
            let twice = digit.wrapping_mul(2);
            if twice > 9 {
                twice.wrapping_sub(9)
            } else {
                twice
            }
        } else {
            digit
        };
        sum = sum.wrapping_add(value);
        double = !double;
    }
    sum % 10 == 0
}

/// ISO 7064 mod 97-10 over an IBAN without spaces: the first four characters move to the end,
/// letters count as 10..35, and the whole number must leave 1. Any byte other than an ASCII
/// digit or capital letter fails.
pub fn iban_mod97(iban: &str) -> bool {
    let bytes = iban.as_bytes();
    let (Some(head), Some(tail)) = (bytes.get(..4), bytes.get(4..)) else {
        return false;
    };
    let mut remainder: u32 = 0;
    for &byte in tail.iter().chain(head) {
        let (value, scale) = match byte {
            b'0'..=b'9' => (u32::from(byte.wrapping_sub(b'0')), 10),
            b'A'..=b'Z' => (u32::from(byte.wrapping_sub(b'A')).wrapping_add(10), 100),
            _ => return false,
        };
        // remainder < 97 and value < 36, so this stays far below u32::MAX.
        remainder = remainder.wrapping_mul(scale).wrapping_add(value) % 97;
    }
    remainder == 1
}

/// A card issuer range: numbers whose first `digits` digits lie in `low..=high` are issued
/// with one of the lengths in `lengths` (bit n set: n digits allowed).
struct Issuer {
    digits: u32,
    low: u32,
    high: u32,
    lengths: u32,
}

const fn lengths(from: u32, to: u32) -> u32 {
    // Bits from..=to; both are below 32 in the table.
    u32::MAX.wrapping_shr(31u32.wrapping_sub(to)) & u32::MAX.wrapping_shl(from)
}

const L13_16_19: u32 = (1 << 13) | (1 << 16) | (1 << 19);

/// The major networks' IIN ranges, as published by the networks (Visa, Mastercard including
/// 2-series, Amex, Discover, Diners, JCB, UnionPay, Maestro, Mir, RuPay, Troy). A number outside
/// them is not reported even when its Luhn digit fits: that keeps order numbers and ids out.
#[rustfmt::skip]
const ISSUERS: &[Issuer] = &[
    Issuer { digits: 1, low: 4, high: 4, lengths: L13_16_19 },
    Issuer { digits: 2, low: 51, high: 55, lengths: 1 << 16 },
    Issuer { digits: 4, low: 2221, high: 2720, lengths: 1 << 16 },
    Issuer { digits: 2, low: 34, high: 34, lengths: 1 << 15 },
    Issuer { digits: 2, low: 37, high: 37, lengths: 1 << 15 },
    Issuer { digits: 4, low: 6011, high: 6011, lengths: lengths(16, 19) },
    Issuer { digits: 3, low: 644, high: 649, lengths: lengths(16, 19) },
    Issuer { digits: 2, low: 65, high: 65, lengths: lengths(16, 19) },
    Issuer { digits: 3, low: 300, high: 305, lengths: lengths(14, 19) },
    Issuer { digits: 2, low: 36, high: 36, lengths: lengths(14, 19) },
    Issuer { digits: 2, low: 38, high: 39, lengths: lengths(16, 19) },
    Issuer { digits: 4, low: 3528, high: 3589, lengths: lengths(16, 19) },
    Issuer { digits: 2, low: 62, high: 62, lengths: lengths(16, 19) },
    Issuer { digits: 2, low: 50, high: 50, lengths: lengths(13, 19) },
    Issuer { digits: 2, low: 56, high: 58, lengths: lengths(13, 19) },
    Issuer { digits: 2, low: 60, high: 60, lengths: lengths(16, 19) },
    Issuer { digits: 2, low: 67, high: 67, lengths: lengths(13, 19) },
    Issuer { digits: 4, low: 6304, high: 6304, lengths: lengths(13, 19) },
    Issuer { digits: 4, low: 2200, high: 2204, lengths: lengths(16, 19) },
    Issuer { digits: 4, low: 9792, high: 9792, lengths: 1 << 16 },
];

/// Whether the ASCII digits of `text` (separators skipped) start like a card of a major
/// network and have a length that network issues.
pub fn known_issuer(text: &str) -> bool {
    let mut count: u32 = 0;
    let mut prefix: u32 = 0;
    let mut prefixes = [0u32; 5];
    for byte in text.bytes().filter(u8::is_ascii_digit) {
        if count < 4 {
            prefix = prefix
                .wrapping_mul(10)
                .wrapping_add(u32::from(byte.wrapping_sub(b'0')));
            if let Some(slot) = prefixes.get_mut(count.wrapping_add(1) as usize) {
                *slot = prefix;
            }
        }
        count = count.saturating_add(1);
    }
    ISSUERS.iter().any(|issuer| {
        count < 32
            && issuer.lengths & (1 << count) != 0
            && prefixes
                .get(issuer.digits as usize)
                .is_some_and(|&p| (issuer.low..=issuer.high).contains(&p))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    macro_rules! checks {
        ($($name:ident: $check:ident($text:expr) => $expected:expr;)*) => {$(
            #[test]
            fn $name() {
                assert_eq!($check($text), $expected);
            }
        )*};
    }

    checks! {
        luhn_visa_test_number: luhn("4111111111111111") => true;
        luhn_grouped: luhn("4111 1111 1111 1111") => true;
        luhn_amex: luhn("378282246310005") => true;
        luhn_one_digit_off: luhn("4111111111111112") => false;
        luhn_swapped_digits: luhn("4111111111111121") => false;
        luhn_zero: luhn("0") => true;
        mod97_gb: iban_mod97("GB29NWBK60161331926819") => true;
        mod97_de: iban_mod97("DE89370400440532013000") => true;
        mod97_no: iban_mod97("NO9386011117947") => true;
        mod97_mt_letters: iban_mod97("MT84MALT011000012345MTLCAST001S") => true;
        mod97_check_digits_wrong: iban_mod97("GB28NWBK60161331926819") => false;
        mod97_transposed: iban_mod97("GB29NWBK60161331926891") => false;
        mod97_lowercase_refused: iban_mod97("gb29nwbk60161331926819") => false;
        mod97_too_short: iban_mod97("GB2") => false;
        issuer_visa_16: known_issuer("4111111111111111") => true;
        issuer_visa_13: known_issuer("4222222222222") => true;
        issuer_visa_15_refused: known_issuer("411111111111111") => false;
        issuer_mastercard: known_issuer("5555 5555 5555 4444") => true;
        issuer_mastercard_2_series: known_issuer("2223003122003222") => true;
        issuer_amex: known_issuer("378282246310005") => true;
        issuer_amex_16_refused: known_issuer("3782822463100050") => false;
        issuer_discover: known_issuer("6011111111111117") => true;
        issuer_diners_14: known_issuer("30569309025904") => true;
        issuer_jcb: known_issuer("3530111333300000") => true;
        issuer_unionpay_19: known_issuer("6205500000000000004") => true;
        issuer_unknown_prefix: known_issuer("1234567812345670") => false;
        issuer_nines: known_issuer("9999999999999995") => false;
    }

    #[test]
    fn lengths_sets_the_bits_between() {
        assert_eq!(lengths(16, 19), 0b1111 << 16);
        assert_eq!(lengths(13, 13), 1 << 13);
    }
}
