//! Token budgets per consumer: fixed windows of a minute, an hour or a day, counted per Envoy
//! instance in shared data (the counter and its encoding here; the pipeline checks and charges).

/// A budget window. Windows are aligned to the Unix epoch (a minute starts at :00, a day at
/// 00:00 UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Window {
    Minute,
    Hour,
    Day,
}

impl Window {
    pub fn seconds(self) -> u64 {
        match self {
            Window::Minute => 60,
            Window::Hour => 3_600,
            Window::Day => 86_400,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Window::Minute => "minute",
            Window::Hour => "hour",
            Window::Day => "day",
        }
    }

    /// The budget's key for this window in the configuration.
    pub fn config_key(self) -> &'static str {
        match self {
            Window::Minute => "tokens_per_minute",
            Window::Hour => "tokens_per_hour",
            Window::Day => "tokens_per_day",
        }
    }
}

/// One limit: at most `tokens` (input plus output) per `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub window: Window,
    pub tokens: u64,
}

/// A consumer's budget: one to three limits, shortest window first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Budget {
    pub limits: Vec<Limit>,
}

/// How many times adding usage retries when another worker wrote the same counter first.
pub const CAS_RETRIES: usize = 8;

/// The shared-data key holding a consumer's counter for one window. Keys are bounded by the
/// configuration: one per consumer with a budget and window.
pub fn shared_key(consumer: &str, window: Window) -> String {
    format!("posturio.budget.{}.{consumer}", window.as_str())
}

/// Tokens used in the window that started at `window_start` (seconds since the epoch).
/// Stored in shared data as 16 bytes: the start, then the count, little-endian.
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

    /// Tokens used in the window that contains `now`; a counter from an earlier window is spent.
    pub fn used_at(&self, window: Window, now: u64) -> u64 {
        if self.window_start == window_start(window, now) {
            self.used
        } else {
            0
        }
    }

    /// The counter after `tokens` more were used at `now`.
    pub fn plus(&self, window: Window, now: u64, tokens: u64) -> Counter {
        Counter {
            window_start: window_start(window, now),
            used: self.used_at(window, now).saturating_add(tokens),
        }
    }
}

/// The start of the window containing `now`, aligned to the epoch.
pub fn window_start(window: Window, now: u64) -> u64 {
    now.saturating_sub(now.checked_rem(window.seconds()).unwrap_or(0))
}

/// A limit that is used up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exceeded {
    pub limit: Limit,
    pub used: u64,
    /// Seconds until every exhausted window has ended (at least 1).
    pub retry_after: u64,
}

/// The first exhausted limit, if any, with the wait until all exhausted ones have reset.
/// `counter` reads the stored counter of a window.
pub fn exceeded(
    budget: &Budget,
    now: u64,
    counter: impl Fn(Window) -> Counter,
) -> Option<Exceeded> {
    let mut found: Option<Exceeded> = None;
    for limit in &budget.limits {
        let used = counter(limit.window).used_at(limit.window, now);
        if used < limit.tokens {
            continue;
        }
        let end = window_start(limit.window, now).saturating_add(limit.window.seconds());
        let wait = end.saturating_sub(now).max(1);
        found = Some(match found {
            None => Exceeded {
                limit: *limit,
                used,
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
    /// What the refused caller reads: which limit, how much was used, when to come back.
    pub fn message(&self, consumer: &str) -> String {
        format!(
            "consumer \"{consumer}\" has used {} of its {} tokens per {}; retry after {} s",
            self.used,
            self.limit.tokens,
            self.limit.window.as_str(),
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
    let tokens = |bytes: u64| bytes.div_ceil(BYTES_PER_TOKEN);
    let input = tokens(request_bytes).max(known_input.unwrap_or(0));
    let output = match relayed_bytes {
        0 => output_cap.unwrap_or(0),
        relayed => tokens(relayed),
    };
    input.saturating_add(output)
}

#[cfg(test)]
mod tests {
    use super::*;

    macro_rules! estimates {
        ($($name:ident: $known:expr, $request:expr, $relayed:expr, $cap:expr => $tokens:expr;)*) => {$(
            #[test]
            fn $name() {
                assert_eq!(estimate($known, $request, $relayed, $cap), $tokens);
            }
        )*};
    }

    estimates! {
        estimate_nothing: None, 0, 0, None => 0;
        estimate_rounds_up: None, 1, 1, None => 2;
        estimate_four_bytes_a_token: None, 400, 4000, None => 1100;
        estimate_reported_input_above_the_bytes: Some(900), 400, 4000, None => 1900;
        estimate_reported_input_below_the_bytes: Some(20), 400, 4000, None => 1100;
        estimate_bounded_by_the_bytes: None, u64::MAX, u64::MAX, None => 9_223_372_036_854_775_808;
        estimate_no_answer_charges_the_cap: None, 400, 0, Some(50) => 150;
        estimate_no_answer_without_cap_charges_input: None, 400, 0, None => 100;
        estimate_relayed_bytes_not_the_cap: None, 400, 40, Some(50) => 110;
        estimate_huge_cap_saturates: None, 8, 0, Some(u64::MAX) => u64::MAX;
    }

    fn budget(limits: &[(Window, u64)]) -> Budget {
        Budget {
            limits: limits
                .iter()
                .map(|&(window, tokens)| Limit { window, tokens })
                .collect(),
        }
    }

    #[test]
    fn counters_round_trip_and_garbage_is_empty() {
        let counter = Counter {
            window_start: 1_700_000_040,
            used: 12_345,
        };
        assert_eq!(Counter::decode(Some(&counter.encode())), counter);
        assert_eq!(Counter::decode(None), Counter::default());
        assert_eq!(Counter::decode(Some(b"short")), Counter::default());
    }

    #[test]
    fn windows_align_to_the_epoch() {
        assert_eq!(window_start(Window::Minute, 1_700_000_059), 1_700_000_040);
        assert_eq!(window_start(Window::Hour, 7_199), 3_600);
        assert_eq!(window_start(Window::Day, 86_400 * 3 + 5), 86_400 * 3);
    }

    #[test]
    fn usage_from_an_earlier_window_is_spent() {
        let counter = Counter::default().plus(Window::Minute, 100, 40);
        assert_eq!(
            counter,
            Counter {
                window_start: 60,
                used: 40
            }
        );
        assert_eq!(counter.plus(Window::Minute, 119, 2).used, 42);
        assert_eq!(counter.used_at(Window::Minute, 120), 0);
        assert_eq!(
            counter.plus(Window::Minute, 120, 5),
            Counter {
                window_start: 120,
                used: 5
            }
        );
    }

    #[test]
    fn a_limit_is_exceeded_once_used_up() {
        let budget = budget(&[(Window::Minute, 100), (Window::Day, 1_000)]);
        let now = 86_400 * 10 + 90; // 30 s into a minute, 90 s into a day
        let under = |_| Counter {
            window_start: 0,
            used: 0,
        };
        assert_eq!(exceeded(&budget, now, under), None);

        let minute_full = |window| match window {
            Window::Minute => Counter {
                window_start: now - 30,
                used: 100,
            },
            _ => Counter::default(),
        };
        let found = exceeded(&budget, now, minute_full).unwrap();
        assert_eq!(found.limit.window, Window::Minute);
        assert_eq!(found.retry_after, 30);
        assert_eq!(
            found.message("team-a"),
            "consumer \"team-a\" has used 100 of its 100 tokens per minute; retry after 30 s"
        );

        // With the day used up too, the caller must wait for the day to end.
        let both_full = |window| match window {
            Window::Minute => Counter {
                window_start: now - 30,
                used: 150,
            },
            _ => Counter {
                window_start: now - 90,
                used: 1_000,
            },
        };
        let found = exceeded(&budget, now, both_full).unwrap();
        assert_eq!(found.limit.window, Window::Minute);
        assert_eq!(found.retry_after, 86_400 - 90);
    }

    #[test]
    fn keys_name_window_and_consumer() {
        assert_eq!(
            shared_key("team-a", Window::Hour),
            "posturio.budget.hour.team-a"
        );
    }
}
