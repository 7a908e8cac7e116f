//! The roles a process runs (ingest, engine, writer), started together on one log with one
//! admin listener, and stopped together within the shutdown budget.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use doorsync_access::Mapping;
use doorsync_admin::{AdminHandle, AdminOptions, Metrics, Readiness};
use doorsync_clock::SharedClock;
use doorsync_engine::EngineHandle;
use doorsync_ingest::IngestHandle;
use doorsync_layout::Layout;
use doorsync_log::EventLog;
use doorsync_log_embedded::EmbeddedLog;
use doorsync_log_jetstream::JetStreamLog;
use doorsync_writer::WriterHandle;
use tokio::task::JoinHandle;

use crate::context::Context;
use crate::metrics::RoleMetrics;
use crate::roles::{self, Foundation};
use crate::setup::{self, Opened, SHUTDOWN_BUDGET};
use crate::status::Status;
use crate::{NodeError, api};

/// Which roles a process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoleSet {
    pub ingest: bool,
    pub engine: bool,
    pub writer: bool,
}

impl RoleSet {
    pub const ALL: Self = Self { ingest: true, engine: true, writer: true };
    pub const INGEST: Self = Self { ingest: true, engine: false, writer: false };
    pub const ENGINE: Self = Self { ingest: false, engine: true, writer: false };
    pub const WRITER: Self = Self { ingest: false, engine: false, writer: true };
}

/// Every role the process started, and what serves them.
#[derive(Clone)]
pub struct Running {
    pub layout: Layout,
    pub log: Arc<dyn EventLog>,
    pub clock: SharedClock,
    pub engine: Option<EngineHandle>,
    pub writer: Option<WriterHandle>,
    pub ingest: Option<IngestHandle>,
    /// Where Nexudus's webhooks are received, when this process ingests.
    pub webhook_address: Option<SocketAddr>,
    pub readiness: Readiness,
    pub metrics: Metrics,
    /// Admin addresses of the other processes of a split deployment, and the token they ask for.
    pub peers: Arc<Peers>,
    /// `admin.time_zone`: the IANA zone of the status page's clock, when the operator set one.
    pub operator_time_zone: Option<String>,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running")
            .field("engine", &self.engine)
            .field("writer", &self.writer)
            .field("webhook_address", &self.webhook_address)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Default)]
pub struct Peers {
    pub urls: Vec<String>,
    pub token: Option<secrecy::SecretString>,
}

/// A started process: its roles, its admin listener and its background work.
pub struct Process {
    pub running: Running,
    pub admin: AdminHandle,
    watcher: JoinHandle<()>,
    /// Kept to be closed after the roles have stopped.
    log: Opened,
}

impl std::fmt::Debug for Process {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Process").field("running", &self.running).finish_non_exhaustive()
    }
}

/// Starts `roles` on `opened` with the resolved `mapping`, then the admin listener with each
/// role's API and `extra_routes` (the status page).
pub async fn start(
    context: &Context,
    roles: RoleSet,
    opened: Opened,
    layout: Layout,
    mapping: Mapping,
    extra_routes: impl FnOnce(&Running) -> Router,
) -> Result<Process, NodeError> {
    let config = &context.config;
    let readiness = Readiness::default();
    let metrics = Metrics::default();
    let foundation =
        Foundation { log: Arc::clone(&opened.log), layout: layout.clone(), clock: Arc::clone(&context.clock) };

    let (ingest, webhook_address) = if roles.ingest {
        readiness.waiting_for("ingest", "starting");
        let nexudus = setup::nexudus_options(config)?;
        let options = setup::ingest_options(config, context)?;
        let started = roles::start_ingest(&foundation, options, nexudus, config.nexudus.webhook_listen).await?;
        (Some(started.handle), Some(started.webhook_address))
    } else {
        (None, None)
    };

    let engine = if roles.engine {
        readiness.waiting_for("engine", "replaying the log");
        let options = setup::engine_options(config, context, &layout, mapping.clone());
        Some(roles::start_engine(&foundation, options).await?)
    } else {
        None
    };

    let writer = if roles.writer {
        readiness.waiting_for("writer", "starting");
        let kisi = setup::kisi_options(config)?;
        let options = setup::writer_options(config, context, &mapping);
        Some(roles::start_writer(&foundation, options, kisi).await?)
    } else {
        None
    };

    let Foundation { log, layout, clock } = foundation;
    let peers = Arc::new(Peers { urls: config.admin.peers.clone(), token: config.admin_token()? });
    let running = Running {
        layout,
        log,
        clock,
        engine,
        writer,
        ingest,
        webhook_address,
        readiness,
        metrics,
        peers,
        operator_time_zone: config.admin.time_zone.clone(),
    };
    let role_metrics = RoleMetrics::register(&running.metrics, roles);
    let nats = opened.jetstream.clone();
    if nats.is_some() {
        running.readiness.waiting_for("nats", "connecting");
    }
    let watcher = tokio::spawn(watch(running.clone(), role_metrics, nats, opened.embedded.clone()));
    let routes = api::routes(&running, config).merge(extra_routes(&running));
    let admin_options = AdminOptions {
        allow_without_token: config.admin.allow_without_token,
        allowed_hosts: peer_hosts(&config.admin.peers),
        ..AdminOptions::new(config.admin.listen, config.admin_token()?)
    };
    let admin = doorsync_admin::start(admin_options, running.metrics.clone(), running.readiness.clone(), routes)
        .await
        .map_err(|error| NodeError::Admin(Box::new(error)))?;
    Ok(Process { running, admin, watcher, log: opened })
}

impl Process {
    /// Stops taking work (webhooks first), lets the engine checkpoint and the writer give back
    /// what it holds, then closes the admin listener and the log; gives up waiting after the
    /// shutdown budget.
    pub async fn shutdown(self) {
        let Process { running, admin, watcher, log } = self;
        let stopping = async move {
            if let Some(ingest) = &running.ingest {
                ingest.shutdown().await;
            }
            if let Some(engine) = running.engine.clone() {
                engine.shutdown().await;
            }
            if let Some(writer) = &running.writer {
                writer.shutdown().await;
            }
            watcher.abort();
            admin.shutdown().await;
            drop(running);
            log.close().await;
        };
        if tokio::time::timeout(SHUTDOWN_BUDGET, stopping).await.is_err() {
            tracing::warn!(budget = ?SHUTDOWN_BUDGET, "shutdown took longer than its budget; stopping anyway");
        }
    }
}

/// The names the admin listener is reached by in a split deployment (the Kubernetes services
/// `admin.peers` lists), which requests that change something may name in `Host`.
fn peer_hosts(peers: &[String]) -> Vec<String> {
    peers
        .iter()
        .filter_map(|peer| url::Url::parse(peer).ok())
        .filter_map(|peer| peer.host_str().map(str::to_owned))
        .collect()
}

/// Keeps `/healthz` (failed for good once the embedded log refuses everything after a failed
/// write), `/readyz` (connected to NATS, engine caught up, writer neither paused nor held by a
/// `Retry-After`) and the status metrics current.
async fn watch(running: Running, metrics: RoleMetrics, nats: Option<Arc<JetStreamLog>>, embedded: Option<EmbeddedLog>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        if let Some(failure) = embedded.as_ref().and_then(EmbeddedLog::storage_failure) {
            running
                .readiness
                .failed_until_restart("log", format!("{failure}; restart doorsync once the disk is fixed"));
        }
        if let Some(nats) = &nats {
            match nats.client().connection_state() {
                async_nats::connection::State::Connected => running.readiness.holds("nats"),
                state => running.readiness.waiting_for("nats", format!("the connection to NATS is {state}")),
            }
        }
        let status = Status::gather(&running).await;
        match &status.engine {
            Some(shards) if !shards.is_empty() && shards.iter().all(|shard| shard.caught_up) => {
                running.readiness.holds("engine")
            }
            Some(_) => running.readiness.waiting_for("engine", "replaying the log"),
            None => {}
        }
        if let Some(writer) = &status.writer {
            let now = running.clock.now();
            let holding = writer.retry_after_hold.filter(|hold| hold.until > now);
            match (&writer.paused, holding) {
                (Some(pause), _) => running.readiness.waiting_for("writer", format!("paused: {}", pause.reason)),
                (None, Some(hold)) => running.readiness.waiting_for(
                    "writer",
                    format!(
                        "holding every Kisi request until {} (Retry-After{})",
                        hold.until,
                        if hold.clamped { ", cut to doorsync's 5-minute ceiling" } else { "" }
                    ),
                ),
                (None, None) => running.readiness.holds("writer"),
            }
        }
        // A standby is not ready, so that the webhook URL leads to the active ingestor only:
        // a standby answers webhooks 503, and Nexudus disables a hook after ten failures.
        match status.ingest.as_ref().map(|ingest| &ingest.role) {
            Some(doorsync_ingest::IngestRole::Active) => running.readiness.holds("ingest"),
            Some(doorsync_ingest::IngestRole::Standby { holder }) => running.readiness.waiting_for(
                "ingest",
                format!("standby: {} holds the ingest lease", holder.as_deref().unwrap_or("no live ingestor")),
            ),
            None => {}
        }
        metrics.update(&status);
    }
}
