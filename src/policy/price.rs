//! Prices and cost in whole micro-dollars: a model's price per million tokens, written in the
//! policy as a decimal string so that no price is ever rounded by floating point, and the cost
//! of one answer's usage, rounded up once.

use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer};

use super::usage::Usage;

/// Micro-dollars in a dollar.
pub const MICROS_PER_USD: u64 = 1_000_000;

/// Tokens a price is given for.
const TOKENS_PER_PRICE: u128 = 1_000_000;

/// The most integer digits an amount may have: a price of a billion dollars per million tokens
/// is a typo, and the bound keeps every amount far inside `u64`.
const MAX_INTEGER_DIGITS: usize = 9;

/// The most decimals an amount may have: a micro-dollar is the unit.
const MAX_DECIMALS: usize = 6;

/// An amount in US dollars, held as whole micro-dollars. Written in the policy as a decimal
/// string such as `"2.50"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Usd(pub u64);

/// What a config error says about an amount that is not a decimal string.
pub const USD_FORMAT: &str = "write a decimal string of dollars such as \"2.50\": digits, \
     optionally a dot and 1 to 6 decimals, at most 9 digits before the dot (a JSON number, a \
     sign or an exponent is not accepted, so that no amount is rounded)";

/// Reads `^[0-9]{1,9}(\.[0-9]{1,6})?$` as micro-dollars.
pub fn parse_usd(text: &str) -> Option<Usd> {
    let (whole, decimals) = match text.split_once('.') {
        Some((whole, decimals)) => (whole, decimals),
        None => (text, ""),
    };
    let digits = |part: &str| part.bytes().all(|byte| byte.is_ascii_digit());
    if whole.is_empty()
        || whole.len() > MAX_INTEGER_DIGITS
        || !digits(whole)
        || decimals.len() > MAX_DECIMALS
        || !digits(decimals)
        || (text.contains('.') && decimals.is_empty())
    {
        return None;
    }
    let whole: u64 = whole.parse().ok()?;
    let mut fraction: u64 = 0;
    let mut scale = MICROS_PER_USD;
    for byte in decimals.bytes() {
        scale = scale.checked_div(10)?;
        let digit = u64::from(byte.checked_sub(b'0')?);
        fraction = fraction.checked_add(digit.checked_mul(scale)?)?;
    }
    Some(Usd(whole
        .checked_mul(MICROS_PER_USD)?
        .checked_add(fraction)?))
}

impl<'de> Deserialize<'de> for Usd {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct UsdVisitor;

        impl Visitor<'_> for UsdVisitor {
            type Value = Usd;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a decimal string of dollars such as \"2.50\"")
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<Usd, E> {
                parse_usd(text).ok_or_else(|| E::custom(format!("\"{text}\": {USD_FORMAT}")))
            }

            fn visit_u64<E: de::Error>(self, number: u64) -> Result<Usd, E> {
                Err(E::custom(format!("{number} is a number; {USD_FORMAT}")))
            }

            fn visit_i64<E: de::Error>(self, number: i64) -> Result<Usd, E> {
                Err(E::custom(format!("{number} is a number; {USD_FORMAT}")))
            }

            fn visit_f64<E: de::Error>(self, number: f64) -> Result<Usd, E> {
                Err(E::custom(format!("{number} is a number; {USD_FORMAT}")))
            }
        }

        deserializer.deserialize_any(UsdVisitor)
    }
}

impl fmt::Display for Usd {
    /// Dollars and cents, rounded up to the cent: `$0.42`, `$500.00`.
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let cents = self.0.div_ceil(MICROS_PER_USD / 100);
        write!(f, "${}.{:02}", cents / 100, cents % 100)
    }
}

impl Usd {
    /// Dollars exactly, with at least the cents: `$500.00`, `$0.000125`.
    pub fn exact(self) -> String {
        let dollars = self.0 / MICROS_PER_USD;
        let micros = format!("{:06}", self.0 % MICROS_PER_USD);
        let decimals = micros.trim_end_matches('0');
        let decimals = if decimals.len() < 2 {
            micros.get(..2).unwrap_or("00")
        } else {
            decimals
        };
        format!("${dollars}.{decimals}")
    }

    /// Dollars and cents, rounded down to the cent: what was used is never overstated.
    pub fn cents_down(self) -> String {
        let cents = self.0 / (MICROS_PER_USD / 100);
        format!("${}.{:02}", cents / 100, cents % 100)
    }
}

/// A model's (or a target's) price, in micro-dollars per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Price {
    pub input: u64,
    pub output: u64,
    /// Input tokens read from the provider's cache; defaults to `input`.
    pub cached_input: u64,
    /// The reasoning part of the output, when a provider prices it apart; defaults to `output`.
    pub reasoning: u64,
    /// Input tokens written to the provider's prompt cache; defaults to `input`.
    pub cache_write: u64,
}

impl Price {
    /// The price's highest rate of each kind with `other`'s: the price an estimate uses when
    /// any of several targets may serve.
    pub fn highest(self, other: Price) -> Price {
        Price {
            input: self.input.max(other.input),
            output: self.output.max(other.output),
            cached_input: self.cached_input.max(other.cached_input),
            reasoning: self.reasoning.max(other.reasoning),
            cache_write: self.cache_write.max(other.cache_write),
        }
    }
}

/// The cost of `usage` at `price`, in micro-dollars: every part priced at its own rate, the sum
/// divided by a million tokens and rounded up once (never per part), saturating.
pub fn cost(usage: &Usage, price: &Price) -> u64 {
    let cached = usage.cached.min(usage.input);
    let written = usage.cache_write.min(usage.input.saturating_sub(cached));
    let reasoning = usage.reasoning.min(usage.output);
    let parts = [
        (
            usage.input.saturating_sub(cached).saturating_sub(written),
            price.input,
        ),
        (cached, price.cached_input),
        (written, price.cache_write),
        (usage.output.saturating_sub(reasoning), price.output),
        (reasoning, price.reasoning),
    ];
    let total = parts.iter().fold(0u128, |sum, &(tokens, rate)| {
        sum.saturating_add(u128::from(tokens).saturating_mul(u128::from(rate)))
    });
    u64::try_from(total.div_ceil(TOKENS_PER_PRICE)).unwrap_or(u64::MAX)
}

#[cfg(test)]
#[path = "price_tests.rs"]
mod tests;
