use doorsync_log::LogError;
use doorsync_proto::MemberId;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("encoding a command: {0}")]
    Encode(#[from] doorsync_proto::EncodeError),
    #[error(
        "message {sequence} in the log cannot be read ({reason}); was it written by a newer doorsync? Upgrade this engine"
    )]
    Undecodable { sequence: u64, reason: String },
    #[error("snapshot of member {member}: {reason}")]
    Snapshot { member: MemberId, reason: String },
    #[error("checkpoint of partition {partition}: {reason}")]
    Checkpoint { partition: u32, reason: String },
    #[error("member {member} did not save its snapshot: {reason}")]
    SnapshotNotSaved { member: MemberId, reason: String },
    #[error("starting an actor: {0}")]
    Spawn(String),
    #[error("the shard actor stopped")]
    ShardGone,
    #[error("partition {partition} is not owned by this engine")]
    NotOwned { partition: u32 },
}
