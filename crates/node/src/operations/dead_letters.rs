//! One dead letter retried or dropped by its sequence, with the letter itself, so that whoever
//! asked can say which command it was.

use doorsync_layout::Layout;
use doorsync_log::{EventLog, Sequence};
use doorsync_proto::Timestamp;
use doorsync_writer::dead_letters::{self, DeadLetter, DeadLetterError, Handled, Refusal, Retried};
use serde::{Deserialize, Serialize};

/// A dead letter handed back to the writer, or why it was not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryOne {
    pub letter: DeadLetter,
    pub result: Result<Retried, Refusal>,
}

/// A dead letter marked as dealt with; `already` when it had been retried or dropped before.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DropOne {
    pub letter: DeadLetter,
    pub already: Option<Handled>,
}

pub async fn retry_one(
    log: &dyn EventLog,
    layout: &Layout,
    sequence: Sequence,
    now: Timestamp,
) -> Result<RetryOne, DeadLetterError> {
    let letter = dead_letters::dead_letter(log, layout, sequence).await?;
    let result = dead_letters::retry(log, layout, &letter, now).await?;
    Ok(RetryOne { letter, result })
}

pub async fn drop_one(
    log: &dyn EventLog,
    layout: &Layout,
    sequence: Sequence,
    now: Timestamp,
) -> Result<DropOne, DeadLetterError> {
    let letter = dead_letters::dead_letter(log, layout, sequence).await?;
    let already = dead_letters::drop_letter(log, layout, &letter, now).await?;
    Ok(DropOne { letter, already })
}
