//! Messages in the log that are not doorsync's at all, skipped instead of halting a partition.
//!
//! A message written by a newer doorsync (a schema version or a message type this build does not
//! know) still halts its partition: reading it wrongly could open a door, and an upgrade reads it
//! right. But bytes that are no envelope of any version (written straight to the stream by a
//! tool or by mistake) can never be read by any build: halting on them would stop every member of
//! the partition for good. They are skipped, logged as errors, counted, and listed in the status.

use std::collections::VecDeque;

use doorsync_log::Sequence;
use doorsync_proto::{DecodeError, Envelope, Timestamp, WireMessage};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::EngineError;

/// How many skipped messages a partition lists; the count covers them all.
const LISTED: usize = 20;

/// A message of the log that was skipped, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedMessage {
    pub stream: String,
    pub subject: String,
    pub sequence: Sequence,
    pub reason: String,
    /// When this engine first skipped it.
    pub skipped_at: Timestamp,
}

/// What reading one message gave.
pub(crate) enum Read<M> {
    Message(Box<Envelope<M>>),
    /// Not an envelope of any schema: to be skipped.
    Garbage(String),
}

/// Decodes a message of the log; `Err` only for what a newer doorsync wrote, which halts.
pub(crate) fn read<M: WireMessage + DeserializeOwned>(
    sequence: Sequence,
    payload: &[u8],
) -> Result<Read<M>, EngineError> {
    match doorsync_proto::decode::<M>(payload) {
        Ok(envelope) => Ok(Read::Message(Box::new(envelope))),
        Err(DecodeError::Malformed(error)) => Ok(Read::Garbage(format!("not a doorsync message: {error}"))),
        Err(source) => Err(EngineError::Undecodable { sequence, source }),
    }
}

/// The messages one partition skipped: the latest few, and how many in all.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct SkippedMessages {
    latest: VecDeque<SkippedMessage>,
    total: u64,
}

impl SkippedMessages {
    /// Records a skip, unless it is one already recorded (a replay from an older checkpoint
    /// reads it again). Returns whether it was new.
    pub(crate) fn record(&mut self, skipped: SkippedMessage) -> bool {
        let seen = |known: &SkippedMessage| known.stream == skipped.stream && known.sequence == skipped.sequence;
        if self.latest.iter().any(seen) {
            return false;
        }
        if self.latest.len() == LISTED {
            self.latest.pop_front();
        }
        self.latest.push_back(skipped);
        self.total += 1;
        true
    }

    pub(crate) fn latest(&self) -> Vec<SkippedMessage> {
        self.latest.iter().cloned().collect()
    }

    pub(crate) fn total(&self) -> u64 {
        self.total
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use doorsync_proto::{Event, MemberChanged, MemberId};

    use super::*;

    fn skipped(sequence: Sequence) -> SkippedMessage {
        SkippedMessage {
            stream: "events".to_owned(),
            subject: "test.evt.0.1".to_owned(),
            sequence,
            reason: "not a doorsync message".to_owned(),
            skipped_at: Timestamp::from_unix_millis(0),
        }
    }

    #[test]
    fn garbage_is_skipped_and_a_newer_schema_halts() {
        assert!(matches!(read::<Event>(Sequence(1), b"\xc1 not msgpack"), Ok(Read::Garbage(_))));
        let event = Event::MemberChanged(MemberChanged {
            member: MemberId(1),
            email: "a@example.test".to_owned(),
            name: "A".to_owned(),
            active: true,
        });
        let mut envelope = Envelope::new(Timestamp::from_unix_millis(0), event).unwrap();
        assert!(matches!(
            read::<Event>(Sequence(2), &doorsync_proto::encode(&envelope).unwrap()),
            Ok(Read::Message(_))
        ));
        envelope.version = doorsync_proto::SCHEMA_VERSION + 1;
        let newer = doorsync_proto::encode(&envelope).unwrap();
        assert!(matches!(
            read::<Event>(Sequence(3), &newer),
            Err(EngineError::Undecodable { sequence: Sequence(3), .. })
        ));
    }

    #[test]
    fn a_skip_read_again_is_counted_once_and_the_list_keeps_the_latest() {
        let mut skips = SkippedMessages::default();
        assert!(skips.record(skipped(Sequence(1))));
        assert!(!skips.record(skipped(Sequence(1))));
        for sequence in 2..=(LISTED as u64 + 5) {
            skips.record(skipped(Sequence(sequence)));
        }
        assert_eq!(skips.total(), LISTED as u64 + 5);
        let latest = skips.latest();
        assert_eq!(latest.len(), LISTED);
        assert_eq!(latest.last().map(|skip| skip.sequence), Some(Sequence(LISTED as u64 + 5)));
    }
}
