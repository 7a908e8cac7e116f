//! The poller, the sweeper, the webhook health check and the per-customer recompute that an
//! `AccessControlUpdate` asks for.
//!
//! The poller lists again what records refer to (zones, locations, rooms, pass products, desks:
//! a few pages), so that a webhook's change costs one read of the record it names, then lists
//! each entity changed since its watermark minus an overlap (the filter has
//! minute precision and clocks drift) and minus the westernmost location's offset from UTC (the
//! filter may be read on the location's wall clock), and moves the watermark, in the ingest bucket
//! (`watermark.<Entity>`), only once everything it read is durably appended. The sweeper lists
//! everything, so that records that vanished (hard deletes, which `UpdatedOn` cannot show, each
//! confirmed by a listing by its id) become removals, cancelled bookings become cancellations,
//! every record a listing shows only in part (a contract without its `Desks`) is read again by
//! id, since Nexudus may change those parts without moving `UpdatedOn`, and the cached
//! locations, zones, products and desks are refreshed.
//!
//! Both are background work ([`Priority::Background`]): their Nexudus reads wait behind any
//! webhook's, and the events they append carry the bulk header (`doorsync_layout::bulk_header`),
//! so that the writer carries out live changes first.

use std::collections::{BTreeMap, BTreeSet};

use doorsync_nexudus::{
    Booking, Business, CancelledBooking, Coworker, CoworkerContract, CoworkerTimePass, Entity, FloorPlanDesk,
    ListQuery, NexudusDateTime, Priority, Resource, SimpleTimeZone, TimePass, Webhook,
};
use doorsync_proto::{MemberId, Timestamp};

use crate::directory::{LocationZoneNaming, Referenced};
use crate::error::IngestError;
use crate::ingestor::{Ingestor, Listed, ListedBy, RunSummary, Tracked};
use crate::ledger::Verdict;
use crate::record::{Holder, RecordKind};
use crate::retry::Target;
use crate::status::{InactiveWebhook, Run, WebhookHealth};

/// What one listing held.
#[derive(Debug, Default)]
struct ListingRead {
    /// Ids of every record listed, readable or not.
    ids: BTreeSet<u64>,
    /// The latest `UpdatedOn` among them.
    newest: Option<Timestamp>,
    /// Parking keys of the listed records that had no readable id.
    unidentified: BTreeSet<String>,
    /// The first failure to read what one record refers to; the other records were handled.
    failure: Option<IngestError>,
    /// The earliest `UpdatedOn` of a record that failed, which the watermark must not pass (the
    /// earliest instant there is when such a record had none).
    hold: Option<Timestamp>,
}

/// Goes on past an error that concerns one record (Nexudus failed to answer about it or about
/// what it refers to), keeping the first such error in `failure` for the run to report; any
/// other error (the log failed) stops the run.
fn carry_on(error: IngestError, what: &str, id: u64, failure: &mut Option<IngestError>) -> Result<(), IngestError> {
    if !error.is_about_nexudus() {
        return Err(error);
    }
    tracing::warn!(what, id, %error, "could not read a nexudus record; going on with the others");
    failure.get_or_insert(error);
    Ok(())
}

/// `$self.$run::<E>($summary).await` for every kind of record that becomes events, in an order
/// where customers come before what they hold; the mapping sources are skipped unless the
/// options take the mapping from Nexudus.
macro_rules! for_each_tracked {
    ($self:ident . $run:ident ($summary:expr)) => {{
        let mut results = vec![
            $self.$run::<Coworker>($summary).await,
            $self.$run::<Booking>($summary).await,
            $self.$run::<CoworkerTimePass>($summary).await,
            $self.$run::<CoworkerContract>($summary).await,
        ];
        if $self.options.mapping_from_nexudus {
            results.push($self.$run::<Resource>($summary).await);
            results.push($self.$run::<TimePass>($summary).await);
            results.push($self.$run::<FloorPlanDesk>($summary).await);
        }
        results
    }};
}

impl Ingestor {
    /// Reads what records refer to again (locations, zones, rooms, products, desks), then what
    /// changed since the watermarks,
    /// appends it, and moves the watermarks on; also checks the webhooks' health. Polls run one
    /// at a time.
    #[tracing::instrument(name = "ingest.poll", skip_all)]
    pub(crate) async fn poll(&self) -> Result<RunSummary, IngestError> {
        Priority::Background
            .scope(async {
                let _one_poll_at_a_time = self.poll_lock.lock().await;
                let mut summary = RunSummary::default();
                // The locations first: their zones decide where each listing starts. Then what
                // records refer to, so that a change reads only the record it names.
                let zones_before = self.directory.location_zones();
                let mut results = self.refresh_references().await;
                self.sweep_if_a_zone_moved(&zones_before);
                results.extend(for_each_tracked!(self.poll_entity(&mut summary)));
                results.push(self.poll_entity::<CancelledBooking>(&mut summary).await);
                results.push(self.check_webhooks().await);
                self.finish(Run::Poll, summary, results).await
            })
            .await
    }

    /// Lists everything: vanished records become removals, cancelled bookings cancellations,
    /// and what records refer to is refreshed. Sweeps run one at a
    /// time.
    #[tracing::instrument(name = "ingest.sweep", skip_all)]
    pub(crate) async fn sweep(&self) -> Result<RunSummary, IngestError> {
        Priority::Background
            .scope(async {
                let _one_sweep_at_a_time = self.sweep_lock.lock().await;
                let mut summary = RunSummary::default();
                let mut results = self.refresh_references().await;
                // Cancellations first, so a cancelled booking's removal is dated by its `CancelledOn`
                // rather than found missing from the bookings.
                results.push(self.sweep_cancellations(&mut summary).await);
                results.extend(for_each_tracked!(self.sweep_entity(&mut summary)));
                results.push(self.forget_removed().await);
                self.finish(Run::Sweep, summary, results).await
            })
            .await
    }

    /// Records how a run went, and when it last succeeded in the bucket (the schedule counts from
    /// it, across restarts); the first failure (after trying every part) is the run's error.
    async fn finish(
        &self,
        run: Run,
        summary: RunSummary,
        results: Vec<Result<(), IngestError>>,
    ) -> Result<RunSummary, IngestError> {
        let now = self.clock.now();
        self.stats.nexudus_reached(now, &results);
        let failure = results.into_iter().find_map(Result::err);
        self.stats.finished(run, now, failure.as_ref().map(ToString::to_string));
        match failure {
            Some(error) => Err(error),
            None => {
                self.bucket.put(schedule_key(run), &now).await?;
                Ok(summary)
            }
        }
    }

    /// What `run`'s schedule counts from: its last success, or the first start of an ingestor
    /// on this bucket, which it records when it is that start.
    pub(crate) async fn schedule_start(&self, run: Run) -> Result<Timestamp, IngestError> {
        let key = schedule_key(run);
        if let Some(since) = self.bucket.get(key).await? {
            return Ok(since);
        }
        let now = self.clock.now();
        self.bucket.put(key, &now).await?;
        Ok(now)
    }

    /// What an `AccessControlUpdate` for a customer asks for besides the customer (read as a
    /// coworker): their passes, which have no webhook of their own. Changed passes show in the
    /// pass listing since its watermark; the customer's passes it does not show are looked up
    /// together with one listing by their ids, to find deleted ones. Each pass that cannot be
    /// read goes to the retry set on its own; `Err` when a listing could not be read (or the log
    /// failed).
    pub(crate) async fn recompute_passes(&self, coworker: u64) -> Result<(), IngestError> {
        let watermark = self.watermark(CoworkerTimePass::NAME).await?;
        let query = self.changed_since::<CoworkerTimePass>(watermark);
        let listed = self.read_listing(&query, ListedBy::Poll, &mut RunSummary::default()).await?;
        let held = self.ledger.live(RecordKind::CoworkerTimePass, Some(Holder::Member(MemberId(coworker))));
        let unlisted: Vec<u64> = held.into_iter().filter(|pass| !listed.ids.contains(pass)).collect();
        if !unlisted.is_empty() {
            for (pass, verdict) in self.reread_all_likely_gone::<CoworkerTimePass>(&unlisted).await? {
                self.settle_attempt(Target::CoworkerTimePass, pass, verdict.map(drop)).await?;
            }
        }
        listed.failure.map_or(Ok(()), Err)
    }

    async fn poll_entity<E: Listed>(&self, summary: &mut RunSummary) -> Result<(), IngestError> {
        let started = self.clock.now();
        let watermark = self.watermark(E::NAME).await?;
        let query = self.changed_since::<E>(watermark);
        let listed = self.read_listing(&query, ListedBy::Poll, summary).await?;
        // Capped at our own clock, so a record stamped ahead of it cannot make the watermark skip
        // what is written meanwhile, and at the first record that failed, to read it again.
        let capped = listed.newest.map(|newest| newest.min(started));
        let next = match listed.hold {
            Some(hold) => capped.map(|capped| capped.min(hold)),
            None => capped,
        };
        let next = next.max(watermark);
        if let Some(next) = next.filter(|next| Some(*next) != watermark) {
            self.bucket.put(&watermark_key(E::NAME), &next).await?;
        }
        listed.failure.map_or(Ok(()), Err)
    }

    /// Records of `E` changed since `watermark` minus the overlap; all of them before the first
    /// poll set one.
    ///
    /// Whether Nexudus reads the filter as UTC or on each location's wall clock is unconfirmed
    /// (reference §1.5, §1.7). Read on a wall clock west of UTC, a filter starts that much later
    /// than meant, so it is moved back by the westernmost known location's offset: then it
    /// starts no later than meant whichever way it is read (east of UTC it only starts earlier).
    fn changed_since<E: Entity>(&self, watermark: Option<Timestamp>) -> ListQuery<E> {
        let query = ListQuery::<E>::new().page_size(self.options.page_size);
        let Some(watermark) = watermark else { return query };
        let meant = watermark - self.options.poll_overlap;
        query.updated_since(meant - self.directory.westward_offset(meant))
    }

    async fn watermark(&self, entity: &str) -> Result<Option<Timestamp>, IngestError> {
        self.bucket.get(&watermark_key(entity)).await
    }

    /// Lists `query`, parks the unreadable records and ingests the others.
    async fn read_listing<E: Listed>(
        &self,
        query: &ListQuery<E>,
        by: ListedBy,
        summary: &mut RunSummary,
    ) -> Result<ListingRead, IngestError> {
        let listing = self.client.list(query).await?;
        let mut read = ListingRead::default();
        for malformed in &listing.malformed {
            let key = self.park_malformed(malformed).await?;
            summary.tally(Verdict::Parked);
            match malformed.id {
                Some(id) => read.ids.insert(id),
                None => read.unidentified.insert(key),
            };
        }
        for record in &listing.records {
            read.ids.insert(record.id());
            let written = record.written_on().and_then(NexudusDateTime::to_utc);
            match record.ingest_listed(self, by).await {
                Ok(verdict) => summary.tally(verdict),
                Err(error) => {
                    carry_on(error, E::NAME, record.id(), &mut read.failure)?;
                    let failed_at = written.unwrap_or(Timestamp::from_unix_millis(i64::MIN));
                    read.hold = Some(read.hold.map_or(failed_at, |hold| hold.min(failed_at)));
                }
            }
            read.newest = read.newest.max(written);
        }
        Ok(read)
    }

    /// Lists every record of `E`; the live ones it does not list are read by id, and are gone if
    /// Nexudus no longer has them.
    async fn sweep_entity<E: Tracked>(&self, summary: &mut RunSummary) -> Result<(), IngestError> {
        let query = ListQuery::<E>::new().page_size(self.options.page_size);
        let listed = self.read_listing(&query, ListedBy::Sweep, summary).await?;
        self.parking.forget_unidentified(E::NAME, &listed.unidentified).await?;
        self.reread_missing::<E>(self.ledger.live(E::KIND, None), &listed.ids, summary).await?;
        listed.failure.map_or(Ok(()), Err)
    }

    /// Forgets the states of records removed longer ago than the horizon, so that the ledger
    /// holds what is live and what was removed lately, not everything ever removed.
    async fn forget_removed(&self) -> Result<(), IngestError> {
        let forgotten = self.ledger.forget_removed(self.removed_cutoff()).await?;
        if forgotten > 0 {
            tracing::info!(forgotten, "forgot the states of records removed longer ago than the horizon");
        }
        Ok(())
    }

    async fn sweep_cancellations(&self, summary: &mut RunSummary) -> Result<(), IngestError> {
        let query = ListQuery::<CancelledBooking>::new().page_size(self.options.page_size);
        let listed = self.read_listing(&query, ListedBy::Sweep, summary).await?;
        self.parking.forget_unidentified(CancelledBooking::NAME, &listed.unidentified).await?;
        listed.failure.map_or(Ok(()), Err)
    }

    /// Reads by id the records among `known` that `listed` does not hold.
    async fn reread_missing<E: Tracked>(
        &self,
        known: Vec<u64>,
        listed: &BTreeSet<u64>,
        summary: &mut RunSummary,
    ) -> Result<(), IngestError> {
        let mut failure = None;
        for id in known.into_iter().filter(|id| !listed.contains(id)) {
            match self.reread::<E>(id).await {
                Ok(verdict) => summary.tally(verdict),
                Err(error) => carry_on(error, E::NAME, id, &mut failure)?,
            }
        }
        failure.map_or(Ok(()), Err)
    }

    /// Lists again everything records refer to: zones, locations, rooms, pass products, desks.
    /// Resources and pass products have no webhooks: this is what keeps them fresh.
    async fn refresh_references(&self) -> Vec<Result<(), IngestError>> {
        vec![
            self.refresh_all::<SimpleTimeZone>().await,
            self.refresh_all::<Business>().await,
            self.refresh_all::<Resource>().await,
            self.refresh_all::<TimePass>().await,
            self.refresh_all::<FloorPlanDesk>().await,
        ]
    }

    /// Asks for a sweep at once when a known location's time zone is no longer what it was:
    /// what was appended for its records was placed on the old zone's wall clock, and only
    /// reading them all again (the sweep) places them on the new one.
    pub(crate) fn sweep_if_a_zone_moved(&self, before: &BTreeMap<u64, LocationZoneNaming>) {
        let after = self.directory.location_zones();
        let moved: Vec<u64> = before
            .iter()
            .filter(|(location, zone)| after.get(location).is_some_and(|now| now != *zone))
            .map(|(location, _)| *location)
            .collect();
        if !moved.is_empty() {
            tracing::warn!(?moved, "a location's time zone changed in nexudus; sweeping to place its records on it");
            self.sweep_wanted.notify_one();
        }
    }

    async fn refresh_all<E: Referenced>(&self) -> Result<(), IngestError> {
        let listing = self.client.list(&ListQuery::<E>::new().page_size(self.options.page_size)).await?;
        self.directory.replace_all(listing.records);
        self.directory.publish_names().await;
        Ok(())
    }

    /// Lists the registered webhooks and raises the alert while Nexudus has disabled any.
    pub(crate) async fn check_webhooks(&self) -> Result<(), IngestError> {
        let listing = self.client.list(&ListQuery::<Webhook>::new().page_size(self.options.page_size)).await?;
        let inactive: Vec<InactiveWebhook> = listing
            .records
            .iter()
            .filter(|hook| !hook.active)
            .map(|hook| InactiveWebhook {
                id: hook.id,
                action: hook.action.to_string(),
                business_id: hook.business_id,
                error_count: hook.error_count,
            })
            .collect();
        if !inactive.is_empty() {
            let ids: Vec<u64> = inactive.iter().map(|hook| hook.id).collect();
            tracing::warn!(
                ?ids,
                "nexudus has disabled webhooks (after 10 failed deliveries): re-enable them in Settings > \
                 Integrations > Webhooks; until then changes reach doorsync only at the next poll"
            );
        }
        let health = WebhookHealth {
            checked_at: Some(self.clock.now()),
            registered: listing.records.len(),
            alert: !inactive.is_empty(),
            inactive,
        };
        self.stats.webhook_health(health);
        Ok(())
    }
}

fn schedule_key(run: Run) -> &'static str {
    match run {
        Run::Poll => "schedule.poll",
        Run::Sweep => "schedule.sweep",
    }
}

fn watermark_key(entity: &str) -> String {
    format!("watermark.{entity}")
}
