//! Reading the dead letters back, with what was done about each.

use std::sync::Arc;

use doorsync_layout::Layout;
use doorsync_log::{EventLog, KeyValue, ReplayRequest, Sequence, StoredMessage};
use doorsync_proto::{Command, ParsedSubject, Subjects};
use futures::TryStreamExt;

use super::{DeadLetter, DeadLetterError, HANDLED_THROUGH_KEY, Handled};
use crate::{REASON_HEADER, SEQUENCE_HEADER};

/// Keys of handled dead letters in the writer's bucket: `dlq.<dead letter sequence>`.
const HANDLED_PREFIX: &str = "dlq.";

/// How many of the latest dead letters the status page lists, handled or not, besides the
/// older ones still waiting.
const RECENT_DEAD_LETTERS: u64 = 50;

/// The dead letters the status page shows, oldest first: every one still waiting, and the
/// latest `RECENT_DEAD_LETTERS` whatever was done about them. Read from the first letter still
/// waiting (or the latest ones, if that is earlier), not the whole stream on every view: a
/// stream of many letters handled long ago costs nothing.
pub async fn dead_letters(log: &dyn EventLog, layout: &Layout) -> Result<Vec<DeadLetter>, DeadLetterError> {
    let kv = writer_bucket(log, layout).await?;
    let stream = &layout.dead_letters;
    let last = log
        .last_sequence(stream)
        .await
        .map_err(|source| DeadLetterError::StreamEnd { stream: stream.clone(), source: Box::new(source) })?;
    let recent = last.back(RECENT_DEAD_LETTERS - 1).max(Sequence::FIRST);
    let waiting_from = handled_through(kv.as_ref()).await?.next();
    read_dead_letters(log, kv.as_ref(), layout, recent.min(waiting_from)).await
}

/// Every dead letter in the stream, oldest first, with what was done about it.
pub async fn every_dead_letter(log: &dyn EventLog, layout: &Layout) -> Result<Vec<DeadLetter>, DeadLetterError> {
    let kv = writer_bucket(log, layout).await?;
    read_dead_letters(log, kv.as_ref(), layout, Sequence::FIRST).await
}

/// The dead letter at `sequence` of the dead-letter stream.
pub async fn dead_letter(
    log: &dyn EventLog,
    layout: &Layout,
    sequence: Sequence,
) -> Result<DeadLetter, DeadLetterError> {
    let kv = writer_bucket(log, layout).await?;
    let stream = &layout.dead_letters;
    let reading =
        |source| DeadLetterError::ReadLetters { stream: stream.clone(), from: sequence, source: Box::new(source) };
    let mut replay = log.replay(ReplayRequest::whole(stream).from_sequence(sequence)).await.map_err(reading)?;
    match replay.try_next().await.map_err(reading)? {
        Some(message) if message.sequence == sequence => read_letter(&message, kv.as_ref(), &layout.subjects).await,
        _ => Err(DeadLetterError::NoSuchLetter { sequence }),
    }
}

async fn read_dead_letters(
    log: &dyn EventLog,
    kv: &dyn KeyValue,
    layout: &Layout,
    from: Sequence,
) -> Result<Vec<DeadLetter>, DeadLetterError> {
    let stream = &layout.dead_letters;
    let reading = |source| DeadLetterError::ReadLetters { stream: stream.to_owned(), from, source: Box::new(source) };
    let mut replay = log.replay(ReplayRequest::whole(stream).from_sequence(from)).await.map_err(reading)?;
    let mut letters = Vec::new();
    while let Some(message) = replay.try_next().await.map_err(reading)? {
        letters.push(read_letter(&message, kv, &layout.subjects).await?);
    }
    Ok(letters)
}

pub(super) async fn writer_bucket(log: &dyn EventLog, layout: &Layout) -> Result<Arc<dyn KeyValue>, DeadLetterError> {
    let bucket = &layout.writer_bucket;
    log.key_value(bucket)
        .await
        .map_err(|source| DeadLetterError::OpenBucket { bucket: bucket.clone(), source: Box::new(source) })
}

async fn read_letter(
    message: &StoredMessage,
    kv: &dyn KeyValue,
    subjects: &Subjects,
) -> Result<DeadLetter, DeadLetterError> {
    let header = |name: &str| {
        message.headers.iter().find(|(header, _)| header.eq_ignore_ascii_case(name)).map(|(_, value)| value)
    };
    let command = doorsync_proto::decode::<Command>(&message.payload).map_err(|error| error.to_string());
    let member = match &command {
        Ok(envelope) => Some(envelope.message.member()),
        Err(_) => subjects.parse(&message.subject).and_then(ParsedSubject::member),
    };
    Ok(DeadLetter {
        sequence: message.sequence,
        member,
        command,
        reason: header(REASON_HEADER).cloned().unwrap_or_default(),
        command_sequence: header(SEQUENCE_HEADER).and_then(|sequence| sequence.parse().ok()),
        handled: handled(kv, message.sequence).await?,
    })
}

pub(super) fn handled_key(sequence: Sequence) -> String {
    format!("{HANDLED_PREFIX}{sequence}")
}

/// What was done about the letter at `sequence`, if anything.
pub(super) async fn handled(kv: &dyn KeyValue, sequence: Sequence) -> Result<Option<Handled>, DeadLetterError> {
    let key = handled_key(sequence);
    let Some(entry) =
        kv.get(&key).await.map_err(|source| DeadLetterError::ReadKey { key: key.clone(), source: Box::new(source) })?
    else {
        return Ok(None);
    };
    let handled = serde_json::from_slice(&entry.value)
        .map_err(|source| DeadLetterError::HandledUnreadable { key: key.clone(), source })?;
    Ok(Some(handled))
}

pub(super) async fn handled_through(kv: &dyn KeyValue) -> Result<Sequence, DeadLetterError> {
    let entry = kv
        .get(HANDLED_THROUGH_KEY)
        .await
        .map_err(|source| DeadLetterError::ReadKey { key: HANDLED_THROUGH_KEY.to_owned(), source: Box::new(source) })?;
    let Some(entry) = entry else { return Ok(Sequence::BEFORE_FIRST) };
    std::str::from_utf8(&entry.value)
        .ok()
        .and_then(|text| text.parse().ok())
        .ok_or(DeadLetterError::HandledThroughUnreadable)
}
