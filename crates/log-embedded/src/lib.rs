//! The event log in one durable file, for deployments on one machine.
//!
//! The file is a [redb](https://docs.rs/redb) database. Every change (appends, consumer
//! settlements, key-value writes) goes through one writer thread that applies whatever is
//! waiting in one transaction and commits it with an fsync before answering: concurrent callers
//! and batches share the cost of a commit ([`EmbeddedLog::write_stats`] counts the commits and
//! what they carried). Reads (replays, lookups) run in read transactions on
//! tokio's blocking pool and never wait for the writer. Acknowledged appends, consumer
//! settlements and key-value writes survive a crash (tested by SIGKILLing a child process in the
//! middle of writing).
//!
//! After a write fails, the log refuses everything until the process restarts, since what the
//! file holds is then not known; [`EmbeddedLog::storage_failure`] says why, and the process
//! fails `/healthz` on it. [`EmbeddedLog::in_memory`] is the same log on redb's in-memory
//! backend, without fsyncs, for the deterministic simulation, which restarts components many
//! times on one log inside one process.
//!
//! Behaviour matches the JetStream backend, as checked by the conformance suite in
//! `doorsync-log`: the same de-duplication window, order of checks on append, consumer
//! redelivery and key-value revisions.
#![forbid(unsafe_code)]

mod consumer;
mod kv;
mod store;
mod writer;

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use async_trait::async_trait;
use doorsync_log::{
    Appended, ConsumerSpec, DurableConsumer, EventLog, KeyValue, LogError, MessageStream, NewMessage, ReplayRequest,
    Sequence, StoredMessage, StreamSpec, validate_filter, validate_name, validate_subject,
};
use futures::{StreamExt, TryStreamExt};
use redb::{Database, DatabaseError, Durability, StorageError};
use tokio::sync::{mpsc, oneshot, watch};

use crate::consumer::{Consumer, ConsumerHandle};
use crate::kv::Bucket;
use crate::store::{ConsumerConfig, Store, StoreError, StreamState};
use crate::writer::{AppendJob, Job, OpenConsumer, Request, Writer};

/// Matching messages a replay reads per read transaction.
const REPLAY_CHUNK: usize = 512;
/// Messages of a batch handed to the writer at once; smaller pieces let the writer spread a
/// large batch over several commits instead of holding everyone else up.
const BATCH_PIECE: usize = 1_024;

/// Where the log lives and which streams it serves.
#[derive(Debug, Clone)]
pub struct EmbeddedOptions {
    /// The database file, created if missing. Its directory must exist.
    pub path: PathBuf,
    /// Streams in the file but not listed here are kept but not served.
    pub streams: Vec<StreamSpec>,
}

impl EmbeddedOptions {
    pub fn new(path: impl Into<PathBuf>, streams: Vec<StreamSpec>) -> Self {
        Self { path: path.into(), streams }
    }
}

/// The event log in one file, implementing [`EventLog`]. Cheap to clone.
///
/// The file stays open, and locked against other processes, until every handle is gone:
/// clones, durable consumers, deliveries, key-value buckets and unfinished replays.
#[derive(Debug, Clone)]
pub struct EmbeddedLog {
    inner: Arc<Inner>,
}

struct Inner {
    core: Arc<Core>,
    /// One shared state per durable consumer, so that handles with the same name share the work.
    consumers: Mutex<HashMap<(String, String), Arc<Consumer>>>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedLog").field("path", &self.core.path).finish_non_exhaustive()
    }
}

/// What consumers and buckets need of the log; it holds no consumer, so that dropping the last
/// [`EmbeddedLog`] frees everything.
pub(crate) struct Core {
    path: PathBuf,
    store: Arc<Store>,
    writer: mpsc::UnboundedSender<Request>,
    streams: Arc<[StreamState]>,
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core").field("path", &self.path).finish_non_exhaustive()
    }
}

impl EmbeddedLog {
    /// Opens (creating if needed) the file and the tables of every stream, and starts the writer.
    ///
    /// Blocks while the file is opened, which after a crash includes redb's repair of the file;
    /// from async code, consider `spawn_blocking`.
    pub fn open(options: EmbeddedOptions) -> Result<Self, LogError> {
        validate_streams(&options.streams)?;
        let path = options.path;
        let db = Database::builder().create(&path).map_err(|error| open_failed(&path, error))?;
        Self::serve(path, db, options.streams, Durability::Immediate)
    }

    /// A log that lives in memory only and is gone with its last handle: the same tables,
    /// writer thread and behaviour as a file, without the file or its fsyncs. For simulations and
    /// tests that restart doorsync's components many times within one process.
    pub fn in_memory(streams: Vec<StreamSpec>) -> Result<Self, LogError> {
        validate_streams(&streams)?;
        let label = PathBuf::from("(in memory)");
        let db = Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .map_err(|error| LogError::storage("embedded log in memory: creating the database failed", error))?;
        Self::serve(label, db, streams, Durability::None)
    }

    /// Prepares the tables of every stream in `db` and starts the writer, which commits with
    /// `durability`; `path` names the log in errors.
    fn serve(path: PathBuf, db: Database, streams: Vec<StreamSpec>, durability: Durability) -> Result<Self, LogError> {
        let (log, writer, incoming) = Self::assemble(path, db, streams, durability)?;
        let spawned =
            std::thread::Builder::new().name("doorsync-log-writer".into()).spawn(move || writer.run(incoming));
        if let Err(error) = spawned {
            let context = format!("embedded log {}: starting the writer thread failed", log.inner.core.path.display());
            return Err(LogError::storage(context, error));
        }
        Ok(log)
    }

    /// The log and its writer, not yet running: requests wait in the channel until it runs.
    fn assemble(
        path: PathBuf,
        db: Database,
        streams: Vec<StreamSpec>,
        durability: Durability,
    ) -> Result<(Self, Writer, mpsc::UnboundedReceiver<Request>), LogError> {
        let streams: Arc<[StreamState]> = streams.into_iter().map(StreamState::new).collect();
        let last = store::prepare(&db, &streams).map_err(|error| {
            LogError::storage(format!("embedded log {}: preparing the tables failed", path.display()), error)
        })?;
        for (stream, sequence) in streams.iter().zip(&last) {
            stream.last_sequence.store(*sequence, Ordering::Release);
        }
        let (closed, _) = watch::channel(());
        let store = Arc::new(Store {
            db,
            closed,
            failure: OnceLock::new(),
            commits: AtomicU64::new(0),
            appends_committed: AtomicU64::new(0),
            changes_committed: AtomicU64::new(0),
        });
        let (requests, incoming) = mpsc::unbounded_channel();
        let writer =
            Writer { store: Arc::clone(&store), streams: Arc::clone(&streams), last, path: path.clone(), durability };
        tracing::info!(path = %path.display(), streams = streams.len(), "embedded log open");
        let core = Arc::new(Core { path, store, writer: requests, streams });
        let log = Self { inner: Arc::new(Inner { core, consumers: Mutex::new(HashMap::new()) }) };
        Ok((log, writer, incoming))
    }

    /// Drops this handle and waits until the file is closed, so that it can be opened again
    /// right away. Waits for every other handle to go too (see [`EmbeddedLog`]).
    pub async fn close(self) {
        let mut closed = self.inner.core.store.closed.subscribe();
        drop(self);
        // Nothing is ever sent: the sender goes away with the database, after the file is closed.
        while closed.changed().await.is_ok() {}
    }
}

/// What the log's writer has committed since the file was opened: how far concurrent changes
/// share the cost of a durable commit (one fsync each, for a file).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WriteStats {
    /// Transactions committed.
    pub commits: u64,
    /// Messages appended (duplicates included: they are answered from a commit too).
    pub appends: u64,
    /// Every change: appends, consumer settlements and openings, key-value writes.
    pub changes: u64,
}

impl EmbeddedLog {
    /// What the writer has committed since the file was opened.
    pub fn write_stats(&self) -> WriteStats {
        let store = &self.inner.core.store;
        WriteStats {
            commits: store.commits.load(Ordering::Relaxed),
            appends: store.appends_committed.load(Ordering::Relaxed),
            changes: store.changes_committed.load(Ordering::Relaxed),
        }
    }

    /// Why the log refuses everything, once a write to its file has failed (until restart).
    pub fn storage_failure(&self) -> Option<String> {
        let core = &self.inner.core;
        core.store
            .failure
            .get()
            .map(|failure| format!("embedded log {}: a write failed: {failure}", core.path.display()))
    }
}

fn validate_streams(streams: &[StreamSpec]) -> Result<(), LogError> {
    for (index, spec) in streams.iter().enumerate() {
        spec.validate()?;
        for other in &streams[..index] {
            if other.name == spec.name {
                return Err(LogError::invalid("stream name", &spec.name, "two streams have this name"));
            }
            for filter in &spec.subjects {
                if let Some(taken) = other.subjects.iter().find(|taken| filters_overlap(filter, taken)) {
                    return Err(LogError::invalid(
                        "stream subjects",
                        filter,
                        format!("overlaps {taken} of stream {}; a subject must belong to one stream", other.name),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Whether some subject matches both filters (JetStream refuses streams that overlap).
fn filters_overlap(a: &str, b: &str) -> bool {
    let (mut a, mut b) = (a.split('.'), b.split('.'));
    loop {
        match (a.next(), b.next()) {
            (Some(">"), Some(_)) | (Some(_), Some(">")) | (None, None) => return true,
            (Some(x), Some(y)) if x == "*" || y == "*" || x == y => {}
            _ => return false,
        }
    }
}

fn open_failed(path: &Path, error: DatabaseError) -> LogError {
    let context = |hint: &str| format!("embedded log {}: opening failed ({hint})", path.display());
    match &error {
        DatabaseError::DatabaseAlreadyOpen => {
            LogError::unavailable(context("the file is locked: is another doorsync process using it?"), error)
        }
        DatabaseError::Storage(StorageError::Io(io)) if io.kind() == ErrorKind::NotFound => {
            LogError::storage(context("does its directory exist?"), error)
        }
        DatabaseError::Storage(StorageError::Io(io)) if io.kind() == ErrorKind::PermissionDenied => {
            LogError::storage(context("may doorsync's user write to it and its directory?"), error)
        }
        _ => LogError::storage(context("is it a doorsync log file, from a compatible version?"), error),
    }
}

impl Core {
    fn stream_index(&self, name: &str) -> Result<usize, LogError> {
        self.streams
            .iter()
            .position(|stream| stream.spec.name == name)
            .ok_or_else(|| LogError::UnknownStream { stream: name.to_owned() })
    }

    /// Validates the message and finds its stream (streams do not overlap, so there is one).
    fn route(&self, message: &NewMessage) -> Result<usize, LogError> {
        message.validate()?;
        self.streams
            .iter()
            .position(|stream| stream.spec.captures(&message.subject))
            .ok_or_else(|| LogError::NoStream { subject: message.subject.clone() })
    }

    fn submit(&self, request: Request) -> Result<(), LogError> {
        self.usable()?;
        self.writer.send(request).map_err(|_| self.writer_stopped())
    }

    /// Refuses everything once a write has failed: what the file holds after a failed commit
    /// is not known, so only a restart (which reopens and, if needed, repairs it) may use it.
    pub(crate) fn usable(&self) -> Result<(), LogError> {
        match self.store.failure.get() {
            None => Ok(()),
            Some(failure) => Err(LogError::Storage {
                context: format!(
                    "embedded log {}: a write failed earlier ({failure}); the log refuses everything until \
                     doorsync is restarted: check the disk, then restart",
                    self.path.display()
                ),
                source: None,
            }),
        }
    }

    async fn answer<T>(&self, answer: oneshot::Receiver<Result<T, LogError>>) -> Result<T, LogError> {
        answer.await.map_err(|_| self.writer_stopped())?
    }

    /// Only a panic stops the writer while handles exist; it has been logged by then.
    fn writer_stopped(&self) -> LogError {
        LogError::Closed { context: format!("embedded log {}: the writer thread stopped", self.path.display()) }
    }

    /// Runs a read on the blocking pool: redb reads may wait for the disk.
    async fn read<T, F>(self: &Arc<Self>, context: String, read: F) -> Result<T, LogError>
    where
        T: Send + 'static,
        F: FnOnce(&Core) -> Result<T, StoreError> + Send + 'static,
    {
        self.usable()?;
        let core = Arc::clone(self);
        let failed = |context: String| format!("embedded log {}: {context} failed", self.path.display());
        match tokio::task::spawn_blocking(move || read(&core)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(LogError::storage(failed(context), error)),
            Err(error) => Err(LogError::storage(failed(context), error)),
        }
    }
}

#[async_trait]
impl EventLog for EmbeddedLog {
    async fn append(&self, message: NewMessage) -> Result<Appended, LogError> {
        let core = &self.inner.core;
        let stream = core.route(&message)?;
        let (job, answer) = Job::new();
        core.submit(Request::Append(vec![AppendJob { stream, message, job }]))?;
        core.answer(answer).await
    }

    async fn append_batch(&self, messages: Vec<NewMessage>) -> Vec<Result<Appended, LogError>> {
        let core = &self.inner.core;
        let mut answers = Vec::with_capacity(messages.len());
        let mut piece = Vec::new();
        for message in messages {
            match core.route(&message) {
                Ok(stream) => {
                    let (job, answer) = Job::new();
                    piece.push(AppendJob { stream, message, job });
                    answers.push(Ok(answer));
                }
                Err(error) => answers.push(Err(error)),
            }
            if piece.len() == BATCH_PIECE {
                // On failure the jobs are dropped and their answers report the writer stopped.
                let _ = core.submit(Request::Append(std::mem::take(&mut piece)));
            }
        }
        if !piece.is_empty() {
            let _ = core.submit(Request::Append(piece));
        }
        let mut results = Vec::with_capacity(answers.len());
        for answer in answers {
            results.push(match answer {
                Ok(answer) => core.answer(answer).await,
                Err(error) => Err(error),
            });
        }
        results
    }

    async fn replay(&self, request: ReplayRequest) -> Result<MessageStream, LogError> {
        let core = Arc::clone(&self.inner.core);
        core.usable()?;
        let stream = core.stream_index(&request.stream)?;
        request.filters.iter().try_for_each(|filter| validate_filter(filter))?;
        let to = core.streams[stream].last_sequence.load(Ordering::Acquire);
        let filters: Arc<[String]> = request.filters.into();
        let chunks = futures::stream::try_unfold(request.from_sequence.max(Sequence::FIRST).0, move |from| {
            let core = Arc::clone(&core);
            let filters = Arc::clone(&filters);
            async move {
                if from > to {
                    return Ok(None);
                }
                let context = format!("replaying stream {} from {from}", core.streams[stream].spec.name);
                let scanned = core
                    .read(context, move |core| {
                        store::scan(&core.store.db, &core.streams[stream], from, to, &filters, REPLAY_CHUNK)
                    })
                    .await?;
                Ok(Some((scanned.found, scanned.next)))
            }
        });
        Ok(chunks.map_ok(|found| futures::stream::iter(found.into_iter().map(Ok))).try_flatten().boxed())
    }

    async fn follow(&self, request: ReplayRequest) -> Result<MessageStream, LogError> {
        let core = Arc::clone(&self.inner.core);
        core.usable()?;
        let stream = core.stream_index(&request.stream)?;
        request.filters.iter().try_for_each(|filter| validate_filter(filter))?;
        let filters: Arc<[String]> = request.filters.into();
        let chunks = futures::stream::try_unfold(request.from_sequence.max(Sequence::FIRST).0, move |mut from| {
            let core = Arc::clone(&core);
            let filters = Arc::clone(&filters);
            async move {
                loop {
                    core.usable()?;
                    let state = &core.streams[stream];
                    // Registered before the sequence is read, so an append committed in between
                    // still wakes this follower.
                    let appended = state.appended.notified();
                    let to = state.last_sequence.load(Ordering::Acquire);
                    if from > to {
                        appended.await;
                        continue;
                    }
                    let context = format!("following stream {} from {from}", state.spec.name);
                    let filters = Arc::clone(&filters);
                    let scanned = core
                        .read(context, move |core| {
                            store::scan(&core.store.db, &core.streams[stream], from, to, &filters, REPLAY_CHUNK)
                        })
                        .await?;
                    from = scanned.next;
                    if !scanned.found.is_empty() {
                        return Ok(Some((scanned.found, from)));
                    }
                }
            }
        });
        Ok(chunks.map_ok(|found| futures::stream::iter(found.into_iter().map(Ok))).try_flatten().boxed())
    }

    async fn last_sequence(&self, stream: &str) -> Result<Sequence, LogError> {
        let core = &self.inner.core;
        core.usable()?;
        Ok(Sequence(core.streams[core.stream_index(stream)?].last_sequence.load(Ordering::Acquire)))
    }

    async fn last_on_subject(&self, stream: &str, subject: &str) -> Result<Option<StoredMessage>, LogError> {
        let core = &self.inner.core;
        let index = core.stream_index(stream)?;
        validate_subject(subject)?;
        let subject = subject.to_owned();
        let context = format!("reading the last message on {subject}");
        core.read(context, move |core| store::last_on_subject(&core.store.db, &core.streams[index], &subject)).await
    }

    async fn durable_consumer(&self, spec: ConsumerSpec) -> Result<Box<dyn DurableConsumer>, LogError> {
        spec.validate()?;
        let core = &self.inner.core;
        let stream = core.stream_index(&spec.stream)?;
        let config = ConsumerConfig {
            filters: spec.filters,
            ack_wait_ms: u64::try_from(spec.ack_wait.as_millis()).unwrap_or(u64::MAX),
            max_deliver: spec.max_deliver,
        };
        // Through the writer even when the consumer exists, so that new settings are stored.
        let (job, answer) = Job::new();
        let name = spec.durable_name.clone();
        core.submit(Request::OpenConsumer(OpenConsumer {
            stream,
            name,
            config: config.clone(),
            start: spec.start,
            job,
        }))?;
        let snapshot = core.answer(answer).await?;
        let consumer = {
            let mut consumers = self.inner.consumers.lock().unwrap_or_else(PoisonError::into_inner);
            match consumers.entry((spec.stream, spec.durable_name)) {
                Entry::Occupied(entry) => {
                    entry.get().reconfigure(config);
                    Arc::clone(entry.get())
                }
                Entry::Vacant(entry) => {
                    let name = entry.key().1.clone();
                    let consumer = Consumer::new(Arc::clone(core), stream, name, config, snapshot);
                    Arc::clone(entry.insert(Arc::new(consumer)))
                }
            }
        };
        Ok(Box::new(ConsumerHandle::new(consumer)))
    }

    async fn key_value(&self, bucket: &str) -> Result<Arc<dyn KeyValue>, LogError> {
        validate_name("bucket name", bucket)?;
        Ok(Arc::new(Bucket::new(Arc::clone(&self.inner.core), bucket.to_owned())))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests: a failed step should stop the test loudly")]

    use std::time::Duration;

    use bytes::Bytes;
    use redb::{ReadableDatabase, ReadableTableMetadata};

    use super::*;

    fn remembered_ids(log: &EmbeddedLog) -> (u64, u64) {
        let core = &log.inner.core;
        let txn = core.store.db.begin_read().unwrap();
        let tables = &core.streams[0].tables;
        (
            txn.open_table(tables.dedupe()).unwrap().len().unwrap(),
            txn.open_table(tables.dedupe_by_time()).unwrap().len().unwrap(),
        )
    }

    /// Callers whose appends reach the writer while it is busy (here: before it runs) share one
    /// durable commit, and each is answered, in arrival order, only once that commit is done.
    #[tokio::test]
    async fn appends_that_arrive_together_share_one_commit() {
        const CALLERS: u64 = 64;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.redb");
        let db = Database::builder().create(&path).unwrap();
        let streams = vec![StreamSpec::new("EVT", ["evt.>"])];
        let (log, writer, incoming) = EmbeddedLog::assemble(path, db, streams, Durability::Immediate).unwrap();
        let mut appends = Box::pin(futures::future::join_all(
            (1..=CALLERS).map(|n| log.append(NewMessage::new(format!("evt.{n}"), n.to_string(), Bytes::new()))),
        ));
        assert!(futures::poll!(&mut appends).is_pending(), "no append is answered before its commit");
        assert_eq!(log.write_stats(), WriteStats::default());

        let running = std::thread::spawn(move || writer.run(incoming));
        let sequences: Vec<u64> = appends.await.into_iter().map(|appended| appended.unwrap().sequence.0).collect();
        assert_eq!(sequences, (1..=CALLERS).collect::<Vec<_>>());
        assert_eq!(log.write_stats(), WriteStats { commits: 1, appends: CALLERS, changes: CALLERS });

        log.append(NewMessage::new("evt.alone", "alone", Bytes::new())).await.unwrap();
        assert_eq!(log.write_stats(), WriteStats { commits: 2, appends: CALLERS + 1, changes: CALLERS + 1 });
        log.close().await;
        running.join().unwrap();
    }

    #[tokio::test]
    async fn ids_are_forgotten_after_the_window() {
        // Long enough that a loaded machine does not let an id expire between two appends the
        // test makes back to back; the sleeps outlast it.
        const WINDOW: Duration = Duration::from_secs(1);
        let dir = tempfile::tempdir().unwrap();
        let spec = StreamSpec::new("EVT", ["evt.>"]).with_duplicate_window(WINDOW);
        let log = EmbeddedLog::open(EmbeddedOptions::new(dir.path().join("log.redb"), vec![spec])).unwrap();
        let message = |id: &str| NewMessage::new("evt.1", id, Bytes::from_static(b"x"));

        assert_eq!(log.append(message("a")).await.unwrap(), Appended { sequence: Sequence(1), duplicate: false });
        assert_eq!(log.append(message("a")).await.unwrap(), Appended { sequence: Sequence(1), duplicate: true });
        tokio::time::sleep(WINDOW + WINDOW / 2).await;
        // Past the window: stored again, and the old entry replaced rather than left behind.
        assert_eq!(log.append(message("a")).await.unwrap(), Appended { sequence: Sequence(2), duplicate: false });
        assert_eq!(remembered_ids(&log), (1, 1));

        log.append(message("b")).await.unwrap();
        assert_eq!(remembered_ids(&log), (2, 2));
        tokio::time::sleep(WINDOW + WINDOW / 2).await;
        log.append(message("c")).await.unwrap();
        assert_eq!(remembered_ids(&log), (1, 1), "a and b pruned, c remembered");
        assert_eq!(log.append(message("c")).await.unwrap(), Appended { sequence: Sequence(4), duplicate: true });
        log.close().await;
    }

    #[tokio::test]
    async fn an_in_memory_log_appends_replays_consumes_and_keeps_key_values() {
        let log = EmbeddedLog::in_memory(vec![StreamSpec::new("EVT", ["evt.>"])]).unwrap();
        let message = |id: &str| NewMessage::new("evt.1", id, Bytes::from_static(b"x"));
        assert_eq!(log.append(message("a")).await.unwrap(), Appended { sequence: Sequence(1), duplicate: false });
        assert_eq!(log.append(message("a")).await.unwrap(), Appended { sequence: Sequence(1), duplicate: true });
        log.append(message("b")).await.unwrap();
        let replayed: Vec<StoredMessage> =
            log.replay(ReplayRequest::whole("EVT")).await.unwrap().try_collect().await.unwrap();
        assert_eq!(replayed.iter().map(|stored| stored.sequence).collect::<Vec<_>>(), [1, 2].map(Sequence));

        let mut consumer = log.durable_consumer(ConsumerSpec::new("EVT", "reader")).await.unwrap();
        let delivery = consumer.next().await.unwrap();
        assert_eq!(delivery.message.sequence, Sequence(1));
        delivery.ack().await.unwrap();
        assert_eq!(consumer.next().await.unwrap().message.sequence, Sequence(2));

        let bucket = log.key_value("KV").await.unwrap();
        let revision = bucket.create("k", Bytes::from_static(b"1")).await.unwrap();
        assert!(matches!(bucket.create("k", Bytes::from_static(b"2")).await, Err(LogError::KvConflict { .. })));
        bucket.update("k", Bytes::from_static(b"2"), revision).await.unwrap();
        assert_eq!(bucket.get("k").await.unwrap().unwrap().value, Bytes::from_static(b"2"));
    }

    /// Memory that fails every write and fsync while `failing` is set, like a full or broken disk.
    #[derive(Debug)]
    struct FailingDisk {
        memory: redb::backends::InMemoryBackend,
        failing: Arc<std::sync::atomic::AtomicBool>,
    }

    impl FailingDisk {
        fn check(&self) -> Result<(), std::io::Error> {
            if self.failing.load(Ordering::Acquire) {
                Err(std::io::Error::other("no space left on device"))
            } else {
                Ok(())
            }
        }
    }

    impl redb::StorageBackend for FailingDisk {
        fn len(&self) -> Result<u64, std::io::Error> {
            self.memory.len()
        }
        fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), std::io::Error> {
            self.memory.read(offset, out)
        }
        fn set_len(&self, len: u64) -> Result<(), std::io::Error> {
            self.check()?;
            self.memory.set_len(len)
        }
        fn sync_data(&self) -> Result<(), std::io::Error> {
            self.check()?;
            self.memory.sync_data()
        }
        fn write(&self, offset: u64, data: &[u8]) -> Result<(), std::io::Error> {
            self.check()?;
            self.memory.write(offset, data)
        }
    }

    #[tokio::test]
    async fn after_a_failed_write_the_log_refuses_everything_until_restarted() {
        let failing = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let disk = FailingDisk { memory: redb::backends::InMemoryBackend::new(), failing: Arc::clone(&failing) };
        let db = Database::builder().create_with_backend(disk).unwrap();
        let log = EmbeddedLog::serve("disk".into(), db, vec![StreamSpec::new("EVT", ["evt.>"])], Durability::Immediate)
            .unwrap();
        let message = |id: &str| NewMessage::new("evt.1", id, Bytes::from_static(b"x"));
        log.append(message("a")).await.unwrap();
        log.append(message("b")).await.unwrap();
        let mut consumer = log.durable_consumer(ConsumerSpec::new("EVT", "reader")).await.unwrap();
        consumer.next().await.unwrap().ack().await.unwrap();
        let bucket = log.key_value("KV").await.unwrap();
        bucket.put("k", Bytes::from_static(b"1")).await.unwrap();
        let mut follower = log.follow(ReplayRequest::whole("EVT")).await.unwrap();
        assert_eq!(follower.next().await.unwrap().unwrap().sequence, Sequence(1));
        assert_eq!(follower.next().await.unwrap().unwrap().sequence, Sequence(2));
        let waiting_follower = tokio::spawn(async move { follower.next().await });
        assert!(log.storage_failure().is_none());

        failing.store(true, Ordering::Release);
        assert!(matches!(log.append(message("c")).await, Err(LogError::Storage { .. })));
        // The disk is fine again, but what the file holds after the failed commit is not known.
        failing.store(false, Ordering::Release);

        let failure = log.storage_failure().unwrap();
        assert!(failure.contains("disk") && failure.contains("a write failed"), "{failure}");
        let refused = |result: Result<(), LogError>, what: &str| match result {
            Err(LogError::Storage { context, .. }) => assert!(context.contains("restart"), "{what}: {context}"),
            other => panic!("{what} was not refused: {other:?}"),
        };
        refused(log.append(message("d")).await.map(drop), "append");
        refused(log.replay(ReplayRequest::whole("EVT")).await.map(drop), "replay");
        refused(log.last_sequence("EVT").await.map(drop), "last sequence");
        refused(log.last_on_subject("EVT", "evt.1").await.map(drop), "last on subject");
        refused(bucket.get("k").await.map(drop), "key-value read");
        refused(bucket.put("k", Bytes::from_static(b"2")).await.map(drop), "key-value write");
        refused(consumer.next().await.map(drop), "consumer delivery (read ahead in memory)");
        refused(log.durable_consumer(ConsumerSpec::new("EVT", "other")).await.map(drop), "consumer opening");
        let woken = tokio::time::timeout(Duration::from_secs(10), waiting_follower).await.unwrap().unwrap();
        refused(woken.unwrap().map(drop), "a follower waiting for the next append");
    }

    #[test]
    fn overlapping_filters_are_found() {
        assert!(filters_overlap("a.>", "a.b.c"));
        assert!(filters_overlap("a.*", "a.b"));
        assert!(filters_overlap("a.*.c", "a.b.*"));
        assert!(filters_overlap("a.b", "a.b"));
        assert!(!filters_overlap("a.>", "a"));
        assert!(!filters_overlap("a.*", "a.b.c"));
        assert!(!filters_overlap("conf.evt.>", "conf.cmd.>"));
    }

    #[test]
    fn streams_must_not_overlap() {
        let streams = vec![StreamSpec::new("A", ["x.>"]), StreamSpec::new("B", ["x.y.*"])];
        assert!(matches!(validate_streams(&streams), Err(LogError::Invalid { .. })));
        let twins = vec![StreamSpec::new("A", ["x.>"]), StreamSpec::new("A", ["y.>"])];
        assert!(matches!(validate_streams(&twins), Err(LogError::Invalid { .. })));
        assert!(validate_streams(&doorsync_log_streams()).is_ok());
    }

    fn doorsync_log_streams() -> Vec<StreamSpec> {
        vec![StreamSpec::new("EVT", ["ds.evt.>"]), StreamSpec::new("CMD", ["ds.cmd.>", "ds.out.*"])]
    }
}
