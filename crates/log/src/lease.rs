//! One holder at a time for some work shared by several processes: a lease in a key-value
//! bucket, a record naming its owner and when it expires, changed only by compare-and-set, with
//! time read from the [`Clock`](doorsync_clock::Clock).
//!
//! The holder renews it every third of its time to live ([`Lease::hold`]) and stops acting a
//! third before it would expire unrenewed ([`Tenure::may_act`]); anyone else takes it only once
//! it has expired or was given back ([`Lease::release`]). With clocks that agree to well within a
//! third of the time to live, two holders never act at once.
//!
//! It serves the engine's partition leases, the writer's account lease and the ingestor's lease.
//! The record (MessagePack with the fields `owner` and `expires_at`) is the one the engine's and
//! the writer's own leases kept before they moved to this type, so the bucket holds what it held.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use doorsync_clock::{Clock, SharedClock};
use doorsync_proto::Timestamp;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::{KeyValue, LogError};

/// Who holds a lease, and until when, as the bucket says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseHolder {
    pub owner: String,
    pub expires_at: Timestamp,
}

impl LeaseHolder {
    /// Who holds the lease `key` in `kv` at `now`, if anyone does, for those who watch leases
    /// without contending for them (an expired, given-back or unreadable lease is held by nobody).
    pub async fn read(kv: &dyn KeyValue, key: &str, now: Timestamp) -> Result<Option<Self>, LogError> {
        let held = kv.get(key).await?.and_then(|entry| decode(&entry.value));
        Ok(held.filter(|held| held.expires_at > now))
    }
}

/// One lease as one contender sees it.
pub struct Lease {
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

/// A lease taken: how long its holder may still act, and whether it lost the lease.
#[derive(Debug)]
pub struct Tenure {
    revision: AtomicI64,
    /// When the lease was last written, in Unix milliseconds: renewals are due from then, not
    /// from whenever [`Lease::hold`] got to run.
    renewed_at: AtomicI64,
    /// Unix milliseconds.
    acts_until: watch::Sender<i64>,
    lost: watch::Sender<bool>,
}

impl Tenure {
    fn new(revision: u64) -> Self {
        Self {
            revision: AtomicI64::new(i64::try_from(revision).unwrap_or(i64::MAX)),
            renewed_at: AtomicI64::new(i64::MIN),
            acts_until: watch::Sender::new(i64::MIN),
            lost: watch::Sender::new(false),
        }
    }

    /// Whether the holder may still act at `now`: the lease is not lost and was renewed recently
    /// enough that nobody else can have taken it.
    pub fn may_act(&self, now: Timestamp) -> bool {
        !*self.lost.borrow() && now.as_unix_millis() < *self.acts_until.borrow()
    }

    /// Whether the holder may act at `clock`'s time, waiting for a renewal that is due: after
    /// the clock jumped (a virtual clock in tests, a machine waking from suspend) the lease may
    /// look lapsed until [`Lease::hold`], woken by the same jump, has renewed it. `false` once
    /// the lease is lost.
    pub async fn wait_to_act(&self, clock: &dyn Clock) -> bool {
        let mut renewed = self.acts_until.subscribe();
        let mut lost = self.lost.subscribe();
        loop {
            if *lost.borrow_and_update() {
                return false;
            }
            if self.may_act(clock.now()) {
                return true;
            }
            tokio::select! {
                changed = renewed.changed() => if changed.is_err() { return false },
                changed = lost.changed() => if changed.is_err() { return false },
            }
        }
    }

    /// Turns `true` once the lease is lost.
    pub fn watch_lost(&self) -> watch::Receiver<bool> {
        self.lost.subscribe()
    }

    fn revision(&self) -> u64 {
        u64::try_from(self.revision.load(Ordering::Acquire)).unwrap_or(0)
    }
}

impl Lease {
    /// The lease `key` in `kv`, contended for as `owner` (unique per process), lasting `ttl`
    /// unrenewed.
    pub fn new(
        kv: Arc<dyn KeyValue>,
        key: impl Into<String>,
        owner: impl Into<String>,
        ttl: Duration,
        clock: SharedClock,
    ) -> Self {
        Self { kv, key: key.into(), owner: owner.into(), ttl, clock }
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// How often the holder renews, and how often a contender tries again.
    pub fn renew_every(&self) -> Duration {
        self.ttl / 3
    }

    /// Who holds the lease now, if anyone does (an expired or given-back lease is held by nobody).
    pub async fn holder(&self) -> Result<Option<LeaseHolder>, LogError> {
        LeaseHolder::read(&*self.kv, &self.key, self.clock.now()).await
    }

    /// Takes the lease if it is free, expired or already this owner's; `None` if someone else
    /// holds it or took it first.
    pub async fn try_acquire(&self) -> Result<Option<Arc<Tenure>>, LogError> {
        let now = self.clock.now();
        let record = self.record(now)?;
        let written = match self.kv.get(&self.key).await? {
            None => self.kv.create(&self.key, record).await,
            Some(entry) => {
                let free = decode(&entry.value).is_none_or(|held| held.owner == self.owner || held.expires_at <= now);
                if !free {
                    return Ok(None);
                }
                self.kv.update(&self.key, record, entry.revision).await
            }
        };
        match written {
            Ok(revision) => {
                let tenure = Arc::new(Tenure::new(revision));
                self.extend(&tenure, now);
                Ok(Some(tenure))
            }
            Err(LogError::KvConflict { .. }) => Ok(None),
            Err(error) => Err(error),
        }
    }

    fn record(&self, now: Timestamp) -> Result<Bytes, LogError> {
        let record = LeaseHolder { owner: self.owner.clone(), expires_at: now + self.ttl };
        rmp_serde::to_vec_named(&record)
            .map(Bytes::from)
            .map_err(|error| LogError::storage(format!("encoding lease {}", self.key), error))
    }

    fn extend(&self, tenure: &Tenure, renewed_at: Timestamp) {
        tenure.renewed_at.store(renewed_at.as_unix_millis(), Ordering::Release);
        let acts_until = renewed_at + self.ttl - self.renew_every();
        tenure.acts_until.send_replace(acts_until.as_unix_millis());
    }

    /// Renews the lease every third of its time to live until `stop` is set or the lease is lost
    /// (someone else took it, or renewals failed until it could have lapsed), and marks the
    /// tenure lost in that case.
    ///
    /// A renewal that fails for a passing reason is tried again a tenth of the renewal interval
    /// later (about ten tries before the holder must stop acting), not at once: a bucket that is
    /// down would otherwise be asked in a tight loop.
    pub async fn hold(&self, tenure: Arc<Tenure>, mut stop: watch::Receiver<bool>) {
        let mut retry_at = None;
        loop {
            let renewed_at = Timestamp::from_unix_millis(tenure.renewed_at.load(Ordering::Acquire));
            let next = retry_at.unwrap_or(renewed_at + self.renew_every());
            tokio::select! {
                () = self.clock.sleep_until(next) => {}
                _ = stop.wait_for(|stopped| *stopped) => return,
            }
            let now = self.clock.now();
            let renewed = match self.record(now) {
                Ok(record) => self.kv.update(&self.key, record, tenure.revision()).await,
                Err(error) => Err(error),
            };
            match renewed {
                Ok(revision) => {
                    tenure.revision.store(i64::try_from(revision).unwrap_or(i64::MAX), Ordering::Release);
                    self.extend(&tenure, now);
                    retry_at = None;
                }
                Err(error) if error.is_transient() && tenure.may_act(self.clock.now()) => {
                    tracing::warn!(lease = %self.key, %error, "renewing the lease failed; retrying");
                    retry_at = Some(self.clock.now() + self.renew_every() / 10);
                }
                Err(error) => {
                    tracing::error!(lease = %self.key, owner = %self.owner, %error, "lease lost; stopping work");
                    tenure.lost.send_replace(true);
                    return;
                }
            }
        }
    }

    /// Gives the lease back, if this owner still holds it, so that a contender can take over at
    /// once instead of waiting for it to expire.
    pub async fn release(&self, tenure: &Tenure) {
        tenure.lost.send_replace(true);
        let Ok(Some(entry)) = self.kv.get(&self.key).await else { return };
        if decode(&entry.value).is_none_or(|held| held.owner != self.owner) {
            return;
        }
        let released = LeaseHolder { owner: self.owner.clone(), expires_at: self.clock.now() };
        if let Ok(encoded) = rmp_serde::to_vec_named(&released)
            && let Err(error) = self.kv.update(&self.key, Bytes::from(encoded), entry.revision).await
        {
            tracing::warn!(lease = %self.key, %error, "giving the lease back failed; it lapses on its own");
        }
    }
}

fn decode(value: &[u8]) -> Option<LeaseHolder> {
    rmp_serde::from_slice(value).ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use std::collections::BTreeMap;
    use std::sync::Mutex;

    use async_trait::async_trait;
    use doorsync_clock::ManualClock;

    use super::*;
    use crate::KvEntry;

    /// A bucket in memory with the compare-and-set the trait promises, whose updates can be made
    /// to fail as an unreachable server's would.
    #[derive(Default)]
    struct MemoryBucket {
        entries: Mutex<(u64, BTreeMap<String, KvEntry>)>,
        unreachable: std::sync::atomic::AtomicBool,
        updates: std::sync::atomic::AtomicUsize,
    }

    #[async_trait]
    impl KeyValue for MemoryBucket {
        async fn get(&self, key: &str) -> Result<Option<KvEntry>, LogError> {
            Ok(self.entries.lock().unwrap().1.get(key).cloned())
        }

        async fn put(&self, key: &str, value: Bytes) -> Result<u64, LogError> {
            let mut entries = self.entries.lock().unwrap();
            entries.0 += 1;
            let revision = entries.0;
            entries.1.insert(key.to_owned(), KvEntry { value, revision });
            Ok(revision)
        }

        async fn create(&self, key: &str, value: Bytes) -> Result<u64, LogError> {
            if self.entries.lock().unwrap().1.contains_key(key) {
                return Err(LogError::KvConflict { bucket: "memory".into(), key: key.into() });
            }
            self.put(key, value).await
        }

        async fn update(&self, key: &str, value: Bytes, revision: u64) -> Result<u64, LogError> {
            self.updates.fetch_add(1, Ordering::SeqCst);
            if self.unreachable.load(Ordering::SeqCst) {
                return Err(LogError::unavailable("memory bucket", "unreachable"));
            }
            let current = self.entries.lock().unwrap().1.get(key).map(|entry| entry.revision);
            if current != Some(revision) {
                return Err(LogError::KvConflict { bucket: "memory".into(), key: key.into() });
            }
            self.put(key, value).await
        }

        async fn delete(&self, key: &str) -> Result<(), LogError> {
            self.entries.lock().unwrap().1.remove(key);
            Ok(())
        }

        async fn keys(&self) -> Result<Vec<String>, LogError> {
            Ok(self.entries.lock().unwrap().1.keys().cloned().collect())
        }
    }

    const TTL: Duration = Duration::from_secs(30);

    fn contenders() -> (ManualClock, Lease, Lease) {
        let clock = ManualClock::new(Timestamp::from_unix_millis(1_000_000));
        let kv: Arc<dyn KeyValue> = Arc::new(MemoryBucket::default());
        let lease = |owner| Lease::new(Arc::clone(&kv), "lease.test", owner, TTL, Arc::new(clock.clone()));
        (clock.clone(), lease("first"), lease("second"))
    }

    #[tokio::test]
    async fn only_one_holds_it_until_it_expires_and_the_holder_stops_acting_a_third_before() {
        let (clock, first, second) = contenders();
        let tenure = first.try_acquire().await.unwrap().expect("free");
        assert!(second.try_acquire().await.unwrap().is_none());
        assert_eq!(second.holder().await.unwrap().map(|held| held.owner), Some("first".to_owned()));

        clock.advance(TTL * 2 / 3 - Duration::from_millis(1));
        assert!(tenure.may_act(clock.now()));
        clock.advance(Duration::from_millis(1));
        assert!(!tenure.may_act(clock.now()), "stops a third before the lease lapses");
        assert!(second.try_acquire().await.unwrap().is_none(), "not expired yet");

        clock.advance(TTL / 3);
        let taken = second.try_acquire().await.unwrap().expect("expired");
        assert!(taken.may_act(clock.now()));
        assert!(first.try_acquire().await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_renewed_lease_stays_and_one_taken_by_another_is_lost() {
        let (clock, first, second) = contenders();
        let tenure = first.try_acquire().await.unwrap().unwrap();
        let (stop, stopped) = watch::channel(false);
        let holding = {
            let tenure = Arc::clone(&tenure);
            tokio::spawn(async move { first.hold(tenure, stopped).await })
        };
        for _ in 0..6 {
            tokio::task::yield_now().await;
            clock.advance(TTL / 3);
            for _ in 0..10 {
                tokio::task::yield_now().await;
            }
        }
        assert!(tenure.may_act(clock.now()), "renewed for two time-to-lives");
        assert!(second.try_acquire().await.unwrap().is_none());

        // Someone forces the record (as an expired lease taken over would look): the holder
        // notices at its next renewal.
        let forced = LeaseHolder { owner: "second".into(), expires_at: clock.now() + TTL };
        second.kv.put("lease.test", Bytes::from(rmp_serde::to_vec_named(&forced).unwrap())).await.unwrap();
        let mut lost = tenure.watch_lost();
        clock.advance(TTL / 3);
        lost.wait_for(|lost| *lost).await.unwrap();
        assert!(!tenure.may_act(clock.now()));
        stop.send_replace(true);
        holding.await.unwrap();
    }

    #[tokio::test]
    async fn a_failed_renewal_is_tried_again_a_tenth_of_the_interval_later_not_at_once() {
        let clock = ManualClock::new(Timestamp::from_unix_millis(1_000_000));
        let bucket = Arc::new(MemoryBucket::default());
        let kv: Arc<dyn KeyValue> = Arc::clone(&bucket) as Arc<dyn KeyValue>;
        let lease = Lease::new(kv, "lease.test", "first", TTL, Arc::new(clock.clone()));
        let tenure = lease.try_acquire().await.unwrap().unwrap();
        let (_stop, stopped) = watch::channel(false);
        let holding = {
            let tenure = Arc::clone(&tenure);
            tokio::spawn(async move { lease.hold(tenure, stopped).await })
        };
        let settle = || async {
            for _ in 0..50 {
                tokio::task::yield_now().await;
            }
        };
        let updates = || bucket.updates.load(Ordering::SeqCst);
        settle().await;
        bucket.unreachable.store(true, Ordering::SeqCst);
        clock.advance(TTL / 3);
        settle().await;
        assert_eq!(updates(), 1, "one attempt at the renewal's time, and no other while the clock stands still");
        clock.advance(TTL / 30 - Duration::from_millis(1));
        settle().await;
        assert_eq!(updates(), 1);
        clock.advance(Duration::from_millis(1));
        settle().await;
        assert_eq!(updates(), 2, "tried again a tenth of the interval later");

        bucket.unreachable.store(false, Ordering::SeqCst);
        clock.advance(TTL / 30);
        settle().await;
        assert_eq!(updates(), 3);
        assert!(tenure.may_act(clock.now()), "renewed once the bucket answered again");
        holding.abort();
    }

    #[tokio::test]
    async fn after_a_jump_of_the_clock_the_holder_acts_once_its_renewal_is_in() {
        let (clock, first, _) = contenders();
        let tenure = first.try_acquire().await.unwrap().unwrap();
        let (_stop, stopped) = watch::channel(false);
        let holding = {
            let tenure = Arc::clone(&tenure);
            tokio::spawn(async move { first.hold(tenure, stopped).await })
        };
        tokio::task::yield_now().await;
        clock.advance(TTL * 5);
        assert!(!tenure.may_act(clock.now()), "looks lapsed until renewed");
        assert!(tenure.wait_to_act(&clock).await);
        assert!(tenure.may_act(clock.now()));
        holding.abort();
    }

    #[tokio::test]
    async fn a_lease_given_back_is_taken_at_once_and_never_given_back_for_another() {
        let (clock, first, second) = contenders();
        let tenure = first.try_acquire().await.unwrap().unwrap();
        first.release(&tenure).await;
        assert!(!tenure.may_act(clock.now()));
        assert_eq!(second.holder().await.unwrap(), None);
        let taken = second.try_acquire().await.unwrap().expect("given back");
        first.release(&tenure).await;
        assert_eq!(first.holder().await.unwrap().map(|held| held.owner), Some("second".to_owned()));
        assert!(taken.may_act(clock.now()));
    }

    #[tokio::test]
    async fn a_watcher_reads_the_holder_until_the_lease_expires_and_never_an_unreadable_record() {
        let (clock, first, _) = contenders();
        let read = || LeaseHolder::read(&*first.kv, "lease.test", clock.now());
        assert_eq!(read().await.unwrap(), None, "never taken");
        let _tenure = first.try_acquire().await.unwrap().unwrap();
        assert_eq!(read().await.unwrap().map(|held| held.owner), Some("first".to_owned()));
        clock.advance(TTL);
        assert_eq!(read().await.unwrap(), None, "expired");
        first.kv.put("lease.test", Bytes::from_static(b"\xc1")).await.unwrap();
        assert_eq!(read().await.unwrap(), None, "unreadable");
    }

    #[test]
    fn the_record_is_the_one_the_engine_and_writer_leases_keep() {
        #[derive(Serialize)]
        struct WriterLeaseRecord {
            owner: String,
            expires_at: Timestamp,
        }
        let theirs = WriterLeaseRecord { owner: "writer-a".into(), expires_at: Timestamp::from_unix_millis(42) };
        let decoded = decode(&rmp_serde::to_vec_named(&theirs).unwrap());
        assert_eq!(
            decoded,
            Some(LeaseHolder { owner: "writer-a".into(), expires_at: Timestamp::from_unix_millis(42) })
        );
    }
}
