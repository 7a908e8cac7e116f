//! The ingest bucket, holding JSON values: record states, parked records, watermarks.

use std::sync::Arc;

use bytes::Bytes;
use doorsync_log::KeyValue;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::IngestError;

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

    /// Every value whose key `wanted` accepts, with its key.
    pub(crate) async fn all<T: DeserializeOwned>(
        &self,
        wanted: impl Fn(&str) -> bool,
    ) -> Result<Vec<(String, T)>, IngestError> {
        let mut values = Vec::new();
        for key in self.kv.keys().await?.into_iter().filter(|key| wanted(key)) {
            if let Some(value) = self.get(&key).await? {
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
