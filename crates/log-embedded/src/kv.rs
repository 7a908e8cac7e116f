//! Key-value buckets: rows of one table keyed by (bucket, key), written through the writer.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use doorsync_log::{KeyValue, KvEntry, LogError, validate_kv_key};

use crate::Core;
use crate::store::{kv_get, kv_keys};
use crate::writer::{Job, KvOp, KvWrite, Request};

#[derive(Debug)]
pub(crate) struct Bucket {
    core: Arc<Core>,
    name: String,
}

impl Bucket {
    pub(crate) fn new(core: Arc<Core>, name: String) -> Self {
        Self { core, name }
    }

    async fn write(&self, key: &str, op: KvOp) -> Result<u64, LogError> {
        validate_kv_key(key)?;
        let (job, answer) = Job::new();
        self.core.submit(Request::Kv(KvWrite { bucket: self.name.clone(), key: key.to_owned(), op, job }))?;
        self.core.answer(answer).await
    }
}

#[async_trait]
impl KeyValue for Bucket {
    async fn get(&self, key: &str) -> Result<Option<KvEntry>, LogError> {
        validate_kv_key(key)?;
        let (bucket, key) = (self.name.clone(), key.to_owned());
        let context = format!("reading {bucket}/{key}");
        let entry = self.core.read(context, move |core| kv_get(&core.store.db, &bucket, &key)).await?;
        Ok(entry.map(|(revision, value)| KvEntry { value, revision }))
    }

    async fn put(&self, key: &str, value: Bytes) -> Result<u64, LogError> {
        self.write(key, KvOp::Put(value)).await
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<u64, LogError> {
        self.write(key, KvOp::Create(value)).await
    }

    async fn update(&self, key: &str, value: Bytes, revision: u64) -> Result<u64, LogError> {
        self.write(key, KvOp::Update(value, revision)).await
    }

    async fn delete(&self, key: &str) -> Result<(), LogError> {
        self.write(key, KvOp::Delete).await.map(drop)
    }

    async fn keys(&self) -> Result<Vec<String>, LogError> {
        let bucket = self.name.clone();
        let context = format!("listing the keys of {bucket}");
        self.core.read(context, move |core| kv_keys(&core.store.db, &bucket)).await
    }
}
