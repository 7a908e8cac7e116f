//! The writer's task and its lease: on standby until it holds the account's lease, then active
//! ([`Active`]) for as long as it holds it, and on standby again once it loses it or gives it back.
//!
//! A plain tokio task rather than an actor: there is exactly one writer state per process, every
//! request must be serial anyway, and the task needs to wait on several sources at once (new
//! deliveries, handle requests, the next backoff or probe, losing the lease), which a `select!`
//! expresses directly. The handle talks to it through a channel and reads a shared status.
//!
//! While active, [`intake`] takes the commands in and settles them, and [`effects`] makes the Kisi
//! calls and folds what each one observed into the writer's knowledge.

mod effects;
mod intake;

use std::sync::Arc;

use doorsync_catalogue::CatalogueWriter;
use doorsync_clock::SharedClock;
use doorsync_kisi::KisiClient;
use doorsync_layout::Layout;
use doorsync_log::{EventLog, KeyValue, Lease, Tenure};
use tokio::sync::{mpsc, oneshot, watch};

pub(crate) use effects::{Creators, Driven, Refusal};
pub use effects::{MANAGED_BY_KEY, MANAGED_BY_VALUE};
pub(crate) use intake::{Active, Settle, settle_all};

use crate::backoff::Backoff;
use crate::gateway::{Gateway, Stop};
use crate::limiter::RequestLimiter;
use crate::status::{ReconcileReport, StatusCell, WriterRole};
use crate::{WriterError, WriterOptions};

/// What the writer's task shares with its handles.
pub(crate) struct Shared {
    pub(crate) options: WriterOptions,
    pub(crate) layout: Layout,
    pub(crate) log: Arc<dyn EventLog>,
    pub(crate) clock: SharedClock,
    pub(crate) status: StatusCell,
    pub(crate) writer_kv: Arc<dyn KeyValue>,
    pub(crate) leases_kv: Arc<dyn KeyValue>,
    /// Where the names of the Kisi groups it reads go.
    pub(crate) catalogue: CatalogueWriter,
    pub(crate) shutdown: watch::Sender<bool>,
}

/// Requests from a handle.
pub(crate) enum Control {
    Reconcile(oneshot::Sender<Result<ReconcileReport, WriterError>>),
    ConfirmHeld(oneshot::Sender<Result<ReconcileReport, WriterError>>),
}

impl Control {
    fn refuse(self, error: impl Fn() -> WriterError) {
        let _ = match self {
            Self::Reconcile(reply) | Self::ConfirmHeld(reply) => reply.send(Err(error())),
        };
    }
}

/// The writer's whole life: standby, active, and standby again if the lease is lost.
pub(crate) async fn run(shared: Arc<Shared>, kisi: KisiClient, mut control: mpsc::Receiver<Control>) {
    let options = &shared.options;
    let lease = Arc::new(Lease::new(
        Arc::clone(&shared.leases_kv),
        format!("writer.{}", options.account),
        options.writer_id.clone(),
        options.settings.lease_ttl,
        Arc::clone(&shared.clock),
    ));
    let limiter = RequestLimiter::new(options.requests_per_second);
    let mut gateway = Gateway::new(kisi, limiter, Arc::clone(&shared.clock), shared.status.clone());
    let mut backoff = Backoff::new(options.backoff_first, options.backoff_max, options.seed);
    let shutdown = shared.shutdown.subscribe();
    while let Some(tenure) = wait_for_lease(&shared, &lease, &mut control).await {
        shared.status.lock().role = WriterRole::Active;
        tracing::info!(writer = %options.writer_id, account = %options.account, "writer took the account's lease");
        let (stop_holding, holding_stopped) = watch::channel(false);
        let holder = {
            let (lease, tenure) = (Arc::clone(&lease), Arc::clone(&tenure));
            tokio::spawn(async move { lease.hold(tenure, holding_stopped).await })
        };
        let stop = Stop::new(shutdown.clone(), Arc::clone(&tenure));
        match Active::open(&shared, &mut gateway, &mut backoff, stop).await {
            Ok(mut active) => {
                active.run(&mut control).await;
                active.give_back().await;
            }
            Err(error) => {
                tracing::error!(%error, "writer could not start working; giving the lease back");
                let retry = shared.clock.now() + options.backoff_max.min(lease.renew_every());
                let mut shutdown = shutdown.clone();
                tokio::select! {
                    () = shared.clock.sleep_until(retry) => {}
                    _ = shutdown.wait_for(|stopped| *stopped) => {}
                }
            }
        }
        stop_holding.send_replace(true);
        let _ = holder.await;
        lease.release(&tenure).await;
        if *shutdown.borrow() {
            break;
        }
    }
    shared.status.lock().role = WriterRole::Stopped;
}

/// Waits as a standby until the lease is this writer's; `None` on shutdown.
async fn wait_for_lease(shared: &Shared, lease: &Lease, control: &mut mpsc::Receiver<Control>) -> Option<Arc<Tenure>> {
    let mut shutdown = shared.shutdown.subscribe();
    loop {
        if *shutdown.borrow() {
            return None;
        }
        match lease.try_acquire().await {
            Ok(Some(held)) => return Some(held),
            Ok(None) => {}
            Err(error) => tracing::warn!(%error, "reading the writer lease failed; retrying"),
        }
        shared.status.lock().role = WriterRole::Standby;
        let retry = shared.clock.now() + lease.renew_every();
        loop {
            tokio::select! {
                () = shared.clock.sleep_until(retry) => break,
                _ = shutdown.wait_for(|stopped| *stopped) => return None,
                Some(request) = control.recv() => request.refuse(|| WriterError::NotActive),
            }
        }
    }
}
