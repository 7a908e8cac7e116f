//! Reading history once for all the shards an engine starts with.
//!
//! Each shard could read its own partition, but JetStream serves a consumer filtered on a
//! wildcard (`evt.<p>.*`) by matching it against every subject of every message block, which
//! with one subject per member makes sixteen filtered reads far slower than one plain read of
//! the stream. So at start the engine reads each stream once, unfiltered, from the lowest
//! position any of its shards needs, and hands every message to the shard of its member's
//! partition (mapping events to all), skipping what a shard's checkpoint already covers. Each
//! shard then follows its own partition live, where the rate is low.

use std::collections::HashMap;

use doorsync_log::{ReplayRequest, Sequence};
use doorsync_proto::{ParsedSubject, Partition};
use futures::StreamExt;
use ractor::ActorRef;
use tokio::sync::oneshot;

use crate::EngineError;
use crate::feed::{
    Decoder, FEED_WINDOW, HistoricEvent, Positions, Reading, command_message, outcome_message, skipped_message,
};
use crate::shard::{CALL_TIMEOUT, ShardMsg};
use crate::shared::Shared;

pub(crate) async fn deliver(shared: &Shared, shards: &[(Partition, ActorRef<ShardMsg>)]) -> Result<(), EngineError> {
    if shards.is_empty() {
        return Ok(());
    }
    let mut positions = HashMap::with_capacity(shards.len());
    for (partition, shard) in shards {
        let reply = ractor::call_t!(shard, ShardMsg::Positions, CALL_TIMEOUT.as_millis() as u64)
            .map_err(|_| EngineError::ShardGone)?;
        positions.insert(*partition, (shard.clone(), reply));
    }
    let mut delivery =
        Delivery { shared, positions, in_window: 0, pending_events: HashMap::new(), window_handled: Vec::new() };
    let reached = Positions {
        commands: delivery.commands().await?,
        outcomes: delivery.outcomes().await?,
        mapping_events: Sequence::BEFORE_FIRST,
        events: delivery.events().await?,
    };
    let reached = Positions { mapping_events: reached.events, ..reached };
    for (_, (shard, _)) in delivery.positions {
        shard.cast(ShardMsg::HistoryDone(reached)).map_err(|_| EngineError::ShardGone)?;
    }
    Ok(())
}

struct Delivery<'a> {
    shared: &'a Shared,
    positions: HashMap<Partition, (ActorRef<ShardMsg>, Positions)>,
    in_window: usize,
    /// Events gathered per partition and sent [`EVENT_BATCH`] at a time.
    pending_events: HashMap<Partition, Vec<HistoricEvent>>,
    /// One answer per shard once it has handled everything sent before the last window ended.
    window_handled: Vec<oneshot::Receiver<()>>,
}

const EVENT_BATCH: usize = 256;

impl Delivery<'_> {
    fn lowest(&self, position: impl Fn(&Positions) -> Sequence) -> Sequence {
        self.positions.values().map(|(_, positions)| position(positions)).min().unwrap_or(Sequence::BEFORE_FIRST)
    }

    /// Every [`FEED_WINDOW`] messages, waits for every shard to have handled the window before
    /// this one, so that at most two windows wait in the shards' mailboxes. Waiting for the
    /// window just sent instead would leave the shards idle while the next is read, and the
    /// reading idle while they work.
    async fn pace(&mut self) -> Result<(), EngineError> {
        self.in_window += 1;
        if self.in_window < FEED_WINDOW {
            return Ok(());
        }
        self.in_window = 0;
        self.flush_events()?;
        for handled in self.window_handled.drain(..) {
            match tokio::time::timeout(CALL_TIMEOUT, handled).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => return Err(EngineError::ShardGone),
            }
        }
        for (shard, _) in self.positions.values() {
            let (answer, handled) = oneshot::channel();
            shard.cast(ShardMsg::Barrier(answer.into())).map_err(|_| EngineError::ShardGone)?;
            self.window_handled.push(handled);
        }
        Ok(())
    }

    fn send(&self, partition: Partition, message: ShardMsg) -> Result<(), EngineError> {
        match self.positions.get(&partition) {
            Some((shard, _)) => shard.cast(message).map_err(|_| EngineError::ShardGone),
            None => Ok(()),
        }
    }

    fn queue_event(&mut self, partition: Partition, event: HistoricEvent) -> Result<(), EngineError> {
        let pending = self.pending_events.entry(partition).or_default();
        pending.push(event);
        if pending.len() >= EVENT_BATCH {
            let batch = std::mem::take(pending);
            self.send(partition, ShardMsg::Events(batch))?;
        }
        Ok(())
    }

    fn flush_events(&mut self) -> Result<(), EngineError> {
        let pending: Vec<(Partition, Vec<HistoricEvent>)> =
            self.pending_events.drain().filter(|(_, batch)| !batch.is_empty()).collect();
        for (partition, batch) in pending {
            self.send(partition, ShardMsg::Events(batch))?;
        }
        Ok(())
    }

    fn needs(&self, partition: Partition, sequence: Sequence, position: impl Fn(&Positions) -> Sequence) -> bool {
        self.positions.get(&partition).is_some_and(|(_, positions)| sequence > position(positions))
    }

    async fn commands(&mut self) -> Result<Sequence, EngineError> {
        let stream = self.shared.layout.commands.clone();
        self.route(&stream, |positions| positions.commands, command_message).await
    }

    async fn outcomes(&mut self) -> Result<Sequence, EngineError> {
        let stream = self.shared.layout.outcomes.clone();
        self.route(&stream, |positions| positions.outcomes, outcome_message).await
    }

    /// Sends each message of `stream` past the lowest position to its member's shard, if that
    /// shard has not had it yet; returns the last sequence read.
    async fn route(
        &mut self,
        stream: &str,
        position: fn(&Positions) -> Sequence,
        to_message: Decoder,
    ) -> Result<Sequence, EngineError> {
        let from = self.lowest(position);
        let mut replay = self.shared.log.replay(ReplayRequest::whole(stream).from_sequence(from.next())).await?;
        let mut last = from;
        while let Some(message) = replay.next().await {
            let message = message?;
            last = message.sequence;
            let shard_message = to_message(self.shared, &message, Reading::History)?;
            let member = match &shard_message {
                ShardMsg::Command { command, .. } => Some(command.member()),
                ShardMsg::Outcome { outcome, .. } => Some(outcome.member()),
                _ => None,
            };
            let partition = match member {
                Some(member) => self.shared.layout.subjects.partition_of(member),
                None => self.reporting_partition(&message.subject),
            };
            if self.needs(partition, message.sequence, position) {
                self.send(partition, shard_message)?;
                self.pace().await?;
            }
        }
        Ok(last)
    }

    /// The partition a message that names no member is reported to: its subject's member's, or
    /// else the lowest this engine owns, so that it is reported once.
    fn reporting_partition(&self, subject: &str) -> Partition {
        let subjects = &self.shared.layout.subjects;
        subjects
            .parse(subject)
            .and_then(ParsedSubject::member)
            .map(|member| subjects.partition_of(member))
            .or_else(|| self.positions.keys().min().copied())
            .unwrap_or(Partition(0))
    }

    /// Routed by subject, without decoding: the shards decode, in parallel, what they are sent.
    async fn events(&mut self) -> Result<Sequence, EngineError> {
        let from = self.lowest(|positions| positions.events.min(positions.mapping_events));
        let stream = &self.shared.layout.events;
        let mapping = self.shared.layout.subjects.mapping();
        let mut replay = self.shared.log.replay(ReplayRequest::whole(stream).from_sequence(from.next())).await?;
        let mut last = from;
        while let Some(message) = replay.next().await {
            let message = message?;
            last = message.sequence;
            if message.subject == mapping {
                let partitions: Vec<Partition> = self.positions.keys().copied().collect();
                for partition in partitions {
                    if self.needs(partition, message.sequence, |positions| positions.mapping_events) {
                        let event = HistoricEvent {
                            sequence: message.sequence,
                            subject: message.subject.clone(),
                            payload: message.payload.clone(),
                            headers: Vec::new(),
                        };
                        self.queue_event(partition, event)?;
                    }
                }
            } else {
                let Some(member) = self.shared.layout.subjects.parse(&message.subject).and_then(ParsedSubject::member)
                else {
                    let reason = "the subject is neither a member's nor the mapping's".to_owned();
                    let partition = self.reporting_partition(&message.subject);
                    if self.needs(partition, message.sequence, |positions| positions.events) {
                        self.send(partition, skipped_message(self.shared, stream, &message, reason))?;
                    }
                    continue;
                };
                let partition = self.shared.layout.subjects.partition_of(member);
                if self.needs(partition, message.sequence, |positions| positions.events) {
                    let event = HistoricEvent {
                        sequence: message.sequence,
                        subject: message.subject,
                        payload: message.payload,
                        headers: message.headers,
                    };
                    self.queue_event(partition, event)?;
                }
            }
            self.pace().await?;
        }
        self.flush_events()?;
        Ok(last)
    }
}
