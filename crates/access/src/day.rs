//! Turning a day pass's calendar date into the instants it is valid between.

use doorsync_proto::{CivilDate, Timestamp};
use jiff::civil::{Date, Time};
use jiff::tz::{AmbiguousOffset, TimeZone, TimeZoneDatabase};
use serde::{Deserialize, Serialize};

/// The instants a day pass's date covers in its time zone, or why they could not be known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DaySpan {
    /// From the first instant of the date to the first instant of the next date, in the zone.
    /// That is 24 hours on most days, 23 or 25 on days when the clocks change, and need not
    /// start at midnight where a change happens at midnight.
    Resolved { start: Timestamp, end: Timestamp },
    /// The zone is not in doorsync's bundled tz database, so the pass grants nothing.
    UnknownTimeZone,
    /// The date is at the edge of what the tz arithmetic can represent (9999-12-31), so the pass
    /// grants nothing.
    OutsideSupportedRange,
}

/// The span of `date` in the IANA zone `time_zone`.
///
/// Only the tz database compiled into this binary is consulted, never the host's
/// `/usr/share/zoneinfo`: replaying the same events must give the same spans on every machine.
pub fn day_span(date: CivilDate, time_zone: &str) -> DaySpan {
    let Ok(zone) = TimeZoneDatabase::bundled().get(time_zone) else {
        return DaySpan::UnknownTimeZone;
    };
    match resolve(date, &zone) {
        Some((start, end)) => DaySpan::Resolved { start, end },
        None => DaySpan::OutsideSupportedRange,
    }
}

fn resolve(date: CivilDate, zone: &TimeZone) -> Option<(Timestamp, Timestamp)> {
    let date = to_jiff(date)?;
    let start = first_instant(date, zone)?;
    let end = first_instant(date.tomorrow().ok()?, zone)?;
    Some((Timestamp::from_unix_millis(start.as_millisecond()), Timestamp::from_unix_millis(end.as_millisecond())))
}

/// The first instant whose wall-clock date in `zone` is `date`.
fn first_instant(date: Date, zone: &TimeZone) -> Option<jiff::Timestamp> {
    let midnight = zone.to_ambiguous_timestamp(date.to_datetime(Time::midnight()));
    match midnight.offset() {
        // The clocks jumped over midnight, so the day began at the jump. (Jiff's usual
        // "compatible" reading of a skipped time lands at the jump only when the jump starts
        // exactly at midnight; this is right wherever it starts.)
        AmbiguousOffset::Gap { .. } => {
            let before_jump = midnight.earlier().ok()?;
            zone.following(before_jump).next().map(|jump| jump.timestamp())
        }
        // A midnight shown twice (the clocks went back over it) begins the day at its first showing.
        AmbiguousOffset::Unambiguous { .. } | AmbiguousOffset::Fold { .. } => midnight.earlier().ok(),
    }
}

/// An instant by which `date` is over in every time zone: the start of the day after next in UTC
/// (no zone is a whole day away from UTC). `None` at the edge of the supported range.
pub(crate) fn latest_possible_end(date: CivilDate) -> Option<Timestamp> {
    let after_next = to_jiff(date)?.tomorrow().ok()?.tomorrow().ok()?;
    let instant = after_next.to_zoned_datetime(TimeZone::UTC).ok()?.timestamp();
    Some(Timestamp::from_unix_millis(instant.as_millisecond()))
}

fn to_jiff(date: CivilDate) -> Option<Date> {
    Date::new(date.year(), i8::try_from(date.month()).ok()?, i8::try_from(date.day()).ok()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(text: &str) -> CivilDate {
        text.parse().unwrap()
    }

    fn instant(text: &str) -> Timestamp {
        Timestamp::from_unix_millis(text.parse::<jiff::Timestamp>().unwrap().as_millisecond())
    }

    fn resolved(start: &str, end: &str) -> DaySpan {
        DaySpan::Resolved { start: instant(start), end: instant(end) }
    }

    const HOUR_MS: i64 = 3_600_000;

    fn hours(span: DaySpan) -> i64 {
        match span {
            DaySpan::Resolved { start, end } => (end.as_unix_millis() - start.as_unix_millis()) / HOUR_MS,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_summer_day_in_london_runs_midnight_to_midnight_british_summer_time() {
        let span = day_span(date("2024-07-10"), "Europe/London");
        assert_eq!(span, resolved("2024-07-09T23:00:00Z", "2024-07-10T23:00:00Z"));
    }

    #[test]
    fn the_spring_forward_day_in_london_is_23_hours_long() {
        let span = day_span(date("2024-03-31"), "Europe/London");
        assert_eq!(span, resolved("2024-03-31T00:00:00Z", "2024-03-31T23:00:00Z"));
        assert_eq!(hours(span), 23);
    }

    #[test]
    fn the_fall_back_day_in_london_is_25_hours_long() {
        let span = day_span(date("2024-10-27"), "Europe/London");
        assert_eq!(span, resolved("2024-10-26T23:00:00Z", "2024-10-28T00:00:00Z"));
        assert_eq!(hours(span), 25);
    }

    #[test]
    fn a_day_whose_midnight_was_skipped_starts_when_the_clocks_jumped() {
        // São Paulo began summer time at midnight on 2015-10-18: 00:00 became 01:00 (-02:00).
        let span = day_span(date("2015-10-18"), "America/Sao_Paulo");
        assert_eq!(span, resolved("2015-10-18T03:00:00Z", "2015-10-19T02:00:00Z"));
        assert_eq!(hours(span), 23);
    }

    #[test]
    fn a_day_ending_in_a_repeated_hour_before_midnight_is_25_hours_long() {
        // São Paulo ended summer time at midnight on 2016-02-21: the clocks went from 00:00 (-02:00)
        // back to 23:00 (-03:00) on the 20th, which so had 25 hours.
        let span = day_span(date("2016-02-20"), "America/Sao_Paulo");
        assert_eq!(span, resolved("2016-02-20T02:00:00Z", "2016-02-21T03:00:00Z"));
        assert_eq!(hours(span), 25);
    }

    #[test]
    fn a_day_whose_clocks_jumped_across_midnight_starts_at_the_jump() {
        // Toronto began summer time in 1919 by jumping from 23:30 (-05:00) to 00:30 (-04:00), so
        // 1919-03-31 began at 00:30 local: not at midnight, and not at the 01:00 that reading the
        // skipped midnight with the old offset would give.
        let span = day_span(date("1919-03-31"), "America/Toronto");
        let DaySpan::Resolved { start, .. } = span else { panic!("{span:?}") };
        assert_eq!(start, instant("1919-03-31T04:30:00Z"));
    }

    #[test]
    fn a_day_in_a_zone_without_summer_time_is_24_hours() {
        let span = day_span(date("2024-03-31"), "Asia/Kolkata");
        assert_eq!(span, resolved("2024-03-30T18:30:00Z", "2024-03-31T18:30:00Z"));
    }

    #[test]
    fn a_day_that_was_skipped_altogether_is_empty() {
        // Samoa moved across the date line by skipping 2011-12-30.
        let span = day_span(date("2011-12-30"), "Pacific/Apia");
        let DaySpan::Resolved { start, end } = span else { panic!("{span:?}") };
        assert_eq!(start, end);
    }

    #[test]
    fn zones_are_found_regardless_of_case_and_by_their_old_names() {
        assert_eq!(day_span(date("2024-07-10"), "europe/london"), day_span(date("2024-07-10"), "Europe/London"));
        assert_eq!(day_span(date("2024-07-10"), "Asia/Calcutta"), day_span(date("2024-07-10"), "Asia/Kolkata"));
    }

    #[test]
    fn an_unknown_zone_resolves_to_nothing() {
        for zone in ["Mars/Olympus_Mons", "", "GMT Standard Time", "/etc/localtime", "../../etc/passwd"] {
            assert_eq!(day_span(date("2024-07-10"), zone), DaySpan::UnknownTimeZone, "{zone:?}");
        }
    }

    #[test]
    fn the_last_representable_date_is_outside_the_supported_range() {
        assert_eq!(day_span(date("9999-12-31"), "Europe/London"), DaySpan::OutsideSupportedRange);
        assert_eq!(latest_possible_end(date("9999-12-31")), None);
    }

    #[test]
    fn every_day_is_over_everywhere_by_the_start_of_the_day_after_next_in_utc() {
        assert_eq!(latest_possible_end(date("2024-07-10")), Some(instant("2024-07-12T00:00:00Z")));
        for zone in ["Pacific/Kiritimati", "Etc/GMT+12", "Pacific/Pago_Pago"] {
            let DaySpan::Resolved { end, .. } = day_span(date("2024-07-10"), zone) else { panic!("{zone}") };
            assert!(end <= instant("2024-07-12T00:00:00Z"), "{zone}");
        }
    }
}
