//! The simulator's data: the records, what changed, and the webhook deliveries that follow.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::Duration;

use doorsync_nexudus::webhook::body_for;
use doorsync_nexudus::{
    Booking, Business, CancelledBooking, Coworker, CoworkerContract, CoworkerTimePass, Entity, FloorPlanDesk,
    NexudusDateTime, RequestWindows, Resource, Secret, SimpleTimeZone, TimePass, Webhook, WebhookAction,
};
use doorsync_proto::Timestamp;
use jiff::tz::TimeZone;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Map, Value, json};

use crate::{SimError, SimStats, UtcFields, WebhookFaults};

/// The kinds of record the simulator keeps, each served where Nexudus serves it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SimEntity {
    Coworker,
    Business,
    SimpleTimeZone,
    Resource,
    Booking,
    /// Read-only: filled by [`crate::NexudusSimulator::cancel_booking`].
    CancelledBooking,
    TimePass,
    CoworkerTimePass,
    CoworkerContract,
    FloorPlanDesk,
    /// Filled by [`crate::NexudusSimulator::register_webhook`].
    Webhook,
}

impl SimEntity {
    pub const ALL: [Self; 11] = [
        Self::Coworker,
        Self::Business,
        Self::SimpleTimeZone,
        Self::Resource,
        Self::Booking,
        Self::CancelledBooking,
        Self::TimePass,
        Self::CoworkerTimePass,
        Self::CoworkerContract,
        Self::FloorPlanDesk,
        Self::Webhook,
    ];

    /// Nexudus's name for it, as in filters (`from_{name}_UpdatedOn`).
    pub fn name(self) -> &'static str {
        self.names().0
    }

    /// Where it lives below `/api/`.
    pub fn path(self) -> &'static str {
        self.names().1
    }

    fn names(self) -> (&'static str, &'static str) {
        fn of<E: Entity>() -> (&'static str, &'static str) {
            (E::NAME, E::PATH)
        }
        match self {
            Self::Coworker => of::<Coworker>(),
            Self::Business => of::<Business>(),
            Self::SimpleTimeZone => of::<SimpleTimeZone>(),
            Self::Resource => of::<Resource>(),
            Self::Booking => of::<Booking>(),
            Self::CancelledBooking => of::<CancelledBooking>(),
            Self::TimePass => of::<TimePass>(),
            Self::CoworkerTimePass => of::<CoworkerTimePass>(),
            Self::CoworkerContract => of::<CoworkerContract>(),
            Self::FloorPlanDesk => of::<FloorPlanDesk>(),
            Self::Webhook => of::<Webhook>(),
        }
    }

    pub(crate) fn from_path(path: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.path() == path)
    }

    /// The date-time fields that have a `...Local` twin on the location's wall clock.
    fn local_twins(self) -> &'static [&'static str] {
        match self {
            Self::Booking | Self::CancelledBooking => &["FromTime", "ToTime"],
            Self::CoworkerContract => &["StartDate", "RenewalDate", "CancellationDate"],
            _ => &[],
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    Created,
    Updated,
    Deleted,
}

/// One webhook POST waiting to go out.
#[derive(Debug, Clone)]
pub(crate) struct Delivery {
    pub(crate) hook: u64,
    pub(crate) body: Vec<u8>,
    /// How many times it has been tried.
    pub(crate) attempts: u32,
}

/// What the delivery task needs to send one delivery.
#[derive(Debug)]
pub(crate) struct Outgoing {
    pub(crate) delivery: Delivery,
    pub(crate) url: String,
    pub(crate) secret: Secret,
}

#[derive(Debug)]
struct Hook {
    secret: Secret,
    consecutive_failures: u32,
}

/// Nexudus disables a hook after this many consecutive failures, and retries one delivery at
/// most this often.
pub(crate) const MAX_CONSECUTIVE_FAILURES: u32 = 10;

#[derive(Debug)]
pub(crate) struct State {
    collections: BTreeMap<SimEntity, BTreeMap<u64, Value>>,
    next_id: u64,
    hooks: BTreeMap<u64, Hook>,
    /// Deliveries by (due, sequence): equal due times go out in the order they were made.
    queue: BTreeMap<(Timestamp, u64), Delivery>,
    next_sequence: u64,
    rng: StdRng,
    pub(crate) faults: WebhookFaults,
    retry_delay: Duration,
    pub(crate) windows: Option<RequestWindows>,
    pub(crate) forced_throttles: u32,
    /// The `Retry-After` of the forced throttles.
    pub(crate) forced_retry_after_seconds: u64,
    pub(crate) access_tokens: HashMap<String, Timestamp>,
    pub(crate) refresh_tokens: HashSet<String>,
    pub(crate) next_token: u64,
    pub(crate) stats: SimStats,
    /// Records whose reads by id answer 500.
    pub(crate) failing_reads: HashSet<(SimEntity, u64)>,
    pub(crate) parameters_seen: BTreeSet<String>,
}

fn text_of(at: Timestamp) -> Value {
    NexudusDateTime::from_utc(at).map_or(Value::Null, |written| Value::String(written.to_string()))
}

impl State {
    pub(crate) fn new(
        seed: u64,
        faults: WebhookFaults,
        retry_delay: Duration,
        windows: Option<RequestWindows>,
    ) -> Self {
        Self {
            collections: BTreeMap::new(),
            next_id: 1_000,
            hooks: BTreeMap::new(),
            queue: BTreeMap::new(),
            next_sequence: 0,
            rng: StdRng::seed_from_u64(seed),
            faults,
            retry_delay,
            windows,
            forced_throttles: 0,
            forced_retry_after_seconds: 1,
            access_tokens: HashMap::new(),
            refresh_tokens: HashSet::new(),
            next_token: 0,
            stats: SimStats::default(),
            failing_reads: HashSet::new(),
            parameters_seen: BTreeSet::new(),
        }
    }

    pub(crate) fn records(&self, kind: SimEntity) -> impl Iterator<Item = &Value> {
        self.collections.get(&kind).into_iter().flat_map(BTreeMap::values)
    }

    pub(crate) fn record(&self, kind: SimEntity, id: u64) -> Option<&Value> {
        self.collections.get(&kind)?.get(&id)
    }

    fn take_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    pub(crate) fn create(&mut self, kind: SimEntity, fields: Value, now: Timestamp) -> Result<u64, SimError> {
        let Value::Object(fields) = fields else { return Err(SimError::NotAnObject) };
        let id = self.take_id();
        let mut record = Map::new();
        record.insert("Id".into(), json!(id));
        record.insert("UniqueId".into(), json!(format!("00000000-0000-4000-8000-{id:012}")));
        record.insert("CreatedOn".into(), text_of(now));
        self.store(kind, id, record, fields, now);
        self.notify(kind, Change::Created, id, now);
        Ok(id)
    }

    /// Sets the given fields of a record (others keep their values) and bumps its `UpdatedOn`.
    pub(crate) fn update(&mut self, kind: SimEntity, id: u64, fields: Value, now: Timestamp) -> Result<(), SimError> {
        let Value::Object(fields) = fields else { return Err(SimError::NotAnObject) };
        let Some(Value::Object(record)) = self.record(kind, id).cloned() else {
            return Err(SimError::NotFound { entity: kind.name(), id });
        };
        self.store(kind, id, record, fields, now);
        self.notify(kind, Change::Updated, id, now);
        Ok(())
    }

    /// Sets the given fields of a record without touching its `UpdatedOn` or announcing it.
    pub(crate) fn update_silently(&mut self, kind: SimEntity, id: u64, fields: Value) -> Result<(), SimError> {
        let Value::Object(fields) = fields else { return Err(SimError::NotAnObject) };
        let Some(Value::Object(record)) = self.collections.get_mut(&kind).and_then(|records| records.get_mut(&id))
        else {
            return Err(SimError::NotFound { entity: kind.name(), id });
        };
        record.extend(fields);
        Ok(())
    }

    fn store(
        &mut self,
        kind: SimEntity,
        id: u64,
        mut record: Map<String, Value>,
        fields: Map<String, Value>,
        now: Timestamp,
    ) {
        let explicit_twins: Vec<&'static str> =
            kind.local_twins().iter().copied().filter(|field| fields.contains_key(&format!("{field}Local"))).collect();
        record.extend(fields);
        record.insert("UpdatedOn".into(), text_of(now));
        self.fill_local_twins(kind, &mut record, &explicit_twins);
        self.collections.entry(kind).or_default().insert(id, Value::Object(record));
    }

    /// Writes each `...Local` twin as the location's wall clock (with no offset), unless the
    /// caller set it, so records look like Nexudus's; left alone when the zone is unknown.
    fn fill_local_twins(&self, kind: SimEntity, record: &mut Map<String, Value>, explicit: &[&str]) {
        let Some(zone) = self.location_of(kind, record).and_then(|business| self.zone_of(business)) else { return };
        for &field in kind.local_twins() {
            if explicit.contains(&field) {
                continue;
            }
            let instant = record
                .get(field)
                .and_then(Value::as_str)
                .and_then(|text| NexudusDateTime::parse(text).ok())
                .and_then(|written| written.to_utc())
                .and_then(|at| jiff::Timestamp::from_millisecond(at.as_unix_millis()).ok());
            let local = match instant {
                Some(instant) => {
                    json!(instant.to_zoned_datetime(zone.clone()).datetime().strftime("%Y-%m-%dT%H:%M:%S").to_string())
                }
                None => Value::Null,
            };
            record.insert(format!("{field}Local"), local);
        }
    }

    fn location_of(&self, kind: SimEntity, record: &Map<String, Value>) -> Option<u64> {
        let field = match kind {
            SimEntity::Booking | SimEntity::CancelledBooking => {
                let resource = self.record(SimEntity::Resource, record.get("ResourceId")?.as_u64()?)?;
                return resource.get("BusinessId")?.as_u64();
            }
            SimEntity::CoworkerContract => "IssuedById",
            SimEntity::Resource | SimEntity::TimePass | SimEntity::CoworkerTimePass => "BusinessId",
            SimEntity::FloorPlanDesk => "FloorPlanBusinessId",
            SimEntity::Coworker => "InvoicingBusinessId",
            SimEntity::Business => "Id",
            SimEntity::SimpleTimeZone | SimEntity::Webhook => return None,
        };
        record.get(field)?.as_u64()
    }

    /// `record` as Nexudus would serve it with `utc_fields`: under
    /// [`UtcFields::LocalWithFakeZ`], each instant with a `...Local` twin is that twin's wall
    /// clock with a `Z`.
    pub(crate) fn as_served(&self, kind: SimEntity, record: &Value, utc_fields: UtcFields) -> Value {
        let (UtcFields::LocalWithFakeZ, Value::Object(fields)) = (utc_fields, record) else { return record.clone() };
        let mut served = fields.clone();
        for &field in kind.local_twins() {
            let local = fields
                .get(&format!("{field}Local"))
                .and_then(Value::as_str)
                .and_then(|text| NexudusDateTime::parse(text).ok());
            if let Some(local) = local {
                let wall = local.wall_clock().strftime("%Y-%m-%dT%H:%M:%S").to_string();
                served.insert(field.to_owned(), json!(format!("{wall}Z")));
            }
        }
        Value::Object(served)
    }

    /// The zone of the location `record` belongs to, when it has one the simulator can tell.
    pub(crate) fn zone_of_record(&self, kind: SimEntity, record: &Value) -> Option<TimeZone> {
        self.zone_of(self.location_of(kind, record.as_object()?)?)
    }

    fn zone_of(&self, business: u64) -> Option<TimeZone> {
        let business = self.record(SimEntity::Business, business)?;
        let zone = self.record(SimEntity::SimpleTimeZone, business.get("SimpleTimeZoneId")?.as_u64()?)?;
        let iana = doorsync_access::iana_zone_for_windows(zone.get("Name")?.as_str()?)?;
        TimeZone::get(iana).ok()
    }

    /// Removes a record for good: gone from its list and from reads by id.
    pub(crate) fn delete(&mut self, kind: SimEntity, id: u64, now: Timestamp) -> Result<(), SimError> {
        if self.record(kind, id).is_none() {
            return Err(SimError::NotFound { entity: kind.name(), id });
        }
        // Notified before removal, so the body and the access-control customer can be read.
        self.notify(kind, Change::Deleted, id, now);
        if let Some(records) = self.collections.get_mut(&kind) {
            records.remove(&id);
        }
        if kind == SimEntity::Webhook {
            self.hooks.remove(&id);
        }
        Ok(())
    }

    /// Puts a deleted record back with its own id and fields, announced as created: an admin
    /// undoing a deletion (or a record that only seemed gone) comes back as it was.
    pub(crate) fn restore(&mut self, kind: SimEntity, record: Value, now: Timestamp) -> Result<u64, SimError> {
        let Value::Object(fields) = record else { return Err(SimError::NotAnObject) };
        let id = fields.get("Id").and_then(Value::as_u64).ok_or(SimError::NotAnObject)?;
        if self.record(kind, id).is_some() {
            return Err(SimError::AlreadyThere { entity: kind.name(), id });
        }
        self.store(kind, id, Map::new(), fields, now);
        self.notify(kind, Change::Created, id, now);
        Ok(id)
    }

    /// Moves a booking from the bookings to a new cancelled-booking snapshot; returns its id.
    pub(crate) fn cancel_booking(&mut self, booking: u64, reason: u64, now: Timestamp) -> Result<u64, SimError> {
        let Some(Value::Object(mut snapshot)) = self.record(SimEntity::Booking, booking).cloned() else {
            return Err(SimError::NotFound { entity: SimEntity::Booking.name(), id: booking });
        };
        self.delete(SimEntity::Booking, booking, now)?;
        let id = self.take_id();
        snapshot.insert("Id".into(), json!(id));
        snapshot.insert("OriginalBookingId".into(), json!(booking));
        snapshot.insert("CancelledOn".into(), text_of(now));
        snapshot.insert("CancellationReason".into(), json!(reason));
        snapshot.insert("UpdatedOn".into(), text_of(now));
        self.collections.entry(SimEntity::CancelledBooking).or_default().insert(id, Value::Object(snapshot));
        Ok(id)
    }

    pub(crate) fn register_webhook(&mut self, fields: Value, secret: Secret, now: Timestamp) -> Result<u64, SimError> {
        let id = self.create(SimEntity::Webhook, fields, now)?;
        self.hooks.insert(id, Hook { secret, consecutive_failures: 0 });
        Ok(id)
    }

    /// The webhook actions a change fires, and whether it also fires `AccessControlUpdate`
    /// for the customer (reference §3.2, §3.3).
    fn actions(kind: SimEntity, change: Change) -> (Option<WebhookAction>, bool) {
        use WebhookAction as A;
        match (kind, change) {
            (SimEntity::Coworker, Change::Created) => (Some(A::CoworkerCreate), true),
            (SimEntity::Coworker, Change::Updated) => (Some(A::CoworkerUpdate), true),
            (SimEntity::Coworker, Change::Deleted) => (Some(A::CoworkerDelete), false),
            (SimEntity::Booking, Change::Created) => (Some(A::BookingCreate), false),
            (SimEntity::Booking, Change::Updated) => (Some(A::BookingUpdate), false),
            (SimEntity::Booking, Change::Deleted) => (Some(A::BookingDelete), true),
            (SimEntity::CoworkerContract, Change::Created) => (Some(A::CoworkerContractCreate), true),
            (SimEntity::CoworkerContract, Change::Updated) => (Some(A::CoworkerContractUpdate), true),
            (SimEntity::CoworkerContract, Change::Deleted) => (Some(A::CoworkerContractDelete), true),
            (SimEntity::CoworkerTimePass, _) => (None, true),
            (SimEntity::FloorPlanDesk, Change::Created) => (Some(A::FloorPlanDeskCreate), false),
            (SimEntity::FloorPlanDesk, Change::Updated) => (Some(A::FloorPlanDeskUpdate), false),
            (SimEntity::FloorPlanDesk, Change::Deleted) => (Some(A::FloorPlanDeskDelete), false),
            (SimEntity::Business, Change::Updated) => (Some(A::BusinessUpdate), false),
            _ => (None, false),
        }
    }

    fn notify(&mut self, kind: SimEntity, change: Change, id: u64, now: Timestamp) {
        let Some(record) = self.record(kind, id).cloned() else { return };
        let (action, access_control) = Self::actions(kind, change);
        if let Some(action) = action {
            self.enqueue(action, &record, now);
        }
        let customer = match kind {
            SimEntity::Coworker => Some(id),
            _ => record.get("CoworkerId").and_then(Value::as_u64),
        };
        if let (true, Some(customer)) = (access_control, customer) {
            let coworker =
                self.record(SimEntity::Coworker, customer).cloned().unwrap_or_else(|| json!({"Id": customer}));
            self.enqueue(WebhookAction::AccessControlUpdate, &coworker, now);
        }
    }

    /// Queues a delivery of `entity` to every active hook for `action`, with the faults applied.
    fn enqueue(&mut self, action: WebhookAction, entity: &Value, now: Timestamp) {
        let body = body_for(entity);
        let hooks: Vec<u64> = self
            .records(SimEntity::Webhook)
            .filter(|hook| hook.get("Action").and_then(Value::as_u64) == Some(action.code()))
            .filter(|hook| hook.get("Active").and_then(Value::as_bool) == Some(true))
            .filter_map(|hook| hook.get("Id").and_then(Value::as_u64))
            .collect();
        for hook in hooks {
            let faults = self.faults;
            if self.rng.random_bool(faults.drop_probability.clamp(0.0, 1.0)) {
                self.stats.deliveries_dropped += 1;
                continue;
            }
            let copies = if self.rng.random_bool(faults.duplicate_probability.clamp(0.0, 1.0)) { 2 } else { 1 };
            for _ in 0..copies {
                let delay = if self.rng.random_bool(faults.delay_probability.clamp(0.0, 1.0)) {
                    let max_ms = u64::try_from(faults.max_extra_delay.as_millis()).unwrap_or(u64::MAX);
                    Duration::from_millis(self.rng.random_range(0..=max_ms))
                } else {
                    Duration::ZERO
                };
                self.schedule(Delivery { hook, body: body.clone(), attempts: 0 }, now + delay);
            }
        }
    }

    fn schedule(&mut self, delivery: Delivery, due: Timestamp) {
        self.next_sequence += 1;
        self.queue.insert((due, self.next_sequence), delivery);
    }

    /// When the next delivery is due, if any is queued.
    pub(crate) fn next_due(&self) -> Option<Timestamp> {
        self.queue.first_key_value().map(|(&(due, _), _)| due)
    }

    /// The first delivery due at `now` whose hook is still active; deliveries for hooks that were
    /// disabled or removed meanwhile are dropped on the way.
    pub(crate) fn take_due(&mut self, now: Timestamp) -> Option<Outgoing> {
        while self.next_due().is_some_and(|due| due <= now) {
            let (_, delivery) = self.queue.pop_first()?;
            let Some(hook) = self.record(SimEntity::Webhook, delivery.hook) else { continue };
            if hook.get("Active").and_then(Value::as_bool) != Some(true) {
                continue;
            }
            let url = hook.get("URL").and_then(Value::as_str).unwrap_or_default().to_owned();
            let Some(secret) = self.hooks.get(&delivery.hook).map(|hook| hook.secret.clone()) else { continue };
            return Some(Outgoing { delivery, url, secret });
        }
        None
    }

    /// Records how a delivery went: a failure counts against the hook (disabling it after
    /// [`MAX_CONSECUTIVE_FAILURES`] in a row) and is retried later, `retry_delay` times the
    /// number of attempts so far.
    pub(crate) fn delivered(&mut self, mut delivery: Delivery, outcome: Result<(), String>, now: Timestamp) {
        delivery.attempts += 1;
        self.stats.deliveries_attempted += 1;
        let hook_id = delivery.hook;
        let Some(hook) = self.hooks.get_mut(&hook_id) else { return };
        let failure = outcome.err();
        if failure.is_some() {
            hook.consecutive_failures += 1;
        } else {
            hook.consecutive_failures = 0;
        }
        let disable = hook.consecutive_failures >= MAX_CONSECUTIVE_FAILURES;
        let Some(Value::Object(record)) =
            self.collections.get_mut(&SimEntity::Webhook).and_then(|hooks| hooks.get_mut(&hook_id))
        else {
            return;
        };
        record.insert("LastTrigger".into(), text_of(now));
        let Some(reason) = failure else {
            self.stats.deliveries_succeeded += 1;
            return;
        };
        let errors = record.get("ErrorCount").and_then(Value::as_u64).unwrap_or(0);
        record.insert("ErrorCount".into(), json!(errors + 1));
        record.insert("LastError".into(), json!(reason));
        if disable {
            record.insert("Active".into(), json!(false));
            record.insert("UpdatedOn".into(), text_of(now));
        } else if delivery.attempts < MAX_CONSECUTIVE_FAILURES {
            let retry_in = self.retry_delay.saturating_mul(delivery.attempts);
            self.schedule(delivery, now + retry_in);
        }
    }
}
