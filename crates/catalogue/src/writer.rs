//! Writing the catalogue: a key is put only when its value changed, so the ingestor's sweep and
//! the writer's reconciliation, which see every record again and again, write almost nothing.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use doorsync_layout::Layout;
use doorsync_log::{EventLog, KeyValue, LogError};
use doorsync_proto::{KisiGroupId, MappingSource};
use serde::Serialize;

use crate::error::CatalogueError;
use crate::records::{CatalogueKey, KisiGroup, Location, Named};

/// Puts catalogue records, each only when it differs from what the bucket holds. Clones share
/// what they know the bucket holds.
#[derive(Clone)]
pub struct CatalogueWriter {
    bucket: String,
    kv: Arc<dyn KeyValue>,
    /// The encoded value of each key as this process last read or wrote it.
    held: Arc<Mutex<BTreeMap<CatalogueKey, Bytes>>>,
}

impl fmt::Debug for CatalogueWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CatalogueWriter").field("bucket", &self.bucket).finish_non_exhaustive()
    }
}

impl CatalogueWriter {
    /// Opens (creating it if needed) the layout's catalogue bucket.
    pub async fn open(log: &dyn EventLog, layout: &Layout) -> Result<Self, CatalogueError> {
        let bucket = layout.catalogue_bucket.clone();
        let kv = log.key_value(&bucket).await.map_err(|source| CatalogueError::Log {
            action: "open",
            bucket: bucket.clone(),
            source,
        })?;
        Ok(Self::over(&bucket, kv))
    }

    /// Writes to `kv`, the bucket named `bucket`, already opened.
    pub fn over(bucket: &str, kv: Arc<dyn KeyValue>) -> Self {
        Self { bucket: bucket.to_owned(), kv, held: Arc::default() }
    }

    /// Records location `id`; `true` when the bucket changed.
    pub async fn location(&self, id: u64, location: &Location) -> Result<bool, CatalogueError> {
        self.put(CatalogueKey::Location(id), location).await
    }

    /// Records a resource, pass product or desk/office; `true` when the bucket changed.
    pub async fn source(&self, source: MappingSource, named: &Named) -> Result<bool, CatalogueError> {
        self.put(CatalogueKey::Source(source), named).await
    }

    /// Records a Kisi group; `true` when the bucket changed.
    pub async fn group(&self, id: KisiGroupId, group: &KisiGroup) -> Result<bool, CatalogueError> {
        self.put(CatalogueKey::KisiGroup(id), group).await
    }

    async fn put(&self, key: CatalogueKey, record: &impl Serialize) -> Result<bool, CatalogueError> {
        let name = key.to_string();
        let encoded = Bytes::from(
            rmp_serde::to_vec_named(record).map_err(|source| CatalogueError::Encode { key: name.clone(), source })?,
        );
        let held = self.held.lock().unwrap_or_else(PoisonError::into_inner).get(&key).cloned();
        let held = match held {
            Some(held) => Some(held),
            None => self.kv.get(&name).await.map_err(|source| self.failed("read", source))?.map(|entry| entry.value),
        };
        let changed = held.as_ref() != Some(&encoded);
        if changed {
            self.kv.put(&name, encoded.clone()).await.map_err(|source| self.failed("write", source))?;
        }
        self.held.lock().unwrap_or_else(PoisonError::into_inner).insert(key, encoded);
        Ok(changed)
    }

    fn failed(&self, action: &'static str, source: LogError) -> CatalogueError {
        CatalogueError::Log { action, bucket: self.bucket.clone(), source }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use doorsync_proto::{ResourceId, Subjects};

    use super::*;

    #[tokio::test]
    async fn a_record_is_put_only_when_it_changed_even_by_another_writer_after_a_restart() {
        let layout = Layout::new(Subjects::new("test", 4).unwrap());
        let log = doorsync_log_embedded::EmbeddedLog::in_memory(layout.streams()).unwrap();
        let kv = EventLog::key_value(&log, &layout.catalogue_bucket).await.unwrap();
        let room = MappingSource::Resource(ResourceId(42));
        let named = |name: &str| Named { name: Some(name.into()), location: Some(3) };

        let writer = CatalogueWriter::open(&log, &layout).await.unwrap();
        assert!(writer.source(room, &named("Room 1")).await.unwrap());
        let revision = kv.get("resource.42").await.unwrap().unwrap().revision;
        assert!(!writer.source(room, &named("Room 1")).await.unwrap());
        assert!(!writer.clone().source(room, &named("Room 1")).await.unwrap(), "clones share what is held");

        let restarted = CatalogueWriter::open(&log, &layout).await.unwrap();
        assert!(!restarted.source(room, &named("Room 1")).await.unwrap(), "compared with the bucket");
        assert_eq!(kv.get("resource.42").await.unwrap().unwrap().revision, revision, "nothing written");
        assert!(restarted.source(room, &named("Room One")).await.unwrap());
        assert!(kv.get("resource.42").await.unwrap().unwrap().revision > revision);
    }
}
