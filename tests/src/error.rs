use std::path::PathBuf;
use std::time::Duration;

/// What can go wrong while setting up or driving a site; each says what to look at.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    #[error("no doorsync binary at {}: build it with `cargo build -p doorsync-cli` (`cargo test --workspace` builds it only when doorsync-cli has integration tests of its own)", path.display())]
    BinaryMissing { path: PathBuf },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "doorsync {process} was not ready within {waited:?} (last answer of /readyz: {last_answer}); its log ends:\n{log}"
    )]
    NotReady { process: String, waited: Duration, last_answer: String, log: String },
    #[error("doorsync {process} exited with {status}; its log ends:\n{log}")]
    Exited { process: String, status: std::process::ExitStatus, log: String },
    #[error("timed out after {waited:?} waiting until {what}")]
    Timeout { what: String, waited: Duration },
    #[error("an HTTP request to doorsync: {0}")]
    Http(#[from] reqwest::Error),
    #[error("{0}")]
    Setup(String),
    #[error("a webhook URL: {0}")]
    Url(#[from] url::ParseError),
    #[error(transparent)]
    NatsServer(#[from] doorsync_test_support::HarnessError),
    #[error(transparent)]
    Kisi(#[from] doorsync_kisi_sim::SimError),
    #[error(transparent)]
    Nexudus(#[from] doorsync_nexudus_sim::SimError),
}

impl HarnessError {
    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let context = context.into();
        move |source| Self::Io { context, source }
    }
}
