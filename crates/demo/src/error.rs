//! Why the demo stopped: each variant says what it was doing, and keeps the error that stopped it.

use std::path::PathBuf;

use doorsync_node::NodeError;

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error(
        "{} holds the log of an earlier demo, but the simulators start empty every time: give an empty --data-dir or remove that file",
        .0.display()
    )]
    EarlierLog(PathBuf),
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Node(#[from] NodeError),
    #[error("{what}")]
    Kisi {
        what: &'static str,
        #[source]
        source: Box<doorsync_kisi_sim::SimError>,
    },
    #[error("{what}")]
    Nexudus {
        what: &'static str,
        #[source]
        source: Box<doorsync_nexudus_sim::SimError>,
    },
    /// A record the workload writes to Nexudus.
    #[error(transparent)]
    NexudusRecord(Box<doorsync_nexudus_sim::SimError>),
    #[error("{0}")]
    Missing(&'static str),
    #[error("the webhook receiver's URL")]
    WebhookUrl(#[source] url::ParseError),
    #[error("reading Nexudus")]
    ReadNexudus(#[source] Box<doorsync_ingest::IngestError>),
    #[error(transparent)]
    Log(Box<doorsync_log::LogError>),
    #[error("the log's outcome stream ended")]
    OutcomesEnded,
    #[error("reading an outcome from the log")]
    Outcome(#[source] Box<doorsync_proto::DecodeError>),
    #[error("writing the log's path as a TOML string")]
    TomlString(#[source] serde_json::Error),
    #[error("no IANA zone for {0:?}")]
    UnknownZone(&'static str),
    #[error("time zone {zone}")]
    TimeZone {
        zone: &'static str,
        #[source]
        source: Box<jiff::Error>,
    },
    #[error("creating the locations in the simulators")]
    Furnish(#[source] Box<DemoError>),
    #[error("creating the members in the Nexudus simulator")]
    Enrol(#[source] Box<doorsync_nexudus_sim::SimError>),
}

impl From<doorsync_nexudus_sim::SimError> for DemoError {
    fn from(error: doorsync_nexudus_sim::SimError) -> Self {
        Self::NexudusRecord(Box::new(error))
    }
}

impl From<doorsync_log::LogError> for DemoError {
    fn from(error: doorsync_log::LogError) -> Self {
        Self::Log(Box::new(error))
    }
}

impl DemoError {
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let what = what.into();
        move |source| Self::Io { what, source }
    }
}
