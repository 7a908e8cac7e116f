//! What the ingestor reports: counters, parked records, the retry set, webhook health.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, MutexGuard, PoisonError};

use doorsync_nexudus::LimiterWaits;
use doorsync_proto::{MemberId, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::bucket::Bucket;
use crate::error::IngestError;
use crate::retry::RetryingRecord;

/// What the ingestor has done since it started, and what needs an operator.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
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
}

/// The in-memory counters behind [`IngestStatus`].
#[derive(Debug, Default)]
pub(crate) struct Stats {
    counters: Mutex<Counters>,
}

impl Stats {
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
    use super::*;

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
