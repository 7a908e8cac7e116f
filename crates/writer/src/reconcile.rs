//! The reconciler: compares what Kisi holds for the managed groups and users with what the
//! newest settled commands asked for (carried out or dead-lettered), and repairs the difference
//! through the writer's own calls (the same limiter, the same look-before-create), so a
//! hand-removed member comes back, a changed window is set back, and an assignment doorsync made
//! that nothing asks for any more goes away.
//!
//! It runs inside the active writer, on a schedule and on demand: it needs the writer's knowledge,
//! request budget and lease, and running it in the same task means a repair and a command never
//! race for one key (a key with a command waiting is left to the command). It does not block the
//! commands: a [`Reconciliation`] is a sequence of steps, each one Kisi call (a page of the
//! users' or a managed group's listing, which become the writer's [`Snapshot`], or one repair),
//! that the writer takes between commands. A key whose command was worked while the listing was
//! read is left to the next reconciliation (that key only), since the listing may show Kisi before or
//! after it.
//!
//! Revocations are guarded: when one run would take more than a set share of the managed members
//! out of a group, nothing is revoked and the revocations are held, with their counts in the
//! status, until an operator confirms them. The rest of the repair goes ahead.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use bytes::Bytes;
use doorsync_kisi::{KisiError, RoleAssignment, User};
use doorsync_log::{KeyValue, LogError};
use doorsync_proto::{KisiAssignmentId, KisiGroupId, KisiUserId, KisiUserState, MemberId, Outcome, Timestamp};
use serde::{Deserialize, Serialize};

use crate::backlog::Key;
use crate::gateway::CallError;
use crate::knowledge::{GroupDesire, Knowledge, KnownAssignment, Observation, UserDesire, access_state};
use crate::snapshot::{Snapshot, Taking};
use crate::status::{HeldRepairStatus, ReconcileReport};
use crate::worker::{Creators, Driven, Refusal};
use crate::{WriterError, WriterOptions};

const HELD_KEY: &str = "held-repair";

/// An assignment the reconciler would delete.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Revocation {
    /// `None` for a user no member is known to have (doorsync's record of it is gone).
    member: Option<MemberId>,
    user: KisiUserId,
    group: KisiGroupId,
    assignment: KisiAssignmentId,
}

/// Revocations waiting for an operator, kept in the writer's bucket so a restart keeps them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct HeldRepair {
    revocations: Vec<Revocation>,
    members_affected: usize,
    managed_members: usize,
    found_at: Timestamp,
}

impl HeldRepair {
    pub(crate) async fn load(kv: &Arc<dyn KeyValue>) -> Result<Option<Self>, LogError> {
        Ok(kv.get(HELD_KEY).await?.and_then(|entry| match rmp_serde::from_slice(&entry.value) {
            Ok(held) => Some(held),
            Err(error) => {
                tracing::warn!(%error, "held repair unreadable; the next reconciliation finds it again");
                None
            }
        }))
    }

    pub(crate) fn status(&self) -> HeldRepairStatus {
        HeldRepairStatus {
            revocations: self.revocations.len(),
            members_affected: self.members_affected,
            managed_members: self.managed_members,
            found_at: self.found_at,
        }
    }
}

/// A repair that adds or changes access.
#[derive(Debug, Clone, Copy)]
enum Repair {
    Create(MemberId, KisiGroupId, GroupDesire),
    Window(MemberId, KisiGroupId, GroupDesire),
}

/// What the reconciler goes by of the writer's options.
#[derive(Debug, Clone)]
pub(crate) struct ReconcileOptions {
    account: String,
    /// Whether each managed user is read too (see [`WriterOptions::reconcile_users`]).
    users: bool,
    /// Listed besides the groups named in commands.
    groups: Vec<KisiGroupId>,
    manage_found_users: bool,
    touch_foreign_assignments: bool,
    max_revocation_share: f64,
}

impl ReconcileOptions {
    pub(crate) fn of(options: &WriterOptions) -> Self {
        Self {
            account: options.account.clone(),
            users: options.reconcile_users,
            groups: options.reconcile_groups.clone(),
            manage_found_users: options.manage_found_users,
            touch_foreign_assignments: options.reconcile.touch_foreign_assignments,
            max_revocation_share: options.reconcile.max_revocation_share,
        }
    }
}

/// What the reconciler needs of the active writer, and all it may use of it: its knowledge, the
/// commands waiting, its calls to Kisi (through its limiter and lease, a 403 on an id read as the
/// id gone once the key is known to work), its snapshot of Kisi, its drives of one key to a
/// desire, its outcomes, its pause and its status.
pub(crate) trait ActiveWriter {
    fn reconcile_options(&self) -> ReconcileOptions;
    fn now(&self) -> Timestamp;
    /// Kisi requests made so far.
    fn calls_total(&self) -> u64;
    /// Why the writer cannot reconcile now, if it cannot.
    fn paused_error(&self) -> Option<WriterError>;
    fn knowledge(&self) -> &Knowledge;
    fn knowledge_mut(&mut self) -> &mut Knowledge;
    fn creators(&self) -> &Creators;
    /// Whether a command for `key` waits: it is left to the command.
    fn is_waiting(&self, key: Key) -> bool;
    /// Whether a command for `key` was worked since the reconciliation began: the listing may
    /// show Kisi before or after it, so the key is left to the next reconciliation.
    fn worked_since_listing(&self, key: Key) -> bool;
    /// Reads the next page of a snapshot being taken.
    async fn read_page(&mut self, taking: &mut Taking);
    /// Keeps `snapshot` as the writer's picture of Kisi, replacing the one before.
    fn set_snapshot(&mut self, snapshot: Snapshot);
    fn snapshot(&self) -> Option<&Snapshot>;
    async fn read_user(&mut self, user: KisiUserId) -> Result<User, CallError>;
    async fn delete_assignment(&mut self, assignment: KisiAssignmentId) -> Result<(), CallError>;
    async fn drive_user(&mut self, member: MemberId, desire: &UserDesire) -> Driven;
    async fn drive_group(&mut self, member: MemberId, group: KisiGroupId, desire: GroupDesire) -> Driven;
    async fn save_quietly(&self, member: MemberId);
    async fn publish(&self, outcome: Outcome, occurred_at: Timestamp) -> Result<(), WriterError>;
    async fn whom_kisi_refused(&mut self, error: &KisiError) -> Refusal;
    fn pause(&mut self, error: &KisiError);
    fn note_refused_group(&self, group: KisiGroupId, reason: String);
    fn held(&self) -> Option<&HeldRepair>;
    /// Keeps `held` as the repair waiting for an operator, and shows it in the status.
    fn set_held(&mut self, held: Option<HeldRepair>);
    /// Shows the report of a reconciliation that finished in the status.
    fn reconciled(&self, report: &ReconcileReport);
}

/// One piece of a reconciliation's repair, worked as one step between commands.
#[derive(Debug, Clone)]
enum Work {
    /// Read the member's user by id: the users' listing was not read whole.
    ReadUser(MemberId, KisiUserId),
    /// The member's user is not as its newest settled command asked: drive it there.
    User(MemberId),
    Repair(Repair),
    Revoke(Revocation),
}

/// Where a reconciliation is.
#[derive(Debug)]
enum Stage {
    /// Reading the users and the managed groups, a page a step.
    Listing(Taking),
    /// The listing is read: compare it with what the writer knows (no Kisi call).
    Comparing,
    /// Repairing, a key a step; the revocations come after the repairs, unless held.
    Repairing { work: VecDeque<Work>, revocations: Vec<Revocation> },
}

/// A reconciliation under way: a sequence of steps, each one Kisi call (a page of the listing
/// or a repair), that the writer interleaves with its commands.
#[derive(Debug)]
pub(crate) struct Reconciliation {
    stage: Stage,
    report: ReconcileReport,
}

impl Reconciliation {
    /// When the next step may run: after a failed page, later than now.
    pub(crate) fn due_at(&self, now: Timestamp) -> Timestamp {
        match &self.stage {
            Stage::Listing(taking) => taking.due_at().unwrap_or(now),
            Stage::Comparing | Stage::Repairing { .. } => now,
        }
    }
}

/// One reconciliation's steps, or one confirmation of the held revocations, by an active writer.
pub(crate) struct Reconciler<'w, W> {
    writer: &'w mut W,
    options: ReconcileOptions,
}

impl<'w, W: ActiveWriter> Reconciler<'w, W> {
    pub(crate) fn new(writer: &'w mut W) -> Self {
        let options = writer.reconcile_options();
        Self { writer, options }
    }

    /// Begins a reconciliation: the listing of the users and of every managed group (those
    /// configured and those named in commands).
    pub(crate) async fn begin(&mut self) -> Result<Reconciliation, WriterError> {
        if let Some(paused) = self.writer.paused_error() {
            return Err(paused);
        }
        self.writer.knowledge_mut().load_all().await?;
        let mut groups: BTreeSet<KisiGroupId> = self.options.groups.iter().copied().collect();
        groups.extend(self.writer.knowledge().members().flat_map(|(_, record)| record.groups.keys().copied()));
        let groups: Vec<KisiGroupId> = groups.into_iter().collect();
        let taking = Taking::new(&groups, self.writer.now());
        Ok(Reconciliation { stage: Stage::Listing(taking), report: ReconcileReport::default() })
    }

    /// The next step of `run`: the report once it is over. An error ends the run (the writer is
    /// paused or stopping, or the log failed).
    pub(crate) async fn step(&mut self, run: &mut Reconciliation) -> Result<Option<ReconcileReport>, WriterError> {
        if let Some(paused) = self.writer.paused_error() {
            return Err(paused);
        }
        let calls_before = self.writer.calls_total();
        let over = self.advance(run).await;
        run.report.calls += self.writer.calls_total() - calls_before;
        if !over? {
            return Ok(None);
        }
        let report = std::mem::take(&mut run.report);
        self.writer.reconciled(&report);
        let now = self.writer.now();
        crate::knowledge::save_reconciled_at(self.writer.knowledge().kv(), &self.options.account, now).await?;
        Ok(Some(report))
    }

    /// Takes one step; whether the run is over.
    async fn advance(&mut self, run: &mut Reconciliation) -> Result<bool, WriterError> {
        let report = &mut run.report;
        match &mut run.stage {
            Stage::Listing(taking) => {
                if taking.next_request().is_some() {
                    self.writer.read_page(taking).await;
                }
                if taking.next_request().is_none() {
                    let Stage::Listing(taking) = std::mem::replace(&mut run.stage, Stage::Comparing) else {
                        unreachable!("the stage was just matched as Listing")
                    };
                    self.writer.set_snapshot(taking.finish());
                }
                Ok(false)
            }
            Stage::Comparing => {
                let mut work = VecDeque::new();
                if self.options.users {
                    self.compare_users(&mut work, report).await;
                }
                let (repairs, revocations) = self.compare_groups(report).await;
                work.extend(repairs.into_iter().map(Work::Repair));
                run.stage = Stage::Repairing { work, revocations };
                Ok(false)
            }
            Stage::Repairing { work, revocations } => {
                if let Some(next) = work.pop_front() {
                    self.work(next, work, report).await?;
                    return Ok(false);
                }
                let revocations = std::mem::take(revocations);
                if revocations.is_empty() {
                    self.hold(None).await?;
                    return Ok(true);
                }
                let managed_members =
                    self.writer.knowledge().members().filter(|(_, record)| record.live_user().is_some()).count();
                let members_affected =
                    revocations.iter().map(|revocation| revocation.user).collect::<BTreeSet<_>>().len();
                let limit = self.options.max_revocation_share * managed_members as f64;
                if members_affected as f64 > limit {
                    let held =
                        HeldRepair { revocations, members_affected, managed_members, found_at: self.writer.now() };
                    tracing::warn!(
                        revocations = held.revocations.len(),
                        members_affected,
                        managed_members,
                        "reconciliation would revoke more than the allowed share of members; held until confirmed"
                    );
                    report.held = Some(held.status());
                    self.hold(Some(held)).await?;
                    return Ok(true);
                }
                self.hold(None).await?;
                work.extend(revocations.into_iter().map(Work::Revoke));
                Ok(false)
            }
        }
    }

    /// One piece of work; a user made again brings the repair of its memberships after it.
    async fn work(
        &mut self,
        work: Work,
        queue: &mut VecDeque<Work>,
        report: &mut ReconcileReport,
    ) -> Result<(), WriterError> {
        match work {
            Work::ReadUser(member, user) => {
                if self.read_user(member, user, report).await? {
                    self.repair_user(member, queue, report).await?;
                }
                Ok(())
            }
            Work::User(member) => self.repair_user(member, queue, report).await,
            Work::Repair(repair) => self.repair(repair, report).await,
            Work::Revoke(revocation) => {
                report.revoked += self.revoke_one(revocation, report).await?;
                Ok(())
            }
        }
    }

    /// Carries out the held revocations that are still wanted.
    pub(crate) async fn confirm_held(&mut self) -> Result<ReconcileReport, WriterError> {
        if let Some(paused) = self.writer.paused_error() {
            return Err(paused);
        }
        let Some(held) = self.writer.held().cloned() else { return Err(WriterError::NothingHeld) };
        let calls_before = self.writer.calls_total();
        self.writer.knowledge_mut().load_all().await?;
        let mut report = ReconcileReport::default();
        for revocation in held.revocations {
            report.revoked += self.revoke_one(revocation, &mut report).await?;
        }
        self.hold(None).await?;
        report.calls = self.writer.calls_total() - calls_before;
        tracing::info!(revoked = report.revoked, "held revocations confirmed and carried out");
        Ok(report)
    }

    async fn hold(&mut self, held: Option<HeldRepair>) -> Result<(), WriterError> {
        let kv = self.writer.knowledge().kv();
        match &held {
            Some(held) => {
                let encoded = rmp_serde::to_vec_named(held).map_err(WriterError::EncodeHeldRepair)?;
                kv.put(HELD_KEY, Bytes::from(encoded)).await?;
            }
            None if self.writer.held().is_some() => kv.delete(HELD_KEY).await?,
            None => {}
        }
        self.writer.set_held(held);
        Ok(())
    }

    /// Compares every live user doorsync manages with the users' listing: a suspension, restore
    /// or deletion made by hand is undone, and a change whose command was dead-lettered tried
    /// again. Without a whole listing (past Kisi's offset cap), each user is read by id.
    async fn compare_users(&mut self, work: &mut VecDeque<Work>, report: &mut ReconcileReport) {
        let users: Vec<(MemberId, KisiUserId)> = self
            .writer
            .knowledge()
            .members()
            .filter(|(member, record)| {
                record.user.desired.is_some()
                    && !self.writer.is_waiting(Key::User(*member))
                    && !self.writer.worked_since_listing(Key::User(*member))
            })
            .filter_map(|(member, record)| record.live_user().map(|user| (member, user)))
            // A user doorsync found rather than created is not doorsync's to suspend or restore.
            .filter(|(_, user)| user.created_by_doorsync || self.options.manage_found_users)
            .map(|(member, user)| (member, user.id))
            .collect();
        let listed: Option<HashMap<KisiUserId, KisiUserState>> = self.writer.snapshot().and_then(|snapshot| {
            Some(
                snapshot.users_by_id()?.into_iter().map(|(id, user)| (id, access_state(user.access_enabled))).collect(),
            )
        });
        for (member, user) in users {
            match &listed {
                Some(listed) => {
                    let actual = listed.get(&user).copied().unwrap_or(KisiUserState::Deleted);
                    if self.user_seen(member, actual, report).await {
                        work.push_back(Work::User(member));
                    }
                }
                None => work.push_back(Work::ReadUser(member, user)),
            }
        }
    }

    /// Reads one user the listing did not show (see [`compare_users`](Self::compare_users));
    /// whether it differs from what is desired.
    async fn read_user(
        &mut self,
        member: MemberId,
        user: KisiUserId,
        report: &mut ReconcileReport,
    ) -> Result<bool, WriterError> {
        if self.writer.is_waiting(Key::User(member)) {
            report.left_to_commands += 1;
            return Ok(false);
        }
        let actual = match self.writer.read_user(user).await {
            Ok(found) => access_state(found.access_enabled),
            Err(CallError::Kisi(KisiError::NotFound { .. })) => KisiUserState::Deleted,
            Err(error) => return self.call_failed(error, report, None).await.map(|()| false),
        };
        Ok(self.user_seen(member, actual, report).await)
    }

    /// Records the member's user as Kisi holds it; whether it differs from what is desired.
    async fn user_seen(&mut self, member: MemberId, actual: KisiUserState, report: &mut ReconcileReport) -> bool {
        report.users_checked += 1;
        let record = self.writer.knowledge_mut().get_mut(member);
        let Some(known) = &mut record.user.known else { return false };
        let drifted = known.state != actual;
        known.state = actual;
        if actual == KisiUserState::Deleted {
            record.apply(Observation::UserGone);
        }
        let Some(desire) = record.user.desired.clone() else { return false };
        if drifted {
            self.writer.save_quietly(member).await;
        }
        // Compared with the desire, not with what was known: after a dead-lettered suspension
        // or deletion the two differ while Kisi still matches what was known.
        desire.access != actual
    }

    /// Drives the member's user to its newest settled desire, unless a command came for it
    /// meanwhile. A user made again (it was deleted by hand) holds no assignment: its memberships
    /// are repaired next.
    async fn repair_user(
        &mut self,
        member: MemberId,
        queue: &mut VecDeque<Work>,
        report: &mut ReconcileReport,
    ) -> Result<(), WriterError> {
        if self.writer.is_waiting(Key::User(member)) {
            report.left_to_commands += 1;
            return Ok(());
        }
        let record = self.writer.knowledge_mut().get_mut(member);
        let Some(desire) = record.user.desired.clone() else { return Ok(()) };
        let had_user = record.live_user().is_some();
        match self.writer.drive_user(member, &desire).await {
            Driven::Done(outcomes) => {
                report.users_repaired += 1;
                self.publish_repair(outcomes).await;
                let record = self.writer.knowledge_mut().get_mut(member);
                if !had_user && record.live_user().is_some() {
                    let memberships = record.groups.iter().filter_map(|(&group, record)| match record.desired {
                        Some(desire @ GroupDesire::Member { .. }) => {
                            Some(Work::Repair(Repair::Create(member, group, desire)))
                        }
                        _ => None,
                    });
                    queue.extend(memberships.collect::<Vec<_>>());
                }
                Ok(())
            }
            driven => self.repair_failed(driven, report),
        }
    }

    /// Compares every managed group's listing with what is desired, sorting the differences into
    /// repairs and revocations; records what was seen as known.
    async fn compare_groups(&mut self, report: &mut ReconcileReport) -> (Vec<Repair>, Vec<Revocation>) {
        let creators = self.writer.creators().clone();
        let touch_foreign = self.options.touch_foreign_assignments;
        let mut groups: BTreeSet<KisiGroupId> = self.options.groups.iter().copied().collect();
        groups.extend(self.writer.knowledge().members().flat_map(|(_, record)| record.groups.keys().copied()));
        let members: Vec<MemberId> = self.writer.knowledge().members().map(|(member, _)| member).collect();
        let (mut repairs, mut revocations) = (Vec::new(), Vec::new());
        for group in groups {
            let listed: Option<Vec<RoleAssignment>> = self.writer.snapshot().and_then(|snapshot| {
                snapshot.group_assignments(group).map(|listed| listed.into_iter().cloned().collect())
            });
            let Some(listed) = listed else {
                // Refused to a key that works (a mapping to fix), or not listed whole: its
                // failure was logged when its page was read.
                if self.writer.snapshot().is_some_and(|snapshot| snapshot.refused(group)) {
                    report.groups_refused += 1;
                } else {
                    report.failed += 1;
                }
                continue;
            };
            report.groups_listed += 1;
            report.assignments_seen += listed.len();
            let mut by_user: HashMap<KisiUserId, RoleAssignment> =
                listed.into_iter().filter_map(|assignment| Some((assignment.user()?, assignment))).collect();
            for &member in &members {
                let waiting =
                    self.writer.is_waiting(Key::Group(member, group)) || self.writer.is_waiting(Key::User(member));
                let worked = self.writer.worked_since_listing(Key::Group(member, group));
                let record = self.writer.knowledge_mut().get_mut(member);
                let Some(user) = record.live_user().map(|user| user.id) else { continue };
                let actual = by_user.remove(&user);
                if worked {
                    report.left_to_commands += 1;
                    continue;
                }
                let desire = record.groups.get(&group).and_then(|record| record.desired);
                let held = actual.as_ref().map(|assignment| creators.held(assignment));
                let known = held.map_or(KnownAssignment::Absent, KnownAssignment::Present);
                let changed_knowledge = record.groups.get(&group).is_none_or(|record| record.known != known);
                record.apply(Observation::AssignmentRead(group, held));
                let different = match (desire, &actual) {
                    (Some(desire @ GroupDesire::Member { .. }), Some(actual)) => {
                        desire.validity() != Some(actual.validity())
                    }
                    (Some(GroupDesire::Member { .. }), None) => true,
                    (_, Some(_)) => true,
                    (_, None) => false,
                };
                if changed_knowledge {
                    self.writer.save_quietly(member).await;
                }
                if !different {
                    continue;
                }
                if waiting {
                    report.left_to_commands += 1;
                    continue;
                }
                let may_change = match known {
                    KnownAssignment::Present(held) => held.ours || touch_foreign,
                    KnownAssignment::Absent | KnownAssignment::Unknown => true,
                };
                match (desire, actual) {
                    _ if !may_change => report.foreign_untouched += 1,
                    (Some(desire @ GroupDesire::Member { .. }), None) => {
                        repairs.push(Repair::Create(member, group, desire))
                    }
                    (Some(desire @ GroupDesire::Member { .. }), Some(_)) => {
                        repairs.push(Repair::Window(member, group, desire));
                    }
                    (_, Some(actual)) => {
                        revocations.push(Revocation { member: Some(member), user, group, assignment: actual.id })
                    }
                    (_, None) => {}
                }
            }
            // Assignments of users doorsync has no record of are not doorsync's business, even
            // those its key's owner made (by hand, for a non-member), except those of an adopted
            // creator: what a former integration left for people no longer entitled goes.
            for (user, assignment) in by_user {
                if creators.adopted(&assignment) {
                    revocations.push(Revocation { member: None, user, group, assignment: assignment.id });
                }
            }
        }
        (repairs, revocations)
    }

    /// One repair, unless a command for its key came meanwhile or settled another desire.
    async fn repair(&mut self, repair: Repair, report: &mut ReconcileReport) -> Result<(), WriterError> {
        let (member, group, desire) = match repair {
            Repair::Create(member, group, desire) | Repair::Window(member, group, desire) => (member, group, desire),
        };
        let wanted = self.writer.knowledge_mut().get_mut(member).groups.get(&group).and_then(|record| record.desired);
        if self.writer.is_waiting(Key::Group(member, group)) || wanted != Some(desire) {
            report.left_to_commands += 1;
            return Ok(());
        }
        match self.writer.drive_group(member, group, desire).await {
            Driven::Done(outcomes) => {
                match repair {
                    Repair::Create(..) => report.created += 1,
                    Repair::Window(..) => report.windows_fixed += 1,
                }
                self.publish_repair(outcomes).await;
                Ok(())
            }
            driven => self.repair_failed(driven, report),
        }
    }

    /// Deletes the assignment if it is still not wanted; how many went (0 or 1).
    async fn revoke_one(&mut self, revocation: Revocation, report: &mut ReconcileReport) -> Result<usize, WriterError> {
        let Some(member) = revocation.member else {
            let assignment = revocation.assignment;
            return match self.writer.delete_assignment(assignment).await {
                Ok(()) | Err(CallError::Kisi(KisiError::NotFound { .. })) => Ok(1),
                Err(error) => self.call_failed(error, report, Some(revocation.group)).await.map(|()| 0),
            };
        };
        let key = Key::Group(member, revocation.group);
        let record = self.writer.knowledge_mut().get_mut(member);
        let wanted = record.groups.get(&revocation.group).and_then(|record| record.desired);
        if matches!(wanted, Some(GroupDesire::Member { .. })) || self.writer.is_waiting(key) {
            return Ok(0);
        }
        match self.writer.drive_group(member, revocation.group, GroupDesire::NotMember).await {
            Driven::Done(outcomes) => {
                self.publish_repair(outcomes).await;
                Ok(1)
            }
            driven => self.repair_failed(driven, report).map(|()| 0),
        }
    }

    async fn publish_repair(&self, outcomes: Vec<Outcome>) {
        let now = self.writer.now();
        for outcome in outcomes {
            if let Err(error) = self.writer.publish(outcome, now).await {
                tracing::warn!(%error, "publishing a repair's outcome failed");
            }
        }
    }

    /// A failed listing or repair: counted, and the run goes on, unless the writer is now paused
    /// or stopping, which ends it. A 403 on one `group` while the key works is that group's
    /// failure alone: the group is reported as refused and the others are reconciled.
    async fn call_failed(
        &mut self,
        error: CallError,
        report: &mut ReconcileReport,
        group: Option<KisiGroupId>,
    ) -> Result<(), WriterError> {
        match error {
            CallError::Kisi(error) if error.is_credentials_problem() => {
                match self.writer.whom_kisi_refused(&error).await {
                    Refusal::TheKey => Err(WriterError::refused_key(&error)),
                    Refusal::ThisCall => {
                        match group {
                            Some(group) => {
                                self.writer.note_refused_group(group, error.to_string());
                                report.groups_refused += 1;
                            }
                            None => report.failed += 1,
                        }
                        Ok(())
                    }
                    Refusal::NotKnownYet(probe_error) => self.repair_failed(Driven::Failed(probe_error), report),
                }
            }
            CallError::Kisi(error) => self.repair_failed(Driven::Failed(error), report),
            CallError::Stopped => Err(WriterError::Stopped),
        }
    }

    fn repair_failed(&mut self, driven: Driven, report: &mut ReconcileReport) -> Result<(), WriterError> {
        match driven {
            Driven::Failed(error) if error.is_credentials_problem() => {
                self.writer.pause(&error);
                Err(WriterError::refused_key(&error))
            }
            Driven::Stopped => Err(WriterError::Stopped),
            Driven::Failed(error) => {
                tracing::warn!(%error, "a reconciliation repair failed; the next run tries again");
                report.failed += 1;
                Ok(())
            }
            Driven::Refused(reason) => {
                tracing::warn!(reason, "a reconciliation repair was refused");
                report.failed += 1;
                Ok(())
            }
            Driven::Done(_) => Ok(()),
        }
    }
}
