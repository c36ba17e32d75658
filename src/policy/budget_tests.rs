//! Estimates, counters, windows (calendar months included), reservations and their messages.
#![allow(clippy::arithmetic_side_effects)]

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

fn tokens(window: Window, amount: u64) -> Limit {
    Limit {
        window,
        unit: Unit::Tokens,
        amount,
    }
}

fn usd(window: Window, amount: u64) -> Limit {
    Limit {
        window,
        unit: Unit::MicroUsd,
        amount,
    }
}

fn budget(limits: &[Limit]) -> Budget {
    Budget {
        limits: limits.to_vec(),
        default_output_tokens: DEFAULT_OUTPUT_TOKENS,
    }
}

/// Seconds since the epoch of 00:00:00 UTC on a date.
fn date(year: u64, month: u64, day: u64) -> u64 {
    (first_day(year, month) + day - 1) * SECONDS_PER_DAY
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
    assert_eq!(Window::Day.end(86_400 * 3 + 5), 86_400 * 4);
}

#[test]
fn first_days_of_months_are_the_calendar_s() {
    assert_eq!(first_day(1970, 1), 0);
    assert_eq!(first_day(1970, 2), 31);
    assert_eq!(first_day(1970, 3), 59);
    assert_eq!(first_day(2000, 1), 10_957);
    // 2000 is a leap year (divisible by 400): 29 days in February.
    assert_eq!(first_day(2000, 3) - first_day(2000, 2), 29);
    // 2100 is not (divisible by 100, not 400); 2024 and 2028 are.
    assert_eq!(first_day(2100, 3) - first_day(2100, 2), 28);
    assert_eq!(first_day(2024, 3) - first_day(2024, 2), 29);
    assert_eq!(first_day(2026, 3) - first_day(2026, 2), 28);
    // 2024-01-01 is 19723 days after the epoch.
    assert_eq!(first_day(2024, 1), 19_723);
}

#[test]
fn every_month_of_many_years_is_found_from_each_of_its_days() {
    for year in [1970, 1999, 2000, 2023, 2024, 2026, 2100, 2400, 9999] {
        for month in 1..=12 {
            let start = first_day(year, month);
            let next = if month == 12 {
                first_day(year + 1, 1)
            } else {
                first_day(year, month + 1)
            };
            assert!((28..=31).contains(&(next - start)), "{year}-{month}");
            for day in [start, start + 1, next - 1] {
                assert_eq!(year_month(day), (year, month), "day {day}");
            }
        }
    }
}

#[test]
fn a_month_runs_from_its_first_second_to_the_next_month_s() {
    let now = date(2026, 12, 7) + 3_600;
    assert_eq!(Window::Month.start(now), date(2026, 12, 1));
    // December rolls into January of the next year.
    assert_eq!(Window::Month.end(now), date(2027, 1, 1));
    // The last second of a month is still in it; the next is the next month's first.
    let last = date(2027, 1, 1) - 1;
    assert_eq!(Window::Month.start(last), date(2026, 12, 1));
    assert_eq!(Window::Month.start(last + 1), date(2027, 1, 1));
    // February of a leap year ends on the 29th, of another year on the 28th.
    assert_eq!(Window::Month.end(date(2024, 2, 10)), date(2024, 3, 1));
    assert_eq!(date(2024, 3, 1) - date(2024, 2, 29), SECONDS_PER_DAY);
    assert_eq!(
        Window::Month.start(date(2024, 2, 29) + 86_399),
        date(2024, 2, 1)
    );
    assert_eq!(Window::Month.end(date(2025, 2, 10)), date(2025, 3, 1));
    assert_eq!(Window::Month.start(date(2025, 3, 1)), date(2025, 3, 1));
    // Months of 30 and 31 days.
    assert_eq!(Window::Month.end(date(2026, 4, 30)), date(2026, 5, 1));
    assert_eq!(Window::Month.start(date(2026, 5, 31)), date(2026, 5, 1));
    // A clock far in the future stays in the last month counted, and never overflows.
    assert_eq!(Window::Month.start(u64::MAX), date(9999, 12, 1));
    assert!(Window::Month.end(u64::MAX) > date(9999, 12, 1));
}

#[test]
fn a_month_counter_is_spent_at_the_month_s_end() {
    let end_of_january = date(2026, 1, 31) + 86_399;
    let counter = Counter::default().plus(Window::Month, end_of_january, 700);
    assert_eq!(counter.used_at(Window::Month, end_of_january), 700);
    assert_eq!(counter.used_at(Window::Month, end_of_january + 1), 0);
    let budget = budget(&[tokens(Window::Month, 1_000)]);
    let reserve = Reserve {
        tokens: 400,
        microusd: 0,
    };
    let found = exceeded(&budget, end_of_january, reserve, |_| counter).unwrap();
    assert_eq!(
        found.retry_after, 1,
        "retry at the first second of February"
    );
    assert_eq!(
        exceeded(&budget, end_of_january + 1, reserve, |_| counter),
        None
    );
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
fn settling_adjusts_the_reservation_to_the_actual_amount() {
    let reserved_at = 86_400 * 10 + 30;
    let held = Counter::default().plus(Window::Day, reserved_at, 1_000 + 300);
    // Used less than reserved: the difference is given back.
    let settled = held.settled(Window::Day, reserved_at + 5, (reserved_at, 300), 120);
    assert_eq!(settled.used, 1_120);
    // Used more: the rest is added.
    let settled = held.settled(Window::Day, reserved_at + 5, (reserved_at, 300), 450);
    assert_eq!(settled.used, 1_450);
    // Released: as if never reserved.
    let settled = held.settled(Window::Day, reserved_at + 5, (reserved_at, 300), 0);
    assert_eq!(settled.used, 1_000);
    // Never below zero, even if the counter was reset under the reservation.
    let reset = Counter {
        window_start: held.window_start,
        used: 100,
    };
    assert_eq!(
        reset
            .settled(Window::Day, reserved_at, (reserved_at, 300), 0)
            .used,
        0
    );
}

#[test]
fn a_window_that_rolled_over_gets_the_actual_amount() {
    let reserved_at = 86_400 * 10 + 86_399;
    let held = Counter::default().plus(Window::Day, reserved_at, 300);
    let next_day = reserved_at + 2;
    // The reservation went with yesterday; today is charged what was used.
    let settled = held.settled(Window::Day, next_day, (reserved_at, 300), 120);
    assert_eq!(
        settled,
        Counter {
            window_start: 86_400 * 11,
            used: 120
        }
    );
    // Another request already opened today's window: it keeps its own use.
    let today = Counter::default().plus(Window::Day, next_day, 50);
    assert_eq!(
        today
            .settled(Window::Day, next_day, (reserved_at, 300), 120)
            .used,
        170
    );
    // A release in a new window takes nothing from it.
    assert_eq!(
        today
            .settled(Window::Day, next_day, (reserved_at, 300), 0)
            .used,
        50
    );
}

#[test]
fn a_reservation_that_would_cross_a_limit_is_refused() {
    let budget = budget(&[tokens(Window::Minute, 100), tokens(Window::Day, 1_000)]);
    let now = 86_400 * 10 + 90; // 30 s into a minute, 90 s into a day
    let used = |minute: u64, day: u64| {
        move |limit: &Limit| Counter {
            window_start: limit.window.start(now),
            used: if limit.window == Window::Minute {
                minute
            } else {
                day
            },
        }
    };
    let reserve = |tokens| Reserve {
        tokens,
        microusd: 0,
    };
    assert_eq!(exceeded(&budget, now, reserve(40), used(60, 0)), None);
    // 60 used + 41 reserved crosses the minute's 100.
    let found = exceeded(&budget, now, reserve(41), used(60, 0)).unwrap();
    assert_eq!(found.limit.window, Window::Minute);
    assert_eq!(
        (found.used, found.reserved, found.retry_after),
        (60, 41, 30)
    );
    assert_eq!(
        found.message("team-a"),
        "consumer \"team-a\" has used 60 of its 100 tokens per minute; this request may use \
         up to 41 tokens; retry after 30 s"
    );
    // With the day crossed too, the caller must wait for the day to end.
    let found = exceeded(&budget, now, reserve(41), used(60, 990)).unwrap();
    assert_eq!(found.limit.window, Window::Minute);
    assert_eq!(found.retry_after, 86_400 - 90);
    // A limit used up refuses even a request that reserves nothing.
    assert!(exceeded(&budget, now, reserve(0), used(100, 0)).is_some());
}

#[test]
fn a_reservation_above_the_whole_limit_says_to_lower_the_output_cap() {
    let budget = budget(&[tokens(Window::Hour, 100)]);
    let reserve = Reserve {
        tokens: 4_121,
        microusd: 0,
    };
    let found = exceeded(&budget, 3_600, reserve, |_| Counter::default()).unwrap();
    assert_eq!(
        found.message("team-a"),
        "consumer \"team-a\": this request may use up to 4121 tokens, more than its whole \
         limit of 100 tokens per hour; lower the request's output limit (such as max_tokens) \
         or its size"
    );
}

#[test]
fn dollar_limits_speak_in_dollars_and_cents() {
    let now = date(2026, 12, 31) + 86_400 - 1_234;
    let budget = budget(&[
        tokens(Window::Day, 1_000_000),
        usd(Window::Month, 500_000_000),
    ]);
    let reserve = Reserve {
        tokens: 1_000,
        microusd: 415_001,
    };
    let counter = |limit: &Limit| Counter {
        window_start: limit.window.start(now),
        used: if limit.unit == Unit::MicroUsd {
            499_809_999
        } else {
            0
        },
    };
    let found = exceeded(&budget, now, reserve, counter).unwrap();
    assert_eq!(found.limit.config_key(), "usd_per_month");
    assert_eq!(
        found.message("team-a"),
        "consumer \"team-a\" has used $499.80 of its $500.00 per month (UTC); this request may \
         cost up to $0.42; retry after 1234 s"
    );
}

#[test]
fn keys_name_unit_window_and_consumer() {
    assert_eq!(
        shared_key("team-a", Window::Hour),
        "posturio.budget.hour.team-a"
    );
    assert_eq!(
        tokens(Window::Month, 1).shared_key("team-a"),
        "posturio.budget.month.team-a"
    );
    assert_eq!(
        usd(Window::Month, 1).shared_key("team-a"),
        "posturio.budget.usd.month.team-a"
    );
    assert_eq!(
        usd(Window::Day, 1).shared_key("team-a"),
        "posturio.budget.usd.day.team-a"
    );
}
