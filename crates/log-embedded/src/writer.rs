//! The one thread that writes the file.
//!
//! redb runs one write transaction at a time and each durable commit costs an fsync, so the
//! writer takes every request waiting, applies them all in one transaction in arrival order (a
//! request sees the effects of those before it), commits once, and only then answers them.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use doorsync_log::{Appended, LogError, NewMessage, Sequence, StartPosition};
use redb::{Durability, ReadableTable, Table, WriteTransaction};
use tokio::sync::{mpsc, oneshot};

use crate::store::{
    CONSUMER_SETTLED, CONSUMERS, ConsumerConfig, ConsumerRecord, KV, KV_REVISIONS, RecordRef, STREAMS, Store,
    StoreError, StreamState, decode, encode,
};

/// The most messages and other changes one transaction takes, so that a huge batch does not
/// hold up everyone else's commits for long.
const GROUP_LIMIT: usize = 8_192;
/// The most expired message ids forgotten per stream and commit, for the same reason.
const PRUNE_LIMIT: usize = 4_096;

/// A request's answer, held back until the transaction that produced it has committed.
#[derive(Debug)]
pub(crate) struct Job<T> {
    reply: oneshot::Sender<Result<T, LogError>>,
    outcome: Option<Result<T, LogError>>,
}

impl<T> Job<T> {
    pub(crate) fn new() -> (Self, oneshot::Receiver<Result<T, LogError>>) {
        let (reply, answer) = oneshot::channel();
        (Self { reply, outcome: None }, answer)
    }

    fn finish(self, path: &std::path::Path) {
        let outcome = self.outcome.unwrap_or_else(|| {
            Err(LogError::Storage {
                context: format!("embedded log {}: a change was committed without being applied", path.display()),
                source: None,
            })
        });
        // The caller may have given up waiting; the change is stored all the same.
        let _ = self.reply.send(outcome);
    }

    fn fail(self, error: LogError) {
        let _ = self.reply.send(Err(error));
    }
}

#[derive(Debug)]
pub(crate) enum Request {
    Append(Vec<AppendJob>),
    OpenConsumer(OpenConsumer),
    Settle(Settle),
    Kv(KvWrite),
}

#[derive(Debug)]
pub(crate) struct AppendJob {
    /// Index into the log's streams, chosen by the caller from the subject.
    pub(crate) stream: usize,
    pub(crate) message: NewMessage,
    pub(crate) job: Job<Appended>,
}

#[derive(Debug)]
pub(crate) struct OpenConsumer {
    pub(crate) stream: usize,
    pub(crate) name: String,
    pub(crate) config: ConsumerConfig,
    pub(crate) start: StartPosition,
    pub(crate) job: Job<ConsumerSnapshot>,
}

/// A consumer's durable state, as a handle starts from.
#[derive(Debug)]
pub(crate) struct ConsumerSnapshot {
    pub(crate) ack_floor: u64,
    /// Settled sequences above the floor, ascending.
    pub(crate) settled: Vec<u64>,
}

#[derive(Debug)]
pub(crate) struct Settle {
    pub(crate) stream: usize,
    pub(crate) name: String,
    pub(crate) sequence: u64,
    /// Computed by the consumer when it settled; floors only rise, so a late one is harmless.
    pub(crate) ack_floor: u64,
    pub(crate) job: Job<()>,
}

#[derive(Debug)]
pub(crate) struct KvWrite {
    pub(crate) bucket: String,
    pub(crate) key: String,
    pub(crate) op: KvOp,
    pub(crate) job: Job<u64>,
}

#[derive(Debug)]
pub(crate) enum KvOp {
    Put(Bytes),
    Create(Bytes),
    Update(Bytes, u64),
    Delete,
}

impl Request {
    fn size(&self) -> usize {
        match self {
            Self::Append(jobs) => jobs.len(),
            Self::OpenConsumer(_) | Self::Settle(_) | Self::Kv(_) => 1,
        }
    }

    fn appends(&self) -> usize {
        match self {
            Self::Append(jobs) => jobs.len(),
            Self::OpenConsumer(_) | Self::Settle(_) | Self::Kv(_) => 0,
        }
    }

    fn finish(self, path: &std::path::Path) {
        match self {
            Self::Append(jobs) => jobs.into_iter().for_each(|append| append.job.finish(path)),
            Self::OpenConsumer(open) => open.job.finish(path),
            Self::Settle(settle) => settle.job.finish(path),
            Self::Kv(write) => write.job.finish(path),
        }
    }

    fn fail(self, error: impl Fn() -> LogError) {
        match self {
            Self::Append(jobs) => jobs.into_iter().for_each(|append| append.job.fail(error())),
            Self::OpenConsumer(open) => open.job.fail(error()),
            Self::Settle(settle) => settle.job.fail(error()),
            Self::Kv(write) => write.job.fail(error()),
        }
    }
}

#[derive(Debug)]
pub(crate) struct Writer {
    pub(crate) store: Arc<Store>,
    pub(crate) streams: Arc<[StreamState]>,
    /// Each stream's last committed sequence. Only this thread appends, so this is exact.
    pub(crate) last: Vec<u64>,
    pub(crate) path: PathBuf,
    /// `Immediate` for a file; `None` for a log in memory, where there is nothing to make
    /// durable and a durable commit only costs time.
    pub(crate) durability: Durability,
}

impl Writer {
    /// Runs until every handle to the log is gone, then lets the file close.
    pub(crate) fn run(mut self, mut requests: mpsc::UnboundedReceiver<Request>) {
        while let Some(first) = requests.blocking_recv() {
            let mut size = first.size();
            let mut group = vec![first];
            while size < GROUP_LIMIT {
                let Ok(request) = requests.try_recv() else { break };
                size += request.size();
                group.push(request);
            }
            self.commit(group);
        }
        tracing::debug!(path = %self.path.display(), "embedded log writer stopped");
    }

    fn commit(&mut self, mut group: Vec<Request>) {
        let mut last = self.last.clone();
        match self.apply(&mut group, &mut last) {
            Ok(()) => {
                for ((stream, committed), previous) in self.streams.iter().zip(&last).zip(&self.last) {
                    if committed != previous {
                        stream.last_sequence.store(*committed, Ordering::Release);
                        stream.appended.notify_waiters();
                    }
                }
                self.last = last;
                self.count_commit(&group);
                group.into_iter().for_each(|request| request.finish(&self.path));
            }
            Err(error) => {
                tracing::error!(path = %self.path.display(), error = %error, "embedded log: a write failed");
                self.store.failure.get_or_init(|| error.to_string());
                // Followers and consumers waiting for an append wake up to find the log refusing.
                self.streams.iter().for_each(|stream| stream.appended.notify_waiters());
                let error = Arc::new(error);
                let failure = || LogError::Storage {
                    context: format!(
                        "embedded log {}: writing failed; check the disk and restart doorsync",
                        self.path.display()
                    ),
                    source: Some(Box::new(Arc::clone(&error))),
                };
                group.into_iter().for_each(|request| request.fail(failure));
            }
        }
    }

    /// Counted before anyone is answered, so that a caller who reads the counts after its answer
    /// finds its own change among them.
    fn count_commit(&self, group: &[Request]) {
        let appends: usize = group.iter().map(Request::appends).sum();
        let changes: usize = group.iter().map(Request::size).sum();
        self.store.commits.fetch_add(1, Ordering::Relaxed);
        self.store.appends_committed.fetch_add(appends as u64, Ordering::Relaxed);
        self.store.changes_committed.fetch_add(changes as u64, Ordering::Relaxed);
    }

    /// Applies the group in one transaction and commits it (durably, for a file). On error
    /// nothing of the group is committed (the transaction is dropped, which aborts it).
    fn apply(&self, group: &mut [Request], last: &mut [u64]) -> Result<(), StoreError> {
        let now_ms = wall_clock_ms();
        let mut txn = self.store.db.begin_write()?;
        txn.set_durability(self.durability)?;
        {
            let mut tables = Tables::open(&txn, &self.streams)?;
            for request in group.iter_mut() {
                match request {
                    Request::Append(jobs) => {
                        for append in jobs {
                            let stream = append.stream;
                            let window_ms = self.streams[stream].window_ms();
                            let outcome =
                                tables.append(stream, &append.message, window_ms, now_ms, &mut last[stream])?;
                            append.job.outcome = Some(outcome);
                        }
                    }
                    Request::OpenConsumer(open) => {
                        let stream = &self.streams[open.stream].spec.name;
                        let snapshot = tables.open_consumer(stream, open, last[open.stream])?;
                        open.job.outcome = Some(Ok(snapshot));
                    }
                    Request::Settle(settle) => {
                        tables.settle(&self.streams[settle.stream].spec.name, settle)?;
                        settle.job.outcome = Some(Ok(()));
                    }
                    Request::Kv(write) => write.job.outcome = Some(tables.kv(write)?),
                }
            }
            for (index, stream) in self.streams.iter().enumerate() {
                if last[index] != self.last[index] {
                    tables.prune(index, stream.window_ms(), now_ms)?;
                    tables.meta.insert(stream.spec.name.as_str(), last[index])?;
                }
            }
        }
        txn.commit()?;
        Ok(())
    }
}

/// Message ids are forgotten by wall-clock time: like JetStream's duplicate window, it has to
/// keep running while the process is down.
fn wall_clock_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| u64::try_from(since.as_millis()).unwrap_or(u64::MAX))
}

type StrKey = &'static str;

struct StreamTables<'txn> {
    messages: Table<'txn, u64, &'static [u8]>,
    subjects: Table<'txn, StrKey, u64>,
    dedupe: Table<'txn, StrKey, (u64, u64)>,
    dedupe_by_time: Table<'txn, (u64, u64), StrKey>,
}

/// Every table, opened once per transaction (redb refuses to open a table twice at once).
struct Tables<'txn> {
    streams: Vec<StreamTables<'txn>>,
    meta: Table<'txn, StrKey, u64>,
    consumers: Table<'txn, (StrKey, StrKey), &'static [u8]>,
    consumer_settled: Table<'txn, (StrKey, StrKey, u64), ()>,
    kv: Table<'txn, (StrKey, StrKey), (u64, &'static [u8])>,
    kv_revisions: Table<'txn, StrKey, u64>,
}

impl<'txn> Tables<'txn> {
    fn open(txn: &'txn WriteTransaction, streams: &[StreamState]) -> Result<Self, StoreError> {
        let streams = streams
            .iter()
            .map(|stream| {
                Ok(StreamTables {
                    messages: txn.open_table(stream.tables.messages())?,
                    subjects: txn.open_table(stream.tables.subjects())?,
                    dedupe: txn.open_table(stream.tables.dedupe())?,
                    dedupe_by_time: txn.open_table(stream.tables.dedupe_by_time())?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(Self {
            streams,
            meta: txn.open_table(STREAMS)?,
            consumers: txn.open_table(CONSUMERS)?,
            consumer_settled: txn.open_table(CONSUMER_SETTLED)?,
            kv: txn.open_table(KV)?,
            kv_revisions: txn.open_table(KV_REVISIONS)?,
        })
    }

    /// JetStream's order of checks: a remembered id wins over everything else, so that a retry
    /// with a stale expectation learns that its message is in.
    fn append(
        &mut self,
        stream: usize,
        message: &NewMessage,
        window_ms: u64,
        now_ms: u64,
        last: &mut u64,
    ) -> Result<Result<Appended, LogError>, StoreError> {
        let tables = &mut self.streams[stream];
        let remembered = tables.dedupe.get(message.id.as_str())?.map(|guard| guard.value());
        if let Some((sequence, appended_at)) = remembered
            && now_ms.saturating_sub(appended_at) < window_ms
        {
            return Ok(Ok(Appended { sequence: Sequence(sequence), duplicate: true }));
        }
        if let Some(expected) = message.expected_last_subject_sequence {
            let current = tables.subjects.get(message.subject.as_str())?.map_or(0, |guard| guard.value());
            if current != expected.0 {
                return Ok(Err(LogError::WrongLastSequence { subject: message.subject.clone(), expected }));
            }
        }
        let sequence = *last + 1;
        let record = encode(&RecordRef {
            subject: &message.subject,
            id: &message.id,
            headers: &message.headers,
            payload: &message.payload,
        })?;
        tables.messages.insert(sequence, record.as_slice())?;
        tables.subjects.insert(message.subject.as_str(), sequence)?;
        if let Some((old_sequence, old_appended_at)) = remembered {
            tables.dedupe_by_time.remove((old_appended_at, old_sequence))?;
        }
        tables.dedupe.insert(message.id.as_str(), (sequence, now_ms))?;
        tables.dedupe_by_time.insert((now_ms, sequence), message.id.as_str())?;
        *last = sequence;
        Ok(Ok(Appended { sequence: Sequence(sequence), duplicate: false }))
    }

    /// Forgets ids older than the window. An id past the window but not pruned yet is already
    /// ignored by [`Self::append`]; pruning only keeps the tables small.
    fn prune(&mut self, stream: usize, window_ms: u64, now_ms: u64) -> Result<(), StoreError> {
        let tables = &mut self.streams[stream];
        let cutoff = now_ms.saturating_sub(window_ms);
        let mut expired = Vec::new();
        for entry in tables.dedupe_by_time.range(..(cutoff, 0))?.take(PRUNE_LIMIT) {
            let (key, id) = entry?;
            expired.push((key.value(), id.value().to_owned()));
        }
        for ((appended_at, sequence), id) in expired {
            tables.dedupe_by_time.remove((appended_at, sequence))?;
            if tables.dedupe.get(id.as_str())?.map(|guard| guard.value()) == Some((sequence, appended_at)) {
                tables.dedupe.remove(id.as_str())?;
            }
        }
        Ok(())
    }

    fn consumer_record(&self, stream: &str, name: &str) -> Result<Option<ConsumerRecord>, StoreError> {
        match self.consumers.get((stream, name))? {
            Some(bytes) => Ok(Some(decode(bytes.value())?)),
            None => Ok(None),
        }
    }

    fn put_consumer_record(&mut self, stream: &str, name: &str, record: &ConsumerRecord) -> Result<(), StoreError> {
        self.consumers.insert((stream, name), encode(record)?.as_slice())?;
        Ok(())
    }

    fn open_consumer(&mut self, stream: &str, open: &OpenConsumer, last: u64) -> Result<ConsumerSnapshot, StoreError> {
        let name = open.name.as_str();
        let record = match self.consumer_record(stream, name)? {
            Some(record) if record.config == open.config => record,
            Some(mut record) => {
                tracing::info!(
                    stream,
                    consumer = name,
                    before = ?record.config,
                    after = ?open.config,
                    "durable consumer opened with new settings"
                );
                record.config = open.config.clone();
                self.put_consumer_record(stream, name, &record)?;
                record
            }
            None => {
                let ack_floor = match open.start {
                    StartPosition::First => 0,
                    StartPosition::Sequence(sequence) => sequence.0.saturating_sub(1),
                    StartPosition::New => last,
                };
                let record = ConsumerRecord { config: open.config.clone(), ack_floor };
                self.put_consumer_record(stream, name, &record)?;
                record
            }
        };
        let mut settled = Vec::new();
        let above_floor = (stream, name, record.ack_floor.saturating_add(1))..=(stream, name, u64::MAX);
        for entry in self.consumer_settled.range(above_floor)? {
            let (key, _) = entry?;
            settled.push(key.value().2);
        }
        Ok(ConsumerSnapshot { ack_floor: record.ack_floor, settled })
    }

    fn settle(&mut self, stream: &str, settle: &Settle) -> Result<(), StoreError> {
        let name = settle.name.as_str();
        let Some(mut record) = self.consumer_record(stream, name)? else {
            return Err(StoreError::Inconsistent(format!(
                "durable consumer {name} of stream {stream} settled a message but has no record"
            )));
        };
        if settle.ack_floor > record.ack_floor {
            let now_below_floor = (stream, name, record.ack_floor.saturating_add(1))..=(stream, name, settle.ack_floor);
            self.consumer_settled.retain_in(now_below_floor, |_, _| false)?;
            record.ack_floor = settle.ack_floor;
            self.put_consumer_record(stream, name, &record)?;
        }
        if settle.sequence > record.ack_floor {
            self.consumer_settled.insert((stream, name, settle.sequence), ())?;
        }
        Ok(())
    }

    /// Revisions count per bucket, across keys, as JetStream's do per stream.
    fn kv(&mut self, write: &KvWrite) -> Result<Result<u64, LogError>, StoreError> {
        let (bucket, key) = (write.bucket.as_str(), write.key.as_str());
        let current = self.kv.get((bucket, key))?.map(|guard| guard.value().0);
        let conflict = match write.op {
            KvOp::Create(_) => current.is_some(),
            KvOp::Update(_, revision) => current != Some(revision),
            KvOp::Put(_) | KvOp::Delete => false,
        };
        if conflict {
            return Ok(Err(LogError::KvConflict { bucket: bucket.to_owned(), key: key.to_owned() }));
        }
        let revision = self.kv_revisions.get(bucket)?.map_or(0, |guard| guard.value()) + 1;
        self.kv_revisions.insert(bucket, revision)?;
        match &write.op {
            KvOp::Delete => {
                self.kv.remove((bucket, key))?;
            }
            KvOp::Put(value) | KvOp::Create(value) | KvOp::Update(value, _) => {
                self.kv.insert((bucket, key), (revision, value.as_ref()))?;
            }
        }
        Ok(Ok(revision))
    }
}
