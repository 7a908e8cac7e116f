//! The file's layout: table definitions, stored records, and the reads every caller shares.

use std::sync::OnceLock;
use std::sync::atomic::AtomicU64;

use bytes::Bytes;
use doorsync_log::{Sequence, StoredMessage, StreamSpec, subject_matches};
use redb::{Database, ReadableDatabase, TableDefinition};
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, watch};

/// Last sequence of each stream, kept apart from the messages so that it survives the day old
/// messages are removed.
pub(crate) const STREAMS: TableDefinition<&str, u64> = TableDefinition::new("streams");
/// (stream, consumer) -> [`ConsumerRecord`].
pub(crate) const CONSUMERS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("consumers");
/// (stream, consumer, sequence): settled above the consumer's ack floor.
pub(crate) const CONSUMER_SETTLED: TableDefinition<(&str, &str, u64), ()> = TableDefinition::new("consumer_settled");
/// (bucket, key) -> (revision, value).
pub(crate) const KV: TableDefinition<(&str, &str), (u64, &[u8])> = TableDefinition::new("kv");
/// bucket -> last revision handed out, so that revisions never go back even after deletes.
pub(crate) const KV_REVISIONS: TableDefinition<&str, u64> = TableDefinition::new("kv_revisions");

/// How many messages one read transaction looks at before handing back what it found, so that
/// neither a replay nor a sparse consumer holds a snapshot or a large buffer for long.
const SCAN_LIMIT: usize = 16_384;

#[derive(Debug, thiserror::Error)]
pub(crate) enum StoreError {
    #[error(transparent)]
    Redb(#[from] redb::Error),
    #[error("encoding a record")]
    Encode(#[from] rmp_serde::encode::Error),
    #[error("decoding a stored record (was the file written by a newer doorsync?)")]
    Decode(#[from] rmp_serde::decode::Error),
    #[error("{0}")]
    Inconsistent(String),
}

// redb reports each kind of operation with its own error type; they all fold into redb::Error.
macro_rules! from_redb {
    ($($error:ty),*) => {
        $(impl From<$error> for StoreError {
            fn from(error: $error) -> Self {
                Self::Redb(error.into())
            }
        })*
    };
}
from_redb!(redb::StorageError, redb::TableError, redb::TransactionError, redb::CommitError, redb::SetDurabilityError);

/// The open database. The close signal is declared after the database so that it is dropped,
/// and waiters released, only once the file is closed.
#[derive(Debug)]
pub(crate) struct Store {
    pub(crate) db: Database,
    pub(crate) closed: watch::Sender<()>,
    /// Why a write failed, once one has: from then on the log refuses everything until the
    /// process restarts. redb latches its own I/O errors too, but the log also serves from
    /// memory (consumers' read-ahead, sequence numbers), which must not outlive a failed write.
    pub(crate) failure: OnceLock<String>,
    /// What the writer has committed since the file was opened, for [`crate::WriteStats`].
    pub(crate) commits: AtomicU64,
    pub(crate) appends_committed: AtomicU64,
    pub(crate) changes_committed: AtomicU64,
}

/// The names of one stream's tables.
#[derive(Debug)]
pub(crate) struct TableNames {
    messages: String,
    subjects: String,
    dedupe: String,
    dedupe_by_time: String,
}

impl TableNames {
    fn new(stream: &str) -> Self {
        Self {
            messages: format!("stream.{stream}.messages"),
            subjects: format!("stream.{stream}.subjects"),
            dedupe: format!("stream.{stream}.dedupe"),
            dedupe_by_time: format!("stream.{stream}.dedupe_by_time"),
        }
    }

    /// sequence -> encoded [`Record`].
    pub(crate) fn messages(&self) -> TableDefinition<'_, u64, &'static [u8]> {
        TableDefinition::new(&self.messages)
    }

    /// subject -> last sequence on it.
    pub(crate) fn subjects(&self) -> TableDefinition<'_, &'static str, u64> {
        TableDefinition::new(&self.subjects)
    }

    /// message id -> (sequence, appended at, ms since the Unix epoch).
    pub(crate) fn dedupe(&self) -> TableDefinition<'_, &'static str, (u64, u64)> {
        TableDefinition::new(&self.dedupe)
    }

    /// (appended at, sequence) -> message id, so that expired ids are found without a full scan.
    pub(crate) fn dedupe_by_time(&self) -> TableDefinition<'_, (u64, u64), &'static str> {
        TableDefinition::new(&self.dedupe_by_time)
    }
}

/// A stream as the process knows it: its spec, its tables and what has been committed to it.
#[derive(Debug)]
pub(crate) struct StreamState {
    pub(crate) spec: StreamSpec,
    pub(crate) tables: TableNames,
    /// Published by the writer after each commit, before anyone is told the commit happened.
    pub(crate) last_sequence: AtomicU64,
    /// Woken after each commit that appended to this stream.
    pub(crate) appended: Notify,
}

impl StreamState {
    pub(crate) fn new(spec: StreamSpec) -> Self {
        let tables = TableNames::new(&spec.name);
        Self { spec, tables, last_sequence: AtomicU64::new(0), appended: Notify::new() }
    }

    pub(crate) fn window_ms(&self) -> u64 {
        u64::try_from(self.spec.duplicate_window.as_millis()).unwrap_or(u64::MAX)
    }
}

/// A message as written to the file.
#[derive(Serialize)]
pub(crate) struct RecordRef<'a> {
    pub(crate) subject: &'a str,
    pub(crate) id: &'a str,
    pub(crate) headers: &'a [(String, String)],
    pub(crate) payload: &'a Bytes,
}

#[derive(Deserialize)]
struct Record {
    subject: String,
    id: String,
    headers: Vec<(String, String)>,
    payload: Bytes,
}

pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    Ok(rmp_serde::to_vec_named(value)?)
}

pub(crate) fn decode<'de, T: Deserialize<'de>>(bytes: &'de [u8]) -> Result<T, StoreError> {
    Ok(rmp_serde::from_slice(bytes)?)
}

fn decode_message(stream: &str, sequence: u64, bytes: &[u8]) -> Result<StoredMessage, StoreError> {
    let record: Record = decode(bytes)?;
    Ok(StoredMessage {
        stream: stream.to_owned(),
        sequence: Sequence(sequence),
        subject: record.subject,
        id: Some(record.id),
        payload: record.payload,
        headers: record.headers,
    })
}

/// A durable consumer's settings as last opened, and the sequence up to which everything is
/// settled (or was never its business).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ConsumerConfig {
    pub(crate) filters: Vec<String>,
    pub(crate) ack_wait_ms: u64,
    pub(crate) max_deliver: Option<u64>,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ConsumerRecord {
    pub(crate) config: ConsumerConfig,
    pub(crate) ack_floor: u64,
}

pub(crate) fn matches(filters: &[String], subject: &str) -> bool {
    filters.is_empty() || filters.iter().any(|filter| subject_matches(filter, subject))
}

/// What one read transaction found between two sequences.
#[derive(Debug)]
pub(crate) struct Scan {
    pub(crate) found: Vec<StoredMessage>,
    /// Where the next scan starts: past `to` once the range is done.
    pub(crate) next: u64,
}

/// Reads the messages with sequence in `from..=to` matching `filters`, stopping early after
/// `limit` matches or [`SCAN_LIMIT`] messages looked at.
pub(crate) fn scan(
    db: &Database,
    stream: &StreamState,
    from: u64,
    to: u64,
    filters: &[String],
    limit: usize,
) -> Result<Scan, StoreError> {
    if from > to {
        return Ok(Scan { found: Vec::new(), next: from });
    }
    let txn = db.begin_read()?;
    let table = txn.open_table(stream.tables.messages())?;
    let mut found = Vec::new();
    for (looked_at, entry) in table.range(from..=to)?.enumerate() {
        let (sequence, bytes) = entry?;
        let sequence = sequence.value();
        let message = decode_message(&stream.spec.name, sequence, bytes.value())?;
        if matches(filters, &message.subject) {
            found.push(message);
        }
        if found.len() >= limit || looked_at + 1 >= SCAN_LIMIT {
            return Ok(Scan { found, next: sequence + 1 });
        }
    }
    Ok(Scan { found, next: to.saturating_add(1) })
}

pub(crate) fn last_on_subject(
    db: &Database,
    stream: &StreamState,
    subject: &str,
) -> Result<Option<StoredMessage>, StoreError> {
    let txn = db.begin_read()?;
    let Some(sequence) = txn.open_table(stream.tables.subjects())?.get(subject)?.map(|guard| guard.value()) else {
        return Ok(None);
    };
    match txn.open_table(stream.tables.messages())?.get(sequence)? {
        Some(bytes) => Ok(Some(decode_message(&stream.spec.name, sequence, bytes.value())?)),
        None => Err(StoreError::Inconsistent(format!(
            "stream {}: subject {subject} points at message {sequence}, which is missing",
            stream.spec.name
        ))),
    }
}

pub(crate) fn kv_get(db: &Database, bucket: &str, key: &str) -> Result<Option<(u64, Bytes)>, StoreError> {
    let txn = db.begin_read()?;
    let table = txn.open_table(KV)?;
    Ok(table.get((bucket, key))?.map(|guard| {
        let (revision, value) = guard.value();
        (revision, Bytes::copy_from_slice(value))
    }))
}

pub(crate) fn kv_keys(db: &Database, bucket: &str) -> Result<Vec<String>, StoreError> {
    let txn = db.begin_read()?;
    let table = txn.open_table(KV)?;
    let mut keys = Vec::new();
    for entry in table.range((bucket, "")..)? {
        let (key, _) = entry?;
        let (entry_bucket, key) = key.value();
        if entry_bucket != bucket {
            break;
        }
        keys.push(key.to_owned());
    }
    Ok(keys)
}

/// Creates every table that is missing and reads where each stream stands.
pub(crate) fn prepare(db: &Database, streams: &[StreamState]) -> Result<Vec<u64>, StoreError> {
    use redb::ReadableTable;

    let txn = db.begin_write()?;
    let mut last = Vec::with_capacity(streams.len());
    {
        let meta = txn.open_table(STREAMS)?;
        txn.open_table(CONSUMERS)?;
        txn.open_table(CONSUMER_SETTLED)?;
        txn.open_table(KV)?;
        txn.open_table(KV_REVISIONS)?;
        for stream in streams {
            txn.open_table(stream.tables.messages())?;
            txn.open_table(stream.tables.subjects())?;
            txn.open_table(stream.tables.dedupe())?;
            txn.open_table(stream.tables.dedupe_by_time())?;
            last.push(meta.get(stream.spec.name.as_str())?.map_or(0, |guard| guard.value()));
        }
    }
    txn.commit()?;
    Ok(last)
}
