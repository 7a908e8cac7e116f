//! `doorsync dlq list | retry <sequence>|--all | drop <sequence>`: the commands the writer
//! dead-lettered, and what an operator does about them.
//!
//! A dead letter is the refused command itself, appended by the writer to the member's
//! dead-letter subject with its reason ([`REASON_HEADER`]) and the command's stream sequence
//! ([`SEQUENCE_HEADER`]). The log has no delete, so what was done about a letter is recorded in
//! the writer's bucket under `dlq.<sequence>` (the writer keeps `member.<id>` and `held-repair`
//! there and reads nothing else), and `list` hides handled letters unless asked.
//!
//! A retry appends the command again to the member's command subject as a new message (a new
//! envelope at the current time, so a new id that the log's de-duplication does not swallow).
//! The writer takes it because its stream sequence is above the one it settled the key at when
//! it dead-lettered it. A command that a newer one for the same user or group has overtaken is
//! not retried: the writer works from the newer one, and the old one would undo it.

use std::fmt;

use anyhow::{Context as _, bail};
use bytes::Bytes;
use doorsync_layout::Layout;
use doorsync_log::{EventLog, KeyValue, LogError, NewMessage, ReplayRequest, RetryPolicy, StoredMessage};
use doorsync_proto::{Command, Envelope, KisiGroupId, MemberId, MessageId, Timestamp};
use doorsync_writer::{REASON_HEADER, SEQUENCE_HEADER};
use futures::TryStreamExt;
use serde::{Deserialize, Serialize};

use super::table;
use crate::context::Context;

/// Keys of handled dead letters in the writer's bucket: `dlq.<dead letter sequence>`.
const HANDLED_PREFIX: &str = "dlq.";

#[derive(Debug, Clone, PartialEq, Eq, clap::Subcommand)]
pub(crate) enum DlqAction {
    /// Lists the dead letters waiting for an operator: sequence, member, command, when it was
    /// commanded, and why the writer gave up on it.
    List {
        /// Also list the dead letters already retried or dropped.
        #[arg(long)]
        all: bool,
    },
    /// Hands dead-lettered commands back to the writer, appended again as new commands.
    Retry {
        /// The dead letter's sequence, as `doorsync dlq list` shows it.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        sequence: Option<u64>,
        /// Every dead letter waiting, oldest first; those overtaken by newer commands are skipped.
        #[arg(long)]
        all: bool,
    },
    /// Marks a dead letter as dealt with, without retrying it: `list` no longer shows it.
    Drop {
        /// The dead letter's sequence, as `doorsync dlq list` shows it.
        sequence: u64,
    },
}

pub(crate) async fn dlq(context: &Context, action: DlqAction) -> anyhow::Result<()> {
    let clock = &context.clock;
    let text = super::with_log(context, "dlq", async |log, layout| match action {
        DlqAction::List { all } => Ok(render_list(&every_dead_letter(log, layout).await?, all)),
        DlqAction::Retry { all: true, .. } => Ok(render_retries(&retry_all(log, layout, clock.now()).await?)),
        DlqAction::Retry { sequence: Some(sequence), all: false } => {
            let letter = dead_letter(log, layout, sequence).await?;
            match retry(log, layout, &letter, clock.now()).await? {
                Ok(retried) => Ok(format!("{}\n", describe_retry(&letter, &retried))),
                Err(refusal) => bail!("dead letter {sequence} was not retried: {refusal}"),
            }
        }
        DlqAction::Retry { sequence: None, all: false } => {
            bail!("name the dead letter to retry by its sequence (doorsync dlq list shows them), or use --all")
        }
        DlqAction::Drop { sequence } => {
            let letter = dead_letter(log, layout, sequence).await?;
            Ok(match drop_letter(log, layout, &letter, clock.now()).await? {
                None => format!("Dropped dead letter {sequence}; `doorsync dlq list` no longer shows it.\n"),
                Some(handled) => format!("Dead letter {sequence} was already {handled}; nothing to drop.\n"),
            })
        }
    })
    .await?;
    print!("{text}");
    Ok(())
}

/// One dead letter, read back from the dead-letter stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DeadLetter {
    /// Its sequence in the dead-letter stream: how operators name it.
    pub(crate) sequence: u64,
    pub(crate) member: Option<MemberId>,
    /// The refused command, or why this build cannot read it.
    pub(crate) command: Result<Envelope<Command>, String>,
    pub(crate) reason: String,
    /// The command's sequence in the command stream.
    pub(crate) command_sequence: Option<u64>,
    pub(crate) handled: Option<Handled>,
}

/// What an operator did about a dead letter, as recorded in the writer's bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Handled {
    pub(crate) at: Timestamp,
    pub(crate) action: Action,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub(crate) enum Action {
    /// Appended again as the command at this sequence, with this id.
    Retried {
        command_sequence: u64,
        command_id: MessageId,
    },
    Dropped,
}

impl fmt::Display for Handled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.action {
            Action::Retried { command_sequence, .. } => {
                write!(f, "retried at {} (as command {command_sequence})", self.at)
            }
            Action::Dropped => write!(f, "dropped at {}", self.at),
        }
    }
}

/// Why a dead letter is not retried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    Handled(Handled),
    Undecodable(String),
    /// The letter does not say which command it parks (it was not written by doorsync's writer).
    NoCommandSequence,
    /// A newer command for the same user or group came after it, at this sequence.
    Overtaken {
        by: u64,
    },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Handled(handled) => write!(f, "it was already {handled}"),
            Self::Undecodable(reason) => write!(f, "this build cannot read the command ({reason}); drop it"),
            Self::NoCommandSequence => {
                write!(f, "it has no {SEQUENCE_HEADER} header, so it is not the writer's; drop it")
            }
            Self::Overtaken { by } => write!(
                f,
                "a newer command for the same target (command {by}) came after it and the writer works from that \
                 one; retrying would undo it, so drop this one"
            ),
        }
    }
}

/// A retried dead letter: the command as appended again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Retried {
    pub(crate) command_sequence: u64,
    pub(crate) command_id: MessageId,
}

/// Every dead letter up to this sequence of the stream was retried or dropped (a decimal number
/// in the writer's bucket, moved on as letters are handled). Under `dlq.`, which the roles that
/// read and handle dead letters are granted.
const HANDLED_THROUGH_KEY: &str = "dlq.handled-through";

/// How many of the latest dead letters the status page lists, handled or not, besides the
/// older ones still waiting.
const RECENT_DEAD_LETTERS: u64 = 50;

/// The dead letters the status page shows, oldest first: every one still waiting, and the
/// latest [`RECENT_DEAD_LETTERS`] whatever was done about them. Read from the first letter still
/// waiting (or the latest ones, if that is earlier), not the whole stream on every view: a
/// stream of many letters handled long ago costs nothing.
pub(crate) async fn dead_letters(log: &dyn EventLog, layout: &Layout) -> anyhow::Result<Vec<DeadLetter>> {
    let kv = writer_bucket(log, layout).await?;
    let stream = &layout.dead_letters;
    let last = log.last_sequence(stream).await.with_context(|| format!("reading the end of stream {stream}"))?;
    let recent = last.saturating_sub(RECENT_DEAD_LETTERS - 1).max(1);
    let waiting_from = handled_through(kv.as_ref()).await?.saturating_add(1);
    read_dead_letters(log, kv.as_ref(), stream, recent.min(waiting_from)).await
}

/// Every dead letter in the stream, oldest first, with what was done about it.
pub(crate) async fn every_dead_letter(log: &dyn EventLog, layout: &Layout) -> anyhow::Result<Vec<DeadLetter>> {
    let kv = writer_bucket(log, layout).await?;
    read_dead_letters(log, kv.as_ref(), &layout.dead_letters, 1).await
}

async fn read_dead_letters(
    log: &dyn EventLog,
    kv: &dyn KeyValue,
    stream: &str,
    from: u64,
) -> anyhow::Result<Vec<DeadLetter>> {
    let reading = || format!("reading the dead letters (stream {stream}) from {from}");
    let mut replay = log.replay(ReplayRequest::whole(stream).from_sequence(from)).await.with_context(reading)?;
    let mut letters = Vec::new();
    while let Some(message) = replay.try_next().await.with_context(reading)? {
        letters.push(read_letter(&message, kv).await?);
    }
    Ok(letters)
}

async fn handled_through(kv: &dyn KeyValue) -> anyhow::Result<u64> {
    let reading = || format!("reading {HANDLED_THROUGH_KEY} in the writer's bucket");
    let Some(entry) = kv.get(HANDLED_THROUGH_KEY).await.with_context(reading)? else { return Ok(0) };
    std::str::from_utf8(&entry.value).ok().and_then(|text| text.parse().ok()).with_context(|| {
        format!("{HANDLED_THROUGH_KEY} in the writer's bucket is not a sequence; delete it to rebuild it")
    })
}

/// Moves [`HANDLED_THROUGH_KEY`] on over the letters handled after it, up to the first still
/// waiting. Two of these at once may write a mark short of the other's: it then only covers
/// fewer letters, never one still waiting.
async fn advance_handled_through(log: &dyn EventLog, layout: &Layout, kv: &dyn KeyValue) -> anyhow::Result<()> {
    let stream = &layout.dead_letters;
    let start = handled_through(kv).await?;
    let reading = || format!("reading the dead letters (stream {stream}) after {start}");
    let request = ReplayRequest::whole(stream).from_sequence(start + 1);
    let mut replay = log.replay(request).await.with_context(reading)?;
    let mut through = start;
    while let Some(message) = replay.try_next().await.with_context(reading)? {
        if handled(kv, message.sequence).await?.is_none() {
            break;
        }
        through = message.sequence;
    }
    if through > start {
        kv.put(HANDLED_THROUGH_KEY, Bytes::from(through.to_string()))
            .await
            .with_context(|| format!("recording {HANDLED_THROUGH_KEY} in the writer's bucket"))?;
    }
    Ok(())
}

/// The dead letter at `sequence` of the dead-letter stream.
pub(crate) async fn dead_letter(log: &dyn EventLog, layout: &Layout, sequence: u64) -> anyhow::Result<DeadLetter> {
    let kv = writer_bucket(log, layout).await?;
    let stream = &layout.dead_letters;
    let request = ReplayRequest::whole(stream).from_sequence(sequence);
    let mut replay =
        log.replay(request).await.with_context(|| format!("reading dead letter {sequence} (stream {stream})"))?;
    match replay.try_next().await.with_context(|| format!("reading dead letter {sequence} (stream {stream})"))? {
        Some(message) if message.sequence == sequence => read_letter(&message, kv.as_ref()).await,
        _ => bail!("there is no dead letter {sequence}: `doorsync dlq list --all` shows them all"),
    }
}

async fn writer_bucket(log: &dyn EventLog, layout: &Layout) -> anyhow::Result<std::sync::Arc<dyn KeyValue>> {
    let bucket = &layout.writer_bucket;
    log.key_value(bucket).await.with_context(|| format!("opening the writer's bucket {bucket}"))
}

async fn read_letter(message: &StoredMessage, kv: &dyn KeyValue) -> anyhow::Result<DeadLetter> {
    let header = |name: &str| {
        message.headers.iter().find(|(header, _)| header.eq_ignore_ascii_case(name)).map(|(_, value)| value)
    };
    let command = doorsync_proto::decode::<Command>(&message.payload).map_err(|error| error.to_string());
    let member = match &command {
        Ok(envelope) => Some(envelope.message.member()),
        // The subject ends with the member's id.
        Err(_) => message.subject.rsplit('.').next().and_then(|id| id.parse().ok()).map(MemberId),
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

fn handled_key(sequence: u64) -> String {
    format!("{HANDLED_PREFIX}{sequence}")
}

async fn handled(kv: &dyn KeyValue, sequence: u64) -> anyhow::Result<Option<Handled>> {
    let key = handled_key(sequence);
    let Some(entry) = kv.get(&key).await.with_context(|| format!("reading {key} in the writer's bucket"))? else {
        return Ok(None);
    };
    let handled = serde_json::from_slice(&entry.value)
        .with_context(|| format!("{key} in the writer's bucket is not a record of a handled dead letter"))?;
    Ok(Some(handled))
}

fn encode_handled(handled: &Handled) -> anyhow::Result<Bytes> {
    Ok(Bytes::from(serde_json::to_vec(handled).context("encoding a handled dead letter's record")?))
}

/// Appends the letter's command again for the writer and records the retry, unless the letter
/// must not be retried (the `Err` of the inner result says why).
pub(crate) async fn retry(
    log: &dyn EventLog,
    layout: &Layout,
    letter: &DeadLetter,
    now: Timestamp,
) -> anyhow::Result<Result<Retried, Refusal>> {
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
        Envelope::with_window_edge(now, window_edge, command.clone()).context("encoding the command again")?;
    let payload = doorsync_proto::encode(&envelope).context("encoding the command again")?;
    let subject = layout.subjects.command(command.member());
    let message = NewMessage::new(subject, envelope.id.to_string(), payload);
    let appended = doorsync_log::append_with_retry(log, message, RetryPolicy::default())
        .await
        .context("appending the command again")?;
    if appended.duplicate {
        bail!(
            "the log already holds this command with the same id (command {}): it was retried a moment ago; \
             `doorsync dlq list --all` shows it",
            appended.sequence
        );
    }
    let retried = Retried { command_sequence: appended.sequence, command_id: envelope.id };
    let record = Handled {
        at: now,
        action: Action::Retried { command_sequence: retried.command_sequence, command_id: retried.command_id.clone() },
    };
    let key = handled_key(letter.sequence);
    let kv = writer_bucket(log, layout).await?;
    // The command is in the log now: record the retry whatever was recorded meanwhile.
    kv.put(&key, encode_handled(&record)?).await.with_context(|| {
        format!("recording the retry under {key} (the command was appended as {})", appended.sequence)
    })?;
    advance_handled_through(log, layout, kv.as_ref()).await?;
    Ok(Ok(retried))
}

/// The sequence of the newest command after `after` on the member's subject that is about the
/// same user or group as `command`.
async fn newer_for_same_target(
    log: &dyn EventLog,
    layout: &Layout,
    command: &Command,
    after: u64,
) -> anyhow::Result<Option<u64>> {
    let subject = layout.subjects.command(command.member());
    let request = ReplayRequest::whole(&layout.commands).filtered([subject]).from_sequence(after + 1);
    let reading = || format!("reading member {}'s later commands", command.member());
    let mut replay = log.replay(request).await.with_context(reading)?;
    let mut newest = None;
    while let Some(message) = replay.try_next().await.with_context(reading)? {
        // A later command this build cannot read was dead-lettered in turn, and is listed.
        if let Ok(later) = doorsync_proto::decode::<Command>(&message.payload)
            && target(&later.message) == target(command)
        {
            newest = Some(message.sequence);
        }
    }
    Ok(newest)
}

/// What a command is about, as the writer keys its work: the member's user, or the member's
/// membership of one group.
fn target(command: &Command) -> (MemberId, Option<KisiGroupId>) {
    let group = match command {
        Command::GrantGroup(grant) => Some(grant.group),
        Command::RevokeGroup(revoke) => Some(revoke.group),
        Command::EnsureUser(_) | Command::SuspendUser(_) | Command::RestoreUser(_) | Command::DeleteUser(_) => None,
    };
    (command.member(), group)
}

/// What became of each waiting dead letter on `retry --all`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RetryAll {
    pub(crate) retried: Vec<(DeadLetter, Retried)>,
    pub(crate) refused: Vec<(DeadLetter, Refusal)>,
}

/// Retries every dead letter not yet handled, oldest first, so that a user is ensured before
/// the groups that need it are granted.
pub(crate) async fn retry_all(log: &dyn EventLog, layout: &Layout, now: Timestamp) -> anyhow::Result<RetryAll> {
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
pub(crate) async fn drop_letter(
    log: &dyn EventLog,
    layout: &Layout,
    letter: &DeadLetter,
    now: Timestamp,
) -> anyhow::Result<Option<Handled>> {
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
        Err(error) => Err(error).with_context(|| format!("recording the drop under {key}")),
    }
}

fn describe_command(command: &Command) -> String {
    match command {
        Command::EnsureUser(_) => "ensure user".to_owned(),
        Command::GrantGroup(grant) => format!(
            "grant group {} ({})",
            grant.group,
            table::window(doorsync_access::Window { from: grant.valid_from, until: grant.valid_until })
        ),
        Command::RevokeGroup(revoke) => format!("revoke group {}", revoke.group),
        Command::SuspendUser(_) => "suspend user".to_owned(),
        Command::RestoreUser(_) => "restore user".to_owned(),
        Command::DeleteUser(_) => "delete user".to_owned(),
    }
}

fn letter_row(letter: &DeadLetter, all: bool) -> Vec<String> {
    let unknown = || "?".to_owned();
    let (command, at) = match &letter.command {
        Ok(envelope) => (describe_command(&envelope.message), envelope.occurred_at.to_string()),
        Err(_) => ("(unreadable)".to_owned(), unknown()),
    };
    let mut row = vec![
        letter.sequence.to_string(),
        letter.member.map_or_else(unknown, |member| member.to_string()),
        command,
        at,
        letter.command_sequence.map_or_else(unknown, |sequence| sequence.to_string()),
    ];
    if all {
        row.push(letter.handled.as_ref().map_or_else(|| "waiting".to_owned(), Handled::to_string));
    }
    row.push(letter.reason.clone());
    row
}

/// The table of dead letters (only those waiting unless `all`), and how many there are.
pub(crate) fn render_list(letters: &[DeadLetter], all: bool) -> String {
    let waiting = letters.iter().filter(|letter| letter.handled.is_none()).count();
    let handled = letters.len() - waiting;
    let shown: Vec<Vec<String>> =
        letters.iter().filter(|letter| all || letter.handled.is_none()).map(|letter| letter_row(letter, all)).collect();
    let mut text = String::new();
    if !shown.is_empty() {
        let mut headers = vec!["SEQUENCE", "MEMBER", "COMMAND", "COMMANDED AT", "COMMAND SEQ"];
        if all {
            headers.push("STATUS");
        }
        headers.push("REASON");
        text.push_str(&table::render(&headers, &shown));
        text.push('\n');
    }
    text.push_str(&format!(
        "{} waiting, {} retried or dropped{}.
",
        table::count(waiting, "dead letter", "dead letters"),
        handled,
        if all || handled == 0 { "" } else { " (--all shows them)" }
    ));
    if waiting > 0 {
        text.push_str(
            "Retry with `doorsync dlq retry <sequence>` (or --all); drop with `doorsync dlq drop <sequence>`.\n",
        );
    }
    text
}

fn describe_retry(letter: &DeadLetter, retried: &Retried) -> String {
    let command = letter
        .command
        .as_ref()
        .map_or_else(|_| "(unreadable)".to_owned(), |envelope| describe_command(&envelope.message));
    let member = letter.member.map_or_else(|| "?".to_owned(), |member| member.to_string());
    format!(
        "Retried dead letter {} (member {member}, {command}): appended again as command {} for the writer.",
        letter.sequence, retried.command_sequence
    )
}

fn render_retries(outcome: &RetryAll) -> String {
    let mut text = String::new();
    for (letter, retried) in &outcome.retried {
        text.push_str(&describe_retry(letter, retried));
        text.push('\n');
    }
    for (letter, refusal) in &outcome.refused {
        text.push_str(&format!("Skipped dead letter {}: {refusal}.\n", letter.sequence));
    }
    text.push_str(&format!(
        "{}, {} skipped.\n",
        table::count(outcome.retried.len(), "dead letter retried", "dead letters retried"),
        outcome.refused.len()
    ));
    text
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use clap::Parser;
    use doorsync_clock::SystemClock;
    use doorsync_kisi_sim::{Fault, FaultRule};
    use doorsync_proto::{GrantGroup, RevokeGroup};
    use doorsync_writer::WriterOptions;

    use super::*;
    use crate::ops::testing::{Kisi, TempLog, append_command, at, context, ensure, layout};

    fn grant(member: u64, group: KisiGroupId) -> Command {
        Command::GrantGroup(GrantGroup {
            member: MemberId(member),
            group,
            valid_from: None,
            valid_until: None,
            basis: 1,
        })
    }

    /// Appends the command as the engine does, then parks it as the writer does when it gives up
    /// on it; returns (command sequence, dead letter sequence).
    async fn dead_lettered(log: &dyn EventLog, layout: &Layout, command: Command, reason: &str) -> (u64, u64) {
        dead_lettered_at_edge(log, layout, command, None, reason).await
    }

    /// [`dead_lettered`] for a command the engine decided at or after the window edge `edge`.
    async fn dead_lettered_at_edge(
        log: &dyn EventLog,
        layout: &Layout,
        command: Command,
        edge: Option<Timestamp>,
        reason: &str,
    ) -> (u64, u64) {
        let envelope = Envelope::with_window_edge(at(0), edge, command).unwrap();
        let payload = Bytes::from(doorsync_proto::encode(&envelope).unwrap());
        let member = envelope.message.member();
        let command_message =
            NewMessage::new(layout.subjects.command(member), envelope.id.to_string(), payload.clone());
        let command_sequence = log.append(command_message).await.unwrap().sequence;
        let letter = NewMessage::new(layout.subjects.dead_letter(member), envelope.id.to_string(), payload)
            .with_header(REASON_HEADER, reason)
            .with_header(SEQUENCE_HEADER, command_sequence.to_string());
        (command_sequence, log.append(letter).await.unwrap().sequence)
    }

    async fn commands(log: &dyn EventLog, layout: &Layout) -> Vec<StoredMessage> {
        log.replay(ReplayRequest::whole(&layout.commands)).await.unwrap().try_collect().await.unwrap()
    }

    fn now() -> Timestamp {
        at(30)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn what_the_writer_dead_lettered_is_listed_and_a_retry_is_carried_out_by_it() {
        let kisi = Kisi::start(50).await;
        let lounge = kisi.handle.add_group("Lounge");
        let refused = Fault::Status { status: 422, retry_after: None };
        kisi.handle.inject(FaultRule::new(refused).times(3).method("POST").path("/role_assignments"));
        let layout = layout();
        let store = TempLog::new(&layout);
        let log = store.log.as_ref();
        let mut options = WriterOptions::new("writer-test", "main");
        options.backoff_first = Duration::from_millis(50);
        options.backoff_max = Duration::from_millis(500);
        options.reconcile_every = None;
        options.ack_wait = Duration::from_secs(5);
        options.lease_ttl = Duration::from_secs(3);
        let clock = Arc::new(SystemClock);
        let writer = doorsync_writer::start(options, kisi.client(), Arc::clone(&store.log), layout.clone(), clock)
            .await
            .unwrap();
        append_command(log, &layout, at(0), ensure(1)).await;
        let grant_sequence = append_command(log, &layout, at(0), grant(1, lounge)).await;
        eventually("the writer dead-letters the refused grant", || {
            let status = writer.status();
            status.dead_letters == 1 && status.backlog_commands == 0
        })
        .await;

        let letters = dead_letters(log, &layout).await.unwrap();
        assert_eq!(letters.len(), 1);
        let letter = &letters[0];
        assert_eq!(letter.member, Some(MemberId(1)));
        assert_eq!(letter.command.as_ref().map(|envelope| &envelope.message), Ok(&grant(1, lounge)));
        assert_eq!(letter.command_sequence, Some(grant_sequence));
        assert!(letter.reason.contains("422"), "{}", letter.reason);
        assert_eq!(letter.handled, None);
        let listed = render_list(&letters, false);
        assert!(listed.contains(&format!("grant group {lounge} (open .. open)")), "{listed}");
        assert!(listed.contains("1 dead letter waiting, 0 retried or dropped."), "{listed}");

        let retried = retry(log, &layout, letter, clock_now()).await.unwrap().unwrap();
        assert!(retried.command_sequence > grant_sequence);
        assert_ne!(Ok(&retried.command_id), letter.command.as_ref().map(|envelope| &envelope.id), "a new id");
        eventually("the writer carries out the retried grant", || kisi.handle.assignments().len() == 1).await;
        let user = kisi.handle.user_by_email("m1@example.test").unwrap();
        assert_eq!((kisi.handle.assignments()[0].user, kisi.handle.assignments()[0].group), (user.id, lounge));

        let letters = dead_letters(log, &layout).await.unwrap();
        assert!(matches!(
            &letters[0].handled,
            Some(Handled { action: Action::Retried { command_sequence, .. }, .. }) if *command_sequence == retried.command_sequence
        ));
        assert!(
            render_list(&letters, false)
                .starts_with("0 dead letters waiting, 1 retried or dropped (--all shows them).")
        );
        let report = writer.reconcile_now().await.unwrap();
        assert_eq!(report.failed, 0, "the writer's bucket still reads well with a dlq.* record in it: {report:?}");
        writer.shutdown().await;
    }

    fn clock_now() -> Timestamp {
        doorsync_clock::Clock::now(&SystemClock)
    }

    async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while !condition() {
            assert!(tokio::time::Instant::now() < deadline, "timed out waiting until {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn a_retry_appends_the_command_again_with_a_new_id_and_is_recorded() {
        let layout = layout();
        let store = TempLog::new(&layout);
        let log = store.log.as_ref();
        let (command_sequence, sequence) = dead_lettered(log, &layout, ensure(1), "Kisi refused").await;
        let letter = dead_letter(log, &layout, sequence).await.unwrap();

        let retried = retry(log, &layout, &letter, now()).await.unwrap().unwrap();

        let stored = commands(log, &layout).await;
        let appended = stored.last().unwrap();
        assert_eq!(
            (appended.sequence, &appended.subject),
            (retried.command_sequence, &layout.subjects.command(MemberId(1)))
        );
        assert!(appended.sequence > command_sequence, "above what the writer settled the user at");
        let envelope = doorsync_proto::decode::<Command>(&appended.payload).unwrap();
        assert_eq!((envelope.message, envelope.occurred_at), (ensure(1), now()));
        assert_eq!(appended.id.as_deref(), Some(retried.command_id.as_str()));
        assert_ne!(Some(&envelope.id), letter.command.as_ref().ok().map(|original| &original.id));

        let letter = dead_letter(log, &layout, sequence).await.unwrap();
        let handled = Handled {
            at: now(),
            action: Action::Retried { command_sequence: retried.command_sequence, command_id: retried.command_id },
        };
        assert_eq!(letter.handled, Some(handled.clone()));
        assert_eq!(retry(log, &layout, &letter, now()).await.unwrap(), Err(Refusal::Handled(handled)));
        assert_eq!(commands(log, &layout).await.len(), stored.len(), "nothing appended twice");
    }

    #[tokio::test]
    async fn a_retried_command_is_still_late_for_the_window_edge_it_was_due_to() {
        let layout = layout();
        let store = TempLog::new(&layout);
        let log = store.log.as_ref();
        let edge = Some(at(-5));
        let (_, sequence) = dead_lettered_at_edge(log, &layout, grant(1, KisiGroupId(9)), edge, "Kisi said 404").await;
        let letter = dead_letter(log, &layout, sequence).await.unwrap();

        retry(log, &layout, &letter, now()).await.unwrap().unwrap();

        let stored = commands(log, &layout).await;
        let envelope = doorsync_proto::decode::<Command>(&stored.last().unwrap().payload).unwrap();
        assert_eq!((envelope.occurred_at, envelope.window_edge), (now(), edge));
    }

    #[tokio::test]
    async fn a_letter_overtaken_by_a_newer_command_for_the_same_group_is_not_retried() {
        let layout = layout();
        let store = TempLog::new(&layout);
        let log = store.log.as_ref();
        let (_, sequence) = dead_lettered(log, &layout, grant(1, KisiGroupId(100)), "refused").await;
        let revoke = Command::RevokeGroup(RevokeGroup { member: MemberId(1), group: KisiGroupId(100), basis: 2 });
        let revoked_at = append_command(log, &layout, at(1), revoke).await;
        append_command(log, &layout, at(1), grant(1, KisiGroupId(200))).await;
        let appended = commands(log, &layout).await.len();
        let letter = dead_letter(log, &layout, sequence).await.unwrap();

        let refused = retry(log, &layout, &letter, now()).await.unwrap();

        assert_eq!(refused, Err(Refusal::Overtaken { by: revoked_at }));
        assert!(refused.unwrap_err().to_string().contains("drop this one"));
        assert_eq!(commands(log, &layout).await.len(), appended);
        assert_eq!(dead_letter(log, &layout, sequence).await.unwrap().handled, None);
    }

    #[tokio::test]
    async fn a_dropped_letter_is_hidden_unless_all_are_asked_for_and_is_not_retried() {
        let layout = layout();
        let store = TempLog::new(&layout);
        let log = store.log.as_ref();
        let (_, dropped) = dead_lettered(log, &layout, grant(2, KisiGroupId(200)), "Kisi: 422").await;
        dead_lettered(log, &layout, ensure(3), "no email").await;
        let letter = dead_letter(log, &layout, dropped).await.unwrap();

        assert_eq!(drop_letter(log, &layout, &letter, now()).await.unwrap(), None);

        let letters = dead_letters(log, &layout).await.unwrap();
        let waiting = render_list(&letters, false);
        assert!(!waiting.lines().any(|line| line.contains("grant group 200")), "{waiting}");
        assert!(waiting.contains("1 dead letter waiting, 1 retried or dropped (--all shows them)."), "{waiting}");
        let all = render_list(&letters, true);
        let dropped_row = all.lines().find(|line| line.contains("grant group 200")).unwrap();
        assert!(dropped_row.contains(&format!("dropped at {}", now())) && dropped_row.ends_with("Kisi: 422"), "{all}");
        assert!(all.lines().next().unwrap().contains("STATUS"), "{all}");
        let handled = Handled { at: now(), action: Action::Dropped };
        let letter = dead_letter(log, &layout, dropped).await.unwrap();
        assert_eq!(drop_letter(log, &layout, &letter, at(40)).await.unwrap(), Some(handled.clone()));
        assert_eq!(retry(log, &layout, &letter, now()).await.unwrap(), Err(Refusal::Handled(handled)));
    }

    #[tokio::test]
    async fn retry_all_retries_the_waiting_letters_oldest_first_and_says_why_it_skipped_others() {
        let layout = layout();
        let store = TempLog::new(&layout);
        let log = store.log.as_ref();
        let (_, overtaken) = dead_lettered(log, &layout, grant(1, KisiGroupId(100)), "refused").await;
        let (_, user) = dead_lettered(log, &layout, ensure(1), "refused").await;
        // The engine's later grant for the group was computed from a later event.
        let later =
            GrantGroup { member: MemberId(1), group: KisiGroupId(100), valid_from: None, valid_until: None, basis: 3 };
        let (_, group) = dead_lettered(log, &layout, Command::GrantGroup(later.clone()), "no user").await;
        let unreadable = NewMessage::new(layout.subjects.dead_letter(MemberId(3)), "undecodable-9", &b"\xc1"[..])
            .with_header(REASON_HEADER, "undecodable command: garbage")
            .with_header(SEQUENCE_HEADER, "9");
        let unreadable = log.append(unreadable).await.unwrap().sequence;

        let outcome = retry_all(log, &layout, now()).await.unwrap();

        let retried: Vec<u64> = outcome.retried.iter().map(|(letter, _)| letter.sequence).collect();
        assert_eq!(retried, [user, group]);
        let refused: Vec<(u64, bool)> = outcome
            .refused
            .iter()
            .map(|(letter, refusal)| (letter.sequence, matches!(refusal, Refusal::Undecodable(_))))
            .collect();
        assert_eq!(refused, [(overtaken, false), (unreadable, true)]);
        let appended: Vec<Command> = commands(log, &layout).await[3..]
            .iter()
            .map(|message| doorsync_proto::decode::<Command>(&message.payload).unwrap().message)
            .collect();
        assert_eq!(appended, [ensure(1), Command::GrantGroup(later)], "the user before the group that needs it");
        let text = render_retries(&outcome);
        assert!(text.ends_with("2 dead letters retried, 2 skipped.\n"), "{text}");
        let listed = render_list(&dead_letters(log, &layout).await.unwrap(), false);
        let unreadable_row = listed.lines().find(|line| line.starts_with(&unreadable.to_string())).unwrap();
        assert!(unreadable_row.contains("(unreadable)") && unreadable_row.contains(" 3 "), "{listed}");
    }

    #[tokio::test]
    async fn an_unknown_sequence_is_an_error_that_says_where_to_look() {
        let layout = layout();
        let store = TempLog::new(&layout);
        dead_lettered(store.log.as_ref(), &layout, ensure(1), "refused").await;
        let error = dead_letter(store.log.as_ref(), &layout, 7).await.unwrap_err().to_string();
        assert!(error.contains("no dead letter 7") && error.contains("dlq list --all"), "{error}");
    }

    #[tokio::test]
    async fn the_command_opens_the_configured_log_and_leaves_it_closed() {
        let layout = layout();
        let store = TempLog::new(&layout);
        let (_, sequence) = dead_lettered(store.log.as_ref(), &layout, ensure(1), "refused").await;
        let dir = store.close().await;
        let context = context(&dir, None, &[]);

        dlq(&context, DlqAction::Drop { sequence }).await.unwrap();
        dlq(&context, DlqAction::List { all: true }).await.unwrap();
        let missing = dlq(&context, DlqAction::Retry { sequence: None, all: false }).await.unwrap_err();
        assert!(missing.to_string().contains("--all"), "{missing}");
        let refused = dlq(&context, DlqAction::Retry { sequence: Some(sequence), all: false }).await.unwrap_err();
        assert!(refused.to_string().contains("already dropped"), "{refused}");

        let reopened = doorsync_log_embedded::EmbeddedLog::open(doorsync_log_embedded::EmbeddedOptions::new(
            &context.config.log.path,
            layout.streams(),
        ))
        .unwrap();
        let letter = dead_letter(&reopened, &layout, sequence).await.unwrap();
        assert!(matches!(letter.handled, Some(Handled { action: Action::Dropped, .. })));
    }

    #[tokio::test]
    async fn the_status_page_reads_the_dead_letters_from_the_first_still_waiting_not_the_whole_stream() {
        let layout = layout();
        let store = TempLog::new(&layout);
        let log = store.log.as_ref();
        for member in 1..=120 {
            dead_lettered(log, &layout, ensure(member), "422 from POST /users").await;
        }
        let sequences = |letters: &[DeadLetter]| letters.iter().map(|letter| letter.sequence).collect::<Vec<u64>>();
        let drop = async |sequence: u64| {
            let letter = dead_letter(log, &layout, sequence).await.unwrap();
            assert_eq!(drop_letter(log, &layout, &letter, now()).await.unwrap(), None);
        };
        for sequence in (1..=100).filter(|sequence| *sequence != 3) {
            drop(sequence).await;
        }
        let listed = dead_letters(log, &layout).await.unwrap();
        assert_eq!(sequences(&listed), (3..=120).collect::<Vec<u64>>(), "from the oldest still waiting");

        drop(3).await;
        let listed = dead_letters(log, &layout).await.unwrap();
        assert_eq!(sequences(&listed), (71..=120).collect::<Vec<u64>>(), "the latest, waiting or not");
        assert_eq!(listed.iter().filter(|letter| letter.handled.is_none()).count(), 20);
        assert_eq!(every_dead_letter(log, &layout).await.unwrap().len(), 120, "`dlq list` still lists them all");
    }

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(subcommand)]
        action: DlqAction,
    }

    #[test]
    fn retry_takes_a_sequence_or_all_but_not_both() {
        let parse = |args: &[&str]| Cli::try_parse_from(["dlq"].iter().chain(args)).map(|cli| cli.action);
        assert_eq!(parse(&["list"]).unwrap(), DlqAction::List { all: false });
        assert_eq!(parse(&["list", "--all"]).unwrap(), DlqAction::List { all: true });
        assert_eq!(parse(&["retry", "5"]).unwrap(), DlqAction::Retry { sequence: Some(5), all: false });
        assert_eq!(parse(&["retry", "--all"]).unwrap(), DlqAction::Retry { sequence: None, all: true });
        assert_eq!(parse(&["drop", "3"]).unwrap(), DlqAction::Drop { sequence: 3 });
        assert!(parse(&["retry"]).is_err());
        assert!(parse(&["retry", "5", "--all"]).is_err());
        assert!(parse(&["drop"]).is_err());
    }
}
