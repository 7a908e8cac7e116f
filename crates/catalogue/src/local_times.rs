//! The one rule for showing an instant to an operator: local time in a named zone, the date only
//! when it is not today there.

use doorsync_proto::Timestamp;
use jiff::civil::{Date, Weekday};
use jiff::tz::{TimeZone, TimeZoneDatabase};

const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/// The zone of IANA name `name` from the bundled tz database (the one the fold uses, so every
/// machine shows the same local times); `None` for a name it does not have.
pub fn zone_named(name: &str) -> Option<TimeZone> {
    TimeZoneDatabase::bundled().get(name).ok()
}

/// Shows instants and windows in one time zone, as seen on one day ("today" is the day of the
/// instant it was made for, in that zone): `13:15`, `Mon 7 Dec 13:15` on another day,
/// `Mon 7 Dec 2027 13:15` in another year; seconds only when there are some; a time the clocks
/// show twice (when summer time ends) followed by its abbreviation (`01:30 BST`, `01:30 GMT`).
/// An instant beyond what the calendar can show is printed in UTC (RFC 3339).
#[derive(Debug, Clone)]
pub struct LocalTimes {
    zone: TimeZone,
    today: Option<Date>,
}

impl LocalTimes {
    /// Times in `zone`, with `now` deciding which day is today.
    pub fn new(zone: TimeZone, now: Timestamp) -> Self {
        let today = instant(now).map(|now| now.to_zoned_datetime(zone.clone()).date());
        Self { zone, today }
    }

    pub fn zone(&self) -> &TimeZone {
        &self.zone
    }

    /// The zone's IANA name (`Europe/London`); `UTC` for UTC.
    pub fn zone_name(&self) -> &str {
        self.zone.iana_name().unwrap_or("UTC")
    }

    /// The local time of `at`, without the zone: "13:15", or "Mon 7 Dec 13:15" on another day.
    pub fn time(&self, at: Timestamp) -> String {
        match instant(at) {
            Some(at) => self.show(at, self.today),
            None => at.to_string(),
        }
    }

    /// The local time of `at` and the zone named: "13:15 Europe/London".
    pub fn instant(&self, at: Timestamp) -> String {
        match instant(at) {
            Some(local) => format!("{} {}", self.show(local, self.today), self.zone_name()),
            None => at.to_string(),
        }
    }

    /// A window, the zone named once: "13:15–14:45 Europe/London"; "13:15 – Tue 8 Dec 09:00
    /// Europe/London" when it ends on another day; "from 13:15 Europe/London, no end", "until
    /// 14:45 Europe/London" or "always" when a side is open.
    pub fn window(&self, from: Option<Timestamp>, until: Option<Timestamp>) -> String {
        let zone = self.zone_name();
        match (from, until) {
            (Some(from), Some(until)) => match (instant(from), instant(until)) {
                (Some(start), Some(end)) => {
                    let start_day = start.to_zoned_datetime(self.zone.clone()).date();
                    let (start_text, end_text) = (self.show(start, self.today), self.show(end, Some(start_day)));
                    let separator = if end_text.contains(' ') || start_text.contains(' ') { " – " } else { "–" };
                    format!("{start_text}{separator}{end_text} {zone}")
                }
                _ => format!("{from} to {until}"),
            },
            (Some(from), None) => format!("from {}, no end", self.instant(from)),
            (None, Some(until)) => format!("until {}", self.instant(until)),
            (None, None) => "always".to_owned(),
        }
    }

    /// The hour and minute of `at`, "14:00", never the day: a timeline's tick.
    pub fn clock_face(&self, at: Timestamp) -> String {
        match instant(at) {
            Some(at) => {
                let local = at.to_zoned_datetime(self.zone.clone());
                format!("{:02}:{:02}", local.hour(), local.minute())
            }
            None => at.to_string(),
        }
    }

    /// The day of `at`, "Wed 2 Dec": a timeline's midnight.
    pub fn day_face(&self, at: Timestamp) -> String {
        match instant(at) {
            Some(at) => {
                let date = at.to_zoned_datetime(self.zone.clone()).date();
                format!("{} {} {}", weekday(date.weekday()), date.day(), month(date.month()))
            }
            None => at.to_string(),
        }
    }

    /// How far the zone is ahead of UTC at `at`, in milliseconds: where its hours start.
    pub fn offset_millis(&self, at: Timestamp) -> i64 {
        instant(at).map_or(0, |at| i64::from(self.zone.to_offset(at).seconds()) * 1_000)
    }

    /// `at` in the zone, with its date unless it falls on `day`.
    fn show(&self, at: jiff::Timestamp, day: Option<Date>) -> String {
        let local = at.to_zoned_datetime(self.zone.clone());
        let mut text = String::new();
        let date = local.date();
        if Some(date) != day {
            text.push_str(&format!("{} {} {}", weekday(date.weekday()), date.day(), month(date.month())));
            if day.is_none_or(|day| day.year() != date.year()) {
                text.push_str(&format!(" {}", date.year()));
            }
            text.push(' ');
        }
        text.push_str(&format!("{:02}:{:02}", local.hour(), local.minute()));
        if local.second() != 0 {
            text.push_str(&format!(":{:02}", local.second()));
        }
        if self.zone.to_ambiguous_zoned_datetime(local.datetime()).is_ambiguous() {
            text.push(' ');
            text.push_str(self.zone.to_offset_info(at).abbreviation());
        }
        text
    }
}

fn instant(at: Timestamp) -> Option<jiff::Timestamp> {
    jiff::Timestamp::from_millisecond(at.as_unix_millis()).ok()
}

fn weekday(weekday: Weekday) -> &'static str {
    match weekday {
        Weekday::Monday => "Mon",
        Weekday::Tuesday => "Tue",
        Weekday::Wednesday => "Wed",
        Weekday::Thursday => "Thu",
        Weekday::Friday => "Fri",
        Weekday::Saturday => "Sat",
        Weekday::Sunday => "Sun",
    }
}

fn month(month: i8) -> &'static str {
    usize::try_from(month - 1).ok().and_then(|index| MONTHS.get(index)).copied().unwrap_or("?")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use proptest::prelude::*;

    use super::*;

    fn at(text: &str) -> Timestamp {
        let instant: jiff::Timestamp = text.parse().unwrap();
        Timestamp::from_unix_millis(instant.as_millisecond())
    }

    fn times(zone: &str, now: &str) -> LocalTimes {
        LocalTimes::new(zone_named(zone).unwrap(), at(now))
    }

    #[test]
    fn a_timeline_reads_hours_days_and_where_its_hours_start_in_the_zone() {
        let kolkata = times("Asia/Kolkata", "2026-12-02T09:00:00Z");
        assert_eq!(kolkata.clock_face(at("2026-12-02T09:15:30Z")), "14:45", "no day, no seconds");
        assert_eq!(kolkata.day_face(at("2026-12-02T19:00:00Z")), "Thu 3 Dec", "past midnight there");
        assert_eq!(kolkata.offset_millis(at("2026-12-02T09:00:00Z")), 19_800_000);
        let london = times("Europe/London", "2026-07-01T09:00:00Z");
        assert_eq!(london.offset_millis(at("2026-07-01T09:00:00Z")), 3_600_000, "summer time");
        assert_eq!(london.offset_millis(at("2026-12-01T09:00:00Z")), 0);
    }

    #[test]
    fn a_window_today_is_two_times_and_the_zone_named_once() {
        let london = times("Europe/London", "2026-07-06T08:00:00Z");
        let window = london.window(Some(at("2026-07-06T12:15:00Z")), Some(at("2026-07-06T13:45:00Z")));
        assert_eq!(window, "13:15–14:45 Europe/London");
        assert_eq!(london.instant(at("2026-07-06T12:15:30Z")), "13:15:30 Europe/London");
        assert_eq!(london.time(at("2026-07-06T12:15:00Z")), "13:15");
    }

    #[test]
    fn another_day_shows_its_date_and_another_year_its_year() {
        let london = times("Europe/London", "2026-12-07T08:00:00Z");
        let tomorrow = london.window(Some(at("2026-12-08T13:15:00Z")), Some(at("2026-12-08T14:45:00Z")));
        assert_eq!(tomorrow, "Tue 8 Dec 13:15 – 14:45 Europe/London");
        let overnight = london.window(Some(at("2026-12-07T22:00:00Z")), Some(at("2026-12-08T09:00:00Z")));
        assert_eq!(overnight, "22:00 – Tue 8 Dec 09:00 Europe/London");
        assert_eq!(london.instant(at("2027-01-07T09:00:00Z")), "Thu 7 Jan 2027 09:00 Europe/London");
        assert_eq!(london.window(Some(at("2026-12-07T22:00:00Z")), None), "from 22:00 Europe/London, no end");
        assert_eq!(london.window(None, Some(at("2026-12-07T22:00:00Z"))), "until 22:00 Europe/London");
        assert_eq!(london.window(None, None), "always");
    }

    #[test]
    fn today_is_the_day_in_the_zone_shown() {
        let now = "2026-12-07T23:00:00Z";
        let lunch_in_auckland = at("2026-12-07T23:30:00Z");
        assert_eq!(times("Pacific/Auckland", now).instant(lunch_in_auckland), "12:30 Pacific/Auckland");
        assert_eq!(times("Europe/London", now).instant(lunch_in_auckland), "23:30 Europe/London");
        assert_eq!(times("America/New_York", now).instant(at("2026-12-08T01:00:00Z")), "20:00 America/New_York");
        assert_eq!(times("Europe/London", now).instant(at("2026-12-08T01:00:00Z")), "Tue 8 Dec 01:00 Europe/London");
        assert_eq!(LocalTimes::new(TimeZone::UTC, at(now)).instant(at(now)), "23:00 UTC");
    }

    #[test]
    fn summer_time_changes_show_the_clocks_and_name_the_hour_shown_twice() {
        // Clocks in London went forward at 01:00 UTC on 29 March 2026 and back at 01:00 UTC on
        // 25 October 2026.
        let spring = times("Europe/London", "2026-03-29T00:00:00Z");
        let window = spring.window(Some(at("2026-03-29T00:30:00Z")), Some(at("2026-03-29T01:30:00Z")));
        assert_eq!(window, "00:30–02:30 Europe/London", "one hour long");
        let autumn = times("Europe/London", "2026-10-25T00:00:00Z");
        let window = autumn.window(Some(at("2026-10-25T00:30:00Z")), Some(at("2026-10-25T01:30:00Z")));
        assert_eq!(window, "01:30 BST – 01:30 GMT Europe/London", "one hour long, the same clock time twice");
        let new_york = times("America/New_York", "2026-11-01T04:00:00Z");
        assert_eq!(new_york.instant(at("2026-11-01T12:00:00Z")), "07:00 America/New_York");
    }

    #[test]
    fn an_instant_the_calendar_cannot_show_is_printed_in_utc() {
        let london = times("Europe/London", "2026-07-06T08:00:00Z");
        let end_of_time = Timestamp::from_unix_millis(i64::MAX);
        assert_eq!(london.instant(end_of_time), end_of_time.to_string());
        assert_eq!(
            london.window(Some(at("2026-07-06T08:00:00Z")), Some(end_of_time)),
            format!("2026-07-06T08:00:00.000Z to {end_of_time}")
        );
    }

    const ZONES: [&str; 6] =
        ["Europe/London", "America/New_York", "Pacific/Auckland", "Asia/Kolkata", "Australia/Lord_Howe", "UTC"];
    /// 1990 to 2060, in milliseconds.
    const SPAN: std::ops::Range<i64> = 631_152_000_000..2_871_763_200_000;

    proptest! {
        #[test]
        fn a_window_shows_the_local_clock_at_each_end_and_a_date_only_where_the_day_changes(
            zone in prop::sample::select(&ZONES[..]),
            now in SPAN,
            from in SPAN,
            length in 0_i64..(3 * 24 * 3_600_000),
        ) {
            let tz = zone_named(zone).unwrap();
            let local_times = LocalTimes::new(tz.clone(), Timestamp::from_unix_millis(now));
            let (start, end) = (Timestamp::from_unix_millis(from), Timestamp::from_unix_millis(from + length));
            let local = |at: Timestamp| instant(at).unwrap().to_zoned_datetime(tz.clone());
            let (start_local, end_local) = (local(start), local(end));
            let today = local(Timestamp::from_unix_millis(now)).date();
            let clock = |at: &jiff::ZonedDateTime| format!("{:02}:{:02}", at.hour(), at.minute());
            let dated = |text: &str, at: &jiff::ZonedDateTime| {
                text.contains(&format!("{} {} ", at.date().day(), month(at.date().month())))
            };

            let text = local_times.window(Some(start), Some(end));
            let zone_suffix = format!(" {}", local_times.zone_name());
            let Some(shown) = text.strip_suffix(&zone_suffix) else { panic!("{text}: the zone is not named last") };
            let start_text = local_times.time(start);
            let Some(end_text) = shown.strip_prefix(&start_text) else { panic!("{text}: does not start at the start") };
            prop_assert!(start_text.contains(&clock(&start_local)), "{}", text);
            prop_assert_eq!(dated(&start_text, &start_local), start_local.date() != today, "{}", text);
            prop_assert!(end_text.contains(&clock(&end_local)), "{}", text);
            prop_assert_eq!(dated(end_text, &end_local), end_local.date() != start_local.date(), "{}", text);
        }
    }
}
