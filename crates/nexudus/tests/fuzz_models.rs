//! Fuzzing the Nexudus JSON models: every record, however malformed, is read or refused with a
//! [`MalformedRecord`] that names its entity, its id when it has one, and the field at fault
//! (never its value); and a page parks only its malformed records and reads all the others.
//!
//! Records start from a valid template per entity and are mutated field by field (a field's type
//! changed, removed, a huge number, text where a number goes, dates with stray characters, deep
//! nesting), so the field an error must name is known. Pages are served by the Nexudus simulator
//! over loopback HTTP and read with the real client. Webhook bodies and date-times are fuzzed too.
//!
//! Each property runs a fixed number of cases, enough for CI to finish in seconds; set
//! `PROPTEST_CASES` for a longer run (`just fuzz` does), and `PROPTEST_RNG_SEED` to replay one.

use std::collections::BTreeSet;
use std::error::Error;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use doorsync_clock::ManualClock;
use doorsync_nexudus::webhook::{PayloadError, parse_body};
use doorsync_nexudus::{
    AuthMode, Booking, Business, CancelledBooking, Coworker, CoworkerContract, CoworkerTimePass, Credentials, Entity,
    FloorPlanDesk, Limits, ListQuery, MalformedRecord, NexudusClient, NexudusDateTime, NexudusOptions, Resource,
    Secret, SimpleTimeZone, TimePass, Webhook,
};
use doorsync_nexudus_sim::{NexudusSimulator, SimEntity, SimOptions};
use doorsync_proto::Timestamp;
use proptest::prelude::*;
use proptest::sample::{Index, select};
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{Map, Value, json};

type TestResult<T = ()> = Result<T, Box<dyn Error>>;

/// Cases per property when `PROPTEST_CASES` is not set: a few seconds in a debug build.
const DEFAULT_CASES: u32 = 2_000;
/// Each page case starts a simulator and makes HTTP requests: fewer of them.
const DEFAULT_PAGE_CASES: u32 = 150;

/// `PROPTEST_CASES` when set (proptest reads it only when a test names no case count of its own),
/// else `default_cases`. Failures are not persisted to files: a found input is kept as a named
/// regression test below instead.
fn fuzz_config(default_cases: u32) -> Config {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|cases| cases.parse().ok()).unwrap_or(default_cases);
    Config { cases, failure_persistence: None, ..Config::default() }
}

fn fuzz<S: Strategy>(strategy: S, cases: u32, check: impl Fn(S::Value) -> Result<(), TestCaseError>) -> TestResult {
    TestRunner::new(fuzz_config(cases)).run(&strategy, check).map_err(|error| error.to_string().into())
}

/// Personal data in the templates: an error or its `Debug` must never show them.
const PERSONAL: [&str; 3] = ["Ada Lovelace", "ada.lovelace@example.com", "Analytical Engine Ltd"];

/// One entity: a valid record with every field the model reads, and how to read one.
struct Model {
    name: &'static str,
    template: Value,
    /// The model read from a record, shown with `Debug` so that readings compare.
    read: fn(&Value) -> Result<String, MalformedRecord>,
}

fn reader<E: Entity + Debug>(record: &Value) -> Result<String, MalformedRecord> {
    E::from_record(record).map(|model| format!("{model:?}"))
}

fn models() -> Vec<Model> {
    let at = "2025-07-01T08:00:00Z";
    vec![
        Model {
            name: Coworker::NAME,
            template: json!({"Id": 101, "UniqueId": "0f6b", "FullName": PERSONAL[0], "Email": PERSONAL[1],
                "Active": true, "Archived": false, "UserId": 7, "Businesses": [1, {"Id": 2}],
                "InvoicingBusinessId": 1, "CoworkerContractIds": "3, 4", "UpdatedOn": at}),
            read: reader::<Coworker>,
        },
        Model {
            name: Business::NAME,
            template: json!({"Id": 1, "Name": PERSONAL[2], "SimpleTimeZoneId": 9,
                "SimpleTimeZoneName": "GMT Standard Time", "RootLocationId": 1, "Suspended": false, "UpdatedOn": at}),
            read: reader::<Business>,
        },
        Model {
            name: SimpleTimeZone::NAME,
            template: json!({"Id": 9, "Name": "GMT Standard Time", "Description": "London", "TimeOffset": "0:00",
                "UsesSummerTime": true}),
            read: reader::<SimpleTimeZone>,
        },
        Model {
            name: Resource::NAME,
            template: json!({"Id": 5, "BusinessId": 1, "Name": "Room A", "ResourceTypeId": 2,
                "AccessControlGroupId": "42", "KisiGroupId": 43, "Archived": false, "UpdatedOn": at}),
            read: reader::<Resource>,
        },
        Model {
            name: Booking::NAME,
            template: json!({"Id": 7, "ResourceId": 5, "CoworkerId": 101, "FloorPlanDeskId": 3,
                "FromTime": at, "ToTime": "2025-07-01T09:00:00.7961262", "FromTimeLocal": "2025-07-01T09:00:00",
                "ToTimeLocal": "2025-07-01T10:00:00+01:00", "Tentative": false, "UpdatedOn": at}),
            read: reader::<Booking>,
        },
        Model {
            name: CancelledBooking::NAME,
            template: json!({"Id": 8, "OriginalBookingId": 7, "CoworkerId": 101, "ResourceId": 5, "FromTime": at,
                "ToTime": "2025-07-01T09:00", "CancelledOn": "2015-09-11T21:59:59 UTC", "CancellationReason": 1,
                "UpdatedOn": at}),
            read: reader::<CancelledBooking>,
        },
        Model {
            name: TimePass::NAME,
            template: json!({"Id": 11, "Name": "Day pass", "BusinessId": 1, "Businesses": [{"Id": 1}],
                "MinutesIncluded": 600, "AccessControlGroupId": 44, "KisiGroupId": "45", "Archived": false,
                "UpdatedOn": at}),
            read: reader::<TimePass>,
        },
        Model {
            name: CoworkerTimePass::NAME,
            template: json!({"Id": 12, "CoworkerId": 101, "TimePassId": 11, "BusinessId": 1,
                "TimePassName": "Day pass", "Used": true, "CheckedIn": false, "UsedDate": "2025-07-01",
                "ExpireDate": at, "RemainingUses": 0, "TotalUses": 1, "UpdatedOn": at}),
            read: reader::<CoworkerTimePass>,
        },
        Model {
            name: CoworkerContract::NAME,
            template: json!({"Id": 13, "CoworkerId": 101, "TariffId": 2, "TariffName": "Resident",
                "IssuedById": 1, "StartDate": at, "StartDateLocal": "2025-07-01T09:00:00", "RenewalDate": at,
                "CancellationDate": at, "CancellationDateLocal": at, "Active": true, "Cancelled": false,
                "MainContract": true, "Desks": [3, {"Id": 4}], "FloorPlanDeskIds": "3,4", "UpdatedOn": at}),
            read: reader::<CoworkerContract>,
        },
        Model {
            name: FloorPlanDesk::NAME,
            template: json!({"Id": 3, "Name": "Desk 3", "ItemType": 2, "FloorPlanId": 1,
                "FloorPlanBusinessId": 1, "CoworkerId": 101, "ResourceId": 5, "AccessControlGroupId": "46",
                "CoworkerContractIds": "13", "Available": false, "UpdatedOn": at}),
            read: reader::<FloorPlanDesk>,
        },
        Model {
            name: Webhook::NAME,
            template: json!({"Id": 14, "BusinessId": 1, "Name": "doorsync", "Action": 61,
                "URL": "https://doorsync.example.com/webhooks/nexudus/AccessControlUpdate", "Active": true,
                "ErrorCount": 0, "LastError": "timed out", "LastTrigger": at}),
            read: reader::<Webhook>,
        },
    ]
}

/// Text that looks like a date-time, an id, a list of ids or nothing, with stray characters
/// (multi-byte ones included) wherever they can go.
fn tricky_text() -> impl Strategy<Value = String> {
    const DATE_TIME: &str = "-?[0-9]{1,5}-[0-9]{1,2}-[0-9]{1,2}(T[0-9]{1,2}:[0-9]{1,2}(:[0-9]{1,2}(\\.[0-9]{1,9})?)?)?\
                             (Z|z| UTC|[+-][0-9]{1,2}:[0-9]{1,2}|[+-][0-9]{4}|)";
    prop_oneof![
        DATE_TIME,
        (DATE_TIME, "\\PC{0,6}", any::<Index>()).prop_map(|(text, stray, at)| {
            // Stray characters spliced in at a character boundary.
            let boundaries: Vec<usize> = text.char_indices().map(|(at, _)| at).chain([text.len()]).collect();
            let at = boundaries[at.index(boundaries.len())];
            format!("{}{stray}{}", &text[..at], &text[at..])
        }),
        "[0-9, ]{0,12}|[0-9]{19,24}|-[0-9]{1,20}",
        "\\PC{0,24}",
        Just(String::new()),
        Just(" \t".to_owned()),
    ]
}

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        select(vec![0_u64, 1, u64::from(u32::MAX), 1 << 53, i64::MAX as u64, u64::MAX]).prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        select(vec![-1_i64, i64::MIN]).prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        select(vec![0.5_f64, -0.0, 1e19, 1.8446744073709552e19, 1e308, -1e308, 5e-324]).prop_map(Value::from),
        tricky_text().prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map(prop_oneof![Just("Id".to_owned()), "[A-Za-z]{1,8}"], inner, 0..4)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

/// A value nested `depth` levels inside arrays and objects (well within serde_json's recursion
/// limit of 128, which bounds what the client can receive).
fn nested(depth: usize, innermost: Value) -> Value {
    (0..depth).fold(innermost, |value, level| if level % 2 == 0 { json!([value]) } else { json!({"Id": value}) })
}

/// A change to one field of a record.
#[derive(Debug, Clone)]
enum FieldChange {
    Remove,
    Set(Value),
    Nest(usize),
}

fn field_change() -> impl Strategy<Value = FieldChange> {
    prop_oneof![
        1 => Just(FieldChange::Remove),
        6 => any_json().prop_map(FieldChange::Set),
        1 => (1_usize..100).prop_map(FieldChange::Nest),
    ]
}

/// `template` with the fields at `targets` changed; returns the record and the names of the
/// fields changed.
fn mutated(template: &Value, changes: &[(Index, FieldChange)]) -> (Value, BTreeSet<String>) {
    let mut record = template.as_object().cloned().unwrap_or_default();
    let names: Vec<String> = record.keys().cloned().collect();
    let mut changed = BTreeSet::new();
    for (which, change) in changes {
        let name = names[which.index(names.len())].clone();
        match change {
            FieldChange::Remove => {
                record.remove(&name);
            }
            FieldChange::Set(value) => {
                record.insert(name.clone(), value.clone());
            }
            FieldChange::Nest(depth) => {
                // The template's value, not one already nested: a page nested deeper than
                // serde_json's limit is unreadable as a whole, which Nexudus never comes near.
                let value = template.get(&name).cloned().unwrap_or(Value::Null);
                record.insert(name.clone(), nested(*depth, value));
            }
        }
        changed.insert(name);
    }
    (Value::Object(record), changed)
}

/// What a refusal must say: its entity, the record's id exactly when it has a readable one, the
/// field at fault (one of `suspects`, or the record as a whole), a problem, and nothing personal.
fn refusal_explains_itself(
    model: &Model,
    record: &Value,
    error: &MalformedRecord,
    suspects: &BTreeSet<String>,
) -> Result<(), TestCaseError> {
    let shown = format!("{error} {error:?}");
    prop_assert_eq!(error.entity, model.name, "{}", shown);
    let readable_id = record.get("Id").and_then(Value::as_u64);
    match error.field.as_str() {
        "record" => prop_assert!(!record.is_object(), "{}", shown),
        "Id" => prop_assert!(error.id.is_none() && readable_id.is_none(), "{}", shown),
        field => {
            prop_assert_eq!(error.id, readable_id, "{}", shown);
            prop_assert!(
                suspects.contains(field),
                "{} names {:?}, not one of the changed {:?}",
                shown,
                field,
                suspects
            );
        }
    }
    prop_assert!(!error.problem.trim().is_empty(), "{}", shown);
    prop_assert!(
        error.to_string().contains(&format!("{}: {}", error.field, error.problem)),
        "the message names the field and the problem: {}",
        shown
    );
    for personal in PERSONAL {
        prop_assert!(!shown.contains(personal), "{} shows {:?}", shown, personal);
    }
    Ok(())
}

#[test]
fn every_template_is_a_readable_record_of_its_entity() -> TestResult {
    for model in models() {
        (model.read)(&model.template).map_err(|error| format!("{}: {error}", model.name))?;
        // Each field the template has is one the model reads: removing a required one refuses it.
        let required = model.template.as_object().into_iter().flatten().filter(|(name, _)| {
            let mut record = model.template.clone();
            record.as_object_mut().map(|fields| fields.remove(*name));
            (model.read)(&record).is_err()
        });
        assert!(required.count() >= 1, "{}: no field is required", model.name);
    }
    Ok(())
}

#[test]
fn a_record_with_changed_fields_is_read_or_refused_naming_a_changed_field() -> TestResult {
    let models = models();
    let strategy = (0..models.len(), prop::collection::vec((any::<Index>(), field_change()), 1..4));
    fuzz(strategy, DEFAULT_CASES, |(model, changes)| {
        let model = &models[model];
        let (record, changed) = mutated(&model.template, &changes);
        match (model.read)(&record) {
            Ok(_) => Ok(()),
            Err(error) => refusal_explains_itself(model, &record, &error, &changed),
        }
    })
}

#[test]
fn fields_a_model_does_not_read_change_nothing() -> TestResult {
    let models = models();
    let extra = prop::collection::btree_map("[A-Za-z]{1,12}", any_json(), 1..4);
    let strategy = (0..models.len(), prop::collection::vec((any::<Index>(), field_change()), 0..3), extra);
    fuzz(strategy, DEFAULT_CASES, |(model, changes, extra)| {
        let model = &models[model];
        let (record, _) = mutated(&model.template, &changes);
        let mut with_extra = record.clone();
        if let Some(fields) = with_extra.as_object_mut() {
            for (name, value) in extra {
                fields.entry(name).or_insert(value);
            }
        }
        let reason = |result: Result<String, MalformedRecord>| {
            result.map_err(|error| (error.entity, error.id, error.field, error.problem))
        };
        prop_assert_eq!(reason((model.read)(&record)), reason((model.read)(&with_extra)));
        Ok(())
    })
}

#[test]
fn anything_that_is_not_a_record_is_refused_as_a_record() -> TestResult {
    let models = models();
    let not_an_object = any_json().prop_filter("not an object", |value| !value.is_object());
    fuzz((0..models.len(), not_an_object), DEFAULT_CASES, |(model, value)| {
        let model = &models[model];
        let error = (model.read)(&value).err().ok_or_else(|| TestCaseError::fail("a non-object was read"))?;
        prop_assert_eq!(error.field.as_str(), "record");
        refusal_explains_itself(model, &value, &error, &BTreeSet::new())
    })
}

#[test]
fn any_text_is_a_date_time_or_refused_never_a_panic() -> TestResult {
    fuzz(prop_oneof![tricky_text(), "\\PC{0,40}"], DEFAULT_CASES, |text| {
        match NexudusDateTime::parse(&text) {
            // What was read writes back as something that reads the same, within the years
            // Nexudus writes (jiff also reads years like -000001, which `Display` does not
            // write back in a form it reads).
            Ok(read) if (1..=9999).contains(&read.wall_clock().year()) => {
                prop_assert_eq!(NexudusDateTime::parse(&read.to_string()).ok(), Some(read));
            }
            Ok(_) => {}
            Err(error) => prop_assert!(error.to_string().contains(&format!("{text:?}")), "{error}"),
        }
        Ok(())
    })
}

/// Found by `any_text_is_a_date_time_or_refused_never_a_panic`: the offset was looked for six
/// bytes from the end, which can fall inside a multi-byte character and panicked the slicing.
#[test]
fn a_multi_byte_character_where_an_offset_would_be_is_refused_not_a_panic() {
    for text in ["0-0-0T0:0 ᯼AAUTC", "2025-01-15T1é23456", "2025-01-15T12:00:0é:00"] {
        assert!(NexudusDateTime::parse(text).is_err(), "{text:?}");
    }
}

#[test]
fn webhook_bodies_are_read_or_refused_with_the_entity_at_fault() -> TestResult {
    let entity = prop_oneof![
        3 => (any::<u64>(), prop::collection::btree_map("[A-Za-z]{1,8}", any_json(), 0..3)).prop_map(|(id, fields)| {
            let mut object: Map<String, Value> = fields.into_iter().collect();
            object.insert("Id".to_owned(), json!(id));
            Value::Object(object)
        }),
        1 => any_json(),
    ];
    let body = prop_oneof![
        3 => prop::collection::vec(entity, 0..4).prop_map(|entities| Value::Array(entities).to_string().into_bytes()),
        1 => any_json().prop_map(|value| value.to_string().into_bytes()),
        1 => prop::collection::vec(any::<u8>(), 0..64),
    ];
    let damage = prop::option::weighted(0.3, (any::<Index>(), any::<u8>()));
    fuzz((body, damage), DEFAULT_CASES, |(mut body, damage)| {
        if let (Some((at, byte)), false) = (damage, body.is_empty()) {
            let at = at.index(body.len());
            body[at] = byte;
        }
        match parse_body(&body) {
            Ok(entities) => {
                let value: Value =
                    serde_json::from_slice(&body).map_err(|error| TestCaseError::fail(error.to_string()))?;
                let items = value.as_array().map_or(0, Vec::len);
                prop_assert_eq!(entities.len(), items);
            }
            Err(error) => {
                prop_assert!(!error.to_string().trim().is_empty());
                if let PayloadError::NoId { index } = error {
                    let value: Value =
                        serde_json::from_slice(&body).map_err(|error| TestCaseError::fail(error.to_string()))?;
                    let item = value.as_array().and_then(|items| items.get(index));
                    prop_assert!(item.is_some_and(|item| item.get("Id").and_then(Value::as_u64).is_none()));
                }
            }
        }
        Ok(())
    })
}

/// 2025-07-01T08:00:00Z.
const START: Timestamp = Timestamp::from_unix_millis(1_751_356_800_000);

/// The fields the simulator writes itself (a change to them would not reach the page).
const SIMULATOR_FIELDS: [&str; 4] = ["Id", "UniqueId", "CreatedOn", "UpdatedOn"];

/// A page holding untouched and changed records, read through the real client from the
/// simulator: every untouched record is read, every changed one is read or parked naming a
/// changed field, and nothing is lost.
fn a_page_parks_only_its_malformed_records<E: Entity + Debug>(kind: SimEntity, template: &Value) -> TestResult {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let model = models().into_iter().find(|model| model.name == E::NAME).ok_or("no template for the entity")?;
    let fields: Map<String, Value> = template
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(name, _)| !SIMULATOR_FIELDS.contains(&name.as_str()))
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect();
    let template = Value::Object(fields);
    // Per record: no change, or a few; and an `Id` that is not one (written over the simulator's).
    let bad_id = any_json().prop_filter("not an id", |id| id.as_u64().is_none());
    let record = (prop::collection::vec((any::<Index>(), field_change()), 0..3), prop::option::weighted(0.1, bad_id));
    let strategy = prop::collection::vec(record, 1..8);
    fuzz(strategy, DEFAULT_PAGE_CASES, |records| {
        runtime.block_on(async {
            let clock = ManualClock::new(START);
            let mut options = SimOptions::new(Arc::new(clock.clone()));
            options.limits = None;
            let sim = NexudusSimulator::start(options).await.map_err(|error| TestCaseError::fail(error.to_string()))?;
            let mut created = Vec::new();
            for (changes, bad_id) in &records {
                let (fields, mut changed) = mutated(&template, changes);
                let id = sim.create(kind, fields).map_err(|error| TestCaseError::fail(error.to_string()))?;
                if let Some(bad_id) = bad_id {
                    sim.update(kind, id, json!({"Id": bad_id}))
                        .map_err(|error| TestCaseError::fail(error.to_string()))?;
                    changed.insert("Id".to_owned());
                }
                created.push((id, changed));
            }
            let credentials = Credentials { username: "admin@example.com".into(), password: Secret::new("password") };
            let mut client_options = NexudusOptions::new(sim.base_url(), credentials);
            client_options.auth = AuthMode::Basic;
            client_options.limits = Limits { min_interval: Duration::ZERO, per_minute: 1_000_000, per_hour: 1_000_000 };
            let client = NexudusClient::new(client_options, Arc::new(clock))
                .map_err(|error| TestCaseError::fail(error.to_string()))?;
            let page = client
                .list_page(&ListQuery::<E>::new().page_size(100), 1)
                .await
                .map_err(|error| TestCaseError::fail(error.to_string()))?;
            sim.shutdown().await;

            prop_assert_eq!(page.records.len() + page.malformed.len(), created.len(), "every record is accounted for");
            let read: Vec<u64> = page.records.iter().map(Entity::id).collect();
            for (id, changed) in &created {
                if changed.is_empty() {
                    prop_assert!(read.contains(id), "the untouched record {} was not read: {:?}", id, page.malformed);
                }
            }
            let unidentified = created.iter().filter(|(_, changed)| changed.contains("Id")).count();
            let parked_without_id = page.malformed.iter().filter(|error| error.id.is_none()).count();
            prop_assert_eq!(parked_without_id, unidentified, "each record without a readable Id is parked as such");
            for error in &page.malformed {
                let changed = match error.id {
                    Some(parked) => match created.iter().find(|(id, _)| *id == parked) {
                        Some((_, changed)) => changed.clone(),
                        None => return Err(TestCaseError::fail(format!("{error:?} is not a record created"))),
                    },
                    None => BTreeSet::from(["Id".to_owned()]),
                };
                prop_assert!(!changed.is_empty(), "an untouched record was parked: {error:?}");
                refusal_explains_itself(&model, &error.raw, error, &changed)?;
            }
            Ok(())
        })
    })
}

#[test]
fn a_page_of_bookings_parks_only_the_malformed_ones() -> TestResult {
    let template = models().into_iter().find(|model| model.name == Booking::NAME).ok_or("no booking")?.template;
    a_page_parks_only_its_malformed_records::<Booking>(SimEntity::Booking, &template)
}

#[test]
fn a_page_of_coworkers_parks_only_the_malformed_ones() -> TestResult {
    let template = models().into_iter().find(|model| model.name == Coworker::NAME).ok_or("no coworker")?.template;
    a_page_parks_only_its_malformed_records::<Coworker>(SimEntity::Coworker, &template)
}

#[test]
fn a_page_of_contracts_parks_only_the_malformed_ones() -> TestResult {
    let template =
        models().into_iter().find(|model| model.name == CoworkerContract::NAME).ok_or("no contract")?.template;
    a_page_parks_only_its_malformed_records::<CoworkerContract>(SimEntity::CoworkerContract, &template)
}
