use std::time::Duration;

use crate::Sequence;

pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything the log can answer instead of success.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error(
        "append to {subject}: expected its last sequence to be {expected}, but another writer appended first; re-read the subject and retry"
    )]
    WrongLastSequence { subject: String, expected: Sequence },

    #[error("key-value {bucket}/{key}: the revision moved on (another writer got there first)")]
    KvConflict { bucket: String, key: String },

    #[error("append to {subject}: no stream captures this subject; check the subject prefix in the config")]
    NoStream { subject: String },

    #[error("stream {stream} does not exist")]
    UnknownStream { stream: String },

    #[error("invalid {what} {value:?}: {reason}")]
    Invalid { what: &'static str, value: String, reason: String },

    #[error(
        "nats-server {found} at {url} is too old: doorsync needs 2.10 or newer (JetStream KV and consumer fields are missing or silently ignored before it); upgrade the server"
    )]
    ServerTooOld { url: String, found: String },

    #[error(
        "{what} {name}: the server kept {field} = {got} where doorsync asked for {asked}; fix or remove the existing {what}, or upgrade the server"
    )]
    ConfigMismatch { what: &'static str, name: String, field: &'static str, asked: String, got: String },

    #[error("event log unavailable: {context}")]
    Unavailable {
        context: String,
        #[source]
        source: Option<BoxError>,
    },

    #[error("event log timed out after {after:?}: {context}")]
    TimedOut { context: String, after: Duration },

    #[error("event log storage failed: {context}")]
    Storage {
        context: String,
        #[source]
        source: Option<BoxError>,
    },

    #[error("event log closed: {context}")]
    Closed { context: String },
}

impl LogError {
    pub fn invalid(what: &'static str, value: &str, reason: impl Into<String>) -> Self {
        Self::Invalid { what, value: value.to_owned(), reason: reason.into() }
    }

    pub fn unavailable(context: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Self::Unavailable { context: context.into(), source: Some(source.into()) }
    }

    pub fn storage(context: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Self::Storage { context: context.into(), source: Some(source.into()) }
    }

    /// True when the same call may succeed later without anything being changed: the caller
    /// should retry it (with the same message id) after a backoff.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable { .. } | Self::TimedOut { .. })
    }
}
