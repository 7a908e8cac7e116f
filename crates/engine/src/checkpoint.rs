//! A partition's checkpoint: how far its members' snapshots reach, and what a restart needs to
//! resume from there instead of from the start of the log.
//!
//! A checkpoint is written only after every live member's snapshot is saved, and records the
//! commands stream's end as read before those snapshots: commands appended meanwhile are replayed
//! (idempotently) after a restart rather than skipped.

use bytes::Bytes;
use doorsync_access::Mapping;
use doorsync_log::Sequence;
use doorsync_proto::{MemberId, Partition, Timestamp};
use ractor::ActorRef;
use serde::{Deserialize, Serialize};

use crate::EngineError;
use crate::member::MemberMsg;
use crate::shard::CALL_TIMEOUT;
use crate::shared::Shared;
use crate::skipped::SkippedMessages;

/// How far the partition's members' snapshots reach, and what is needed to resume.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Checkpoint {
    pub(crate) events: Sequence,
    pub(crate) mapping_events: Sequence,
    pub(crate) commands: Sequence,
    pub(crate) outcomes: Sequence,
    /// When the mapping last changed (from its events): part of every command's time, so a
    /// grant that returns after its group was unmapped and mapped again gets a new id.
    pub(crate) mapping_changed_at: Timestamp,
    /// The mapping as built from mapping events; the configured mapping is laid over it.
    pub(crate) event_mapping: Mapping,
    /// Every member with state in this partition, and when each next needs evaluating.
    pub(crate) members: Vec<(MemberId, Option<Timestamp>)>,
    /// The configuration every member was last evaluated with (see
    /// [`configuration_digest`](doorsync_access::configuration_digest)); `None` in checkpoints
    /// of builds that did not record it.
    #[serde(default)]
    pub(crate) evaluated_with: Option<[u8; 32]>,
    #[serde(default)]
    pub(crate) skipped: SkippedMessages,
}

fn checkpoint_key(partition: Partition) -> String {
    format!("checkpoint.{partition}")
}

impl Checkpoint {
    /// Where a partition with no checkpoint starts: the beginning of every stream.
    pub(crate) fn beginning() -> Self {
        Self {
            events: Sequence::BEFORE_FIRST,
            mapping_events: Sequence::BEFORE_FIRST,
            commands: Sequence::BEFORE_FIRST,
            outcomes: Sequence::BEFORE_FIRST,
            mapping_changed_at: Timestamp::from_unix_millis(0),
            event_mapping: Mapping::default(),
            members: Vec::new(),
            evaluated_with: None,
            skipped: SkippedMessages::default(),
        }
    }

    /// The partition's last checkpoint, if it has one.
    pub(crate) async fn load(shared: &Shared, partition: Partition) -> Result<Option<Self>, EngineError> {
        let Some(entry) = shared.kv.get(&checkpoint_key(partition)).await? else {
            return Ok(None);
        };
        rmp_serde::from_slice(&entry.value)
            .map(Some)
            .map_err(|source| EngineError::CheckpointUnreadable { partition, source })
    }

    pub(crate) async fn save(&self, shared: &Shared, partition: Partition) -> Result<(), EngineError> {
        let encoded =
            rmp_serde::to_vec_named(self).map_err(|source| EngineError::CheckpointUnencodable { partition, source })?;
        shared.kv.put(&checkpoint_key(partition), Bytes::from(encoded)).await?;
        Ok(())
    }
}

/// Has the member's actor save its snapshot.
pub(crate) async fn save_snapshot(member: MemberId, actor: &ActorRef<MemberMsg>) -> Result<(), EngineError> {
    match ractor::call_t!(actor, MemberMsg::Snapshot, CALL_TIMEOUT.as_millis() as u64) {
        Ok(result) => result,
        Err(error) => Err(EngineError::SnapshotNotSaved { member, source: error.map(|_| ()) }),
    }
}

/// Has every given member's actor save its snapshot, all at once.
pub(crate) async fn save_snapshots(
    live: impl Iterator<Item = (MemberId, ActorRef<MemberMsg>)>,
) -> Result<(), EngineError> {
    let saves = live.map(|(member, actor)| async move { save_snapshot(member, &actor).await });
    for saved in futures::future::join_all(saves).await {
        saved?;
    }
    Ok(())
}
