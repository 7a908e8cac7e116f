//! How the demo tells times: elapsed since the start, wall clocks in a location's zone, and the
//! windows of access Kisi holds.

use doorsync_proto::Timestamp;
use jiff::tz::TimeZone;

use super::world::Location;

pub(super) const SECOND_MS: i64 = 1_000;
pub(super) const MINUTE_MS: i64 = 60 * SECOND_MS;

/// Prints one line of the story: `+01:05  kisi     Ada L. (member 1042) gets ...`.
pub(super) fn say(started: Timestamp, now: Timestamp, tag: &str, text: &str) {
    println!("  {}  {tag:<8} {text}", elapsed(started, now));
}

/// `+MM:SS` since `started`.
pub(super) fn elapsed(started: Timestamp, now: Timestamp) -> String {
    let seconds = (now.as_unix_millis() - started.as_unix_millis()).max(0) / SECOND_MS;
    format!("+{:02}:{:02}", seconds / 60, seconds % 60)
}

/// Seconds with one decimal: `0.3 s`.
pub(super) fn seconds(millis: i64) -> String {
    format!("{:.1} s", millis as f64 / 1_000.0)
}

/// The wall clock at `at` in `zone`: `14:05` on the day of `now` there, else `Wed 00:00`.
pub(super) fn wall_clock(at: Timestamp, zone: &TimeZone, now: Timestamp) -> String {
    let local = |instant: Timestamp| {
        jiff::Timestamp::from_millisecond(instant.as_unix_millis())
            .ok()
            .map(|instant| instant.to_zoned_datetime(zone.clone()))
    };
    match (local(at), local(now)) {
        (Some(at), Some(now)) if at.date() == now.date() => at.strftime("%H:%M").to_string(),
        (Some(at), _) => at.strftime("%a %H:%M").to_string(),
        (None, _) => at.to_string(),
    }
}

/// An instant on the wall clock of `location` (UTC when unknown): `14:05 Europe/London`.
pub(super) fn at_location(at: Timestamp, location: Option<&Location>, now: Timestamp) -> String {
    match location {
        Some(location) => format!("{} {}", wall_clock(at, &location.zone, now), location.iana_zone),
        None => format!("{} UTC", wall_clock(at, &TimeZone::UTC, now)),
    }
}

/// A window of access as a member would read it, on the wall clock of the group's location:
/// `13:45–15:15 Europe/London`, `until Wed 00:00 Australia/Sydney`, `with no end`.
pub(super) fn window(
    from: Option<Timestamp>,
    until: Option<Timestamp>,
    location: Option<&Location>,
    now: Timestamp,
) -> String {
    match (from.filter(|from| *from > now), until) {
        (Some(from), Some(until)) => {
            let zone = location.map_or(TimeZone::UTC, |location| location.zone.clone());
            format!("{}–{}", wall_clock(from, &zone, now), at_location(until, location, now))
        }
        (Some(from), None) => format!("from {}, with no end", at_location(from, location, now)),
        (None, Some(until)) => format!("until {}", at_location(until, location, now)),
        (None, None) => "with no end".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instant(text: &str) -> Timestamp {
        let parsed: jiff::Timestamp = text.parse().unwrap();
        Timestamp::from_unix_millis(parsed.as_millisecond())
    }

    fn london() -> TimeZone {
        jiff::tz::TimeZoneDatabase::bundled().get("Europe/London").unwrap()
    }

    #[test]
    fn elapsed_time_is_minutes_and_seconds() {
        let start = instant("2025-07-01T09:00:00Z");
        assert_eq!(elapsed(start, instant("2025-07-01T09:01:05.900Z")), "+01:05");
        assert_eq!(elapsed(start, instant("2025-07-01T08:59:00Z")), "+00:00");
    }

    #[test]
    fn wall_clocks_name_the_day_only_when_it_is_not_today_there() {
        let now = instant("2025-07-01T21:00:00Z");
        assert_eq!(wall_clock(instant("2025-07-01T21:30:00Z"), &london(), now), "22:30");
        assert_eq!(wall_clock(instant("2025-07-01T23:00:00Z"), &london(), now), "Wed 00:00");
    }

    #[test]
    fn a_started_window_is_told_by_its_end() {
        let now = instant("2025-07-01T12:00:00Z");
        let (earlier, later) = (instant("2025-07-01T11:00:00Z"), instant("2025-07-01T13:15:00Z"));
        assert_eq!(window(Some(earlier), Some(later), None, now), "until 13:15 UTC");
        assert_eq!(window(Some(later), None, None, now), "from 13:15 UTC, with no end");
        assert_eq!(window(None, None, None, now), "with no end");
        assert_eq!(window(Some(now.max(later)), Some(instant("2025-07-01T14:00:00Z")), None, now), "13:15–14:00 UTC");
    }
}
