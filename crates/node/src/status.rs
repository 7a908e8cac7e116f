//! What the roles of a process report, and of its peers in a split deployment.

use std::time::Duration;

use doorsync_ingest::IngestHandle;
use doorsync_writer::WriterHandle;
use serde::{Deserialize, Serialize};

use crate::process::Running;

/// Everything the roles of this process report, as `/api/status` serves it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    pub engine: Option<Vec<doorsync_engine::ShardStats>>,
    pub writer: Option<doorsync_writer::WriterStatus>,
    pub ingest: Option<doorsync_ingest::IngestStatus>,
}

impl Status {
    /// This process's status, completed with the writer's and the ingestor's from the peers when
    /// they do not run here; also what could not be asked.
    pub async fn with_peers(running: &Running) -> (Self, Vec<String>) {
        let mut status = Self::gather(running).await;
        let mut unreachable = Vec::new();
        for url in &running.peers.urls {
            if status.writer.is_some() && status.ingest.is_some() {
                break;
            }
            match ask_peer(url, running.peers.token.as_ref()).await {
                Ok(peer) => {
                    status.writer = status.writer.or(peer.writer);
                    status.ingest = status.ingest.or(peer.ingest);
                }
                Err(reason) => unreachable.push(format!("{url}: {reason}")),
            }
        }
        (status, unreachable)
    }

    pub async fn gather(running: &Running) -> Self {
        let engine = match &running.engine {
            Some(engine) => Some(engine.stats().await),
            None => None,
        };
        Self {
            engine,
            writer: running.writer.as_ref().map(WriterHandle::status),
            ingest: running.ingest.as_ref().map(IngestHandle::status),
        }
    }
}

async fn ask_peer(url: &str, token: Option<&secrecy::SecretString>) -> Result<Status, String> {
    use secrecy::ExposeSecret as _;
    let url = format!("{}/api/status", url.trim_end_matches('/'));
    let mut request = reqwest::Client::new().get(&url).timeout(Duration::from_secs(3));
    if let Some(token) = token {
        request = request.bearer_auth(token.expose_secret());
    }
    let response = request.send().await.map_err(|error| format!("not reachable ({error})"))?;
    if !response.status().is_success() {
        return Err(format!("answered {}", response.status()));
    }
    response.json::<Status>().await.map_err(|error| format!("answered something else than a status ({error})"))
}
