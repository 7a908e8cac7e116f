//! Feeding a shard from the log: its partition's history (unless the engine delivers it, see
//! `history.rs`), then what is appended from then on, each message decoded into a
//! [`ShardMsg`]. The feeder paces itself on the shard, so a replay of millions of messages does
//! not pile up in the shard's mailbox; a failure to read is reported to the shard, which stops
//! (and its lease is taken again).

use std::sync::Arc;

use bytes::Bytes;
use doorsync_layout::Layout;
use doorsync_log::{MessageStream, ReplayRequest, Sequence, StoredMessage};
use doorsync_proto::{Command, Event, Outcome, Partition};
use futures::StreamExt;
use ractor::ActorRef;

use crate::EngineError;
use crate::member::EventTrace;
use crate::shard::{CALL_TIMEOUT, ShardMsg};
use crate::shared::Shared;
use crate::skipped::{Read, SkippedMessage, read};

/// A feeder waits for the shard to catch up after this many messages, so that a replay of
/// millions of events does not pile up in the shard's mailbox.
pub(crate) const FEED_WINDOW: usize = 32_768;

/// An event from the engine's reading of history, still encoded: shards decode in parallel.
pub(crate) struct HistoricEvent {
    pub(crate) sequence: Sequence,
    pub(crate) subject: String,
    pub(crate) payload: Bytes,
    /// The mapping's events go to every shard without them: commands never link to a mapping
    /// change's trace.
    pub(crate) headers: Vec<(String, String)>,
}

/// Who reads a new shard's history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum History {
    /// The shard reads its own partition (a partition taken over while running).
    ReadOwn,
    /// The engine reads every stream once for all the shards it starts with, and says
    /// [`ShardMsg::HistoryDone`] at the end (see `history.rs`).
    Delivered,
}

/// Where the shard's reading of each stream resumes (each the last sequence already handled).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Positions {
    pub(crate) commands: Sequence,
    pub(crate) outcomes: Sequence,
    pub(crate) mapping_events: Sequence,
    pub(crate) events: Sequence,
}

/// Feeds the shard: the partition's history first unless the engine delivers it, then what is
/// appended from now on. Reports a failure to the shard, which stops (and its lease is taken
/// again).
pub(crate) async fn feed(
    shared: Arc<Shared>,
    partition: Partition,
    positions: Positions,
    history: History,
    shard: ActorRef<ShardMsg>,
) {
    let fed = async {
        let positions = match history {
            History::ReadOwn => read_history(&shared, partition, positions, &shard).await?,
            History::Delivered => positions,
        };
        follow(&shared, partition, positions, &shard).await
    };
    if let Err(error) = fed.await {
        let _ = shard.cast(ShardMsg::FeedFailed(error));
    }
}

/// The reads of a partition after its own commands: outcomes, the mapping, the member events.
/// Each has exactly one subject filter: JetStream serves a consumer with several filters about
/// thirty times slower (measured: 3,000 against 100,000 messages/s). The mapping subject is
/// therefore read on its own; the fold does not depend on the mapping, so the order in which
/// mapping and member events interleave does not change any member's state.
fn partition_reads(layout: &Layout, partition: Partition, positions: Positions) -> [(ReplayRequest, Decoder); 3] {
    let subjects = &layout.subjects;
    [
        (
            ReplayRequest::whole(&layout.outcomes)
                .filtered([subjects.outcome_partition_filter(partition)])
                .from_sequence(positions.outcomes.next()),
            outcome_message,
        ),
        (
            ReplayRequest::whole(&layout.events)
                .filtered([subjects.mapping()])
                .from_sequence(positions.mapping_events.next()),
            event_message,
        ),
        (
            ReplayRequest::whole(&layout.events)
                .filtered([subjects.event_partition_filter(partition)])
                .from_sequence(positions.events.next()),
            event_message,
        ),
    ]
}

/// Reads the partition's history into the shard: this engine's own commands first (so members
/// know what they already emitted), then the rest; returns where each read ended.
async fn read_history(
    shared: &Shared,
    partition: Partition,
    positions: Positions,
    shard: &ActorRef<ShardMsg>,
) -> Result<Positions, EngineError> {
    let layout = &shared.layout;
    let commands = ReplayRequest::whole(&layout.commands)
        .filtered([layout.subjects.command_partition_filter(partition)])
        .from_sequence(positions.commands.next());
    let commands_last =
        pump(shared, shared.log.replay(commands).await?, shard, command_message, Reading::History).await?;
    let mut reached = [positions.outcomes, positions.mapping_events, positions.events];
    for ((request, decode), last) in partition_reads(layout, partition, positions).into_iter().zip(&mut reached) {
        if let Some(sequence) = pump(shared, shared.log.replay(request).await?, shard, decode, Reading::History).await?
        {
            *last = sequence;
        }
    }
    shard.cast(ShardMsg::CaughtUp).map_err(|_| EngineError::ShardGone)?;
    let [outcomes, mapping_events, events] = reached;
    Ok(Positions { commands: commands_last.unwrap_or(positions.commands), outcomes, mapping_events, events })
}

/// Reads what is appended to the partition from `positions` on, for as long as the shard runs.
async fn follow(
    shared: &Arc<Shared>,
    partition: Partition,
    positions: Positions,
    shard: &ActorRef<ShardMsg>,
) -> Result<(), EngineError> {
    // A JoinSet aborts its tasks when dropped: when the shard stops (and aborts this task), the
    // followers and the log handles they hold go with it.
    let mut followers = tokio::task::JoinSet::new();
    for (request, decode) in partition_reads(&shared.layout, partition, positions) {
        let stream = shared.log.follow(request).await?;
        let (shared, shard) = (Arc::clone(shared), shard.clone());
        followers.spawn(async move { pump(&shared, stream, &shard, decode, Reading::Live).await });
    }
    // A follower only ends on an error; the first one takes the others down with it.
    match followers.join_next().await {
        Some(Ok(result)) => result.map(|_| ()),
        Some(Err(source)) => {
            Err(EngineError::TaskStopped { what: format!("a follower of partition {partition}"), source })
        }
        None => Ok(()),
    }
}

pub(crate) type Decoder = fn(&Shared, &StoredMessage, Reading) -> Result<ShardMsg, EngineError>;

/// Whether a message is read from history (a replay) or as it is appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reading {
    History,
    Live,
}

fn event_message(shared: &Shared, message: &StoredMessage, reading: Reading) -> Result<ShardMsg, EngineError> {
    let sequence = message.sequence;
    Ok(match read::<Event>(sequence, &message.payload)? {
        Read::Message(envelope) => {
            ShardMsg::Event { sequence, envelope, trace: EventTrace::from_headers(&message.headers, reading) }
        }
        Read::Garbage(reason) => skipped_message(shared, &shared.layout.events, message, reason),
    })
}

pub(crate) fn command_message(shared: &Shared, message: &StoredMessage, _: Reading) -> Result<ShardMsg, EngineError> {
    let sequence = message.sequence;
    Ok(match read::<Command>(sequence, &message.payload)? {
        Read::Message(envelope) => ShardMsg::Command { sequence, command: envelope.message },
        Read::Garbage(reason) => skipped_message(shared, &shared.layout.commands, message, reason),
    })
}

pub(crate) fn outcome_message(shared: &Shared, message: &StoredMessage, _: Reading) -> Result<ShardMsg, EngineError> {
    let sequence = message.sequence;
    Ok(match read::<Outcome>(sequence, &message.payload)? {
        Read::Message(envelope) => ShardMsg::Outcome { sequence, outcome: envelope.message },
        Read::Garbage(reason) => skipped_message(shared, &shared.layout.outcomes, message, reason),
    })
}

pub(crate) fn skipped_message(shared: &Shared, stream: &str, message: &StoredMessage, reason: String) -> ShardMsg {
    ShardMsg::Skipped(SkippedMessage {
        stream: stream.to_owned(),
        subject: message.subject.clone(),
        sequence: message.sequence,
        reason,
        skipped_at: shared.clock.now(),
    })
}

/// Forwards every message of `stream` to the shard, pausing every [`FEED_WINDOW`] messages
/// until the shard has handled them. Returns the last sequence forwarded.
async fn pump(
    shared: &Shared,
    mut stream: MessageStream,
    shard: &ActorRef<ShardMsg>,
    to_message: Decoder,
    reading: Reading,
) -> Result<Option<Sequence>, EngineError> {
    let mut last = None;
    let mut in_window = 0;
    while let Some(message) = stream.next().await {
        let message = message?;
        shard.cast(to_message(shared, &message, reading)?).map_err(|_| EngineError::ShardGone)?;
        last = Some(message.sequence);
        in_window += 1;
        if in_window == FEED_WINDOW {
            in_window = 0;
            ractor::call_t!(shard, ShardMsg::Barrier, CALL_TIMEOUT.as_millis() as u64)
                .map_err(|_| EngineError::ShardGone)?;
        }
    }
    Ok(last)
}
