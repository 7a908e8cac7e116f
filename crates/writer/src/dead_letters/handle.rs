//! What operators do about a dead letter: retry it (append its command again) or drop it, each
//! recorded under the letter's key in the writer's bucket.

use bytes::Bytes;
use doorsync_layout::Layout;
use doorsync_log::{EventLog, KeyValue, LogError, NewMessage, ReplayRequest, RetryPolicy, Sequence};
use doorsync_proto::{Command, Envelope, Timestamp};
use futures::TryStreamExt;

use super::read::{every_dead_letter, handled, handled_key, handled_through, writer_bucket};
use crate::backlog::Key;

use super::{Action, DeadLetter, DeadLetterError, HANDLED_THROUGH_KEY, Handled, Refusal, Retried, RetryAll};

/// Appends the letter's command again for the writer and records the retry, unless the letter
/// must not be retried (the `Err` of the inner result says why).
pub async fn retry(
    log: &dyn EventLog,
    layout: &Layout,
    letter: &DeadLetter,
    now: Timestamp,
) -> Result<Result<Retried, Refusal>, DeadLetterError> {
    if let Some(handled) = &letter.handled {
        return Ok(Err(Refusal::Handled(handled.clone())));
    }
    let (command, window_edge) = match &letter.command {
        Ok(envelope) => (&envelope.message, envelope.window_edge),
        Err(reason) => return Ok(Err(Refusal::Undecodable(reason.clone()))),
    };
    let Some(command_sequence) = letter.command_sequence else { return Ok(Err(Refusal::NoCommandSequence)) };
    if let Some(by) = newer_for_same_target(log, layout, command, command_sequence).await? {
        return Ok(Err(Refusal::Overtaken { by }));
    }
    // Still late for the edge it was due to: the retry's write is measured from there.
    let envelope =
        Envelope::with_window_edge(now, window_edge, command.clone()).map_err(DeadLetterError::EncodeCommand)?;
    let payload = doorsync_proto::encode(&envelope).map_err(DeadLetterError::EncodeCommand)?;
    let subject = layout.subjects.command(command.member());
    let message = NewMessage::new(subject, envelope.id.to_string(), payload);
    let appended = doorsync_log::append_with_retry(log, message, RetryPolicy::default())
        .await
        .map_err(DeadLetterError::AppendCommand)?;
    if appended.duplicate {
        return Err(DeadLetterError::AlreadyAppended { sequence: appended.sequence });
    }
    let retried = Retried { command_sequence: appended.sequence, command_id: envelope.id };
    let record = Handled {
        at: now,
        action: Action::Retried { command_sequence: retried.command_sequence, command_id: retried.command_id.clone() },
    };
    let key = handled_key(letter.sequence);
    let kv = writer_bucket(log, layout).await?;
    // The command is in the log now: record the retry whatever was recorded meanwhile.
    kv.put(&key, encode_handled(&record)?).await.map_err(|source| DeadLetterError::RecordRetry {
        key,
        appended: appended.sequence,
        source: Box::new(source),
    })?;
    advance_handled_through(log, layout, kv.as_ref()).await?;
    Ok(Ok(retried))
}

/// Retries every dead letter not yet handled, oldest first, so that a user is ensured before
/// the groups that need it are granted.
pub async fn retry_all(log: &dyn EventLog, layout: &Layout, now: Timestamp) -> Result<RetryAll, DeadLetterError> {
    let mut outcome = RetryAll { retried: Vec::new(), refused: Vec::new() };
    for letter in every_dead_letter(log, layout).await?.into_iter().filter(|letter| letter.handled.is_none()) {
        match retry(log, layout, &letter, now).await? {
            Ok(retried) => outcome.retried.push((letter, retried)),
            Err(refusal) => outcome.refused.push((letter, refusal)),
        }
    }
    Ok(outcome)
}

/// Marks the letter dropped; returns what was done about it instead when it was handled already.
pub async fn drop_letter(
    log: &dyn EventLog,
    layout: &Layout,
    letter: &DeadLetter,
    now: Timestamp,
) -> Result<Option<Handled>, DeadLetterError> {
    if let Some(handled) = &letter.handled {
        return Ok(Some(handled.clone()));
    }
    let kv = writer_bucket(log, layout).await?;
    let key = handled_key(letter.sequence);
    let record = Handled { at: now, action: Action::Dropped };
    match kv.create(&key, encode_handled(&record)?).await {
        Ok(_) => {
            advance_handled_through(log, layout, kv.as_ref()).await?;
            Ok(None)
        }
        // Handled by someone else in the meantime.
        Err(LogError::KvConflict { .. }) => handled(kv.as_ref(), letter.sequence).await,
        Err(source) => Err(DeadLetterError::RecordDrop { key, source: Box::new(source) }),
    }
}

fn encode_handled(handled: &Handled) -> Result<Bytes, DeadLetterError> {
    Ok(Bytes::from(serde_json::to_vec(handled).map_err(DeadLetterError::EncodeHandled)?))
}

/// Moves [`HANDLED_THROUGH_KEY`] on over the letters handled after it, up to the first still
/// waiting. Two of these at once may write a mark short of the other's: it then only covers
/// fewer letters, never one still waiting.
async fn advance_handled_through(
    log: &dyn EventLog,
    layout: &Layout,
    kv: &dyn KeyValue,
) -> Result<(), DeadLetterError> {
    let stream = &layout.dead_letters;
    let start = handled_through(kv).await?;
    let reading =
        |source| DeadLetterError::ReadLetters { stream: stream.clone(), from: start.next(), source: Box::new(source) };
    let mut replay = log.replay(ReplayRequest::whole(stream).from_sequence(start.next())).await.map_err(reading)?;
    let mut through = start;
    while let Some(message) = replay.try_next().await.map_err(reading)? {
        if handled(kv, message.sequence).await?.is_none() {
            break;
        }
        through = message.sequence;
    }
    if through > start {
        kv.put(HANDLED_THROUGH_KEY, Bytes::from(through.to_string()))
            .await
            .map_err(DeadLetterError::RecordHandledThrough)?;
    }
    Ok(())
}

/// The sequence of the newest command after `after` on the member's subject that is about the
/// same user or group as `command` (the same key of the writer's work).
async fn newer_for_same_target(
    log: &dyn EventLog,
    layout: &Layout,
    command: &Command,
    after: Sequence,
) -> Result<Option<Sequence>, DeadLetterError> {
    let subject = layout.subjects.command(command.member());
    let request = ReplayRequest::whole(&layout.commands).filtered([subject]).from_sequence(after.next());
    let reading = |source| DeadLetterError::ReadLaterCommands { member: command.member(), source: Box::new(source) };
    let mut replay = log.replay(request).await.map_err(reading)?;
    let mut newest = None;
    while let Some(message) = replay.try_next().await.map_err(reading)? {
        // A later command this build cannot read was dead-lettered in turn, and is listed.
        if let Ok(later) = doorsync_proto::decode::<Command>(&message.payload)
            && Key::of(&later.message) == Key::of(command)
        {
            newest = Some(message.sequence);
        }
    }
    Ok(newest)
}
