use doorsync_log::LogError;
use doorsync_nexudus::NexudusError;

/// What can stop the ingestor or one of its runs.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error(transparent)]
    Nexudus(#[from] NexudusError),
    #[error("ingest: an event could not be encoded: {0}")]
    Encode(#[from] doorsync_proto::EncodeError),
    #[error(
        "ingest: key {key} of bucket {bucket} cannot be read ({reason}); was it written by a newer doorsync? \
         Upgrade this ingestor, or delete the key to have the record read again"
    )]
    Corrupt { bucket: String, key: String, reason: String },
    #[error("ingest: could not serve webhooks on {address}: {source}")]
    Serve {
        address: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("ingest: the ingestor is shut down")]
    ShutDown,
}

impl IngestError {
    pub(crate) fn corrupt(bucket: &str, key: &str, reason: impl std::fmt::Display) -> Self {
        Self::Corrupt { bucket: bucket.to_owned(), key: key.to_owned(), reason: reason.to_string() }
    }
}
