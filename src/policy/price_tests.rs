//! Amounts read from decimal strings, and cost rounding.
#![allow(clippy::arithmetic_side_effects)]

use super::*;

#[test]
fn amounts_read_as_micro_dollars() {
    for (text, micros) in [
        ("0", 0),
        ("2.50", 2_500_000),
        ("10.00", 10_000_000),
        ("1.25", 1_250_000),
        ("0.000001", 1),
        ("0.1", 100_000),
        ("999999999.999999", 999_999_999_999_999),
        ("007", 7_000_000),
    ] {
        assert_eq!(parse_usd(text), Some(Usd(micros)), "{text}");
    }
}

#[test]
fn amounts_that_are_not_plain_decimals_are_refused() {
    for text in [
        "",
        ".5",
        "5.",
        "-1",
        "+1",
        "1e6",
        "1.0000001",
        "1000000000",
        "1,5",
        " 1",
        "1 ",
        "١",
        "0x10",
        "1.2.3",
        "NaN",
    ] {
        assert_eq!(parse_usd(text), None, "{text:?}");
    }
}

#[test]
fn numbers_are_refused_with_the_advice_to_quote_them() {
    for json in ["2.5", "3", "-1", "1e2"] {
        let error = serde_json::from_str::<Usd>(json).unwrap_err().to_string();
        assert!(
            error.contains("is a number; write a decimal string"),
            "{error}"
        );
    }
    let error = serde_json::from_str::<Usd>("\"1.0000001\"")
        .unwrap_err()
        .to_string();
    assert!(error.contains("at most 9 digits before the dot"), "{error}");
    assert_eq!(
        serde_json::from_str::<Usd>("\"2.50\"").unwrap(),
        Usd(2_500_000)
    );
}

#[test]
fn dollars_show_with_cents() {
    assert_eq!(Usd(500_000_000).to_string(), "$500.00");
    assert_eq!(Usd(415_001).to_string(), "$0.42");
    assert_eq!(Usd(1).to_string(), "$0.01");
    assert_eq!(Usd(0).to_string(), "$0.00");
    assert_eq!(Usd(499_809_999).cents_down(), "$499.80");
    assert_eq!(Usd(u64::MAX).cents_down(), "$18446744073709.55");
}

fn price(input: u64, output: u64, cached_input: u64, reasoning: u64) -> Price {
    Price {
        cache_write: input,
        input,
        output,
        cached_input,
        reasoning,
    }
}

fn usage(input: u64, output: u64, cached: u64, reasoning: u64) -> Usage {
    Usage {
        input,
        output,
        cached,
        reasoning,
        cache_write: 0,
    }
}

#[test]
fn cost_prices_each_part_at_its_rate() {
    // $2.50 in, $10 out, $1.25 cached, per million tokens.
    let price = price(2_500_000, 10_000_000, 1_250_000, 10_000_000);
    // 1000 in (200 cached), 500 out: 800·2.5 + 200·1.25 + 500·10 = 7250 micro-dollars.
    assert_eq!(cost(&usage(1_000, 500, 200, 0), &price), 7_250);
    // A million of each is exactly the price.
    assert_eq!(cost(&usage(1_000_000, 0, 0, 0), &price), 2_500_000);
    assert_eq!(cost(&usage(0, 1_000_000, 0, 0), &price), 10_000_000);
}

#[test]
fn cost_is_rounded_up_once_not_per_part() {
    let price = price(1, 1, 1, 1);
    // Each part alone is a fraction of a micro-dollar; their sum is still one, not four.
    assert_eq!(cost(&usage(2, 2, 1, 1), &price), 1);
    assert_eq!(cost(&usage(0, 0, 0, 0), &price), 0);
    let price = self::price(400_000, 400_000, 400_000, 400_000);
    // 3 tokens at 0.4 micro-dollars each: 1.2, rounded up to 2.
    assert_eq!(cost(&usage(3, 0, 0, 0), &price), 2);
    assert_eq!(cost(&usage(5, 0, 0, 0), &price), 2);
}

#[test]
fn reasoning_priced_apart_when_given() {
    let price = price(1_000_000, 2_000_000, 1_000_000, 8_000_000);
    // 100 output of which 40 reasoning: 60·2 + 40·8 = 440 per million → 1 micro-dollar.
    assert_eq!(
        cost(&usage(0, 1_000_000, 0, 400_000), &price),
        1_200_000 + 3_200_000
    );
}

#[test]
fn impossible_parts_are_bounded_by_their_whole() {
    let price = price(1_000_000, 1_000_000, 0, 0);
    // More cached than input, more reasoning than output: the parts are capped, never negative.
    assert_eq!(cost(&usage(10, 10, 50, 50), &price), 0);
}

#[test]
fn cost_saturates() {
    let max = 999_999_999_999_999;
    let price = price(max, max, max, max);
    assert_eq!(
        cost(&usage(u64::MAX, u64::MAX, 0, 0), &price),
        u64::MAX,
        "saturates rather than wrapping"
    );
}

#[test]
fn highest_price_of_targets() {
    let one = price(1, 5, 1, 5);
    let other = price(3, 2, 0, 9);
    assert_eq!(one.highest(other), price(3, 5, 1, 9));
}

#[test]
fn cache_writes_are_priced_at_their_own_rate() {
    // Anthropic's 1-hour cache write of 100,000 tokens at $6/M, 10 more input at $3/M, 100
    // output at $15/M: 600,000 + 30 + 1,500 micro-dollars.
    let price = Price {
        cache_write: 6_000_000,
        ..price(3_000_000, 15_000_000, 300_000, 15_000_000)
    };
    let written = Usage {
        cache_write: 100_000,
        ..usage(100_010, 100, 0, 0)
    };
    assert_eq!(cost(&written, &price), 601_530);
    // Writes never exceed the input left beside the cached part.
    let beyond = Usage {
        cache_write: 1_000,
        ..usage(10, 0, 4, 0)
    };
    assert_eq!(cost(&beyond, &price), 38);
}
