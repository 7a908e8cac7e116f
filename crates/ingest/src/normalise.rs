//! The rules that turn Nexudus records into doorsync events. Pure: no I/O, no clock.
//!
//! * Every event's `occurred_at` is the record's `UpdatedOn` (a record without one is parked),
//!   so reading an unchanged record again gives the same message id.
//! * Admin-API instants (`UpdatedOn`, `FromTime`, `ToTime`, `StartDate`, `CancellationDate`,
//!   `UsedDate`, `ExpireDate`) are read as UTC, the working assumption of the reference (§1.7) and
//!   of [`doorsync_nexudus::datetime`]. Where the record also carries the `...Local` twin, both
//!   must show the same wall clock in the location's zone; if they do not (Nexudus may write the
//!   wall clock with a fake `Z`), or the twin cannot be checked, the record is parked instead of
//!   opening doors at the wrong hours.
//! * A booking, contract or pass of a location whose zone cannot be used (a Windows id with no
//!   IANA zone in CLDR's table, a location or resource Nexudus does not have) is parked with the
//!   reason: nothing is granted on a guessed zone.
//! * A used day pass is valid for the date of its `UsedDate` on the location's wall clock; the
//!   event carries that date and the location's zone as an IANA id, mapped from the Windows id
//!   Nexudus reports (CLDR table of `doorsync-access`).

use std::collections::BTreeMap;

use doorsync_access::DaySpan;
use doorsync_nexudus::{
    Booking, Coworker, CoworkerContract, CoworkerTimePass, FloorPlanDesk, FloorPlanItemType, NexudusDateTime, Resource,
    TimePass,
};
use doorsync_proto::{
    BookingCancelled, BookingChanged, BookingId, CivilDate, ContractChanged, ContractId, ContractRemoved, Event,
    FloorPlanItem, FloorPlanItemId, FloorPlanItemKind, KisiGroupId, MappingChanged, MappingSource, MemberChanged,
    MemberId, MemberRemoved, PassChanged, PassId, PassProductId, PassRemoved, PassValidity, ResourceId, Timestamp,
};
use jiff::SignedDuration;
use jiff::tz::{TimeZone, TimeZoneDatabase};

use crate::record::{Holder, RecordKey, RecordKind};

/// Why a readable record cannot become an event. The record is parked with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub(crate) struct Unnormalisable {
    reason: String,
}

impl Unnormalisable {
    pub(crate) fn new(reason: impl Into<String>) -> Self {
        Self { reason: reason.into() }
    }
}

/// A location's time zone: the IANA id events carry, and the zone itself.
#[derive(Debug, Clone)]
pub(crate) struct Zone {
    iana: &'static str,
    tz: TimeZone,
}

impl Zone {
    /// The zone of a location whose Nexudus time zone is the Windows id `windows`.
    pub(crate) fn from_windows(windows: &str) -> Result<Self, Unnormalisable> {
        let unknown = || {
            Unnormalisable::new(format!(
                "unknown time zone {windows:?}: not a Windows zone id doorsync can map to an IANA zone"
            ))
        };
        let iana = doorsync_access::iana_zone_for_windows(windows).ok_or_else(unknown)?;
        // The bundled database only, as the fold uses: every machine must read the same zone.
        let tz = TimeZoneDatabase::bundled().get(iana).map_err(|_| unknown())?;
        Ok(Self { iana, tz })
    }

    /// The IANA id of the zone (`Europe/London`).
    pub(crate) fn iana(&self) -> &'static str {
        self.iana
    }

    /// The zone's offset from UTC at `at`, in seconds east; `None` for an instant beyond what
    /// the zone database can place.
    pub(crate) fn offset_seconds_at(&self, at: Timestamp) -> Option<i32> {
        let instant = jiff::Timestamp::from_millisecond(at.as_unix_millis()).ok()?;
        Some(self.tz.to_offset(instant).seconds())
    }
}

/// The time zone of the location a record belongs to, as far as doorsync can tell.
#[derive(Debug, Clone)]
pub(crate) enum LocationZone {
    Known(Zone),
    /// The record names a location, but its zone cannot be used (a Windows id doorsync cannot
    /// map, a location or resource Nexudus does not have): the record is parked with this
    /// reason, since its times could only be guessed.
    Unusable(Unnormalisable),
    /// The record names no location.
    Unnamed,
}

impl LocationZone {
    pub(crate) fn from_lookup(zone: Result<Zone, Unnormalisable>) -> Self {
        zone.map_or_else(Self::Unusable, Self::Known)
    }

    fn known(&self) -> Option<&Zone> {
        match self {
            Self::Known(zone) => Some(zone),
            Self::Unusable(_) | Self::Unnamed => None,
        }
    }

    /// Refuses a record whose location's zone cannot be used: nothing is granted on a guess.
    fn usable(&self) -> Result<(), Unnormalisable> {
        match self {
            Self::Unusable(reason) => Err(Unnormalisable::new(format!(
                "the location's time zone cannot be used, so the record's times cannot be trusted: {reason}"
            ))),
            Self::Known(_) | Self::Unnamed => Ok(()),
        }
    }
}

/// What one version of a record means: when it was written, who holds what it grants, and the
/// event that says so (`None` when it grants nothing to anyone, such as a booking without a
/// customer or a resource linked to no group).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Normalised {
    pub(crate) updated_on: Timestamp,
    pub(crate) holder: Option<Holder>,
    pub(crate) event: Option<Event>,
}

impl Normalised {
    fn held_by(updated_on: Timestamp, member: MemberId, event: Event) -> Self {
        Self { updated_on, holder: Some(Holder::Member(member)), event: Some(event) }
    }

    fn nothing(updated_on: Timestamp) -> Self {
        Self { updated_on, holder: None, event: None }
    }
}

/// A customer: `MemberChanged`, active only while Nexudus says active and not archived.
pub(crate) fn coworker(coworker: &Coworker) -> Result<Normalised, Unnormalisable> {
    let updated_on = updated_on(coworker.updated_on.as_ref())?;
    let email = coworker
        .email
        .clone()
        .ok_or_else(|| Unnormalisable::new("Email: is missing, and a Kisi user is found or created by email"))?;
    let member = MemberId(coworker.id);
    let changed = MemberChanged {
        member,
        email,
        name: coworker.full_name.clone(),
        active: coworker.active && !coworker.archived,
    };
    Ok(Normalised::held_by(updated_on, member, Event::MemberChanged(changed)))
}

/// A booking: `BookingChanged` for its customer; nothing when it has none. `zone` is its
/// resource's location's, to check the `...Local` twins against.
pub(crate) fn booking(booking: &Booking, zone: &LocationZone) -> Result<Normalised, Unnormalisable> {
    let updated_on = updated_on(booking.updated_on.as_ref())?;
    zone.usable()?;
    let starts_at = instant("FromTime", &booking.from_time, booking.from_time_local.as_ref(), zone)?;
    let ends_at = instant("ToTime", &booking.to_time, booking.to_time_local.as_ref(), zone)?;
    if ends_at < starts_at {
        return Err(Unnormalisable::new("ToTime: is before FromTime"));
    }
    let Some(coworker) = booking.coworker_id else { return Ok(Normalised::nothing(updated_on)) };
    let member = MemberId(coworker);
    let changed = BookingChanged {
        member,
        booking: BookingId(booking.id),
        resource: ResourceId(booking.resource_id),
        starts_at,
        ends_at,
        tentative: booking.tentative,
    };
    Ok(Normalised::held_by(updated_on, member, Event::BookingChanged(changed)))
}

/// A pass a customer holds, given its product (or why there is none) and the zone of its
/// location (a pass of a location whose zone cannot be used is refused; a pass of no location
/// is refused only if it is a used day pass):
///
/// * a used day pass is valid for the day of its `UsedDate` in the location's zone, a day that
///   runs from the location's daily `cutoff` (hours and minutes) to the next: at 01:30 with a
///   03:00 cutoff a pass is used on the day before's;
/// * an unused day pass is an entitlement until its `ExpireDate` (there is no "valid from");
/// * any other pass is valid until its `ExpireDate`, and used up once `Used` or with no
///   `RemainingUses` left.
pub(crate) fn pass(
    pass: &CoworkerTimePass,
    product: &Result<TimePass, Unnormalisable>,
    zone: &LocationZone,
    cutoff: (u8, u8),
) -> Result<Normalised, Unnormalisable> {
    let updated_on = updated_on(pass.updated_on.as_ref())?;
    zone.usable()?;
    let product = product.as_ref().map_err(|reason| Unnormalisable::new(format!("TimePassId: {reason}")))?;
    let until = pass.expire_date.as_ref().map(|expires| edge("ExpireDate", expires, DayEdge::End, zone)).transpose()?;
    let (validity, used_up) = match (product.is_day_pass(), pass.used) {
        (true, true) => {
            let used = pass
                .used_date
                .as_ref()
                .ok_or_else(|| Unnormalisable::new("UsedDate: is missing on a used day pass, so its day is unknown"))?;
            let zone = zone.known().ok_or_else(|| {
                Unnormalisable::new("BusinessId: is missing on the pass and on its product, so its day is unknown")
            })?;
            let used_at = utc("UsedDate", used)?;
            let validity = if cutoff == (0, 0) {
                PassValidity::Day { date: date_in(used_at, zone)?, time_zone: zone.iana.to_owned() }
            } else {
                let (from, until) = pass_day(used_at, zone, cutoff)?;
                PassValidity::Window { from: Some(from), until: Some(until) }
            };
            (validity, false)
        }
        (true, false) => (PassValidity::Window { from: None, until }, false),
        (false, used) => {
            let none_left = pass.remaining_uses.is_some_and(|remaining| remaining <= 0);
            (PassValidity::Window { from: None, until }, used || none_left)
        }
    };
    let member = MemberId(pass.coworker_id);
    let changed =
        PassChanged { member, pass: PassId(pass.id), product: PassProductId(pass.time_pass_id), validity, used_up };
    Ok(Normalised::held_by(updated_on, member, Event::PassChanged(changed)))
}

/// A contract read by id (with its `Desks`), given the item type of each of its desks and the
/// zone of the location that issued it. It runs from `StartDate` until its `CancellationDate`,
/// if any (Nexudus has no other end date).
pub(crate) fn contract(
    contract: &CoworkerContract,
    desks: &BTreeMap<u64, FloorPlanItemType>,
    zone: &LocationZone,
) -> Result<Normalised, Unnormalisable> {
    let updated_on = updated_on(contract.updated_on.as_ref())?;
    zone.usable()?;
    let starts_at = match &contract.start_date {
        date if date.is_date_only() => edge("StartDate", date, DayEdge::Start, zone)?,
        date => instant("StartDate", date, contract.start_date_local.as_ref(), zone)?,
    };
    let cancelled_at = contract
        .cancellation_date
        .as_ref()
        .map(|date| match date {
            date if date.is_date_only() => edge("CancellationDate", date, DayEdge::End, zone),
            date => instant("CancellationDate", date, contract.cancellation_date_local.as_ref(), zone),
        })
        .transpose()?;
    let mut ids = contract.desk_ids().to_vec();
    // Nexudus may list the same desks in another order; the event (and its id) must not change.
    ids.sort_unstable();
    ids.dedup();
    let spaces = ids
        .into_iter()
        .map(|id| {
            let item_type = desks
                .get(&id)
                .ok_or_else(|| Unnormalisable::new(format!("Desks: floor-plan desk {id} does not exist in Nexudus")))?;
            Ok(FloorPlanItem { id: FloorPlanItemId(id), kind: space_kind(*item_type) })
        })
        .collect::<Result<Vec<_>, Unnormalisable>>()?;
    let member = MemberId(contract.coworker_id);
    let changed = ContractChanged {
        member,
        contract: ContractId(contract.id),
        starts_at,
        ends_at: None,
        cancelled_at,
        active: contract.active,
        spaces,
    };
    Ok(Normalised::held_by(updated_on, member, Event::ContractChanged(changed)))
}

/// Offices and rooms are let whole; everything else on a floor plan is a desk.
fn space_kind(item_type: FloorPlanItemType) -> FloorPlanItemKind {
    match item_type {
        FloorPlanItemType::Office | FloorPlanItemType::Room => FloorPlanItemKind::Office,
        FloorPlanItemType::DedicatedDesk
        | FloorPlanItemType::HotDesk
        | FloorPlanItemType::Other
        | FloorPlanItemType::Unknown(_) => FloorPlanItemKind::Desk,
    }
}

/// A resource's own link to a Kisi group (`AccessControlGroupId`, else `KisiGroupId`).
pub(crate) fn resource_mapping(resource: &Resource) -> Result<Normalised, Unnormalisable> {
    let group = resource.access_control_group_id.as_deref().or(resource.kisi_group_id.as_deref());
    mapping(MappingSource::Resource(ResourceId(resource.id)), resource.updated_on.as_ref(), group)
}

/// A pass product's own link to a Kisi group (`AccessControlGroupId`, else `KisiGroupId`).
pub(crate) fn pass_product_mapping(product: &TimePass) -> Result<Normalised, Unnormalisable> {
    let group = product.access_control_group_id.as_deref().or(product.kisi_group_id.as_deref());
    mapping(MappingSource::PassProduct(PassProductId(product.id)), product.updated_on.as_ref(), group)
}

/// A floor-plan desk's or office's own link to a Kisi group (`AccessControlGroupId`).
pub(crate) fn desk_mapping(desk: &FloorPlanDesk) -> Result<Normalised, Unnormalisable> {
    let group = desk.access_control_group_id.as_deref();
    mapping(MappingSource::FloorPlanItem(FloorPlanItemId(desk.id)), desk.updated_on.as_ref(), group)
}

fn mapping(
    source: MappingSource,
    updated_on: Option<&NexudusDateTime>,
    group: Option<&str>,
) -> Result<Normalised, Unnormalisable> {
    let updated_on = self::updated_on(updated_on)?;
    let Some(group) = group else { return Ok(Normalised::nothing(updated_on)) };
    let group: u64 = group.trim().parse().map_err(|_| {
        Unnormalisable::new(format!("AccessControlGroupId: {group:?} is not a Kisi group id (a whole number)"))
    })?;
    let changed = MappingChanged { source, group: Some(KisiGroupId(group)) };
    Ok(Normalised { updated_on, holder: Some(Holder::Mapping), event: Some(Event::MappingChanged(changed)) })
}

/// The event that takes back what `holder` held through the record `key`, now that the record is
/// gone (deleted, cancelled) or has passed to another holder.
pub(crate) fn removal(key: RecordKey, holder: Holder) -> Option<Event> {
    let id = key.id;
    let unmapped = |source| Event::MappingChanged(MappingChanged { source, group: None });
    match (key.kind, holder) {
        (RecordKind::Coworker, Holder::Member(member)) => Some(Event::MemberRemoved(MemberRemoved { member })),
        (RecordKind::Booking, Holder::Member(member)) => {
            Some(Event::BookingCancelled(BookingCancelled { member, booking: BookingId(id) }))
        }
        (RecordKind::CoworkerTimePass, Holder::Member(member)) => {
            Some(Event::PassRemoved(PassRemoved { member, pass: PassId(id) }))
        }
        (RecordKind::CoworkerContract, Holder::Member(member)) => {
            Some(Event::ContractRemoved(ContractRemoved { member, contract: ContractId(id) }))
        }
        (RecordKind::Resource, Holder::Mapping) => Some(unmapped(MappingSource::Resource(ResourceId(id)))),
        (RecordKind::TimePass, Holder::Mapping) => Some(unmapped(MappingSource::PassProduct(PassProductId(id)))),
        (RecordKind::FloorPlanDesk, Holder::Mapping) => {
            Some(unmapped(MappingSource::FloorPlanItem(FloorPlanItemId(id))))
        }
        _ => None,
    }
}

/// `UpdatedOn` as an instant: the stable time of every event a version of the record gives.
pub(crate) fn updated_on(updated_on: Option<&NexudusDateTime>) -> Result<Timestamp, Unnormalisable> {
    let written = updated_on.ok_or_else(|| {
        Unnormalisable::new("UpdatedOn: is missing, so its events would have no stable time (and id)")
    })?;
    utc("UpdatedOn", written)
}

fn utc(field: &str, written: &NexudusDateTime) -> Result<Timestamp, Unnormalisable> {
    written.to_utc().ok_or_else(|| {
        Unnormalisable::new(format!("{field}: {written} is outside the instants doorsync can represent"))
    })
}

/// Which end of a day a date without a time stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DayEdge {
    /// The day's first instant (a contract starting on that date).
    Start,
    /// The first instant after the day (an expiry or cancellation on that date: the whole day
    /// still counts).
    End,
}

/// The instant `field` stands for: a date-time read as UTC, or, for a date without a time
/// (`2025-07-01`; Nexudus writes `ExpireDate` and contract dates both ways, reference §2.6 and
/// §2.8), that day in the location's zone, from its start or to its end. Read as midnight UTC, a
/// pass expiring on the 1st in Sydney would end ten hours early and one in San Francisco eight
/// hours late.
fn edge(
    field: &str,
    written: &NexudusDateTime,
    day_edge: DayEdge,
    zone: &LocationZone,
) -> Result<Timestamp, Unnormalisable> {
    if !written.is_date_only() {
        return utc(field, written);
    }
    let zone = zone.known().ok_or_else(|| {
        Unnormalisable::new(format!(
            "{field}: {written} is a date without a time, a day at the location, and the record names no location \
             whose time zone would place it"
        ))
    })?;
    let date = written.wall_clock().date();
    let month = u8::try_from(date.month()).unwrap_or(0);
    let day = u8::try_from(date.day()).unwrap_or(0);
    let date =
        CivilDate::new(date.year(), month, day).map_err(|error| Unnormalisable::new(format!("{field}: {error}")))?;
    match doorsync_access::day_span(date, zone.iana) {
        DaySpan::Resolved { start, end } => Ok(if day_edge == DayEdge::Start { start } else { end }),
        DaySpan::UnknownTimeZone | DaySpan::OutsideSupportedRange => {
            Err(Unnormalisable::new(format!("{field}: {written} cannot be placed in {}", zone.iana)))
        }
    }
}

/// The UTC instant `field` names, checked against its `...Local` twin in the location's zone. A
/// twin that cannot be checked (the record names no location) refuses the record: some Nexudus
/// APIs write the local wall clock with a fake `Z` (reference §1.7), and only the twin tells.
fn instant(
    field: &str,
    utc_written: &NexudusDateTime,
    local: Option<&NexudusDateTime>,
    zone: &LocationZone,
) -> Result<Timestamp, Unnormalisable> {
    let at = utc(field, utc_written)?;
    let Some(local) = local else { return Ok(at) };
    let Some(zone) = zone.known() else {
        return Err(Unnormalisable::new(format!(
            "{field} ({utc_written}) cannot be checked against {field}Local ({local}): the record names no location \
             whose time zone would tell whether {field} is really UTC (reference §1.7)"
        )));
    };
    // The wall clock the instant shows in the zone is unambiguous even in a DST fold, unlike
    // reading the local twin back as an instant.
    let shown = zoned(at, zone)?.datetime();
    let apart = shown.duration_since(local.wall_clock()).abs();
    if apart >= SignedDuration::from_secs(1) {
        return Err(Unnormalisable::new(format!(
            "{field} ({utc_written}, read as UTC) and {field}Local ({local}) are {} s apart in {}: Nexudus may be \
             writing the local wall clock with a fake Z (reference §1.7), so neither is trusted and nothing is \
             granted on a guessed time",
            apart.as_secs(),
            zone.iana
        )));
    }
    Ok(at)
}

fn zoned(at: Timestamp, zone: &Zone) -> Result<jiff::ZonedDateTime, Unnormalisable> {
    let instant = jiff::Timestamp::from_millisecond(at.as_unix_millis())
        .map_err(|_| Unnormalisable::new(format!("{at} is outside the instants doorsync can represent")))?;
    Ok(instant.to_zoned_datetime(zone.tz.clone()))
}

/// The pass day `used_at` falls in, in `zone`: from the `cutoff` on the wall clock to the next
/// day's, so 23 or 25 hours across a change of the clocks. A cutoff the clocks skip is read
/// later by the length of the jump, and one they show twice at its first showing (jiff's
/// "compatible" reading).
fn pass_day(used_at: Timestamp, zone: &Zone, cutoff: (u8, u8)) -> Result<(Timestamp, Timestamp), Unnormalisable> {
    let outside = || Unnormalisable::new(format!("UsedDate: {used_at} is outside the days doorsync can represent"));
    let cutoff = jiff::civil::Time::new(
        i8::try_from(cutoff.0).map_err(|_| outside())?,
        i8::try_from(cutoff.1).map_err(|_| outside())?,
        0,
        0,
    )
    .map_err(|_| outside())?;
    let used = zoned(used_at, zone)?;
    let date = if used.time() < cutoff { used.date().yesterday().map_err(|_| outside())? } else { used.date() };
    let start_of = |date: jiff::civil::Date| -> Result<Timestamp, Unnormalisable> {
        let zoned = date.to_datetime(cutoff).to_zoned_datetime(zone.tz.clone()).map_err(|_| outside())?;
        Ok(Timestamp::from_unix_millis(zoned.timestamp().as_millisecond()))
    };
    Ok((start_of(date)?, start_of(date.tomorrow().map_err(|_| outside())?)?))
}

/// The calendar date `at` falls on in `zone`.
fn date_in(at: Timestamp, zone: &Zone) -> Result<CivilDate, Unnormalisable> {
    let date = zoned(at, zone)?.date();
    let month = u8::try_from(date.month()).unwrap_or(0);
    let day = u8::try_from(date.day()).unwrap_or(0);
    CivilDate::new(date.year(), month, day).map_err(|error| Unnormalisable::new(format!("UsedDate: {error}")))
}

#[cfg(test)]
mod tests {
    use doorsync_nexudus::Entity;
    use serde_json::{Value, json};

    use super::*;

    fn at(text: &str) -> Timestamp {
        NexudusDateTime::parse(text).unwrap().to_utc().unwrap()
    }

    const MIDNIGHT: (u8, u8) = (0, 0);

    fn london() -> LocationZone {
        LocationZone::Known(Zone::from_windows("GMT Standard Time").unwrap())
    }

    fn mars() -> LocationZone {
        LocationZone::from_lookup(Zone::from_windows("Mars Standard Time"))
    }

    fn with(base: Value, changes: Value) -> Value {
        let mut record = base;
        for (key, value) in changes.as_object().unwrap() {
            record[key] = value.clone();
        }
        record
    }

    fn booking_record(changes: Value) -> Booking {
        let base = json!({
            "Id": 7, "ResourceId": 3, "CoworkerId": 12, "Tentative": false,
            "FromTime": "2025-07-01T08:00:00Z", "ToTime": "2025-07-01T09:00:00Z",
            "UpdatedOn": "2025-06-20T10:00:00Z",
        });
        Booking::from_record(&with(base, changes)).unwrap()
    }

    fn pass_record(changes: Value) -> CoworkerTimePass {
        let base = json!({
            "Id": 40, "CoworkerId": 12, "TimePassId": 5, "Used": false,
            "ExpireDate": "2025-12-31T23:59:59Z", "UpdatedOn": "2025-06-20T10:00:00Z",
        });
        CoworkerTimePass::from_record(&with(base, changes)).unwrap()
    }

    fn product(minutes: Option<i64>) -> Result<TimePass, Unnormalisable> {
        Ok(TimePass::from_record(&json!({"Id": 5, "Name": "Day", "MinutesIncluded": minutes})).unwrap())
    }

    fn event(normalised: Result<Normalised, Unnormalisable>) -> Event {
        normalised.unwrap().event.unwrap()
    }

    #[test]
    fn a_coworker_is_a_member_active_only_while_active_and_not_archived() {
        let record = json!({
            "Id": 12, "FullName": "Ada", "Email": "ada@example.com", "Active": true,
            "UpdatedOn": "2025-06-20T10:00:00Z",
        });
        let normalised = coworker(&Coworker::from_record(&record).unwrap()).unwrap();
        assert_eq!(normalised.updated_on, at("2025-06-20T10:00:00Z"));
        assert_eq!(normalised.holder, Some(Holder::Member(MemberId(12))));
        let expected =
            MemberChanged { member: MemberId(12), email: "ada@example.com".into(), name: "Ada".into(), active: true };
        assert_eq!(normalised.event, Some(Event::MemberChanged(expected)));

        let archived = coworker(&Coworker::from_record(&with(record.clone(), json!({"Archived": true}))).unwrap());
        assert!(matches!(event(archived), Event::MemberChanged(MemberChanged { active: false, .. })));
        let suspended = coworker(&Coworker::from_record(&with(record.clone(), json!({"Active": false}))).unwrap());
        assert!(matches!(event(suspended), Event::MemberChanged(MemberChanged { active: false, .. })));
        let no_email = coworker(&Coworker::from_record(&with(record, json!({"Email": ""}))).unwrap());
        assert!(no_email.unwrap_err().to_string().starts_with("Email"));
    }

    #[test]
    fn a_record_without_updated_on_has_no_stable_time_and_is_refused() {
        let record = json!({"Id": 12, "FullName": "Ada", "Email": "a@example.com", "Active": true});
        let refused = coworker(&Coworker::from_record(&record).unwrap()).unwrap_err();
        assert!(refused.to_string().starts_with("UpdatedOn: is missing"), "{refused}");
    }

    #[test]
    fn a_booking_is_its_utc_times_for_its_customer() {
        let normalised = booking(&booking_record(json!({})), &LocationZone::Unnamed).unwrap();
        let expected = BookingChanged {
            member: MemberId(12),
            booking: BookingId(7),
            resource: ResourceId(3),
            starts_at: at("2025-07-01T08:00:00Z"),
            ends_at: at("2025-07-01T09:00:00Z"),
            tentative: false,
        };
        assert_eq!(normalised.event, Some(Event::BookingChanged(expected)));
        assert_eq!(normalised.updated_on, at("2025-06-20T10:00:00Z"));
        let tentative = booking(&booking_record(json!({"Tentative": true})), &LocationZone::Unnamed);
        assert!(matches!(event(tentative), Event::BookingChanged(BookingChanged { tentative: true, .. })));
    }

    #[test]
    fn a_booking_without_a_customer_grants_nothing() {
        let normalised = booking(&booking_record(json!({"CoworkerId": null})), &LocationZone::Unnamed).unwrap();
        assert_eq!((normalised.holder, normalised.event), (None, None));
    }

    #[test]
    fn local_twins_must_show_the_same_wall_clock_in_the_location_zone() {
        // 08:00 UTC is 09:00 in London in July (BST).
        let agreeing =
            booking_record(json!({"FromTimeLocal": "2025-07-01T09:00:00", "ToTimeLocal": "2025-07-01T10:00:00+00:00"}));
        assert!(booking(&agreeing, &london()).is_ok());
        let local_labelled_utc = booking_record(json!({"FromTimeLocal": "2025-07-01T08:00:00Z"}));
        let refused = booking(&local_labelled_utc, &london()).unwrap_err().to_string();
        assert!(refused.starts_with("FromTime (2025-07-01T08:00:00Z, read as UTC) and FromTimeLocal"), "{refused}");
        assert!(refused.contains("3600 s apart in Europe/London"), "{refused}");
        let unchecked = booking(&local_labelled_utc, &LocationZone::Unnamed).unwrap_err().to_string();
        assert!(unchecked.contains("cannot be checked against FromTimeLocal"), "{unchecked}");
        let unknown_zone = booking(&booking_record(json!({})), &mars()).unwrap_err().to_string();
        assert!(unknown_zone.contains("unknown time zone \"Mars Standard Time\""), "{unknown_zone}");
        let backwards = booking_record(json!({"ToTime": "2025-07-01T07:00:00Z"}));
        assert!(booking(&backwards, &LocationZone::Unnamed).unwrap_err().to_string().starts_with("ToTime"));
    }

    #[test]
    fn a_used_day_pass_is_the_day_of_its_use_on_the_locations_wall_clock() {
        // 23:30 UTC on 1 July is 00:30 on 2 July in London.
        let used = pass_record(json!({"Used": true, "UsedDate": "2025-07-01T23:30:00Z"}));
        let changed = event(pass(&used, &product(None), &london(), MIDNIGHT));
        let expected = PassChanged {
            member: MemberId(12),
            pass: PassId(40),
            product: PassProductId(5),
            validity: PassValidity::Day { date: "2025-07-02".parse().unwrap(), time_zone: "Europe/London".into() },
            used_up: false,
        };
        assert_eq!(changed, Event::PassChanged(expected));
        let no_date = pass_record(json!({"Used": true}));
        assert!(pass(&no_date, &product(None), &london(), MIDNIGHT).unwrap_err().to_string().starts_with("UsedDate"));
        let refused = pass(&used, &product(None), &mars(), MIDNIGHT).unwrap_err().to_string();
        assert!(refused.contains("unknown time zone \"Mars Standard Time\""), "{refused}");
        let nowhere = pass(&used, &product(None), &LocationZone::Unnamed, MIDNIGHT).unwrap_err().to_string();
        assert!(nowhere.starts_with("BusinessId: is missing"), "{nowhere}");
    }

    #[test]
    fn an_unused_day_pass_holds_until_it_expires_unless_its_location_has_an_unknown_zone() {
        let unused = pass_record(json!({}));
        for zone in [london(), LocationZone::Unnamed] {
            let Event::PassChanged(changed) = event(pass(&unused, &product(None), &zone, MIDNIGHT)) else { panic!() };
            assert_eq!(changed.validity, PassValidity::Window { from: None, until: Some(at("2025-12-31T23:59:59Z")) });
            assert!(!changed.used_up);
        }
        let refused = pass(&unused, &product(None), &mars(), MIDNIGHT).unwrap_err().to_string();
        assert!(refused.contains("unknown time zone \"Mars Standard Time\""), "{refused}");
    }

    #[test]
    fn a_time_pass_is_used_up_when_used_or_with_no_uses_left() {
        let time_pass = product(Some(600));
        for (changes, used_up) in [
            (json!({}), false),
            (json!({"RemainingUses": 3}), false),
            (json!({"RemainingUses": 0}), true),
            (json!({"Used": true, "UsedDate": "2025-07-01T10:00:00Z"}), true),
        ] {
            let changed = event(pass(&pass_record(changes.clone()), &time_pass, &london(), MIDNIGHT));
            let Event::PassChanged(changed) = changed else { panic!() };
            assert_eq!(changed.used_up, used_up, "{changes}");
            assert!(matches!(changed.validity, PassValidity::Window { from: None, until: Some(_) }));
        }
        let missing = Err(Unnormalisable::new("TimePass 5 does not exist in Nexudus"));
        let refused = pass(&pass_record(json!({})), &missing, &london(), MIDNIGHT).unwrap_err().to_string();
        assert_eq!(refused, "TimePassId: TimePass 5 does not exist in Nexudus");
    }

    #[test]
    fn a_contract_holds_its_desks_and_offices_from_start_until_cancellation() {
        let record = json!({
            "Id": 90, "CoworkerId": 12, "Active": true, "StartDate": "2025-01-01T00:00:00Z",
            "CancellationDate": "2025-06-30T23:00:00Z", "CancellationDateLocal": "2025-07-01T00:00:00",
            "Desks": [{"Id": 21}, 20, 21], "UpdatedOn": "2025-06-20T10:00:00Z",
        });
        let contract_record = CoworkerContract::from_record(&record).unwrap();
        let desks = BTreeMap::from([(20, FloorPlanItemType::Office), (21, FloorPlanItemType::DedicatedDesk)]);
        let changed = event(contract(&contract_record, &desks, &london()));
        let expected = ContractChanged {
            member: MemberId(12),
            contract: ContractId(90),
            starts_at: at("2025-01-01T00:00:00Z"),
            ends_at: None,
            cancelled_at: Some(at("2025-06-30T23:00:00Z")),
            active: true,
            spaces: vec![
                FloorPlanItem { id: FloorPlanItemId(20), kind: FloorPlanItemKind::Office },
                FloorPlanItem { id: FloorPlanItemId(21), kind: FloorPlanItemKind::Desk },
            ],
        };
        assert_eq!(changed, Event::ContractChanged(expected));
        let missing_desk = contract(&contract_record, &BTreeMap::from([(20, FloorPlanItemType::Office)]), &london());
        assert!(missing_desk.unwrap_err().to_string().starts_with("Desks: floor-plan desk 21 does not exist"));
    }

    #[test]
    fn mappings_come_from_the_access_control_group_fields() {
        let resource = Resource::from_record(
            &json!({"Id": 3, "BusinessId": 1, "AccessControlGroupId": 77, "UpdatedOn": "2025-06-20T10:00:00Z"}),
        )
        .unwrap();
        let normalised = resource_mapping(&resource).unwrap();
        assert_eq!(normalised.holder, Some(Holder::Mapping));
        let expected = MappingChanged { source: MappingSource::Resource(ResourceId(3)), group: Some(KisiGroupId(77)) };
        assert_eq!(normalised.event, Some(Event::MappingChanged(expected)));

        let product =
            TimePass::from_record(&json!({"Id": 5, "KisiGroupId": "78", "UpdatedOn": "2025-06-20T10:00:00Z"})).unwrap();
        let expected =
            MappingChanged { source: MappingSource::PassProduct(PassProductId(5)), group: Some(KisiGroupId(78)) };
        assert_eq!(event(pass_product_mapping(&product)), Event::MappingChanged(expected));

        let unlinked =
            FloorPlanDesk::from_record(&json!({"Id": 20, "ItemType": 1, "UpdatedOn": "2025-06-20T10:00:00Z"})).unwrap();
        assert_eq!(desk_mapping(&unlinked).unwrap().holder, None);
        let wrong = FloorPlanDesk::from_record(
            &json!({"Id": 20, "ItemType": 1, "AccessControlGroupId": "lobby", "UpdatedOn": "2025-06-20T10:00:00Z"}),
        )
        .unwrap();
        assert!(desk_mapping(&wrong).unwrap_err().to_string().contains("\"lobby\" is not a Kisi group id"));
    }

    #[test]
    fn removals_take_back_what_the_holder_held() {
        let member = Holder::Member(MemberId(12));
        let cases = [
            (RecordKind::Coworker, member, Event::MemberRemoved(MemberRemoved { member: MemberId(12) })),
            (
                RecordKind::Booking,
                member,
                Event::BookingCancelled(BookingCancelled { member: MemberId(12), booking: BookingId(9) }),
            ),
            (
                RecordKind::CoworkerTimePass,
                member,
                Event::PassRemoved(PassRemoved { member: MemberId(12), pass: PassId(9) }),
            ),
            (
                RecordKind::CoworkerContract,
                member,
                Event::ContractRemoved(ContractRemoved { member: MemberId(12), contract: ContractId(9) }),
            ),
            (
                RecordKind::FloorPlanDesk,
                Holder::Mapping,
                Event::MappingChanged(MappingChanged {
                    source: MappingSource::FloorPlanItem(FloorPlanItemId(9)),
                    group: None,
                }),
            ),
        ];
        for (kind, holder, expected) in cases {
            assert_eq!(removal(RecordKey::new(kind, 9), holder), Some(expected));
        }
        assert_eq!(removal(RecordKey::new(RecordKind::Booking, 9), Holder::Mapping), None);
    }

    fn zone(windows: &str) -> LocationZone {
        LocationZone::Known(Zone::from_windows(windows).unwrap())
    }

    fn pass_until(expire_date: &str, location: &LocationZone) -> Result<Option<Timestamp>, Unnormalisable> {
        let record = pass_record(json!({"ExpireDate": expire_date}));
        let Event::PassChanged(changed) = event(pass(&record, &product(Some(600)), location, MIDNIGHT)) else {
            panic!()
        };
        match changed.validity {
            PassValidity::Window { until, .. } => Ok(until),
            PassValidity::Day { .. } => panic!("a time pass has a window"),
        }
    }

    #[test]
    fn an_expire_date_without_a_time_ends_with_that_day_at_the_location() {
        // The same date means the end of the 1st on each location's own wall clock.
        for (windows, end) in [
            ("AUS Eastern Standard Time", "2025-07-01T14:00:00Z"),
            ("Pacific Standard Time", "2025-07-02T07:00:00Z"),
            ("GMT Standard Time", "2025-07-01T23:00:00Z"),
        ] {
            assert_eq!(pass_until("2025-07-01", &zone(windows)).unwrap(), Some(at(end)), "{windows}");
        }
        // A date-time is an instant, whatever the location.
        let instant = pass_until("2025-07-01T13:59:59Z", &zone("AUS Eastern Standard Time")).unwrap();
        assert_eq!(instant, Some(at("2025-07-01T13:59:59Z")));
        // On the day the clocks go back in London the day has 25 hours, and all of it counts.
        assert_eq!(pass_until("2025-10-26", &london()).unwrap(), Some(at("2025-10-27T00:00:00Z")));
    }

    #[test]
    fn a_date_without_a_time_and_no_location_to_place_it_grants_nothing() {
        let record = pass_record(json!({"ExpireDate": "2025-07-01"}));
        let refused = pass(&record, &product(Some(600)), &LocationZone::Unnamed, MIDNIGHT).unwrap_err().to_string();
        assert!(refused.starts_with("ExpireDate: 2025-07-01 is a date without a time"), "{refused}");
    }

    #[test]
    fn a_contract_s_dates_without_a_time_run_from_the_start_of_the_first_day_to_the_end_of_the_last() {
        let record = json!({
            "Id": 90, "CoworkerId": 12, "Active": true, "StartDate": "2025-03-30",
            "CancellationDate": "2025-06-30", "Desks": [20], "UpdatedOn": "2025-06-20T10:00:00Z",
        });
        let contract_record = CoworkerContract::from_record(&record).unwrap();
        let desks = BTreeMap::from([(20, FloorPlanItemType::Office)]);
        let Event::ContractChanged(changed) = event(contract(&contract_record, &desks, &zone("Pacific Standard Time")))
        else {
            panic!()
        };
        assert_eq!(changed.starts_at, at("2025-03-30T07:00:00Z"), "midnight in San Francisco");
        assert_eq!(changed.cancelled_at, Some(at("2025-07-01T07:00:00Z")), "the 30th counts to its end");
    }

    fn used_day_pass(used_at: &str, location: &LocationZone, cutoff: (u8, u8)) -> PassValidity {
        let record = pass_record(json!({"Used": true, "UsedDate": used_at}));
        let Event::PassChanged(changed) = event(pass(&record, &product(None), location, cutoff)) else { panic!() };
        changed.validity
    }

    fn window(from: &str, until: &str) -> PassValidity {
        PassValidity::Window { from: Some(at(from)), until: Some(at(until)) }
    }

    #[test]
    fn a_day_pass_runs_from_the_location_s_cutoff_to_the_next_across_a_change_of_the_clocks() {
        let three = (3, 0);
        // A plain day in London: 03:00 BST to 03:00 BST.
        assert_eq!(
            used_day_pass("2025-07-01T09:00:00Z", &london(), three),
            window("2025-07-01T02:00:00Z", "2025-07-02T02:00:00Z")
        );
        // Used at 01:30 on the night the clocks go back (01:30 shows twice): the day before's
        // pass day, 03:00 BST to 03:00 GMT, 25 hours.
        for used in ["2025-10-26T00:30:00Z", "2025-10-26T01:30:00Z"] {
            assert_eq!(
                used_day_pass(used, &london(), three),
                window("2025-10-25T02:00:00Z", "2025-10-26T03:00:00Z"),
                "{used}"
            );
        }
        // Used at 01:30 on the night Sydney's clocks go forward (02:00 to 03:00): 23 hours.
        assert_eq!(
            used_day_pass("2025-10-04T15:30:00Z", &zone("AUS Eastern Standard Time"), three),
            window("2025-10-03T17:00:00Z", "2025-10-04T16:00:00Z")
        );
        // At the default midnight cutoff a used day pass stays a calendar day in its zone.
        let midnight = used_day_pass("2025-10-26T00:30:00Z", &london(), MIDNIGHT);
        assert!(matches!(midnight, PassValidity::Day { .. }), "{midnight:?}");
    }
}
