//! Intake and settlement: the deliveries of the command stream taken in and held per key with
//! the desire of the newest one, worked one key at a time, and settled once Kisi holds the
//! desire (acknowledged, with outcomes), put back when the log fails, or given back to the log
//! when the writer stops being the active one.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use doorsync_clock::SharedClock;
use doorsync_log::{ConsumerSpec, Delivery, DurableConsumer, NewMessage, RetryPolicy, Sequence, append_with_retry};
use doorsync_proto::{
    Command, Envelope, Failed, GrantApplied, KisiGroupId, KisiUserId, KisiUserState, MemberId, Outcome, Revoked,
    Timestamp,
};
use doorsync_telemetry::{TraceParent, current_trace_headers};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::Instrument;

use super::effects::{Creators, NO_ENSURE_USER, NO_USER, Pause, Refusal, StepResult, access_changed, foreign, linked};
use super::{Control, Shared};
use crate::backlog::{Added, Backlog, Desire, Key, Pending, Received};
use crate::backoff::Backoff;
use crate::gateway::{Gateway, Stop, retry_after_wait};
use crate::knowledge::{
    GroupDesire, Knowledge, KnownAssignment, KnownUser, load_patch_applies_validity, load_reconciled_at,
    save_reconciled_at,
};
use crate::plan::{self, GroupStep, UserStep};
use crate::reconcile::{HeldRepair, Reconciler, Reconciliation};
use crate::snapshot::{Snapshot, Taking};
use crate::status::ReconcileReport;
use crate::status::WriterStatus;
use crate::{WriterError, WriterOptions};

/// Where an operator's reconciliation is answered.
pub(super) type ReconcileReply = oneshot::Sender<Result<ReconcileReport, WriterError>>;

/// Deliveries waiting between the consumer and the worker.
const INTAKE_BUFFER: usize = 256;
/// After this many disagreements with Kisi in a row (a create refused as a duplicate, then the
/// duplicate not found), a key is dead-lettered instead of going round again.
const MAX_CONFLICTS: u32 = 3;

/// The writer while it holds the lease.
pub(crate) struct Active<'a> {
    pub(crate) shared: &'a Shared,
    pub(super) gateway: &'a mut Gateway,
    pub(super) backoff: &'a mut Backoff,
    pub(super) stop: Stop,
    pub(crate) knowledge: Knowledge,
    pub(crate) backlog: Backlog,
    /// Whose assignments are doorsync's: the API key's user, and the adopted creators.
    pub(super) creators: Creators,
    /// Whether this Kisi account applies a PATCH of an assignment's validity, once learnt (kept
    /// in the writer's bucket).
    pub(super) patch_applies_validity: Option<bool>,
    pub(super) identity_attempts: u32,
    pub(super) next_identity_at: Timestamp,
    pub(super) pause: Option<Pause>,
    pub(super) held: Option<HeldRepair>,
    pub(super) next_reconcile_at: Option<Timestamp>,
    /// The picture of Kisi that answers searches by email: taken at start ([`Self::taking`]) and
    /// by every reconciliation.
    pub(super) snapshot: Option<Snapshot>,
    /// The snapshot being taken when the writer took the account; the backlog waits for it, since
    /// a first sync's members would each be searched in Kisi otherwise.
    pub(super) taking: Option<Taking>,
    /// The reconciliation under way, whose steps are interleaved with the commands, and who waits
    /// for its report.
    pub(super) reconciliation: Option<Reconciliation>,
    pub(super) reconciliation_answers: Vec<ReconcileReply>,
    /// Operators' requests for a reconciliation that has not begun yet.
    pub(super) reconcile_requests: Vec<ReconcileReply>,
    /// The keys worked while a reconciliation was under way.
    pub(super) worked_during_reconciliation: HashSet<Key>,
    /// The Kisi users found gone while a reconciliation was under way: its listing may still show
    /// them.
    pub(super) users_gone_during_reconciliation: HashSet<KisiUserId>,
    /// Whether a reconciliation step goes before the next backlog key.
    pub(super) reconcile_turn: bool,
    pub(super) intake: mpsc::Receiver<Delivery>,
    pub(super) intake_task: JoinHandle<()>,
}

impl<'a> Active<'a> {
    pub(super) async fn open(
        shared: &'a Shared,
        gateway: &'a mut Gateway,
        backoff: &'a mut Backoff,
        stop: Stop,
    ) -> Result<Self, WriterError> {
        let options = &shared.options;
        let spec = ConsumerSpec::new(&shared.layout.commands, &options.consumer_name)
            .filtered([shared.layout.subjects.commands_wildcard()])
            .ack_wait(options.settings.ack_wait);
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
        let next_reconcile_at = match options.reconcile_every() {
            Some(every) => {
                let since = match load_reconciled_at(knowledge.kv(), &options.account).await? {
                    Some(since) => since,
                    None => {
                        save_reconciled_at(knowledge.kv(), &options.account, now).await?;
                        now
                    }
                };
                Some((since + every).max(now))
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
            snapshot: None,
            taking: Some(Taking::new(&options.reconcile_groups, now)),
            reconciliation: None,
            reconciliation_answers: Vec::new(),
            reconcile_requests: Vec::new(),
            worked_during_reconciliation: HashSet::new(),
            users_gone_during_reconciliation: HashSet::new(),
            reconcile_turn: false,
            intake,
            intake_task,
        })
    }

    pub(crate) fn options(&self) -> &WriterOptions {
        &self.shared.options
    }

    pub(super) fn now(&self) -> Timestamp {
        self.shared.clock.now()
    }

    /// Works until the writer stops: the credentials probe first; then a ready live key, always;
    /// then the snapshot of Kisi taken at start, which the bulk work waits for; then the bulk
    /// work, taking turns with a reconciliation's steps when one is under way.
    pub(super) async fn run(&mut self, control: &mut mpsc::Receiver<Control>) {
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
            } else if let Some(key) = self.backlog.next_live(now) {
                self.work_on(key).await;
                continue;
            } else if let Some(taking) = self.taking.as_ref() {
                match taking.due_at() {
                    Some(due) if due <= now => {
                        self.take_snapshot_page().await;
                        continue;
                    }
                    Some(due) => Some(due),
                    None => {
                        self.snapshot = self.taking.take().map(Taking::finish);
                        continue;
                    }
                }
            } else if self.reconciliation.is_none()
                && (self.next_reconcile_at.is_some_and(|due| due <= now) || !self.reconcile_requests.is_empty())
            {
                self.begin_reconciliation().await;
                continue;
            } else {
                let reconcile_due = self.reconciliation.as_ref().map(|run| run.due_at(now));
                let reconcile_ready = reconcile_due.is_some_and(|due| due <= now);
                match self.backlog.next_ready(now) {
                    Some(key) if !(reconcile_ready && self.reconcile_turn) => {
                        self.reconcile_turn = true;
                        self.work_on(key).await;
                        continue;
                    }
                    _ if reconcile_ready => {
                        self.reconcile_turn = false;
                        self.reconcile_step().await;
                        continue;
                    }
                    _ => {
                        let next_scheduled = self.next_reconcile_at.filter(|_| self.reconciliation.is_none());
                        [self.backlog.next_wakeup(), next_scheduled, reconcile_due].into_iter().flatten().min()
                    }
                }
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

    /// Reads the next page of the snapshot taken at start.
    async fn take_snapshot_page(&mut self) {
        let Some(mut taking) = self.taking.take() else { return };
        self.read_page(&mut taking).await;
        self.taking = Some(taking);
    }

    /// Begins a reconciliation, for the schedule and every operator who asked for one so far.
    async fn begin_reconciliation(&mut self) {
        match Reconciler::new(self).begin().await {
            Ok(run) => {
                self.reconciliation = Some(run);
                self.reconciliation_answers = std::mem::take(&mut self.reconcile_requests);
                self.worked_during_reconciliation.clear();
                self.users_gone_during_reconciliation.clear();
            }
            Err(error) => self.reconciliation_failed(error),
        }
    }

    /// Takes the reconciliation's next step; answers who waits for it once it is over.
    async fn reconcile_step(&mut self) {
        let Some(mut run) = self.reconciliation.take() else { return };
        match Reconciler::new(self).step(&mut run).await {
            Ok(None) => self.reconciliation = Some(run),
            Ok(Some(report)) => {
                self.next_reconcile_at = self.options().reconcile_every().map(|every| self.now() + every);
                for reply in self.reconciliation_answers.drain(..) {
                    let _ = reply.send(Ok(report.clone()));
                }
            }
            Err(error) => {
                // Those who asked for this run ask again for the next, but one: the error is theirs.
                let mut waiting = std::mem::take(&mut self.reconciliation_answers);
                waiting.append(&mut self.reconcile_requests);
                self.reconcile_requests = waiting;
                self.reconciliation_failed(error);
            }
        }
    }

    /// A reconciliation could not begin or go on: the first operator waiting is told why, and the
    /// schedule tries again soon.
    fn reconciliation_failed(&mut self, error: WriterError) {
        tracing::warn!(%error, "reconciliation did not finish; trying again soon");
        let (every, retry) = (self.options().reconcile_every(), self.options().backoff_max);
        self.next_reconcile_at = every.map(|every| self.now() + every.min(retry));
        if !self.reconcile_requests.is_empty() {
            let _ = self.reconcile_requests.remove(0).send(Err(error));
        }
    }

    pub(super) async fn answer(&mut self, request: Control) {
        match request {
            Control::Reconcile(reply) => match self.paused_error() {
                Some(paused) => {
                    let _ = reply.send(Err(paused));
                }
                None => self.reconcile_requests.push(reply),
            },
            Control::ConfirmHeld(reply) => {
                let report = Reconciler::new(self).confirm_held().await;
                let _ = reply.send(report);
            }
        }
    }

    pub(super) fn report_backlog(&self) {
        self.report(|_| {});
    }

    /// Changes the status together with the backlog's size, so that a reader never sees a
    /// command counted as settled and still in the backlog.
    pub(crate) fn report(&self, change: impl FnOnce(&mut WriterStatus)) {
        let mut status = self.shared.status.lock();
        change(&mut status);
        status.backlog_keys = self.backlog.keys();
        status.backlog_commands = self.backlog.deliveries();
        status.backlog_live_keys = self.backlog.live_keys();
    }

    /// Takes in one delivery: held with its key, or settled at once when it is already done.
    pub(super) async fn receive(&mut self, delivery: Delivery) {
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
                    group_record.map_or(Sequence::BEFORE_FIRST, |record| record.settled_sequence),
                    group_record.and_then(|record| record.desired).map(|desire| Desire::Group(group, desire)),
                )
            }
        };
        let received = Received {
            id: envelope.id,
            sequence: delivery.message.sequence,
            window_edge: envelope.window_edge,
            payload: delivery.message.payload.clone(),
            command: envelope.message,
            trace: TraceParent::from_headers(&delivery.message.headers),
            bulk: doorsync_layout::is_bulk(&delivery.message.headers),
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
    pub(super) async fn work_on(&mut self, key: Key) {
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
    pub(super) async fn step(&mut self, key: Key) {
        let member = key.member();
        if self.reconciliation.is_some() {
            self.worked_during_reconciliation.insert(key);
        }
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

    /// The key needs a command that has not come: the member's `EnsureUser`. A writer that died
    /// holding it gives it back only after the ack wait, so newer commands can come first. It is
    /// waited for like a transient failure until twice the ack wait has passed since the key's
    /// first command came; then the key is dead-lettered.
    pub(super) async fn await_command(&mut self, key: Key, reason: &str) {
        let grace = self.options().settings.ack_wait.saturating_mul(2);
        let now = self.now();
        let waiting = self.backlog.get(&key).is_some_and(|pending| pending.received_at + grace > now);
        if waiting {
            self.transient(key, reason, None).await;
        } else {
            self.dead_letter(key, reason).await;
        }
    }

    /// The key failed for now: try it again after a backoff (and Kisi's `Retry-After`), and tell
    /// the engine once when it keeps failing.
    pub(super) async fn transient(&mut self, key: Key, reason: &str, retry_after: Option<Duration>) {
        let now = self.now();
        let report_after = self.options().report_transient_after;
        let Some(pending) = self.backlog.get_mut(&key) else { return };
        pending.attempts += 1;
        let wait = self.backoff.delay(pending.attempts).max(retry_after.unwrap_or_default());
        pending.not_before = now + wait;
        tracing::debug!(member = %key.member(), attempts = pending.attempts, reason, "Kisi call failed; retrying later");
        if pending.attempts >= report_after && !pending.transient_reported {
            pending.transient_reported = true;
            let failed = Outcome::Failed(Failed {
                member: key.member(),
                command: pending.latest.id.clone(),
                reason: format!("still retrying after {} attempts: {reason}", pending.attempts),
                permanent: false,
            });
            if let Err(error) = self.publish(failed, now).await {
                tracing::warn!(%error, "publishing a transient failure failed");
            }
        }
    }

    /// The key is as its newest command asks: publish what was done, remember it, acknowledge
    /// every command of the key.
    pub(super) async fn settle(&mut self, key: Key) {
        let Some(mut pending) = self.backlog.take(&key) else { return };
        let member = key.member();
        let record = self.knowledge.get_mut(member);
        let outcomes = match &pending.desire {
            Desire::User(_) if !pending.outcomes.is_empty() => std::mem::take(&mut pending.outcomes),
            Desire::User(_) => vec![user_outcome(member, &pending.latest.command, record.user.known.as_ref())],
            Desire::Group(group, desire) => vec![group_outcome(member, *group, *desire, record.groups.get(group))],
        };
        // When Kisi answered: what the history shows for the outcome.
        let occurred_at = self.now();
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
    pub(crate) async fn put_back(&mut self, key: Key, pending: Pending, reason: &str) {
        tracing::warn!(member = %key.member(), reason, "settling a command failed; retrying");
        self.backlog.restore(key, pending);
        self.transient(key, reason, None).await;
    }

    /// Publishes an outcome on the member's subject; its id derives from its content and time.
    pub(crate) async fn publish(&self, outcome: Outcome, occurred_at: Timestamp) -> Result<(), WriterError> {
        let subject = self.shared.layout.subjects.outcome(outcome.member());
        let envelope = Envelope::new(occurred_at, outcome).map_err(WriterError::EncodeOutcome)?;
        let payload = Bytes::from(doorsync_proto::encode(&envelope).map_err(WriterError::EncodeOutcome)?);
        let mut message = NewMessage::new(subject, envelope.id.to_string(), payload);
        message.headers = current_trace_headers();
        append_with_retry(&*self.shared.log, message, RetryPolicy::default()).await?;
        Ok(())
    }

    /// Gives every held command back to the log, so that the next active writer gets it at once.
    pub(super) async fn give_back(mut self) {
        self.intake_task.abort();
        let mut held = self.backlog.drain();
        while let Ok(delivery) = self.intake.try_recv() {
            held.push(delivery);
        }
        settle_all(held, Settle::Nak).await;
        self.report_backlog();
    }
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
                clock.sleep_until(clock.now() + Duration::from_secs(1)).await;
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Settle {
    Ack,
    Nak,
    Term,
}

pub(crate) async fn settle_all(deliveries: impl IntoIterator<Item = Delivery>, how: Settle) {
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
