use async_nats::jetstream::{self, kv};
use async_trait::async_trait;
use bytes::Bytes;
use doorsync_log::{KeyValue, KvEntry, LogError, validate_kv_key};
use futures::TryStreamExt;

/// A JetStream key-value bucket keeping only the latest value of each key.
pub(crate) struct JetStreamKv {
    bucket: String,
    store: kv::Store,
}

impl JetStreamKv {
    pub(crate) async fn open(context: &jetstream::Context, bucket: &str, replicas: usize) -> Result<Self, LogError> {
        let store = match context.get_key_value(bucket).await {
            Ok(store) => store,
            Err(_) => context
                .create_key_value(kv::Config {
                    bucket: bucket.to_owned(),
                    history: 1,
                    storage: jetstream::stream::StorageType::File,
                    num_replicas: replicas,
                    ..Default::default()
                })
                .await
                .map_err(|error| LogError::unavailable(format!("creating key-value bucket {bucket}"), error))?,
        };
        Ok(Self { bucket: bucket.to_owned(), store })
    }

    fn conflict(&self, key: &str) -> LogError {
        LogError::KvConflict { bucket: self.bucket.clone(), key: key.to_owned() }
    }

    fn failed(&self, action: &str, key: &str, error: impl Into<doorsync_log::BoxError>) -> LogError {
        LogError::unavailable(format!("{action} {}/{key}", self.bucket), error)
    }
}

#[async_trait]
impl KeyValue for JetStreamKv {
    async fn get(&self, key: &str) -> Result<Option<KvEntry>, LogError> {
        validate_kv_key(key)?;
        let entry = self.store.entry(key).await.map_err(|error| self.failed("reading", key, error))?;
        Ok(entry
            .filter(|entry| entry.operation == kv::Operation::Put)
            .map(|entry| KvEntry { value: entry.value, revision: entry.revision }))
    }

    async fn put(&self, key: &str, value: Bytes) -> Result<u64, LogError> {
        validate_kv_key(key)?;
        self.store.put(key, value).await.map_err(|error| self.failed("writing", key, error))
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<u64, LogError> {
        validate_kv_key(key)?;
        self.store.create(key, value).await.map_err(|error| match error.kind() {
            kv::CreateErrorKind::AlreadyExists => self.conflict(key),
            _ => self.failed("creating", key, error),
        })
    }

    async fn update(&self, key: &str, value: Bytes, revision: u64) -> Result<u64, LogError> {
        validate_kv_key(key)?;
        self.store.update(key, value, revision).await.map_err(|error| match error.kind() {
            kv::UpdateErrorKind::WrongLastRevision => self.conflict(key),
            _ => self.failed("updating", key, error),
        })
    }

    async fn delete(&self, key: &str) -> Result<(), LogError> {
        validate_kv_key(key)?;
        self.store.delete(key).await.map_err(|error| self.failed("deleting", key, error))
    }

    async fn keys(&self) -> Result<Vec<String>, LogError> {
        let keys = self.store.keys().await.map_err(|error| self.failed("listing", "*", error))?;
        let mut keys: Vec<String> = keys.try_collect().await.map_err(|error| self.failed("listing", "*", error))?;
        keys.sort();
        Ok(keys)
    }
}
