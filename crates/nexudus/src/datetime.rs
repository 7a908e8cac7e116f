//! Nexudus date-times, kept exactly as written, and the format of its date filters.
//!
//! The admin API writes instants such as `UpdatedOn`, `FromTime` and `ToTime` in UTC, sometimes
//! with a `Z` and sometimes with no offset at all; the `...Local` twins (`FromTimeLocal`,
//! `StartDateLocal`) are the location's wall clock and may carry a *fake* `Z` or `+00:00`
//! (reference §1.7; the UTC reading of the admin API is the working assumption there, unconfirmed
//! on a live tenant). So a value keeps both its wall-clock reading and the offset it was written
//! with, and the caller picks the reading that fits the field: [`NexudusDateTime::to_utc`] for
//! instants, [`NexudusDateTime::wall_clock`] or [`NexudusDateTime::in_zone`] for `...Local`
//! fields. [`local_agrees_with_utc`] is the check the reference suggests for telling the two apart.

use std::fmt;

use doorsync_proto::Timestamp;
use jiff::civil;
use jiff::tz::{Offset, TimeZone};

/// A date-time as Nexudus wrote it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NexudusDateTime {
    wall: civil::DateTime,
    /// The offset written after the time (`Z` is 0), if any; fake on `...Local` fields.
    offset_seconds: Option<i32>,
    /// Written as a bare date (`2025-07-01`): a day at the location, not an instant.
    date_only: bool,
}

/// Text that is not a date-time in any form Nexudus is known to write.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not a date-time like 2025-01-15T10:30:00Z")]
pub struct DateTimeError {
    text: String,
}

impl NexudusDateTime {
    /// Reads `2025-01-15T10:30:00Z`, `2025-01-15T10:30:00.7961262`, `2025-01-15T10:30`,
    /// `2025-01-15T10:30:00+01:00`, `2015-09-11T21:59:59 UTC` or a bare date `2025-01-15`.
    pub fn parse(text: &str) -> Result<Self, DateTimeError> {
        let error = || DateTimeError { text: text.to_owned() };
        let trimmed = text.trim();
        let (wall_text, offset_seconds) = split_offset(trimmed).ok_or_else(error)?;
        // jiff reads a bare date as a date-time at midnight, so whether a time was written is
        // told from the text.
        let date_only = !wall_text.contains(['T', 't', ' ', ':']);
        let wall = match wall_text.parse::<civil::DateTime>() {
            Ok(wall) => wall,
            Err(_) => wall_text.parse::<civil::Date>().map_err(|_| error())?.to_datetime(civil::Time::midnight()),
        };
        Ok(Self { wall, offset_seconds, date_only })
    }

    /// A UTC instant written the way this client writes them back (`...Z`, whole seconds are
    /// what Nexudus stores; milliseconds are kept when present).
    pub fn from_utc(at: Timestamp) -> Option<Self> {
        let instant = jiff::Timestamp::from_millisecond(at.as_unix_millis()).ok()?;
        Some(Self {
            wall: instant.to_zoned_datetime(TimeZone::UTC).datetime(),
            offset_seconds: Some(0),
            date_only: false,
        })
    }

    /// The date and time as written, whatever offset followed it.
    pub fn wall_clock(&self) -> civil::DateTime {
        self.wall
    }

    /// Whether it was written as a bare date (`2025-07-01`, no time): a calendar day at the
    /// location (reference §2.6, §2.8), which [`NexudusDateTime::to_utc`] would misread as
    /// midnight UTC.
    pub fn is_date_only(&self) -> bool {
        self.date_only
    }

    /// The offset written after the time, in seconds east of UTC (`Z` is 0).
    pub fn written_offset_seconds(&self) -> Option<i32> {
        self.offset_seconds
    }

    /// The instant, reading the value as UTC unless it names an offset (admin API instants).
    pub fn to_utc(&self) -> Option<Timestamp> {
        let offset = Offset::from_seconds(self.offset_seconds.unwrap_or(0)).ok()?;
        let instant = offset.to_timestamp(self.wall).ok()?;
        Some(Timestamp::from_unix_millis(instant.as_millisecond()))
    }

    /// The instant when the wall-clock reading is taken in `zone`, ignoring any written offset
    /// (`...Local` fields). In a DST gap or fold, the instant jiff's "compatible" rule picks.
    pub fn in_zone(&self, zone: &TimeZone) -> Option<Timestamp> {
        let zoned = self.wall.to_zoned_datetime(zone.clone()).ok()?;
        Some(Timestamp::from_unix_millis(zoned.timestamp().as_millisecond()))
    }
}

impl fmt::Display for NexudusDateTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.date_only {
            return write!(f, "{}", self.wall.date());
        }
        write!(f, "{}", self.wall.strftime("%Y-%m-%dT%H:%M:%S%.f"))?;
        match self.offset_seconds {
            None => Ok(()),
            Some(0) => f.write_str("Z"),
            Some(seconds) => {
                let sign = if seconds < 0 { '-' } else { '+' };
                let minutes = seconds.unsigned_abs() / 60;
                write!(f, "{sign}{:02}:{:02}", minutes / 60, minutes % 60)
            }
        }
    }
}

/// Splits `text` into the date-time and the offset it ends with, if any.
fn split_offset(text: &str) -> Option<(&str, Option<i32>)> {
    if let Some(wall) = text.strip_suffix(" UTC").or_else(|| text.strip_suffix('Z')).or_else(|| text.strip_suffix('z'))
    {
        return Some((wall, Some(0)));
    }
    // An offset needs a time before it ("2025-01-15" ends in "-01-15", which is not an offset).
    let Some(time_start) = text.find('T') else { return Some((text, None)) };
    // Six bytes from the end may fall inside a multi-byte character: then they are no offset.
    let Some(sign_at) =
        text.len().checked_sub(6).filter(|&sign_at| sign_at > time_start && text.is_char_boundary(sign_at))
    else {
        return Some((text, None));
    };
    let (wall, offset) = text.split_at(sign_at);
    let sign = match offset.as_bytes().first() {
        Some(b'+') => 1,
        Some(b'-') => -1,
        _ => return Some((text, None)),
    };
    let (hours, minutes) = offset.get(1..)?.split_once(':')?;
    let hours: i32 = hours.parse().ok()?;
    let minutes: i32 = minutes.parse().ok()?;
    Some((wall, Some(sign * (hours * 3_600 + minutes * 60))))
}

/// The text of a `from_/to_{Entity}_{Field}` date filter: `YYYY-MM-DDTHH:mm`, in UTC, floored to
/// the minute (the filters' documented precision), so a watermark never skips a change.
pub fn filter_value(at: Timestamp) -> Option<String> {
    let instant = jiff::Timestamp::from_millisecond(at.as_unix_millis()).ok()?;
    Some(instant.to_zoned_datetime(TimeZone::UTC).strftime("%Y-%m-%dT%H:%M").to_string())
}

/// Whether a `...Local` value read in the location's `zone` is the same instant as its UTC twin:
/// the check for "are this tenant's `FromTime`s really UTC?" (reference §1.7).
pub fn local_agrees_with_utc(utc: &NexudusDateTime, local: &NexudusDateTime, zone: &TimeZone) -> bool {
    match (utc.to_utc(), local.in_zone(zone)) {
        (Some(utc), Some(local)) => utc == local,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc_millis(text: &str) -> i64 {
        NexudusDateTime::parse(text).unwrap().to_utc().unwrap().as_unix_millis()
    }

    #[test]
    fn reads_every_form_nexudus_writes() {
        let noon = 1_736_942_400_000; // 2025-01-15T12:00:00Z
        assert_eq!(utc_millis("2025-01-15T12:00:00Z"), noon);
        assert_eq!(utc_millis("2025-01-15T12:00:00"), noon, "no offset reads as UTC");
        assert_eq!(utc_millis("2025-01-15T12:00"), noon);
        assert_eq!(utc_millis(" 2025-01-15T12:00:00 UTC"), noon);
        assert_eq!(utc_millis("2025-01-15T13:00:00+01:00"), noon);
        assert_eq!(utc_millis("2025-01-15T07:00:00-05:00"), noon);
        assert_eq!(utc_millis("2025-01-15T12:00:00.7961262Z"), noon + 796);
        assert_eq!(utc_millis("2025-01-15"), noon - 12 * 3_600_000);
        for bad in ["", "yesterday", "2025-13-01T00:00:00", "2025-01-15T25:00:00Z", "2025-01-15T12:00:00+1"] {
            assert!(NexudusDateTime::parse(bad).is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn a_local_twin_is_read_in_the_location_zone_ignoring_its_fake_offset() {
        let zone = jiff::tz::TimeZone::get("Europe/London").unwrap();
        let utc = NexudusDateTime::parse("2025-07-01T08:15:00Z").unwrap();
        let local = NexudusDateTime::parse("2025-07-01T09:15:00+00:00").unwrap();
        assert_eq!(local.wall_clock(), civil::date(2025, 7, 1).at(9, 15, 0, 0));
        assert!(local_agrees_with_utc(&utc, &local, &zone), "BST is UTC+1 in July");
        let mislabelled = NexudusDateTime::parse("2025-07-01T08:15:00Z").unwrap();
        assert!(!local_agrees_with_utc(&utc, &mislabelled, &zone));
    }

    #[test]
    fn filters_are_utc_minutes_rounded_down() {
        let at = Timestamp::from_unix_millis(1_736_942_459_999); // 2025-01-15T12:00:59.999Z
        assert_eq!(filter_value(at).unwrap(), "2025-01-15T12:00");
    }

    #[test]
    fn display_writes_back_what_was_read() {
        for text in ["2025-01-15T12:00:00Z", "2025-01-15T12:00:00", "2025-01-15T13:00:00+01:00"] {
            assert_eq!(NexudusDateTime::parse(text).unwrap().to_string(), text);
        }
        let at = Timestamp::from_unix_millis(1_736_942_400_000);
        assert_eq!(NexudusDateTime::from_utc(at).unwrap().to_string(), "2025-01-15T12:00:00Z");
    }

    #[test]
    fn a_bare_date_is_told_apart_from_midnight() {
        let date = NexudusDateTime::parse("2025-07-01").unwrap();
        assert!(date.is_date_only());
        assert_eq!(date.to_string(), "2025-07-01");
        for written in ["2025-07-01T00:00:00Z", "2025-07-01T00:00", "2025-07-01 00:00:00 UTC"] {
            assert!(!NexudusDateTime::parse(written).unwrap().is_date_only(), "{written}");
        }
    }
}
