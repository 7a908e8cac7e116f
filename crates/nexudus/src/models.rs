//! The Nexudus entities doorsync reads, with the fields it needs (reference §2).
//!
//! Each model is read from a record by [`Entity::from_record`]: fields the model cannot do
//! without are required (a record lacking one is a [`MalformedRecord`]), everything else is
//! optional, and fields this client does not know are ignored. Date-times stay as written
//! ([`NexudusDateTime`]): see [`crate::datetime`] for how to read UTC instants and `...Local`
//! wall clocks.

use serde_json::Value;

use crate::datetime::NexudusDateTime;
use crate::record::{Fields, MalformedRecord};
use crate::webhook::WebhookAction;

/// A kind of Nexudus record the client can list and fetch.
pub trait Entity: Sized + Send + 'static {
    /// Nexudus's name for the entity, as used in filters: `from_{NAME}_UpdatedOn`.
    const NAME: &'static str;
    /// Where it lives below `/api/`, e.g. `spaces/bookings`.
    const PATH: &'static str;

    /// Reads one record (a JSON object).
    fn from_record(record: &Value) -> Result<Self, MalformedRecord>;

    /// The record's `Id`.
    fn id(&self) -> u64;
}

macro_rules! entity {
    ($model:ident, $name:literal, $path:literal, |$fields:ident| $build:expr) => {
        impl Entity for $model {
            const NAME: &'static str = $name;
            const PATH: &'static str = $path;

            fn from_record(record: &Value) -> Result<Self, MalformedRecord> {
                let $fields = Fields::of(Self::NAME, record)?;
                $build
            }

            fn id(&self) -> u64 {
                self.id
            }
        }
    };
}

/// A customer (member or contact): `/api/spaces/coworkers`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Coworker {
    pub id: u64,
    pub unique_id: Option<String>,
    pub full_name: String,
    /// How the Kisi user is found; a customer without one cannot be given a Kisi user.
    pub email: Option<String>,
    /// Nexudus's active flag (suspended customers are not active, reference §2.1).
    pub active: bool,
    pub archived: bool,
    /// `None`: the record has no portal user (a contact rather than a member).
    pub user_id: Option<u64>,
    /// The locations the customer belongs to; only sent when the coworker is fetched by id.
    pub business_ids: Option<Vec<u64>>,
    pub invoicing_business_id: Option<u64>,
    /// From the comma-separated `CoworkerContractIds`.
    pub coworker_contract_ids: Vec<u64>,
    pub updated_on: Option<NexudusDateTime>,
}

entity!(Coworker, "Coworker", "spaces/coworkers", |fields| Ok(Coworker {
    id: fields.id(),
    unique_id: fields.optional_string("UniqueId")?,
    full_name: fields.required_string("FullName")?,
    email: fields.optional_string("Email")?,
    active: fields.required_bool("Active")?,
    archived: fields.optional_bool("Archived")?.unwrap_or(false),
    user_id: fields.optional_u64("UserId")?,
    business_ids: fields.optional_id_list("Businesses")?,
    invoicing_business_id: fields.optional_u64("InvoicingBusinessId")?,
    coworker_contract_ids: fields.comma_separated_ids("CoworkerContractIds")?,
    updated_on: fields.optional_datetime("UpdatedOn")?,
}));

/// A location: `/api/sys/businesses`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Business {
    pub id: u64,
    pub name: String,
    /// The location's [`SimpleTimeZone`] record.
    pub simple_time_zone_id: Option<u64>,
    /// The Windows zone id, if the record carries it by name (not documented; see
    /// [`Business::windows_time_zone`]).
    pub simple_time_zone_name: Option<String>,
    /// The parent location in a network of locations.
    pub root_location_id: Option<u64>,
    pub suspended: bool,
    pub updated_on: Option<NexudusDateTime>,
}

entity!(Business, "Business", "sys/businesses", |fields| Ok(Business {
    id: fields.id(),
    name: fields.required_string("Name")?,
    simple_time_zone_id: fields.optional_u64("SimpleTimeZoneId")?,
    simple_time_zone_name: fields.optional_string("SimpleTimeZoneName")?,
    root_location_id: fields.optional_u64("RootLocationId")?,
    suspended: fields.optional_bool("Suspended")?.unwrap_or(false),
    updated_on: fields.optional_datetime("UpdatedOn")?,
}));

impl Business {
    /// The location's Windows time zone id ("GMT Standard Time"): its own
    /// `SimpleTimeZoneName` when present, else the `Name` of its [`SimpleTimeZone`] in `zones`.
    /// Map it to IANA before doing date arithmetic.
    pub fn windows_time_zone<'a>(&'a self, zones: &'a [SimpleTimeZone]) -> Option<&'a str> {
        self.simple_time_zone_name.as_deref().or_else(|| {
            let zone_id = self.simple_time_zone_id?;
            zones.iter().find(|zone| zone.id == zone_id).map(|zone| zone.name.as_str())
        })
    }
}

/// A time zone as Nexudus names it: `/api/sys/simpletimezones`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimpleTimeZone {
    pub id: u64,
    /// The Windows zone id, e.g. "GMT Standard Time".
    pub name: String,
    pub description: Option<String>,
    /// The standard offset as Nexudus writes it, e.g. "0:00"; informational (no DST).
    pub time_offset: Option<String>,
    pub uses_summer_time: Option<bool>,
}

entity!(SimpleTimeZone, "SimpleTimeZone", "sys/simpletimezones", |fields| Ok(SimpleTimeZone {
    id: fields.id(),
    name: fields.required_string("Name")?,
    description: fields.optional_string("Description")?,
    time_offset: fields.optional_string("TimeOffset")?,
    uses_summer_time: fields.optional_bool("UsesSummerTime")?,
}));

/// A bookable room, booth or space: `/api/spaces/resources`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    pub id: u64,
    /// The location, whose time zone applies to the resource's bookings.
    pub business_id: u64,
    pub name: Option<String>,
    pub resource_type_id: Option<u64>,
    /// Nexudus's own link to an access-control group, if the operator set one.
    pub access_control_group_id: Option<String>,
    pub kisi_group_id: Option<String>,
    pub archived: bool,
    pub updated_on: Option<NexudusDateTime>,
}

entity!(Resource, "Resource", "spaces/resources", |fields| Ok(Resource {
    id: fields.id(),
    business_id: fields.required_u64("BusinessId")?,
    name: fields.optional_string("Name")?,
    resource_type_id: fields.optional_u64("ResourceTypeId")?,
    access_control_group_id: fields.optional_external_id("AccessControlGroupId")?,
    kisi_group_id: fields.optional_external_id("KisiGroupId")?,
    archived: fields.optional_bool("Archived")?.unwrap_or(false),
    updated_on: fields.optional_datetime("UpdatedOn")?,
}));

/// A booking of a resource: `/api/spaces/bookings`.
///
/// There is no "cancelled" flag: a cancelled booking leaves this list and appears as a
/// [`CancelledBooking`] (reference §2.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Booking {
    pub id: u64,
    pub resource_id: u64,
    /// Bookings need not be for a customer; those grant nothing.
    pub coworker_id: Option<u64>,
    pub floor_plan_desk_id: Option<u64>,
    /// The start, as an instant (UTC in the admin API: read it with
    /// [`NexudusDateTime::to_utc`]).
    pub from_time: NexudusDateTime,
    pub to_time: NexudusDateTime,
    /// The start on the location's wall clock (read it with [`NexudusDateTime::wall_clock`]).
    pub from_time_local: Option<NexudusDateTime>,
    pub to_time_local: Option<NexudusDateTime>,
    /// Awaiting an administrator's approval; grants nothing until confirmed.
    pub tentative: bool,
    pub updated_on: Option<NexudusDateTime>,
}

entity!(Booking, "Booking", "spaces/bookings", |fields| Ok(Booking {
    id: fields.id(),
    resource_id: fields.required_u64("ResourceId")?,
    coworker_id: fields.optional_u64("CoworkerId")?,
    floor_plan_desk_id: fields.optional_u64("FloorPlanDeskId")?,
    from_time: fields.required_datetime("FromTime")?,
    to_time: fields.required_datetime("ToTime")?,
    from_time_local: fields.optional_datetime("FromTimeLocal")?,
    to_time_local: fields.optional_datetime("ToTimeLocal")?,
    tentative: fields.required_bool("Tentative")?,
    updated_on: fields.optional_datetime("UpdatedOn")?,
}));

/// The snapshot Nexudus keeps of a cancelled booking: `/api/spaces/cancelledbookings`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CancelledBooking {
    /// The snapshot's own id.
    pub id: u64,
    /// The id the booking had while it was live.
    pub original_booking_id: u64,
    pub coworker_id: Option<u64>,
    pub resource_id: Option<u64>,
    pub from_time: Option<NexudusDateTime>,
    pub to_time: Option<NexudusDateTime>,
    pub cancelled_on: Option<NexudusDateTime>,
    /// 0 Unknown, 1 NoLongerNeeded, ... 8 NotCheckedIn, 9 MarketPlace.
    pub cancellation_reason: Option<u64>,
    pub updated_on: Option<NexudusDateTime>,
}

entity!(CancelledBooking, "CancelledBooking", "spaces/cancelledbookings", |fields| Ok(CancelledBooking {
    id: fields.id(),
    original_booking_id: fields.required_u64("OriginalBookingId")?,
    coworker_id: fields.optional_u64("CoworkerId")?,
    resource_id: fields.optional_u64("ResourceId")?,
    from_time: fields.optional_datetime("FromTime")?,
    to_time: fields.optional_datetime("ToTime")?,
    cancelled_on: fields.optional_datetime("CancelledOn")?,
    cancellation_reason: fields.optional_u64("CancellationReason")?,
    updated_on: fields.optional_datetime("UpdatedOn")?,
}));

/// A pass product: `/api/billing/timepasses`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimePass {
    pub id: u64,
    pub name: Option<String>,
    pub business_id: Option<u64>,
    /// The locations where it is valid; only sent when fetched by id.
    pub business_ids: Option<Vec<u64>>,
    /// `None` for a day pass (valid for one calendar day); set for a time pass.
    pub minutes_included: Option<i64>,
    pub access_control_group_id: Option<String>,
    pub kisi_group_id: Option<String>,
    pub archived: bool,
    pub updated_on: Option<NexudusDateTime>,
}

entity!(TimePass, "TimePass", "billing/timepasses", |fields| Ok(TimePass {
    id: fields.id(),
    name: fields.optional_string("Name")?,
    business_id: fields.optional_u64("BusinessId")?,
    business_ids: fields.optional_id_list("Businesses")?,
    minutes_included: fields.optional_i64("MinutesIncluded")?,
    access_control_group_id: fields.optional_external_id("AccessControlGroupId")?,
    kisi_group_id: fields.optional_external_id("KisiGroupId")?,
    archived: fields.optional_bool("Archived")?.unwrap_or(false),
    updated_on: fields.optional_datetime("UpdatedOn")?,
}));

impl TimePass {
    /// A day pass is valid for one calendar day in the location's zone (from its daily cutoff).
    pub fn is_day_pass(&self) -> bool {
        self.minutes_included.is_none()
    }
}

/// A pass held by a customer: `/api/billing/coworkertimepasses`.
///
/// There is no "valid from": an unused pass is an entitlement until `expire_date`; once used,
/// a day pass covers the day of `used_date` (reference §2.6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoworkerTimePass {
    pub id: u64,
    pub coworker_id: u64,
    /// The [`TimePass`] product.
    pub time_pass_id: u64,
    pub business_id: Option<u64>,
    pub time_pass_name: Option<String>,
    pub used: bool,
    pub checked_in: Option<bool>,
    pub used_date: Option<NexudusDateTime>,
    pub expire_date: Option<NexudusDateTime>,
    pub remaining_uses: Option<i64>,
    pub total_uses: Option<i64>,
    pub updated_on: Option<NexudusDateTime>,
}

entity!(CoworkerTimePass, "CoworkerTimePass", "billing/coworkertimepasses", |fields| Ok(CoworkerTimePass {
    id: fields.id(),
    coworker_id: fields.required_u64("CoworkerId")?,
    time_pass_id: fields.required_u64("TimePassId")?,
    business_id: fields.optional_u64("BusinessId")?,
    time_pass_name: fields.optional_string("TimePassName")?,
    used: fields.required_bool("Used")?,
    checked_in: fields.optional_bool("CheckedIn")?,
    used_date: fields.optional_datetime("UsedDate")?,
    expire_date: fields.optional_datetime("ExpireDate")?,
    remaining_uses: fields.optional_i64("RemainingUses")?,
    total_uses: fields.optional_i64("TotalUses")?,
    updated_on: fields.optional_datetime("UpdatedOn")?,
}));

/// A customer's plan: `/api/billing/coworkercontracts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoworkerContract {
    pub id: u64,
    pub coworker_id: u64,
    pub tariff_id: Option<u64>,
    pub tariff_name: Option<String>,
    /// The location that issued it.
    pub issued_by_id: Option<u64>,
    pub start_date: NexudusDateTime,
    pub start_date_local: Option<NexudusDateTime>,
    pub renewal_date: Option<NexudusDateTime>,
    /// When the contract ends, if it was cancelled; there is no other end date.
    pub cancellation_date: Option<NexudusDateTime>,
    pub cancellation_date_local: Option<NexudusDateTime>,
    pub active: bool,
    pub cancelled: bool,
    pub main_contract: Option<bool>,
    /// `Desks`: the floor-plan desks and offices; only sent when fetched by id.
    pub desks: Option<Vec<u64>>,
    /// The comma-separated `FloorPlanDeskIds` mirror that list records carry.
    pub floor_plan_desk_ids: Vec<u64>,
    pub updated_on: Option<NexudusDateTime>,
}

entity!(CoworkerContract, "CoworkerContract", "billing/coworkercontracts", |fields| Ok(CoworkerContract {
    id: fields.id(),
    coworker_id: fields.required_u64("CoworkerId")?,
    tariff_id: fields.optional_u64("TariffId")?,
    tariff_name: fields.optional_string("TariffName")?,
    issued_by_id: fields.optional_u64("IssuedById")?,
    start_date: fields.required_datetime("StartDate")?,
    start_date_local: fields.optional_datetime("StartDateLocal")?,
    renewal_date: fields.optional_datetime("RenewalDate")?,
    cancellation_date: fields.optional_datetime("CancellationDate")?,
    cancellation_date_local: fields.optional_datetime("CancellationDateLocal")?,
    active: fields.required_bool("Active")?,
    cancelled: fields.optional_bool("Cancelled")?.unwrap_or(false),
    main_contract: fields.optional_bool("MainContract")?,
    desks: fields.optional_id_list("Desks")?,
    floor_plan_desk_ids: fields.comma_separated_ids("FloorPlanDeskIds")?,
    updated_on: fields.optional_datetime("UpdatedOn")?,
}));

impl CoworkerContract {
    /// The contract's desks and offices: `Desks` when the record has it (fetched by id), else
    /// the `FloorPlanDeskIds` mirror.
    pub fn desk_ids(&self) -> &[u64] {
        self.desks.as_deref().unwrap_or(&self.floor_plan_desk_ids)
    }
}

/// What a floor-plan unit is (`ItemType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FloorPlanItemType {
    Office,
    DedicatedDesk,
    HotDesk,
    Other,
    Room,
    /// A value this client does not know.
    Unknown(u64),
}

impl FloorPlanItemType {
    pub fn from_code(code: u64) -> Self {
        match code {
            1 => Self::Office,
            2 => Self::DedicatedDesk,
            3 => Self::HotDesk,
            4 => Self::Other,
            5 => Self::Room,
            other => Self::Unknown(other),
        }
    }
}

/// A desk or office on a floor plan: `/api/sys/floorplandesks`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FloorPlanDesk {
    pub id: u64,
    pub name: Option<String>,
    pub item_type: FloorPlanItemType,
    pub floor_plan_id: Option<u64>,
    /// The location (`FloorPlanBusinessId`).
    pub business_id: Option<u64>,
    /// The customer a dedicated desk or office is assigned to.
    pub coworker_id: Option<u64>,
    /// The bookable resource linked to the unit, if any.
    pub resource_id: Option<u64>,
    pub access_control_group_id: Option<String>,
    /// From the comma-separated `CoworkerContractIds`.
    pub coworker_contract_ids: Vec<u64>,
    pub available: Option<bool>,
    pub updated_on: Option<NexudusDateTime>,
}

entity!(FloorPlanDesk, "FloorPlanDesk", "sys/floorplandesks", |fields| Ok(FloorPlanDesk {
    id: fields.id(),
    name: fields.optional_string("Name")?,
    item_type: FloorPlanItemType::from_code(fields.required_u64("ItemType")?),
    floor_plan_id: fields.optional_u64("FloorPlanId")?,
    business_id: fields.optional_u64("FloorPlanBusinessId")?,
    coworker_id: fields.optional_u64("CoworkerId")?,
    resource_id: fields.optional_u64("ResourceId")?,
    access_control_group_id: fields.optional_external_id("AccessControlGroupId")?,
    coworker_contract_ids: fields.comma_separated_ids("CoworkerContractIds")?,
    available: fields.optional_bool("Available")?,
    updated_on: fields.optional_datetime("UpdatedOn")?,
}));

/// A registered webhook: `/api/sys/webhooks`. Nexudus turns `active` off by itself after ten
/// consecutive failed deliveries, and tells nobody.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    pub id: u64,
    pub business_id: Option<u64>,
    pub name: Option<String>,
    pub action: WebhookAction,
    pub url: Option<String>,
    pub active: bool,
    pub error_count: Option<i64>,
    pub last_error: Option<String>,
    pub last_trigger: Option<NexudusDateTime>,
}

entity!(Webhook, "WebHook", "sys/webhooks", |fields| Ok(Webhook {
    id: fields.id(),
    business_id: fields.optional_u64("BusinessId")?,
    name: fields.optional_string("Name")?,
    action: WebhookAction::from_code(fields.required_u64("Action")?),
    url: fields.optional_string("URL")?,
    active: fields.required_bool("Active")?,
    error_count: fields.optional_i64("ErrorCount")?,
    last_error: fields.optional_string("LastError")?,
    last_trigger: fields.optional_datetime("LastTrigger")?,
}));

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    #[test]
    fn a_booking_reads_its_times_and_ignores_unknown_fields() {
        let booking = Booking::from_record(&json!({
            "Id": 7, "ResourceId": 3, "CoworkerId": 12, "FromTime": "2025-07-01T08:00:00Z",
            "ToTime": "2025-07-01T09:00:00Z", "FromTimeLocal": "2025-07-01T09:00:00",
            "Tentative": false, "SomethingNew": [1, 2], "Online": true
        }))
        .unwrap();
        assert_eq!(booking.id, 7);
        assert_eq!(booking.coworker_id, Some(12));
        assert_eq!(booking.from_time.to_utc().unwrap().as_unix_millis(), 1_751_356_800_000);
        assert_eq!(booking.from_time_local.unwrap().wall_clock().hour(), 9);
        assert_eq!(booking.to_time_local, None);
    }

    #[test]
    fn a_missing_required_field_names_entity_id_and_field() {
        let error =
            Booking::from_record(&json!({"Id": 7, "ResourceId": 3, "ToTime": "2025-07-01T09:00:00Z"})).unwrap_err();
        assert_eq!((error.entity, error.id, error.field.as_str()), ("Booking", Some(7), "FromTime"));
        assert_eq!(error.to_string(), "nexudus: Booking 7 is malformed: FromTime: is missing");
    }

    #[test]
    fn a_wrongly_typed_field_is_reported_without_its_value() {
        let error =
            Coworker::from_record(&json!({"Id": 5, "FullName": "Ada", "Email": "ada@example.com", "Active": "yes"}))
                .unwrap_err();
        assert_eq!(error.field, "Active");
        let shown = format!("{error} {error:?}");
        assert!(!shown.contains("ada@example.com") && !shown.contains("Ada"), "{shown}");
    }

    #[test]
    fn contracts_take_desks_from_the_full_record_or_the_comma_mirror() {
        let listed = CoworkerContract::from_record(&json!({
            "Id": 1, "CoworkerId": 2, "StartDate": "2025-01-01T00:00:00Z", "Active": true, "FloorPlanDeskIds": "4, 5"
        }))
        .unwrap();
        assert_eq!(listed.desk_ids(), &[4, 5]);
        let fetched = CoworkerContract::from_record(&json!({
            "Id": 1, "CoworkerId": 2, "StartDate": "2025-01-01T00:00:00Z", "Active": true,
            "FloorPlanDeskIds": "4", "Desks": [{"Id": 4}, 6]
        }))
        .unwrap();
        assert_eq!(fetched.desk_ids(), &[4, 6]);
    }

    #[test]
    fn a_business_finds_its_windows_zone_by_name_or_through_the_zone_table() {
        let zones = [SimpleTimeZone {
            id: 2023,
            name: "GMT Standard Time".into(),
            description: None,
            time_offset: Some("0:00".into()),
            uses_summer_time: Some(true),
        }];
        let by_id = Business::from_record(&json!({"Id": 1, "Name": "Soho", "SimpleTimeZoneId": 2023})).unwrap();
        assert_eq!(by_id.windows_time_zone(&zones), Some("GMT Standard Time"));
        let by_name = Business::from_record(
            &json!({"Id": 1, "Name": "NYC", "SimpleTimeZoneId": 9, "SimpleTimeZoneName": "Eastern Standard Time"}),
        )
        .unwrap();
        assert_eq!(by_name.windows_time_zone(&zones), Some("Eastern Standard Time"));
    }

    #[test]
    fn group_ids_may_be_numbers_or_text() {
        let resource =
            Resource::from_record(&json!({"Id": 1, "BusinessId": 2, "AccessControlGroupId": 42, "KisiGroupId": ""}))
                .unwrap();
        assert_eq!(resource.access_control_group_id.as_deref(), Some("42"));
        assert_eq!(resource.kisi_group_id, None);
    }

    fn arbitrary_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            "[0-9T:.Z+-]{0,25}".prop_map(Value::from),
            ".{0,12}".prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                prop::collection::btree_map(
                    prop_oneof![
                        Just("Id".to_owned()),
                        Just("FromTime".to_owned()),
                        Just("Desks".to_owned()),
                        Just("Active".to_owned()),
                        Just("FloorPlanDeskIds".to_owned()),
                        "[A-Za-z]{1,12}"
                    ],
                    inner,
                    0..8
                )
                .prop_map(|map| Value::Object(map.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn reading_any_json_never_panics(record in arbitrary_json()) {
            let _ = Coworker::from_record(&record);
            let _ = Business::from_record(&record);
            let _ = SimpleTimeZone::from_record(&record);
            let _ = Resource::from_record(&record);
            let _ = Booking::from_record(&record);
            let _ = CancelledBooking::from_record(&record);
            let _ = TimePass::from_record(&record);
            let _ = CoworkerTimePass::from_record(&record);
            let _ = CoworkerContract::from_record(&record);
            let _ = FloorPlanDesk::from_record(&record);
            let _ = Webhook::from_record(&record);
        }

        #[test]
        fn every_field_of_a_readable_booking_survives(
            id in 0..u64::MAX, resource in 0..u64::MAX, tentative in any::<bool>(), minutes in 0i64..10_000_000,
        ) {
            let from = doorsync_proto::Timestamp::from_unix_millis(minutes * 60_000);
            let from_text = NexudusDateTime::from_utc(from).unwrap().to_string();
            let booking = Booking::from_record(&json!({
                "Id": id, "ResourceId": resource, "FromTime": from_text, "ToTime": from_text, "Tentative": tentative
            })).unwrap();
            prop_assert_eq!(booking.id, id);
            prop_assert_eq!(booking.resource_id, resource);
            prop_assert_eq!(booking.tentative, tentative);
            prop_assert_eq!(booking.from_time.to_utc(), Some(from));
        }
    }
}
