//! The event log doorsync is built on, as a trait with interchangeable backends.
//!
//! Everything that happens in doorsync is a message appended to a named stream: Nexudus facts,
//! commands for the Kisi writer, the writer's outcomes, dead letters. The log offers exactly what
//! the rest of the system relies on, and nothing more:
//!
//! * [`EventLog::append`] with a stable message id (a repeated id is answered with the original
//!   sequence and not stored again) and optional per-subject optimistic concurrency;
//! * [`EventLog::replay`]: ordered reading of the messages matching some subject filters, from a
//!   sequence up to the end as it was when the replay started;
//! * [`EventLog::durable_consumer`]: named consumers whose position survives restarts, with ack,
//!   nak with a delay, and terminate;
//! * [`EventLog::key_value`]: buckets with compare-and-set, for checkpoints, snapshots and leases.
//!
//! On top of these, [`append_with_retry`] retries transient failures with the same id, and
//! [`Lease`] is the one lease of doorsync: a compare-and-set record in a bucket, on the
//! [`Clock`](doorsync_clock::Clock), held by the ingestor, each engine partition and the writer's
//! Kisi account.
//!
//! Backends live in their own crates (`doorsync-log-jetstream`, `doorsync-log-embedded`) and must
//! pass the suite in the `conformance` module (feature `conformance`) unchanged. Code above the
//! log uses only this trait, and nothing outside the backends names JetStream or redb. A
//! difference in behaviour is fixed in the backend (as the JetStream backend does for a retry
//! whose expected sequence is stale because its own first attempt landed), or the suite and this
//! trait's documentation change together.
#![forbid(unsafe_code)]

#[cfg(feature = "conformance")]
pub mod conformance;
mod error;
mod lease;
mod retry;
mod sequence;
mod subject;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;

pub use error::{BoxError, LogError};
pub use lease::{Lease, LeaseHolder, Tenure};
pub use retry::{RetryPolicy, append_with_retry};
pub use sequence::Sequence;
pub use subject::{subject_matches, validate_filter, validate_kv_key, validate_name, validate_subject};

/// How long a message id is remembered for de-duplication unless a stream says otherwise.
///
/// Two minutes is JetStream's own default; doorsync's streams ask for longer because a replay
/// after a restart may re-send messages that were first appended a while ago.
pub const DEFAULT_DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// A stream and the subjects it captures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSpec {
    pub name: String,
    /// Subject filters (NATS wildcards `*` and `>` allowed) whose messages this stream stores.
    pub subjects: Vec<String>,
    pub duplicate_window: Duration,
}

impl StreamSpec {
    pub fn new(name: impl Into<String>, subjects: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self {
            name: name.into(),
            subjects: subjects.into_iter().map(Into::into).collect(),
            duplicate_window: DEFAULT_DUPLICATE_WINDOW,
        }
    }

    pub fn with_duplicate_window(mut self, window: Duration) -> Self {
        self.duplicate_window = window;
        self
    }

    /// Checks names and subjects before a backend creates anything from this spec.
    pub fn validate(&self) -> Result<(), LogError> {
        validate_name("stream name", &self.name)?;
        if self.subjects.is_empty() {
            return Err(LogError::invalid("stream subjects", &self.name, "a stream needs at least one subject"));
        }
        self.subjects.iter().try_for_each(|subject| validate_filter(subject))
    }

    pub fn captures(&self, subject: &str) -> bool {
        self.subjects.iter().any(|filter| subject_matches(filter, subject))
    }
}

/// A message to append. The id must be derived from the content so that a retry, a replay or a
/// second ingestor appending the same fact is recognised as a duplicate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    pub subject: String,
    pub id: String,
    pub payload: Bytes,
    /// Application headers (trace context, for instance). Names starting with `Nats-` are
    /// reserved for the log itself.
    pub headers: Vec<(String, String)>,
    /// `Some(0)`: the subject must be empty. `Some(n)`: the last message on the subject must have
    /// sequence `n`. Otherwise the append fails with [`LogError::WrongLastSequence`], unless the
    /// message itself (same id) is already the last one on the subject: then it is a retry after
    /// a lost acknowledgement and is answered as a duplicate.
    pub expected_last_subject_sequence: Option<Sequence>,
}

impl NewMessage {
    pub fn new(subject: impl Into<String>, id: impl Into<String>, payload: impl Into<Bytes>) -> Self {
        Self {
            subject: subject.into(),
            id: id.into(),
            payload: payload.into(),
            headers: Vec::new(),
            expected_last_subject_sequence: None,
        }
    }

    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn expecting_last_subject_sequence(mut self, sequence: Sequence) -> Self {
        self.expected_last_subject_sequence = Some(sequence);
        self
    }

    /// Checks what every backend would refuse, so that both refuse it the same way.
    pub fn validate(&self) -> Result<(), LogError> {
        validate_subject(&self.subject)?;
        if self.id.is_empty() || self.id.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(LogError::invalid("message id", &self.id, "must be non-empty, without whitespace"));
        }
        match self.headers.iter().find(|(name, _)| is_reserved_header(name)) {
            Some((name, _)) => Err(LogError::invalid("header", name, "names starting with Nats- are reserved")),
            None => Ok(()),
        }
    }
}

/// Header names the log manages itself and never hands back as application headers.
pub fn is_reserved_header(name: &str) -> bool {
    name.get(..5).is_some_and(|prefix| prefix.eq_ignore_ascii_case("nats-"))
}

/// Where an appended message landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// The stream sequence; for a duplicate, the sequence of the message first stored.
    pub sequence: Sequence,
    /// True when the id had been seen within the stream's duplicate window and nothing was stored.
    pub duplicate: bool,
}

/// A message as stored in a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    pub stream: String,
    pub sequence: Sequence,
    pub subject: String,
    pub id: Option<String>,
    pub payload: Bytes,
    pub headers: Vec<(String, String)>,
}

/// Which messages a replay reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayRequest {
    pub stream: String,
    /// Subject filters; empty means every subject of the stream.
    pub filters: Vec<String>,
    /// The first stream sequence to read (1 is the beginning).
    pub from_sequence: Sequence,
}

impl ReplayRequest {
    pub fn whole(stream: impl Into<String>) -> Self {
        Self { stream: stream.into(), filters: Vec::new(), from_sequence: Sequence::FIRST }
    }

    pub fn filtered(mut self, filters: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.filters = filters.into_iter().map(Into::into).collect();
        self
    }

    pub fn from_sequence(mut self, sequence: Sequence) -> Self {
        self.from_sequence = sequence.max(Sequence::FIRST);
        self
    }

    pub fn matches(&self, subject: &str) -> bool {
        self.filters.is_empty() || self.filters.iter().any(|filter| subject_matches(filter, subject))
    }
}

/// Messages in stream order. It ends once it has delivered everything that matched when the
/// replay started; messages appended afterwards may or may not be included.
pub type MessageStream = BoxStream<'static, Result<StoredMessage, LogError>>;

/// Where a new durable consumer starts. Ignored when the consumer already exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartPosition {
    First,
    Sequence(Sequence),
    /// Only messages appended after the consumer was created.
    New,
}

/// A durable consumer: its position and pending acknowledgements survive restarts, and several
/// handles opened with the same name share the work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerSpec {
    pub stream: String,
    pub durable_name: String,
    pub filters: Vec<String>,
    /// A delivery not acknowledged within this time is delivered again.
    pub ack_wait: Duration,
    /// After this many deliveries a message is no longer delivered; `None` means no limit.
    pub max_deliver: Option<u64>,
    pub start: StartPosition,
}

impl ConsumerSpec {
    pub fn new(stream: impl Into<String>, durable_name: impl Into<String>) -> Self {
        Self {
            stream: stream.into(),
            durable_name: durable_name.into(),
            filters: Vec::new(),
            ack_wait: Duration::from_secs(30),
            max_deliver: None,
            start: StartPosition::First,
        }
    }

    pub fn filtered(mut self, filters: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.filters = filters.into_iter().map(Into::into).collect();
        self
    }

    pub fn ack_wait(mut self, ack_wait: Duration) -> Self {
        self.ack_wait = ack_wait;
        self
    }

    pub fn max_deliver(mut self, max_deliver: u64) -> Self {
        self.max_deliver = Some(max_deliver);
        self
    }

    pub fn starting_at(mut self, start: StartPosition) -> Self {
        self.start = start;
        self
    }

    pub fn validate(&self) -> Result<(), LogError> {
        validate_name("stream name", &self.stream)?;
        validate_name("consumer name", &self.durable_name)?;
        if self.ack_wait.is_zero() {
            // Everything would be redelivered at once, forever.
            return Err(LogError::invalid("ack wait", &self.durable_name, "must be longer than zero"));
        }
        self.filters.iter().try_for_each(|filter| validate_filter(filter))
    }
}

/// How a delivery is settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settlement {
    /// Done: never deliver it again.
    Ack,
    /// Not now: deliver it again after the delay.
    Nak(Duration),
    /// Never deliver it again, without having processed it (it was dead-lettered, for instance).
    Term,
}

/// The backend's side of a delivery.
#[async_trait]
pub trait Settle: Send + Sync {
    async fn settle(&self, settlement: Settlement) -> Result<(), LogError>;
}

/// A message handed to a durable consumer, to be settled exactly once.
pub struct Delivery {
    pub message: StoredMessage,
    /// 1 on the first delivery, 2 on the first redelivery, and so on.
    pub delivery_count: u64,
    settle: Box<dyn Settle>,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("message", &self.message)
            .field("delivery_count", &self.delivery_count)
            .finish_non_exhaustive()
    }
}

impl Delivery {
    pub fn new(message: StoredMessage, delivery_count: u64, settle: Box<dyn Settle>) -> Self {
        Self { message, delivery_count, settle }
    }

    /// Returns once the log has recorded the acknowledgement.
    pub async fn ack(self) -> Result<(), LogError> {
        self.settle.settle(Settlement::Ack).await
    }

    pub async fn nak(self, delay: Duration) -> Result<(), LogError> {
        self.settle.settle(Settlement::Nak(delay)).await
    }

    pub async fn term(self) -> Result<(), LogError> {
        self.settle.settle(Settlement::Term).await
    }
}

#[async_trait]
pub trait DurableConsumer: Send {
    /// Waits for the next delivery. Cancel-safe: dropping the future loses no message (an
    /// unsettled delivery comes back after the ack wait).
    async fn next(&mut self) -> Result<Delivery, LogError>;
}

/// A value and the revision that wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvEntry {
    pub value: Bytes,
    pub revision: u64,
}

/// A bucket of keys with compare-and-set.
#[async_trait]
pub trait KeyValue: Send + Sync {
    async fn get(&self, key: &str) -> Result<Option<KvEntry>, LogError>;
    /// Writes unconditionally; returns the new revision.
    async fn put(&self, key: &str, value: Bytes) -> Result<u64, LogError>;
    /// Writes only if the key has no value; otherwise [`LogError::KvConflict`].
    async fn create(&self, key: &str, value: Bytes) -> Result<u64, LogError>;
    /// Writes only if the key's current revision is `revision`; otherwise [`LogError::KvConflict`].
    async fn update(&self, key: &str, value: Bytes, revision: u64) -> Result<u64, LogError>;
    async fn delete(&self, key: &str) -> Result<(), LogError>;
    /// The keys that currently have a value, sorted.
    async fn keys(&self) -> Result<Vec<String>, LogError>;
}

/// The event log. Backends create the streams they were opened with before handing one out.
#[async_trait]
pub trait EventLog: Send + Sync {
    /// Stores one message and returns once it is durable.
    async fn append(&self, message: NewMessage) -> Result<Appended, LogError>;

    /// Stores several messages with the acknowledgements pipelined; the results come back in the
    /// order of the input, each as [`EventLog::append`] would have answered it.
    async fn append_batch(&self, messages: Vec<NewMessage>) -> Vec<Result<Appended, LogError>>;

    async fn replay(&self, request: ReplayRequest) -> Result<MessageStream, LogError>;

    /// Like [`EventLog::replay`], but never ends: after the messages already stored it waits for
    /// new ones and delivers them in order as they are appended. Dropping the stream stops it.
    /// It ends only after an error, when the backend can no longer promise the rest in order (the
    /// JetStream backend: its connection to the server was lost and came back); the caller
    /// follows again from the last message it got.
    async fn follow(&self, request: ReplayRequest) -> Result<MessageStream, LogError>;

    /// The sequence of the last message in the stream, 0 when it is empty.
    async fn last_sequence(&self, stream: &str) -> Result<Sequence, LogError>;

    /// The last message on exactly this subject.
    async fn last_on_subject(&self, stream: &str, subject: &str) -> Result<Option<StoredMessage>, LogError>;

    /// Opens (creating it if needed) a durable consumer.
    async fn durable_consumer(&self, spec: ConsumerSpec) -> Result<Box<dyn DurableConsumer>, LogError>;

    /// Opens (creating it if needed) a key-value bucket.
    async fn key_value(&self, bucket: &str) -> Result<Arc<dyn KeyValue>, LogError>;
}
