//! Each role started on its own: what `doorsync run`, `ingest`, `engine` and `writer` start from
//! the configuration (see [`crate::start`]), and what the deterministic simulation starts, with
//! options of its own, on its in-memory log and virtual clock, one role at a time.

use std::net::SocketAddr;
use std::sync::Arc;

use doorsync_clock::SharedClock;
use doorsync_engine::{EngineHandle, EngineOptions};
use doorsync_ingest::{IngestHandle, IngestOptions};
use doorsync_kisi::{KisiClient, KisiOptions};
use doorsync_layout::Layout;
use doorsync_log::EventLog;
use doorsync_nexudus::{NexudusClient, NexudusOptions};
use doorsync_writer::{WriterHandle, WriterOptions};

use crate::NodeError;

/// What every role of a process runs on: one log, its layout, and the one clock.
#[derive(Clone)]
pub struct Foundation {
    pub log: Arc<dyn EventLog>,
    pub layout: Layout,
    pub clock: SharedClock,
}

impl std::fmt::Debug for Foundation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Foundation").field("layout", &self.layout).finish_non_exhaustive()
    }
}

/// A started ingestor and where it receives Nexudus's webhooks.
#[derive(Debug)]
pub struct StartedIngest {
    pub handle: IngestHandle,
    pub webhook_address: SocketAddr,
}

/// Starts the Nexudus ingestor with a client built from `nexudus` on the foundation's clock, and
/// serves its webhook receiver on `webhook_listen`.
pub async fn start_ingest(
    foundation: &Foundation,
    options: IngestOptions,
    nexudus: NexudusOptions,
    webhook_listen: SocketAddr,
) -> Result<StartedIngest, NodeError> {
    let client = NexudusClient::new(nexudus, Arc::clone(&foundation.clock))
        .map_err(|error| NodeError::NexudusClient(Box::new(error)))?;
    let handle = doorsync_ingest::start(
        options,
        client,
        Arc::clone(&foundation.log),
        foundation.layout.clone(),
        Arc::clone(&foundation.clock),
    )
    .await
    .map_err(|error| NodeError::Ingest(Box::new(error)))?;
    let webhook_address = handle
        .serve(webhook_listen)
        .await
        .map_err(|source| NodeError::Webhooks { listen: webhook_listen, source: Box::new(source) })?;
    Ok(StartedIngest { handle, webhook_address })
}

/// Starts the access engine.
pub async fn start_engine(foundation: &Foundation, options: EngineOptions) -> Result<EngineHandle, NodeError> {
    doorsync_engine::start(options, Arc::clone(&foundation.log), Arc::clone(&foundation.clock))
        .await
        .map_err(|error| NodeError::Engine(Box::new(error)))
}

/// Starts the Kisi writer with a client built from `kisi`.
pub async fn start_writer(
    foundation: &Foundation,
    options: WriterOptions,
    kisi: KisiOptions,
) -> Result<WriterHandle, NodeError> {
    let kisi = KisiClient::new(kisi).map_err(|error| NodeError::KisiClient(Box::new(error)))?;
    doorsync_writer::start(
        options,
        kisi,
        Arc::clone(&foundation.log),
        foundation.layout.clone(),
        Arc::clone(&foundation.clock),
    )
    .await
    .map_err(|error| NodeError::Writer(Box::new(error)))
}
