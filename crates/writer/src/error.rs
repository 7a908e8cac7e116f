use doorsync_log::LogError;

/// What the writer's handle can answer instead of success.
#[derive(Debug, thiserror::Error)]
pub enum WriterError {
    #[error("writer options: {0}")]
    InvalidOptions(String),
    #[error("writer: {0}")]
    Log(#[from] LogError),
    #[error("writer: this writer is on standby (another writer holds the account's lease); ask the active one")]
    NotActive,
    #[error("writer: paused until Kisi accepts the API key again: {reason}")]
    Paused { reason: String },
    #[error("writer: no repair is held")]
    NothingHeld,
    #[error("writer: stopped")]
    Stopped,
    #[error("writer: cannot encode {what}: {reason}")]
    Encode { what: &'static str, reason: String },
}
