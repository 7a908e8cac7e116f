//! What the operator's commands do, in one place for the binary (on the log it opens itself) and
//! for the admin API (on the log a running `doorsync run` holds, whose embedded log file no other
//! process can open): the dead letters listed, retried and dropped through
//! `doorsync_writer::dead_letters`, and the dry run of `doorsync replay --dry-run` and `doorsync
//! reconcile --dry-run`: every member rebuilt from the log ([`rebuild`]), what Kisi holds read
//! without writing, and the writer's own planner ([`doorsync_writer::dry_run`]) saying what a
//! reconciliation would change. The answers are data; the binary turns them into text.

mod dead_letters;
mod dry_run;
mod kisi_read;
mod rebuild;
pub(crate) mod routes;

use doorsync_kisi::KisiError;
use doorsync_log::{LogError, Sequence};

use crate::NodeError;

pub use dead_letters::{DropOne, RetryOne, drop_one, retry_one};
pub use dry_run::{DryRun, dry_run};
pub use rebuild::{Rebuilt, rebuild};

/// Why an operation could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum OperationError {
    #[error("reading stream {stream}")]
    ReadStream {
        stream: String,
        #[source]
        source: Box<LogError>,
    },
    /// A message this build cannot read stops a rebuild, as it stops the engine: a state
    /// rebuilt without it would be wrong.
    #[error("stream {stream}, sequence {sequence}: this build cannot read the message (is doorsync up to date?)")]
    UnreadableMessage {
        stream: String,
        sequence: Sequence,
        #[source]
        source: doorsync_proto::DecodeError,
    },
    #[error("reading what Kisi holds (nothing was written): {reading}")]
    KisiRead {
        reading: String,
        #[source]
        source: Box<KisiError>,
    },
    #[error(transparent)]
    Setup(#[from] NodeError),
    #[error(transparent)]
    DeadLetter(#[from] doorsync_writer::dead_letters::DeadLetterError),
}

impl OperationError {
    /// Wraps a failed Kisi request with what was being read.
    fn kisi(reading: impl Into<String>) -> impl FnOnce(KisiError) -> Self {
        let reading = reading.into();
        move |source| Self::KisiRead { reading, source: Box::new(source) }
    }
}
