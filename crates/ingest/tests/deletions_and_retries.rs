//! Deleted and cancelled records, and records Nexudus fails to answer about, with the simulator
//! answering a deleted id with 500 as real Nexudus does: a webhook is answered 2xx once what it
//! asks for is durably recorded, a deletion is confirmed by a listing by id and appended within
//! the webhook's own handling, and a failed reading waits in the retry set.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use doorsync_ingest::webhook_path;
use doorsync_log::{
    Appended, ConsumerSpec, DurableConsumer, EventLog, KeyValue, LogError, MessageStream, NewMessage, ReplayRequest,
    Sequence, StoredMessage,
};
use doorsync_nexudus::WebhookAction;
use doorsync_nexudus::webhook::body_for;
use doorsync_nexudus_sim::SimEntity;
use doorsync_proto::{ContractId, ContractRemoved, Event, MemberId, PassId, PassRemoved};
use serde_json::json;
use support::{World, cancelled};

const FROM: &str = "2025-07-02T09:00:00Z";
const TO: &str = "2025-07-02T10:00:00Z";

/// The event a booking from `FROM` to `TO` becomes.
fn booking_event(member: u64, booking: u64, resource: u64) -> Event {
    support::booking(member, booking, resource, FROM, TO)
}

/// A London room, Ada, and her booking of it: (room, Ada, booking).
fn booked(world: &World) -> (u64, u64, u64) {
    let (_, room) = world.london_room();
    let ada = support::coworker(&world.sim, "Ada");
    let fields = json!({"ResourceId": room, "CoworkerId": ada, "Tentative": false, "FromTime": FROM, "ToTime": TO});
    (room, ada, world.sim.create(SimEntity::Booking, fields).unwrap())
}

/// POSTs the webhook for `action` about record `id`, signed; returns the status it got.
async fn deliver(world: &World, action: WebhookAction, id: u64) -> u16 {
    let body = body_for(&json!({"Id": id}));
    world.post(&webhook_path(action), &body, Some(&support::signed(&body))).await
}

/// The retry set as (entity, id, attempts).
fn retrying(world: &World) -> Vec<(String, u64, u32)> {
    world.ingest.status().retrying.iter().map(|entry| (entry.entity.clone(), entry.id, entry.attempts)).collect()
}

#[tokio::test]
async fn a_cancelled_booking_is_removed_within_its_webhook_dated_by_its_cancelled_on() {
    let world = World::without_webhooks().await;
    let (room, ada, id) = booked(&world);
    let made_on = world.updated_on(SimEntity::Booking, id);
    world.ingest.poll_now().await.unwrap();
    world.clock.advance(Duration::from_secs(90));
    world.sim.cancel_booking(id, 1).unwrap();
    let cancelled_on = world.now();

    assert_eq!(deliver(&world, WebhookAction::BookingDelete, id).await, 204);
    let events = world.events().await;
    assert_eq!(events[1..], [(made_on, booking_event(ada, id, room)), (cancelled_on, cancelled(ada, id))]);
    assert_eq!(retrying(&world), []);
    assert_eq!(world.ingest.poll_now().await.unwrap().appended, 0, "the snapshot's poll adds nothing");
    world.stop().await;
}

#[tokio::test]
async fn a_hard_deleted_booking_is_removed_within_its_webhook() {
    let world = World::without_webhooks().await;
    let (room, ada, id) = booked(&world);
    let made_on = world.updated_on(SimEntity::Booking, id);
    world.ingest.poll_now().await.unwrap();
    world.tick();
    world.sim.delete(SimEntity::Booking, id).unwrap();

    assert_eq!(deliver(&world, WebhookAction::BookingDelete, id).await, 204);
    let events = world.events().await;
    // No cancellation to date it by: dated by the last version the ingestor saw.
    assert_eq!(events[1..], [(made_on, booking_event(ada, id, room)), (made_on, cancelled(ada, id))]);
    assert_eq!(retrying(&world), []);
    world.stop().await;
}

#[tokio::test]
async fn a_deleted_contract_is_removed_within_its_webhook() {
    let world = World::without_webhooks().await;
    let (business, _) = world.london_room();
    let ada = support::coworker(&world.sim, "Ada");
    let fields = json!({"CoworkerId": ada, "IssuedById": business, "StartDate": "2025-07-01T00:00:00Z",
        "Active": true});
    let contract = world.sim.create(SimEntity::CoworkerContract, fields).unwrap();
    let made_on = world.updated_on(SimEntity::CoworkerContract, contract);
    world.ingest.poll_now().await.unwrap();
    world.tick();
    world.sim.delete(SimEntity::CoworkerContract, contract).unwrap();

    assert_eq!(deliver(&world, WebhookAction::CoworkerContractDelete, contract).await, 204);
    let removed = Event::ContractRemoved(ContractRemoved { member: MemberId(ada), contract: ContractId(contract) });
    assert_eq!(world.events().await.last(), Some(&(made_on, removed)));
    assert_eq!(retrying(&world), []);
    world.stop().await;
}

#[tokio::test]
async fn a_deleted_pass_is_removed_within_the_access_control_update() {
    let world = World::without_webhooks().await;
    let (business, _) = world.london_room();
    let ada = support::coworker(&world.sim, "Ada");
    let product = world.sim.create(SimEntity::TimePass, json!({"Name": "Day pass", "BusinessId": business})).unwrap();
    let fields = json!({"CoworkerId": ada, "TimePassId": product, "BusinessId": business, "Used": false,
        "ExpireDate": "2025-12-31T23:59:59Z"});
    let pass = world.sim.create(SimEntity::CoworkerTimePass, fields).unwrap();
    let made_on = world.updated_on(SimEntity::CoworkerTimePass, pass);
    world.ingest.poll_now().await.unwrap();
    world.tick();
    world.sim.delete(SimEntity::CoworkerTimePass, pass).unwrap();

    assert_eq!(deliver(&world, WebhookAction::AccessControlUpdate, ada).await, 204);
    let removed = Event::PassRemoved(PassRemoved { member: MemberId(ada), pass: PassId(pass) });
    assert_eq!(world.events().await.last(), Some(&(made_on, removed)));
    assert_eq!(retrying(&world), []);
    world.stop().await;
}

#[tokio::test]
async fn a_record_nexudus_fails_to_read_waits_in_the_retry_set_across_a_restart_until_it_reads() {
    let mut world = World::without_webhooks().await;
    let (room, ada, id) = booked(&world);
    let made_on = world.updated_on(SimEntity::Booking, id);
    world.sim.fail_reads_of(SimEntity::Booking, id);

    assert_eq!(deliver(&world, WebhookAction::BookingUpdate, id).await, 204, "accepted, not failed");
    assert_eq!(retrying(&world), [("Booking".to_owned(), id, 1)]);
    let status = world.ingest.status();
    let entry = &status.retrying[0];
    assert!(entry.last_error.contains("500 from GET /api/spaces/bookings/"), "{}", entry.last_error);
    assert_eq!((entry.since, entry.next_attempt), (world.now(), later(world.now(), 10)));
    assert_eq!((status.webhooks.accepted, status.webhooks.failed), (1, 0));
    assert_eq!(world.events().await, []);

    // Still failing when due: tried again, and the wait doubles.
    world.clock.advance(Duration::from_secs(10));
    support::wait_until("the second attempt", || retrying(&world) == [("Booking".to_owned(), id, 2)]).await;
    assert_eq!(world.ingest.status().retrying[0].next_attempt, later(world.now(), 20));

    world.restart_ingest().await;
    assert_eq!(retrying(&world), [("Booking".to_owned(), id, 2)], "the retry set is in the bucket");

    world.sim.stop_failing_reads_of(SimEntity::Booking, id);
    world.clock.advance(Duration::from_secs(20));
    support::wait_until("the record is read", || retrying(&world).is_empty()).await;
    // The poll at the restart read Ada's record as well.
    let bookings: Vec<_> =
        world.events().await.into_iter().filter(|(_, event)| matches!(event, Event::BookingChanged(_))).collect();
    assert_eq!(bookings, [(made_on, booking_event(ada, id, room))]);
    world.stop().await;
}

fn later(at: doorsync_proto::Timestamp, seconds: i64) -> doorsync_proto::Timestamp {
    doorsync_proto::Timestamp::from_unix_millis(at.as_unix_millis() + seconds * 1_000)
}

#[tokio::test]
async fn a_held_pass_an_access_control_update_does_not_list_is_looked_up_by_a_listing_and_a_500_removes_nothing() {
    let world = World::without_webhooks().await;
    let (business, _) = world.london_room();
    let ada = support::coworker(&world.sim, "Ada");
    let bo = support::coworker(&world.sim, "Bo");
    let product = world.sim.create(SimEntity::TimePass, json!({"Name": "Day pass", "BusinessId": business})).unwrap();
    let pass_of = |coworker: u64| {
        json!({"CoworkerId": coworker, "TimePassId": product, "BusinessId": business,
        "Used": false})
    };
    let pass = world.sim.create(SimEntity::CoworkerTimePass, pass_of(ada)).unwrap();
    world.ingest.poll_now().await.unwrap();
    // A later pass moves the watermark past the overlap, so Ada's pass is looked up apart (two
    // hours on: the filter may be read on London's wall clock, an hour ahead of UTC in July).
    world.clock.advance(Duration::from_secs(2 * 3_600));
    world.sim.create(SimEntity::CoworkerTimePass, pass_of(bo)).unwrap();
    world.ingest.poll_now().await.unwrap();
    let before = world.events().await;
    // Reads of it by id answer 500 as for a deleted record; it is still there.
    world.sim.fail_reads_of(SimEntity::CoworkerTimePass, pass);

    assert_eq!(deliver(&world, WebhookAction::AccessControlUpdate, ada).await, 204);
    assert_eq!(retrying(&world), [], "the listing by its id found it");
    assert_eq!(world.events().await, before, "nothing removed");
    world.stop().await;
}

/// A log that refuses appends while `failing` is set, as a full disk would.
struct FailingLog {
    inner: Arc<dyn EventLog>,
    failing: Arc<AtomicBool>,
}

#[async_trait::async_trait]
impl EventLog for FailingLog {
    async fn append(&self, message: NewMessage) -> Result<Appended, LogError> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(LogError::Storage { context: "the disk is full (a test fault)".into(), source: None });
        }
        self.inner.append(message).await
    }

    async fn append_batch(&self, messages: Vec<NewMessage>) -> Vec<Result<Appended, LogError>> {
        let mut results = Vec::new();
        for message in messages {
            results.push(self.append(message).await);
        }
        results
    }

    async fn replay(&self, request: ReplayRequest) -> Result<MessageStream, LogError> {
        self.inner.replay(request).await
    }

    async fn follow(&self, request: ReplayRequest) -> Result<MessageStream, LogError> {
        self.inner.follow(request).await
    }

    async fn last_sequence(&self, stream: &str) -> Result<Sequence, LogError> {
        self.inner.last_sequence(stream).await
    }

    async fn last_on_subject(&self, stream: &str, subject: &str) -> Result<Option<StoredMessage>, LogError> {
        self.inner.last_on_subject(stream, subject).await
    }

    async fn durable_consumer(&self, spec: ConsumerSpec) -> Result<Box<dyn DurableConsumer>, LogError> {
        self.inner.durable_consumer(spec).await
    }

    async fn key_value(&self, bucket: &str) -> Result<Arc<dyn KeyValue>, LogError> {
        self.inner.key_value(bucket).await
    }
}

#[tokio::test]
async fn only_a_log_that_cannot_take_the_append_fails_a_webhook() {
    let dir = tempfile::tempdir().unwrap();
    let layout = doorsync_layout::Layout::new(doorsync_proto::Subjects::new("test", 4).unwrap());
    let options = doorsync_log_embedded::EmbeddedOptions::new(dir.path().join("log.redb"), layout.streams());
    let inner: Arc<dyn EventLog> = Arc::new(doorsync_log_embedded::EmbeddedLog::open(options).unwrap());
    let failing = Arc::new(AtomicBool::new(false));
    let log = Arc::new(FailingLog { inner, failing: Arc::clone(&failing) });
    let world = World::start(|setup| {
        setup.hooks.clear();
        setup.log = Some(log);
    })
    .await;
    let (room, ada, id) = booked(&world);
    let made_on = world.updated_on(SimEntity::Booking, id);

    failing.store(true, Ordering::SeqCst);
    assert_eq!(deliver(&world, WebhookAction::BookingUpdate, id).await, 503, "the log cannot take it");
    // A record Nexudus fails to answer about is kept in the retry set, which still works.
    world.sim.fail_reads_of(SimEntity::Booking, id);
    assert_eq!(deliver(&world, WebhookAction::BookingUpdate, id).await, 204);
    let status = world.ingest.status();
    assert_eq!((status.webhooks.accepted, status.webhooks.failed), (1, 1));
    assert_eq!(retrying(&world), [("Booking".to_owned(), id, 1)]);

    failing.store(false, Ordering::SeqCst);
    world.sim.stop_failing_reads_of(SimEntity::Booking, id);
    assert_eq!(deliver(&world, WebhookAction::BookingUpdate, id).await, 204);
    assert_eq!(world.events().await, [(made_on, booking_event(ada, id, room))]);
    assert_eq!(retrying(&world), [], "a reading that works takes the record out of the retry set");
    world.stop().await;
}

/// Nexudus ignores a query parameter it does not know, so a misspelt filter silently reads the
/// whole table: every parameter the ingestor sends must be one the reference documents.
#[tokio::test]
async fn every_query_parameter_the_ingestor_sends_is_in_the_nexudus_reference() {
    let reference = Reference::load();
    assert!(reference.documents("from_Booking_UpdatedOn") && reference.documents("CoworkerTimePass_Used"));
    for misspelt in ["UpdatedSince", "Booking_Coworkr", "from_Bookng_UpdatedOn", "ids"] {
        assert!(!reference.documents(misspelt), "{misspelt} is not in the reference");
    }

    let world = World::start(|setup| {
        setup.hooks.clear();
        setup.options.mapping_from_nexudus = true;
    })
    .await;
    let (room, ada, id) = booked(&world);
    let business = world.record(SimEntity::Resource, room)["BusinessId"].as_u64().unwrap();
    let contract = world.sim.create(SimEntity::CoworkerContract, json!({"CoworkerId": ada, "Active": true})).unwrap();
    world.sim.create(SimEntity::FloorPlanDesk, json!({"Name": "D1", "ItemType": 2})).unwrap();
    let product = world.sim.create(SimEntity::TimePass, json!({"Name": "Day", "BusinessId": business})).unwrap();
    let pass = json!({"CoworkerId": ada, "TimePassId": product, "BusinessId": business, "Used": false});
    world.sim.create(SimEntity::CoworkerTimePass, pass).unwrap();
    world.ingest.poll_now().await.unwrap();
    world.ingest.poll_now().await.unwrap();
    world.tick();
    world.sim.cancel_booking(id, 1).unwrap();
    world.sim.delete(SimEntity::CoworkerContract, contract).unwrap();
    assert_eq!(deliver(&world, WebhookAction::BookingDelete, id).await, 204);
    assert_eq!(deliver(&world, WebhookAction::CoworkerContractDelete, contract).await, 204);
    assert_eq!(deliver(&world, WebhookAction::AccessControlUpdate, ada).await, 204);
    world.ingest.sweep_now().await.unwrap();

    let sent = world.sim.query_parameters_seen();
    let expected =
        ["id", "CancelledBooking_OriginalBookingId", "from_CoworkerTimePass_UpdatedOn", "from_TimePass_UpdatedOn"];
    for expected in expected {
        assert!(sent.contains(expected), "the scenario sends {expected}: {sent:?}");
    }
    let undocumented: Vec<&String> = sent.iter().filter(|name| !reference.documents(name)).collect();
    assert!(undocumented.is_empty(), "not in the Nexudus reference: {undocumented:?}");
    world.stop().await;
}

/// The query parameters `shared/reference/nexudus-api.md` documents: the names it writes in
/// code spans (`from_/to_X_A|B` standing for each bound and field), and its templates, where
/// `{Entity}`, `{Property}` and the like stand for a word the reference uses. A parameter is
/// either a filter, `{Entity}_{Field}`, or lower case (`page`, `size`, `id`): other code spans
/// are field names, or parameters Nexudus does not know (`UpdatedSince`).
struct Reference {
    names: BTreeSet<String>,
    templates: Vec<Vec<String>>,
    words: BTreeSet<String>,
}

impl Reference {
    fn load() -> Self {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/reference/nexudus-api.md");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|error| panic!("the Nexudus reference at {}: {error}", path.display()));
        let words = text
            .split(|c: char| !c.is_ascii_alphanumeric())
            .filter(|word| !word.is_empty())
            .map(str::to_owned)
            .collect();
        let (mut names, mut templates) = (BTreeSet::new(), Vec::new());
        for span in text.split('`').skip(1).step_by(2) {
            for name in parameter_names(span) {
                if name.contains('{') {
                    templates.push(name.split('_').map(str::to_owned).collect());
                } else if name.contains('_') || name.starts_with(|c: char| c.is_ascii_lowercase()) {
                    names.insert(name);
                }
            }
        }
        Self { names, templates, words }
    }

    fn documents(&self, name: &str) -> bool {
        if self.names.contains(name) {
            return true;
        }
        let segments: Vec<&str> = name.split('_').collect();
        self.templates.iter().any(|template| {
            template.len() == segments.len()
                && template.iter().zip(&segments).all(|(part, segment)| {
                    if part.starts_with('{') { self.words.contains(*segment) } else { part == segment }
                })
        })
    }
}

/// The parameter names one code span of the reference writes: a query string's names, or the
/// span itself as a name, with `from_/to_` and `A|B|...` alternatives spelt out.
fn parameter_names(span: &str) -> Vec<String> {
    let spans: Vec<&str> = match span.split_once('?') {
        Some((_, query)) => query.split('&').collect(),
        None => vec![span],
    };
    let mut names = Vec::new();
    for name in spans {
        let name = name.split('=').next().unwrap_or_default().trim();
        let bounds: Vec<String> = match name.strip_prefix("from_/to_") {
            Some(rest) => vec![format!("from_{rest}"), format!("to_{rest}")],
            None => vec![name.to_owned()],
        };
        for bounded in bounds {
            let (head, last) = bounded.rsplit_once('_').unwrap_or(("", &bounded));
            for alternative in last.split('|').filter(|alternative| *alternative != "...") {
                let full = if head.is_empty() { alternative.to_owned() } else { format!("{head}_{alternative}") };
                if !full.is_empty() && full.chars().all(|c| c.is_ascii_alphanumeric() || "_{}".contains(c)) {
                    names.push(full);
                }
            }
        }
    }
    names
}

/// The ledger keeps what is live and what was removed lately: a removed record's state goes a
/// horizon after its removal, and neither its cancellation, which every sweep lists again, nor a
/// webhook about it then appends anything.
#[tokio::test]
async fn a_removed_records_state_is_forgotten_after_the_horizon_and_nothing_brings_it_back() {
    let horizon = Duration::from_secs(24 * 3_600);
    let world = World::start(|setup| {
        setup.hooks.clear();
        setup.options.removed_horizon = horizon;
        // No scheduled poll while the clock jumps a day and a half: one would list the
        // cancellation again, as a change since the poll before, while the sweeps run.
        setup.options.poll_every = horizon * 4;
    })
    .await;
    let (_, _, id) = booked(&world);
    world.ingest.poll_now().await.unwrap();
    world.tick();
    world.sim.cancel_booking(id, 1).unwrap();
    assert_eq!(world.ingest.sweep_now().await.unwrap().appended, 1, "the cancellation");
    let kv = world.log.key_value(&world.layout.ingest_bucket).await.unwrap();
    let state = format!("record.Booking.{id}");
    let events = world.events().await;

    world.clock.advance(horizon / 2);
    world.ingest.sweep_now().await.unwrap();
    assert!(kv.get(&state).await.unwrap().is_some(), "kept within the horizon");

    world.clock.advance(horizon);
    assert_eq!(world.ingest.sweep_now().await.unwrap().appended, 0);
    assert_eq!(kv.get(&state).await.unwrap(), None, "forgotten after the horizon");
    let duplicates = world.ingest.status().duplicates;
    assert_eq!(world.ingest.sweep_now().await.unwrap().appended, 0, "its cancellation is listed again, and ignored");
    assert_eq!(deliver(&world, WebhookAction::BookingUpdate, id).await, 204);
    assert_eq!(world.ingest.status().duplicates, duplicates, "nothing appended again, not even as a duplicate");
    assert_eq!(world.events().await, events);
    assert_eq!(kv.get(&state).await.unwrap(), None);
    world.stop().await;
}
