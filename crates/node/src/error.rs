//! Why a process could not start: each variant names the step and the configuration key to look
//! at, and keeps the error that stopped it as its source.

use std::net::SocketAddr;
use std::path::PathBuf;

use doorsync_config::ConfigError;

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("doorsync cannot start with this configuration")]
    Load(#[source] ConfigError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("config: log.subject_prefix / log.partitions")]
    Subjects(#[source] doorsync_proto::SubjectError),
    #[error(
        "doorsync {command} runs on the {needed} log, but the configuration says log.backend = {configured:?}: set log.backend (or DOORSYNC_LOG__BACKEND) to {needed:?}"
    )]
    WrongBackend { command: String, needed: &'static str, configured: &'static str },
    #[error("creating {} for the embedded log (log.path)", directory.display())]
    LogDirectory {
        directory: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("opening the embedded log at {} (log.path)", path.display())]
    OpenEmbedded {
        path: PathBuf,
        #[source]
        source: Box<doorsync_log::LogError>,
    },
    #[error("connecting to NATS at {url} (log.nats_url)")]
    ConnectNats {
        url: String,
        #[source]
        source: Box<doorsync_log::LogError>,
    },
    #[error("config: kisi")]
    KisiClient(#[source] Box<doorsync_kisi::KisiError>),
    #[error("config: nexudus")]
    NexudusClient(#[source] Box<doorsync_nexudus::SetupError>),
    #[error("resolving [[mapping]] kisi_group_name")]
    MappingClient(#[source] Box<NodeError>),
    #[error("config: mapping[{index}]: looking up Kisi group {name:?}")]
    GroupLookup {
        index: usize,
        name: String,
        #[source]
        source: Box<doorsync_kisi::KisiError>,
    },
    #[error("config: mapping[{index}]: Kisi has no group named {name:?}; check kisi_group_name")]
    NoSuchGroup { index: usize, name: String },
    #[error("config: mapping[{index}] names no Kisi group")]
    UnnamedGroup { index: usize },
    #[error("starting the Nexudus ingestor")]
    Ingest(#[source] Box<doorsync_ingest::IngestError>),
    #[error("listening for Nexudus webhooks on {listen} (nexudus.webhook_listen)")]
    Webhooks {
        listen: SocketAddr,
        #[source]
        source: Box<doorsync_ingest::IngestError>,
    },
    #[error("starting the access engine")]
    Engine(#[source] Box<doorsync_engine::EngineError>),
    #[error("starting the Kisi writer")]
    Writer(#[source] Box<doorsync_writer::WriterError>),
    #[error("starting the admin listener")]
    Admin(#[source] Box<doorsync_admin::AdminError>),
}

/// An error followed by each of its sources, `: `-separated: the whole story of a failure where
/// only text can carry it (a page, a simulation's report, the binary's last words). A source
/// whose text the story already tells (an error that prints its source and also names it as
/// its source) is not told twice.
pub fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(source) = cause {
        let told = source.to_string();
        if !text.contains(&told) {
            text = format!("{text}: {told}");
        }
        cause = source.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_source_follows_its_error() {
        let io = std::io::Error::other("disk full");
        let error = NodeError::LogDirectory { directory: PathBuf::from("/data"), source: io };

        assert_eq!(with_causes(&error), "creating /data for the embedded log (log.path): disk full");
    }

    #[test]
    fn a_source_the_error_already_prints_is_not_told_again() {
        let bind = doorsync_admin::AdminError::Bind {
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], 9090)),
            source: std::io::Error::from(std::io::ErrorKind::AddrInUse),
        };
        let error = NodeError::Admin(Box::new(bind));

        let text = with_causes(&error);

        assert_eq!(text.matches("address in use").count(), 1, "{text}");
        assert!(text.starts_with("starting the admin listener: admin: cannot listen on 127.0.0.1:9090"), "{text}");
    }
}
