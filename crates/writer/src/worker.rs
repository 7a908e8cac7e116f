//! The writer's task: on standby until it holds the account's lease, then the one owner of the
//! Kisi client, the limiter, the backlog and the knowledge, working one key at a time.
//!
//! A plain tokio task rather than an actor: there is exactly one writer state per process, every
//! request must be serial anyway, and the task needs to wait on several sources at once (new
//! deliveries, handle requests, the next backoff or probe, losing the lease), which a `select!`
//! expresses directly. The handle talks to it through a channel and reads a shared status.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use doorsync_clock::SharedClock;
use doorsync_kisi::{KisiClient, KisiError, NewUser, RoleAssignment, User, Validity};
use doorsync_layout::Layout;
use doorsync_log::{
    ConsumerSpec, Delivery, DurableConsumer, EventLog, KeyValue, Lease, LogError, NewMessage, RetryPolicy, Tenure,
    append_with_retry,
};
use doorsync_proto::{
    Command, Envelope, Failed, GrantApplied, KisiAssignmentId, KisiGroupId, KisiUserId, KisiUserState, MemberId,
    Outcome, Revoked, Timestamp, UserAccessChanged, UserLinked,
};
use doorsync_telemetry::{TraceParent, current_trace_headers};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::backlog::{Added, Backlog, Desire, Key, Pending, Received};
use crate::backoff::Backoff;
use crate::gateway::{ASSIGNMENTS_PAGE, CallError, Gateway, Stop, retry_after_wait};
use crate::knowledge::{
    GroupDesire, HeldAssignment, Knowledge, KnownAssignment, KnownUser, MemberRecord, UserDesire,
    load_patch_applies_validity, load_reconciled_at, save_reconciled_at,
};
use crate::limiter::Gcra;
use crate::plan::{self, GroupRules, GroupStep, UserStep};
use crate::reconcile::HeldRepair;
use crate::status::{PauseStatus, ReconcileReport, RefusedGroup, StatusCell, WriterRole, WriterStatus};
use crate::{WriterError, WriterOptions};

/// Deliveries waiting between the consumer and the worker.
const INTAKE_BUFFER: usize = 256;
/// After this many disagreements with Kisi in a row (a create refused as a duplicate, then the
/// duplicate not found), a key is dead-lettered instead of going round again.
const MAX_CONFLICTS: u32 = 3;
/// At most this many calls to settle one key within a reconciliation.
const MAX_REPAIR_STEPS: usize = 8;
/// Set on every user doorsync creates, so that finding it by email later (after a create whose
/// answer was lost, or after a restart) still says doorsync created it.
pub const MANAGED_BY_KEY: &str = "managed_by";
pub const MANAGED_BY_VALUE: &str = "doorsync";
/// Application headers of a dead letter.
pub const REASON_HEADER: &str = "Doorsync-Dead-Letter-Reason";
pub const SEQUENCE_HEADER: &str = "Doorsync-Command-Sequence";

/// What the writer's task shares with its handles.
pub(crate) struct Shared {
    pub(crate) options: WriterOptions,
    pub(crate) layout: Layout,
    pub(crate) log: Arc<dyn EventLog>,
    pub(crate) clock: SharedClock,
    pub(crate) status: StatusCell,
    pub(crate) writer_kv: Arc<dyn KeyValue>,
    pub(crate) leases_kv: Arc<dyn KeyValue>,
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

pub(crate) fn after(at: Timestamp, duration: Duration) -> Timestamp {
    let millis = i64::try_from(duration.as_millis()).unwrap_or(i64::MAX);
    Timestamp::from_unix_millis(at.as_unix_millis().saturating_add(millis))
}

/// The writer's whole life: standby, active, and standby again if the lease is lost.
pub(crate) async fn run(shared: Arc<Shared>, kisi: KisiClient, mut control: mpsc::Receiver<Control>) {
    let options = &shared.options;
    let lease = Arc::new(Lease::new(
        Arc::clone(&shared.leases_kv),
        format!("writer.{}", options.account),
        options.writer_id.clone(),
        options.lease_ttl,
        Arc::clone(&shared.clock),
    ));
    let limiter = Gcra::new(options.requests_per_second, options.burst);
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
                let retry = after(shared.clock.now(), options.backoff_max.min(lease.renew_every()));
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
        let retry = after(shared.clock.now(), lease.renew_every());
        loop {
            tokio::select! {
                () = shared.clock.sleep_until(retry) => break,
                _ = shutdown.wait_for(|stopped| *stopped) => return None,
                Some(request) = control.recv() => request.refuse(|| WriterError::NotActive),
            }
        }
    }
}

/// A paused writer's next credentials probe.
#[derive(Debug)]
struct Pause {
    status: PauseStatus,
    next_probe_at: Timestamp,
}

/// The result of one Kisi call for a key, with what is known already updated.
pub(crate) enum StepResult {
    /// Knowledge changed; these outcomes report it.
    Changed(Vec<Outcome>),
    /// Kisi disagreed with what was known (which is now corrected): why.
    Conflict(String),
    Failed(KisiError),
    /// The knowledge could not be saved before a change (the log failed): nothing was called.
    Unsaved(String),
    /// Cannot be done, whatever is retried: why.
    Refused(String),
    Stopped,
}

impl From<CallError> for StepResult {
    fn from(error: CallError) -> Self {
        match error {
            CallError::Kisi(error) => Self::Failed(error),
            CallError::Stopped => Self::Stopped,
        }
    }
}

/// Whom Kisi refused with a 401 or 403.
pub(crate) enum Refusal {
    /// The API key itself: the writer is paused.
    TheKey,
    /// This call only (an id the key may not see): the key works.
    ThisCall,
    /// The key's own check failed for another reason: not known yet.
    NotKnownYet(KisiError),
}

/// How driving one key to its desire ended, within a reconciliation.
pub(crate) enum Driven {
    Done(Vec<Outcome>),
    Refused(String),
    Failed(KisiError),
    Stopped,
}

/// The writer while it holds the lease.
pub(crate) struct Active<'a> {
    pub(crate) shared: &'a Shared,
    pub(crate) gateway: &'a mut Gateway,
    backoff: &'a mut Backoff,
    pub(crate) stop: Stop,
    pub(crate) knowledge: Knowledge,
    pub(crate) backlog: Backlog,
    /// Whose assignments are doorsync's: the API key's user, and the adopted creators.
    pub(crate) creators: Creators,
    /// Whether this Kisi account applies a PATCH of an assignment's validity, once learnt (kept
    /// in the writer's bucket).
    pub(crate) patch_applies_validity: Option<bool>,
    identity_attempts: u32,
    next_identity_at: Timestamp,
    pause: Option<Pause>,
    pub(crate) held: Option<HeldRepair>,
    next_reconcile_at: Option<Timestamp>,
    intake: mpsc::Receiver<Delivery>,
    intake_task: JoinHandle<()>,
}

impl<'a> Active<'a> {
    async fn open(
        shared: &'a Shared,
        gateway: &'a mut Gateway,
        backoff: &'a mut Backoff,
        stop: Stop,
    ) -> Result<Self, WriterError> {
        let options = &shared.options;
        let spec = ConsumerSpec::new(&shared.layout.commands, &options.consumer_name)
            .filtered([shared.layout.subjects.commands_wildcard()])
            .ack_wait(options.ack_wait);
        let consumer = shared.log.durable_consumer(spec).await?;
        // Another writer may have changed the records since this one last held the lease.
        let mut knowledge = Knowledge::new(Arc::clone(&shared.writer_kv));
        knowledge.index_links().await?;
        let held = HeldRepair::load(knowledge.kv()).await?;
        let patch_applies_validity = load_patch_applies_validity(knowledge.kv(), &options.account).await?;
        // Counted from the last reconciliation that finished (or the first start of a writer of
        // this account), not from this start: a writer restarted more often than the interval
        // would otherwise never reconcile, and what only the reconciler repairs would stay.
        let now = shared.clock.now();
        let next_reconcile_at = match options.reconcile_every {
            Some(every) => {
                let since = match load_reconciled_at(knowledge.kv(), &options.account).await? {
                    Some(since) => since,
                    None => {
                        save_reconciled_at(knowledge.kv(), &options.account, now).await?;
                        now
                    }
                };
                Some(after(since, every).max(now))
            }
            None => None,
        };
        shared.status.lock().patch_applies_validity = patch_applies_validity;
        shared.status.lock().held_repair = held.as_ref().map(HeldRepair::status);
        let (sender, intake) = mpsc::channel(INTAKE_BUFFER);
        let intake_task = tokio::spawn(pull(consumer, sender, Arc::clone(&shared.clock)));
        let now = shared.clock.now();
        Ok(Self {
            shared,
            gateway,
            backoff,
            stop,
            knowledge,
            backlog: Backlog::default(),
            creators: Creators::default(),
            patch_applies_validity,
            identity_attempts: 0,
            next_identity_at: now,
            pause: None,
            held,
            next_reconcile_at,
            intake,
            intake_task,
        })
    }

    fn options(&self) -> &WriterOptions {
        &self.shared.options
    }

    fn now(&self) -> Timestamp {
        self.shared.clock.now()
    }

    async fn run(&mut self, control: &mut mpsc::Receiver<Control>) {
        loop {
            while let Ok(delivery) = self.intake.try_recv() {
                self.receive(delivery).await;
            }
            while let Ok(request) = control.try_recv() {
                self.answer(request).await;
            }
            let now = self.now();
            if self.stop.is_stopped(now) {
                return;
            }
            let wake = if let Some(probe_at) = self.probe_due() {
                if probe_at <= now {
                    self.probe().await;
                    continue;
                }
                Some(probe_at)
            } else if self.next_reconcile_at.is_some_and(|due| due <= now) {
                let (every, retry) = (self.options().reconcile_every, self.options().backoff_max);
                match self.reconcile().await {
                    Ok(_) => self.next_reconcile_at = every.map(|every| after(self.now(), every)),
                    Err(error) => {
                        tracing::warn!(%error, "scheduled reconciliation did not finish; trying again soon");
                        self.next_reconcile_at = every.map(|every| after(self.now(), every.min(retry)));
                    }
                }
                continue;
            } else if let Some(key) = self.backlog.next_ready(now) {
                self.work_on(key).await;
                continue;
            } else {
                [self.backlog.next_wakeup(), self.next_reconcile_at].into_iter().flatten().min()
            };
            let clock = Arc::clone(&self.shared.clock);
            let sleep = async move {
                match wake {
                    Some(at) => clock.sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            let mut stop = self.stop.clone();
            tokio::select! {
                Some(delivery) = self.intake.recv() => self.receive(delivery).await,
                Some(request) = control.recv() => self.answer(request).await,
                () = sleep => {}
                () = stop.stopped() => {}
            }
        }
    }

    /// When the next probe is due, if the writer must probe before anything else: it does not
    /// know its API user yet, or Kisi refused the key.
    fn probe_due(&self) -> Option<Timestamp> {
        match (&self.pause, self.creators.api_user) {
            (Some(pause), _) => Some(pause.next_probe_at),
            (None, None) => Some(self.next_identity_at),
            (None, Some(_)) => None,
        }
    }

    /// Asks Kisi who the key belongs to: the first call of an active writer, and the only one a
    /// paused writer makes.
    async fn probe(&mut self) {
        let result = self.gateway.call(&mut self.stop, |client| async move { client.current_user().await }).await;
        let now = self.now();
        match result {
            Ok(me) => {
                if self.creators.api_user.is_none()
                    && let Err(error) = self.learn_account().await
                {
                    self.identity_attempts += 1;
                    let wait = self.backoff.delay(self.identity_attempts);
                    tracing::warn!(%error, "reading the adopted creators or the mapped groups from Kisi failed; retrying");
                    self.next_identity_at = after(self.now(), wait);
                    return;
                }
                self.creators.api_user = Some(me.id);
                self.identity_attempts = 0;
                if self.pause.take().is_some() {
                    tracing::info!("Kisi accepts the API key again; the writer resumes");
                    self.shared.status.lock().paused = None;
                }
            }
            Err(CallError::Kisi(error)) if error.is_credentials_problem() => match &mut self.pause {
                Some(pause) => pause.next_probe_at = after(now, self.shared.options.credentials_probe_every),
                None => self.pause(&error),
            },
            Err(CallError::Kisi(error)) => {
                self.identity_attempts += 1;
                let wait = self.backoff.delay(self.identity_attempts);
                tracing::warn!(%error, "asking Kisi for the API key's user failed; retrying");
                match &mut self.pause {
                    Some(pause) => pause.next_probe_at = after(now, self.shared.options.credentials_probe_every),
                    None => self.next_identity_at = after(now, wait),
                }
            }
            Err(CallError::Stopped) => {}
        }
    }

    /// Stops all work but the credentials probe: every further call would be refused the same way,
    /// and working through the queue would only dead-letter it.
    pub(crate) fn pause(&mut self, error: &KisiError) {
        if self.pause.is_some() {
            return;
        }
        let now = self.now();
        let status = PauseStatus { reason: error.to_string(), since: now };
        tracing::error!(reason = %status.reason, "Kisi refused the API key; the writer is paused until it works again");
        {
            let mut shared_status = self.shared.status.lock();
            shared_status.paused = Some(status.clone());
            shared_status.credential_alerts += 1;
        }
        self.pause = Some(Pause { status, next_probe_at: after(now, self.shared.options.credentials_probe_every) });
    }

    pub(crate) fn paused_error(&self) -> Option<WriterError> {
        match (&self.pause, self.creators.api_user) {
            (Some(pause), _) => Some(WriterError::Paused { reason: pause.status.reason.clone() }),
            (None, None) => Some(WriterError::Paused { reason: "the API key's Kisi user is not known yet".to_owned() }),
            (None, Some(_)) => None,
        }
    }

    async fn answer(&mut self, request: Control) {
        match request {
            Control::Reconcile(reply) => {
                let report = self.reconcile().await;
                let _ = reply.send(report);
            }
            Control::ConfirmHeld(reply) => {
                let report = self.confirm_held().await;
                let _ = reply.send(report);
            }
        }
    }

    fn report_backlog(&self) {
        self.report(|_| {});
    }

    /// Changes the status together with the backlog's size, so that a reader never sees a
    /// command counted as settled and still in the backlog.
    fn report(&self, change: impl FnOnce(&mut WriterStatus)) {
        let mut status = self.shared.status.lock();
        change(&mut status);
        status.backlog_keys = self.backlog.keys();
        status.backlog_commands = self.backlog.deliveries();
    }

    /// Takes in one delivery: held with its key, or settled at once when it is already done.
    async fn receive(&mut self, delivery: Delivery) {
        let envelope = match doorsync_proto::decode::<Command>(&delivery.message.payload) {
            Ok(envelope) => envelope,
            Err(error) => return self.dead_letter_undecodable(delivery, &error.to_string()).await,
        };
        let key = Key::of(&envelope.message);
        let member = key.member();
        if let Err(error) = self.knowledge.load(member).await {
            tracing::warn!(%member, %error, "reading the writer's knowledge failed; the command comes back later");
            let _ = delivery.nak(self.options().backoff_first).await;
            return;
        }
        let record = self.knowledge.get_mut(member);
        let (settled_sequence, carried_out) = match key {
            Key::User(_) => (record.user.settled_sequence, record.user.desired.clone().map(Desire::User)),
            Key::Group(_, group) => {
                let group_record = record.groups.get(&group);
                (
                    group_record.map_or(0, |record| record.settled_sequence),
                    group_record.and_then(|record| record.desired).map(|desire| Desire::Group(group, desire)),
                )
            }
        };
        let received = Received {
            id: envelope.id,
            sequence: delivery.message.sequence,
            occurred_at: envelope.occurred_at,
            window_edge: envelope.window_edge,
            payload: delivery.message.payload.clone(),
            command: envelope.message,
            trace: TraceParent::from_headers(&delivery.message.headers),
        };
        let command = received.command.clone();
        let next_desire = |before: Option<&Desire>| {
            let before = before.or(carried_out.as_ref());
            match key {
                Key::User(_) => {
                    let before = match before {
                        Some(Desire::User(desire)) => Some(desire),
                        _ => None,
                    };
                    plan::fold_user_desire(before, &command).map(Desire::User)
                }
                Key::Group(_, group) => plan::group_desire(&command).map(|desire| Desire::Group(group, desire)),
            }
        };
        let now = self.now();
        let added = self.backlog.add(key, received, delivery, settled_sequence, next_desire, now);
        if let Command::EnsureUser(ensure) = &command {
            self.backlog.learn_identity(key, &ensure.email, &ensure.name, now);
        }
        if let Added::Stale(delivery) = added {
            // A redelivery of a command settled meanwhile was counted when it was settled.
            if delivery.delivery_count == 1 {
                self.shared.status.lock().commands_superseded += 1;
            }
            settle_all([delivery], Settle::Ack).await;
        }
        self.report_backlog();
    }

    /// One step for one key, in the trace of the newest command for it.
    async fn work_on(&mut self, key: Key) {
        let span = match key {
            Key::User(member) => {
                tracing::info_span!(parent: None, "writer.step", %member, kisi.group = tracing::field::Empty)
            }
            Key::Group(member, group) => tracing::info_span!(parent: None, "writer.step", %member, kisi.group = %group),
        };
        if let Some(trace) = self.backlog.get(&key).and_then(|pending| pending.latest.trace.as_ref()) {
            trace.adopt(&span);
        }
        self.step(key).instrument(span).await;
    }

    /// The next call for `key`, or settling the key when nothing is left to do.
    async fn step(&mut self, key: Key) {
        let member = key.member();
        if let Err(error) = self.knowledge.load(member).await {
            return self.transient(key, &format!("reading the writer's knowledge failed: {error}"), None).await;
        }
        let Some(desire) = self.backlog.get(&key).map(|pending| pending.desire.clone()) else { return };
        let manage_found = self.shared.options.manage_found_users;
        let rules = self.group_rules();
        let record = self.knowledge.get_mut(member);
        let result = match desire {
            Desire::User(desire) => {
                match plan::user_step(&desire, record.user.known.as_ref(), record.user.searched_absent, manage_found) {
                    UserStep::Done => return self.settle(key).await,
                    UserStep::LeaveAlone => {
                        tracing::info!(%member, "the member's Kisi user was found, not created, by doorsync: left as it is");
                        self.report(|status| status.found_users_left_alone += 1);
                        return self.settle(key).await;
                    }
                    UserStep::AwaitEnsureUser => return self.await_command(key, NO_ENSURE_USER).await,
                    step => self.user_call(member, step).await,
                }
            }
            Desire::Group(group, desire) => {
                let known = record.known_in(group);
                match plan::group_step(desire, record.live_user(), known, rules) {
                    GroupStep::Done => return self.settle(key).await,
                    GroupStep::RefuseNoUser => return self.await_command(key, NO_USER).await,
                    GroupStep::RefuseForeign { assignment } => {
                        return self.dead_letter(key, &foreign(assignment, group)).await;
                    }
                    step => self.group_call(member, group, step).await,
                }
            }
        };
        match result {
            StepResult::Changed(outcomes) => {
                if let Some(pending) = self.backlog.get_mut(&key) {
                    pending.outcomes.extend(outcomes);
                }
                if let Err(error) = self.knowledge.save(member).await {
                    tracing::warn!(%member, %error, "saving the writer's knowledge failed; saved again when settled");
                }
            }
            StepResult::Conflict(reason) => {
                let conflicts = self.backlog.get_mut(&key).map_or(0, |pending| {
                    pending.conflicts += 1;
                    pending.conflicts
                });
                if conflicts >= MAX_CONFLICTS {
                    self.dead_letter(key, &format!("Kisi kept contradicting what doorsync knew: {reason}")).await;
                }
            }
            StepResult::Failed(error) if error.is_credentials_problem() => match self.whom_kisi_refused(&error).await {
                Refusal::TheKey => {}
                Refusal::ThisCall => {
                    let reason = self.refused_call(key, &error);
                    self.dead_letter(key, &reason).await;
                }
                Refusal::NotKnownYet(probe_error) => self.transient(key, &probe_error.to_string(), None).await,
            },
            StepResult::Failed(error) if error.is_retryable() => {
                let retry_after = retry_after_wait(&error, self.now()).map(|(wait, _)| wait);
                self.transient(key, &error.to_string(), retry_after).await;
            }
            StepResult::Failed(error) => self.dead_letter(key, &error.to_string()).await,
            StepResult::Unsaved(reason) => self.transient(key, &reason, None).await,
            StepResult::Refused(reason) => self.dead_letter(key, &reason).await,
            StepResult::Stopped => {}
        }
    }

    /// Records that `user`, found by email, is the member's; refused when another member already
    /// has it. An email that moves from one member to another (Kisi cannot change a user's email)
    /// must not hand the first member's Kisi user, and the doors it opens, to the second.
    async fn link(&mut self, member: MemberId, user: &KnownUser) -> Result<(), StepResult> {
        let unsaved =
            |error: LogError| StepResult::Unsaved(format!("reading or recording a user's link failed: {error}"));
        if let Some(other) = self.knowledge.linked_member(user.id).await.map_err(unsaved)?
            && other != member
        {
            self.knowledge.load(other).await.map_err(unsaved)?;
            let still_linked = self.knowledge.get_mut(other).live_user().is_some_and(|known| known.id == user.id);
            if still_linked {
                return Err(StepResult::Refused(format!(
                    "the member's email belongs to Kisi user {}, which is already linked to member {other}: an email \
                     that moves between members is not linked again (Kisi keeps a user's email; give the member \
                     their own email in Nexudus, or remove member {other}'s access first)",
                    user.id
                )));
            }
        }
        self.knowledge.record_link(user.id, member).await.map_err(unsaved)
    }

    /// Kisi answers 403, not 404, for an id that does not exist (so Kisi support says): once the
    /// key's own `GET /user` shows the key works, a 403 on a call by a user's or an assignment's
    /// id means that user or assignment is gone, and is handled as a 404.
    pub(crate) async fn gone_when_forbidden<T>(&mut self, result: Result<T, CallError>) -> Result<T, CallError> {
        let Err(CallError::Kisi(KisiError::Forbidden { endpoint, details })) = result else { return result };
        let error = KisiError::Forbidden { endpoint: endpoint.clone(), details: details.clone() };
        match self.whom_kisi_refused(&error).await {
            Refusal::ThisCall => Err(CallError::Kisi(KisiError::NotFound { endpoint, details })),
            Refusal::TheKey => Err(CallError::Kisi(error)),
            Refusal::NotKnownYet(probe_error) => Err(CallError::Kisi(probe_error)),
        }
    }

    /// A create of an assignment refused with 403 names two ids: the member's user may be gone
    /// (then it is found or created again), or the group is one the key may not use (then
    /// `refusal` stands, and the command is dead-lettered naming the group).
    async fn user_gone_or(&mut self, member: MemberId, user: KisiUserId, refusal: KisiError) -> StepResult {
        let read = self.gateway.call(&mut self.stop, |client| async move { client.user(user).await }).await;
        match self.gone_when_forbidden(read).await {
            Ok(_) => StepResult::Failed(refusal),
            Err(CallError::Kisi(KisiError::NotFound { .. })) => {
                self.knowledge.forget_link(user).await;
                let record = self.knowledge.get_mut(member);
                record.user.known = None;
                record.forget_assignments(KnownAssignment::Absent);
                StepResult::Conflict("the member's Kisi user is gone".to_owned())
            }
            Err(error) => error.into(),
        }
    }

    /// The rules for group steps, from the options and what was learnt of the account.
    pub(crate) fn group_rules(&self) -> GroupRules {
        GroupRules {
            modify_foreign: self.shared.options.modify_foreign_assignments,
            patch_applies_validity: self.patch_applies_validity,
        }
    }

    /// Whom a 401 or 403 refused. Kisi also answers 403 for an id the key may not see (a
    /// mistyped group id): that is this call's permanent failure, and pausing would only stop
    /// every other member's writes while the probe keeps succeeding. So a 403 pauses the writer
    /// only when the key's own `GET /user` is refused too.
    pub(crate) async fn whom_kisi_refused(&mut self, error: &KisiError) -> Refusal {
        if !matches!(error, KisiError::Forbidden { .. }) || self.pause.is_some() {
            self.pause(error);
            return Refusal::TheKey;
        }
        let probe = self.gateway.call(&mut self.stop, |client| async move { client.current_user().await }).await;
        match probe {
            Ok(_) => Refusal::ThisCall,
            Err(CallError::Kisi(probe_error)) if probe_error.is_credentials_problem() => {
                self.pause(&probe_error);
                Refusal::TheKey
            }
            Err(CallError::Kisi(probe_error)) => Refusal::NotKnownYet(probe_error),
            Err(CallError::Stopped) => Refusal::NotKnownYet(error.clone()),
        }
    }

    /// The reason for the dead letter of a command Kisi refused with 403 while the key works,
    /// naming the group and the configuration entry that maps it.
    fn refused_call(&self, key: Key, error: &KisiError) -> String {
        match key {
            Key::Group(_, group) => {
                let mapping = self.shared.options.group_labels.get(&group).cloned();
                self.note_refused_group(group, mapping.clone(), error.to_string());
                let entry =
                    mapping.map_or_else(|| "its [[mapping]] entry".to_owned(), |label| format!("[[mapping]] {label}"));
                format!(
                    "Kisi refused group {group} to this API key (403) while the key itself works: the group id is \
                     wrong or the key may not use it; check {entry} ({error})"
                )
            }
            Key::User(_) => format!(
                "Kisi refused the member's user to this API key (403) while the key itself works: the key may not \
                 see or change it ({error})"
            ),
        }
    }

    pub(crate) fn note_refused_group(&self, group: KisiGroupId, mapping: Option<String>, reason: String) {
        let mut status = self.shared.status.lock();
        if !status.refused_groups.iter().any(|refused| refused.group == group) {
            tracing::error!(%group, mapping = mapping.as_deref().unwrap_or("-"), reason, "Kisi refuses a mapped group to this API key");
            status.refused_groups.push(RefusedGroup { group, mapping, reason });
        }
    }

    /// What the writer learns of the account once, before its first write: who the adopted
    /// creators are, and which mapped groups the key may not see.
    async fn learn_account(&mut self) -> Result<(), KisiError> {
        let mut adopted = BTreeSet::new();
        for email in self.shared.options.adopt_created_by.clone() {
            let found = self
                .gateway
                .call(&mut self.stop, |client| async move { client.find_user_by_email(&email).await })
                .await;
            match found {
                Ok(Some(user)) => {
                    adopted.insert(user.id);
                }
                Ok(None) => {
                    tracing::error!("kisi.adopt_created_by names an email no Kisi user has; nothing is adopted for it")
                }
                Err(CallError::Kisi(error)) => return Err(error),
                Err(CallError::Stopped) => return Ok(()),
            }
        }
        self.creators.adopted = adopted;
        if self.shared.options.reconcile_groups.is_empty() {
            return Ok(());
        }
        let visible = match self.gateway.call(&mut self.stop, |client| async move { client.groups().await }).await {
            Ok(groups) => groups.into_iter().map(|group| group.id).collect::<BTreeSet<_>>(),
            Err(CallError::Kisi(error)) => return Err(error),
            Err(CallError::Stopped) => return Ok(()),
        };
        for &group in &self.shared.options.reconcile_groups {
            if !visible.contains(&group) {
                let mapping = self.shared.options.group_labels.get(&group).cloned();
                let reason = "not among the groups this API key can see (GET /groups)".to_owned();
                self.note_refused_group(group, mapping, reason);
            }
        }
        Ok(())
    }

    /// The key needs a command that has not come: the member's `EnsureUser`. A writer that died
    /// holding it gives it back only after the ack wait, so newer commands can come first. It is
    /// waited for like a transient failure until twice the ack wait has passed since the key's
    /// first command came; then the key is dead-lettered.
    async fn await_command(&mut self, key: Key, reason: &str) {
        let grace = self.options().ack_wait.saturating_mul(2);
        let now = self.now();
        let waiting = self.backlog.get(&key).is_some_and(|pending| after(pending.received_at, grace) > now);
        if waiting {
            self.transient(key, reason, None).await;
        } else {
            self.dead_letter(key, reason).await;
        }
    }

    /// Saves the member's record with what a change about to be made to its user (`None`) or
    /// `group` may alter marked as not known: a writer that stops or dies before it learns the
    /// result leaves whoever comes next to look in Kisi, not to trust what was true before.
    async fn before_change(&self, member: MemberId, group: Option<KisiGroupId>) -> Result<(), StepResult> {
        self.knowledge.save_in_doubt(member, group).await.map_err(|error| {
            StepResult::Unsaved(format!("saving the writer's knowledge before a change failed: {error}"))
        })
    }

    /// The key failed for now: try it again after a backoff (and Kisi's `Retry-After`), and tell
    /// the engine once when it keeps failing.
    async fn transient(&mut self, key: Key, reason: &str, retry_after: Option<Duration>) {
        let now = self.now();
        let report_after = self.options().report_transient_after;
        let Some(pending) = self.backlog.get_mut(&key) else { return };
        pending.attempts += 1;
        let wait = self.backoff.delay(pending.attempts).max(retry_after.unwrap_or_default());
        pending.not_before = after(now, wait);
        tracing::debug!(member = %key.member(), attempts = pending.attempts, reason, "Kisi call failed; retrying later");
        if pending.attempts >= report_after && !pending.transient_reported {
            pending.transient_reported = true;
            let failed = Outcome::Failed(Failed {
                member: key.member(),
                command: pending.latest.id.clone(),
                reason: format!("still retrying after {} attempts: {reason}", pending.attempts),
                permanent: false,
            });
            let occurred_at = pending.latest.occurred_at;
            if let Err(error) = self.publish(failed, occurred_at).await {
                tracing::warn!(%error, "publishing a transient failure failed");
            }
        }
    }

    /// The key is as its newest command asks: publish what was done, remember it, acknowledge
    /// every command of the key.
    async fn settle(&mut self, key: Key) {
        let Some(mut pending) = self.backlog.take(&key) else { return };
        let member = key.member();
        let record = self.knowledge.get_mut(member);
        let outcomes = match &pending.desire {
            Desire::User(_) if !pending.outcomes.is_empty() => std::mem::take(&mut pending.outcomes),
            Desire::User(_) => vec![user_outcome(member, &pending.latest.command, record.user.known.as_ref())],
            Desire::Group(group, desire) => vec![group_outcome(member, *group, *desire, record.groups.get(group))],
        };
        let occurred_at = pending.latest.occurred_at;
        for outcome in outcomes {
            if let Err(error) = self.publish(outcome.clone(), occurred_at).await {
                pending.outcomes = vec![outcome];
                return self.put_back(key, pending, &error.to_string()).await;
            }
        }
        pending.record_settled(self.knowledge.get_mut(member));
        if let Err(error) = self.knowledge.save(member).await {
            return self.put_back(key, pending, &error.to_string()).await;
        }
        let superseded = pending.deliveries.len().saturating_sub(1) as u64;
        // Kisi holds what the newest command asks from now on: that is when its edge was met.
        let (window_edge, settled_at) = (pending.latest.window_edge, self.now());
        self.report(|status| {
            status.commands_applied += 1;
            status.commands_superseded += superseded;
            if let Some(edge) = window_edge {
                status.window_edge_lag.observe(edge, settled_at);
            }
        });
        settle_all(pending.deliveries.into_values(), Settle::Ack).await;
    }

    /// The log failed while settling: keep the key and try again later (Kisi is already right,
    /// so the retry makes no call).
    async fn put_back(&mut self, key: Key, pending: Pending, reason: &str) {
        tracing::warn!(member = %key.member(), reason, "settling a command failed; retrying");
        self.backlog.restore(key, pending);
        self.transient(key, reason, None).await;
    }

    /// The key's newest command cannot be carried out: park it on the dead-letter subject with
    /// the reason, tell the engine, and settle every command of the key.
    async fn dead_letter(&mut self, key: Key, reason: &str) {
        let Some(mut pending) = self.backlog.take(&key) else { return };
        let member = key.member();
        tracing::warn!(%member, command = %pending.latest.id, reason, "command dead-lettered");
        let mut letter = NewMessage::new(
            self.shared.layout.subjects.dead_letter(member),
            pending.latest.id.to_string(),
            pending.latest.payload.clone(),
        )
        .with_header(REASON_HEADER, header_text(reason))
        .with_header(SEQUENCE_HEADER, pending.latest.sequence.to_string());
        letter.headers.extend(current_trace_headers());
        if let Err(error) = append_with_retry(&*self.shared.log, letter, RetryPolicy::default()).await {
            return self.put_back(key, pending, &error.to_string()).await;
        }
        let failed = Outcome::Failed(Failed {
            member,
            command: pending.latest.id.clone(),
            reason: reason.to_owned(),
            permanent: true,
        });
        let occurred_at = pending.latest.occurred_at;
        for outcome in std::mem::take(&mut pending.outcomes).into_iter().chain([failed]) {
            if let Err(error) = self.publish(outcome, occurred_at).await {
                return self.put_back(key, pending, &error.to_string()).await;
            }
        }
        // The engine has moved on to what this command asks, whatever Kisi did with it. A revoke,
        // suspension or deletion recorded as wanted fails closed: the reconciler never restores
        // the access it took back, and tries the change again. A grant or restore recorded as
        // wanted is what the member is entitled to now: the reconciler may try it again, and
        // never defends an older, wider window instead. An EnsureUser leaves its email for the
        // next command to fold from, as the engine folds what it emitted.
        pending.record_settled(self.knowledge.get_mut(member));
        if let Err(error) = self.knowledge.save(member).await {
            return self.put_back(key, pending, &error.to_string()).await;
        }
        self.report(|status| status.dead_letters += 1);
        settle_all(pending.deliveries.into_values(), Settle::Term).await;
    }

    /// A command this build cannot read (from a newer build, or damaged) is parked as it is.
    async fn dead_letter_undecodable(&mut self, delivery: Delivery, reason: &str) {
        let message = &delivery.message;
        let member = message.subject.rsplit('.').next().and_then(|token| token.parse().ok()).map(MemberId);
        tracing::error!(subject = %message.subject, sequence = message.sequence, reason, "undecodable command");
        if let Some(member) = member {
            let id = message.id.clone().unwrap_or_else(|| format!("undecodable-{}", message.sequence));
            let letter = NewMessage::new(self.shared.layout.subjects.dead_letter(member), id, message.payload.clone())
                .with_header(REASON_HEADER, header_text(&format!("undecodable command: {reason}")))
                .with_header(SEQUENCE_HEADER, message.sequence.to_string());
            if let Err(error) = append_with_retry(&*self.shared.log, letter, RetryPolicy::default()).await {
                tracing::warn!(%error, "dead-lettering an undecodable command failed; it comes back later");
                let _ = delivery.nak(self.options().backoff_max).await;
                return;
            }
        }
        self.shared.status.lock().dead_letters += 1;
        settle_all([delivery], Settle::Term).await;
    }

    /// Publishes an outcome on the member's subject; its id derives from its content and time.
    pub(crate) async fn publish(&self, outcome: Outcome, occurred_at: Timestamp) -> Result<(), WriterError> {
        let subject = self.shared.layout.subjects.outcome(outcome.member());
        let encode_error =
            |error: doorsync_proto::EncodeError| WriterError::Encode { what: "an outcome", reason: error.to_string() };
        let envelope = Envelope::new(occurred_at, outcome).map_err(encode_error)?;
        let payload = Bytes::from(doorsync_proto::encode(&envelope).map_err(encode_error)?);
        let mut message = NewMessage::new(subject, envelope.id.to_string(), payload);
        message.headers = current_trace_headers();
        append_with_retry(&*self.shared.log, message, RetryPolicy::default()).await?;
        Ok(())
    }

    /// Makes the call `step` names for the member's user and records what Kisi answered.
    pub(crate) async fn user_call(&mut self, member: MemberId, step: UserStep) -> StepResult {
        let user_id = self.knowledge.get_mut(member).user.known.as_ref().map(|user| user.id);
        match step {
            UserStep::Find { email } => {
                let found = self
                    .gateway
                    .call(&mut self.stop, |client| async move { client.find_user_by_email(&email).await })
                    .await;
                match found {
                    Ok(Some(user)) if Some(user.id) == self.creators.api_user => StepResult::Refused(format!(
                        "the member's email belongs to Kisi user {}, who owns doorsync's API key; doorsync never \
                         links that user to a member (give the member another email in Nexudus, or use another \
                         Kisi account's key)",
                        user.id
                    )),
                    Ok(Some(user)) => {
                        let known = known_user(&user, created_by_doorsync(&user), false);
                        match self.link(member, &known).await {
                            Ok(()) => {
                                let record = self.knowledge.get_mut(member);
                                StepResult::Changed(vec![adopt(record, member, known, KnownAssignment::Unknown)])
                            }
                            Err(result) => result,
                        }
                    }
                    Ok(None) => {
                        self.knowledge.get_mut(member).user.searched_absent = true;
                        StepResult::Changed(Vec::new())
                    }
                    Err(error) => error.into(),
                }
            }
            UserStep::Create { email, name, access_enabled } => {
                let mut new_user = NewUser::managed(email, name);
                new_user.access_enabled = access_enabled;
                new_user.metadata.insert(MANAGED_BY_KEY.to_owned(), MANAGED_BY_VALUE.into());
                let created = self
                    .gateway
                    .call(&mut self.stop, |client| async move { client.create_user(&new_user).await })
                    .await;
                match created {
                    Ok(user) => {
                        // A new user has no assignments yet.
                        let known = known_user(&user, true, true);
                        if let Err(error) = self.knowledge.record_link(known.id, member).await {
                            tracing::warn!(%member, %error, "recording which member a new Kisi user belongs to failed");
                        }
                        let record = self.knowledge.get_mut(member);
                        let state = known.state;
                        let mut outcomes = vec![adopt(record, member, known, KnownAssignment::Absent)];
                        if state != KisiUserState::Enabled {
                            outcomes.push(access_changed(member, state));
                        }
                        StepResult::Changed(outcomes)
                    }
                    Err(CallError::Kisi(error)) => {
                        // The user may exist after all (a lost answer, someone else's create):
                        // search again before creating.
                        self.knowledge.get_mut(member).user.searched_absent = false;
                        if matches!(error, KisiError::Unprocessable { .. }) {
                            StepResult::Conflict(error.to_string())
                        } else {
                            StepResult::Failed(error)
                        }
                    }
                    Err(CallError::Stopped) => StepResult::Stopped,
                }
            }
            UserStep::ListAssignments => {
                let Some(user) = user_id else { return StepResult::Conflict(NO_USER.to_owned()) };
                let listed = self
                    .gateway
                    .call(&mut self.stop, |client| async move { client.user_group_assignments(user).await })
                    .await;
                match listed {
                    Ok(assignments) => {
                        self.gateway.charge_pages(assignments.len(), ASSIGNMENTS_PAGE);
                        let record = self.knowledge.get_mut(member);
                        record.forget_assignments(KnownAssignment::Absent);
                        for assignment in &assignments {
                            if let Some(group) = assignment.group() {
                                record.group_mut(group).known = self.creators.present(assignment);
                            }
                        }
                        if let Some(known) = &mut record.user.known {
                            known.assignments_listed = true;
                        }
                        StepResult::Changed(Vec::new())
                    }
                    Err(error) => error.into(),
                }
            }
            UserStep::Read => {
                let Some(user) = user_id else { return StepResult::Conflict(NO_USER.to_owned()) };
                let read = self.gateway.call(&mut self.stop, |client| async move { client.user(user).await }).await;
                match self.gone_when_forbidden(read).await {
                    Ok(found) => {
                        if let Some(known) = &mut self.knowledge.get_mut(member).user.known {
                            known.state = access_state(found.access_enabled);
                            known.access_in_doubt = false;
                        }
                        StepResult::Changed(Vec::new())
                    }
                    Err(CallError::Kisi(KisiError::NotFound { .. })) => {
                        // Deleted (by the change in doubt, or by hand) with its assignments:
                        // found or created again if the member needs one.
                        self.knowledge.forget_link(user).await;
                        let record = self.knowledge.get_mut(member);
                        record.user.known = None;
                        record.forget_assignments(KnownAssignment::Absent);
                        StepResult::Changed(Vec::new())
                    }
                    Err(error) => error.into(),
                }
            }
            UserStep::SetAccess { access_enabled } => {
                let Some(user) = user_id else { return StepResult::Conflict(NO_USER.to_owned()) };
                if let Err(unsaved) = self.before_change(member, None).await {
                    return unsaved;
                }
                let set =
                    self.gateway
                        .call(&mut self.stop, |client| async move {
                            client.set_user_access_enabled(user, access_enabled).await
                        })
                        .await;
                let set = self.gone_when_forbidden(set).await;
                let record = self.knowledge.get_mut(member);
                match set {
                    Ok(()) => {
                        let state = access_state(access_enabled);
                        if let Some(known) = &mut record.user.known {
                            known.state = state;
                            known.access_in_doubt = false;
                        }
                        StepResult::Changed(vec![access_changed(member, state)])
                    }
                    Err(CallError::Kisi(error @ KisiError::NotFound { .. })) => {
                        record.user.known = None;
                        StepResult::Conflict(format!("the member's Kisi user is gone: {error}"))
                    }
                    Err(CallError::Kisi(error)) => {
                        // Kisi may have made the change: the state known before is no longer sure.
                        if error.outcome_unknown() {
                            record.mark_in_doubt(None);
                        }
                        StepResult::Failed(error)
                    }
                    Err(CallError::Stopped) => StepResult::Stopped,
                }
            }
            UserStep::Delete => {
                let Some(user) = user_id else { return StepResult::Conflict(NO_USER.to_owned()) };
                if let Err(unsaved) = self.before_change(member, None).await {
                    return unsaved;
                }
                let deleted =
                    self.gateway.call(&mut self.stop, |client| async move { client.delete_user(user).await }).await;
                match self.gone_when_forbidden(deleted).await {
                    Ok(()) | Err(CallError::Kisi(KisiError::NotFound { .. })) => {
                        self.knowledge.forget_link(user).await;
                        let record = self.knowledge.get_mut(member);
                        if let Some(known) = &mut record.user.known {
                            known.state = KisiUserState::Deleted;
                            known.access_in_doubt = false;
                        }
                        // Kisi deletes a user's role assignments with it.
                        record.forget_assignments(KnownAssignment::Absent);
                        StepResult::Changed(vec![access_changed(member, KisiUserState::Deleted)])
                    }
                    Err(CallError::Kisi(error)) => {
                        if error.outcome_unknown() {
                            self.knowledge.get_mut(member).mark_in_doubt(None);
                        }
                        StepResult::Failed(error)
                    }
                    Err(CallError::Stopped) => StepResult::Stopped,
                }
            }
            UserStep::Done | UserStep::AwaitEnsureUser | UserStep::LeaveAlone => StepResult::Changed(Vec::new()),
        }
    }

    /// Makes the call `step` names for the member's membership of `group` and records the answer.
    pub(crate) async fn group_call(&mut self, member: MemberId, group: KisiGroupId, step: GroupStep) -> StepResult {
        let Some(user) = self.knowledge.get_mut(member).live_user().map(|user| user.id) else {
            return StepResult::Conflict(NO_USER.to_owned());
        };
        match step {
            GroupStep::Lookup => {
                let found = self
                    .gateway
                    .call(&mut self.stop, |client| async move { client.user_assignment_in_group(user, group).await })
                    .await;
                match found {
                    Ok(found) => {
                        self.knowledge.get_mut(member).group_mut(group).known = found
                            .as_ref()
                            .map_or(KnownAssignment::Absent, |assignment| self.creators.present(assignment));
                        StepResult::Changed(Vec::new())
                    }
                    Err(error) => error.into(),
                }
            }
            GroupStep::Create { validity } => {
                if let Err(unsaved) = self.before_change(member, Some(group)).await {
                    return unsaved;
                }
                let created = self
                    .gateway
                    .call(&mut self.stop, |client| async move {
                        client.create_group_assignment(user, group, validity).await
                    })
                    .await;
                let known = &mut self.knowledge.get_mut(member).group_mut(group).known;
                match created {
                    Ok(assignment) => {
                        *known = KnownAssignment::Present(HeldAssignment { ours: true, ..held(&assignment) });
                        StepResult::Changed(Vec::new())
                    }
                    Err(CallError::Kisi(error @ KisiError::Forbidden { .. })) => {
                        *known = KnownAssignment::Unknown;
                        self.user_gone_or(member, user, error).await
                    }
                    Err(CallError::Kisi(error)) => {
                        // Created after all (a lost answer) or by someone else: look before
                        // creating again, since Kisi holds one assignment per user and group.
                        *known = KnownAssignment::Unknown;
                        if matches!(error, KisiError::Unprocessable { .. }) {
                            StepResult::Conflict(error.to_string())
                        } else {
                            StepResult::Failed(error)
                        }
                    }
                    Err(CallError::Stopped) => StepResult::Stopped,
                }
            }
            GroupStep::Update { assignment, validity } => {
                if let Err(unsaved) = self.before_change(member, Some(group)).await {
                    return unsaved;
                }
                let updated = self
                    .gateway
                    .call(&mut self.stop, |client| async move {
                        client.update_assignment_validity(assignment, validity).await
                    })
                    .await;
                let updated = self.gone_when_forbidden(updated).await;
                match updated {
                    Ok(()) => self.verify_update(member, group, assignment, validity).await,
                    Err(CallError::Kisi(error @ KisiError::NotFound { .. })) => {
                        self.knowledge.get_mut(member).group_mut(group).known = KnownAssignment::Absent;
                        StepResult::Conflict(format!("the assignment is gone: {error}"))
                    }
                    Err(CallError::Kisi(KisiError::Unprocessable { .. })) => {
                        // Kisi refuses to change the window of an assignment: it will not do it
                        // for any, so from now on a window changes by delete and create. The
                        // assignment is as it was.
                        self.learn_patch_applies_validity(false).await;
                        self.knowledge.get_mut(member).group_mut(group).known = KnownAssignment::Unknown;
                        StepResult::Changed(Vec::new())
                    }
                    Err(CallError::Kisi(error)) => {
                        // Kisi may have changed the window: look before deciding again.
                        if error.outcome_unknown() {
                            self.knowledge.get_mut(member).group_mut(group).known = KnownAssignment::Unknown;
                        }
                        StepResult::Failed(error)
                    }
                    Err(CallError::Stopped) => StepResult::Stopped,
                }
            }
            GroupStep::Delete { assignment } => {
                if let Err(unsaved) = self.before_change(member, Some(group)).await {
                    return unsaved;
                }
                let deleted = self
                    .gateway
                    .call(&mut self.stop, |client| async move { client.delete_assignment(assignment).await })
                    .await;
                match self.gone_when_forbidden(deleted).await {
                    Ok(()) | Err(CallError::Kisi(KisiError::NotFound { .. })) => {
                        self.knowledge.get_mut(member).group_mut(group).known = KnownAssignment::Absent;
                        StepResult::Changed(Vec::new())
                    }
                    Err(CallError::Kisi(error)) => {
                        if error.outcome_unknown() {
                            self.knowledge.get_mut(member).group_mut(group).known = KnownAssignment::Unknown;
                        }
                        StepResult::Failed(error)
                    }
                    Err(CallError::Stopped) => StepResult::Stopped,
                }
            }
            GroupStep::Done | GroupStep::RefuseNoUser | GroupStep::RefuseForeign { .. } => {
                StepResult::Changed(Vec::new())
            }
        }
    }

    /// Reads back an assignment whose validity Kisi accepted a PATCH of: Kisi's spec does not
    /// promise that PATCH applies `valid_from`/`valid_until`, and a window believed moved but not
    /// moved keeps a door open (or shut) on the old times. What Kisi holds becomes what is known,
    /// and whether the account applied it is remembered.
    async fn verify_update(
        &mut self,
        member: MemberId,
        group: KisiGroupId,
        assignment: KisiAssignmentId,
        validity: Validity,
    ) -> StepResult {
        let read =
            self.gateway.call(&mut self.stop, |client| async move { client.role_assignment(assignment).await }).await;
        let creators = self.creators.clone();
        match self.gone_when_forbidden(read).await {
            Ok(held) => {
                let applied = held.validity() == validity;
                self.knowledge.get_mut(member).group_mut(group).known = creators.present(&held);
                if !applied {
                    tracing::warn!(
                        %member,
                        %group,
                        "Kisi accepted a PATCH of an assignment's window but did not apply it; windows now change by \
                         delete and create"
                    );
                }
                self.learn_patch_applies_validity(applied).await;
                StepResult::Changed(Vec::new())
            }
            Err(CallError::Kisi(error @ KisiError::NotFound { .. })) => {
                self.knowledge.get_mut(member).group_mut(group).known = KnownAssignment::Absent;
                StepResult::Conflict(format!("the assignment is gone: {error}"))
            }
            Err(error) => {
                self.knowledge.get_mut(member).group_mut(group).known = KnownAssignment::Unknown;
                error.into()
            }
        }
    }

    /// Remembers, in the writer's bucket, whether this account applies a PATCH of validity. Once
    /// it did not, it is not tried again: a later success would more likely be a change Kisi
    /// made than a sign that PATCH can be trusted again.
    async fn learn_patch_applies_validity(&mut self, applies: bool) {
        if self.patch_applies_validity == Some(false) || self.patch_applies_validity == Some(applies) {
            return;
        }
        self.patch_applies_validity = Some(applies);
        self.shared.status.lock().patch_applies_validity = Some(applies);
        if let Err(error) =
            crate::knowledge::save_patch_applies_validity(&self.shared.writer_kv, &self.shared.options.account, applies)
                .await
        {
            tracing::warn!(%error, "saving whether Kisi applies a PATCH of validity failed; it is learnt again");
        }
    }

    /// Takes a member's membership of a group to `desire` with as many calls as it needs, for the
    /// reconciler, which repairs outside the command backlog.
    pub(crate) async fn drive_group(&mut self, member: MemberId, group: KisiGroupId, desire: GroupDesire) -> Driven {
        for _ in 0..MAX_REPAIR_STEPS {
            let rules = self.group_rules();
            let record = self.knowledge.get_mut(member);
            let known = record.known_in(group);
            let step = match plan::group_step(desire, record.live_user(), known, rules) {
                GroupStep::Done => {
                    return Driven::Done(vec![group_outcome(member, group, desire, record.groups.get(&group))]);
                }
                GroupStep::RefuseNoUser => return Driven::Refused(NO_USER.to_owned()),
                GroupStep::RefuseForeign { assignment } => return Driven::Refused(foreign(assignment, group)),
                step => step,
            };
            let result = self.group_call(member, group, step).await;
            if let Some(driven) = self.after_repair_step(member, result).await {
                return driven;
            }
        }
        Driven::Refused("Kisi kept contradicting what doorsync knew".to_owned())
    }

    /// Takes a member's user to `desire`, for the reconciler.
    pub(crate) async fn drive_user(&mut self, member: MemberId, desire: &UserDesire) -> Driven {
        let manage_found = self.options().manage_found_users;
        let mut outcomes = Vec::new();
        for _ in 0..MAX_REPAIR_STEPS {
            let record = self.knowledge.get_mut(member);
            let step = plan::user_step(desire, record.user.known.as_ref(), record.user.searched_absent, manage_found);
            let result = match step {
                UserStep::Done | UserStep::LeaveAlone => return Driven::Done(outcomes),
                UserStep::AwaitEnsureUser => return Driven::Refused(NO_ENSURE_USER.to_owned()),
                step => self.user_call(member, step).await,
            };
            match result {
                StepResult::Changed(changed) => {
                    outcomes.extend(changed);
                    self.save_quietly(member).await;
                }
                other => {
                    if let Some(driven) = self.after_repair_step(member, other).await {
                        return driven;
                    }
                }
            }
        }
        Driven::Refused("Kisi kept contradicting what doorsync knew".to_owned())
    }

    /// What one repair call means for the drive: go on (`None`) or stop with this.
    async fn after_repair_step(&mut self, member: MemberId, result: StepResult) -> Option<Driven> {
        match result {
            StepResult::Changed(_) => {
                self.save_quietly(member).await;
                None
            }
            StepResult::Conflict(_) => None,
            StepResult::Unsaved(reason) | StepResult::Refused(reason) => Some(Driven::Refused(reason)),
            StepResult::Failed(error) if error.is_credentials_problem() => match self.whom_kisi_refused(&error).await {
                Refusal::TheKey => Some(Driven::Failed(error)),
                Refusal::ThisCall => {
                    Some(Driven::Refused(format!("Kisi refused this call while the key works: {error}")))
                }
                Refusal::NotKnownYet(probe_error) => Some(Driven::Failed(probe_error)),
            },
            StepResult::Failed(error) => Some(Driven::Failed(error)),
            StepResult::Stopped => Some(Driven::Stopped),
        }
    }

    pub(crate) async fn save_quietly(&self, member: MemberId) {
        if let Err(error) = self.knowledge.save(member).await {
            tracing::warn!(%member, %error, "saving the writer's knowledge failed");
        }
    }

    /// Gives every held command back to the log, so that the next active writer gets it at once.
    async fn give_back(mut self) {
        self.intake_task.abort();
        let mut held = self.backlog.drain();
        while let Ok(delivery) = self.intake.try_recv() {
            held.push(delivery);
        }
        settle_all(held, Settle::Nak).await;
        self.report_backlog();
    }
}

const NO_USER: &str = "doorsync has no Kisi user for the member (its EnsureUser failed or never came)";
const NO_ENSURE_USER: &str = "doorsync has no Kisi user for the member and no email to find or create one with \
                              (no EnsureUser command came for it)";

fn foreign(assignment: doorsync_proto::KisiAssignmentId, group: KisiGroupId) -> String {
    format!(
        "role assignment {assignment} on group {group} was created by someone else; doorsync leaves it alone \
         (allow with modify_foreign_assignments)"
    )
}

/// Reads deliveries from the consumer for the worker until the worker is gone.
async fn pull(mut consumer: Box<dyn DurableConsumer>, sender: mpsc::Sender<Delivery>, clock: SharedClock) {
    loop {
        match consumer.next().await {
            Ok(delivery) => {
                if sender.send(delivery).await.is_err() {
                    return;
                }
            }
            Err(error) => {
                tracing::warn!(%error, "reading commands failed; retrying");
                clock.sleep_until(after(clock.now(), Duration::from_secs(1))).await;
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Settle {
    Ack,
    Nak,
    Term,
}

async fn settle_all(deliveries: impl IntoIterator<Item = Delivery>, how: Settle) {
    for delivery in deliveries {
        let settled = match how {
            Settle::Ack => delivery.ack().await,
            Settle::Nak => delivery.nak(Duration::ZERO).await,
            Settle::Term => delivery.term().await,
        };
        if let Err(error) = settled {
            // It comes back, and is recognised as done.
            tracing::warn!(%error, ?how, "settling a command failed");
        }
    }
}

/// A header value cannot hold line breaks.
fn header_text(text: &str) -> String {
    text.chars().map(|character| if character.is_control() { ' ' } else { character }).collect()
}

fn access_state(access_enabled: bool) -> KisiUserState {
    if access_enabled { KisiUserState::Enabled } else { KisiUserState::Suspended }
}

fn created_by_doorsync(user: &User) -> bool {
    user.metadata.as_ref().and_then(|metadata| metadata.get(MANAGED_BY_KEY)).and_then(|value| value.as_str())
        == Some(MANAGED_BY_VALUE)
}

fn held(assignment: &RoleAssignment) -> HeldAssignment {
    HeldAssignment {
        id: assignment.id,
        valid_from: assignment.valid_from,
        valid_until: assignment.valid_until,
        ours: false,
    }
}

/// Whose role assignments doorsync treats as its own.
#[derive(Debug, Clone, Default)]
pub(crate) struct Creators {
    /// The Kisi user the API key belongs to: the creator of doorsync's assignments.
    pub(crate) api_user: Option<KisiUserId>,
    /// The users named in `adopt_created_by`, whose assignments doorsync takes over.
    pub(crate) adopted: BTreeSet<KisiUserId>,
}

impl Creators {
    pub(crate) fn made(&self, assignment: &RoleAssignment) -> bool {
        self.api_user.is_some_and(|me| assignment.created_by(me)) || self.adopted(assignment)
    }

    pub(crate) fn adopted(&self, assignment: &RoleAssignment) -> bool {
        self.adopted.iter().any(|creator| assignment.created_by(*creator))
    }

    pub(crate) fn present(&self, assignment: &RoleAssignment) -> KnownAssignment {
        KnownAssignment::Present(HeldAssignment { ours: self.made(assignment), ..held(assignment) })
    }
}

fn known_user(user: &User, created_by_doorsync: bool, assignments_listed: bool) -> KnownUser {
    KnownUser {
        id: user.id,
        created_by_doorsync,
        state: access_state(user.access_enabled),
        assignments_listed,
        access_in_doubt: false,
    }
}

/// Makes `user` the member's known user, holding `assignments` in every group; reports the link.
fn adopt(record: &mut MemberRecord, member: MemberId, user: KnownUser, assignments: KnownAssignment) -> Outcome {
    record.forget_assignments(assignments);
    record.user.searched_absent = false;
    let linked = linked(member, &user);
    record.user.known = Some(user);
    linked
}

fn linked(member: MemberId, user: &KnownUser) -> Outcome {
    Outcome::UserLinked(UserLinked { member, kisi_user: user.id, created_by_doorsync: user.created_by_doorsync })
}

fn access_changed(member: MemberId, state: KisiUserState) -> Outcome {
    Outcome::UserAccessChanged(UserAccessChanged { member, state })
}

/// What to report for a user that needed no call: the link for an `EnsureUser`, the state for
/// the others.
fn user_outcome(member: MemberId, command: &Command, known: Option<&KnownUser>) -> Outcome {
    match (command, known) {
        (Command::EnsureUser(_), Some(user)) if user.state != KisiUserState::Deleted => linked(member, user),
        (_, Some(user)) => access_changed(member, user.state),
        (_, None) => access_changed(member, KisiUserState::Deleted),
    }
}

/// What Kisi holds for the member's membership once it matches the desire.
pub(crate) fn group_outcome(
    member: MemberId,
    group: KisiGroupId,
    desire: GroupDesire,
    record: Option<&crate::knowledge::GroupRecord>,
) -> Outcome {
    match (desire, record.map(|record| record.known)) {
        (GroupDesire::Member { .. }, Some(KnownAssignment::Present(held))) => Outcome::GrantApplied(GrantApplied {
            member,
            group,
            assignment: held.id,
            valid_from: held.valid_from,
            valid_until: held.valid_until,
        }),
        _ => Outcome::Revoked(Revoked { member, group }),
    }
}
