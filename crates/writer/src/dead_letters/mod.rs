//! The dead letters: commands the writer gave up on, and what operators do about them.
//!
//! A dead letter is the refused command itself, appended by the writer to the member's
//! dead-letter subject with its reason ([`REASON_HEADER`](crate::REASON_HEADER)) and the
//! command's stream sequence ([`SEQUENCE_HEADER`](crate::SEQUENCE_HEADER)). The log has no
//! delete, so what was done about a letter is recorded in the writer's bucket under
//! `dlq.<sequence>` (the writer keeps `member.<id>` and `held-repair` there and reads nothing
//! else), with `dlq.handled-through` marking how far every letter was handled.
//!
//! A retry appends the command again to the member's command subject as a new message (a new
//! envelope at the current time, so a new id that the log's de-duplication does not swallow).
//! The writer takes it because its stream sequence is above the one it settled the key at when
//! it dead-lettered it. A command that a newer one for the same user or group has overtaken is
//! not retried: the writer works from the newer one, and the old one would undo it.
//!
//! This module is the only one that writes the `dlq.` keys of the writer's bucket.

mod handle;
mod read;
pub(crate) mod write;

use std::fmt;

use doorsync_log::{LogError, Sequence};
use doorsync_proto::{Command, EncodeError, Envelope, MemberId, MessageId, Timestamp};
use serde::{Deserialize, Serialize};

pub use handle::{drop_letter, retry, retry_all};
pub use read::{dead_letter, dead_letters, every_dead_letter};

/// Every dead letter up to this sequence of the stream was retried or dropped (a decimal number
/// in the writer's bucket, moved on as letters are handled). Under `dlq.`, which the roles that
/// read and handle dead letters are granted.
const HANDLED_THROUGH_KEY: &str = "dlq.handled-through";

/// One dead letter, read back from the dead-letter stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// Its sequence in the dead-letter stream: how operators name it.
    pub sequence: Sequence,
    pub member: Option<MemberId>,
    /// The refused command, or why this build cannot read it.
    #[serde(with = "command_or_why_not")]
    pub command: Result<Envelope<Command>, String>,
    pub reason: String,
    /// The command's sequence in the command stream.
    pub command_sequence: Option<Sequence>,
    pub handled: Option<Handled>,
}

/// A letter's command in the admin API's JSON: `{"command": {...}}`, or `{"unreadable": "why"}`
/// for one this build cannot read, rather than serde's `{"Ok": ...}` of a `Result`.
mod command_or_why_not {
    use doorsync_proto::{Command, Envelope};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    #[serde(rename_all = "snake_case")]
    enum Read<C, W> {
        Command(C),
        Unreadable(W),
    }

    pub(super) fn serialize<S: Serializer>(
        command: &Result<Envelope<Command>, String>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match command {
            Ok(envelope) => Read::Command(envelope),
            Err(why) => Read::Unreadable(why.as_str()),
        }
        .serialize(serializer)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Result<Envelope<Command>, String>, D::Error> {
        Ok(match Read::<Envelope<Command>, String>::deserialize(deserializer)? {
            Read::Command(envelope) => Ok(envelope),
            Read::Unreadable(why) => Err(why),
        })
    }
}

/// What an operator did about a dead letter, as recorded in the writer's bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Handled {
    pub at: Timestamp,
    pub action: Action,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Appended again as the command at this sequence, with this id.
    Retried {
        command_sequence: Sequence,
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Refusal {
    Handled(Handled),
    Undecodable(String),
    /// The letter does not say which command it parks (it was not written by doorsync's writer).
    NoCommandSequence,
    /// A newer command for the same user or group came after it, at this sequence.
    Overtaken {
        by: Sequence,
    },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Handled(handled) => write!(f, "it was already {handled}"),
            Self::Undecodable(reason) => write!(f, "this build cannot read the command ({reason}); drop it"),
            Self::NoCommandSequence => {
                write!(f, "it has no {} header, so it is not the writer's; drop it", crate::SEQUENCE_HEADER)
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retried {
    pub command_sequence: Sequence,
    pub command_id: MessageId,
}

/// What became of each waiting dead letter on a retry of them all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryAll {
    pub retried: Vec<(DeadLetter, Retried)>,
    pub refused: Vec<(DeadLetter, Refusal)>,
}

/// Why the dead letters could not be read or handled.
#[derive(Debug, thiserror::Error)]
pub enum DeadLetterError {
    #[error("opening the writer's bucket {bucket}")]
    OpenBucket {
        bucket: String,
        #[source]
        source: Box<LogError>,
    },
    #[error("reading the end of stream {stream}")]
    StreamEnd {
        stream: String,
        #[source]
        source: Box<LogError>,
    },
    #[error("reading the dead letters (stream {stream}) from {from}")]
    ReadLetters {
        stream: String,
        from: Sequence,
        #[source]
        source: Box<LogError>,
    },
    #[error("there is no dead letter {sequence}: `doorsync dlq list --all` shows them all")]
    NoSuchLetter { sequence: Sequence },
    #[error("reading {key} in the writer's bucket")]
    ReadKey {
        key: String,
        #[source]
        source: Box<LogError>,
    },
    #[error("{HANDLED_THROUGH_KEY} in the writer's bucket is not a sequence; delete it to rebuild it")]
    HandledThroughUnreadable,
    #[error("{key} in the writer's bucket is not a record of a handled dead letter")]
    HandledUnreadable {
        key: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("reading member {member}'s later commands")]
    ReadLaterCommands {
        member: MemberId,
        #[source]
        source: Box<LogError>,
    },
    #[error("encoding the command again")]
    EncodeCommand(#[source] EncodeError),
    #[error("appending the command again")]
    AppendCommand(#[source] LogError),
    #[error(
        "the log already holds this command with the same id (command {sequence}): it was retried a moment ago; \
         `doorsync dlq list --all` shows it"
    )]
    AlreadyAppended { sequence: Sequence },
    #[error("encoding a handled dead letter's record")]
    EncodeHandled(#[source] serde_json::Error),
    #[error("recording the retry under {key} (the command was appended as {appended})")]
    RecordRetry {
        key: String,
        appended: Sequence,
        #[source]
        source: Box<LogError>,
    },
    #[error("recording the drop under {key}")]
    RecordDrop {
        key: String,
        #[source]
        source: Box<LogError>,
    },
    #[error("recording {HANDLED_THROUGH_KEY} in the writer's bucket")]
    RecordHandledThrough(#[source] LogError),
}

#[cfg(test)]
mod tests;
