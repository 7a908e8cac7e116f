use doorsync_log::{LogError, Sequence};
use doorsync_proto::{DecodeError, MemberId, Partition};

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("encoding a command: {0}")]
    Encode(#[from] doorsync_proto::EncodeError),
    #[error(
        "message {sequence} in the log cannot be read ({source}); was it written by a newer doorsync? Upgrade this engine"
    )]
    Undecodable {
        sequence: Sequence,
        #[source]
        source: DecodeError,
    },
    #[error("the snapshot of member {member} cannot be read: {source}")]
    SnapshotUnreadable {
        member: MemberId,
        #[source]
        source: rmp_serde::decode::Error,
    },
    #[error("the snapshot of member {member} cannot be encoded: {source}")]
    SnapshotUnencodable {
        member: MemberId,
        #[source]
        source: rmp_serde::encode::Error,
    },
    #[error("the checkpoint of partition {partition} cannot be read: {source}")]
    CheckpointUnreadable {
        partition: Partition,
        #[source]
        source: rmp_serde::decode::Error,
    },
    #[error("the checkpoint of partition {partition} cannot be encoded: {source}")]
    CheckpointUnencodable {
        partition: Partition,
        #[source]
        source: rmp_serde::encode::Error,
    },
    #[error("member {member} did not save its snapshot: {source}")]
    SnapshotNotSaved {
        member: MemberId,
        #[source]
        source: ractor::RactorErr<()>,
    },
    #[error("starting {what}: {source}")]
    Spawn {
        what: String,
        #[source]
        source: ractor::SpawnErr,
    },
    #[error("{what} stopped: {source}")]
    TaskStopped {
        what: String,
        #[source]
        source: tokio::task::JoinError,
    },
    #[error("partition {partition}: reading the log failed: {source}")]
    Feed {
        partition: Partition,
        #[source]
        source: Box<EngineError>,
    },
    #[error("the shard actor stopped")]
    ShardGone,
    #[error("partition {partition} is not owned by this engine")]
    NotOwned { partition: Partition },
}
