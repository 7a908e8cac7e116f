//! The ingestor's core, shared by the webhook receiver, the poller and the sweeper: read a
//! record, normalise it, decide against what was appended before, append, remember.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use doorsync_clock::SharedClock;
use doorsync_log::{EventLog, NewMessage, RetryPolicy, append_with_retry};
use doorsync_nexudus::{
    Booking, CancelledBooking, Coworker, CoworkerContract, CoworkerTimePass, Entity, FloorPlanDesk, MalformedRecord,
    NexudusClient, NexudusDateTime, NexudusError, Resource, TimePass,
};
use doorsync_proto::{Envelope, Event, MemberId, Subjects, WireMessage};

use crate::IngestOptions;
use crate::bucket::Bucket;
use crate::directory::Directory;
use crate::error::IngestError;
use crate::ledger::{Ledger, Observation, Verdict, decide};
use crate::normalise::{self, Normalised, Unnormalisable};
use crate::record::{Holder, RecordKey, RecordKind};
use crate::status::{Parking, Stats};

/// What one run (a poll, a sweep, one webhook) did with the records it read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunSummary {
    /// Record readings handled: listed records, records read again by id, cancellations.
    pub readings: u64,
    /// Readings that appended events.
    pub appended: u64,
    /// New readings that grant nothing to anyone, so appended nothing (e.g. a booking with no
    /// customer).
    pub recorded: u64,
    /// Readings with nothing new.
    pub unchanged: u64,
    /// Readings older than what was already appended, ignored.
    pub stale: u64,
    /// Readings that could not be normalised and were parked.
    pub parked: u64,
}

impl RunSummary {
    pub(crate) fn tally(&mut self, verdict: Verdict) {
        self.readings += 1;
        let count = match verdict {
            Verdict::Appended => &mut self.appended,
            Verdict::Recorded => &mut self.recorded,
            Verdict::Unchanged => &mut self.unchanged,
            Verdict::Stale => &mut self.stale,
            Verdict::Parked => &mut self.parked,
        };
        *count += 1;
    }
}

/// A kind of Nexudus record that becomes events.
pub(crate) trait Tracked: Entity + Clone + Send + Sync {
    const KIND: RecordKind;

    fn updated_on(&self) -> Option<&NexudusDateTime>;

    /// Whether this (listed) record lacks fields that only reading it by id gives.
    fn partial(&self) -> bool {
        false
    }

    /// What the record means, looking up what it refers to; `Ok(Err(..))` when it cannot be
    /// normalised (the record is parked), `Err` when a lookup failed (try again later).
    fn normalise(
        &self,
        directory: &Directory,
    ) -> impl Future<Output = Result<Result<Normalised, Unnormalisable>, IngestError>> + Send;
}

impl Tracked for Coworker {
    const KIND: RecordKind = RecordKind::Coworker;

    fn updated_on(&self) -> Option<&NexudusDateTime> {
        self.updated_on.as_ref()
    }

    async fn normalise(&self, _: &Directory) -> Result<Result<Normalised, Unnormalisable>, IngestError> {
        Ok(normalise::coworker(self))
    }
}

impl Tracked for Booking {
    const KIND: RecordKind = RecordKind::Booking;

    fn updated_on(&self) -> Option<&NexudusDateTime> {
        self.updated_on.as_ref()
    }

    async fn normalise(&self, directory: &Directory) -> Result<Result<Normalised, Unnormalisable>, IngestError> {
        let zone = directory.zone_of_resource(self.resource_id).await?;
        Ok(normalise::booking(self, zone.as_ref()))
    }
}

impl Tracked for CoworkerTimePass {
    const KIND: RecordKind = RecordKind::CoworkerTimePass;

    fn updated_on(&self) -> Option<&NexudusDateTime> {
        self.updated_on.as_ref()
    }

    async fn normalise(&self, directory: &Directory) -> Result<Result<Normalised, Unnormalisable>, IngestError> {
        let product = directory.lookup::<TimePass>(self.time_pass_id).await?;
        let business = self.business_id.or_else(|| product.as_ref().ok().and_then(|product| product.business_id));
        let zone = match business {
            Some(business) => directory.zone_of(business).await?,
            None => Err(Unnormalisable::new("BusinessId: is missing on the pass and on its product")),
        };
        Ok(normalise::pass(self, &product, &zone))
    }
}

impl Tracked for CoworkerContract {
    const KIND: RecordKind = RecordKind::CoworkerContract;

    fn updated_on(&self) -> Option<&NexudusDateTime> {
        self.updated_on.as_ref()
    }

    /// Listings leave out `Desks`.
    fn partial(&self) -> bool {
        self.desks.is_none()
    }

    async fn normalise(&self, directory: &Directory) -> Result<Result<Normalised, Unnormalisable>, IngestError> {
        let mut desks = BTreeMap::new();
        for &desk in self.desk_ids() {
            match directory.lookup::<FloorPlanDesk>(desk).await? {
                Ok(found) => desks.insert(desk, found.item_type),
                Err(reason) => return Ok(Err(Unnormalisable::new(format!("Desks: {reason}")))),
            };
        }
        let zone = match self.issued_by_id {
            Some(business) => directory.zone_of(business).await?.ok(),
            None => None,
        };
        Ok(normalise::contract(self, &desks, zone.as_ref()))
    }
}

macro_rules! mapping_source {
    ($entity:ty, $kind:ident, $rule:path) => {
        impl Tracked for $entity {
            const KIND: RecordKind = RecordKind::$kind;

            fn updated_on(&self) -> Option<&NexudusDateTime> {
                self.updated_on.as_ref()
            }

            async fn normalise(
                &self,
                directory: &Directory,
            ) -> Result<Result<Normalised, Unnormalisable>, IngestError> {
                directory.remember(self.clone());
                Ok($rule(self))
            }
        }
    };
}

mapping_source!(Resource, Resource, normalise::resource_mapping);
mapping_source!(TimePass, TimePass, normalise::pass_product_mapping);
mapping_source!(FloorPlanDesk, FloorPlanDesk, normalise::desk_mapping);

/// A record a listing returns, as the poller and sweeper handle it.
pub(crate) trait Listed: Entity + Sync {
    fn written_on(&self) -> Option<&NexudusDateTime>;

    fn ingest_listed(&self, ingestor: &Ingestor) -> impl Future<Output = Result<Verdict, IngestError>> + Send;
}

impl<E: Tracked> Listed for E {
    fn written_on(&self) -> Option<&NexudusDateTime> {
        self.updated_on()
    }

    async fn ingest_listed(&self, ingestor: &Ingestor) -> Result<Verdict, IngestError> {
        ingestor.ingest_listed(self).await
    }
}

impl Listed for CancelledBooking {
    fn written_on(&self) -> Option<&NexudusDateTime> {
        self.updated_on.as_ref()
    }

    async fn ingest_listed(&self, ingestor: &Ingestor) -> Result<Verdict, IngestError> {
        ingestor.cancelled(self).await
    }
}

/// Everything the ingestor's paths share.
pub(crate) struct Ingestor {
    pub(crate) client: NexudusClient,
    log: Arc<dyn EventLog>,
    subjects: Subjects,
    pub(crate) clock: SharedClock,
    pub(crate) options: IngestOptions,
    pub(crate) bucket: Bucket,
    pub(crate) ledger: Ledger,
    pub(crate) parking: Parking,
    pub(crate) directory: Directory,
    pub(crate) stats: Stats,
    pub(crate) poll_lock: tokio::sync::Mutex<()>,
    pub(crate) sweep_lock: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Ingestor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ingestor").field("bucket", &self.bucket.name()).finish_non_exhaustive()
    }
}

impl Ingestor {
    pub(crate) async fn new(
        options: IngestOptions,
        client: NexudusClient,
        log: Arc<dyn EventLog>,
        subjects: Subjects,
        bucket: &str,
        clock: SharedClock,
    ) -> Result<Self, IngestError> {
        let bucket = Bucket::new(log.key_value(bucket).await?, bucket);
        let ledger = Ledger::load(bucket.clone()).await?;
        let parking = Parking::load(bucket.clone()).await?;
        Ok(Self {
            directory: Directory::new(client.clone()),
            client,
            log,
            subjects,
            clock,
            options,
            bucket,
            ledger,
            parking,
            stats: Stats::default(),
            poll_lock: tokio::sync::Mutex::new(()),
            sweep_lock: tokio::sync::Mutex::new(()),
        })
    }

    /// Normalises a full record and appends what it changes.
    pub(crate) async fn ingest<E: Tracked>(&self, record: &E) -> Result<Verdict, IngestError> {
        match record.normalise(&self.directory).await? {
            Ok(normalised) => {
                self.parking.unpark(E::NAME, record.id()).await?;
                self.observe(RecordKey::new(E::KIND, record.id()), Observation::Present(normalised)).await
            }
            Err(reason) => {
                self.park(E::NAME, Some(record.id()), reason.to_string(), None).await?;
                Ok(Verdict::Parked)
            }
        }
    }

    /// A record from a listing: ingested as it is, or, when the listing leaves out what it
    /// needs, read by id first if this version is news.
    async fn ingest_listed<E: Tracked>(&self, record: &E) -> Result<Verdict, IngestError> {
        if !record.partial() {
            return self.ingest(record).await;
        }
        let key = RecordKey::new(E::KIND, record.id());
        let written = record.updated_on().and_then(NexudusDateTime::to_utc);
        if written.is_some_and(|written| self.ledger.knows_version(key, written)) {
            return Ok(Verdict::Unchanged);
        }
        self.reread::<E>(record.id()).await
    }

    /// Reads record `id` of `E` by id (never trusting what a webhook said about it) and
    /// ingests it; a record Nexudus no longer has is gone.
    pub(crate) async fn reread<E: Tracked>(&self, id: u64) -> Result<Verdict, IngestError> {
        match self.client.get::<E>(id).await {
            Ok(record) => self.ingest(&record).await,
            Err(NexudusError::NotFound { .. }) => {
                self.observe(RecordKey::new(E::KIND, id), Observation::Gone { at: None, holder_hint: None }).await
            }
            Err(NexudusError::Malformed(malformed)) => {
                self.park_malformed(&malformed).await?;
                Ok(Verdict::Parked)
            }
            Err(error) => Err(error.into()),
        }
    }

    /// A cancelled-booking snapshot: its original booking is gone, cancelled at `CancelledOn`.
    pub(crate) async fn cancelled(&self, snapshot: &CancelledBooking) -> Result<Verdict, IngestError> {
        let at = snapshot.cancelled_on.as_ref().or(snapshot.updated_on.as_ref()).and_then(NexudusDateTime::to_utc);
        let holder_hint = snapshot.coworker_id.map(|coworker| Holder::Member(MemberId(coworker)));
        let key = RecordKey::new(RecordKind::Booking, snapshot.original_booking_id);
        self.observe(key, Observation::Gone { at, holder_hint }).await
    }

    /// Decides a reading of `key` against what was appended before, appends the result and
    /// remembers it, with every other reading of the same record waiting its turn.
    pub(crate) async fn observe(&self, key: RecordKey, observation: Observation) -> Result<Verdict, IngestError> {
        if matches!(observation, Observation::Gone { .. }) {
            self.parking.unpark(key.kind.entity(), key.id).await?;
        }
        let lock = self.ledger.lock(key);
        let _one_reading_at_a_time = lock.lock().await;
        let current = self.ledger.current(key);
        let decision = decide(key, current.as_ref(), observation)?;
        for envelope in decision.appends {
            self.append(envelope).await?;
        }
        if let Some(next) = decision.next {
            self.ledger.commit(key, next).await?;
        }
        if decision.verdict == Verdict::Stale {
            self.stats.stale();
        }
        Ok(decision.verdict)
    }

    /// Appends one event and returns once the log has it durably.
    async fn append(&self, envelope: Envelope<Event>) -> Result<(), IngestError> {
        let subject = self.subjects.subject_for(&envelope.message);
        let payload = doorsync_proto::encode(&envelope)?;
        let mut message = NewMessage::new(subject, envelope.id.to_string(), Bytes::from(payload));
        message.headers = doorsync_telemetry::current_trace_headers();
        let appended = append_with_retry(&*self.log, message, RetryPolicy::default()).await?;
        self.stats.appended(envelope.message.tag(), appended.duplicate);
        Ok(())
    }

    /// Parks a record Nexudus sent in a shape the client cannot read; returns its parking key.
    pub(crate) async fn park_malformed(&self, malformed: &MalformedRecord) -> Result<String, IngestError> {
        let reason = format!("{}: {}", malformed.field, malformed.problem);
        self.park(malformed.entity, malformed.id, reason, Some(&malformed.raw)).await
    }

    async fn park(
        &self,
        entity: &str,
        id: Option<u64>,
        reason: String,
        raw: Option<&serde_json::Value>,
    ) -> Result<String, IngestError> {
        let (key, newly) = self.parking.park(entity, id, reason, raw, self.clock.now()).await?;
        if newly {
            self.stats.parked();
        }
        Ok(key)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use std::time::Duration;

    use doorsync_clock::ManualClock;
    use doorsync_layout::Layout;
    use doorsync_log::ReplayRequest;
    use doorsync_log_embedded::{EmbeddedLog, EmbeddedOptions};
    use doorsync_nexudus::{AuthMode, Credentials, LimiterWaits, Limits, NexudusOptions, Secret};
    use doorsync_nexudus_sim::{NexudusSimulator, SimEntity, SimOptions};
    use doorsync_proto::{BookingChanged, BookingId, ResourceId, Timestamp};
    use futures::StreamExt;
    use serde_json::json;

    use super::*;

    /// 2025-07-01T08:00:00Z
    const START: Timestamp = Timestamp::from_unix_millis(1_751_356_800_000);

    #[tokio::test]
    async fn an_older_reading_handed_in_late_never_overwrites_a_newer_one() {
        let clock = ManualClock::new(START);
        let mut sim_options = SimOptions::new(Arc::new(clock.clone()));
        sim_options.limits = None;
        let sim = NexudusSimulator::start(sim_options).await.unwrap();
        let credentials = Credentials { username: "admin@example.com".into(), password: Secret::new("password") };
        let mut client_options = NexudusOptions::new(sim.base_url(), credentials);
        client_options.auth = AuthMode::Basic;
        client_options.limits = Limits { min_interval: Duration::ZERO, per_minute: 1_000_000, per_hour: 1_000_000 };
        let client = NexudusClient::new(client_options, Arc::new(clock.clone())).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(Subjects::new("test", 4).unwrap());
        let log = EmbeddedLog::open(EmbeddedOptions::new(dir.path().join("log.redb"), layout.streams())).unwrap();
        let log: Arc<dyn EventLog> = Arc::new(log);
        let options = IngestOptions::new(Secret::new("hook-secret"));
        let ingestor = Ingestor::new(
            options,
            client.clone(),
            Arc::clone(&log),
            layout.subjects.clone(),
            &layout.ingest_bucket,
            Arc::new(clock.clone()),
        )
        .await
        .unwrap();

        let resource = sim.create(SimEntity::Resource, json!({"BusinessId": 1, "Name": "Room"})).unwrap();
        let fields = json!({
            "ResourceId": resource, "CoworkerId": 12, "Tentative": false,
            "FromTime": "2025-07-02T09:00:00Z", "ToTime": "2025-07-02T10:00:00Z",
        });
        let booking = sim.create(SimEntity::Booking, fields).unwrap();
        let older: Booking = client.get(booking).await.unwrap();
        clock.advance(Duration::from_secs(5));
        sim.update(SimEntity::Booking, booking, json!({"ToTime": "2025-07-02T11:00:00Z"})).unwrap();
        let newer: Booking = client.get(booking).await.unwrap();

        assert_eq!(ingestor.ingest(&newer).await.unwrap(), Verdict::Appended);
        assert_eq!(ingestor.ingest(&older).await.unwrap(), Verdict::Stale);
        assert_eq!(ingestor.ingest(&newer).await.unwrap(), Verdict::Unchanged);

        let mut replay = log.replay(ReplayRequest::whole(&layout.events)).await.unwrap();
        let mut events = Vec::new();
        while let Some(message) = replay.next().await {
            let envelope = doorsync_proto::decode::<Event>(&message.unwrap().payload).unwrap();
            events.push((envelope.occurred_at, envelope.message));
        }
        let expected = Event::BookingChanged(BookingChanged {
            member: MemberId(12),
            booking: BookingId(booking),
            resource: ResourceId(resource),
            starts_at: NexudusDateTime::parse("2025-07-02T09:00:00Z").unwrap().to_utc().unwrap(),
            ends_at: NexudusDateTime::parse("2025-07-02T11:00:00Z").unwrap().to_utc().unwrap(),
            tentative: false,
        });
        let updated_on = Timestamp::from_unix_millis(START.as_unix_millis() + 5_000);
        assert_eq!(events, vec![(updated_on, expected)]);
        assert_eq!(ingestor.stats.status(Vec::new(), 0, 0, LimiterWaits::default()).stale_readings, 1);
        sim.shutdown().await;
    }
}
