//! RFC 3339 date-times, strictly: `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`, read into Unix
//! seconds and written back in UTC. Runs when a policy is loaded (API key expiry) and when a
//! refusal names an expiry, never on a request's hot path.
//!
//! Strict on purpose: an expiry a security team wrote must mean one instant. No lowercase
//! `t`/`z`, no space for `T`, no missing seconds, no leap second (`:60`), no `-00:00`
//! ambiguity beyond what RFC 3339 itself defines (it is read as UTC). Fractions of a second
//! are dropped: a key expires up to a second early, never late.

/// Days from 0000-03-01 to 1970-01-01 in the proleptic Gregorian calendar, for
/// `days_from_civil`.
const DAYS_FROM_YEAR_ZERO_TO_EPOCH: i64 = 719_468;

/// The Unix time (seconds) of an RFC 3339 date-time, or why it is not one.
// Every number is read from at most four digits, so no sum or product below can overflow.
#[allow(clippy::arithmetic_side_effects)]
pub fn parse(text: &str) -> Result<i64, &'static str> {
    let bytes = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = bytes.get(range)?;
        part.iter().try_fold(0i64, |value, &b| {
            b.is_ascii_digit()
                .then(|| value.checked_mul(10)?.checked_add(i64::from(b - b'0')))
                .flatten()
        })
    };
    let at = |index: usize, expected: u8| bytes.get(index) == Some(&expected);
    const SHAPE: &str = "must be an RFC 3339 date-time such as 2027-01-31T00:00:00Z \
                         (YYYY-MM-DDTHH:MM:SS, an optional fraction, then Z or +HH:MM/-HH:MM)";
    let (Some(year), Some(month), Some(day), Some(hour), Some(minute), Some(second)) = (
        digits(0..4),
        digits(5..7),
        digits(8..10),
        digits(11..13),
        digits(14..16),
        digits(17..19),
    ) else {
        return Err(SHAPE);
    };
    if !(at(4, b'-') && at(7, b'-') && at(10, b'T') && at(13, b':') && at(16, b':')) {
        return Err(SHAPE);
    }
    let mut rest = bytes.get(19..).unwrap_or_default();
    if let Some((b'.', fraction)) = rest.split_first() {
        let count = fraction.iter().take_while(|b| b.is_ascii_digit()).count();
        if count == 0 {
            return Err(SHAPE);
        }
        rest = fraction.get(count..).unwrap_or_default();
    }
    let offset_seconds = match rest {
        [b'Z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let two = |a: u8, b: u8| {
                (a.is_ascii_digit() && b.is_ascii_digit())
                    .then(|| i64::from(a - b'0') * 10 + i64::from(b - b'0'))
            };
            let (Some(hours), Some(minutes)) = (two(*h1, *h2), two(*m1, *m2)) else {
                return Err(SHAPE);
            };
            if hours > 23 || minutes > 59 {
                return Err("has an offset out of range: hours 00-23, minutes 00-59");
            }
            let magnitude = hours * 3600 + minutes * 60;
            if *sign == b'-' {
                -magnitude
            } else {
                magnitude
            }
        }
        _ => return Err(SHAPE),
    };
    if !(1..=12).contains(&month) {
        return Err("has no such month: months are 01-12");
    }
    if day < 1 || day > days_in_month(year, month) {
        return Err("has no such day in that month");
    }
    if hour > 23 || minute > 59 || second > 59 {
        return Err("has a time out of range: 00:00:00-23:59:59 (no leap second)");
    }
    let days = days_from_civil(year, month, day);
    Ok(days * 86_400 + hour * 3600 + minute * 60 + second - offset_seconds)
}

/// A Unix time in RFC 3339, UTC, to the second: `2027-01-31T00:00:00Z`.
#[allow(clippy::arithmetic_side_effects)] // remainders of a day: small and positive
pub fn format(unix_seconds: i64) -> String {
    let days = unix_seconds.div_euclid(86_400);
    let seconds = unix_seconds.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        seconds / 3600,
        seconds % 3600 / 60,
        seconds % 60
    )
}

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

// The two conversions below are Howard Hinnant's `days_from_civil` and `civil_from_days`
// (public domain algorithms), over years 0000-9999 only, so no step can overflow.
#[allow(clippy::arithmetic_side_effects)]
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year.rem_euclid(400);
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - DAYS_FROM_YEAR_ZERO_TO_EPOCH
}

#[allow(clippy::arithmetic_side_effects)]
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let days = days.saturating_add(DAYS_FROM_YEAR_ZERO_TO_EPOCH);
    let era = days.div_euclid(146_097);
    let day_of_era = days.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_date_times() {
        for (text, unix) in [
            ("1970-01-01T00:00:00Z", 0),
            ("2027-01-31T00:00:00Z", 1_801_353_600),
            ("2000-02-29T12:00:00Z", 951_825_600), // 2000 is a leap year
            ("2024-02-29T23:59:59Z", 1_709_251_199), // so is 2024
            ("2027-01-31T01:00:00+01:00", 1_801_353_600),
            ("2027-01-30T19:30:00-04:30", 1_801_353_600),
            ("2027-01-31T00:00:00.999999Z", 1_801_353_600), // fraction dropped
            ("2027-01-31T00:00:00.5+00:00", 1_801_353_600),
            ("1969-12-31T23:59:59Z", -1),
            ("9999-12-31T23:59:59Z", 253_402_300_799),
            ("0000-01-01T00:00:00Z", -62_167_219_200),
        ] {
            assert_eq!(parse(text), Ok(unix), "{text}");
        }
    }

    #[test]
    fn invalid_date_times() {
        for text in [
            "",
            "2027-01-31",
            "2027-01-31T00:00Z",
            "2027-01-31T00:00:00",
            "2027-01-31t00:00:00Z",
            "2027-01-31 00:00:00Z",
            "2027-01-31T00:00:00z",
            "2027-01-31T00:00:00.Z",
            "2027-01-31T00:00:00+0100",
            "2027-01-31T00:00:00+01",
            "2027-01-31T00:00:00+24:00",
            "2027-01-31T00:00:00+01:60",
            "2027-1-31T00:00:00Z",
            "+2027-01-31T00:00:00Z",
            "2027-02-30T00:00:00Z", // no February 30
            "2023-02-29T00:00:00Z", // 2023 is no leap year
            "1900-02-29T00:00:00Z", // nor is 1900
            "2027-04-31T00:00:00Z",
            "2027-13-01T00:00:00Z",
            "2027-00-01T00:00:00Z",
            "2027-01-00T00:00:00Z",
            "2027-01-31T24:00:00Z",
            "2027-01-31T23:60:00Z",
            "2027-12-31T23:59:60Z", // no leap second
            "2027-01-31T00:00:00Z ",
            "２027-01-31T00:00:00Z",
        ] {
            assert!(parse(text).is_err(), "{text}");
        }
    }

    #[test]
    fn formats_back_in_utc() {
        for text in [
            "1970-01-01T00:00:00Z",
            "2000-02-29T12:00:00Z",
            "2027-01-31T00:00:00Z",
            "1969-12-31T23:59:59Z",
            "9999-12-31T23:59:59Z",
        ] {
            assert_eq!(format(parse(text).unwrap()), text);
        }
        assert_eq!(
            format(parse("2027-01-31T01:00:00+01:00").unwrap()),
            "2027-01-31T00:00:00Z"
        );
    }
}
