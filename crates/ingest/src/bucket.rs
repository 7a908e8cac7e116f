//! The ingest bucket, holding JSON values: record states, parked records, watermarks.

use std::sync::Arc;

use bytes::Bytes;
use doorsync_log::{KeyValue, LogError};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::task::JoinSet;

use crate::error::IngestError;

/// How many reads of the bucket a start keeps in flight.
const READS_IN_FLIGHT: usize = 256;

#[derive(Clone)]
pub(crate) struct Bucket {
    kv: Arc<dyn KeyValue>,
    name: String,
}

impl std::fmt::Debug for Bucket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bucket").field("name", &self.name).finish_non_exhaustive()
    }
}

impl Bucket {
    pub(crate) fn new(kv: Arc<dyn KeyValue>, name: &str) -> Self {
        Self { kv, name: name.to_owned() }
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn kv(&self) -> Arc<dyn KeyValue> {
        Arc::clone(&self.kv)
    }

    pub(crate) async fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, IngestError> {
        let Some(entry) = self.kv.get(key).await? else { return Ok(None) };
        serde_json::from_slice(&entry.value).map(Some).map_err(|error| IngestError::corrupt(&self.name, key, error))
    }

    /// Every value whose key `wanted` accepts, with its key, read [`READS_IN_FLIGHT`] at a time:
    /// one after the other, a start over 100,000 records on JetStream waited for 100,000 round
    /// trips (see `tests/start_with_many_records.rs` for the figures).
    pub(crate) async fn all<T: DeserializeOwned>(
        &self,
        wanted: impl Fn(&str) -> bool,
    ) -> Result<Vec<(String, T)>, IngestError> {
        let keys: Vec<String> = self.kv.keys().await?.into_iter().filter(|key| wanted(key)).collect();
        let mut values = Vec::with_capacity(keys.len());
        for batch in keys.chunks(READS_IN_FLIGHT) {
            let mut reads = JoinSet::new();
            for key in batch {
                let (kv, key) = (Arc::clone(&self.kv), key.clone());
                reads.spawn(async move {
                    let entry = kv.get(&key).await;
                    (key, entry)
                });
            }
            while let Some(read) = reads.join_next().await {
                let (key, entry) =
                    read.map_err(|error| LogError::storage(format!("reading bucket {}", self.name), error))?;
                let Some(entry) = entry? else { continue };
                let value = serde_json::from_slice(&entry.value)
                    .map_err(|error| IngestError::corrupt(&self.name, &key, error))?;
                values.push((key, value));
            }
        }
        Ok(values)
    }

    pub(crate) async fn put<T: Serialize>(&self, key: &str, value: &T) -> Result<(), IngestError> {
        let encoded = serde_json::to_vec(value).map_err(|error| IngestError::corrupt(&self.name, key, error))?;
        self.kv.put(key, Bytes::from(encoded)).await?;
        Ok(())
    }

    pub(crate) async fn delete(&self, key: &str) -> Result<(), IngestError> {
        Ok(self.kv.delete(key).await?)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use std::sync::atomic::{AtomicUsize, Ordering};

    use async_trait::async_trait;
    use doorsync_log::KvEntry;

    use super::*;

    /// A bucket of `keys` keys, each holding its number, that counts the reads in flight.
    struct CountingReads {
        keys: usize,
        in_flight: AtomicUsize,
        most_in_flight: AtomicUsize,
    }

    #[async_trait]
    impl KeyValue for CountingReads {
        async fn get(&self, key: &str) -> Result<Option<KvEntry>, LogError> {
            let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            self.most_in_flight.fetch_max(now, Ordering::SeqCst);
            // A round trip: the reads that were started meanwhile are in flight with this one.
            tokio::task::yield_now().await;
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            let number = key.trim_start_matches("key.");
            Ok(Some(KvEntry { value: Bytes::from(number.to_owned()), revision: 1 }))
        }

        async fn put(&self, key: &str, _: Bytes) -> Result<u64, LogError> {
            Err(LogError::invalid("key", key, "read-only in this test"))
        }

        async fn create(&self, key: &str, _: Bytes) -> Result<u64, LogError> {
            Err(LogError::invalid("key", key, "read-only in this test"))
        }

        async fn update(&self, key: &str, _: Bytes, _: u64) -> Result<u64, LogError> {
            Err(LogError::invalid("key", key, "read-only in this test"))
        }

        async fn delete(&self, key: &str) -> Result<(), LogError> {
            Err(LogError::invalid("key", key, "read-only in this test"))
        }

        async fn keys(&self) -> Result<Vec<String>, LogError> {
            Ok((0..self.keys).map(|number| format!("key.{number}")).collect())
        }
    }

    #[tokio::test]
    async fn reading_everything_keeps_many_reads_in_flight_and_misses_nothing() {
        let kv = Arc::new(CountingReads {
            keys: 1_000,
            in_flight: AtomicUsize::new(0),
            most_in_flight: AtomicUsize::new(0),
        });
        let bucket = Bucket::new(Arc::clone(&kv) as Arc<dyn KeyValue>, "test");
        let mut read: Vec<u64> =
            bucket.all::<u64>(|_| true).await.unwrap().into_iter().map(|(_, number)| number).collect();
        read.sort_unstable();
        assert_eq!(read, (0..1_000).collect::<Vec<u64>>());
        assert!(kv.most_in_flight.load(Ordering::SeqCst) > 100, "read one round trip at a time");
    }
}
