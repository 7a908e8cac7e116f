//! The independent oracle: who should be able to open which group's doors, and when, computed
//! from what the Nexudus simulator holds with this file's own reading of the rules (and jiff
//! for the time zones), never with `doorsync-access`.
//!
//! The rules, as the product promises them, under the configuration in force at each instant
//! (the configuration's [`Timeline`]: an edit applies from the instant doorsync restarts with it):
//!
//! * a member who is not active in Nexudus, or is deleted there, opens nothing;
//! * a booking that is not tentative opens its room's group from the configured lead before it
//!   starts until the configured lag after it ends (the room's own lead and lag if it has some);
//!   a cancelled or deleted booking opens nothing;
//! * a used day pass opens its product's group for its day on the location's wall clock (23 or
//!   25 hours when the clocks change); an unused day pass, and a time pass with uses left that is
//!   not used, open it until it expires; either then for the configured pass lag longer;
//! * an active contract opens its desks' and offices' groups from its start until its
//!   cancellation, if any;
//! * a room, product or desk opens the group doorsync's configuration links it to, or else the
//!   group Nexudus's own `AccessControlGroupId` names;
//! * a record doorsync cannot read opens nothing until it can be read again, whatever an earlier
//!   version of it opened: a used day pass without its `UsedDate`, a contract naming a desk
//!   Nexudus does not have, a booking of a resource Nexudus does not have.

use std::collections::BTreeMap;

use doorsync_nexudus_sim::{NexudusSimulator, SimEntity};
use doorsync_proto::{FloorPlanItemId, KisiGroupId, MemberId, PassProductId, ResourceId};
use jiff::tz::TimeZone;
use serde_json::Value;

use super::SimFailure;
use super::configuration::{Configuration, Timeline};
use super::intervals::{IntervalSet, Millis, OPEN_END, OPEN_START};
use super::world::{LOCATIONS, Site};

pub(crate) type Key = (MemberId, KisiGroupId);

/// The records the workload made, by Nexudus id: the oracle reads each of them again.
#[derive(Debug, Clone, Default)]
pub(crate) struct Ledger {
    pub(crate) bookings: Vec<u64>,
    pub(crate) passes: Vec<u64>,
    pub(crate) contracts: Vec<u64>,
}

/// When each member is entitled to each group, by the data as it is now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Entitlements {
    by_key: BTreeMap<Key, IntervalSet>,
}

impl Entitlements {
    pub(crate) fn of(&self, key: Key) -> IntervalSet {
        self.by_key.get(&key).cloned().unwrap_or_default()
    }

    /// The keys whose entitlement differs between the two.
    pub(crate) fn changed_keys(&self, other: &Self) -> Vec<Key> {
        let mut keys: Vec<Key> = self.by_key.keys().chain(other.by_key.keys()).copied().collect();
        keys.sort_unstable();
        keys.dedup();
        keys.into_iter().filter(|key| self.of(*key) != other.of(*key)).collect()
    }

    /// The first instant after `at` where anyone's window ends: where the engine wakes the
    /// member up (a window that starts was written ahead, and changes nothing then).
    pub(crate) fn next_window_end(&self, at: Millis) -> Option<Millis> {
        self.by_key
            .values()
            .flat_map(|set| set.intervals().iter().map(|&(_, end)| end))
            .filter(|end| *end > at && *end != OPEN_END)
            .min()
    }

    fn add(&mut self, key: Key, start: Millis, end: Millis) {
        let entry = self.by_key.entry(key).or_default();
        *entry = entry.union(&IntervalSet::span(start, end));
    }

    /// Adds what `other` entitles to within `stretch`.
    fn add_within(&mut self, other: &Self, stretch: &IntervalSet) {
        for (key, set) in &other.by_key {
            let entry = self.by_key.entry(*key).or_default();
            *entry = entry.union(&set.intersect(stretch));
        }
    }
}

/// Reads the data and applies the rules, each configuration over the stretch it is in force.
pub(crate) fn entitlements(
    nexudus: &NexudusSimulator,
    site: &Site,
    ledger: &Ledger,
    timeline: &Timeline,
) -> Result<Entitlements, SimFailure> {
    let mut found = Entitlements::default();
    for (from, until, configuration) in timeline.periods() {
        let under = entitlements_under(nexudus, site, ledger, configuration)?;
        found.add_within(&under, &IntervalSet::span(from, until));
    }
    Ok(found)
}

/// What the data entitles to if `configuration` had always been in force.
fn entitlements_under(
    nexudus: &NexudusSimulator,
    site: &Site,
    ledger: &Ledger,
    configuration: &Configuration,
) -> Result<Entitlements, SimFailure> {
    let reader = Reader { nexudus };
    let (mapping, policy) = (&configuration.mapping, &configuration.policy);
    let mut found = Entitlements::default();
    let active = |member: MemberId| -> Result<bool, SimFailure> {
        let Some(record) = reader.record(SimEntity::Coworker, member.0) else { return Ok(false) };
        Ok(flag(&record, "Active") && !flag(&record, "Archived"))
    };
    let is_room = |resource: u64| {
        site.locations.iter().any(|location| location.rooms.iter().any(|room| room.resource == resource))
    };

    for &id in &ledger.bookings {
        let Some(booking) = reader.record(SimEntity::Booking, id) else { continue };
        let member = MemberId(reader.number(&booking, "CoworkerId", id)?);
        let resource = reader.number(&booking, "ResourceId", id)?;
        if flag(&booking, "Tentative") || !active(member)? || !is_room(resource) {
            continue;
        }
        let group = match mapping.resources.get(&ResourceId(resource)) {
            Some(group) => Some(*group),
            None => reader.linked_group(SimEntity::Resource, resource)?,
        };
        let Some(group) = group else { continue };
        let (lead, lag) = policy
            .resource_timing
            .get(&ResourceId(resource))
            .map_or((policy.booking_lead_ms, policy.booking_lag_ms), |timing| (timing.lead_ms, timing.lag_ms));
        let starts = reader.instant(&booking, "FromTime", id)?;
        let ends = reader.instant(&booking, "ToTime", id)?;
        found.add((member, group), starts - lead, ends + lag);
    }

    let after_lag = |end: Millis| if end == OPEN_END { end } else { end.saturating_add(policy.pass_lag_ms) };
    for &id in &ledger.passes {
        let Some(pass) = reader.record(SimEntity::CoworkerTimePass, id) else { continue };
        let member = MemberId(reader.number(&pass, "CoworkerId", id)?);
        if !active(member)? {
            continue;
        }
        let product_id = reader.number(&pass, "TimePassId", id)?;
        let group = match mapping.pass_products.get(&PassProductId(product_id)) {
            Some(group) => Some(*group),
            None => reader.linked_group(SimEntity::TimePass, product_id)?,
        };
        let Some(group) = group else { continue };
        let product = reader
            .record(SimEntity::TimePass, product_id)
            .ok_or_else(|| SimFailure::harness("read a pass product", format!("{product_id} is missing")))?;
        let day_pass = product.get("MinutesIncluded").is_none_or(Value::is_null);
        let expires = reader.optional_instant(&pass, "ExpireDate", id)?.unwrap_or(OPEN_END);
        if day_pass && flag(&pass, "Used") {
            // A used day pass without its date cannot be read: it opens nothing.
            let Some(used) = reader.optional_instant(&pass, "UsedDate", id)? else { continue };
            let zone = zone_of_business(&reader, reader.number(&pass, "BusinessId", id)?)?;
            let (start, end) = day_of(used, &zone)?;
            found.add((member, group), start, after_lag(end));
        } else if day_pass {
            found.add((member, group), OPEN_START, after_lag(expires));
        } else {
            let uses_left = pass.get("RemainingUses").and_then(Value::as_i64).is_none_or(|left| left > 0);
            if !flag(&pass, "Used") && uses_left {
                found.add((member, group), OPEN_START, after_lag(expires));
            }
        }
    }

    for &id in &ledger.contracts {
        let Some(contract) = reader.record(SimEntity::CoworkerContract, id) else { continue };
        let member = MemberId(reader.number(&contract, "CoworkerId", id)?);
        if !flag(&contract, "Active") || !active(member)? {
            continue;
        }
        let starts = reader.instant(&contract, "StartDate", id)?;
        let ends = reader.optional_instant(&contract, "CancellationDate", id)?.unwrap_or(OPEN_END);
        let desks: Vec<u64> = contract
            .get("Desks")
            .and_then(Value::as_array)
            .map(|desks| desks.iter().filter_map(Value::as_u64).collect())
            .unwrap_or_default();
        if desks.iter().any(|desk| reader.record(SimEntity::FloorPlanDesk, *desk).is_none()) {
            continue;
        }
        for desk in desks {
            let group = match mapping.floor_plan_items.get(&FloorPlanItemId(desk)) {
                Some(group) => Some(*group),
                None => reader.linked_group(SimEntity::FloorPlanDesk, desk)?,
            };
            if let Some(group) = group {
                found.add((member, group), starts, ends);
            }
        }
    }
    Ok(found)
}

struct Reader<'a> {
    nexudus: &'a NexudusSimulator,
}

impl Reader<'_> {
    fn record(&self, kind: SimEntity, id: u64) -> Option<Value> {
        self.nexudus.record(kind, id)
    }

    fn number(&self, record: &Value, field: &str, id: u64) -> Result<u64, SimFailure> {
        record
            .get(field)
            .and_then(Value::as_u64)
            .ok_or_else(|| SimFailure::harness("read a Nexudus record", format!("record {id} has no {field}")))
    }

    fn instant(&self, record: &Value, field: &str, id: u64) -> Result<Millis, SimFailure> {
        self.optional_instant(record, field, id)?
            .ok_or_else(|| SimFailure::harness("read a Nexudus record", format!("record {id} has no {field}")))
    }

    fn optional_instant(&self, record: &Value, field: &str, id: u64) -> Result<Option<Millis>, SimFailure> {
        let Some(text) = record.get(field).and_then(Value::as_str) else { return Ok(None) };
        let instant: jiff::Timestamp = text.parse().map_err(|error: jiff::Error| {
            SimFailure::harness("read a Nexudus time", format!("{field} of record {id}: {text:?}: {error}"))
        })?;
        Ok(Some(instant.as_millisecond()))
    }

    /// The group a record's `AccessControlGroupId` names, if any.
    fn linked_group(&self, kind: SimEntity, id: u64) -> Result<Option<KisiGroupId>, SimFailure> {
        let Some(record) = self.record(kind, id) else { return Ok(None) };
        match record.get("AccessControlGroupId") {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(text)) => text
                .parse()
                .map(|group| Some(KisiGroupId(group)))
                .map_err(|_| SimFailure::harness("read a group link", format!("{text:?} on record {id}"))),
            Some(Value::Number(number)) => Ok(number.as_u64().map(KisiGroupId)),
            Some(other) => Err(SimFailure::harness("read a group link", format!("{other} on record {id}"))),
        }
    }
}

fn flag(record: &Value, field: &str) -> bool {
    record.get(field).and_then(Value::as_bool).unwrap_or(false)
}

/// The zone of a location, by the Windows id Nexudus gives it and the oracle's own table.
fn zone_of_business(reader: &Reader<'_>, business: u64) -> Result<TimeZone, SimFailure> {
    let missing =
        |what: &str| SimFailure::harness("find a location's time zone", format!("{what} of location {business}"));
    let record = reader.record(SimEntity::Business, business).ok_or_else(|| missing("the record"))?;
    let zone_id = record.get("SimpleTimeZoneId").and_then(Value::as_u64).ok_or_else(|| missing("SimpleTimeZoneId"))?;
    let zone = reader.record(SimEntity::SimpleTimeZone, zone_id).ok_or_else(|| missing("the zone record"))?;
    let windows = zone.get("Name").and_then(Value::as_str).ok_or_else(|| missing("the zone's name"))?;
    let (_, _, iana) = LOCATIONS
        .iter()
        .find(|(_, known, _)| *known == windows)
        .ok_or_else(|| missing(&format!("an IANA zone for {windows:?}")))?;
    TimeZone::get(iana).map_err(|error| SimFailure::harness("load a time zone", format!("{iana}: {error}")))
}

/// The first and the last instant (exclusive) of the calendar day `at` falls on in `zone`.
pub(crate) fn day_of(at: Millis, zone: &TimeZone) -> Result<(Millis, Millis), SimFailure> {
    let failed = |error: jiff::Error| SimFailure::harness("work out a day in a time zone", error.to_string());
    let zoned = jiff::Timestamp::from_millisecond(at).map_err(failed)?.to_zoned_datetime(zone.clone());
    let start = zoned.start_of_day().map_err(failed)?;
    let next = zoned.tomorrow().map_err(failed)?.start_of_day().map_err(failed)?;
    Ok((start.timestamp().as_millisecond(), next.timestamp().as_millisecond()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    fn at(text: &str) -> Millis {
        text.parse::<jiff::Timestamp>().unwrap().as_millisecond()
    }

    #[test]
    fn days_are_23_or_25_hours_when_the_clocks_change() {
        let london = TimeZone::get("Europe/London").unwrap();
        let (start, end) = day_of(at("2025-03-30T12:00:00Z"), &london).unwrap();
        assert_eq!((start, end), (at("2025-03-30T00:00:00Z"), at("2025-03-30T23:00:00Z")));
        let sydney = TimeZone::get("Australia/Sydney").unwrap();
        let (start, end) = day_of(at("2025-04-06T02:00:00Z"), &sydney).unwrap();
        assert_eq!(end - start, 25 * 3_600_000);
    }
}
