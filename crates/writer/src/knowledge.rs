//! What the writer knows is true in Kisi, and what it last made true, per member.
//!
//! One record per member in the writer's key-value bucket (`member.<id>`), written after every
//! Kisi call that changed something, before any outcome is published or command acknowledged.
//! A restarted writer, or a standby taking over, reads it instead of asking Kisi again. Before a
//! call that changes Kisi, the record is written with what it changes marked as not known: should
//! the writer stop or die before it learns the result, the next one looks in Kisi instead of
//! trusting what was true before.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use bytes::Bytes;
use doorsync_kisi::Validity;
use doorsync_log::{KeyValue, LogError, Sequence};
use doorsync_proto::{KisiAssignmentId, KisiGroupId, KisiUserId, KisiUserState, MemberId, Timestamp};
use serde::{Deserialize, Serialize};

const MEMBER_PREFIX: &str = "member.";
/// `kisi-user.<id>`: the member a Kisi user is linked to, so that no second member is linked to
/// it.
const LINK_PREFIX: &str = "kisi-user.";
/// Set once every member's link is recorded under [`LINK_PREFIX`].
const LINKS_INDEXED_KEY: &str = "kisi-user-links-indexed";

/// What one member's user and group memberships should be and are.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct MemberRecord {
    pub(crate) user: UserRecord,
    pub(crate) groups: BTreeMap<KisiGroupId, GroupRecord>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct UserRecord {
    /// What the newest settled command for the user asked for, whether Kisi was made to hold it
    /// or it was dead-lettered.
    pub(crate) desired: Option<UserDesire>,
    /// The member's Kisi user, once found or created.
    pub(crate) known: Option<KnownUser>,
    /// The stream sequence of the last command for the user that was settled; a redelivery of
    /// it or of anything older is already done.
    pub(crate) settled_sequence: Sequence,
    /// Kisi was searched for the email and had no such user. Only true between the search and
    /// the create that follows it, so it is not stored.
    #[serde(skip)]
    pub(crate) searched_absent: bool,
    /// A create was refused or the linked user found gone since Kisi was last searched for the
    /// email: the writer's snapshot of Kisi may be out of date for this member, so Kisi is searched.
    #[serde(skip)]
    pub(crate) search_kisi: bool,
    /// For a user linked from a snapshot of Kisi: the groups whose assignments it showed. What
    /// the user holds in any other group is not known (looked up before it is relied on).
    pub(crate) groups_listed: Option<BTreeSet<KisiGroupId>>,
}

/// The member's Kisi user as the writer last saw or left it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct KnownUser {
    pub(crate) id: KisiUserId,
    /// Created by doorsync, rather than found by email ("linked").
    pub(crate) created_by_doorsync: bool,
    pub(crate) state: KisiUserState,
    /// Whether the group records below reflect every assignment of this user (true once listed
    /// after linking, or for a user doorsync created, which started with none).
    pub(crate) assignments_listed: bool,
    /// A change to the user's access was made (or may have been: its answer was lost, or the
    /// writer stopped or died during it) without its result being known: `state` may be wrong,
    /// so the user is read before anything is decided from it.
    #[serde(default)]
    pub(crate) access_in_doubt: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct GroupRecord {
    /// What the newest settled command for this group asked for, whether Kisi was made to hold
    /// it or it was dead-lettered.
    pub(crate) desired: Option<GroupDesire>,
    pub(crate) known: KnownAssignment,
    pub(crate) settled_sequence: Sequence,
}

/// What a user should be: the fold of the commands for it (as the engine folds what it emitted).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct UserDesire {
    /// Unknown when no `EnsureUser` ever came for the member.
    pub(crate) email: Option<String>,
    pub(crate) name: Option<String>,
    pub(crate) access: KisiUserState,
}

/// Whether the member should be in a group, and for when.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum GroupDesire {
    Member { valid_from: Option<Timestamp>, valid_until: Option<Timestamp> },
    NotMember,
}

impl GroupDesire {
    /// The validity to write, as Kisi will hold it (whole seconds).
    pub(crate) fn validity(self) -> Option<Validity> {
        match self {
            Self::Member { valid_from, valid_until } => Some(Validity::new(valid_from, valid_until).in_whole_seconds()),
            Self::NotMember => None,
        }
    }
}

/// The member's role assignment on a group, as far as the writer knows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum KnownAssignment {
    /// Never looked at, or a write's answer was lost: look before writing.
    #[default]
    Unknown,
    Absent,
    Present(HeldAssignment),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct HeldAssignment {
    pub(crate) id: KisiAssignmentId,
    pub(crate) valid_from: Option<Timestamp>,
    pub(crate) valid_until: Option<Timestamp>,
    /// Created by doorsync's API user.
    pub(crate) ours: bool,
}

impl HeldAssignment {
    pub(crate) fn validity(self) -> Validity {
        Validity::new(self.valid_from, self.valid_until)
    }
}

impl MemberRecord {
    /// The member's user is gone with every assignment (deleted), or is new and has none.
    pub(crate) fn forget_assignments(&mut self, now_known: KnownAssignment) {
        for group in self.groups.values_mut() {
            group.known = now_known;
        }
    }

    /// The group's record, created if missing with what is known without asking: nothing, for a
    /// user whose assignments were all read (or who was created without any).
    pub(crate) fn group_mut(&mut self, group: KisiGroupId) -> &mut GroupRecord {
        let known = self.unrecorded_group();
        self.groups.entry(group).or_insert_with(|| GroupRecord { known, ..GroupRecord::default() })
    }

    /// What Kisi holds for the member in `group`, as far as the writer knows.
    pub(crate) fn known_in(&self, group: KisiGroupId) -> KnownAssignment {
        self.groups.get(&group).map_or_else(|| self.unrecorded_group(), |record| record.known)
    }

    fn unrecorded_group(&self) -> KnownAssignment {
        if self.live_user().is_some_and(|user| user.assignments_listed) && self.user.groups_listed.is_none() {
            KnownAssignment::Absent
        } else {
            KnownAssignment::Unknown
        }
    }

    /// The member's live Kisi user, if any.
    pub(crate) fn live_user(&self) -> Option<&KnownUser> {
        self.user.known.as_ref().filter(|user| user.state != KisiUserState::Deleted)
    }

    /// Marks what a change to the member's user (`None`) or membership of `group` may have
    /// changed as not known: look in Kisi before deciding anything from it.
    pub(crate) fn mark_in_doubt(&mut self, group: Option<KisiGroupId>) {
        match group {
            Some(group) => self.group_mut(group).known = KnownAssignment::Unknown,
            None => {
                if let Some(user) = &mut self.user.known {
                    user.access_in_doubt = true;
                }
            }
        }
    }
}

/// What one Kisi call showed of a member's user or of its assignments, folded into what the
/// writer knows by [`Knowledge::apply`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Observation {
    /// Found by email and linked to the member; what it holds in each group is not known yet.
    UserFound(KnownUser),
    /// Found by email in the snapshot of Kisi and linked to the member, with what it holds in
    /// each group the snapshot listed whole.
    UserFoundWithMemberships(KnownUser, Vec<(KisiGroupId, Option<HeldAssignment>)>),
    /// Created by doorsync: a new user holds no assignments.
    UserCreated(KnownUser),
    /// No Kisi user has the member's email.
    NoUserWithEmail,
    /// A create was refused or its answer lost: the user may exist after all (a lost answer,
    /// someone else's create), so Kisi is searched again before the next create.
    UserMayExist,
    /// The user's access as Kisi holds it now: read, or just set.
    UserAccess(KisiUserState),
    /// A change to the user's access may or may not have been made: its answer was lost.
    UserAccessInDoubt,
    /// Deleted by doorsync (or gone when it tried), and with it every assignment.
    UserDeleted,
    /// Gone from Kisi, deleted by someone else, and with it every assignment.
    UserGone,
    /// Every assignment the user holds, by group.
    AssignmentsListed(Vec<(KisiGroupId, HeldAssignment)>),
    /// What the user holds in the group, looked up or read back after a change: `None` for
    /// nothing.
    AssignmentRead(KisiGroupId, Option<HeldAssignment>),
    AssignmentMade(KisiGroupId, HeldAssignment),
    /// Deleted by doorsync, or found gone.
    AssignmentRemoved(KisiGroupId),
    /// A write to the group's assignment was refused, or may or may not have been made: it is
    /// looked at before the next write.
    AssignmentInDoubt(KisiGroupId),
}

impl MemberRecord {
    /// Folds what a Kisi call showed into the record.
    pub(crate) fn apply(&mut self, observation: Observation) {
        match observation {
            Observation::UserFound(user) => self.adopt(user, KnownAssignment::Unknown),
            Observation::UserFoundWithMemberships(user, memberships) => {
                self.adopt(user, KnownAssignment::Unknown);
                self.user.groups_listed = Some(memberships.iter().map(|(group, _)| *group).collect());
                for (group, held) in memberships {
                    self.group_mut(group).known = held.map_or(KnownAssignment::Absent, KnownAssignment::Present);
                }
            }
            Observation::UserCreated(user) => self.adopt(user, KnownAssignment::Absent),
            Observation::NoUserWithEmail => {
                self.user.searched_absent = true;
                self.user.search_kisi = false;
            }
            Observation::UserMayExist => {
                self.user.searched_absent = false;
                self.user.search_kisi = true;
            }
            Observation::UserAccess(state) => {
                if let Some(known) = &mut self.user.known {
                    known.state = state;
                    known.access_in_doubt = false;
                }
            }
            Observation::UserAccessInDoubt => self.mark_in_doubt(None),
            Observation::UserDeleted => {
                if let Some(known) = &mut self.user.known {
                    known.state = KisiUserState::Deleted;
                    known.access_in_doubt = false;
                }
                self.forget_assignments(KnownAssignment::Absent);
            }
            Observation::UserGone => {
                self.user.known = None;
                self.user.search_kisi = true;
                self.forget_assignments(KnownAssignment::Absent);
            }
            Observation::AssignmentsListed(assignments) => {
                self.forget_assignments(KnownAssignment::Absent);
                for (group, held) in assignments {
                    self.group_mut(group).known = KnownAssignment::Present(held);
                }
                if let Some(known) = &mut self.user.known {
                    known.assignments_listed = true;
                }
                self.user.groups_listed = None;
            }
            Observation::AssignmentRead(group, held) => {
                self.group_mut(group).known = held.map_or(KnownAssignment::Absent, KnownAssignment::Present);
            }
            Observation::AssignmentMade(group, held) => self.group_mut(group).known = KnownAssignment::Present(held),
            Observation::AssignmentRemoved(group) => self.group_mut(group).known = KnownAssignment::Absent,
            Observation::AssignmentInDoubt(group) => self.mark_in_doubt(Some(group)),
        }
    }

    /// Makes `user` the member's known user, holding `assignments` in every group.
    fn adopt(&mut self, user: KnownUser, assignments: KnownAssignment) {
        self.forget_assignments(assignments);
        self.user.searched_absent = false;
        self.user.search_kisi = false;
        self.user.groups_listed = None;
        self.user.known = Some(user);
    }
}

/// A user's access as Kisi's `access_enabled` says it.
pub(crate) fn access_state(access_enabled: bool) -> KisiUserState {
    if access_enabled { KisiUserState::Enabled } else { KisiUserState::Suspended }
}

/// The records, cached in memory and loaded from the bucket on first use.
pub(crate) struct Knowledge {
    kv: Arc<dyn KeyValue>,
    records: HashMap<MemberId, MemberRecord>,
}

impl std::fmt::Debug for Knowledge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Knowledge").field("cached", &self.records.len()).finish_non_exhaustive()
    }
}

fn member_key(member: MemberId) -> String {
    format!("{MEMBER_PREFIX}{member}")
}

fn link_key(user: KisiUserId) -> String {
    format!("{LINK_PREFIX}{user}")
}

/// `patch-validity.<account>`: whether the account applies a PATCH of an assignment's validity.
fn patch_validity_key(account: &str) -> String {
    format!("patch-validity.{account}")
}

/// `reconciled.<account>`: when the last reconciliation finished (or a writer of the account first
/// started), so the schedule survives restarts.
fn reconciled_key(account: &str) -> String {
    format!("reconciled.{account}")
}

pub(crate) async fn load_reconciled_at(kv: &Arc<dyn KeyValue>, account: &str) -> Result<Option<Timestamp>, LogError> {
    let entry = kv.get(&reconciled_key(account)).await?;
    Ok(entry.and_then(|entry| std::str::from_utf8(&entry.value).ok()?.parse().ok()).map(Timestamp::from_unix_millis))
}

pub(crate) async fn save_reconciled_at(kv: &Arc<dyn KeyValue>, account: &str, at: Timestamp) -> Result<(), LogError> {
    kv.put(&reconciled_key(account), Bytes::from(at.as_unix_millis().to_string())).await.map(drop)
}

/// What was learnt of whether `account` applies a PATCH of an assignment's validity.
pub(crate) async fn load_patch_applies_validity(
    kv: &Arc<dyn KeyValue>,
    account: &str,
) -> Result<Option<bool>, LogError> {
    let entry = kv.get(&patch_validity_key(account)).await?;
    Ok(entry.and_then(|entry| match entry.value.as_ref() {
        b"applies" => Some(true),
        b"ignored" => Some(false),
        _ => None,
    }))
}

pub(crate) async fn save_patch_applies_validity(
    kv: &Arc<dyn KeyValue>,
    account: &str,
    applies: bool,
) -> Result<(), LogError> {
    let value: &'static [u8] = if applies { b"applies" } else { b"ignored" };
    kv.put(&patch_validity_key(account), Bytes::from_static(value)).await.map(drop)
}

impl Knowledge {
    pub(crate) fn new(kv: Arc<dyn KeyValue>) -> Self {
        Self { kv, records: HashMap::new() }
    }

    /// Reads the member's record into the cache unless it is there already.
    pub(crate) async fn load(&mut self, member: MemberId) -> Result<(), LogError> {
        if !self.records.contains_key(&member) {
            let record = self.read(member).await?;
            self.records.insert(member, record);
        }
        Ok(())
    }

    /// Reads every member's record, for the reconciler.
    pub(crate) async fn load_all(&mut self) -> Result<(), LogError> {
        for key in self.kv.keys().await? {
            let Some(member) = key.strip_prefix(MEMBER_PREFIX).and_then(|id| id.parse().ok()).map(MemberId) else {
                continue;
            };
            self.load(member).await?;
        }
        Ok(())
    }

    async fn read(&self, member: MemberId) -> Result<MemberRecord, LogError> {
        let Some(entry) = self.kv.get(&member_key(member)).await? else {
            return Ok(MemberRecord::default());
        };
        // An unreadable record is dropped rather than fatal: starting from "unknown" makes the
        // writer look in Kisi before writing, so nothing is duplicated.
        Ok(rmp_serde::from_slice(&entry.value).unwrap_or_else(|error| {
            tracing::warn!(%member, %error, "writer knowledge record unreadable; looking in Kisi again");
            MemberRecord::default()
        }))
    }

    /// Folds what a Kisi call showed of `member`'s user or assignments into the cached record
    /// (see [`MemberRecord::apply`]); [`save`](Self::save) writes it.
    pub(crate) fn apply(&mut self, member: MemberId, observation: Observation) {
        self.get_mut(member).apply(observation);
    }

    /// The cached record (empty if [`load`](Self::load) was not called).
    pub(crate) fn get_mut(&mut self, member: MemberId) -> &mut MemberRecord {
        self.records.entry(member).or_default()
    }

    pub(crate) fn members(&self) -> impl Iterator<Item = (MemberId, &MemberRecord)> {
        self.records.iter().map(|(member, record)| (*member, record))
    }

    pub(crate) async fn save(&self, member: MemberId) -> Result<(), LogError> {
        let record = self.records.get(&member).cloned().unwrap_or_default();
        self.put(member, &record).await
    }

    /// Saves the member's record with what a change about to be made to the user (`None`) or to
    /// `group` may change marked as not known; the cached record keeps what is known now, which
    /// stays true unless the change is made.
    pub(crate) async fn save_in_doubt(&self, member: MemberId, group: Option<KisiGroupId>) -> Result<(), LogError> {
        let mut record = self.records.get(&member).cloned().unwrap_or_default();
        record.mark_in_doubt(group);
        self.put(member, &record).await
    }

    async fn put(&self, member: MemberId, record: &MemberRecord) -> Result<(), LogError> {
        let encoded = rmp_serde::to_vec_named(record)
            .map_err(|error| LogError::storage(format!("encoding the writer's record of member {member}"), error))?;
        self.kv.put(&member_key(member), Bytes::from(encoded)).await.map(drop)
    }

    pub(crate) fn kv(&self) -> &Arc<dyn KeyValue> {
        &self.kv
    }

    /// Records the link of every member's live Kisi user once, for records written before links
    /// were kept: without it, an email moved to another member would link that member to the
    /// first one's Kisi user, and the doors it opens.
    pub(crate) async fn index_links(&mut self) -> Result<(), LogError> {
        if self.kv.get(LINKS_INDEXED_KEY).await?.is_some() {
            return Ok(());
        }
        self.load_all().await?;
        let links: Vec<(KisiUserId, MemberId)> =
            self.members().filter_map(|(member, record)| Some((record.live_user()?.id, member))).collect();
        for (user, member) in links {
            self.record_link(user, member).await?;
        }
        self.kv.put(LINKS_INDEXED_KEY, Bytes::from_static(b"1")).await.map(drop)
    }

    /// The member `user` was last linked to, if any.
    pub(crate) async fn linked_member(&self, user: KisiUserId) -> Result<Option<MemberId>, LogError> {
        let entry = self.kv.get(&link_key(user)).await?;
        Ok(entry.and_then(|entry| std::str::from_utf8(&entry.value).ok()?.parse().ok()).map(MemberId))
    }

    pub(crate) async fn record_link(&self, user: KisiUserId, member: MemberId) -> Result<(), LogError> {
        self.kv.put(&link_key(user), Bytes::from(member.to_string())).await.map(drop)
    }

    /// The user is gone from Kisi: its email may be found again, for anyone.
    pub(crate) async fn forget_link(&self, user: KisiUserId) {
        if let Err(error) = self.kv.delete(&link_key(user)).await {
            tracing::warn!(%user, %error, "forgetting a deleted Kisi user's link failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_the_search_flag_is_not_stored() {
        let mut record = MemberRecord::default();
        record.user.known = Some(KnownUser {
            id: KisiUserId(4),
            created_by_doorsync: true,
            state: KisiUserState::Suspended,
            assignments_listed: true,
            access_in_doubt: false,
        });
        record.user.searched_absent = true;
        record.group_mut(KisiGroupId(9)).known = KnownAssignment::Present(HeldAssignment {
            id: KisiAssignmentId(12),
            valid_from: None,
            valid_until: Some(Timestamp::from_unix_millis(5_000)),
            ours: true,
        });
        let decoded: MemberRecord = rmp_serde::from_slice(&rmp_serde::to_vec_named(&record).unwrap()).unwrap();
        assert!(!decoded.user.searched_absent);
        record.user.searched_absent = false;
        assert_eq!(decoded, record);
    }

    #[test]
    fn desired_windows_are_written_in_whole_seconds() {
        let desire = GroupDesire::Member {
            valid_from: Some(Timestamp::from_unix_millis(1_500)),
            valid_until: Some(Timestamp::from_unix_millis(9_001)),
        };
        let validity = desire.validity().unwrap();
        assert_eq!(validity.from, Some(Timestamp::from_unix_millis(1_000)));
        assert_eq!(validity.until, Some(Timestamp::from_unix_millis(10_000)));
        assert_eq!(GroupDesire::NotMember.validity(), None);
    }

    fn user(id: u64, created_by_doorsync: bool, assignments_listed: bool) -> KnownUser {
        KnownUser {
            id: KisiUserId(id),
            created_by_doorsync,
            state: KisiUserState::Enabled,
            assignments_listed,
            access_in_doubt: false,
        }
    }

    fn held(id: u64, ours: bool) -> HeldAssignment {
        HeldAssignment { id: KisiAssignmentId(id), valid_from: None, valid_until: None, ours }
    }

    /// A member with a user and an assignment in group 1 that doorsync made.
    fn holding() -> MemberRecord {
        let mut record = MemberRecord::default();
        record.apply(Observation::UserCreated(user(4, true, true)));
        record.apply(Observation::AssignmentMade(KisiGroupId(1), held(10, true)));
        record
    }

    #[test]
    fn a_user_found_is_known_with_nothing_known_of_its_groups_and_a_created_one_with_none() {
        let mut record = holding();
        record.user.searched_absent = true;
        record.apply(Observation::UserFound(user(5, false, false)));
        assert_eq!(record.user.known, Some(user(5, false, false)));
        assert!(!record.user.searched_absent);
        assert_eq!(record.known_in(KisiGroupId(1)), KnownAssignment::Unknown);
        assert_eq!(record.known_in(KisiGroupId(2)), KnownAssignment::Unknown);

        record.apply(Observation::UserCreated(user(6, true, true)));
        assert_eq!(record.user.known, Some(user(6, true, true)));
        assert_eq!(record.known_in(KisiGroupId(1)), KnownAssignment::Absent);
        assert_eq!(record.known_in(KisiGroupId(2)), KnownAssignment::Absent, "a new user holds nothing");
    }

    #[test]
    fn a_search_that_found_nobody_holds_until_a_create_fails() {
        let mut record = MemberRecord::default();
        record.apply(Observation::NoUserWithEmail);
        assert!(record.user.searched_absent);
        record.apply(Observation::UserMayExist);
        assert!(!record.user.searched_absent);
        assert_eq!(record.user.known, None);
    }

    #[test]
    fn the_users_access_is_what_kisi_showed_and_a_lost_answer_puts_it_in_doubt() {
        let mut record = holding();
        record.apply(Observation::UserAccessInDoubt);
        assert!(record.user.known.as_ref().unwrap().access_in_doubt);
        record.apply(Observation::UserAccess(KisiUserState::Suspended));
        let known = record.user.known.clone().unwrap();
        assert_eq!((known.state, known.access_in_doubt), (KisiUserState::Suspended, false));
        assert_eq!(record.known_in(KisiGroupId(1)), KnownAssignment::Present(held(10, true)), "groups untouched");

        let mut nobody = MemberRecord::default();
        nobody.apply(Observation::UserAccess(KisiUserState::Enabled));
        assert_eq!(nobody, MemberRecord::default(), "no user, nothing to record");
    }

    #[test]
    fn a_deleted_user_is_kept_as_deleted_and_a_gone_one_forgotten_both_without_assignments() {
        let mut deleted = holding();
        deleted.apply(Observation::UserAccessInDoubt);
        deleted.apply(Observation::UserDeleted);
        let known = deleted.user.known.clone().unwrap();
        assert_eq!((known.state, known.access_in_doubt), (KisiUserState::Deleted, false));
        assert_eq!(deleted.live_user(), None);
        assert_eq!(deleted.groups[&KisiGroupId(1)].known, KnownAssignment::Absent);

        let mut gone = holding();
        gone.apply(Observation::UserGone);
        assert_eq!(gone.user.known, None);
        assert_eq!(gone.groups[&KisiGroupId(1)].known, KnownAssignment::Absent);
    }

    #[test]
    fn a_listing_replaces_what_was_known_of_every_group_and_covers_the_groups_it_does_not_name() {
        let mut record = MemberRecord::default();
        record.apply(Observation::UserFound(user(4, false, false)));
        record.apply(Observation::AssignmentRead(KisiGroupId(1), Some(held(10, false))));
        record.apply(Observation::AssignmentsListed(vec![(KisiGroupId(2), held(20, true))]));
        assert!(record.user.known.as_ref().unwrap().assignments_listed);
        assert_eq!(record.known_in(KisiGroupId(1)), KnownAssignment::Absent);
        assert_eq!(record.known_in(KisiGroupId(2)), KnownAssignment::Present(held(20, true)));
        assert_eq!(record.known_in(KisiGroupId(3)), KnownAssignment::Absent, "listed: nothing there");
    }

    #[test]
    fn an_assignment_is_what_was_made_read_or_removed_and_in_doubt_after_a_lost_write() {
        let mut record = holding();
        let group = KisiGroupId(1);
        record.apply(Observation::AssignmentInDoubt(group));
        assert_eq!(record.known_in(group), KnownAssignment::Unknown);
        record.apply(Observation::AssignmentRead(group, Some(held(11, false))));
        assert_eq!(record.known_in(group), KnownAssignment::Present(held(11, false)));
        record.apply(Observation::AssignmentRemoved(group));
        assert_eq!(record.known_in(group), KnownAssignment::Absent);
        record.apply(Observation::AssignmentMade(group, held(12, true)));
        assert_eq!(record.known_in(group), KnownAssignment::Present(held(12, true)));
        record.apply(Observation::AssignmentRead(group, None));
        assert_eq!(record.known_in(group), KnownAssignment::Absent);
    }

    /// The writer's bucket on an embedded log in memory, with the log that holds it.
    async fn writer_bucket() -> (doorsync_log_embedded::EmbeddedLog, Arc<dyn KeyValue>) {
        let layout = doorsync_layout::Layout::new(doorsync_proto::Subjects::new("test", 4).unwrap());
        let log = doorsync_log_embedded::EmbeddedLog::in_memory(layout.streams()).unwrap();
        let kv = doorsync_log::EventLog::key_value(&log, &layout.writer_bucket).await.unwrap();
        (log, kv)
    }

    #[tokio::test]
    async fn knowledge_applies_an_observation_to_the_members_cached_record_and_saves_it_when_asked() {
        let (_log, kv) = writer_bucket().await;
        let mut knowledge = Knowledge::new(Arc::clone(&kv));
        knowledge.apply(MemberId(7), Observation::UserCreated(user(70, true, true)));
        assert_eq!(knowledge.get_mut(MemberId(7)).user.known, Some(user(70, true, true)));
        assert_eq!(knowledge.get_mut(MemberId(8)), &MemberRecord::default(), "other members untouched");

        let mut reread = Knowledge::new(Arc::clone(&kv));
        reread.load(MemberId(7)).await.unwrap();
        assert_eq!(reread.get_mut(MemberId(7)).user.known, None, "applying writes nothing");
        knowledge.save(MemberId(7)).await.unwrap();
        let mut reread = Knowledge::new(kv);
        reread.load(MemberId(7)).await.unwrap();
        assert_eq!(reread.get_mut(MemberId(7)).user.known, Some(user(70, true, true)));
    }

    #[tokio::test]
    async fn links_of_records_kept_before_links_were_are_recorded_once() {
        let (_log, kv) = writer_bucket().await;
        let mut old = Knowledge::new(Arc::clone(&kv));
        old.get_mut(MemberId(5)).user.known = Some(KnownUser {
            id: KisiUserId(50),
            created_by_doorsync: true,
            state: KisiUserState::Enabled,
            assignments_listed: true,
            access_in_doubt: false,
        });
        old.save(MemberId(5)).await.unwrap();
        assert_eq!(old.linked_member(KisiUserId(50)).await.unwrap(), None, "as an older writer left it");

        let mut knowledge = Knowledge::new(Arc::clone(&kv));
        knowledge.index_links().await.unwrap();
        assert_eq!(knowledge.linked_member(KisiUserId(50)).await.unwrap(), Some(MemberId(5)));
        // Once done, it is not done again: a link forgotten since stays forgotten.
        knowledge.forget_link(KisiUserId(50)).await;
        Knowledge::new(Arc::clone(&kv)).index_links().await.unwrap();
        assert_eq!(knowledge.linked_member(KisiUserId(50)).await.unwrap(), None);
    }
}
