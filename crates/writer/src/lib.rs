//! The Kisi writer: turns the engine's commands into the fewest Kisi calls that make Kisi hold
//! what they ask for, and reports what it did as outcomes.
//!
//! Commands are level-triggered: each says what should be true for one key, a member's user or a
//! member's membership of one group. The writer keeps, per key, the desire of the newest command
//! and what it knows Kisi holds (user and assignment ids, validity, suspension, who created them),
//! and makes one call at a time towards the desire, so a backlog of grant/revoke/grant for a key
//! costs at most one call and an already-true desire none. A command is acknowledged only once
//! Kisi confirmed it or it was dead-lettered with a reason; one overtaken by a newer command for
//! its key is acknowledged when the newer one is carried out. What the writer knows lives in the
//! writer bucket, so a restarted writer or a standby taking over does not ask again.
//!
//! Requests are serial, spaced by a GCRA limiter below Kisi's 5 per second per API user, and
//! retried with exponential backoff and full jitter (seeded) on 429, 5xx, timeouts and transport
//! errors, honouring `Retry-After`; a key that keeps failing waits without holding up the others.
//! A create whose answer was lost is looked up before it is tried again. Permanent refusals go to
//! the dead-letter subject; a refused API key (401/403) pauses the writer, which then only probes
//! the key until it works again. Users are suspended or deleted only when doorsync created or
//! linked them, and assignments made by someone else are left alone unless allowed.
//!
//! One writer per Kisi account is active, through a lease; others wait on standby. The
//! [reconciler](WriterHandle::reconcile_now) runs inside the active writer.
#![forbid(unsafe_code)]

mod backlog;
mod backoff;
pub mod dead_letters;
mod error;
mod gateway;
mod knowledge;
mod limiter;
pub mod metric_definitions;
mod options;
mod plan;
mod reconcile;
mod status;
mod worker;

use std::sync::Arc;

use doorsync_clock::SharedClock;
use doorsync_kisi::KisiClient;
use doorsync_layout::Layout;
use doorsync_log::EventLog;
use tokio::sync::{Mutex, mpsc, oneshot, watch};
use tokio::task::JoinHandle;

pub use error::WriterError;
pub use options::{ReconcileSettings, WriterOptions, WriterSettings};
pub use plan::dry_run;
pub use status::{
    CallStats, HeldRepairStatus, LimiterStats, PauseStatus, ReconcileReport, RefusedGroup, RetryAfterHold,
    WINDOW_EDGE_LAG_BOUNDS_MS, WindowEdgeLag, WriterRole, WriterStatus,
};
pub use dead_letters::write::{REASON_HEADER, SEQUENCE_HEADER};
pub use worker::{MANAGED_BY_KEY, MANAGED_BY_VALUE};

use crate::status::StatusCell;
use crate::worker::{Control, Shared};

/// Requests from handles waiting for the writer's task.
const CONTROL_BUFFER: usize = 16;

/// Starts a writer: it opens its buckets, then waits on standby until it holds the account's
/// lease, and works the command stream while it does.
pub async fn start(
    options: WriterOptions,
    kisi: KisiClient,
    log: Arc<dyn EventLog>,
    layout: Layout,
    clock: SharedClock,
) -> Result<WriterHandle, WriterError> {
    options.validate()?;
    let writer_kv = log.key_value(&layout.writer_bucket).await?;
    let leases_kv = log.key_value(&layout.leases_bucket).await?;
    let shared = Arc::new(Shared {
        options,
        layout,
        log,
        clock,
        status: StatusCell::new(),
        writer_kv,
        leases_kv,
        shutdown: watch::Sender::new(false),
    });
    let (control, requests) = mpsc::channel(CONTROL_BUFFER);
    let task = tokio::spawn(worker::run(Arc::clone(&shared), kisi, requests));
    Ok(WriterHandle { shared, control, task: Arc::new(Mutex::new(Some(task))) })
}

/// A running writer. Cheap to clone.
#[derive(Clone)]
pub struct WriterHandle {
    shared: Arc<Shared>,
    control: mpsc::Sender<Control>,
    task: Arc<Mutex<Option<JoinHandle<()>>>>,
}

impl std::fmt::Debug for WriterHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriterHandle")
            .field("writer_id", &self.shared.options.writer_id)
            .field("account", &self.shared.options.account)
            .finish_non_exhaustive()
    }
}

impl WriterHandle {
    pub fn status(&self) -> WriterStatus {
        self.shared.status.snapshot()
    }

    /// Reconciles now and returns what was found and repaired. Fails on a standby writer
    /// ([`WriterError::NotActive`]) and on a paused one.
    pub async fn reconcile_now(&self) -> Result<ReconcileReport, WriterError> {
        self.ask(Control::Reconcile).await
    }

    /// Carries out the revocations the mass-revocation guard held, those still wanted.
    pub async fn confirm_held_repair(&self) -> Result<ReconcileReport, WriterError> {
        self.ask(Control::ConfirmHeld).await
    }

    async fn ask(
        &self,
        request: impl FnOnce(oneshot::Sender<Result<ReconcileReport, WriterError>>) -> Control,
    ) -> Result<ReconcileReport, WriterError> {
        let (reply, answer) = oneshot::channel();
        self.control.send(request(reply)).await.map_err(|_| WriterError::Stopped)?;
        answer.await.map_err(|_| WriterError::Stopped)?
    }

    /// Stops: the call in flight finishes, commands not yet carried out are given back to the
    /// log unacknowledged, and the lease is released so a standby takes over at once.
    pub async fn shutdown(&self) {
        self.shared.shutdown.send_replace(true);
        if let Some(task) = self.task.lock().await.take() {
            let _ = task.await;
        }
    }
}
