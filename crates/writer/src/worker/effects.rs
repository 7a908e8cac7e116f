//! The effects: each Kisi call the plan names, made through the gateway, and what Kisi answered
//! folded into the writer's knowledge as an [`Observation`] by the pure [`Knowledge::apply`];
//! the credentials probe and the pause when Kisi refuses the key; and the drives that take one
//! key to its desire with as many calls as it needs, for the reconciler.

use std::collections::BTreeSet;

use doorsync_kisi::{KisiError, NewUser, RoleAssignment, User, UserKind, Validity};
use doorsync_log::LogError;
use doorsync_proto::{
    KisiAssignmentId, KisiGroupId, KisiUserId, KisiUserState, MemberId, Outcome, Timestamp, UserAccessChanged,
    UserLinked,
};

use super::intake::{Active, group_outcome};
use crate::WriterError;
use crate::backlog::Key;
use crate::gateway::{ASSIGNMENTS_PAGE, CallError, retry_after_wait};
use crate::knowledge::{GroupDesire, HeldAssignment, Knowledge, KnownUser, Observation, UserDesire, access_state};
use crate::plan::{self, GroupRules, GroupStep, UserStep};
use crate::reconcile::{ActiveWriter, HeldRepair, ReconcileOptions};
use crate::snapshot::{Lookup, PageRequest, Snapshot, Taking};
use crate::status::{PauseStatus, ReconcileReport, RefusedGroup};

/// At most this many calls to settle one key within a reconciliation.
const MAX_REPAIR_STEPS: usize = 8;
/// Set on every user doorsync creates, so that finding it by email later (after a create whose
/// answer was lost, or after a restart) still says doorsync created it.
pub const MANAGED_BY_KEY: &str = "managed_by";
pub const MANAGED_BY_VALUE: &str = "doorsync";

/// A paused writer's next credentials probe.
#[derive(Debug)]
pub(super) struct Pause {
    /// Kisi's refusal of the API key.
    pub(super) refusal: KisiError,
    pub(super) next_probe_at: Timestamp,
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

impl Active<'_> {
    /// When the next probe is due, if the writer must probe before anything else: it does not
    /// know its API user yet, or Kisi refused the key.
    pub(super) fn probe_due(&self) -> Option<Timestamp> {
        match (&self.pause, self.creators.api_user) {
            (Some(pause), _) => Some(pause.next_probe_at),
            (None, None) => Some(self.next_identity_at),
            (None, Some(_)) => None,
        }
    }

    /// Asks Kisi who the key belongs to: the first call of an active writer, and the only one a
    /// paused writer makes.
    pub(super) async fn probe(&mut self) {
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
                    self.next_identity_at = self.now() + wait;
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
                Some(pause) => pause.next_probe_at = now + self.shared.options.credentials_probe_every,
                None => self.pause(&error),
            },
            Err(CallError::Kisi(error)) => {
                self.identity_attempts += 1;
                let wait = self.backoff.delay(self.identity_attempts);
                tracing::warn!(%error, "asking Kisi for the API key's user failed; retrying");
                match &mut self.pause {
                    Some(pause) => pause.next_probe_at = now + self.shared.options.credentials_probe_every,
                    None => self.next_identity_at = now + wait,
                }
            }
            Err(CallError::Stopped) => {}
        }
    }

    /// Stops all work but the credentials probe: every further call would be refused the same way,
    /// and working through the queue would only dead-letter it.
    pub(super) fn pause(&mut self, error: &KisiError) {
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
        let next_probe_at = now + self.shared.options.credentials_probe_every;
        self.pause = Some(Pause { refusal: error.clone(), next_probe_at });
    }

    pub(super) fn paused_error(&self) -> Option<WriterError> {
        match (&self.pause, self.creators.api_user) {
            (Some(pause), _) => Some(WriterError::refused_key(&pause.refusal)),
            (None, None) => Some(WriterError::Paused { refusal: None }),
            (None, Some(_)) => None,
        }
    }

    /// Records that `user`, found by email, is the member's; refused when another member already
    /// has it. An email that moves from one member to another (Kisi cannot change a user's email)
    /// must not hand the first member's Kisi user, and the doors it opens, to the second.
    pub(super) async fn link(&mut self, member: MemberId, user: &KnownUser) -> Result<(), StepResult> {
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

    /// The Kisi user is gone: no member is linked to it, and the snapshot no longer offers it.
    async fn forget_user(&mut self, user: KisiUserId) {
        self.knowledge.forget_link(user).await;
        if let Some(snapshot) = &mut self.snapshot {
            snapshot.forget_user(user);
        }
        if self.reconciliation.is_some() {
            self.users_gone_during_reconciliation.insert(user);
        }
    }

    /// Kisi answers 403, not 404, for an id that does not exist (so Kisi support says): once the
    /// key's own `GET /user` shows the key works, a 403 on a call by a user's or an assignment's
    /// id means that user or assignment is gone, and is handled as a 404.
    pub(super) async fn gone_when_forbidden<T>(&mut self, result: Result<T, CallError>) -> Result<T, CallError> {
        let Err(CallError::Kisi(KisiError::Forbidden { endpoint, details })) = result else { return result };
        let error = KisiError::Forbidden { endpoint: endpoint.clone(), details: details.clone() };
        match self.whom_kisi_refused(&error).await {
            Refusal::ThisCall => Err(CallError::Kisi(KisiError::NotFound { endpoint, details })),
            Refusal::TheKey => Err(CallError::Kisi(error)),
            Refusal::NotKnownYet(probe_error) => Err(CallError::Kisi(probe_error)),
        }
    }

    /// A create of an assignment refused with 403 (or 404) names two ids: the member's user may be gone
    /// (then it is found or created again), or the group is one the key may not use (then
    /// `refusal` stands, and the command is dead-lettered naming the group).
    pub(super) async fn user_gone_or(&mut self, member: MemberId, user: KisiUserId, refusal: KisiError) -> StepResult {
        let read = self.gateway.call(&mut self.stop, |client| async move { client.user(user).await }).await;
        match self.gone_when_forbidden(read).await {
            Ok(_) => StepResult::Failed(refusal),
            Err(CallError::Kisi(KisiError::NotFound { .. })) => {
                self.forget_user(user).await;
                self.knowledge.apply(member, Observation::UserGone);
                StepResult::Conflict("the member's Kisi user is gone".to_owned())
            }
            Err(error) => error.into(),
        }
    }

    /// The rules for group steps, from the options and what was learnt of the account.
    pub(super) fn group_rules(&self) -> GroupRules {
        GroupRules {
            touch_foreign_assignments: self.shared.options.reconcile.touch_foreign_assignments,
            patch_applies_validity: self.patch_applies_validity,
        }
    }

    /// Whom a 401 or 403 refused. Kisi also answers 403 for an id the key may not see (a
    /// mistyped group id): that is this call's permanent failure, and pausing would only stop
    /// every other member's writes while the probe keeps succeeding. So a 403 pauses the writer
    /// only when the key's own `GET /user` is refused too.
    pub(super) async fn whom_kisi_refused(&mut self, error: &KisiError) -> Refusal {
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
    pub(super) fn refused_call(&self, key: Key, error: &KisiError) -> String {
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

    pub(super) fn note_refused_group(&self, group: KisiGroupId, mapping: Option<String>, reason: String) {
        let mut status = self.shared.status.lock();
        if !status.refused_groups.iter().any(|refused| refused.group == group) {
            tracing::error!(%group, mapping = mapping.as_deref().unwrap_or("-"), reason, "Kisi refuses a mapped group to this API key");
            status.refused_groups.push(RefusedGroup { group, mapping, reason });
        }
    }

    /// What the writer learns of the account once, before its first write: who the adopted
    /// creators are, and which mapped groups the key may not see.
    pub(super) async fn learn_account(&mut self) -> Result<(), KisiError> {
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
        let groups = match self.gateway.call(&mut self.stop, |client| async move { client.groups().await }).await {
            Ok(groups) => groups,
            Err(CallError::Kisi(error)) => return Err(error),
            Err(CallError::Stopped) => return Ok(()),
        };
        crate::names::name_groups(&self.shared.catalogue, &groups, &self.shared.options.reconcile_groups).await;
        let visible = groups.into_iter().map(|group| group.id).collect::<BTreeSet<_>>();
        for &group in &self.shared.options.reconcile_groups {
            if !visible.contains(&group) {
                let mapping = self.shared.options.group_labels.get(&group).cloned();
                let reason = "not among the groups this API key can see (GET /groups)".to_owned();
                self.note_refused_group(group, mapping, reason);
            }
        }
        Ok(())
    }

    /// Saves the member's record with what a change about to be made to its user (`None`) or
    /// `group` may alter marked as not known: a writer that stops or dies before it learns the
    /// result leaves whoever comes next to look in Kisi, not to trust what was true before.
    pub(super) async fn before_change(&self, member: MemberId, group: Option<KisiGroupId>) -> Result<(), StepResult> {
        self.knowledge.save_in_doubt(member, group).await.map_err(|error| {
            StepResult::Unsaved(format!("saving the writer's knowledge before a change failed: {error}"))
        })
    }

    /// Makes the call `step` names for the member's user and records what Kisi answered.
    pub(super) async fn user_call(&mut self, member: MemberId, step: UserStep) -> StepResult {
        let user_id = self.knowledge.get_mut(member).user.known.as_ref().map(|user| user.id);
        match step {
            UserStep::Find { email } => match self.find_in_snapshot(member, &email).await {
                Some(answered) => answered,
                None => self.find_user(member, email).await,
            },
            UserStep::Create { email, name, access_enabled } => {
                self.create_user(member, email, name, access_enabled).await
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
                        let held = assignments
                            .iter()
                            .filter_map(|assignment| Some((assignment.group()?, self.creators.held(assignment))))
                            .collect();
                        self.knowledge.apply(member, Observation::AssignmentsListed(held));
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
                        self.knowledge.apply(member, Observation::UserAccess(access_state(found.access_enabled)));
                        StepResult::Changed(Vec::new())
                    }
                    Err(CallError::Kisi(KisiError::NotFound { .. })) => {
                        // Deleted (by the change in doubt, or by hand) with its assignments:
                        // found or created again if the member needs one.
                        self.forget_user(user).await;
                        self.knowledge.apply(member, Observation::UserGone);
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
                match self.gone_when_forbidden(set).await {
                    Ok(()) => {
                        let state = access_state(access_enabled);
                        self.knowledge.apply(member, Observation::UserAccess(state));
                        StepResult::Changed(vec![access_changed(member, state)])
                    }
                    Err(CallError::Kisi(error @ KisiError::NotFound { .. })) => {
                        self.knowledge.apply(member, Observation::UserGone);
                        StepResult::Conflict(format!("the member's Kisi user is gone: {error}"))
                    }
                    Err(error) => self.unconfirmed(member, error, Observation::UserAccessInDoubt),
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
                        self.forget_user(user).await;
                        self.knowledge.apply(member, Observation::UserDeleted);
                        StepResult::Changed(vec![access_changed(member, KisiUserState::Deleted)])
                    }
                    Err(error) => self.unconfirmed(member, error, Observation::UserAccessInDoubt),
                }
            }
            UserStep::Done | UserStep::AwaitEnsureUser | UserStep::LeaveAlone => StepResult::Changed(Vec::new()),
        }
    }

    /// Looks for a Kisi user with the member's email, and links the member to it if there is one.
    async fn find_user(&mut self, member: MemberId, email: String) -> StepResult {
        let found =
            self.gateway.call(&mut self.stop, |client| async move { client.find_user_by_email(&email).await }).await;
        match found {
            Ok(Some(user)) if Some(user.id) == self.creators.api_user => StepResult::Refused(format!(
                "the member's email belongs to Kisi user {}, who owns doorsync's API key; doorsync never \
                 links that user to a member (give the member another email in Nexudus, or use another \
                 Kisi account's key)",
                user.id
            )),
            Ok(Some(user)) => self.link_found(member, &user, None).await,
            Ok(None) => {
                self.knowledge.apply(member, Observation::NoUserWithEmail);
                StepResult::Changed(Vec::new())
            }
            Err(error) => error.into(),
        }
    }

    /// Answers the search for the member's email from the snapshot of Kisi, when it can say and
    /// nothing since (a refused create, the user found gone) makes it doubtful for this member.
    async fn find_in_snapshot(&mut self, member: MemberId, email: &str) -> Option<StepResult> {
        if self.knowledge.get_mut(member).user.search_kisi {
            return None;
        }
        let now = self.now();
        let snapshot = self.snapshot.as_ref()?;
        match snapshot.user_with_email(email, now) {
            Lookup::Unknown => None,
            Lookup::Absent => {
                self.knowledge.apply(member, Observation::NoUserWithEmail);
                Some(StepResult::Changed(Vec::new()))
            }
            Lookup::Found(user) => {
                let user = user.clone();
                let memberships: Vec<(KisiGroupId, Option<HeldAssignment>)> = snapshot
                    .memberships_of(user.id)
                    .into_iter()
                    .map(|(group, held)| (group, held.map(|held| self.creators.held(held))))
                    .collect();
                Some(self.link_found(member, &user, Some(memberships)).await)
            }
        }
    }

    /// Links the member to `user`, found by its email, unless it is the key's owner or another
    /// member's. With the user's `memberships` in the groups a snapshot listed whole, its
    /// assignments need no listing of their own.
    async fn link_found(
        &mut self,
        member: MemberId,
        user: &User,
        memberships: Option<Vec<(KisiGroupId, Option<HeldAssignment>)>>,
    ) -> StepResult {
        if Some(user.id) == self.creators.api_user {
            return StepResult::Refused(format!(
                "the member's email belongs to Kisi user {}, who owns doorsync's API key; doorsync never \
                 links that user to a member (give the member another email in Nexudus, or use another \
                 Kisi account's key)",
                user.id
            ));
        }
        // With the snapshot's memberships, the groups it did not list are looked up one by one
        // when a command needs them (`UserRecord::groups_listed`), so no listing of the user's own.
        let known = known_user(user, created_by_doorsync(user), memberships.is_some());
        if let Err(result) = self.link(member, &known).await {
            return result;
        }
        let outcome = linked(member, &known);
        let observation = match memberships {
            Some(memberships) => Observation::UserFoundWithMemberships(known, memberships),
            None => Observation::UserFound(known),
        };
        self.knowledge.apply(member, observation);
        StepResult::Changed(vec![outcome])
    }

    /// Reads the next page `taking` needs through the gateway, and adds it to the snapshot. A
    /// listing Kisi cannot give whole (past its offset cap, a group refused to the key, a page it
    /// refuses for good) is left out of the snapshot, loudly; a page that failed for now is read
    /// again after a backoff.
    pub(crate) async fn read_page(&mut self, taking: &mut Taking) {
        let Some(request) = taking.next_request() else { return };
        let result = match request {
            PageRequest::Users { offset } => self
                .gateway
                .call(&mut self.stop, |client| async move { client.users_page(offset).await })
                .await
                .map(|page| taking.users_read(page.items, page.next_offset)),
            PageRequest::Group { group, offset } => self
                .gateway
                .call(&mut self.stop, |client| async move { client.group_assignments_page(group, offset).await })
                .await
                .map(|page| taking.group_read(group, page.items, page.next_offset)),
        };
        let error = match result {
            Ok(()) => return,
            Err(CallError::Stopped) => return,
            Err(CallError::Kisi(error)) => error,
        };
        let group = match request {
            PageRequest::Group { group, .. } => Some(group),
            PageRequest::Users { .. } => None,
        };
        if error.is_credentials_problem() {
            match self.whom_kisi_refused(&error).await {
                // Paused: the page is read again once the key works.
                Refusal::TheKey => return,
                Refusal::ThisCall => {
                    if let Some(group) = group {
                        let mapping = self.shared.options.group_labels.get(&group).cloned();
                        self.note_refused_group(group, mapping, error.to_string());
                    }
                    tracing::error!(%error, ?request, "Kisi refused a listing to a key that works; it is left out of the snapshot");
                    return taking.refused();
                }
                Refusal::NotKnownYet(_) => {}
            }
        } else if matches!(error, KisiError::TooManyResults { .. }) {
            tracing::error!(
                %error,
                ?request,
                "the listing goes past Kisi's offset cap of 20,000: it is left out of the snapshot, and every member \
                 it would have answered for is looked up in Kisi one by one"
            );
            return taking.cut_short();
        } else if !error.is_retryable() {
            tracing::error!(%error, ?request, "Kisi refused a listing; it is left out of the snapshot");
            return taking.cut_short();
        }
        let attempts = taking.failed_again();
        let wait = self.backoff.delay(attempts);
        let retry_after = retry_after_wait(&error, self.now()).map(|(wait, _)| wait).unwrap_or_default();
        tracing::warn!(%error, attempts, "reading a page of Kisi's listing failed; reading it again later");
        taking.not_before(self.now() + wait.max(retry_after));
    }

    /// Creates the member's Kisi user, marked as doorsync's.
    async fn create_user(&mut self, member: MemberId, email: String, name: String, access_enabled: bool) -> StepResult {
        let mut new_user = NewUser::managed(email, name);
        if !self.shared.options.managed_users {
            new_user.kind = UserKind::Regular;
        }
        new_user.access_enabled = access_enabled;
        new_user.metadata.insert(MANAGED_BY_KEY.to_owned(), MANAGED_BY_VALUE.into());
        let created =
            self.gateway.call(&mut self.stop, |client| async move { client.create_user(&new_user).await }).await;
        match created {
            Ok(user) => {
                // A new user has no assignments yet.
                let known = known_user(&user, true, true);
                if let Err(error) = self.knowledge.record_link(known.id, member).await {
                    tracing::warn!(%member, %error, "recording which member a new Kisi user belongs to failed");
                }
                let state = known.state;
                let mut outcomes = vec![linked(member, &known)];
                self.knowledge.apply(member, Observation::UserCreated(known));
                if state != KisiUserState::Enabled {
                    outcomes.push(access_changed(member, state));
                }
                StepResult::Changed(outcomes)
            }
            Err(CallError::Kisi(error)) => {
                self.knowledge.apply(member, Observation::UserMayExist);
                if matches!(error, KisiError::Unprocessable { .. }) {
                    StepResult::Conflict(error.to_string())
                } else {
                    StepResult::Failed(error)
                }
            }
            Err(CallError::Stopped) => StepResult::Stopped,
        }
    }

    /// Makes the call `step` names for the member's membership of `group` and records the answer.
    pub(super) async fn group_call(&mut self, member: MemberId, group: KisiGroupId, step: GroupStep) -> StepResult {
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
                        let held = found.as_ref().map(|assignment| self.creators.held(assignment));
                        self.knowledge.apply(member, Observation::AssignmentRead(group, held));
                        StepResult::Changed(Vec::new())
                    }
                    Err(error) => error.into(),
                }
            }
            GroupStep::Create { validity } => self.create_assignment(member, user, group, validity).await,
            GroupStep::Update { assignment, validity } => {
                self.update_assignment(member, group, assignment, validity).await
            }
            GroupStep::Delete { assignment, recreate } => {
                if let Err(unsaved) = self.before_change(member, Some(group)).await {
                    return unsaved;
                }
                // A member who keeps the group lacks its doors from the delete to the create: the
                // delete waits until both may go back to back, not a rolling second apart.
                let back_to_back = if recreate { 2 } else { 1 };
                let deleted = self
                    .gateway
                    .call_in_a_row(&mut self.stop, back_to_back, |client| async move {
                        client.delete_assignment(assignment).await
                    })
                    .await;
                match self.gone_when_forbidden(deleted).await {
                    Ok(()) | Err(CallError::Kisi(KisiError::NotFound { .. })) => {
                        self.knowledge.apply(member, Observation::AssignmentRemoved(group));
                        StepResult::Changed(Vec::new())
                    }
                    Err(error) => self.unconfirmed(member, error, Observation::AssignmentInDoubt(group)),
                }
            }
            GroupStep::Done | GroupStep::RefuseNoUser | GroupStep::RefuseForeign { .. } => {
                StepResult::Changed(Vec::new())
            }
        }
    }

    /// Gives the member's user `user` an assignment on `group` for `validity`.
    async fn create_assignment(
        &mut self,
        member: MemberId,
        user: KisiUserId,
        group: KisiGroupId,
        validity: Validity,
    ) -> StepResult {
        if let Err(unsaved) = self.before_change(member, Some(group)).await {
            return unsaved;
        }
        let created = self
            .gateway
            .call(&mut self.stop, |client| async move { client.create_group_assignment(user, group, validity).await })
            .await;
        match created {
            Ok(assignment) => {
                let made = HeldAssignment { ours: true, ..held(&assignment) };
                self.knowledge.apply(member, Observation::AssignmentMade(group, made));
                StepResult::Changed(Vec::new())
            }
            // Kisi answers 403 for an id that does not exist, or 404; a user linked from a snapshot
            // may have been deleted since.
            Err(CallError::Kisi(error @ (KisiError::Forbidden { .. } | KisiError::NotFound { .. }))) => {
                self.knowledge.apply(member, Observation::AssignmentInDoubt(group));
                self.user_gone_or(member, user, error).await
            }
            Err(CallError::Kisi(error)) => {
                // Created after all (a lost answer) or by someone else: look before
                // creating again, since Kisi holds one assignment per user and group.
                self.knowledge.apply(member, Observation::AssignmentInDoubt(group));
                if matches!(error, KisiError::Unprocessable { .. }) {
                    StepResult::Conflict(error.to_string())
                } else {
                    StepResult::Failed(error)
                }
            }
            Err(CallError::Stopped) => StepResult::Stopped,
        }
    }

    /// Moves `assignment`, the member's on `group`, to `validity`, and reads it back.
    async fn update_assignment(
        &mut self,
        member: MemberId,
        group: KisiGroupId,
        assignment: KisiAssignmentId,
        validity: Validity,
    ) -> StepResult {
        if let Err(unsaved) = self.before_change(member, Some(group)).await {
            return unsaved;
        }
        let updated = self
            .gateway
            .call(&mut self.stop, |client| async move { client.update_assignment_validity(assignment, validity).await })
            .await;
        let updated = self.gone_when_forbidden(updated).await;
        match updated {
            Ok(()) => self.verify_update(member, group, assignment, validity).await,
            Err(CallError::Kisi(error @ KisiError::NotFound { .. })) => {
                self.knowledge.apply(member, Observation::AssignmentRemoved(group));
                StepResult::Conflict(format!("the assignment is gone: {error}"))
            }
            Err(CallError::Kisi(KisiError::Unprocessable { .. })) => {
                // Kisi refuses to change the window of an assignment: it will not do it
                // for any, so from now on a window changes by delete and create. The
                // assignment is as it was.
                self.learn_patch_applies_validity(false).await;
                self.knowledge.apply(member, Observation::AssignmentInDoubt(group));
                StepResult::Changed(Vec::new())
            }
            Err(error) => self.unconfirmed(member, error, Observation::AssignmentInDoubt(group)),
        }
    }

    /// A change Kisi did not confirm: when Kisi may have made it all the same (the answer was
    /// lost), what it may have changed (`in_doubt`) is looked at before anything is decided from it.
    fn unconfirmed(&mut self, member: MemberId, error: CallError, in_doubt: Observation) -> StepResult {
        match error {
            CallError::Kisi(error) => {
                if error.outcome_unknown() {
                    self.knowledge.apply(member, in_doubt);
                }
                StepResult::Failed(error)
            }
            CallError::Stopped => StepResult::Stopped,
        }
    }

    /// Reads back an assignment whose validity Kisi accepted a PATCH of: Kisi's spec does not
    /// promise that PATCH applies `valid_from`/`valid_until`, and a window believed moved but not
    /// moved keeps a door open (or shut) on the old times. What Kisi holds becomes what is known,
    /// and whether the account applied it is remembered.
    pub(super) async fn verify_update(
        &mut self,
        member: MemberId,
        group: KisiGroupId,
        assignment: KisiAssignmentId,
        validity: Validity,
    ) -> StepResult {
        let read =
            self.gateway.call(&mut self.stop, |client| async move { client.role_assignment(assignment).await }).await;
        match self.gone_when_forbidden(read).await {
            Ok(held) => {
                let applied = held.validity() == validity;
                self.knowledge.apply(member, Observation::AssignmentRead(group, Some(self.creators.held(&held))));
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
                self.knowledge.apply(member, Observation::AssignmentRemoved(group));
                StepResult::Conflict(format!("the assignment is gone: {error}"))
            }
            Err(error) => {
                self.knowledge.apply(member, Observation::AssignmentInDoubt(group));
                error.into()
            }
        }
    }

    /// Remembers, in the writer's bucket, whether this account applies a PATCH of validity. Once
    /// it did not, it is not tried again: a later success would more likely be a change Kisi
    /// made than a sign that PATCH can be trusted again.
    pub(super) async fn learn_patch_applies_validity(&mut self, applies: bool) {
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
    pub(super) async fn drive_group(&mut self, member: MemberId, group: KisiGroupId, desire: GroupDesire) -> Driven {
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
    pub(super) async fn drive_user(&mut self, member: MemberId, desire: &UserDesire) -> Driven {
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
    pub(super) async fn after_repair_step(&mut self, member: MemberId, result: StepResult) -> Option<Driven> {
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

    pub(super) async fn save_quietly(&self, member: MemberId) {
        if let Err(error) = self.knowledge.save(member).await {
            tracing::warn!(%member, %error, "saving the writer's knowledge failed");
        }
    }
}

pub(super) const NO_USER: &str = "doorsync has no Kisi user for the member (its EnsureUser failed or never came)";
pub(super) const NO_ENSURE_USER: &str = "doorsync has no Kisi user for the member and no email to find or create one with \
                              (no EnsureUser command came for it)";

pub(super) fn foreign(assignment: doorsync_proto::KisiAssignmentId, group: KisiGroupId) -> String {
    format!(
        "role assignment {assignment} on group {group} was created by someone else; doorsync leaves it alone \
         (allow with reconcile.touch_foreign_assignments)"
    )
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

    /// The assignment as the writer keeps it, doorsync's if one of these made it.
    pub(crate) fn held(&self, assignment: &RoleAssignment) -> HeldAssignment {
        HeldAssignment { ours: self.made(assignment), ..held(assignment) }
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

pub(super) fn linked(member: MemberId, user: &KnownUser) -> Outcome {
    Outcome::UserLinked(UserLinked { member, kisi_user: user.id, created_by_doorsync: user.created_by_doorsync })
}

pub(super) fn access_changed(member: MemberId, state: KisiUserState) -> Outcome {
    Outcome::UserAccessChanged(UserAccessChanged { member, state })
}

impl ActiveWriter for Active<'_> {
    fn reconcile_options(&self) -> ReconcileOptions {
        ReconcileOptions::of(&self.shared.options)
    }

    fn now(&self) -> Timestamp {
        self.shared.clock.now()
    }

    fn calls_total(&self) -> u64 {
        self.shared.status.calls_total()
    }

    fn paused_error(&self) -> Option<WriterError> {
        Active::paused_error(self)
    }

    fn knowledge(&self) -> &Knowledge {
        &self.knowledge
    }

    fn knowledge_mut(&mut self) -> &mut Knowledge {
        &mut self.knowledge
    }

    fn creators(&self) -> &Creators {
        &self.creators
    }

    fn is_waiting(&self, key: Key) -> bool {
        self.backlog.contains(&key)
    }

    async fn read_user(&mut self, user: KisiUserId) -> Result<User, CallError> {
        let read = self.gateway.call(&mut self.stop, |client| async move { client.user(user).await }).await;
        self.gone_when_forbidden(read).await
    }

    fn worked_since_listing(&self, key: Key) -> bool {
        self.worked_during_reconciliation.contains(&key)
    }

    async fn read_page(&mut self, taking: &mut Taking) {
        Active::read_page(self, taking).await;
    }

    fn set_snapshot(&mut self, mut snapshot: Snapshot) {
        for &user in &self.users_gone_during_reconciliation {
            snapshot.forget_user(user);
        }
        self.snapshot = Some(snapshot);
    }

    fn snapshot(&self) -> Option<&Snapshot> {
        self.snapshot.as_ref()
    }

    async fn delete_assignment(&mut self, assignment: KisiAssignmentId) -> Result<(), CallError> {
        let deleted =
            self.gateway.call(&mut self.stop, |client| async move { client.delete_assignment(assignment).await }).await;
        self.gone_when_forbidden(deleted).await
    }

    async fn drive_user(&mut self, member: MemberId, desire: &UserDesire) -> Driven {
        Active::drive_user(self, member, desire).await
    }

    async fn drive_group(&mut self, member: MemberId, group: KisiGroupId, desire: GroupDesire) -> Driven {
        Active::drive_group(self, member, group, desire).await
    }

    async fn save_quietly(&self, member: MemberId) {
        Active::save_quietly(self, member).await;
    }

    async fn publish(&self, outcome: Outcome, occurred_at: Timestamp) -> Result<(), WriterError> {
        Active::publish(self, outcome, occurred_at).await
    }

    async fn whom_kisi_refused(&mut self, error: &KisiError) -> Refusal {
        Active::whom_kisi_refused(self, error).await
    }

    fn pause(&mut self, error: &KisiError) {
        Active::pause(self, error);
    }

    fn note_refused_group(&self, group: KisiGroupId, reason: String) {
        let mapping = self.shared.options.group_labels.get(&group).cloned();
        Active::note_refused_group(self, group, mapping, reason);
    }

    fn held(&self) -> Option<&HeldRepair> {
        self.held.as_ref()
    }

    fn set_held(&mut self, held: Option<HeldRepair>) {
        self.shared.status.lock().held_repair = held.as_ref().map(HeldRepair::status);
        self.held = held;
    }

    fn reconciled(&self, report: &ReconcileReport) {
        self.shared.status.lock().last_reconcile = Some(report.clone());
    }
}
