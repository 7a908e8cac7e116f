//! The retry set: what a webhook (or an `AccessControlUpdate` recompute) asked to read, whose
//! reading failed on Nexudus's side (a 5xx, throttling that outlasted the client, a timeout, a
//! transport error, a deletion that could not be confirmed).
//!
//! A webhook is never failed for one record: Nexudus disables a hook after ten failed
//! deliveries. The record is kept instead, in the ingest bucket (`retry.<Entity>.<id>`, so it
//! survives a restart) and in memory, and read again with exponential backoff on the clock until
//! a reading succeeds. The set shows in [`IngestStatus::retrying`](crate::IngestStatus).

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use doorsync_nexudus::WebhookAction;
use doorsync_proto::Timestamp;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::bucket::Bucket;
use crate::error::IngestError;

const RETRY_PREFIX: &str = "retry.";

/// What to read again for one id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Target {
    Coworker,
    /// The customer and what they hold, as an `AccessControlUpdate` asks.
    Customer,
    Booking,
    CoworkerContract,
    /// A held pass, from a customer's recompute.
    CoworkerTimePass,
    FloorPlanDesk,
    Business,
}

impl Target {
    const ALL: [Self; 7] = [
        Self::Coworker,
        Self::Customer,
        Self::Booking,
        Self::CoworkerContract,
        Self::CoworkerTimePass,
        Self::FloorPlanDesk,
        Self::Business,
    ];

    /// What a webhook for `action` asks to read, if doorsync acts on it.
    pub(crate) fn of(action: WebhookAction) -> Option<Self> {
        use WebhookAction as A;
        match action {
            A::CoworkerCreate | A::CoworkerUpdate | A::CoworkerDelete => Some(Self::Coworker),
            A::AccessControlUpdate => Some(Self::Customer),
            A::BookingCreate | A::BookingUpdate | A::BookingDelete => Some(Self::Booking),
            A::CoworkerContractActivate
            | A::CoworkerContractCancel
            | A::CoworkerContractRenew
            | A::CoworkerContractUpgradeDowngrade
            | A::CoworkerContractActivateFirst
            | A::CoworkerContractUpdate
            | A::CoworkerContractCreate
            | A::CoworkerContractDelete => Some(Self::CoworkerContract),
            A::FloorPlanDeskCreate | A::FloorPlanDeskUpdate | A::FloorPlanDeskDelete => Some(Self::FloorPlanDesk),
            A::BusinessUpdate => Some(Self::Business),
            _ => None,
        }
    }

    /// Nexudus's entity name (`Customer` for a customer's recompute), as in keys and the status.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Coworker => "Coworker",
            Self::Customer => "Customer",
            Self::Booking => "Booking",
            Self::CoworkerContract => "CoworkerContract",
            Self::CoworkerTimePass => "CoworkerTimePass",
            Self::FloorPlanDesk => "FloorPlanDesk",
            Self::Business => "Business",
        }
    }

    fn named(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|target| target.name() == name)
    }
}

/// A record waiting to be read again. No personal data: the error names a method and a path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryingRecord {
    /// Nexudus's entity name (`Booking`, ...), or `Customer` for an `AccessControlUpdate`'s
    /// recompute of one customer.
    pub entity: String,
    pub id: u64,
    /// Readings that failed so far.
    pub attempts: u32,
    pub next_attempt: Timestamp,
    pub last_error: String,
    /// When its first reading failed.
    pub since: Timestamp,
}

/// An entry as stored under `retry.<Entity>.<id>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct StoredRetry {
    attempts: u32,
    next_attempt: Timestamp,
    last_error: String,
    since: Timestamp,
}

fn retry_key(target: Target, id: u64) -> String {
    format!("{RETRY_PREFIX}{}.{id}", target.name())
}

fn parse_key(key: &str) -> Option<(Target, u64)> {
    let (entity, id) = key.strip_prefix(RETRY_PREFIX)?.split_once('.')?;
    Some((Target::named(entity)?, id.parse().ok()?))
}

/// How long to wait after the `attempts`-th failure: `first`, doubled each time, at most `max`.
fn backoff(attempts: u32, first: Duration, max: Duration) -> Duration {
    let doublings = attempts.saturating_sub(1).min(31);
    first.saturating_mul(1_u32 << doublings).min(max)
}

/// The retry set, in the ingest bucket and in memory.
#[derive(Debug)]
pub(crate) struct RetrySet {
    bucket: Bucket,
    entries: Mutex<BTreeMap<(Target, u64), StoredRetry>>,
    /// Serialises the changes, so the bucket and memory see them in the same order.
    writes: tokio::sync::Mutex<()>,
    first_delay: Duration,
    max_delay: Duration,
    /// Wakes the retrying task when an entry is added, so it can wait for the earliest one.
    added: Notify,
}

impl RetrySet {
    pub(crate) async fn load(bucket: Bucket, first_delay: Duration, max_delay: Duration) -> Result<Self, IngestError> {
        let entries = Self::read(&bucket).await?;
        Ok(Self {
            bucket,
            entries: Mutex::new(entries),
            writes: tokio::sync::Mutex::new(()),
            first_delay,
            max_delay,
            added: Notify::new(),
        })
    }

    /// Reads the retry set again: another ingestor may have changed it while this one was on
    /// standby.
    pub(crate) async fn reload(&self) -> Result<(), IngestError> {
        let _in_order = self.writes.lock().await;
        let entries = Self::read(&self.bucket).await?;
        *self.entries() = entries;
        self.added.notify_one();
        Ok(())
    }

    async fn read(bucket: &Bucket) -> Result<BTreeMap<(Target, u64), StoredRetry>, IngestError> {
        let stored = bucket.all::<StoredRetry>(|key| parse_key(key).is_some()).await?;
        Ok(stored.into_iter().filter_map(|(key, entry)| Some((parse_key(&key)?, entry))).collect())
    }

    fn entries(&self) -> MutexGuard<'_, BTreeMap<(Target, u64), StoredRetry>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records a failed reading: a new entry is due `first_delay` from `now`, a known one waits
    /// twice as long as last time (up to `max_delay`). Memory is updated even if the bucket
    /// refuses, so the retrying task does not spin on an entry it cannot store.
    pub(crate) async fn failed(&self, target: Target, id: u64, error: &str, now: Timestamp) -> Result<(), IngestError> {
        let _in_order = self.writes.lock().await;
        let entry = {
            let mut entries = self.entries();
            let entry = entries.entry((target, id)).or_insert_with(|| StoredRetry {
                attempts: 0,
                next_attempt: now,
                last_error: String::new(),
                since: now,
            });
            entry.attempts = entry.attempts.saturating_add(1);
            entry.next_attempt = now + backoff(entry.attempts, self.first_delay, self.max_delay);
            error.clone_into(&mut entry.last_error);
            entry.clone()
        };
        self.added.notify_one();
        self.bucket.put(&retry_key(target, id), &entry).await
    }

    /// Forgets the entry, if there is one: a reading has just succeeded.
    pub(crate) async fn succeeded(&self, target: Target, id: u64) -> Result<(), IngestError> {
        if !self.entries().contains_key(&(target, id)) {
            return Ok(());
        }
        let _in_order = self.writes.lock().await;
        self.bucket.delete(&retry_key(target, id)).await?;
        self.entries().remove(&(target, id));
        tracing::info!(entity = target.name(), id, "nexudus record read after retrying; out of the retry set");
        Ok(())
    }

    /// Whether the record waits in the retry set (its last reading failed).
    pub(crate) fn contains(&self, target: Target, id: u64) -> bool {
        self.entries().contains_key(&(target, id))
    }

    /// When the earliest entry is due.
    pub(crate) fn next_due(&self) -> Option<Timestamp> {
        self.entries().values().map(|entry| entry.next_attempt).min()
    }

    /// The entries due at `now`.
    pub(crate) fn due(&self, now: Timestamp) -> Vec<(Target, u64)> {
        self.entries().iter().filter(|(_, entry)| entry.next_attempt <= now).map(|(key, _)| *key).collect()
    }

    /// Resolves once an entry was added since the last call returned.
    pub(crate) async fn added(&self) {
        self.added.notified().await;
    }

    pub(crate) fn list(&self) -> Vec<RetryingRecord> {
        self.entries()
            .iter()
            .map(|((target, id), entry)| RetryingRecord {
                entity: target.name().to_owned(),
                id: *id,
                attempts: entry.attempts,
                next_attempt: entry.next_attempt,
                last_error: entry.last_error.clone(),
                since: entry.since,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_are_valid_bucket_keys() {
        for target in Target::ALL {
            let key = retry_key(target, 42);
            assert_eq!(parse_key(&key), Some((target, 42)));
            assert!(doorsync_log::validate_kv_key(&key).is_ok(), "{key}");
        }
        assert_eq!(retry_key(Target::Booking, 7), "retry.Booking.7");
        for other in ["record.Booking.7", "retry.Invoice.7", "retry.Booking.x", "parked.Booking.7"] {
            assert_eq!(parse_key(other), None, "{other}");
        }
    }

    #[test]
    fn the_wait_doubles_from_the_first_delay_up_to_the_cap() {
        let (first, max) = (Duration::from_secs(10), Duration::from_secs(600));
        let waits: Vec<u64> = (1..=8).map(|attempts| backoff(attempts, first, max).as_secs()).collect();
        assert_eq!(waits, [10, 20, 40, 80, 160, 320, 600, 600]);
        assert_eq!(backoff(u32::MAX, first, max), max);
    }
}
