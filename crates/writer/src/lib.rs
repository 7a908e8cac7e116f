//! The Kisi writer: turns the engine's commands into the fewest Kisi calls that make Kisi hold what
//! they ask for, and reports what it did as outcomes.
//!
//! Commands are level-triggered: each says what should be true for one key, a member's user or a
//! member's membership of one group. The writer keeps, per key, the desire of the newest command
//! and what it knows Kisi holds (user and assignment ids, validity, suspension, who created them),
//! and makes one call at a time towards the desire, so a backlog of grant/revoke/grant for a key
//! costs at most one call and an already-true desire none. [`start`] returns a [`WriterHandle`];
//! [`WriterSettings`] and [`ReconcileSettings`] are the configuration's `[writer]` and `[reconcile]`
//! sections, so a key has one name and one default.
//!
//! Its parts:
//!
//! * `worker/` is the writer's task: on standby until it holds the account's lease
//!   (`writer.<account>`, a [`doorsync_log::Lease`]), then active until it loses or gives it back.
//!   While active, `intake` takes in the durable consumer's deliveries of the command stream, holds
//!   them per key with the newest one's desire, and settles them (acknowledged with outcomes once
//!   Kisi holds the desire, put back when the log fails, given back to the log on losing the
//!   lease); `effects` makes each Kisi call the plan names and folds what Kisi answered into the
//!   writer's knowledge as an observation, through the pure `Knowledge::apply`.
//! * `plan` is the one planner: the one next call that brings a key closer to its desire, as plain
//!   functions. [`dry_run`] runs the same planner over what Kisi was seen to hold, for `doorsync
//!   replay --dry-run` and `doorsync reconcile --dry-run`, so the tools cannot drift from the
//!   writer's rules (whole-second windows, foreign assignments left alone, only linked users).
//! * `knowledge.rs` keeps what the writer knows of Kisi (`member.<id>` in the writer bucket),
//!   surviving restarts. Before a call that changes Kisi the record is saved with what the call may
//!   change marked as not known, and a change whose answer was lost is marked so too: whoever
//!   decides next (this writer, or a standby that took over from one that died during the call)
//!   reads Kisi first.
//! * `snapshot.rs`: every Kisi user and the managed groups' assignments, read a page at a time
//!   when the writer takes the account (the bulk work waits for it) and by every reconciliation,
//!   so members are matched by exact, case-insensitive email without a search each.
//! * `reconcile.rs`, the reconciler, runs inside the active writer
//!   ([`WriterHandle::reconcile_now`], and on a schedule), a step (one Kisi call) at a time taking
//!   turns with the commands: it lists the users and the managed groups, repairs the difference
//!   through the same calls, and holds revocations above the configured share of members until an
//!   operator confirms.
//! * [`dead_letters`] is the one owner of dead letters: writing, listing, retry and drop, and the
//!   `dlq.` keys of the writer bucket. Nothing else writes the writer's bucket.
//! * [`metric_definitions`]: the writer's metrics.
//!
//! Requests are serial, at most `requests_per_second` in any rolling second ([`RequestLimiter`], on
//! the [`Clock`](doorsync_clock::Clock); Kisi allows 5 per API user), each counted from when its
//! answer came back so that Kisi never sees more, and retried with exponential backoff and full
//! jitter (seeded) on 429, 5xx, timeouts and transport errors; a `Retry-After` holds every request,
//! five minutes at most. A create whose answer was lost is looked up before it is tried again. A
//! command that needs the member's `EnsureUser` before it has come (a writer that died holding it
//! gives it back only after `writer.ack_wait`, after newer commands) waits for it for twice the
//! ack wait before it is dead-lettered.
//!
//! Kisi as it may really behave: every PATCH of a window is read back, and when Kisi ignored or
//! refused it the assignment is deleted and created again; that the account does not apply a PATCH
//! is remembered (`patch-validity.<account>`) so later changes go straight to delete and create.
//! Kisi answers 403 both for a key that lacks rights and for an id the key may not see: a 403
//! pauses the writer only when the key's own `GET /user` fails too; otherwise a 403 on a user's or
//! an assignment's id means it is gone, and one on a group dead-letters that command, naming the
//! group's `[[mapping]]` entry, while every other group is served. A user found by email rather
//! than created is linked for memberships only (`kisi.manage_found_users` to manage it), the key's
//! owner is never linked, and a Kisi user is linked to one member at most (`kisi-user.<id>`).
//! Assignments made by the users `kisi.adopt_created_by` names are treated as doorsync's own
//! (moving over from Nexudus's built-in integration); of the assignments of users no member is
//! linked to, only theirs are removed.
//!
//! Rules the code keeps:
//!
//! * A command is acknowledged only after Kisi confirmed it (or it was already true), or after it
//!   was dead-lettered with its reason; one overtaken by a newer command for its key is
//!   acknowledged when the newer one is carried out. A refused API key (401, or 403 while `GET
//!   /user` fails too) pauses the writer, which then only probes the key, instead of dead-lettering
//!   the queue; one refused group never stops the others.
//! * One writer per Kisi account calls Kisi. It stops calling a third of the lease before the lease
//!   could lapse, so `writer.lease_ttl` is at least three Kisi request timeouts.
//! * doorsync suspends, re-enables or deletes only users it created (found users only when
//!   `kisi.manage_found_users` says so), never links the API key's owner or one Kisi user to two
//!   members, and never changes an assignment another API user made unless configured to
//!   (`reconcile.touch_foreign_assignments`) or adopted through `kisi.adopt_created_by`.
//! * What Kisi does not promise is verified: a changed window is read back, never assumed.
#![forbid(unsafe_code)]

mod backlog;
mod backoff;
pub mod dead_letters;
mod error;
mod gateway;
mod knowledge;
mod limiter;
pub mod metric_definitions;
mod names;
mod options;
mod plan;
mod reconcile;
mod snapshot;
mod status;
mod worker;

use std::sync::Arc;

use doorsync_catalogue::CatalogueWriter;
use doorsync_clock::SharedClock;
use doorsync_kisi::KisiClient;
use doorsync_layout::Layout;
use doorsync_log::EventLog;
use tokio::sync::{Mutex, mpsc, oneshot, watch};
use tokio::task::JoinHandle;

pub use dead_letters::write::{REASON_HEADER, SEQUENCE_HEADER};
pub use error::WriterError;
pub use gateway::ASSIGNMENTS_PAGE;
pub use limiter::RequestLimiter;
pub use options::{ReconcileSettings, WriterOptions, WriterSettings};
pub use plan::dry_run;
pub use status::{
    CallStats, HeldRepairStatus, LimiterStats, PauseStatus, ReconcileReport, RefusedGroup, RetryAfterHold,
    WINDOW_EDGE_LAG_BOUNDS_MS, WindowEdgeLag, WriterRole, WriterStatus,
};
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
    let catalogue = CatalogueWriter::over(&layout.catalogue_bucket, log.key_value(&layout.catalogue_bucket).await?);
    let shared = Arc::new(Shared {
        options,
        layout,
        log,
        clock,
        status: StatusCell::new(),
        writer_kv,
        leases_kv,
        catalogue,
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
        self.shared.status.snapshot(self.shared.clock.now(), self.shared.options.backoff_max)
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
