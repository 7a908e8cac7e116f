//! One active writer per Kisi account: a lease `writer.<account>` in the leases bucket, naming
//! its owner and when it expires, changed only by compare-and-set.
//!
//! The active writer renews it every third of its time to live and stops calling Kisi a third
//! before it would expire unrenewed; a standby takes it only once it has expired (or was given
//! back on shutdown). With clocks that agree to well within a third of the time to live, two
//! writers never call Kisi at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use doorsync_clock::SharedClock;
use doorsync_log::{KeyValue, LogError};
use doorsync_proto::Timestamp;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct LeaseRecord {
    owner: String,
    expires_at: Timestamp,
}

/// The lease of one account, as seen by one writer.
pub(crate) struct Lease {
    kv: Arc<dyn KeyValue>,
    key: String,
    owner: String,
    ttl: Duration,
    clock: SharedClock,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease").field("key", &self.key).field("owner", &self.owner).finish_non_exhaustive()
    }
}

/// How long the holder of a lease may still call Kisi, and whether it lost the lease.
#[derive(Debug)]
pub(crate) struct Tenure {
    calls_until: AtomicI64,
    lost: watch::Sender<bool>,
}

impl Tenure {
    fn new() -> Self {
        Self { calls_until: AtomicI64::new(i64::MIN), lost: watch::Sender::new(false) }
    }

    pub(crate) fn may_call(&self, now: Timestamp) -> bool {
        !*self.lost.borrow() && now.as_unix_millis() < self.calls_until.load(Ordering::Acquire)
    }

    pub(crate) fn watch_lost(&self) -> watch::Receiver<bool> {
        self.lost.subscribe()
    }
}

fn after(at: Timestamp, duration: Duration) -> Timestamp {
    Timestamp::from_unix_millis(
        at.as_unix_millis().saturating_add(i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)),
    )
}

impl Lease {
    pub(crate) fn new(kv: Arc<dyn KeyValue>, account: &str, owner: String, ttl: Duration, clock: SharedClock) -> Self {
        Self { kv, key: format!("writer.{account}"), owner, ttl, clock }
    }

    pub(crate) fn renew_every(&self) -> Duration {
        self.ttl / 3
    }

    /// Takes the lease if it is free, expired or already this writer's; `None` if another
    /// writer holds it.
    pub(crate) async fn try_acquire(&self) -> Result<Option<(u64, Arc<Tenure>)>, LogError> {
        let now = self.clock.now();
        let record = self.record(now);
        let written = match self.kv.get(&self.key).await? {
            None => self.kv.create(&self.key, record?).await,
            Some(entry) => {
                let current = decode(&entry.value);
                let free = current.as_ref().is_none_or(|held| held.owner == self.owner || held.expires_at <= now);
                if !free {
                    return Ok(None);
                }
                self.kv.update(&self.key, record?, entry.revision).await
            }
        };
        match written {
            Ok(revision) => {
                let tenure = Arc::new(Tenure::new());
                self.extend(&tenure, now);
                Ok(Some((revision, tenure)))
            }
            Err(LogError::KvConflict { .. }) => Ok(None),
            Err(error) => Err(error),
        }
    }

    fn record(&self, now: Timestamp) -> Result<Bytes, LogError> {
        let record = LeaseRecord { owner: self.owner.clone(), expires_at: after(now, self.ttl) };
        rmp_serde::to_vec_named(&record)
            .map(Bytes::from)
            .map_err(|error| LogError::storage(format!("encoding lease {}", self.key), error))
    }

    fn extend(&self, tenure: &Tenure, renewed_at: Timestamp) {
        let calls_until = after(renewed_at, self.ttl - self.renew_every());
        tenure.calls_until.store(calls_until.as_unix_millis(), Ordering::Release);
    }

    /// Renews the lease every third of its time to live until `stop` is set or the lease is
    /// lost (another writer took it, or renewals failed until it could have), and marks the
    /// tenure lost in that case.
    pub(crate) async fn hold(&self, mut revision: u64, tenure: Arc<Tenure>, mut stop: watch::Receiver<bool>) {
        loop {
            let next = after(self.clock.now(), self.renew_every());
            tokio::select! {
                () = self.clock.sleep_until(next) => {}
                _ = stop.wait_for(|stopped| *stopped) => return,
            }
            let now = self.clock.now();
            let renewed = match self.record(now) {
                Ok(record) => self.kv.update(&self.key, record, revision).await,
                Err(error) => Err(error),
            };
            match renewed {
                Ok(new_revision) => {
                    revision = new_revision;
                    self.extend(&tenure, now);
                }
                Err(error) if error.is_transient() && tenure.may_call(self.clock.now()) => {
                    tracing::warn!(lease = %self.key, %error, "renewing the writer lease failed; retrying");
                }
                Err(error) => {
                    tracing::error!(lease = %self.key, %error, "writer lease lost; stopping Kisi calls");
                    tenure.lost.send_replace(true);
                    return;
                }
            }
        }
    }

    /// Gives the lease back so that a standby can take over at once.
    pub(crate) async fn release(&self) {
        let Ok(Some(entry)) = self.kv.get(&self.key).await else { return };
        if decode(&entry.value).is_none_or(|held| held.owner != self.owner) {
            return;
        }
        let released = LeaseRecord { owner: self.owner.clone(), expires_at: self.clock.now() };
        if let Ok(encoded) = rmp_serde::to_vec_named(&released) {
            let _ = self.kv.update(&self.key, Bytes::from(encoded), entry.revision).await;
        }
    }
}

fn decode(value: &[u8]) -> Option<LeaseRecord> {
    rmp_serde::from_slice(value).ok()
}
