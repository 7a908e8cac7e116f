//! Points in time and calendar dates as they travel on the wire.
//!
//! The crate deliberately has no time library: messages only need to carry instants and dates
//! faithfully, and the fold that interprets them reads time as an input. Time zone arithmetic
//! (turning a day pass's date into a window) belongs to the fold (`doorsync-access`).

use std::fmt;
use std::ops::{Add, Sub};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

const MILLIS_PER_SECOND: i64 = 1_000;
const MILLIS_PER_DAY: i64 = 86_400 * MILLIS_PER_SECOND;

/// An instant, as milliseconds since the Unix epoch (UTC).
///
/// Milliseconds are finer than either Nexudus or Kisi timestamps need, and an integer keeps the
/// fold's arithmetic exact and its replays bit-for-bit reproducible.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(i64);

impl Timestamp {
    /// The instant `millis` milliseconds after 1970-01-01T00:00:00Z (before it, if negative).
    pub const fn from_unix_millis(millis: i64) -> Self {
        Self(millis)
    }

    /// Milliseconds since 1970-01-01T00:00:00Z.
    pub const fn as_unix_millis(self) -> i64 {
        self.0
    }

    /// The instant `duration` later, or the last representable instant: a deadline past the end
    /// of time is a deadline that never comes, which is what every caller means by it.
    pub fn saturating_add(self, duration: Duration) -> Self {
        Self(self.0.saturating_add(millis_of(duration)))
    }

    /// The instant `duration` earlier, or the first representable instant.
    pub fn saturating_sub(self, duration: Duration) -> Self {
        Self(self.0.saturating_sub(millis_of(duration)))
    }

    /// How long after `earlier` this is; zero when it is not after it.
    pub fn saturating_duration_since(self, earlier: Timestamp) -> Duration {
        Duration::from_millis(u64::try_from(self.0.saturating_sub(earlier.0)).unwrap_or(0))
    }
}

/// Whole milliseconds of `duration` (the wire's resolution), `i64::MAX` beyond it.
fn millis_of(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// `at + duration`, saturating at the end of time (see [`Timestamp::saturating_add`]).
impl Add<Duration> for Timestamp {
    type Output = Timestamp;

    fn add(self, duration: Duration) -> Timestamp {
        self.saturating_add(duration)
    }
}

/// `at - duration`, saturating at the start of time.
impl Sub<Duration> for Timestamp {
    type Output = Timestamp;

    fn sub(self, duration: Duration) -> Timestamp {
        self.saturating_sub(duration)
    }
}

/// RFC 3339 in UTC with milliseconds, e.g. `2024-05-01T09:30:00.000Z`.
///
/// Years outside 0000–9999, which RFC 3339 cannot express, are printed with as many digits as
/// they need rather than failing, because Display must not fail.
impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let days = self.0.div_euclid(MILLIS_PER_DAY);
        let millis_of_day = self.0.rem_euclid(MILLIS_PER_DAY);
        let (year, month, day) = civil_from_days(days);
        let seconds_of_day = millis_of_day / MILLIS_PER_SECOND;
        write!(
            f,
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
            seconds_of_day / 3_600,
            seconds_of_day / 60 % 60,
            seconds_of_day % 60,
            millis_of_day % MILLIS_PER_SECOND,
        )
    }
}

/// The proleptic Gregorian date `days` days after 1970-01-01, as (year, month, day).
///
/// Howard Hinnant's `civil_from_days`: exact for every `i64` day count a `Timestamp` can produce,
/// with no tables and no overflow.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    // Shift the epoch to 0000-03-01 so leap days fall at the end of each 400-year era.
    let shifted = days + 719_468;
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted - era * 146_097;
    let year_of_era = (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 { month_from_march + 3 } else { month_from_march - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// A calendar date without a time zone, such as the day a day pass is valid for.
///
/// On the wire it is the string `YYYY-MM-DD`, checked when decoded, so every `CivilDate` in a
/// decoded message is a real date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CivilDate {
    year: i16,
    month: u8,
    day: u8,
}

/// Why a date was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CivilDateError {
    /// The text is not ten characters of the form `YYYY-MM-DD`.
    #[error("{0:?} is not a date of the form YYYY-MM-DD")]
    NotIsoFormat(String),
    /// The parts do not name a day between 0000-01-01 and 9999-12-31 (e.g. February 30th).
    #[error("year {year}, month {month}, day {day} is not a date between 0000-01-01 and 9999-12-31")]
    NoSuchDay { year: i16, month: u8, day: u8 },
}

impl CivilDate {
    /// The date `year-month-day` (month and day counted from 1), if it exists and its year fits
    /// the four digits of `YYYY-MM-DD`.
    pub fn new(year: i16, month: u8, day: u8) -> Result<Self, CivilDateError> {
        let exists =
            (0..=9999).contains(&year) && (1..=12).contains(&month) && day >= 1 && day <= days_in_month(year, month);
        if exists { Ok(Self { year, month, day }) } else { Err(CivilDateError::NoSuchDay { year, month, day }) }
    }

    pub const fn year(self) -> i16 {
        self.year
    }

    /// The month, 1 for January to 12 for December.
    pub const fn month(self) -> u8 {
        self.month
    }

    /// The day of the month, from 1.
    pub const fn day(self) -> u8 {
        self.day
    }
}

fn days_in_month(year: i16, month: u8) -> u8 {
    match month {
        2 if is_leap_year(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

fn is_leap_year(year: i16) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

impl fmt::Display for CivilDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

impl FromStr for CivilDate {
    type Err = CivilDateError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let not_iso = || CivilDateError::NotIsoFormat(text.to_owned());
        // Parsed by hand because `str::parse` would also accept signs such as "+5".
        let digits = |range: std::ops::Range<usize>| -> Option<u16> {
            let part = text.as_bytes().get(range)?;
            part.iter()
                .try_fold(0_u16, |value, &byte| byte.is_ascii_digit().then(|| value * 10 + u16::from(byte - b'0')))
        };
        let bytes = text.as_bytes();
        if bytes.len() != 10 || bytes[4] != b'-' || bytes[7] != b'-' {
            return Err(not_iso());
        }
        let (Some(year), Some(month), Some(day)) = (digits(0..4), digits(5..7), digits(8..10)) else {
            return Err(not_iso());
        };
        // Four digits fit an i16 and two fit a u8, so these conversions cannot fail.
        let year = i16::try_from(year).map_err(|_| not_iso())?;
        let month = u8::try_from(month).map_err(|_| not_iso())?;
        let day = u8::try_from(day).map_err(|_| not_iso())?;
        Self::new(year, month, day)
    }
}

impl Serialize for CivilDate {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for CivilDate {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_display_as_rfc3339_utc() {
        let cases = [
            (0, "1970-01-01T00:00:00.000Z"),
            (-1, "1969-12-31T23:59:59.999Z"),
            (951_782_400_000, "2000-02-29T00:00:00.000Z"),
            (1_700_000_000_123, "2023-11-14T22:13:20.123Z"),
            (253_402_300_799_999, "9999-12-31T23:59:59.999Z"),
            (-62_167_219_200_000, "0000-01-01T00:00:00.000Z"),
        ];
        for (millis, expected) in cases {
            assert_eq!(Timestamp::from_unix_millis(millis).to_string(), expected);
        }
    }

    #[test]
    fn extreme_timestamps_display_without_panicking() {
        for millis in [i64::MIN, i64::MAX] {
            assert!(!Timestamp::from_unix_millis(millis).to_string().is_empty());
        }
    }

    #[test]
    fn durations_move_a_timestamp_and_stop_at_the_ends_of_time() {
        let at = Timestamp::from_unix_millis(1_000);
        assert_eq!(at + Duration::from_millis(1_500), Timestamp::from_unix_millis(2_500));
        assert_eq!(at - Duration::from_secs(2), Timestamp::from_unix_millis(-1_000));
        assert_eq!(
            Timestamp::from_unix_millis(i64::MAX - 1) + Duration::from_secs(1),
            Timestamp::from_unix_millis(i64::MAX)
        );
        assert_eq!(at + Duration::MAX, Timestamp::from_unix_millis(i64::MAX));
        assert_eq!(
            Timestamp::from_unix_millis(i64::MIN + 1) - Duration::from_secs(1),
            Timestamp::from_unix_millis(i64::MIN)
        );
        assert_eq!(
            at + Duration::from_micros(1_999),
            Timestamp::from_unix_millis(1_001),
            "the wire keeps whole milliseconds"
        );
        assert_eq!((at + Duration::from_secs(3)).saturating_duration_since(at), Duration::from_secs(3));
        assert_eq!(at.saturating_duration_since(at + Duration::from_secs(3)), Duration::ZERO);
    }

    proptest::proptest! {
        #[test]
        fn adding_then_subtracting_a_duration_is_the_identity_short_of_the_ends(
            millis in -1_000_000_000_000_000i64..1_000_000_000_000_000,
            by in 0u64..1_000_000_000_000,
        ) {
            let at = Timestamp::from_unix_millis(millis);
            let duration = Duration::from_millis(by);
            proptest::prop_assert_eq!((at + duration) - duration, at);
            proptest::prop_assert_eq!((at + duration).saturating_duration_since(at), duration);
            proptest::prop_assert!(at + duration >= at);
        }
    }

    #[test]
    fn timestamps_order_by_instant() {
        assert!(Timestamp::from_unix_millis(-5) < Timestamp::from_unix_millis(3));
        assert_eq!(Timestamp::from_unix_millis(42).as_unix_millis(), 42);
    }

    #[test]
    fn civil_dates_round_trip_through_their_text_form() -> Result<(), CivilDateError> {
        for text in ["2024-02-29", "0000-01-01", "9999-12-31", "2023-07-04"] {
            assert_eq!(text.parse::<CivilDate>()?.to_string(), text);
        }
        Ok(())
    }

    #[test]
    fn civil_dates_reject_days_that_do_not_exist() {
        for text in ["2023-02-29", "1900-02-29", "2024-13-01", "2024-00-10", "2024-04-31", "2024-01-00"] {
            assert!(matches!(text.parse::<CivilDate>(), Err(CivilDateError::NoSuchDay { .. })), "{text}");
        }
        assert!(CivilDate::new(-1, 1, 1).is_err());
        assert!(CivilDate::new(10_000, 1, 1).is_err());
    }

    #[test]
    fn civil_dates_reject_other_spellings() {
        for text in ["2024-2-29", "+024-02-29", "2024/02/29", "2024-02-29T00:00", "", "२०२४-०२-२९", "2024-+2-09"]
        {
            assert!(matches!(text.parse::<CivilDate>(), Err(CivilDateError::NotIsoFormat(_))), "{text}");
        }
    }

    #[test]
    fn civil_dates_are_checked_when_decoded() -> Result<(), Box<dyn std::error::Error>> {
        let date = CivilDate::new(2024, 5, 17)?;
        let encoded = rmp_serde::to_vec_named(&date)?;
        assert_eq!(encoded, rmp_serde::to_vec_named("2024-05-17")?);
        assert_eq!(rmp_serde::from_slice::<CivilDate>(&encoded)?, date);

        let impossible = rmp_serde::to_vec_named("2024-02-30")?;
        assert!(rmp_serde::from_slice::<CivilDate>(&impossible).is_err());
        Ok(())
    }
}
