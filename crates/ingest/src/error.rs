use doorsync_log::LogError;
use doorsync_nexudus::NexudusError;

/// What can stop the ingestor or one of its runs.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error(transparent)]
    Nexudus(#[from] NexudusError),
    #[error("ingest: {0}")]
    Catalogue(Box<doorsync_catalogue::CatalogueError>),
    #[error("ingest: an event could not be encoded: {0}")]
    Encode(#[from] doorsync_proto::EncodeError),
    #[error(
        "ingest: key {key} of bucket {bucket} cannot be read ({source}); was it written by a newer doorsync? \
         Upgrade this ingestor, or delete the key to have the record read again"
    )]
    Corrupt {
        bucket: String,
        key: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("ingest: could not serve webhooks on {address}: {source}")]
    Serve {
        address: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("ingest: the ingestor is shut down")]
    ShutDown,
    /// Another ingestor holds the lease: only the active one reads Nexudus and appends.
    #[error(
        "ingest: this ingestor is on standby ({holder} holds the ingest lease); only the active ingestor reads \
         Nexudus and appends, and this one takes over when that one stops or its lease lapses"
    )]
    Standby { holder: String },
    /// A read by id answered as if the record were deleted, but a listing by its id could not
    /// confirm it (it held other records: this Nexudus may ignore the `id` parameter).
    #[error(
        "ingest: {entity} {id}: {answer}, and a listing by id=[{id}] answered with other records, so whether it \
         was deleted is unknown; it is read again later (and the sweep finds it if it is gone)"
    )]
    DeletionUnconfirmed { entity: &'static str, id: u64, answer: String },
}

impl From<doorsync_catalogue::CatalogueError> for IngestError {
    fn from(error: doorsync_catalogue::CatalogueError) -> Self {
        Self::Catalogue(Box::new(error))
    }
}

impl IngestError {
    /// Whether the error is about reading Nexudus (about one record or what it refers to), as
    /// opposed to the log or the ingest bucket failing: such a record goes to the retry set, and
    /// never fails a webhook.
    pub(crate) fn is_about_nexudus(&self) -> bool {
        matches!(self, Self::Nexudus(_) | Self::DeletionUnconfirmed { .. })
    }

    pub(crate) fn corrupt(bucket: &str, key: &str, source: serde_json::Error) -> Self {
        Self::Corrupt { bucket: bucket.to_owned(), key: key.to_owned(), source }
    }
}
