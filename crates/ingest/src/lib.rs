//! The Nexudus ingestor: turns what Nexudus holds into doorsync's entitlement events in the log.
//!
//! Three paths read Nexudus, and all of them end in the same place:
//!
//! * the **webhook receiver** ([`IngestHandle::router`]) answers Nexudus's signed deliveries,
//!   reading each entity again by id (a deleted one by the listing by id that confirms its
//!   deletion), for latency, and nothing else: what records refer to comes from a directory the
//!   poller lists again each time; what Nexudus fails to answer about goes to a
//!   durable **retry set** (see [`IngestStatus::retrying`]), read again with exponential backoff
//!   ([`IngestOptions::retry_first_delay`]) until it works, so no webhook fails for one record;
//! * the **poller** ([`IngestHandle::poll_now`], and every [`IngestOptions::poll_every`])
//!   lists what changed since each entity's watermark, for completeness;
//! * the **sweeper** ([`IngestHandle::sweep_now`], every [`IngestOptions::sweep_every`])
//!   lists everything, to find hard deletes and cancelled bookings, and checks nothing else
//!   vanished.
//!
//! The poller and the sweeper are background work: their Nexudus requests wait behind any
//! webhook's in the client's limiter ([`doorsync_nexudus::Priority`]), and the events they
//! append carry the bulk header ([`doorsync_layout::bulk_header`]); a webhook's are live.
//!
//! A reading is normalised (pure rules: see the `normalise` module) into the events the access
//! fold expects, dated by the record's `UpdatedOn` so that their content-derived ids are stable,
//! then decided against what was last appended for that record (kept in the ingest bucket):
//! unchanged readings append nothing, older ones are ignored, a record that changed hands is
//! first taken back from its old holder, and a vanished one becomes a removal (Nexudus answers
//! a deleted id with 500, so "vanished" is confirmed by a listing by id). Readings of one
//! record are decided one at a time. A record that cannot be normalised is parked with its reason
//! (see [`IngestStatus::parked`]) and un-parked when a later reading works.
//!
//! An unchanged reading appends nothing even after the log's de-duplication window, since the
//! ledger keeps each record's last `UpdatedOn`, holder and content digest. A parked booking, pass
//! or contract whose earlier version granted a member appends `EntitlementWithheld` for them (once
//! per reason), so an unreadable record fails closed; its next readable version is appended
//! whatever its content. The state stays bounded: the sweep forgets a removed record
//! [`IngestOptions::removed_horizon`] (a week) after its removal. The poll runs as soon as an
//! ingestor takes the lease, then every interval; the sweep falls due an interval after its last
//! success, kept in the ingest bucket, so restarts cannot put a sweep off indefinitely. At start
//! the buckets are read with 256 reads in flight (`tests/start_with_many_records.rs`, ignored by
//! default, prints the figures).
//!
//! One ingestor per deployment is active, the one holding the lease (see the `role` module);
//! a standby answers webhooks 503 and reports itself not ready.
#![forbid(unsafe_code)]

mod bucket;
mod directory;
mod error;
mod ingestor;
mod ledger;
pub mod metric_definitions;
mod normalise;
mod record;
mod retry;
mod role;
mod status;
mod sync;
mod webhook;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use doorsync_clock::SharedClock;
use doorsync_layout::Layout;
use doorsync_log::{EventLog, Lease, Tenure};
use doorsync_nexudus::NexudusClient;
use doorsync_proto::Timestamp;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use doorsync_nexudus::{LimiterWaits, Secret};
pub use error::IngestError;
pub use ingestor::RunSummary;
pub use retry::RetryingRecord;
pub use status::{InactiveWebhook, IngestRole, IngestStatus, ParkedRecord, WebhookCounts, WebhookHealth};
pub use webhook::{WEBHOOK_ACTIONS, WEBHOOK_ROUTE, webhook_path};

use crate::ingestor::Ingestor;
use crate::record::{RecordKey, RecordKind};
use crate::status::Run;

/// How the ingestor runs.
#[derive(Debug, Clone)]
pub struct IngestOptions {
    /// Time between polls (the first runs as soon as the ingestor holds the lease).
    pub poll_every: Duration,
    /// Time between sweeps (the first comes one interval after the last sweep that succeeded).
    pub sweep_every: Duration,
    /// How far before its watermark a poll starts reading: `from_{Entity}_UpdatedOn` has minute
    /// precision, and Nexudus's clock is not ours. The poll also starts earlier by the
    /// westernmost location's offset from UTC, in case Nexudus reads the filter on that
    /// location's wall clock.
    pub poll_overlap: Duration,
    /// The shared secret Nexudus signs webhooks with.
    pub webhook_secret: Secret,
    /// Largest webhook body accepted, in bytes; larger ones get 413.
    pub webhook_body_limit_bytes: usize,
    /// Also turn resources', pass products' and floor-plan desks' own access-control group ids
    /// into mapping changes.
    pub mapping_from_nexudus: bool,
    /// Records per listing page (Nexudus serves at most 1,000).
    pub page_size: u32,
    /// How long a record in the retry set waits after its first failed reading; the wait
    /// doubles after each further failure, up to [`IngestOptions::retry_max_delay`].
    pub retry_first_delay: Duration,
    pub retry_max_delay: Duration,
    /// When a calendar day pass's day begins on each location's wall clock.
    pub day_pass_cutoffs: DayPassCutoffs,
    /// This ingestor's name in the ingest lease: unique among the ingestors on one log (two
    /// with the same name would both act).
    pub lease_owner: String,
    /// How long the ingest lease lasts unrenewed: a standby takes over at most this long after
    /// the active ingestor died (at once after one that stopped). It renews every third of it
    /// and stops appending a third before it could lapse, so it must be well above the time one
    /// append takes. Each renewal is a wake-up on the clock: a virtual clock stepping from one
    /// wake-up to the next (the simulation) pays for every one.
    pub lease_ttl: Duration,
    /// How long the state of a removed record is kept after its removal (each sweep forgets
    /// older ones): it turns away readings of the record from before its removal, which are
    /// handed in within one run, and its cancellation, which every sweep lists again.
    pub removed_horizon: Duration,
}

/// When a calendar day pass's day begins, as hours and minutes on the location's wall clock:
/// Nexudus runs a day pass from the location's daily cutoff (e.g. 03:00) to the next.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DayPassCutoffs {
    /// Every location's, unless listed below; `(0, 0)` is midnight.
    pub every_location: (u8, u8),
    /// By Nexudus location (business) id.
    pub by_location: BTreeMap<u64, (u8, u8)>,
}

impl DayPassCutoffs {
    pub(crate) fn of(&self, location: Option<u64>) -> (u8, u8) {
        location.and_then(|location| self.by_location.get(&location).copied()).unwrap_or(self.every_location)
    }
}

impl IngestOptions {
    /// Polls every minute with a two-minute overlap, sweeps every hour, takes bodies up to
    /// 256 KiB, retries a record 10 s after a failed reading (doubling, up to 15 minutes), and
    /// leaves the mapping to doorsync's configuration. The lease is held in the name of this
    /// process's id, which is unique on one machine only (give each ingestor of a deployment
    /// with a standby its own [`IngestOptions::lease_owner`]), and lasts 30 s unrenewed: the
    /// poll interval makes a quicker takeover useless.
    pub fn new(webhook_secret: Secret) -> Self {
        Self {
            poll_every: Duration::from_secs(60),
            sweep_every: Duration::from_secs(3_600),
            poll_overlap: Duration::from_secs(120),
            webhook_secret,
            webhook_body_limit_bytes: 256 * 1_024,
            mapping_from_nexudus: false,
            page_size: 500,
            retry_first_delay: Duration::from_secs(10),
            retry_max_delay: Duration::from_secs(15 * 60),
            day_pass_cutoffs: DayPassCutoffs::default(),
            lease_owner: format!("ingest-{}", std::process::id()),
            lease_ttl: Duration::from_secs(30),
            removed_horizon: Duration::from_secs(7 * 24 * 3_600),
        }
    }
}

/// A running ingestor. Cheap to clone; clones control the same ingestor.
#[derive(Clone)]
pub struct IngestHandle {
    ingestor: Arc<Ingestor>,
    stop: Arc<watch::Sender<bool>>,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl std::fmt::Debug for IngestHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IngestHandle").field("bucket", &self.ingestor.bucket.name()).finish_non_exhaustive()
    }
}

/// Starts the ingestor: loads what it appended before (and the parked records and the retry
/// set) from the layout's ingest bucket, and contends for the ingest lease there (see
/// [`IngestStatus::role`]). While it holds the lease, it runs on `clock` the poller at once and
/// then every interval, and the sweeper an interval after its last run that succeeded, or after
/// the first start of an ingestor on this bucket if none has (at once if that is past), and
/// retries the retry set when each entry is due; while another ingestor holds it, it stands by
/// and takes over (polling at once) once that one gives it back or lets it lapse.
pub async fn start(
    options: IngestOptions,
    client: NexudusClient,
    log: Arc<dyn EventLog>,
    layout: Layout,
    clock: SharedClock,
) -> Result<IngestHandle, IngestError> {
    let ingestor = Arc::new(Ingestor::new(options, client, log, &layout, clock).await?);
    let lease = Arc::new(Lease::new(
        ingestor.bucket.kv(),
        LEASE_KEY,
        ingestor.options.lease_owner.clone(),
        ingestor.options.lease_ttl,
        Arc::clone(&ingestor.clock),
    ));
    let (stop, _) = watch::channel(false);
    // Taken here when free, so that an ingestor without a rival is active as soon as it starts.
    let first = match contend(&ingestor, &lease).await {
        Some(tenure) => {
            ingestor.role.activate(Arc::clone(&tenure));
            Some((tenure, first_runs(&ingestor).await?))
        }
        None => None,
    };
    let supervisor = tokio::spawn(supervise(Arc::clone(&ingestor), lease, first, stop.subscribe()));
    Ok(IngestHandle { ingestor, stop: Arc::new(stop), tasks: Arc::new(Mutex::new(vec![supervisor])) })
}

/// The ingest lease's key in the ingest bucket (the ingestor's own bucket, which its
/// credentials already reach).
const LEASE_KEY: &str = "lease";

/// Takes the lease if it is free; otherwise notes who holds it.
async fn contend(ingestor: &Ingestor, lease: &Lease) -> Option<Arc<Tenure>> {
    match lease.try_acquire().await {
        Ok(Some(tenure)) => return Some(tenure),
        Ok(None) => {}
        Err(error) => tracing::warn!(%error, "reading the ingest lease failed; trying again"),
    }
    let holder = lease.holder().await.ok().flatten().map(|held| held.owner);
    ingestor.role.stand_by(holder);
    None
}

/// Stands by until the lease is this ingestor's, works while it holds it, and stands by again
/// if it loses it; gives it back on shutdown.
async fn supervise(
    ingestor: Arc<Ingestor>,
    lease: Arc<Lease>,
    first: Option<(Arc<Tenure>, FirstRuns)>,
    mut stop: watch::Receiver<bool>,
) {
    // What `start` loaded, and the runs it scheduled, are current only if it took the lease.
    let (mut tenure, mut scheduled) = first.unzip();
    loop {
        let Some(held) = tenure.take() else {
            let retry = ingestor.clock.now() + lease.renew_every();
            tokio::select! {
                () = ingestor.clock.sleep_until(retry) => {}
                _ = stop.wait_for(|stopped| *stopped) => return,
            }
            tenure = contend(&ingestor, &lease).await;
            continue;
        };
        let runs = match scheduled.take() {
            Some(runs) => runs,
            None => match taking_over(&ingestor).await {
                Ok(runs) => runs,
                Err(error) => {
                    tracing::warn!(%error, "reading the ingest bucket on taking the lease failed; giving it back");
                    lease.release(&held).await;
                    ingestor.role.stand_by(None);
                    continue;
                }
            },
        };
        ingestor.role.activate(Arc::clone(&held));
        tracing::info!(owner = lease.owner(), "this ingestor holds the ingest lease and is active");
        let stopped = work_while_held(&ingestor, &lease, &held, runs, &mut stop).await;
        if stopped {
            lease.release(&held).await;
            ingestor.role.stand_by(None);
            return;
        }
        tracing::warn!(owner = lease.owner(), "ingest lease lost; this ingestor stands by");
        ingestor.role.stand_by(lease.holder().await.ok().flatten().map(|held| held.owner));
    }
}

/// When the poll and the sweep are first due.
type FirstRuns = [(Run, Timestamp); 2];

/// The poll runs at once: it reads only what changed since its watermarks, and what changed
/// while no ingestor held the lease should not wait a further interval. The sweep is counted
/// from its last run, not from this start: were it counted from each start, an ingestor
/// restarted more often than the sweep interval would never sweep, and a hard delete whose
/// webhook was lost would never be found.
async fn first_runs(ingestor: &Ingestor) -> Result<FirstRuns, IngestError> {
    let now = ingestor.clock.now();
    let last_sweep = ingestor.schedule_start(Run::Sweep).await?;
    let first_sweep = (last_sweep + interval_of(&ingestor.options, Run::Sweep)).max(now);
    Ok([(Run::Poll, now), (Run::Sweep, first_sweep)])
}

/// On taking the lease from another ingestor: what it changed in the ingest bucket, and when
/// its runs are due.
async fn taking_over(ingestor: &Ingestor) -> Result<FirstRuns, IngestError> {
    ingestor.reload().await?;
    first_runs(ingestor).await
}

/// Runs the poller, the sweeper, the retrying and the lease's renewals until the lease is lost
/// or the ingestor stops; returns whether it stopped.
async fn work_while_held(
    ingestor: &Arc<Ingestor>,
    lease: &Arc<Lease>,
    tenure: &Arc<Tenure>,
    runs: FirstRuns,
    stop: &mut watch::Receiver<bool>,
) -> bool {
    let (work_stop, _) = watch::channel(false);
    let mut tasks = Vec::new();
    {
        let (lease, tenure, stopped) = (Arc::clone(lease), Arc::clone(tenure), work_stop.subscribe());
        tasks.push(tokio::spawn(async move { lease.hold(tenure, stopped).await }));
    }
    for (run, first) in runs {
        tasks.push(tokio::spawn(scheduled(Arc::clone(ingestor), run, first, work_stop.subscribe())));
    }
    tasks.push(tokio::spawn(retrying(Arc::clone(ingestor), work_stop.subscribe())));
    let mut lost = tenure.watch_lost();
    let stopped = tokio::select! {
        _ = stop.wait_for(|stopped| *stopped) => true,
        _ = lost.wait_for(|lost| *lost) => false,
    };
    work_stop.send_replace(true);
    for task in tasks {
        if let Err(error) = task.await {
            tracing::warn!(%error, "an ingest task ended abnormally");
        }
    }
    stopped
}

fn interval_of(options: &IngestOptions, run: Run) -> Duration {
    match run {
        Run::Poll => options.poll_every,
        Run::Sweep => options.sweep_every,
    }
}

/// Runs `run` at `first` and then an interval after each run began, on the clock (a sweep also
/// at once when one is asked for), until stopped; a failed run is logged and the next one tries
/// again. Counted from the start, not
/// the end: time that passed while a run went on (a clock moved on as soon as the run told
/// its result, say) counts towards the next one instead of being lost.
async fn scheduled(ingestor: Arc<Ingestor>, run: Run, first: Timestamp, mut stop: watch::Receiver<bool>) {
    let mut due = first;
    loop {
        let work = async {
            match run {
                // A sweep asked for (a location's zone changed) runs at once.
                Run::Sweep => tokio::select! {
                    () = ingestor.clock.sleep_until(due) => {}
                    () = ingestor.sweep_wanted.notified() => {}
                },
                Run::Poll => ingestor.clock.sleep_until(due).await,
            }
            let began = ingestor.clock.now();
            let result = match run {
                Run::Poll => ingestor.poll().await,
                Run::Sweep => ingestor.sweep().await,
            };
            (began, result)
        };
        tokio::select! {
            (began, result) = work => {
                if let Err(error) = result {
                    tracing::warn!(?run, %error, "nexudus ingest run failed; the next one tries again");
                }
                due = began + interval_of(&ingestor.options, run);
            }
            _ = stop.wait_for(|stopped| *stopped) => return,
        }
    }
}

/// Reads the retry set's entries again as each falls due on the clock, until stopped; a new
/// entry wakes it to wait for the earliest one.
async fn retrying(ingestor: Arc<Ingestor>, mut stop: watch::Receiver<bool>) {
    loop {
        let due = async {
            match ingestor.retries.next_due() {
                Some(due) => ingestor.clock.sleep_until(due).await,
                None => std::future::pending().await,
            }
        };
        let is_due = tokio::select! {
            () = due => true,
            () = ingestor.retries.added() => false,
            _ = stop.wait_for(|stopped| *stopped) => return,
        };
        if is_due {
            tokio::select! {
                () = ingestor.retry_due() => {}
                _ = stop.wait_for(|stopped| *stopped) => return,
            }
        }
    }
}

impl IngestHandle {
    /// The webhook receiver, for the binary to mount (it serves [`WEBHOOK_ROUTE`]).
    pub fn router(&self) -> axum::Router {
        let gate = axum::middleware::from_fn_with_state(Arc::clone(&self.ingestor), role::answer_while_standby);
        webhook::router(Arc::clone(&self.ingestor)).layer(gate)
    }

    /// Serves [`IngestHandle::router`] on `address` until shutdown; returns the address bound
    /// (useful with port 0).
    pub async fn serve(&self, address: SocketAddr) -> Result<SocketAddr, IngestError> {
        let bind_failed = |source| IngestError::Serve { address, source };
        let listener = tokio::net::TcpListener::bind(address).await.map_err(bind_failed)?;
        let bound = listener.local_addr().map_err(bind_failed)?;
        let mut stop = self.stop.subscribe();
        let app = self.router();
        let server = tokio::spawn(async move {
            let stopped = async move {
                let _ = stop.wait_for(|stopped| *stopped).await;
            };
            webhook::serve(listener, app, webhook::WebhookLimits::default(), stopped).await;
        });
        self.tasks.lock().unwrap_or_else(PoisonError::into_inner).push(server);
        Ok(bound)
    }

    pub fn status(&self) -> IngestStatus {
        let ingestor = &self.ingestor;
        let unmapped = if ingestor.options.mapping_from_nexudus {
            ingestor.ledger.held_by_nobody(&[RecordKind::Resource, RecordKind::TimePass, RecordKind::FloorPlanDesk])
        } else {
            0
        };
        let mut parked = ingestor.parking.list();
        for record in &mut parked {
            let kind = RecordKind::from_entity(&record.entity);
            if let (Some(kind), Some(id)) = (kind, record.id) {
                record.withheld_from = ingestor.ledger.withheld_from(RecordKey::new(kind, id));
            }
        }
        ingestor.stats.status(
            parked,
            ingestor.retries.list(),
            ingestor.ledger.held_by_nobody(&[RecordKind::Booking]),
            unmapped,
            ingestor.client.limiter_waits(),
            ingestor.role.status(ingestor.clock.now()),
        )
    }

    /// Polls now (waiting for a poll already running), and returns what it did.
    pub async fn poll_now(&self) -> Result<RunSummary, IngestError> {
        self.running().await?;
        self.ingestor.poll().await
    }

    /// Sweeps now (waiting for a sweep already running), and returns what it did.
    pub async fn sweep_now(&self) -> Result<RunSummary, IngestError> {
        self.running().await?;
        self.ingestor.sweep().await
    }

    async fn running(&self) -> Result<(), IngestError> {
        if *self.stop.borrow() {
            return Err(IngestError::ShutDown);
        }
        self.ingestor.role.ensure_acting(&*self.ingestor.clock).await
    }

    /// Stops the poller, the sweeper, the retrying and the servers started by [`IngestHandle::serve`], and waits
    /// for them. A run in progress is abandoned: what it appended is remembered, and the rest is
    /// read again by the next one.
    pub async fn shutdown(&self) {
        self.stop.send_replace(true);
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(PoisonError::into_inner));
        for task in tasks {
            if let Err(error) = task.await {
                tracing::warn!(%error, "an ingest task ended abnormally");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_never_show_the_webhook_secret() {
        let shown = format!("{:?}", IngestOptions::new(Secret::new("hunter2")));
        assert!(!shown.contains("hunter2") && shown.contains("<redacted>"), "{shown}");
    }
}
