use doorsync_log::LogError;

/// Why the catalogue could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum CatalogueError {
    #[error("cannot {action} the catalogue bucket {bucket}: {source}")]
    Log {
        action: &'static str,
        bucket: String,
        #[source]
        source: LogError,
    },
    #[error("cannot encode the catalogue record {key}: {source}")]
    Encode {
        key: String,
        #[source]
        source: rmp_serde::encode::Error,
    },
}
