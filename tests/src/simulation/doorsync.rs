//! doorsync's three components in this process, on one in-memory log, configured for the
//! simulation and started through doorsync-node as every doorsync process starts them, and
//! restarted on that same log as a crash, a redeploy and an operator who edited the
//! configuration would.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use doorsync_access::NoAccessPolicy;
use doorsync_engine::{EngineHandle, EngineOptions};
use doorsync_ingest::{IngestHandle, IngestOptions};
use doorsync_kisi::{ApiKey, KisiOptions};
use doorsync_layout::Layout;
use doorsync_log::{EventLog, ReplayRequest, StoredMessage};
use doorsync_log_embedded::EmbeddedLog;
use doorsync_nexudus::{Credentials, Limits, NexudusOptions, Secret, WebhookAction};
use doorsync_nexudus_sim::SimEntity;
use doorsync_node::{Foundation, NodeError, StartedIngest, roles, with_causes};
use doorsync_proto::Subjects;
use doorsync_writer::{WriterHandle, WriterOptions};
use futures::TryStreamExt;
use serde_json::json;

use super::SimFailure;
use super::clock::SimClock;
use super::configuration::Configuration;
use super::watched_log::{LogGauge, WatchedLog};
use super::world::{INTEGRATION_EMAIL, KISI_API_KEY, NEXUDUS_PASSWORD, NEXUDUS_USER, WEBHOOK_SECRET, World};

/// The poller backs up lost webhooks; every tolerance of the simulation is counted in polls.
pub(crate) const POLL_EVERY: Duration = Duration::from_secs(60 * 60);
/// The sweeper finds hard deletes whose webhook was lost.
pub(crate) const SWEEP_EVERY: Duration = Duration::from_secs(4 * 3_600);
pub(crate) const RECONCILE_EVERY: Duration = Duration::from_secs(4 * 3_600);
/// The writer's longest wait between two attempts at one key.
pub(crate) const WRITER_BACKOFF_MAX: Duration = Duration::from_secs(120);
/// Real time: a hung Kisi request costs this much of the run, so it is short.
pub(crate) const KISI_REQUEST_TIMEOUT: Duration = Duration::from_millis(500);
const PARTITIONS: u32 = 2;
const ENGINE_ID: &str = "engine-sim";
const WRITER_ID: &str = "writer-sim";
/// Every lease (the engine's partitions, the writer's account, the ingestor's) is renewed on the
/// virtual clock, a third of this apart: each renewal is a step of the simulation, and fifteen
/// minutes keeps them to a dozen per virtual hour while the clock still drives them as it drives
/// every other timer.
const LEASE_TTL: Duration = Duration::from_secs(15 * 60);

/// The no-access policies a seed may run with.
pub(crate) const POLICIES: [NoAccessPolicy; 3] =
    [NoAccessPolicy::Suspend, NoAccessPolicy::Delete, NoAccessPolicy::RemoveMembershipsOnly];

/// What every start of a component is made from.
#[derive(Debug, Clone)]
struct Recipe {
    foundation: Foundation,
    engine: EngineOptions,
    writer: WriterOptions,
    ingest: IngestOptions,
}

/// The running components and the log they share.
pub(crate) struct Doorsync {
    pub(crate) log: Arc<dyn EventLog>,
    /// What the log is doing, for settling.
    pub(crate) log_gauge: Arc<LogGauge>,
    pub(crate) layout: Layout,
    pub(crate) ingest: IngestHandle,
    pub(crate) engine: EngineHandle,
    pub(crate) writer: WriterHandle,
    recipe: Recipe,
    /// Nexudus's webhooks pointing at the ingestor, to point again after it restarts.
    hooks: Vec<(u64, WebhookAction)>,
}

impl std::fmt::Debug for Doorsync {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Doorsync").field("engine", &self.engine).field("writer", &self.writer).finish_non_exhaustive()
    }
}

impl Doorsync {
    pub(crate) async fn start(
        world: &World,
        clock: &SimClock,
        configuration: &Configuration,
        writer_seed: u64,
    ) -> Result<Self, SimFailure> {
        let layout = Layout::new(Subjects::new("sim", PARTITIONS).map_err(SimFailure::setup("naming the subjects"))?);
        let embedded =
            EmbeddedLog::in_memory(layout.streams()).map_err(SimFailure::setup("opening the in-memory log"))?;
        let (watched, log_gauge) = WatchedLog::new(Arc::new(embedded));
        let log: Arc<dyn EventLog> = Arc::new(watched);
        let mut engine = EngineOptions::new(ENGINE_ID, layout.clone());
        engine.policy = configuration.policy.clone();
        engine.mapping = configuration.mapping.clone();
        engine.settings.lease_ttl = LEASE_TTL;
        // Virtual time: members idle for a few hours are snapshotted and stopped, and come back
        // from their snapshot; checkpoints every half hour.
        engine.settings.passivate_after = Duration::from_secs(3 * 3_600);
        engine.settings.checkpoint_every = Duration::from_secs(3 * 3_600);
        // Virtual time: the least gap between two of a shard's looks for idle members and due
        // checkpoints.
        engine.housekeeping_every = Duration::from_millis(200);

        let mut writer = WriterOptions::new(WRITER_ID, "sim");
        writer.requests_per_second = 8;
        writer.backoff_first = Duration::from_secs(1);
        writer.backoff_max = WRITER_BACKOFF_MAX;
        writer.seed = writer_seed;
        writer.settings.lease_ttl = LEASE_TTL;
        writer.reconcile.every = RECONCILE_EVERY;
        writer.reconcile_groups = world.site.managed_groups.clone();
        // A handful of members: one member's repair is more than any share short of everyone.
        writer.reconcile.max_revocation_share = 1.0;
        if world.site.adopted_creator.is_some() {
            writer.adopt_created_by = vec![INTEGRATION_EMAIL.to_owned()];
        }

        let mut ingest = IngestOptions::new(Secret::new(WEBHOOK_SECRET));
        ingest.poll_every = POLL_EVERY;
        ingest.sweep_every = SWEEP_EVERY;
        ingest.lease_ttl = LEASE_TTL;
        ingest.mapping_from_nexudus = true;

        let foundation = Foundation { log: Arc::clone(&log), layout: layout.clone(), clock: Arc::new(clock.clone()) };
        let recipe = Recipe { foundation, engine, writer, ingest };
        let StartedIngest { handle: ingest, webhook_address: address } = start_ingest(&recipe, world).await?;
        let engine = start_engine(&recipe).await?;
        let writer = start_writer(&recipe, world).await?;
        let mut hooks = Vec::new();
        for &action in doorsync_ingest::WEBHOOK_ACTIONS {
            let id = world
                .nexudus
                .register_webhook(action, &webhook_url(address, action)?, Secret::new(WEBHOOK_SECRET))
                .map_err(SimFailure::setup("registering a webhook in Nexudus"))?;
            hooks.push((id, action));
        }
        Ok(Self { log, log_gauge, layout, ingest, engine, writer, recipe, hooks })
    }

    /// Stops the ingestor and starts it again on the same log, as a redeploy would; Nexudus's
    /// webhooks are pointed at its new address (what was on its way to the old one is retried).
    pub(crate) async fn restart_ingest(&mut self, world: &World) -> Result<(), SimFailure> {
        self.ingest.shutdown().await;
        self.restart_ingest_stopped(world).await
    }

    /// Starts the ingestor again after it was stopped, and points Nexudus's webhooks at it.
    async fn restart_ingest_stopped(&mut self, world: &World) -> Result<(), SimFailure> {
        let StartedIngest { handle, webhook_address: address } = start_ingest(&self.recipe, world).await?;
        self.ingest = handle;
        for &(id, action) in &self.hooks {
            let url = webhook_url(address, action)?;
            world
                .nexudus
                .update(SimEntity::Webhook, id, json!({"URL": url.as_str()}))
                .map_err(SimFailure::setup("pointing a webhook at the restarted ingestor"))?;
        }
        Ok(())
    }

    /// Stops the engine (checkpoints and snapshots) and starts it again from them.
    pub(crate) async fn restart_engine(&mut self) -> Result<(), SimFailure> {
        self.engine.clone().shutdown().await;
        self.engine = start_engine(&self.recipe).await?;
        Ok(())
    }

    /// Stops the engine as a crash would (no checkpoint, no snapshot, leases kept) and starts it
    /// again from its last checkpoint and snapshots.
    pub(crate) async fn crash_engine(&mut self) -> Result<(), SimFailure> {
        self.engine.clone().crash().await;
        self.engine = start_engine(&self.recipe).await?;
        Ok(())
    }

    /// Stops all three components and starts them again with the edited configuration, as an
    /// operator restarting `doorsync run` after editing its file.
    pub(crate) async fn reconfigure(&mut self, world: &World, configuration: &Configuration) -> Result<(), SimFailure> {
        self.ingest.shutdown().await;
        self.engine.clone().shutdown().await;
        self.writer.shutdown().await;
        self.recipe.engine.policy = configuration.policy.clone();
        self.recipe.engine.mapping = configuration.mapping.clone();
        self.restart_ingest_stopped(world).await?;
        self.engine = start_engine(&self.recipe).await?;
        self.writer = start_writer(&self.recipe, world).await?;
        Ok(())
    }

    /// Stops the writer (commands not carried out go back to the log) and starts it again.
    pub(crate) async fn restart_writer(&mut self, world: &World) -> Result<(), SimFailure> {
        self.writer.shutdown().await;
        self.writer = start_writer(&self.recipe, world).await?;
        Ok(())
    }

    /// The webhooks Nexudus has disabled after failed deliveries.
    pub(crate) fn disabled_webhooks(&self, world: &World) -> Vec<u64> {
        self.hooks
            .iter()
            .map(|&(id, _)| id)
            .filter(|&id| {
                let hook = world.nexudus.record(SimEntity::Webhook, id);
                hook.and_then(|hook| hook.get("Active").and_then(serde_json::Value::as_bool)) != Some(true)
            })
            .collect()
    }

    /// The reason given with each dead letter, in order.
    pub(crate) async fn dead_letter_reasons(&self) -> Result<Vec<String>, SimFailure> {
        let letters: Vec<StoredMessage> = self
            .log
            .replay(ReplayRequest::whole(&self.layout.dead_letters))
            .await
            .map_err(SimFailure::setup("reading the dead letters"))?
            .try_collect()
            .await
            .map_err(SimFailure::setup("reading the dead letters"))?;
        Ok(letters
            .iter()
            .map(|letter| {
                let reason = letter.headers.iter().find(|(name, _)| name == doorsync_writer::REASON_HEADER);
                reason.map_or_else(|| format!("{} without a reason", letter.subject), |(_, reason)| reason.clone())
            })
            .collect())
    }

    pub(crate) async fn shutdown(self) {
        self.ingest.shutdown().await;
        self.engine.clone().shutdown().await;
        self.writer.shutdown().await;
    }
}

fn webhook_url(address: SocketAddr, action: WebhookAction) -> Result<url::Url, SimFailure> {
    url::Url::parse(&format!("http://{address}{}", doorsync_ingest::webhook_path(action)))
        .map_err(SimFailure::setup("writing a webhook URL"))
}

async fn start_ingest(recipe: &Recipe, world: &World) -> Result<StartedIngest, SimFailure> {
    let credentials = Credentials { username: NEXUDUS_USER.to_owned(), password: Secret::new(NEXUDUS_PASSWORD) };
    let mut nexudus = NexudusOptions::new(world.nexudus.base_url(), credentials);
    // The simulator throttles only when a fault says so; the client's own limiter would only
    // spread each poll over seconds of virtual time.
    nexudus.limits = Limits { min_interval: Duration::ZERO, per_minute: 1_000_000, per_hour: 1_000_000 };
    let listen = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    roles::start_ingest(&recipe.foundation, recipe.ingest.clone(), nexudus, listen)
        .await
        .map_err(start_failure("starting the ingestor"))
}

async fn start_engine(recipe: &Recipe) -> Result<EngineHandle, SimFailure> {
    roles::start_engine(&recipe.foundation, recipe.engine.clone()).await.map_err(start_failure("starting the engine"))
}

async fn start_writer(recipe: &Recipe, world: &World) -> Result<WriterHandle, SimFailure> {
    let mut kisi = KisiOptions::new(world.kisi.base_url(), ApiKey::new(KISI_API_KEY), "doorsync-simulation");
    kisi.request_timeout = KISI_REQUEST_TIMEOUT;
    roles::start_writer(&recipe.foundation, recipe.writer.clone(), kisi)
        .await
        .map_err(start_failure("starting the writer"))
}

/// A role that did not start, with the step that failed and every cause under it.
fn start_failure(what: &'static str) -> impl FnOnce(NodeError) -> SimFailure {
    move |error| SimFailure::setup(what)(with_causes(&error))
}
