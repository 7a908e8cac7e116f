//! What the ingestor reports: counters, parked records, the retry set, webhook health, and
//! whether Nexudus answers.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use doorsync_clock::SharedClock;
use doorsync_nexudus::{LimiterWaits, NexudusError};
use doorsync_proto::{MemberId, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::bucket::Bucket;
use crate::error::IngestError;
use crate::retry::RetryingRecord;

/// What the ingestor has done since it started, and what needs an operator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngestStatus {
    /// Events appended (and stored), by event type (`booking_changed`, ...).
    pub appended: BTreeMap<String, u64>,
    /// Appends the log answered as duplicates of a message it already had.
    pub duplicates: u64,
    /// Readings older than what was already appended, ignored.
    pub stale_readings: u64,
    /// Records waiting to be readable, oldest key first; stored in the ingest bucket.
    pub parked: Vec<ParkedRecord>,
    /// Times a record was parked (or parked again for another reason).
    pub parkings: u64,
    /// Records Nexudus failed to answer about, waiting to be read again, by entity and id;
    /// stored in the ingest bucket. Empty for statuses from builds that did not report it.
    #[serde(default)]
    pub retrying: Vec<RetryingRecord>,
    /// Live bookings with no customer, which grant nothing.
    pub memberless_bookings: u64,
    /// Resources, pass products and desks linked to no group (with the mapping taken from Nexudus).
    pub unmapped_sources: u64,
    pub webhooks: WebhookCounts,
    pub webhook_health: WebhookHealth,
    /// Health checks that found a disabled webhook.
    pub webhook_alerts: u64,
    pub last_poll: Option<Timestamp>,
    pub last_poll_error: Option<String>,
    pub last_sweep: Option<Timestamp>,
    pub last_sweep_error: Option<String>,
    /// How often and how long requests to Nexudus waited for its request limits. A default for
    /// statuses from builds that did not report it.
    #[serde(default)]
    pub nexudus_limiter: LimiterWaits,
    /// Whether this ingestor is the one that reads Nexudus and appends, or a standby. Active
    /// for statuses from builds that ran one ingestor only.
    #[serde(default)]
    pub role: IngestRole,
    /// When Nexudus last answered a poll or a sweep (at least one of its listings came back).
    /// `None` until one has; a standby, which does not read Nexudus, keeps what it saw while
    /// it was active.
    #[serde(default)]
    pub nexudus_last_ok: Option<Timestamp>,
    /// Since when every poll and sweep has failed to reach Nexudus (transport errors, timeouts,
    /// 5xx answers, refused credentials); `None` while it answers.
    #[serde(default)]
    pub nexudus_failing_since: Option<Timestamp>,
    /// Why the latest failing run could not reach Nexudus (the error, with the request's path);
    /// `None` while it answers.
    #[serde(default)]
    pub nexudus_failure: Option<String>,
    /// False once Nexudus has been unreachable for longer than a poll interval
    /// (`nexudus.poll_every`), as of when this status was taken; true otherwise, on a standby,
    /// and for statuses from builds that did not report it.
    #[serde(default = "answering_by_default")]
    pub nexudus_up: bool,
}

/// What a status without [`IngestStatus::nexudus_up`] means: no failure was reported.
fn answering_by_default() -> bool {
    true
}

impl Default for IngestStatus {
    fn default() -> Self {
        Self {
            appended: BTreeMap::new(),
            duplicates: 0,
            stale_readings: 0,
            parked: Vec::new(),
            parkings: 0,
            retrying: Vec::new(),
            memberless_bookings: 0,
            unmapped_sources: 0,
            webhooks: WebhookCounts::default(),
            webhook_health: WebhookHealth::default(),
            webhook_alerts: 0,
            last_poll: None,
            last_poll_error: None,
            last_sweep: None,
            last_sweep_error: None,
            nexudus_limiter: LimiterWaits::default(),
            role: IngestRole::default(),
            nexudus_last_ok: None,
            nexudus_failing_since: None,
            nexudus_failure: None,
            nexudus_up: true,
        }
    }
}

/// One ingestor per deployment reads Nexudus and appends: the one holding the ingest lease.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "role")]
pub enum IngestRole {
    /// Holds the lease: polls, sweeps, retries and answers webhooks.
    #[default]
    Active,
    /// Waits for the lease, and answers webhooks 503 so that Nexudus delivers them again (to
    /// the active ingestor, which its readiness keeps the only one behind the webhook URL).
    Standby {
        /// The ingestor holding the lease, if it has not lapsed.
        holder: Option<String>,
    },
}

/// A record that could not be turned into events. It stays parked until a reading of it works.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParkedRecord {
    /// Nexudus's entity name, e.g. `Booking`.
    pub entity: String,
    /// Its `Id`, when it had a readable one.
    pub id: Option<u64>,
    /// The field and what is wrong with it, or the rule that could not be applied.
    pub reason: String,
    pub parked_at: Timestamp,
    /// The member an earlier version of the record granted to, from whom that is withheld while
    /// the record is parked; `None` when it withheld nothing. Filled in by the status from what
    /// the ingestor appended, never stored with the parking.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub withheld_from: Option<MemberId>,
}

/// How webhook deliveries were answered.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookCounts {
    /// Acted on and answered 2xx.
    pub accepted: u64,
    /// Missing or wrong signature: 401, nothing read or stored.
    pub refused: u64,
    /// Signed, but not an array of entities with ids: 400.
    pub unreadable: u64,
    /// For an action doorsync does not act on: 2xx, so Nexudus keeps the hook.
    pub unknown_action: u64,
    /// The log or the ingest bucket could not take the write: 5xx, for Nexudus to retry (a
    /// record Nexudus failed to answer about goes to the retry set, and the delivery is
    /// accepted).
    pub failed: u64,
    /// Arrived at a standby ingestor: 503, nothing read or stored, for Nexudus to deliver again.
    #[serde(default)]
    pub standby: u64,
}

/// What the last look at Nexudus's registered webhooks found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookHealth {
    pub checked_at: Option<Timestamp>,
    pub registered: usize,
    /// Hooks Nexudus disabled (after ten failed deliveries, telling nobody).
    pub inactive: Vec<InactiveWebhook>,
    /// Raised while any hook is inactive.
    pub alert: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InactiveWebhook {
    pub id: u64,
    /// Nexudus's name for the action, e.g. `BookingUpdate`.
    pub action: String,
    pub business_id: Option<u64>,
    pub error_count: Option<i64>,
}

/// Which webhook answer to count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WebhookAnswer {
    Accepted,
    Refused,
    Unreadable,
    UnknownAction,
    Failed,
    Standby,
}

/// Which run finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Run {
    Poll,
    Sweep,
}

#[derive(Debug, Default)]
struct Counters {
    appended: BTreeMap<&'static str, u64>,
    duplicates: u64,
    stale_readings: u64,
    parkings: u64,
    webhooks: WebhookCounts,
    webhook_health: WebhookHealth,
    webhook_alerts: u64,
    last_poll: Option<Timestamp>,
    last_poll_error: Option<String>,
    last_sweep: Option<Timestamp>,
    last_sweep_error: Option<String>,
    nexudus: Reachability,
}

/// Whether Nexudus answered the latest runs: the outcomes behind [`IngestStatus::nexudus_up`].
#[derive(Debug, Default)]
struct Reachability {
    last_ok: Option<Timestamp>,
    failing_since: Option<Timestamp>,
    failure: Option<String>,
}

impl Reachability {
    /// Records a run: answered if any part of it worked, failing if none did and a part failed
    /// to reach Nexudus; a run that failed only on the log says nothing about Nexudus. One bad
    /// record (Nexudus answers 500 for some deleted ones) fails its part, never the whole run.
    fn record<T>(&mut self, at: Timestamp, results: &[Result<T, IngestError>]) {
        if results.iter().any(Result::is_ok) {
            self.last_ok = Some(at);
            self.failing_since = None;
            self.failure = None;
        } else if let Some(unreachable) =
            results.iter().filter_map(|result| result.as_ref().err()).find(|error| means_unreachable(error))
        {
            self.failing_since.get_or_insert(at);
            self.failure = Some(unreachable.to_string());
        }
    }

    /// Up unless it has failed for longer than `patience` by `now`.
    fn up(&self, now: Timestamp, patience: Duration) -> bool {
        self.failing_since.is_none_or(|since| now.saturating_duration_since(since) <= patience)
    }
}

/// Whether `error` says Nexudus could not be reached or refused to serve doorsync at all, as
/// opposed to answering about one record (404, 403 for one entity, a throttled or unreadable
/// answer).
fn means_unreachable(error: &IngestError) -> bool {
    matches!(
        error,
        IngestError::Nexudus(
            NexudusError::Server { .. }
                | NexudusError::Timeout { .. }
                | NexudusError::Transport { .. }
                | NexudusError::Unauthorized { .. }
        )
    )
}

/// The in-memory counters behind [`IngestStatus`].
#[derive(Debug)]
pub(crate) struct Stats {
    counters: Mutex<Counters>,
    clock: SharedClock,
    /// How long Nexudus may fail before it counts as down: one poll interval.
    poll_every: Duration,
}

impl Stats {
    pub(crate) fn new(clock: SharedClock, poll_every: Duration) -> Self {
        Self { counters: Mutex::default(), clock, poll_every }
    }

    fn counters(&self) -> MutexGuard<'_, Counters> {
        self.counters.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn appended(&self, tag: &'static str, duplicate: bool) {
        let mut counters = self.counters();
        if duplicate {
            counters.duplicates += 1;
        } else {
            *counters.appended.entry(tag).or_default() += 1;
        }
    }

    pub(crate) fn stale(&self) {
        self.counters().stale_readings += 1;
    }

    pub(crate) fn parked(&self) {
        self.counters().parkings += 1;
    }

    pub(crate) fn webhook(&self, answer: WebhookAnswer) {
        let mut counters = self.counters();
        let count = match answer {
            WebhookAnswer::Accepted => &mut counters.webhooks.accepted,
            WebhookAnswer::Refused => &mut counters.webhooks.refused,
            WebhookAnswer::Unreadable => &mut counters.webhooks.unreadable,
            WebhookAnswer::UnknownAction => &mut counters.webhooks.unknown_action,
            WebhookAnswer::Failed => &mut counters.webhooks.failed,
            WebhookAnswer::Standby => &mut counters.webhooks.standby,
        };
        *count += 1;
    }

    pub(crate) fn webhook_health(&self, health: WebhookHealth) {
        let mut counters = self.counters();
        if health.alert {
            counters.webhook_alerts += 1;
        }
        counters.webhook_health = health;
    }

    pub(crate) fn finished(&self, run: Run, at: Timestamp, error: Option<String>) {
        let counters = &mut *self.counters();
        let (last, last_error) = match run {
            Run::Poll => (&mut counters.last_poll, &mut counters.last_poll_error),
            Run::Sweep => (&mut counters.last_sweep, &mut counters.last_sweep_error),
        };
        *last = Some(at);
        *last_error = error;
    }

    /// Records whether Nexudus answered the run that ended `at` with these parts' results.
    pub(crate) fn nexudus_reached<T>(&self, at: Timestamp, results: &[Result<T, IngestError>]) {
        self.counters().nexudus.record(at, results);
    }

    /// The status, with the parts kept elsewhere filled in.
    pub(crate) fn status(
        &self,
        parked: Vec<ParkedRecord>,
        retrying: Vec<RetryingRecord>,
        memberless_bookings: u64,
        unmapped_sources: u64,
        nexudus_limiter: LimiterWaits,
        role: IngestRole,
    ) -> IngestStatus {
        let counters = self.counters();
        IngestStatus {
            appended: counters.appended.iter().map(|(tag, count)| ((*tag).to_owned(), *count)).collect(),
            duplicates: counters.duplicates,
            stale_readings: counters.stale_readings,
            parked,
            parkings: counters.parkings,
            retrying,
            memberless_bookings,
            unmapped_sources,
            webhooks: counters.webhooks.clone(),
            webhook_health: counters.webhook_health.clone(),
            webhook_alerts: counters.webhook_alerts,
            last_poll: counters.last_poll,
            last_poll_error: counters.last_poll_error.clone(),
            last_sweep: counters.last_sweep,
            last_sweep_error: counters.last_sweep_error.clone(),
            nexudus_limiter,
            nexudus_last_ok: counters.nexudus.last_ok,
            nexudus_failing_since: counters.nexudus.failing_since,
            nexudus_failure: counters.nexudus.failure.clone(),
            nexudus_up: role != IngestRole::Active || counters.nexudus.up(self.clock.now(), self.poll_every),
            role,
        }
    }
}

const PARKED_PREFIX: &str = "parked.";
/// Marks the key of a record parked without a readable `Id`.
const NO_ID: &str = "noid";

/// A parked record as stored: the record itself is kept for whoever investigates, but never
/// shown in the status, logs or errors (it may hold names and emails).
#[derive(Debug, Serialize, Deserialize)]
struct StoredParking {
    parked: ParkedRecord,
    raw: Option<Value>,
}

/// The parked records, in the ingest bucket (`parked.<Entity>.<id>`) and in memory.
#[derive(Debug)]
pub(crate) struct Parking {
    bucket: Bucket,
    entries: Mutex<BTreeMap<String, ParkedRecord>>,
}

impl Parking {
    pub(crate) async fn load(bucket: Bucket) -> Result<Self, IngestError> {
        let entries = Self::read(&bucket).await?;
        Ok(Self { bucket, entries: Mutex::new(entries) })
    }

    /// Reads the parked records again: another ingestor may have parked and un-parked records
    /// while this one was on standby.
    pub(crate) async fn reload(&self) -> Result<(), IngestError> {
        let entries = Self::read(&self.bucket).await?;
        *self.entries() = entries;
        Ok(())
    }

    async fn read(bucket: &Bucket) -> Result<BTreeMap<String, ParkedRecord>, IngestError> {
        let stored = bucket.all::<StoredParking>(|key| key.starts_with(PARKED_PREFIX)).await?;
        Ok(stored.into_iter().map(|(key, stored)| (key, stored.parked)).collect())
    }

    fn entries(&self) -> MutexGuard<'_, BTreeMap<String, ParkedRecord>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Parks a record (again, if the reason changed); returns its key. A record already parked
    /// for the same reason is left as it is.
    pub(crate) async fn park(
        &self,
        entity: &str,
        id: Option<u64>,
        reason: String,
        raw: Option<&Value>,
        now: Timestamp,
    ) -> Result<(String, bool), IngestError> {
        let key = parked_key(entity, id, raw);
        if self.entries().get(&key).is_some_and(|parked| parked.reason == reason) {
            return Ok((key, false));
        }
        tracing::warn!(entity, id, %reason, "nexudus record parked: it cannot be turned into events");
        let parked = ParkedRecord { entity: entity.to_owned(), id, reason, parked_at: now, withheld_from: None };
        self.bucket.put(&key, &StoredParking { parked: parked.clone(), raw: raw.cloned() }).await?;
        self.entries().insert(key.clone(), parked);
        Ok((key, true))
    }

    /// Un-parks the record, if it was parked: it has just been read successfully.
    pub(crate) async fn unpark(&self, entity: &str, id: u64) -> Result<(), IngestError> {
        let key = parked_key(entity, Some(id), None);
        if self.entries().contains_key(&key) {
            self.bucket.delete(&key).await?;
            self.entries().remove(&key);
            tracing::info!(entity, id, "nexudus record un-parked: it reads well now");
        }
        Ok(())
    }

    /// Un-parks the records of `entity` without an `Id` that a full listing no longer shows
    /// (`still_there` holds the keys it parked again): they have been fixed or removed.
    pub(crate) async fn forget_unidentified(
        &self,
        entity: &str,
        still_there: &BTreeSet<String>,
    ) -> Result<(), IngestError> {
        let prefix = format!("{PARKED_PREFIX}{entity}.{NO_ID}.");
        let gone: Vec<String> = self
            .entries()
            .keys()
            .filter(|key| key.starts_with(&prefix) && !still_there.contains(*key))
            .cloned()
            .collect();
        for key in gone {
            self.bucket.delete(&key).await?;
            self.entries().remove(&key);
        }
        Ok(())
    }

    pub(crate) fn list(&self) -> Vec<ParkedRecord> {
        self.entries().values().cloned().collect()
    }
}

/// `parked.<Entity>.<id>`, or for a record without a readable id, `parked.<Entity>.noid.<digest>`
/// of the record as received.
fn parked_key(entity: &str, id: Option<u64>, raw: Option<&Value>) -> String {
    match id {
        Some(id) => format!("{PARKED_PREFIX}{entity}.{id}"),
        None => {
            let text = raw.map(Value::to_string).unwrap_or_default();
            let digest = Sha256::digest(text.as_bytes());
            format!("{PARKED_PREFIX}{entity}.{NO_ID}.{}", hex::encode(&digest[..8]))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use doorsync_clock::{Clock, ManualClock};

    use super::*;

    const POLL_EVERY: Duration = Duration::from_secs(60);

    fn stats_at(clock: &Arc<ManualClock>) -> Stats {
        let shared: SharedClock = clock.clone();
        Stats::new(shared, POLL_EVERY)
    }

    fn status(stats: &Stats) -> IngestStatus {
        stats.status(Vec::new(), Vec::new(), 0, 0, LimiterWaits::default(), IngestRole::Active)
    }

    fn unreachable() -> Vec<Result<(), IngestError>> {
        let timeout = NexudusError::Timeout { method: "GET", path: "/api/spaces/bookings".to_owned() };
        let server = NexudusError::Server { method: "GET", path: "/api/sys/businesses".to_owned(), status: 503 };
        vec![Err(timeout.into()), Err(server.into())]
    }

    #[test]
    fn nexudus_is_down_once_it_failed_for_longer_than_a_poll_interval_and_up_at_its_next_answer() {
        let clock = Arc::new(ManualClock::new(Timestamp::from_unix_millis(1_000_000)));
        let stats = stats_at(&clock);
        let started = clock.now();
        stats.nexudus_reached(started, &unreachable());
        let failing = status(&stats);
        assert!(failing.nexudus_up, "failing for less than a poll interval is not down yet");
        assert_eq!(failing.nexudus_failing_since, Some(started));
        assert!(failing.nexudus_failure.as_deref().is_some_and(|failure| failure.contains("timed out")));

        clock.advance(POLL_EVERY);
        stats.nexudus_reached(clock.now(), &unreachable());
        assert!(status(&stats).nexudus_up, "a poll interval exactly is not longer than one");
        clock.advance(Duration::from_secs(1));
        let down = status(&stats);
        assert!(!down.nexudus_up, "{down:?}");
        assert_eq!(down.nexudus_failing_since, Some(started), "a second failure keeps the first's time");
        assert_eq!(down.nexudus_last_ok, None);

        let answered = clock.now();
        stats.nexudus_reached(answered, &[Ok(()), Err(unreachable().remove(0).unwrap_err())]);
        let up = status(&stats);
        assert!(up.nexudus_up);
        assert_eq!((up.nexudus_last_ok, up.nexudus_failing_since, up.nexudus_failure), (Some(answered), None, None));
    }

    #[test]
    fn a_run_that_failed_only_on_the_log_or_on_one_record_says_nexudus_is_not_unreachable() {
        let clock = Arc::new(ManualClock::new(Timestamp::from_unix_millis(1_000_000)));
        let stats = stats_at(&clock);
        let not_found = NexudusError::NotFound { method: "GET", path: "/api/spaces/bookings/7".to_owned() };
        let log_failed = IngestError::ShutDown;
        stats.nexudus_reached(clock.now(), &[Err::<(), _>(not_found.into()), Err(log_failed)]);
        clock.advance(POLL_EVERY * 3);

        let status = status(&stats);
        assert!(status.nexudus_up);
        assert_eq!((status.nexudus_failing_since, status.nexudus_last_ok), (None, None));
    }

    #[test]
    fn a_standby_reports_nexudus_up_whatever_it_saw_while_active() {
        let clock = Arc::new(ManualClock::new(Timestamp::from_unix_millis(1_000_000)));
        let stats = stats_at(&clock);
        stats.nexudus_reached(clock.now(), &unreachable());
        clock.advance(POLL_EVERY * 2);
        let standby = IngestRole::Standby { holder: Some("ingest-b".to_owned()) };
        let status = stats.status(Vec::new(), Vec::new(), 0, 0, LimiterWaits::default(), standby);
        assert!(status.nexudus_up);
    }

    #[test]
    fn a_status_without_the_nexudus_fields_reads_as_up() -> Result<(), serde_json::Error> {
        let mut json = serde_json::to_value(IngestStatus { nexudus_up: false, ..IngestStatus::default() })?;
        if let Some(fields) = json.as_object_mut() {
            for newer in ["nexudus_last_ok", "nexudus_failing_since", "nexudus_failure", "nexudus_up"] {
                fields.remove(newer);
            }
        }
        let read: IngestStatus = serde_json::from_value(json)?;
        assert_eq!(read, IngestStatus::default());
        Ok(())
    }

    #[test]
    fn parked_keys_are_valid_bucket_keys() {
        let with_id = parked_key("Booking", Some(7), None);
        assert_eq!(with_id, "parked.Booking.7");
        let without = parked_key("Booking", None, Some(&serde_json::json!({"FromTime": 3})));
        assert!(without.starts_with("parked.Booking.noid."), "{without}");
        for key in [with_id, without] {
            assert!(doorsync_log::validate_kv_key(&key).is_ok(), "{key}");
        }
    }
}
