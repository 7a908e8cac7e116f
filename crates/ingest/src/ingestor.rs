//! The ingestor's core, shared by the webhook receiver, the retry set, the poller and the
//! sweeper: read a record, normalise it, decide against what was appended before, append,
//! remember.
//!
//! Nexudus answers a read by id of a deleted record with 500 (not 404): a record whose read by
//! id answers 404 or 500 is looked up in a listing by its id, and only an empty one makes it
//! gone (a booking is also looked up among the cancelled bookings, to date its cancellation).

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use doorsync_catalogue::CatalogueWriter;
use doorsync_clock::SharedClock;
use doorsync_layout::Layout;
use doorsync_log::{EventLog, NewMessage, RetryPolicy, append_with_retry};
use doorsync_nexudus::{
    Booking, Business, CancelledBooking, Coworker, CoworkerContract, CoworkerTimePass, Entity, FloorPlanDesk,
    ListQuery, MalformedRecord, NexudusClient, NexudusDateTime, NexudusError, Priority, Resource, TimePass,
};
use doorsync_proto::{EncodeError, Envelope, Event, MemberId, Subjects, Timestamp, WireMessage};

use crate::IngestOptions;
use crate::bucket::Bucket;
use crate::directory::Directory;
use crate::error::IngestError;
use crate::ledger::{Decision, Ledger, Observation, RecordState, Verdict, decide, withhold};
use crate::normalise::{self, LocationZone, Normalised, Unnormalisable};
use crate::record::{Holder, RecordKey, RecordKind};
use crate::retry::{RetrySet, Target};
use crate::role::Role;
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

    /// Record `id` is confirmed gone from Nexudus: its removal, dated by what Nexudus says of it.
    fn gone(ingestor: &Ingestor, id: u64) -> impl Future<Output = Result<Verdict, IngestError>> + Send {
        ingestor.observe(RecordKey::new(Self::KIND, id), Observation::Gone { at: None, holder_hint: None })
    }
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
        Ok(normalise::booking(self, &zone))
    }

    /// A cancelled booking leaves a snapshot among the cancelled bookings, which dates the
    /// cancellation; a booking without one was deleted outright.
    async fn gone(ingestor: &Ingestor, id: u64) -> Result<Verdict, IngestError> {
        let query = ListQuery::<CancelledBooking>::new().field_equals("OriginalBookingId", id);
        let snapshots = ingestor.client.list(&query).await?;
        // Only snapshots of this booking: a server that ignored the filter lists others too.
        let snapshot = snapshots
            .records
            .iter()
            .filter(|snapshot| snapshot.original_booking_id == id)
            .max_by_key(|snapshot| snapshot.cancelled_on.as_ref().and_then(NexudusDateTime::to_utc));
        match snapshot {
            Some(snapshot) => ingestor.cancelled(snapshot).await,
            None => {
                ingestor
                    .observe(RecordKey::new(RecordKind::Booking, id), Observation::Gone { at: None, holder_hint: None })
                    .await
            }
        }
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
            Some(business) => LocationZone::from_lookup(directory.zone_of(business).await?),
            None => LocationZone::Unnamed,
        };
        let cutoff = directory.day_pass_cutoffs.of(business);
        Ok(normalise::pass(self, &product, &zone, cutoff))
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
            Some(business) => LocationZone::from_lookup(directory.zone_of(business).await?),
            None => LocationZone::Unnamed,
        };
        Ok(normalise::contract(self, &desks, &zone))
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
                directory.publish_names().await;
                Ok($rule(self))
            }

            /// Also dropped from the directory, so that nothing refers to it as it was.
            async fn gone(ingestor: &Ingestor, id: u64) -> Result<Verdict, IngestError> {
                ingestor.directory.forget::<$entity>(id);
                let key = RecordKey::new(Self::KIND, id);
                ingestor.observe(key, Observation::Gone { at: None, holder_hint: None }).await
            }
        }
    };
}

mapping_source!(Resource, Resource, normalise::resource_mapping);
mapping_source!(TimePass, TimePass, normalise::pass_product_mapping);
mapping_source!(FloorPlanDesk, FloorPlanDesk, normalise::desk_mapping);

/// Which run reads a listing, which decides what is done with a partial record in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ListedBy {
    /// The poller reads by id only the partial records whose `UpdatedOn` is news.
    Poll,
    /// The sweeper reads every partial record by id: Nexudus may change what a listing leaves
    /// out (a contract's `Desks`) without moving `UpdatedOn` (unconfirmed, reference §1.5), and
    /// nothing else would ever show that change.
    Sweep,
}

/// A record a listing returns, as the poller and sweeper handle it.
pub(crate) trait Listed: Entity + Sync {
    fn written_on(&self) -> Option<&NexudusDateTime>;

    fn ingest_listed(
        &self,
        ingestor: &Ingestor,
        by: ListedBy,
    ) -> impl Future<Output = Result<Verdict, IngestError>> + Send;
}

impl<E: Tracked> Listed for E {
    fn written_on(&self) -> Option<&NexudusDateTime> {
        self.updated_on()
    }

    async fn ingest_listed(&self, ingestor: &Ingestor, by: ListedBy) -> Result<Verdict, IngestError> {
        ingestor.ingest_listed(self, by).await
    }
}

impl Listed for CancelledBooking {
    fn written_on(&self) -> Option<&NexudusDateTime> {
        self.updated_on.as_ref()
    }

    async fn ingest_listed(&self, ingestor: &Ingestor, _: ListedBy) -> Result<Verdict, IngestError> {
        ingestor.cancelled(self).await
    }
}

/// Confirms that record `id` of `E`, whose read by id gave `answer` (a 404 or a 500), is gone:
/// `Ok` when a listing by its id is empty; otherwise the record is there and `answer` was a real
/// server error, or the listing held other records and nothing can be concluded.
pub(crate) async fn confirm_deleted<E: Entity>(
    client: &NexudusClient,
    id: u64,
    answer: NexudusError,
) -> Result<(), IngestError> {
    let listing = client.list(&ListQuery::<E>::new().ids(&[id])).await?;
    let listed = listing.records.iter().map(|record| Some(record.id())).chain(listing.malformed.iter().map(|m| m.id));
    let mut others = false;
    for listed in listed {
        if listed == Some(id) {
            return Err(answer.into());
        }
        others = true;
    }
    if others {
        return Err(IngestError::DeletionUnconfirmed { entity: E::NAME, id, answer: answer.to_string() });
    }
    Ok(())
}

/// Ids asked for in one listing by ids.
const IDS_PER_LISTING: usize = 50;

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
    pub(crate) retries: RetrySet,
    pub(crate) directory: Directory,
    pub(crate) stats: Stats,
    pub(crate) role: Role,
    pub(crate) poll_lock: tokio::sync::Mutex<()>,
    pub(crate) sweep_lock: tokio::sync::Mutex<()>,
    /// Brings the next sweep forward to now.
    pub(crate) sweep_wanted: tokio::sync::Notify,
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
        layout: &Layout,
        clock: SharedClock,
    ) -> Result<Self, IngestError> {
        let bucket = Bucket::new(log.key_value(&layout.ingest_bucket).await?, &layout.ingest_bucket);
        let catalogue = CatalogueWriter::open(log.as_ref(), layout).await?;
        let ledger = Ledger::load(bucket.clone()).await?;
        let parking = Parking::load(bucket.clone()).await?;
        let retries = RetrySet::load(bucket.clone(), options.retry_first_delay, options.retry_max_delay).await?;
        let stats = Stats::new(Arc::clone(&clock), options.poll_every);
        Ok(Self {
            directory: Directory::new(client.clone(), options.day_pass_cutoffs.clone(), Some(catalogue)),
            client,
            log,
            subjects: layout.subjects.clone(),
            clock,
            options,
            bucket,
            ledger,
            parking,
            retries,
            stats,
            role: Role::default(),
            poll_lock: tokio::sync::Mutex::new(()),
            sweep_lock: tokio::sync::Mutex::new(()),
            sweep_wanted: tokio::sync::Notify::new(),
        })
    }

    /// Reads what another ingestor may have changed in the ingest bucket while this one was on
    /// standby: record states, parked records, the retry set.
    pub(crate) async fn reload(&self) -> Result<(), IngestError> {
        self.ledger.reload().await?;
        self.parking.reload().await?;
        self.retries.reload().await
    }

    /// Normalises a full record and appends what it changes.
    pub(crate) async fn ingest<E: Tracked>(&self, record: &E) -> Result<Verdict, IngestError> {
        match record.normalise(&self.directory).await? {
            Ok(normalised) => {
                self.parking.unpark(E::NAME, record.id()).await?;
                self.observe(RecordKey::new(E::KIND, record.id()), Observation::Present(normalised)).await
            }
            Err(reason) => {
                let written = record.updated_on().and_then(NexudusDateTime::to_utc);
                self.park(E::NAME, Some(record.id()), reason.to_string(), None, written).await?;
                Ok(Verdict::Parked)
            }
        }
    }

    /// A record from a listing: ingested as it is, or, when the listing leaves out what it
    /// needs, read by id first (by the poller only if this version is news). What a reading by
    /// id changed is found by its content, whatever its `UpdatedOn` says.
    async fn ingest_listed<E: Tracked>(&self, record: &E, by: ListedBy) -> Result<Verdict, IngestError> {
        if !record.partial() {
            return self.ingest(record).await;
        }
        let key = RecordKey::new(E::KIND, record.id());
        let written = record.updated_on().and_then(NexudusDateTime::to_utc);
        if by == ListedBy::Poll && written.is_some_and(|written| self.ledger.knows_version(key, written)) {
            return Ok(Verdict::Unchanged);
        }
        self.reread::<E>(record.id()).await
    }

    /// Reads what `target` names for `id` and, when Nexudus fails to answer about it, keeps it
    /// in the retry set instead of failing; a reading that works takes it out. `Err` only when
    /// the log or the ingest bucket failed.
    pub(crate) async fn attempt(&self, target: Target, id: u64) -> Result<(), IngestError> {
        let read = self.read_target(target, id).await;
        self.settle_attempt(target, id, read).await
    }

    /// As [`Ingestor::attempt`], for a record a webhook says was deleted: read with a listing by
    /// its id, which is what confirms a deletion, rather than by id first (which Nexudus answers
    /// with 500 for a deleted record, to be confirmed by that listing anyway).
    pub(crate) async fn attempt_deleted(&self, target: Target, id: u64) -> Result<(), IngestError> {
        let read = match target {
            Target::Coworker => self.reread_likely_gone::<Coworker>(id).await.map(drop),
            Target::Booking => self.reread_likely_gone::<Booking>(id).await.map(drop),
            Target::CoworkerContract => self.reread_likely_gone::<CoworkerContract>(id).await.map(drop),
            _ => self.read_target(target, id).await,
        };
        self.settle_attempt(target, id, read).await
    }

    /// Takes `target` `id` out of the retry set after a `read` that worked, or keeps it there
    /// after one Nexudus failed to answer.
    pub(crate) async fn settle_attempt(
        &self,
        target: Target,
        id: u64,
        read: Result<(), IngestError>,
    ) -> Result<(), IngestError> {
        match read {
            Ok(()) => self.retries.succeeded(target, id).await,
            Err(error) if error.is_about_nexudus() => {
                tracing::warn!(entity = target.name(), id, %error, "nexudus record not read; it is in the retry set");
                self.retries.failed(target, id, &error.to_string(), self.clock.now()).await
            }
            Err(error) => Err(error),
        }
    }

    async fn read_target(&self, target: Target, id: u64) -> Result<(), IngestError> {
        match target {
            Target::Coworker => self.reread::<Coworker>(id).await.map(drop),
            Target::Customer => self.recompute_passes(id).await,
            Target::Booking => self.reread::<Booking>(id).await.map(drop),
            Target::CoworkerContract => self.reread::<CoworkerContract>(id).await.map(drop),
            Target::CoworkerTimePass => self.reread::<CoworkerTimePass>(id).await.map(drop),
            Target::FloorPlanDesk if self.options.mapping_from_nexudus => {
                self.reread::<FloorPlanDesk>(id).await.map(drop)
            }
            Target::FloorPlanDesk => self.directory.refresh::<FloorPlanDesk>(id).await,
            Target::Business => {
                let zones_before = self.directory.location_zones();
                self.directory.refresh::<Business>(id).await?;
                self.sweep_if_a_zone_moved(&zones_before);
                Ok(())
            }
        }
    }

    /// Reads again every entry of the retry set that is due. An entry whose reading failed
    /// because the log or the bucket did still counts the attempt, so it waits its turn.
    pub(crate) async fn retry_due(&self) {
        for (target, id) in self.retries.due(self.clock.now()) {
            if let Err(error) = self.attempt(target, id).await {
                tracing::warn!(entity = target.name(), id, %error, "retrying a nexudus record failed");
                if let Err(error) = self.retries.failed(target, id, &error.to_string(), self.clock.now()).await {
                    tracing::warn!(entity = target.name(), id, %error, "the retry set could not be stored");
                }
            }
        }
    }

    /// Reads record `id` of `E` by id (never trusting what a webhook said about it) and
    /// ingests it; a record Nexudus no longer has (confirmed by a listing by id) is gone.
    pub(crate) async fn reread<E: Tracked>(&self, id: u64) -> Result<Verdict, IngestError> {
        match self.client.get::<E>(id).await {
            Ok(record) => self.ingest(&record).await,
            Err(answer) if answer.may_mean_deleted() => {
                confirm_deleted::<E>(&self.client, id, answer).await?;
                E::gone(self, id).await
            }
            Err(NexudusError::Malformed(malformed)) => {
                self.park_malformed(&malformed).await?;
                Ok(Verdict::Parked)
            }
            Err(error) => Err(error.into()),
        }
    }

    /// Reads records `ids` of `E`, which are likely gone, with one listing by their ids: a
    /// listed one is ingested (read by id too when the listing leaves part of it out), one not
    /// listed is gone. A listing that holds records not asked for (a server that ignored the
    /// filter) proves nothing: then the records not listed are read by id. Returns the verdict
    /// for each id, or the error that one id met; `Err` when the listing could not be read.
    pub(crate) async fn reread_all_likely_gone<E: Tracked>(
        &self,
        ids: &[u64],
    ) -> Result<Vec<(u64, Result<Verdict, IngestError>)>, IngestError> {
        let mut verdicts = Vec::new();
        // A few ids a listing, so that its URL stays short.
        for ids in ids.chunks(IDS_PER_LISTING) {
            verdicts.extend(self.reread_listed_by_ids::<E>(ids).await?);
        }
        Ok(verdicts)
    }

    async fn reread_listed_by_ids<E: Tracked>(
        &self,
        ids: &[u64],
    ) -> Result<Vec<(u64, Result<Verdict, IngestError>)>, IngestError> {
        let listing = self.client.list(&ListQuery::<E>::new().ids(ids)).await?;
        let asked = |id: Option<u64>| id.is_some_and(|id| ids.contains(&id));
        let filtered = listing.records.iter().all(|record| asked(Some(record.id())))
            && listing.malformed.iter().all(|malformed| asked(malformed.id));
        let mut verdicts = Vec::new();
        for &id in ids {
            let verdict = if let Some(record) = listing.records.iter().find(|record| record.id() == id) {
                self.ingest_listed(record, ListedBy::Sweep).await
            } else if let Some(malformed) = listing.malformed.iter().find(|malformed| malformed.id == Some(id)) {
                self.park_malformed(malformed).await.map(|_| Verdict::Parked)
            } else if filtered {
                E::gone(self, id).await
            } else {
                self.reread::<E>(id).await
            };
            verdicts.push((id, verdict));
        }
        Ok(verdicts)
    }

    /// One record of `E` that is likely gone; see [`Ingestor::reread_all_likely_gone`].
    async fn reread_likely_gone<E: Tracked>(&self, id: u64) -> Result<Verdict, IngestError> {
        let mut verdicts = self.reread_all_likely_gone::<E>(&[id]).await?;
        verdicts.pop().map_or(Ok(Verdict::Unchanged), |(_, verdict)| verdict)
    }

    /// A cancelled-booking snapshot: its original booking is gone, cancelled at `CancelledOn`.
    pub(crate) async fn cancelled(&self, snapshot: &CancelledBooking) -> Result<Verdict, IngestError> {
        let at = snapshot.cancelled_on.as_ref().or(snapshot.updated_on.as_ref()).and_then(NexudusDateTime::to_utc);
        let holder_hint = snapshot.coworker_id.map(|coworker| Holder::Member(MemberId(coworker)));
        let key = RecordKey::new(RecordKind::Booking, snapshot.original_booking_id);
        // Every sweep lists every cancelled booking: one whose state was forgotten would
        // otherwise be cancelled again in the log at each sweep.
        if at.is_some_and(|at| self.ledger.forgotten(key, at, self.removed_cutoff())) {
            return Ok(Verdict::Unchanged);
        }
        self.observe(key, Observation::Gone { at, holder_hint }).await
    }

    /// Removals recorded before this are forgotten.
    pub(crate) fn removed_cutoff(&self) -> Timestamp {
        self.clock.now() - self.options.removed_horizon
    }

    /// Decides a reading of `key` against what was appended before, appends the result and
    /// remembers it, with every other reading of the same record waiting its turn.
    pub(crate) async fn observe(&self, key: RecordKey, observation: Observation) -> Result<Verdict, IngestError> {
        if matches!(observation, Observation::Gone { .. }) {
            self.parking.unpark(key.kind.entity(), key.id).await?;
        }
        let verdict = self.settle(key, |current| decide(key, current, observation)).await?;
        if verdict == Verdict::Stale {
            self.stats.stale();
        }
        Ok(verdict)
    }

    /// Appends what `decide` makes of the record's state, and keeps the state it gives, with
    /// every other reading of the same record waiting its turn.
    async fn settle(
        &self,
        key: RecordKey,
        decide: impl FnOnce(Option<&RecordState>) -> Result<Decision, EncodeError>,
    ) -> Result<Verdict, IngestError> {
        let lock = self.ledger.lock(key);
        let _one_reading_at_a_time = lock.lock().await;
        self.role.ensure_acting(&*self.clock).await?;
        let current = self.ledger.current(key);
        let decision = decide(current.as_ref())?;
        for envelope in decision.appends {
            self.append(envelope).await?;
        }
        if let Some(next) = decision.next {
            self.ledger.commit(key, next, self.clock.now()).await?;
        }
        Ok(decision.verdict)
    }

    /// Appends one event and returns once the log has it durably.
    async fn append(&self, envelope: Envelope<Event>) -> Result<(), IngestError> {
        // Again before each append: an earlier one may have taken until the lease could lapse.
        self.role.ensure_acting(&*self.clock).await?;
        let subject = self.subjects.subject_for(&envelope.message);
        let payload = doorsync_proto::encode(&envelope)?;
        let mut message = NewMessage::new(subject, envelope.id.to_string(), Bytes::from(payload));
        message.headers = doorsync_telemetry::current_trace_headers();
        // What the poller or the sweeper found is bulk work; a webhook's change is live.
        if Priority::current() == Priority::Background {
            message.headers.push(doorsync_layout::bulk_header());
        }
        let appended = append_with_retry(&*self.log, message, RetryPolicy::default()).await?;
        self.stats.appended(envelope.message.tag(), appended.duplicate);
        Ok(())
    }

    /// Parks a record Nexudus sent in a shape the client cannot read; returns its parking key.
    pub(crate) async fn park_malformed(&self, malformed: &MalformedRecord) -> Result<String, IngestError> {
        let reason = format!("{}: {}", malformed.field, malformed.problem);
        self.park(malformed.entity, malformed.id, reason, Some(&malformed.raw), None).await
    }

    /// Parks a record, and withholds from its member what an earlier version of it granted
    /// (see [`withhold`]): a record that cannot be read must not go on granting what it no
    /// longer says. `written` is the parked version's `UpdatedOn`, where it could be read.
    async fn park(
        &self,
        entity: &str,
        id: Option<u64>,
        reason: String,
        raw: Option<&serde_json::Value>,
        written: Option<Timestamp>,
    ) -> Result<String, IngestError> {
        if let (Some(kind), Some(id)) = (RecordKind::from_entity(entity), id) {
            let key = RecordKey::new(kind, id);
            self.settle(key, |current| withhold(key, current, &reason, written)).await?;
        }
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
    use crate::IngestRole;

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
        let ingestor =
            Ingestor::new(options, client.clone(), Arc::clone(&log), &layout, Arc::new(clock.clone())).await.unwrap();
        let lease = doorsync_log::Lease::new(
            ingestor.bucket.kv(),
            "lease",
            "test",
            Duration::from_secs(30),
            Arc::new(clock.clone()),
        );
        ingestor.role.activate(lease.try_acquire().await.unwrap().unwrap());

        let business = sim.create_location("Soho", "GMT Standard Time").unwrap();
        let resource = sim.create(SimEntity::Resource, json!({"BusinessId": business, "Name": "Room"})).unwrap();
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
        assert_eq!(
            ingestor
                .stats
                .status(Vec::new(), Vec::new(), 0, 0, LimiterWaits::default(), IngestRole::Active)
                .stale_readings,
            1
        );
        sim.shutdown().await;
    }
}
