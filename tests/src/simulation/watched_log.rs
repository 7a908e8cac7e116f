//! The log as the components see it, with a gauge of the operations in flight and of where each
//! reader has got to: the embedded log does its work on a thread of its own and on the blocking
//! pool, where yielding to the runtime does not wait for it, so settling needs to know when the
//! log is busy, and whether a follower or a consumer has yet to be handed something appended.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use doorsync_log::{
    Appended, ConsumerSpec, Delivery, DurableConsumer, EventLog, KeyValue, KvEntry, LogError, MessageStream,
    NewMessage, ReplayRequest, Sequence, Settle, Settlement, StoredMessage,
};
use futures::StreamExt;

/// Where one reader of a stream has got to: a follower, a replay, or the consumers of one
/// durable name (whose position outlives each handle, as the durable's does).
#[derive(Debug)]
struct Reader {
    stream: String,
    filters: Vec<String>,
    /// The highest sequence handed to it.
    seen: AtomicU64,
    /// Consumers only: handles open now.
    open: AtomicUsize,
    /// Replays only: the stream has ended.
    ended: AtomicBool,
}

impl Reader {
    fn new(stream: &str, filters: &[String], seen: Sequence) -> Arc<Self> {
        Arc::new(Self {
            stream: stream.to_owned(),
            filters: filters.to_vec(),
            seen: AtomicU64::new(seen.0),
            open: AtomicUsize::new(0),
            ended: AtomicBool::new(false),
        })
    }

    fn saw(&self, sequence: Sequence) {
        self.seen.fetch_max(sequence.0, Ordering::AcqRel);
    }

    fn seen(&self) -> Sequence {
        Sequence(self.seen.load(Ordering::Acquire))
    }
}

/// How many log operations are in flight, how many have finished and when the last one did,
/// and where every reader has got to.
pub(crate) struct LogGauge {
    /// The log itself, unwatched: looking for what a reader has not been handed is not work.
    log: Arc<dyn EventLog>,
    in_flight: AtomicUsize,
    finished: AtomicU64,
    last_finished: Mutex<Instant>,
    /// Live followers and replays; gone with their stream.
    streams: Mutex<Vec<Weak<Reader>>>,
    /// Consumers, by stream and durable name.
    consumers: Mutex<BTreeMap<(String, String), Arc<Reader>>>,
}

impl std::fmt::Debug for LogGauge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogGauge").field("in_flight", &self.in_flight).field("finished", &self.finished).finish()
    }
}

impl LogGauge {
    fn new(log: Arc<dyn EventLog>) -> Self {
        Self {
            log,
            in_flight: AtomicUsize::new(0),
            finished: AtomicU64::new(0),
            last_finished: Mutex::new(Instant::now()),
            streams: Mutex::new(Vec::new()),
            consumers: Mutex::new(BTreeMap::new()),
        }
    }

    /// A reader that has yet to be handed something already in the log, or a replay still being
    /// read, if any.
    pub(crate) async fn lagging_reader(&self) -> Option<String> {
        let streams: Vec<Arc<Reader>> = {
            let mut streams = self.streams.lock().unwrap_or_else(PoisonError::into_inner);
            streams.retain(|reader| reader.strong_count() > 0);
            streams.iter().filter_map(Weak::upgrade).collect()
        };
        let consumers: Vec<(String, Arc<Reader>)> = self
            .consumers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|(_, reader)| reader.open.load(Ordering::Acquire) > 0)
            .map(|((_, durable), reader)| (durable.clone(), Arc::clone(reader)))
            .collect();
        for reader in &streams {
            if reader.ended.load(Ordering::Acquire) {
                continue;
            }
            if self.has_unseen(reader).await {
                return Some(format!("a reader of {} {:?} is behind the log", reader.stream, reader.filters));
            }
        }
        for (durable, reader) in &consumers {
            if self.has_unseen(reader).await {
                return Some(format!("consumer {durable} of {} is behind the log", reader.stream));
            }
        }
        None
    }

    async fn has_unseen(&self, reader: &Reader) -> bool {
        let from = reader.seen().next();
        let request = ReplayRequest::whole(&reader.stream).filtered(reader.filters.clone()).from_sequence(from);
        match self.log.replay(request).await {
            Ok(mut unseen) => unseen.next().await.is_some(),
            // A log that cannot be read is not settled.
            Err(_) => true,
        }
    }

    fn watch_stream(&self, request: &ReplayRequest, ends: bool, stream: MessageStream) -> MessageStream {
        let reader = Reader::new(&request.stream, &request.filters, request.from_sequence.back(1));
        self.streams.lock().unwrap_or_else(PoisonError::into_inner).push(Arc::downgrade(&reader));
        let ended = Arc::clone(&reader);
        let watched = stream.inspect(move |item| {
            if let Ok(message) = item {
                reader.saw(message.sequence);
            }
        });
        if ends {
            watched
                .chain(futures::stream::poll_fn(move |_| {
                    ended.ended.store(true, Ordering::Release);
                    std::task::Poll::Ready(None)
                }))
                .boxed()
        } else {
            drop(ended);
            watched.boxed()
        }
    }

    fn open_consumer(&self, spec: &ConsumerSpec) -> Arc<Reader> {
        let mut consumers = self.consumers.lock().unwrap_or_else(PoisonError::into_inner);
        let reader = consumers
            .entry((spec.stream.clone(), spec.durable_name.clone()))
            .or_insert_with(|| Reader::new(&spec.stream, &spec.filters, Sequence::BEFORE_FIRST));
        reader.open.fetch_add(1, Ordering::AcqRel);
        Arc::clone(reader)
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    pub(crate) fn finished(&self) -> u64 {
        self.finished.load(Ordering::Acquire)
    }

    /// Real time since the last operation finished.
    pub(crate) fn idle_for(&self) -> Duration {
        self.last_finished.lock().unwrap_or_else(PoisonError::into_inner).elapsed()
    }

    fn start(self: &Arc<Self>) -> Operation {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        Operation { gauge: Arc::clone(self) }
    }
}

/// One operation in flight, until dropped (finished, failed or cancelled).
struct Operation {
    gauge: Arc<LogGauge>,
}

impl Drop for Operation {
    fn drop(&mut self) {
        *self.gauge.last_finished.lock().unwrap_or_else(PoisonError::into_inner) = Instant::now();
        self.gauge.finished.fetch_add(1, Ordering::AcqRel);
        self.gauge.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// An [`EventLog`] that counts the operations made through it.
pub(crate) struct WatchedLog {
    inner: Arc<dyn EventLog>,
    gauge: Arc<LogGauge>,
}

impl WatchedLog {
    pub(crate) fn new(inner: Arc<dyn EventLog>) -> (Self, Arc<LogGauge>) {
        let gauge = Arc::new(LogGauge::new(Arc::clone(&inner)));
        (Self { inner, gauge: Arc::clone(&gauge) }, gauge)
    }
}

#[async_trait]
impl EventLog for WatchedLog {
    async fn append(&self, message: NewMessage) -> Result<Appended, LogError> {
        let _operation = self.gauge.start();
        self.inner.append(message).await
    }

    async fn append_batch(&self, messages: Vec<NewMessage>) -> Vec<Result<Appended, LogError>> {
        let _operation = self.gauge.start();
        self.inner.append_batch(messages).await
    }

    async fn replay(&self, request: ReplayRequest) -> Result<MessageStream, LogError> {
        let _operation = self.gauge.start();
        let stream = self.inner.replay(request.clone()).await?;
        Ok(self.gauge.watch_stream(&request, true, stream))
    }

    async fn follow(&self, request: ReplayRequest) -> Result<MessageStream, LogError> {
        let _operation = self.gauge.start();
        let stream = self.inner.follow(request.clone()).await?;
        Ok(self.gauge.watch_stream(&request, false, stream))
    }

    async fn last_sequence(&self, stream: &str) -> Result<Sequence, LogError> {
        self.inner.last_sequence(stream).await
    }

    async fn last_on_subject(&self, stream: &str, subject: &str) -> Result<Option<StoredMessage>, LogError> {
        let _operation = self.gauge.start();
        self.inner.last_on_subject(stream, subject).await
    }

    async fn durable_consumer(&self, spec: ConsumerSpec) -> Result<Box<dyn DurableConsumer>, LogError> {
        let _operation = self.gauge.start();
        let inner = self.inner.durable_consumer(spec.clone()).await?;
        let reader = self.gauge.open_consumer(&spec);
        Ok(Box::new(WatchedConsumer { inner, gauge: Arc::clone(&self.gauge), reader }))
    }

    async fn key_value(&self, bucket: &str) -> Result<Arc<dyn KeyValue>, LogError> {
        let _operation = self.gauge.start();
        let inner = self.inner.key_value(bucket).await?;
        Ok(Arc::new(WatchedBucket { inner, gauge: Arc::clone(&self.gauge) }))
    }
}

/// Waiting for the next delivery is not work; settling one is.
struct WatchedConsumer {
    inner: Box<dyn DurableConsumer>,
    gauge: Arc<LogGauge>,
    reader: Arc<Reader>,
}

impl Drop for WatchedConsumer {
    fn drop(&mut self) {
        self.reader.open.fetch_sub(1, Ordering::AcqRel);
    }
}

#[async_trait]
impl DurableConsumer for WatchedConsumer {
    async fn next(&mut self) -> Result<Delivery, LogError> {
        let delivery = self.inner.next().await?;
        self.reader.saw(delivery.message.sequence);
        let message = delivery.message.clone();
        let count = delivery.delivery_count;
        let settle = WatchedSettle { delivery: Mutex::new(Some(delivery)), gauge: Arc::clone(&self.gauge) };
        Ok(Delivery::new(message, count, Box::new(settle)))
    }
}

struct WatchedSettle {
    delivery: Mutex<Option<Delivery>>,
    gauge: Arc<LogGauge>,
}

#[async_trait]
impl Settle for WatchedSettle {
    async fn settle(&self, settlement: Settlement) -> Result<(), LogError> {
        let _operation = self.gauge.start();
        let delivery = self.delivery.lock().unwrap_or_else(PoisonError::into_inner).take();
        let Some(delivery) = delivery else {
            return Err(LogError::invalid("delivery", "settlement", "a delivery is settled once"));
        };
        match settlement {
            Settlement::Ack => delivery.ack().await,
            Settlement::Nak(delay) => delivery.nak(delay).await,
            Settlement::Term => delivery.term().await,
        }
    }
}

struct WatchedBucket {
    inner: Arc<dyn KeyValue>,
    gauge: Arc<LogGauge>,
}

#[async_trait]
impl KeyValue for WatchedBucket {
    async fn get(&self, key: &str) -> Result<Option<KvEntry>, LogError> {
        let _operation = self.gauge.start();
        self.inner.get(key).await
    }

    async fn put(&self, key: &str, value: Bytes) -> Result<u64, LogError> {
        let _operation = self.gauge.start();
        self.inner.put(key, value).await
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<u64, LogError> {
        let _operation = self.gauge.start();
        self.inner.create(key, value).await
    }

    async fn update(&self, key: &str, value: Bytes, revision: u64) -> Result<u64, LogError> {
        let _operation = self.gauge.start();
        self.inner.update(key, value, revision).await
    }

    async fn delete(&self, key: &str) -> Result<(), LogError> {
        let _operation = self.gauge.start();
        self.inner.delete(key).await
    }

    async fn keys(&self) -> Result<Vec<String>, LogError> {
        let _operation = self.gauge.start();
        self.inner.keys().await
    }
}
