//! Durable consumers.
//!
//! What must survive a restart lives in the file: the ack floor (every sequence at or below it is
//! settled, or was never the consumer's business) and the settled sequences above it. What need
//! not survive lives here, shared by every handle opened with the same name: the read position,
//! the deliveries in flight with their deadlines, and the nak'd ones with their redelivery time.
//! After a restart, whatever was in flight is simply delivered again.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use doorsync_log::{Delivery, DurableConsumer, LogError, Settle, Settlement, StoredMessage};
use tokio::sync::{Notify, oneshot};
use tokio::time::Instant;

use crate::Core;
use crate::store::{ConsumerConfig, scan};
use crate::writer::{ConsumerSnapshot, Job, Request, Settle as SettleRequest};

/// Matching messages read ahead per read transaction.
const READ_AHEAD: usize = 64;

/// One durable consumer, shared by all its handles in this process.
pub(crate) struct Consumer {
    core: Arc<Core>,
    stream: usize,
    name: String,
    state: Mutex<State>,
    /// Woken when something another handle did may let a waiting one deliver.
    changed: Notify,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer").field("stream", &self.stream).field("name", &self.name).finish_non_exhaustive()
    }
}

struct State {
    config: ConsumerConfig,
    /// Bumped when the filters change, so that a read started under the old ones is dropped.
    epoch: u64,
    ack_floor: u64,
    /// Settled sequences above the floor.
    settled: BTreeSet<u64>,
    /// Delivered and not settled: in flight until `due`, or nak'd until `due`.
    pending: BTreeMap<u64, Pending>,
    /// Every sequence below it has been looked at (buffered, delivered or skipped).
    cursor: u64,
    /// Matching messages read ahead, below the cursor, not delivered yet.
    buffer: VecDeque<StoredMessage>,
}

struct Pending {
    message: StoredMessage,
    deliveries: u64,
    due: Instant,
}

enum Step {
    Deliver(Delivery),
    Read { epoch: u64, from: u64, to: u64, filters: Vec<String> },
    Wait(Option<Instant>),
}

impl State {
    fn is_settled(&self, sequence: u64) -> bool {
        sequence <= self.ack_floor || self.settled.contains(&sequence)
    }

    /// Records `sequence` as settled and returns the ack floor, raised if it can be.
    fn settle(&mut self, sequence: u64) -> u64 {
        self.pending.remove(&sequence);
        if sequence > self.ack_floor {
            self.settled.insert(sequence);
        }
        let mut floor = self.cursor.saturating_sub(1);
        if let Some(next) = self.buffer.front() {
            floor = floor.min(next.sequence.0 - 1);
        }
        if let Some((&oldest, _)) = self.pending.first_key_value() {
            floor = floor.min(oldest - 1);
        }
        if floor > self.ack_floor {
            self.ack_floor = floor;
            self.settled = self.settled.split_off(&(floor + 1));
        }
        self.ack_floor
    }
}

impl Consumer {
    pub(crate) fn new(
        core: Arc<Core>,
        stream: usize,
        name: String,
        config: ConsumerConfig,
        snapshot: ConsumerSnapshot,
    ) -> Self {
        let state = State {
            config,
            epoch: 0,
            ack_floor: snapshot.ack_floor,
            settled: snapshot.settled.into_iter().collect(),
            pending: BTreeMap::new(),
            cursor: snapshot.ack_floor + 1,
            buffer: VecDeque::new(),
        };
        Self { core, stream, name, state: Mutex::new(state), changed: Notify::new() }
    }

    /// Another handle opened the consumer, maybe with other settings; like JetStream, the
    /// latest settings apply to every handle.
    pub(crate) fn reconfigure(&self, config: ConsumerConfig) {
        {
            let mut state = self.lock();
            if state.config.filters != config.filters {
                state.cursor = state.ack_floor + 1;
                state.buffer.clear();
                state.epoch += 1;
            }
            state.config = config;
        }
        self.changed.notify_waiters();
    }

    // A panic while the lock was held cannot leave the state half-updated in a way that matters
    // more than losing the consumer would, so carry on with it.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn delivery(self: &Arc<Self>, message: StoredMessage, deliveries: u64) -> Delivery {
        let sequence = message.sequence.0;
        Delivery::new(message, deliveries, Box::new(Settler { consumer: Arc::clone(self), sequence, deliveries }))
    }

    /// Sends a settlement to the writer. Called with the state locked, so that the writer
    /// receives floors in the order they were computed.
    fn submit_settle(
        &self,
        sequence: u64,
        ack_floor: u64,
    ) -> Result<oneshot::Receiver<Result<(), LogError>>, LogError> {
        let (job, answer) = Job::new();
        let name = self.name.clone();
        self.core.submit(Request::Settle(SettleRequest { stream: self.stream, name, sequence, ack_floor, job }))?;
        Ok(answer)
    }

    /// Decides, without waiting, what `next` does now: due redeliveries first (lowest sequence
    /// first), then new messages in order.
    fn step(self: &Arc<Self>) -> Result<Step, LogError> {
        let last = self.core.streams[self.stream].last_sequence.load(Ordering::Acquire);
        let mut guard = self.lock();
        let state = &mut *guard;
        let now = Instant::now();
        let ack_wait = Duration::from_millis(state.config.ack_wait_ms);
        while let Some((&sequence, pending)) = state.pending.iter_mut().find(|(_, pending)| pending.due <= now) {
            if state.config.max_deliver.is_some_and(|max| pending.deliveries >= max) {
                // Out of deliveries: settled for good, as JetStream stops redelivering.
                let ack_floor = state.settle(sequence);
                drop(self.submit_settle(sequence, ack_floor)?);
                continue;
            }
            pending.deliveries += 1;
            pending.due = now + ack_wait;
            return Ok(Step::Deliver(self.delivery(pending.message.clone(), pending.deliveries)));
        }
        while let Some(message) = state.buffer.pop_front() {
            let sequence = message.sequence.0;
            if state.is_settled(sequence) || state.pending.contains_key(&sequence) {
                continue;
            }
            let delivery = self.delivery(message.clone(), 1);
            state.pending.insert(sequence, Pending { message, deliveries: 1, due: now + ack_wait });
            return Ok(Step::Deliver(delivery));
        }
        if state.cursor <= last {
            let filters = state.config.filters.clone();
            return Ok(Step::Read { epoch: state.epoch, from: state.cursor, to: last, filters });
        }
        Ok(Step::Wait(state.pending.values().map(|pending| pending.due).min()))
    }

    async fn read_ahead(&self, epoch: u64, from: u64, to: u64, filters: Vec<String>) -> Result<(), LogError> {
        let stream = self.stream;
        let context = format!("reading stream {} for consumer {}", self.core.streams[stream].spec.name, self.name);
        let scanned = self
            .core
            .read(context, move |core| scan(&core.store.db, &core.streams[stream], from, to, &filters, READ_AHEAD))
            .await?;
        {
            let mut state = self.lock();
            // Another handle may have read the same range meanwhile, or the filters changed.
            if state.epoch != epoch || state.cursor != from {
                return Ok(());
            }
            state.buffer.extend(scanned.found);
            state.cursor = scanned.next;
        }
        self.changed.notify_waiters();
        Ok(())
    }

    async fn settle(&self, sequence: u64, deliveries: u64, settlement: Settlement) -> Result<(), LogError> {
        match settlement {
            Settlement::Ack | Settlement::Term => {
                // Settled in memory before the commit: should the commit fail, the file refuses
                // all further writes until doorsync restarts, and then the message comes back.
                let answer = {
                    let mut state = self.lock();
                    let ack_floor = state.settle(sequence);
                    self.submit_settle(sequence, ack_floor)?
                };
                self.core.answer(answer).await
            }
            Settlement::Nak(delay) => {
                {
                    let mut state = self.lock();
                    // A nak from a delivery that has since expired and gone out again is stale.
                    if let Some(pending) = state.pending.get_mut(&sequence)
                        && pending.deliveries == deliveries
                    {
                        pending.due = Instant::now() + delay;
                    }
                }
                self.changed.notify_waiters();
                Ok(())
            }
        }
    }
}

/// A handle on a durable consumer.
#[derive(Debug)]
pub(crate) struct ConsumerHandle {
    consumer: Arc<Consumer>,
}

impl ConsumerHandle {
    pub(crate) fn new(consumer: Arc<Consumer>) -> Self {
        Self { consumer }
    }
}

#[async_trait]
impl DurableConsumer for ConsumerHandle {
    /// Cancel-safe: the state changes only in [`Consumer::step`], which does not wait, and a
    /// read ahead dropped half-way changes nothing.
    async fn next(&mut self) -> Result<Delivery, LogError> {
        let consumer = &self.consumer;
        let stream = &consumer.core.streams[consumer.stream];
        loop {
            // Registered before looking at the state, so that a commit or settlement landing in
            // between still wakes us.
            let appended = stream.appended.notified();
            let changed = consumer.changed.notified();
            tokio::pin!(appended, changed);
            appended.as_mut().enable();
            changed.as_mut().enable();
            consumer.core.usable()?;
            match consumer.step()? {
                Step::Deliver(delivery) => return Ok(delivery),
                Step::Read { epoch, from, to, filters } => consumer.read_ahead(epoch, from, to, filters).await?,
                Step::Wait(due) => {
                    tokio::select! {
                        () = &mut appended => {}
                        () = &mut changed => {}
                        () = sleep_until(due) => {}
                    }
                }
            }
        }
    }
}

async fn sleep_until(due: Option<Instant>) {
    match due {
        Some(due) => tokio::time::sleep_until(due).await,
        None => std::future::pending().await,
    }
}

struct Settler {
    consumer: Arc<Consumer>,
    sequence: u64,
    deliveries: u64,
}

#[async_trait]
impl Settle for Settler {
    async fn settle(&self, settlement: Settlement) -> Result<(), LogError> {
        self.consumer.settle(self.sequence, self.deliveries, settlement).await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests: a failed step should stop the test loudly")]

    use std::path::Path;

    use bytes::Bytes;
    use doorsync_log::{ConsumerSpec, EventLog, NewMessage, Sequence, StreamSpec};

    use super::*;
    use crate::{EmbeddedLog, EmbeddedOptions};

    async fn log_with(path: &Path, count: u64) -> EmbeddedLog {
        let log = EmbeddedLog::open(EmbeddedOptions::new(path, vec![StreamSpec::new("EVT", ["evt.>"])])).unwrap();
        for n in 1..=count {
            log.append(NewMessage::new(format!("evt.{n}"), format!("m{n}"), Bytes::new())).await.unwrap();
        }
        log
    }

    async fn next(consumer: &mut Box<dyn DurableConsumer>) -> Delivery {
        tokio::time::timeout(Duration::from_secs(5), consumer.next()).await.expect("a delivery").unwrap()
    }

    fn seen(delivery: &Delivery) -> (u64, u64) {
        (delivery.message.sequence.0, delivery.delivery_count)
    }

    #[tokio::test]
    async fn due_redeliveries_come_first_lowest_sequence_first() {
        let dir = tempfile::tempdir().unwrap();
        let log = log_with(&dir.path().join("log.redb"), 4).await;
        // Long enough that a loaded machine does not redeliver before the test means it to.
        let spec = ConsumerSpec::new("EVT", "order").ack_wait(Duration::from_secs(1));
        let mut consumer = log.durable_consumer(spec).await.unwrap();

        let first = next(&mut consumer).await;
        let second = next(&mut consumer).await;
        assert_eq!((seen(&first), seen(&second)), ((1, 1), (2, 1)));
        second.nak(Duration::ZERO).await.unwrap();
        let second = next(&mut consumer).await;
        assert_eq!(seen(&second), (2, 2), "a due redelivery before the next new message");
        second.ack().await.unwrap();
        drop(first);
        let third = next(&mut consumer).await;
        assert_eq!(seen(&third), (3, 1));
        drop(third);

        tokio::time::sleep(Duration::from_millis(1_300)).await;
        let order: Vec<_> = [next(&mut consumer).await, next(&mut consumer).await, next(&mut consumer).await]
            .iter()
            .map(seen)
            .collect();
        assert_eq!(order, [(1, 2), (3, 2), (4, 1)]);
    }

    #[tokio::test]
    async fn max_deliver_stops_redelivery_for_good() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.redb");
        let log = log_with(&path, 1).await;
        let spec = ConsumerSpec::new("EVT", "limited").ack_wait(Duration::from_millis(200)).max_deliver(2);
        let mut consumer = log.durable_consumer(spec.clone()).await.unwrap();
        assert_eq!(seen(&next(&mut consumer).await), (1, 1));
        assert_eq!(seen(&next(&mut consumer).await), (1, 2));
        assert!(tokio::time::timeout(Duration::from_millis(600), consumer.next()).await.is_err());

        drop(consumer);
        log.close().await;
        let log = log_with(&path, 0).await;
        let mut consumer = log.durable_consumer(spec).await.unwrap();
        assert!(
            tokio::time::timeout(Duration::from_millis(500), consumer.next()).await.is_err(),
            "given up on before the restart, given up on after it"
        );
    }

    #[tokio::test]
    async fn acks_out_of_order_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.redb");
        let log = log_with(&path, 4).await;
        let spec = ConsumerSpec::new("EVT", "gaps");
        let mut consumer = log.durable_consumer(spec.clone()).await.unwrap();
        let deliveries = [next(&mut consumer).await, next(&mut consumer).await, next(&mut consumer).await];
        let [first, second, third] = deliveries;
        second.ack().await.unwrap();
        drop((first, third, consumer));
        log.close().await;

        let log = log_with(&path, 0).await;
        let mut consumer = log.durable_consumer(spec).await.unwrap();
        let mut sequences = Vec::new();
        while let Ok(delivery) = tokio::time::timeout(Duration::from_secs(2), consumer.next()).await {
            let delivery = delivery.unwrap();
            sequences.push(delivery.message.sequence);
            delivery.ack().await.unwrap();
        }
        assert_eq!(sequences, [1, 3, 4].map(Sequence));
    }

    #[test]
    fn the_floor_rises_over_settled_and_skipped_sequences() {
        let message = |sequence| StoredMessage {
            stream: "EVT".into(),
            sequence: Sequence(sequence),
            subject: "evt.1".into(),
            id: None,
            payload: Bytes::new(),
            headers: Vec::new(),
        };
        let pending = |sequence| (sequence, Pending { message: message(sequence), deliveries: 1, due: Instant::now() });
        let mut state = State {
            config: ConsumerConfig { filters: Vec::new(), ack_wait_ms: 1_000, max_deliver: None },
            epoch: 0,
            ack_floor: 0,
            settled: BTreeSet::new(),
            // 2 and 4 were skipped by a filter; 7 is read ahead.
            pending: [pending(1), pending(3), pending(5)].into_iter().collect(),
            cursor: 8,
            buffer: [message(7)].into_iter().collect(),
        };
        assert_eq!(state.settle(3), 0);
        assert_eq!(state.settled, [3].into());
        assert_eq!(state.settle(1), 4);
        assert!(state.settled.is_empty());
        assert_eq!(state.settle(5), 6, "7 is not delivered yet");
        assert!(state.is_settled(6) && !state.is_settled(7));
    }
}
