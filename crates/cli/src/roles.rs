//! The roles a process runs (ingest, engine, writer), started together on one log with one
//! admin listener, and stopped together within the shutdown budget.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use doorsync_access::Mapping;
use doorsync_admin::{AdminHandle, AdminOptions, Metrics, Readiness};
use doorsync_clock::SharedClock;
use doorsync_engine::EngineHandle;
use doorsync_ingest::IngestHandle;
use doorsync_layout::Layout;
use doorsync_log::EventLog;
use doorsync_log_embedded::EmbeddedLog;
use doorsync_log_jetstream::JetStreamLog;
use doorsync_writer::{WriterError, WriterHandle};
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;

use crate::context::Context;
use crate::metrics::StatusMetrics;
use crate::setup::{self, Opened, SHUTDOWN_BUDGET};

/// Which roles a process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RoleSet {
    pub(crate) ingest: bool,
    pub(crate) engine: bool,
    pub(crate) writer: bool,
}

impl RoleSet {
    pub(crate) const ALL: Self = Self { ingest: true, engine: true, writer: true };
    pub(crate) const INGEST: Self = Self { ingest: true, engine: false, writer: false };
    pub(crate) const ENGINE: Self = Self { ingest: false, engine: true, writer: false };
    pub(crate) const WRITER: Self = Self { ingest: false, engine: false, writer: true };
}

/// Every role the process started, and what serves them.
#[derive(Clone)]
pub(crate) struct Running {
    pub(crate) layout: Layout,
    pub(crate) log: Arc<dyn EventLog>,
    pub(crate) clock: SharedClock,
    pub(crate) engine: Option<EngineHandle>,
    pub(crate) writer: Option<WriterHandle>,
    pub(crate) ingest: Option<IngestHandle>,
    /// Where Nexudus's webhooks are received, when this process ingests.
    pub(crate) webhook_address: Option<SocketAddr>,
    pub(crate) readiness: Readiness,
    pub(crate) metrics: Metrics,
    /// Admin addresses of the other processes of a split deployment, and the token they ask for.
    pub(crate) peers: Arc<Peers>,
}

#[derive(Debug, Default)]
pub(crate) struct Peers {
    pub(crate) urls: Vec<String>,
    pub(crate) token: Option<secrecy::SecretString>,
}

/// A started process: its roles, its admin listener and its background work.
pub(crate) struct Process {
    pub(crate) running: Running,
    pub(crate) admin: AdminHandle,
    watcher: JoinHandle<()>,
    /// Kept to be closed after the roles have stopped.
    log: Opened,
}

/// Starts `roles` on `opened` with the resolved `mapping`, then the admin listener with
/// `extra_routes` (the status page) and each role's API.
pub(crate) async fn start(
    context: &Context,
    roles: RoleSet,
    opened: Opened,
    layout: Layout,
    mapping: Mapping,
    extra_routes: impl FnOnce(&Running) -> Router,
) -> anyhow::Result<Process> {
    let config = &context.config;
    let readiness = Readiness::default();
    let metrics = Metrics::default();
    let log = Arc::clone(&opened.log);

    let ingest = if roles.ingest {
        readiness.waiting_for("ingest", "starting");
        let client = setup::nexudus_client(config, context)?;
        let mut options = setup::ingest_options(config)?;
        options.lease_owner = format!("ingest-{}", context.instance);
        let handle =
            doorsync_ingest::start(options, client, Arc::clone(&log), layout.clone(), Arc::clone(&context.clock))
                .await
                .context("starting the Nexudus ingestor")?;
        Some(handle)
    } else {
        None
    };
    let webhook_address = match &ingest {
        Some(ingest) => Some(ingest.serve(config.nexudus.webhook_listen).await.with_context(|| {
            format!("listening for Nexudus webhooks on {} (nexudus.webhook_listen)", config.nexudus.webhook_listen)
        })?),
        None => None,
    };

    let engine = if roles.engine {
        readiness.waiting_for("engine", "replaying the log");
        let options = setup::engine_options(config, context, &layout, mapping.clone());
        Some(
            doorsync_engine::start(options, Arc::clone(&log), Arc::clone(&context.clock))
                .await
                .context("starting the access engine")?,
        )
    } else {
        None
    };

    let writer = if roles.writer {
        readiness.waiting_for("writer", "starting");
        let kisi = setup::kisi_client(config)?;
        let options = setup::writer_options(config, context, &mapping);
        Some(
            doorsync_writer::start(options, kisi, Arc::clone(&log), layout.clone(), Arc::clone(&context.clock))
                .await
                .context("starting the Kisi writer")?,
        )
    } else {
        None
    };

    let clock = Arc::clone(&context.clock);
    let peers = Arc::new(Peers { urls: config.admin.peers.clone(), token: config.admin_token()? });
    let running = Running { layout, log, clock, engine, writer, ingest, webhook_address, readiness, metrics, peers };
    let status_metrics = StatusMetrics::register(&running.metrics);
    let nats = opened.jetstream.clone();
    if nats.is_some() {
        running.readiness.waiting_for("nats", "connecting");
    }
    let watcher = tokio::spawn(watch(running.clone(), status_metrics, nats, opened.embedded.clone()));
    let routes = api(&running).merge(extra_routes(&running));
    let admin_options = AdminOptions {
        allow_without_token: config.admin.allow_without_token,
        allowed_hosts: peer_hosts(&config.admin.peers),
        ..AdminOptions::new(config.admin.listen, config.admin_token()?)
    };
    let admin = doorsync_admin::start(admin_options, running.metrics.clone(), running.readiness.clone(), routes)
        .await
        .context("starting the admin listener")?;
    Ok(Process { running, admin, watcher, log: opened })
}

impl Process {
    /// Stops taking work (webhooks first), lets the engine checkpoint and the writer give back
    /// what it holds, then closes the admin listener and the log; gives up waiting after the
    /// shutdown budget.
    pub(crate) async fn shutdown(self) {
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
async fn watch(
    running: Running,
    metrics: StatusMetrics,
    nats: Option<Arc<JetStreamLog>>,
    embedded: Option<EmbeddedLog>,
) {
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

/// Everything the roles of this process report, as `/api/status` serves it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Status {
    pub(crate) engine: Option<Vec<doorsync_engine::ShardStats>>,
    pub(crate) writer: Option<doorsync_writer::WriterStatus>,
    pub(crate) ingest: Option<doorsync_ingest::IngestStatus>,
}

impl Status {
    /// This process's status, completed with the writer's and the ingestor's from the peers when
    /// they do not run here; also what could not be asked.
    pub(crate) async fn with_peers(running: &Running) -> (Self, Vec<String>) {
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

    pub(crate) async fn gather(running: &Running) -> Self {
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

/// The JSON API `doorsync status` and `doorsync reconcile` talk to.
fn api(running: &Running) -> Router {
    Router::new()
        .route("/api/status", get(status))
        .route("/api/writer/reconcile", post(reconcile))
        .route("/api/writer/reconcile/confirm", post(confirm))
        .with_state(running.clone())
}

async fn status(State(running): State<Running>) -> Json<Status> {
    Json(Status::gather(&running).await)
}

async fn reconcile(State(running): State<Running>) -> Response {
    match &running.writer {
        Some(writer) => answer(writer.reconcile_now().await),
        None => not_a_writer(),
    }
}

async fn confirm(State(running): State<Running>) -> Response {
    match &running.writer {
        Some(writer) => answer(writer.confirm_held_repair().await),
        None => not_a_writer(),
    }
}

fn answer(result: Result<doorsync_writer::ReconcileReport, WriterError>) -> Response {
    match result {
        Ok(report) => Json(report).into_response(),
        Err(error @ (WriterError::NotActive | WriterError::Paused { .. } | WriterError::NothingHeld)) => {
            (StatusCode::CONFLICT, error.to_string()).into_response()
        }
        Err(error) => (StatusCode::INTERNAL_SERVER_ERROR, error.to_string()).into_response(),
    }
}

fn not_a_writer() -> Response {
    (StatusCode::NOT_FOUND, "this process runs no Kisi writer: ask the writer's admin address\n").into_response()
}
