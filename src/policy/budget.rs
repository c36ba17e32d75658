//! Budgets per consumer: limits in tokens or dollars over fixed windows of a minute, an hour, a
//! day (aligned to the Unix epoch, so in UTC) or a calendar month in UTC, counted per Envoy
//! instance in shared data. The counters, their encoding and the arithmetic of reserving and
//! settling are here; the pipeline reads and writes them.

use super::price::Usd;
use super::usage::Usage;

/// A budget window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Window {
    Minute,
    Hour,
    Day,
    /// A calendar month in UTC: from the first day at 00:00 to the first second of the next.
    Month,
}

impl Window {
    pub fn as_str(self) -> &'static str {
        match self {
            Window::Minute => "minute",
            Window::Hour => "hour",
            Window::Day => "day",
            Window::Month => "month",
        }
    }

    /// How a message names the window.
    pub fn described(self) -> &'static str {
        match self {
            Window::Minute => "minute",
            Window::Hour => "hour",
            Window::Day => "day (UTC)",
            Window::Month => "month (UTC)",
        }
    }

    /// The budget's key for a token limit of this window in the configuration.
    pub fn config_key(self) -> &'static str {
        match self {
            Window::Minute => "tokens_per_minute",
            Window::Hour => "tokens_per_hour",
            Window::Day => "tokens_per_day",
            Window::Month => "tokens_per_month",
        }
    }

    /// The start of the window containing `now` (seconds since the epoch).
    pub fn start(self, now: u64) -> u64 {
        match self {
            Window::Month => month_start(now),
            fixed => now.saturating_sub(now.checked_rem(fixed_seconds(fixed)).unwrap_or(0)),
        }
    }

    /// The first second after the window containing `now`.
    pub fn end(self, now: u64) -> u64 {
        match self {
            Window::Month => next_month_start(now),
            fixed => self.start(now).saturating_add(fixed_seconds(fixed)),
        }
    }
}

fn fixed_seconds(window: Window) -> u64 {
    match window {
        Window::Minute => 60,
        Window::Hour => 3_600,
        Window::Day | Window::Month => SECONDS_PER_DAY,
    }
}

const SECONDS_PER_DAY: u64 = 86_400;

/// The last day the calendar arithmetic is asked about (9999-12-31): later clocks count in it,
/// which keeps every intermediate value far from overflow.
const LAST_DAY: u64 = 2_932_896;

/// The year and month (1 to 12) of the day `days` after 1970-01-01 (Howard Hinnant's
/// `civil_from_days`, for days on or after the epoch).
#[allow(clippy::arithmetic_side_effects)] // `days` is at most LAST_DAY: no step can overflow.
fn year_month(days: u64) -> (u64, u64) {
    let z = days.min(LAST_DAY) + 719_468;
    let era = z / 146_097;
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month)
}

/// Days from 1970-01-01 to the first day of `month` (1 to 12) of `year` (1970 or later):
/// Hinnant's `days_from_civil`.
#[allow(clippy::arithmetic_side_effects)] // years are at most 10000: no step can overflow.
fn first_day(year: u64, month: u64) -> u64 {
    let year = year.clamp(1970, 10_000) - u64::from(month <= 2);
    let era = year / 400;
    let year_of_era = year - era * 400;
    let shifted_month = if month > 2 { month - 3 } else { month + 9 };
    let day_of_year = (153 * shifted_month + 2) / 5;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    (era * 146_097 + day_of_era).saturating_sub(719_468)
}

fn month_start(now: u64) -> u64 {
    let (year, month) = year_month(now / SECONDS_PER_DAY);
    first_day(year, month).saturating_mul(SECONDS_PER_DAY)
}

fn next_month_start(now: u64) -> u64 {
    let (year, month) = year_month(now / SECONDS_PER_DAY);
    let (year, month) = if month == 12 {
        (year.saturating_add(1), 1)
    } else {
        (year, month.saturating_add(1))
    };
    first_day(year, month).saturating_mul(SECONDS_PER_DAY)
}

/// What a limit counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Unit {
    /// Input plus output tokens.
    Tokens,
    /// Micro-dollars, at the price of the model (or of the target that served).
    MicroUsd,
}

/// One limit: at most `amount` of `unit` per `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub window: Window,
    pub unit: Unit,
    pub amount: u64,
}

impl Limit {
    /// The budget's key for this limit in the configuration.
    pub fn config_key(&self) -> &'static str {
        match (self.unit, self.window) {
            (Unit::Tokens, window) => window.config_key(),
            (Unit::MicroUsd, Window::Month) => "usd_per_month",
            (Unit::MicroUsd, _) => "usd_per_day",
        }
    }

    /// The shared-data key holding a consumer's counter for this limit.
    pub fn shared_key(&self, consumer: &str) -> String {
        match self.unit {
            Unit::Tokens => shared_key(consumer, self.window),
            Unit::MicroUsd => format!("posturio.budget.usd.{}.{consumer}", self.window.as_str()),
        }
    }
}

/// The output tokens reserved when neither the request nor the consumer caps them.
pub const DEFAULT_OUTPUT_TOKENS: u64 = 4_096;

/// A consumer's budget: one limit or more, tokens first, shortest window first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Budget {
    pub limits: Vec<Limit>,
    /// The output tokens a reservation counts when neither the request nor the consumer caps
    /// them (`default_output_tokens`).
    pub default_output_tokens: u64,
}

impl Budget {
    /// Whether any limit is in dollars: requests are then priced before they go.
    pub fn has_usd(&self) -> bool {
        self.limits.iter().any(|limit| limit.unit == Unit::MicroUsd)
    }
}

/// How many times adding usage retries when another worker wrote the same counter first.
pub const CAS_RETRIES: usize = 8;

/// The shared-data key holding a consumer's token counter for one window. Keys are bounded by
/// the configuration: one per consumer with a budget and limit.
pub fn shared_key(consumer: &str, window: Window) -> String {
    format!("posturio.budget.{}.{consumer}", window.as_str())
}

/// What was used in the window that started at `window_start` (seconds since the epoch):
/// tokens or micro-dollars. Stored in shared data as 16 bytes: the start, then the count,
/// little-endian.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counter {
    pub window_start: u64,
    pub used: u64,
}

impl Counter {
    /// A missing or unreadable value is an empty counter: budgets then under-count rather than
    /// refuse everyone.
    pub fn decode(bytes: Option<&[u8]>) -> Counter {
        let Some(bytes) = bytes else {
            return Counter::default();
        };
        let (Some(start), Some(used)) = (bytes.get(0..8), bytes.get(8..16)) else {
            return Counter::default();
        };
        let (Ok(start), Ok(used)) = (<[u8; 8]>::try_from(start), <[u8; 8]>::try_from(used)) else {
            return Counter::default();
        };
        Counter {
            window_start: u64::from_le_bytes(start),
            used: u64::from_le_bytes(used),
        }
    }

    pub fn encode(&self) -> [u8; 16] {
        let mut bytes = [0u8; 16];
        let (start, used) = bytes.split_at_mut(8);
        start.copy_from_slice(&self.window_start.to_le_bytes());
        used.copy_from_slice(&self.used.to_le_bytes());
        bytes
    }

    /// What was used in the window that contains `now`; a counter from an earlier window is
    /// spent.
    pub fn used_at(&self, window: Window, now: u64) -> u64 {
        if self.window_start == window.start(now) {
            self.used
        } else {
            0
        }
    }

    /// The counter after `amount` more was used at `now`.
    pub fn plus(&self, window: Window, now: u64, amount: u64) -> Counter {
        Counter {
            window_start: window.start(now),
            used: self.used_at(window, now).saturating_add(amount),
        }
    }

    /// The counter once a request that reserved `reserved` at `reserved_at` turned out to use
    /// `actual`: the difference, never below zero, in the window that still holds the
    /// reservation; the whole actual amount in a window that began since (the reservation
    /// went with the old one). `actual` 0 releases the reservation.
    pub fn settled(&self, window: Window, now: u64, reserved: (u64, u64), actual: u64) -> Counter {
        let (reserved_at, reserved) = reserved;
        let current = window.start(now);
        if window.start(reserved_at) == current && self.window_start == current {
            Counter {
                window_start: current,
                used: self.used.saturating_add(actual).saturating_sub(reserved),
            }
        } else {
            self.plus(window, now, actual)
        }
    }
}

/// The start of the window containing `now`.
pub fn window_start(window: Window, now: u64) -> u64 {
    window.start(now)
}

/// What a request is expected to cost, held against every window of its consumer's budget
/// until the answer settles it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reserve {
    pub tokens: u64,
    pub microusd: u64,
}

impl Reserve {
    /// This amount in a limit's unit.
    pub fn of(&self, unit: Unit) -> u64 {
        match unit {
            Unit::Tokens => self.tokens,
            Unit::MicroUsd => self.microusd,
        }
    }
}

/// A cent in micro-dollars.
const CENT: u64 = 10_000;

/// A limit the request would cross.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exceeded {
    pub limit: Limit,
    pub used: u64,
    /// What the refused request would have reserved, in the limit's unit.
    pub reserved: u64,
    /// Seconds until every crossed window has ended (at least 1).
    pub retry_after: u64,
}

/// The first limit that `used + reserve > amount` crosses, if any, with the wait until every
/// crossed window has ended. `counter` reads the stored counter of a limit.
pub fn exceeded(
    budget: &Budget,
    now: u64,
    reserve: Reserve,
    counter: impl Fn(&Limit) -> Counter,
) -> Option<Exceeded> {
    let mut found: Option<Exceeded> = None;
    for limit in &budget.limits {
        let used = counter(limit).used_at(limit.window, now);
        let reserved = reserve.of(limit.unit);
        if used.saturating_add(reserved) <= limit.amount && used < limit.amount {
            continue;
        }
        let wait = limit.window.end(now).saturating_sub(now).max(1);
        found = Some(match found {
            None => Exceeded {
                limit: *limit,
                used,
                reserved,
                retry_after: wait,
            },
            Some(first) => Exceeded {
                retry_after: first.retry_after.max(wait),
                ..first
            },
        });
    }
    found
}

impl Exceeded {
    /// What the refused caller reads: which limit, how much was used and reserved, when to
    /// come back, in dollars with cents where the limit is in dollars.
    pub fn message(&self, consumer: &str) -> String {
        let limit = &self.limit;
        let per = limit.window.described();
        let (used, amount, reserved, verb) = match limit.unit {
            Unit::Tokens => (
                self.used.to_string(),
                format!("{} tokens", limit.amount),
                format!("{} tokens", self.reserved),
                "use",
            ),
            // In cents, unless the limit itself is finer: then every amount exactly.
            Unit::MicroUsd if limit.amount % CENT == 0 => (
                Usd(self.used).cents_down(),
                Usd(limit.amount).cents_down(),
                Usd(self.reserved).to_string(),
                "cost",
            ),
            Unit::MicroUsd => (
                Usd(self.used).exact(),
                Usd(limit.amount).exact(),
                Usd(self.reserved).exact(),
                "cost",
            ),
        };
        if self.reserved > limit.amount {
            return format!(
                "consumer \"{consumer}\": this request may {verb} up to {reserved}, more than \
                 its whole limit of {amount} per {per}; lower the request's output limit (such \
                 as max_tokens) or its size"
            );
        }
        let reserved = match self.reserved {
            0 => String::new(),
            _ => format!("; this request may {verb} up to {reserved}"),
        };
        format!(
            "consumer \"{consumer}\" has used {used} of its {amount} per {per}{reserved}; retry \
             after {} s",
            self.retry_after
        )
    }
}

/// Bytes of text per token the estimate assumes: English runs about four; JSON and SSE framing
/// in the counted bytes make the estimate higher than the text alone would.
pub const BYTES_PER_TOKEN: u64 = 4;

/// The tokens charged for an answer whose usage was never reported in full (a stream the
/// client closed before its usage event, an answer cut short): the input tokens reported, or
/// the request body at `BYTES_PER_TOKEN` if that is more or none was reported, plus the answer
/// bytes relayed at `BYTES_PER_TOKEN`, rounded up. When nothing was relayed (the client left,
/// or the upstream timed out or reset, before any answer) the output is the consumer's cap
/// when it has one: the provider may have generated that much, and the cap is the most it
/// could. An estimate, not a count: it keeps such answers from being free.
pub fn estimate(
    known_input: Option<u64>,
    request_bytes: u64,
    relayed_bytes: u64,
    output_cap: Option<u64>,
) -> u64 {
    let usage = estimate_usage(known_input, request_bytes, relayed_bytes, output_cap);
    usage.input.saturating_add(usage.output)
}

/// `estimate`, as input and output apart: what a price needs.
pub fn estimate_usage(
    known_input: Option<u64>,
    request_bytes: u64,
    relayed_bytes: u64,
    output_cap: Option<u64>,
) -> Usage {
    let input = tokens_in(request_bytes).max(known_input.unwrap_or(0));
    let output = match relayed_bytes {
        0 => output_cap.unwrap_or(0),
        relayed => tokens_in(relayed),
    };
    Usage {
        input,
        output,
        cached: 0,
        reasoning: 0,
        cache_write: 0,
    }
}

/// Tokens in `bytes` of text at `BYTES_PER_TOKEN`, rounded up.
pub fn tokens_in(bytes: u64) -> u64 {
    bytes.div_ceil(BYTES_PER_TOKEN)
}

#[cfg(test)]
#[path = "budget_tests.rs"]
mod tests;
